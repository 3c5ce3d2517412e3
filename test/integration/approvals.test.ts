import { existsSync, mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runGovernorCli } from '../harness/cli';
import { stepDigest } from '../../core/digests';
import { issueApproval } from '../../identity';
import { GovernorBreakGlassKey, GovernorPendingRolesKey, GovernorStatusKey } from '../../contracts/search-attributes';
import type { ChainResult, ChainState } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';
import { Chain } from '../../contracts/chain';
import { GovernorClient } from '../../sdk/client';

// The default bundle with: a ladder that makes `dba` eligible after 2 s, and a policy that denies
// any step mallory approved (to prove that policy, not the quorum count, has the last word).
const bundleDir = defaultBundleWith(
  (m) => {
    (m.approvals as Record<string, unknown>).ladder = [{ after: '2s', roles: ['dba'] }];
  },
  {
    'approvals-test.cedar':
      '@id("never-mallory")\n@reason("mallory\'s approvals are void")\nforbid (principal, action, resource)\nwhen { context has approvals && context.approvals.approvers.contains("mallory") };\n',
    // A short approval deadline for payments so the deadline path ends in seconds.
    'payments.cedar': (text) => text.replace(/@deadline\("[^"]+"\)/g, '@deadline("3s")'),
  },
);

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned({ policiesDir: bundleDir });
});
afterAll(async () => {
  await g?.stop();
});

const prodDeploy = () => ({
  workload: WORKLOAD,
  owner: 'team-release',
  steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
});

async function awaitingApproval(chain: unknown): Promise<{ chainId: string; state: ChainState; digest: string }> {
  const handle = await g.gc.start(chain, await g.creds());
  const state = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
  const step = state.steps.find((s) => s.approval?.outcome === 'pending')!;
  return { chainId: handle.workflowId, state, digest: step.approval!.stepDigest };
}

function vote(
  chainId: string,
  digest: string,
  sub: string,
  roles: string[],
  decision: 'approve' | 'deny' = 'approve',
  extra: { home?: string; stepId?: string; stepDigest?: string; justification?: string; reason?: string } = {},
) {
  return issueApproval({
    home: extra.home ?? g.home,
    sub,
    roles,
    chainId,
    stepId: extra.stepId ?? 'deploy',
    stepDigest: extra.stepDigest ?? digest,
    decision,
    justification: extra.justification,
    reason: extra.reason,
  });
}

describe('human escalation on the real server', () => {
  it('waits in AwaitingApproval, counts a quorum of distinct eligible approvers, rejects the rest with reasons, then executes once', async () => {
    const { chainId, state, digest } = await awaitingApproval(prodDeploy());
    expect(state.pendingRoles).toEqual(['sre-lead']);
    const approval = state.steps[0]!.approval!;
    expect(approval).toMatchObject({
      roles: ['sre-lead'],
      quorum: 2,
      deadline: '30m',
      stillNeeded: 2,
      outcome: 'pending',
    });
    const described = await g.client.workflow.getHandle(chainId).describe();
    expect(described.typedSearchAttributes.get(GovernorStatusKey)).toBe('AwaitingApproval');
    expect(described.typedSearchAttributes.get(GovernorPendingRolesKey)).toEqual(['sre-lead']);

    const alice = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'alice', ['sre-lead']));
    expect(alice.verdict).toMatchObject({ counted: true, approver: 'alice', roles: ['sre-lead'], decision: 'approve' });
    expect(alice.approval.stillNeeded).toBe(1);

    const again = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'alice', ['sre-lead']));
    expect(again.verdict).toMatchObject({ counted: true, repeat: true });
    expect(again.approval.stillNeeded).toBe(1);

    const rejected: [string, Promise<string>, RegExp][] = [
      [
        'the workload itself',
        vote(chainId, digest, WORKLOAD, ['sre-lead']),
        /requesting workload and its owner may not approve/,
      ],
      [
        'its declared owner',
        vote(chainId, digest, 'team-release', ['sre-lead']),
        /requesting workload and its owner may not approve/,
      ],
      ['an approver without the role', vote(chainId, digest, 'bob', ['viewer']), /holds none of the eligible roles/],
      [
        'a forged token',
        vote(chainId, digest, 'eve', ['sre-lead'], 'approve', { home: await makeHome() }),
        /approval (signature invalid|signing key not found)/,
      ],
      [
        'a vote for another version of the step',
        vote(chainId, digest, 'dave', ['sre-lead'], 'approve', { stepDigest: 'f'.repeat(64) }),
        /different version of this step/,
      ],
      [
        'a vote for another step',
        vote(chainId, digest, 'dave', ['sre-lead'], 'approve', { stepId: 'other' }),
        /another step/,
      ],
      [
        'a vote for another chain',
        issueApproval({
          home: g.home,
          sub: 'dave',
          roles: ['sre-lead'],
          chainId: 'some-other-chain',
          stepId: 'deploy',
          stepDigest: digest,
          decision: 'approve',
        }),
        /another chain/,
      ],
      [
        'an expired vote',
        issueApproval({
          home: g.home,
          sub: 'dave',
          roles: ['sre-lead'],
          chainId,
          stepId: 'deploy',
          stepDigest: digest,
          decision: 'approve',
          now: new Date(Date.now() - 3_600_000),
          ttlSeconds: 60,
        }),
        /approval expired/,
      ],
    ];
    for (const [name, token, reason] of rejected) {
      const r = await g.gc.submitApproval(chainId, await token);
      expect({ name, counted: r.verdict.counted, reason: r.verdict.reason }).toEqual({
        name,
        counted: false,
        reason: expect.stringMatching(reason),
      });
    }
    // A malformed vote is refused by the synchronous validator and never reaches history.
    const before = (await g.client.workflow.getHandle(chainId).fetchHistory()).events!.length;
    await expect(g.gc.submitApproval(chainId, 'not-a-jwt')).rejects.toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringContaining('compact JWS'),
    });
    expect(g.ledger.has(`${chainId}/deploy`)).toBe(false);

    // The second approver votes by signal, as from the Temporal UI or `temporal workflow signal`.
    await g.gc.signalVote(chainId, await vote(chainId, digest, 'carol', ['sre-lead']), 'approve');
    const result = (await g.client.workflow.getHandle(chainId).result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(result.steps[0]!.approval).toMatchObject({
      outcome: 'approved',
      approvedBy: [
        { approver: 'alice', roles: ['sre-lead'] },
        { approver: 'carol', roles: ['sre-lead'] },
      ],
    });
    expect(result.steps[0]!.decision!.effect).toBe('allow');
    expect(g.ledger.all().filter((e) => e.idempotencyKey === `${chainId}/deploy`)).toHaveLength(1);
    const history = (await g.client.workflow.getHandle(chainId).fetchHistory()).events!;
    expect(history.length).toBeGreaterThan(before);
    expect(history.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length).toBe(10); // every well-formed vote by update
  });

  it('denies at once on a deny vote from an authorized approver', async () => {
    const { chainId, digest } = await awaitingApproval(prodDeploy());
    const r = await g.gc.submitApproval(
      chainId,
      await vote(chainId, digest, 'alice', ['sre-lead'], 'deny', { reason: 'change freeze' }),
    );
    expect(r.verdict).toMatchObject({ counted: true, decision: 'deny' });
    const result = (await g.client.workflow.getHandle(chainId).result()) as ChainResult;
    expect(result.status).toBe('Denied');
    expect(result.reason).toContain('denied by approver alice: change freeze');
    expect(g.ledger.has(`${chainId}/deploy`)).toBe(false);
  });

  it('denies when no quorum arrives by the deadline (fail closed, never resumes as allowed)', async () => {
    const chain = {
      workload: WORKLOAD,
      steps: [
        g.serviceStep('pay', 'pay', { type: 'Account', id: 'acme' }, { context: { amount: 50_000, currency: 'EUR' } }),
      ],
    };
    const handle = await g.gc.start(chain, await g.creds());
    const waiting = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    expect(waiting.pendingRoles).toEqual(['finance-approver']);
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Denied');
    expect(result.reason).toMatch(/no quorum of 1 by the approval deadline \(3s\)/);
    expect(result.steps[0]!.approval!.outcome).toBe('expired');
    expect(g.ledger.has(`${handle.workflowId}/pay`)).toBe(false);
    expect((await handle.describe()).typedSearchAttributes.get(GovernorPendingRolesKey) ?? []).toEqual([]);
  });

  it('lets policy have the last word after quorum', async () => {
    const { chainId, digest } = await awaitingApproval(prodDeploy());
    await g.gc.submitApproval(chainId, await vote(chainId, digest, 'alice', ['sre-lead']));
    await g.gc.submitApproval(chainId, await vote(chainId, digest, 'mallory', ['sre-lead']));
    const result = (await g.client.workflow.getHandle(chainId).result()) as ChainResult;
    expect(result.status).toBe('Denied');
    expect(result.reason).toContain('policy denied after approval');
    expect(result.steps[0]!.decision!.determiningPolicies).toContain('never-mallory');
    expect(g.ledger.has(`${chainId}/deploy`)).toBe(false);
  });

  it('makes a further role eligible on the escalation ladder', async () => {
    const { chainId, digest } = await awaitingApproval(prodDeploy());
    const early = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'dan', ['dba']));
    expect(early.verdict).toMatchObject({
      counted: false,
      reason: expect.stringContaining('holds none of the eligible roles (sre-lead)'),
    });
    const later = await g.waitFor(chainId, (s) => s.pendingRoles?.includes('dba') ?? false);
    expect(later.steps[0]!.approval!.eligibleRoles).toEqual(['sre-lead', 'dba']);
    const counted = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'dan', ['dba']));
    expect(counted.verdict).toMatchObject({ counted: true, roles: ['dba'] });
    await g.gc.revoke(chainId, { reason: 'test cleanup' });
    expect(((await g.client.workflow.getHandle(chainId).result()) as ChainResult).status).toBe('Revoked');
  });

  it('accepts a break-glass approval only with a justification, marks the chain and lists it for review', async () => {
    const { chainId, digest } = await awaitingApproval(prodDeploy());
    const bare = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'sam', ['security-officer']));
    expect(bare.verdict).toMatchObject({ counted: false, reason: expect.stringContaining('requires a justification') });
    const glass = await g.gc.submitApproval(
      chainId,
      await vote(chainId, digest, 'sam', ['security-officer'], 'approve', {
        justification: 'prod outage INC-4711, SREs unreachable',
      }),
    );
    expect(glass.verdict).toMatchObject({ counted: true, breakGlass: true, approver: 'sam' });
    const handle = g.client.workflow.getHandle(chainId);
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(result.steps[0]!.breakGlass).toEqual({
      approver: 'sam',
      justification: 'prod outage INC-4711, SREs unreachable',
    });
    expect((await handle.describe()).typedSearchAttributes.get(GovernorBreakGlassKey)).toBe(true);
    let listed: string[] = [];
    for (let i = 0; i < 40 && !listed.includes(chainId); i++) {
      listed = (await g.gc.list({ breakGlass: true })).map((c) => c.chainId);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(listed).toContain(chainId);
  });
});

describe('votes that arrive early or while no worker runs', () => {
  it('keeps votes for a step that does not await approval yet, and counts them when it does', async () => {
    const steps = [
      g.serviceStep('first', 'deploy', { type: 'Environment', id: 'prod' }),
      g.serviceStep('second', 'deploy', { type: 'Environment', id: 'prod' }),
    ];
    const handle = await g.gc.start({ workload: WORKLOAD, steps }, await g.creds());
    const waiting = await g.waitFor(handle.workflowId, (s) => s.steps[0]!.approval?.outcome === 'pending');
    // The second step's digest, as the authorize activity computes it (the chain input with its defaults).
    const parsed = Chain.parse({ workload: WORKLOAD, steps });
    const second = parsed.steps[1]!;
    const secondDigest = stepDigest(
      handle.workflowId,
      { ...second, stepId: 'second' },
      { input: second.input, executor: second.executor },
    );
    for (const sub of ['erin', 'frank']) {
      await g.gc.signalVote(
        handle.workflowId,
        await issueApproval({
          home: g.home,
          sub,
          roles: ['sre-lead'],
          chainId: handle.workflowId,
          stepId: 'second',
          stepDigest: secondDigest,
          decision: 'approve',
        }),
        'approve',
      );
    }
    const firstDigest = waiting.steps[0]!.approval!.stepDigest;
    for (const sub of ['alice', 'carol']) {
      await g.gc.signalVote(
        handle.workflowId,
        await issueApproval({
          home: g.home,
          sub,
          roles: ['sre-lead'],
          chainId: handle.workflowId,
          stepId: 'first',
          stepDigest: firstDigest,
          decision: 'approve',
        }),
        'approve',
      );
    }
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(result.steps[0]!.approval!.approvedBy.map((a) => a.approver)).toEqual(['alice', 'carol']);
    expect(result.steps[1]!.approval!.approvedBy.map((a) => a.approver)).toEqual(['erin', 'frank']);
    expect(g.ledger.has(`${handle.workflowId}/second`)).toBe(true);
  });

  it('loses no vote when the governor worker restarts while the chain waits', async () => {
    const taskQueue = uniqueQueue('governor-restart');
    // A workflow cache, as in production: with none, SDK 1.24 evicts the run when the vote arrives
    // during a local activity and the update is aborted until the task's 10 s timeout.
    const options = { home: g.home, taskQueue, policiesDir: bundleDir, maxCachedWorkflows: 100 };
    let worker = await startGovernorWorker(options);
    const gc = new GovernorClient(g.client, taskQueue);
    const handle = await gc.start(prodDeploy(), await g.creds());
    let digest = '';
    for (let i = 0; i < 100 && !digest; i++) {
      digest = (await gc.status(handle.workflowId).catch(() => undefined))?.steps[0]?.approval?.stepDigest ?? '';
      if (!digest) await new Promise((r) => setTimeout(r, 100));
    }
    await worker.stop();
    // No worker runs now: the vote waits in history.
    await gc.signalVote(handle.workflowId, await vote(handle.workflowId, digest, 'alice', ['sre-lead']), 'approve');
    worker = await startGovernorWorker(options);
    try {
      const r = await gc.submitApproval(
        handle.workflowId,
        await vote(handle.workflowId, digest, 'carol', ['sre-lead']),
      );
      expect(r.verdict.counted).toBe(true);
      const result = (await handle.result()) as ChainResult;
      expect(result.status).toBe('Completed');
      expect(result.steps[0]!.approval!.approvedBy.map((a) => a.approver)).toEqual(['alice', 'carol']);
      expect(g.ledger.all().filter((e) => e.idempotencyKey === `${handle.workflowId}/deploy`)).toHaveLength(1);
    } finally {
      await worker.stop();
    }
  });
});

describe('governor approve / deny / list --awaiting-approval', () => {
  const cli = (args: string[]) =>
    runGovernorCli(args, { TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: g.home, GOVERNOR_TASK_QUEUE: g.taskQueue });

  it('counts a vote (exit 0), rejects one with its reason (exit 1), and lists what is still needed', async () => {
    const { chainId } = await awaitingApproval(prodDeploy());
    let listed: { chainId: string; pendingRoles: string[] }[] = [];
    for (let i = 0; i < 40 && !listed.some((c) => c.chainId === chainId); i++) {
      const l = await cli(['list', '--awaiting-approval', '--json']);
      expect(l.code).toBe(0);
      listed = (JSON.parse(l.stdout) as { chains: typeof listed }).chains;
      await new Promise((r) => setTimeout(r, 250));
    }
    // This suite's ladder makes `dba` eligible 2 s after the escalation; a loaded machine may list it.
    expect([['sre-lead'], ['sre-lead', 'dba']]).toContainEqual(listed.find((c) => c.chainId === chainId)?.pendingRoles);

    const ok = await cli([
      'approve',
      chainId,
      '--as',
      'alice',
      '--roles',
      'sre-lead',
      '--reason',
      'looks good',
      '--json',
    ]);
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(ok.stdout)).toMatchObject({
      counted: true,
      approval: { stillNeeded: 1, approvedBy: [{ approver: 'alice' }] },
    });

    const no = await cli(['deny', chainId, '--as', 'bob', '--roles', 'viewer', '--json']);
    expect(no.code).toBe(1);
    expect(JSON.parse(no.stdout)).toMatchObject({
      counted: false,
      verdict: { reason: expect.stringContaining('holds none of the eligible roles') },
    });

    const status = await cli(['status', chainId]);
    expect(status.stdout).toContain('approved by alice (sre-lead); still needed: 1');
    expect(status.stdout).toContain('rejected bob deny — approver holds none of the eligible roles');

    const wrongStep = await cli(['approve', chainId, '--step', 'nope', '--as', 'carol', '--roles', 'sre-lead']);
    expect(wrongStep.code).toBe(1);
    expect(wrongStep.stderr).toContain('--step: step nope is not awaiting approval');

    const done = await cli(['approve', chainId, '--as', 'carol', '--roles', 'sre-lead', '--json']);
    expect(done.code).toBe(0);
    expect(((await g.client.workflow.getHandle(chainId).result()) as ChainResult).status).toBe('Completed');
  });

  it('prints a vote for the Temporal UI / CLI path, which the pinned Temporal CLI sends as a signal; a credential is no vote', async () => {
    const { chainId } = await awaitingApproval(prodDeploy());
    const printed = await cli(['approve', chainId, '--as', 'alice', '--roles', 'sre-lead', '--print-token']);
    expect({ code: printed.code, stderr: printed.stderr }).toEqual({ code: 0, stderr: '' });
    const token = printed.stdout.trim();
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect((await g.gc.status(chainId)).steps[0]!.approval!.verdicts).toEqual([]); // printed, not sent

    const input = JSON.stringify({ token });
    const sent = await cli([
      'temporal',
      'workflow',
      'signal',
      '--address',
      testAddress(),
      '-w',
      chainId,
      '--name',
      'approve',
      '--input',
      input,
    ]);
    expect(sent.code).toBe(0);
    const after = await g.waitFor(chainId, (s) => (s.steps[0]!.approval?.verdicts.length ?? 0) > 0);
    expect(after.steps[0]!.approval!.verdicts).toEqual([
      expect.objectContaining({ via: 'approve-signal', counted: true, approver: 'alice' }),
    ]);

    // A workload credential sent as a vote is refused by the update's validator, before history.
    const wrong = await cli(['approve', chainId, '--token', (await g.creds()).credential]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('token: not an approval vote: its header has typ "jwt" (a workload credential?)');
    expect((await g.gc.status(chainId)).steps[0]!.approval!.verdicts).toHaveLength(1);
    await g.gc.revoke(chainId, { reason: 'print-token test done' });
  });

  it('finds the project keys from a subdirectory, reports a repeated vote as a repeat (exit 1) and a deny as the chain ending', async () => {
    const { chainId } = await awaitingApproval(prodDeploy());
    // A project whose `.governor` is the worker's home, and a shell two directories below it.
    const project = mkdtempSync(path.join(tmpdir(), 'governor-project-'));
    symlinkSync(g.home, path.join(project, '.governor'));
    const sub = path.join(project, 'services', 'deploy');
    mkdirSync(sub, { recursive: true });
    const fromSub = (args: string[]) =>
      runGovernorCli(
        args,
        { TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: '', GOVERNOR_TASK_QUEUE: g.taskQueue },
        sub,
      );

    const first = await fromSub(['approve', chainId, '--as', 'alice', '--roles', 'sre-lead']);
    expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
    expect(first.stdout.trim()).toBe('vote counted: alice approve; approved by alice; still needed: 1');
    expect(existsSync(path.join(sub, '.governor'))).toBe(false);
    // The headline and the step say the same thing about what is still needed.
    const shown = (await fromSub(['status', chainId])).stdout;
    expect(shown).toMatch(/status AwaitingApproval {2}pending: still needed: 1 approval\(s\) from sre-lead/);
    expect(shown).toContain('approved by alice (sre-lead); still needed: 1');

    const again = await fromSub(['approve', chainId, '--as', 'alice', '--roles', 'sre-lead']);
    expect(again.code).toBe(1);
    expect(again.stdout.trim()).toBe(
      'repeat vote: alice approve was already counted; counted once, nothing changed; approved by alice; still needed: 1',
    );

    const no = await fromSub(['deny', chainId, '--as', 'dave', '--roles', 'sre-lead', '--reason', 'not today']);
    expect({ code: no.code, stdout: no.stdout.trim() }).toEqual({
      code: 0,
      stdout: 'vote counted: dave deny; the step is denied: the chain ends Denied',
    });
    expect(((await g.client.workflow.getHandle(chainId).result()) as ChainResult).status).toBe('Denied');
  });
});
