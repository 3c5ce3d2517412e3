import { WorkflowUpdateFailedError } from '@temporalio/client';
import { issueApproval } from '../../identity';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { NULL_OUTPUT_DIGEST, proposeStepUpdate, type ProposeOutcome } from '../../contracts/session';
import { GovernorStatusKey } from '../../contracts/search-attributes';
import { canonicalJson, sha256Hex } from '../../core/canonical';
import { createReplayer, fetchChainHistories, verifyChain } from '../../audit/verify';
import { buildProof, verifyProof } from '../../audit/proof';
import { loadArchivedBundle } from '../../policies/bundle-archive';
import { loadPrivateKey, loadPublicJwks } from '../../identity';
import { sessionTestBundle } from '../harness/session-bundle';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { startGovernorWorker, testAddress } from '../harness/temporal';
import { runGovernorCli } from '../harness/cli';
import { eventually } from '../harness/eventually';

/*
 * Agent sessions (DESIGN §9, issue 16 item 1) on the real dev server: proposals governed like declared
 * steps, refused when they do not belong, serialized in acceptance order, closed by the agent, by an
 * idle timeout or by revocation, and proven by `verify` like any chain.
 */

const bundle = sessionTestBundle;

let g: Governed;
let policiesDir: string;
/** The governor worker started again by the worker-down test. */
let restarted: Awaited<ReturnType<typeof startGovernorWorker>> | undefined;
beforeAll(async () => {
  policiesDir = bundle('5m');
  g = await setupGoverned({ policiesDir });
}, 60_000);
afterAll(async () => {
  await restarted?.stop();
  await g?.stop();
});

const file = (id: string) => ({ type: 'Doc', id });
const fsStep = (id: string, action: string, resource: string, extra: Record<string, unknown> = {}) =>
  g.serviceStep(id, action, file(resource), extra);

async function open(extra: Record<string, unknown> = {}): Promise<{ sessionId: string; credential: string }> {
  const c = await g.creds();
  const { sessionId } = await g.gc.openSession({ workload: WORKLOAD, owner: 'team-agents', ...c, ...extra });
  return { sessionId, credential: c.credential };
}

/** The GovernorError a promise rejects with. */
async function refusal(p: Promise<unknown>): Promise<GovernorError> {
  try {
    await p;
  } catch (err) {
    return err as GovernorError;
  }
  throw new Error('expected a refusal');
}

const ledgerKeys = (sessionId: string) => g.ledger.all().filter((e) => e.idempotencyKey.startsWith(`${sessionId}/`));

describe('agent sessions', () => {
  it('executes an allowed proposal and returns its output, digest and receipt; denies another with reason and policies', async () => {
    const { sessionId, credential } = await open();
    const read = await g.gc.proposeStep(sessionId, { step: fsStep('r1', 'doc.read', 'notes'), credential });
    expect(read).toMatchObject({ outcome: 'executed', stepId: 'r1', output: { executed: `${sessionId}/r1` } });
    const executed = read as Extract<ProposeOutcome, { outcome: 'executed' }>;
    expect(executed.outputDigest).toBe(sha256Hex(canonicalJson(executed.output)));
    const state = await g.gc.status(sessionId);
    expect(state.receiptHead.hash).toBe(executed.receiptHash);
    expect(state.steps[0]).toMatchObject({ id: 'r1', status: 'completed', outputDigest: executed.outputDigest });

    const denied = await g.gc.proposeStep(sessionId, { step: fsStep('s1', 'doc.read', 'secrets'), credential });
    expect(denied).toEqual({
      outcome: 'denied',
      stepId: 's1',
      reason: 'denied by fs-secrets-forbid (the secrets file is never touched by an agent)',
      determiningPolicies: ['fs-secrets-forbid'],
    });
    // A denied step does not end the session: the agent goes on.
    const noop = await g.gc.proposeStep(sessionId, {
      step: { id: 'n1', action: 'doc.read', resource: file('notes'), executor: { type: 'noop' } },
      credential,
    });
    expect(noop).toMatchObject({ outcome: 'executed', output: null, outputDigest: NULL_OUTPUT_DIGEST });
    const result = await g.gc.closeSession(sessionId, { reason: 'done' });
    expect(result).toMatchObject({ status: 'Completed', reason: 'closed: done' });
    expect(result.steps.map((s) => [s.id, s.status])).toEqual([
      ['r1', 'completed'],
      ['s1', 'denied'],
      ['n1', 'completed'],
    ]);
    expect(result.checkpoint).toEqual(expect.any(String));
    expect(ledgerKeys(sessionId).map((e) => e.idempotencyKey)).toEqual([`${sessionId}/r1`]);
    // `list` (and so `revoke --workload`, which uses the same query) covers sessions.
    const listed = await eventually('the session to be listed', async () => {
      const found = await g.gc.list({ workload: WORKLOAD, status: 'Completed' });
      return found.find((c) => c.chainId === sessionId);
    });
    expect(listed).toMatchObject({ workload: WORKLOAD, status: 'Completed' });
  });

  it('closeSession is idempotent: concurrent closes and a close after the end all answer the one result', async () => {
    const { sessionId, credential } = await open();
    await g.gc.proposeStep(sessionId, { step: fsStep('r1', 'doc.read', 'notes'), credential });
    const closes = await Promise.all(
      ['a', 'b', 'c'].map((who) => g.gc.closeSession(sessionId, { reason: `closed by ${who}` })),
    );
    const ended = await g.gc.result(sessionId);
    expect(ended).toMatchObject({ status: 'Completed', reason: expect.stringMatching(/^closed: closed by [abc]$/) });
    for (const r of closes) expect(r).toEqual(ended);
    expect(await g.gc.closeSession(sessionId, { reason: 'late' })).toEqual(ended);
    // An ended session still refuses proposals, and nothing ran twice.
    await expect(g.gc.proposeStep(sessionId, { step: fsStep('r2', 'doc.read', 'notes'), credential })).rejects.toThrow(
      /session has ended: Completed/,
    );
    expect(ledgerKeys(sessionId)).toHaveLength(1);
  });

  it('escalates: awaiting-approval at once, then votes, then awaitStep returns the execution, which happened once', async () => {
    const { sessionId, credential } = await open();
    const first = await g.gc.proposeStep(sessionId, { step: fsStep('w1', 'doc.write', 'protected'), credential });
    expect(first).toMatchObject({ outcome: 'awaiting-approval', stepId: 'w1', pendingRoles: ['sre-lead'] });
    const state = await g.gc.status(sessionId);
    expect(state.status).toBe('AwaitingApproval');
    const digest = state.steps[0]!.approval!.stepDigest;
    const waiting = g.gc.awaitStep(sessionId, 'w1', { credential });
    for (const sub of ['alice', 'bob']) {
      const token = await issueApproval({
        home: g.home,
        sub,
        roles: ['sre-lead'],
        chainId: sessionId,
        stepId: 'w1',
        stepDigest: digest,
        decision: 'approve',
      });
      await g.gc.submitApproval(sessionId, token);
    }
    expect(await waiting).toMatchObject({ outcome: 'executed', stepId: 'w1', output: { executed: `${sessionId}/w1` } });
    // Asked again, the same outcome: the step ran exactly once.
    expect(await g.gc.awaitStep(sessionId, 'w1', { credential })).toMatchObject({ outcome: 'executed' });
    expect(ledgerKeys(sessionId)).toHaveLength(1);
    expect(g.ledger.all().filter((e) => e.idempotencyKey === `${sessionId}/w1`)).toHaveLength(1);
    await g.gc.closeSession(sessionId);
  });

  it('a revocation while a step awaits approval denies it: awaitStep says so, nothing runs', async () => {
    const { sessionId, credential } = await open();
    const first = await g.gc.proposeStep(sessionId, { step: fsStep('w1', 'doc.write', 'protected'), credential });
    expect(first.outcome).toBe('awaiting-approval');
    const waiting = g.gc.awaitStep(sessionId, 'w1', { credential });
    // The awaitStep update is accepted before the revocation (its handler then waits for the outcome).
    await eventually('the awaitStep update to be accepted', async () => {
      const history = await g.client.workflow.getHandle(sessionId).fetchHistory();
      return (history.events ?? []).some(
        (e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'awaitStep',
      );
    });
    await g.gc.revoke(sessionId, { reason: 'stop', by: 'sec' });
    expect(await waiting).toMatchObject({ outcome: 'denied', stepId: 'w1', reason: 'revoked: stop' });
    expect(await g.gc.result(sessionId)).toMatchObject({ status: 'Revoked' });
    expect(ledgerKeys(sessionId)).toHaveLength(0);
  });

  it('closing while a step awaits approval denies that step at once instead of waiting out its deadline', async () => {
    const { sessionId, credential } = await open();
    await g.gc.proposeStep(sessionId, { step: fsStep('r1', 'doc.read', 'notes'), credential });
    const first = await g.gc.proposeStep(sessionId, { step: fsStep('w1', 'doc.write', 'protected'), credential });
    expect(first.outcome).toBe('awaiting-approval');
    const result = await g.gc.closeSession(sessionId, { reason: 'agent done' });
    expect(result.status).toBe('Completed');
    expect(result.steps.map((s) => [s.id, s.status])).toEqual([
      ['r1', 'completed'],
      ['w1', 'denied'],
    ]);
    expect(result.steps[1]!.approval?.outcome).toBe('denied');
    expect(result.steps[1]!.error).toBe('the session was closed while the step awaited approval');
    expect(await g.gc.awaitStep(sessionId, 'w1', { credential }).catch((e: Error) => e.message)).toMatch(/closed/);
    expect(ledgerKeys(sessionId).map((e) => e.idempotencyKey)).toEqual([`${sessionId}/r1`]);
    const replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
    try {
      const histories = await fetchChainHistories(g.client, sessionId);
      const report = await verifyChain({ histories, home: g.home, chainId: sessionId, replayer });
      expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    } finally {
      await replayer.close();
    }
  });

  it('refuses proposals without a credential, with another workload’s, after close and after revoke; nothing changes', async () => {
    const { sessionId, credential } = await open();
    await g.gc.proposeStep(sessionId, { step: fsStep('a', 'doc.read', 'notes'), credential });
    const before = await g.gc.status(sessionId);

    const missing = await refusal(g.gc.proposeStep(sessionId, { step: fsStep('b', 'doc.read', 'notes') } as never));
    expect(missing).toMatchObject({ code: ErrorCode.InvalidInput, field: 'credential' });
    const other = await g.creds('agent:someone-else');
    const foreign = await refusal(
      g.gc.proposeStep(sessionId, { step: fsStep('b', 'doc.read', 'notes'), credential: other.credential }),
    );
    expect(foreign).toMatchObject({ code: ErrorCode.InvalidInput, field: 'credential' });
    expect(foreign.message).toMatch(/another workload/);
    expect(await g.gc.status(sessionId)).toEqual(before);

    await g.gc.closeSession(sessionId);
    const closed = await refusal(g.gc.proposeStep(sessionId, { step: fsStep('c', 'doc.read', 'notes'), credential }));
    expect(closed).toMatchObject({ code: ErrorCode.InvalidInput, field: 'session' });
    expect(closed.message).toMatch(/^session: closed \(the session has ended: Completed\)/);
    expect(ledgerKeys(sessionId)).toHaveLength(1);

    // Revoked: the session ends Revoked with its checkpoint; a later proposal is refused.
    const second = await open();
    await g.gc.proposeStep(second.sessionId, {
      step: fsStep('a', 'doc.read', 'notes'),
      credential: second.credential,
    });
    await g.gc.revoke(second.sessionId, { reason: 'agent misbehaved', by: 'sec' });
    const result = await g.gc.result(second.sessionId);
    expect(result).toMatchObject({ status: 'Revoked', reason: 'revoked by sec: agent misbehaved' });
    expect(result.checkpoint).toEqual(expect.any(String));
    const after = await refusal(
      g.gc.proposeStep(second.sessionId, { step: fsStep('b', 'doc.read', 'notes'), credential: second.credential }),
    );
    expect(after).toMatchObject({ code: ErrorCode.InvalidInput, field: 'session' });
    expect(after.message).toMatch(/ended: Revoked/);
    expect(ledgerKeys(second.sessionId)).toHaveLength(1);
    const described = await g.client.workflow.getHandle(second.sessionId).describe();
    expect(described.typedSearchAttributes.get(GovernorStatusKey)).toBe('Revoked');
  });

  it('refuses malformed proposals naming the field, in the SDK and (raw updates) in the workflow', async () => {
    const { sessionId, credential } = await open();
    await g.gc.proposeStep(sessionId, { step: fsStep('dup', 'doc.read', 'notes'), credential });
    const before = await g.gc.status(sessionId);
    const { resource: _r, ...noResource } = fsStep('x', 'doc.read', 'notes');
    const cases: [string, unknown, RegExp][] = [
      ['missing resource', noResource, /^step\.resource: /],
      ['unknown executor', { ...fsStep('x', 'doc.read', 'notes'), executor: { type: 'shell' } }, /^step\.executor/],
      ['oversize input', fsStep('x', 'doc.read', 'notes', { input: { blob: 'x'.repeat(300_000) } }), /step\.input/],
      ['session context', fsStep('x', 'doc.read', 'notes', { context: { session: { steps: 0 } } }), /context\.session/],
    ];
    for (const [, step, field] of cases) {
      const sdk = await refusal(g.gc.proposeStep(sessionId, { step, credential }));
      expect(sdk).toMatchObject({ code: ErrorCode.InvalidInput });
      expect(sdk.message).toMatch(field);
      // The same proposal sent raw (another SDK): the workflow's validator refuses it, naming the field.
      const raw = await refusal(
        g.client.workflow
          .getHandle(sessionId)
          .executeUpdate(proposeStepUpdate, { args: [{ step, credential } as never] }),
      );
      expect(raw).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((raw as unknown as { cause: { message: string; type: string } }).cause).toMatchObject({
        type: ErrorCode.InvalidInput,
        message: expect.stringMatching(field),
      });
    }
    const dup = await refusal(g.gc.proposeStep(sessionId, { step: fsStep('dup', 'doc.read', 'notes'), credential }));
    expect(dup).toMatchObject({ code: ErrorCode.InvalidInput, field: 'step.id' });

    // Hostile raw updates: not an object, a credential that is no JWT, a forged one naming this workload.
    const handle = g.client.workflow.getHandle(sessionId);
    const hostile: [unknown, RegExp][] = [
      ['just a string', /\(root\)/],
      [{ step: fsStep('h1', 'doc.read', 'notes'), credential: 'not-a-jwt' }, /^credential: not a JWT/],
      [{ step: fsStep('h2', 'doc.read', 'notes'), credential, extra: true }, /Unrecognized key/],
    ];
    for (const [arg, message] of hostile) {
      const raw = await refusal(handle.executeUpdate('proposeStep', { args: [arg] }));
      expect((raw as unknown as { cause: { message: string } }).cause.message).toMatch(message);
    }
    // A forged credential naming this workload passes the validator's first filter, then fails
    // verification before anything is governed: refused, the step never appears.
    const [h, , sig] = credential.split('.');
    const forgedBody = Buffer.from(JSON.stringify({ sub: WORKLOAD, iss: 'x', aud: 'y', exp: 9e9, iat: 1 })).toString(
      'base64url',
    );
    const forged = await refusal(
      handle.executeUpdate(proposeStepUpdate, {
        args: [{ step: fsStep('h3', 'doc.read', 'notes'), credential: `${h}.${forgedBody}.${sig}` } as never],
      }),
    );
    expect((forged as unknown as { cause: { message: string } }).cause.message).toMatch(/^credential: /);
    const after = await g.gc.status(sessionId);
    expect(after.steps).toEqual(before.steps);
    expect(after.receiptHead).toEqual(before.receiptHead);
    expect(ledgerKeys(sessionId)).toHaveLength(1);
    await g.gc.closeSession(sessionId);
  });

  it('serializes concurrent proposals in the order the workflow accepted them', async () => {
    const { sessionId, credential } = await open();
    const ids = ['c1', 'c2', 'c3', 'c4', 'c5'];
    const outcomes = await Promise.all(
      ids.map((id) => g.gc.proposeStep(sessionId, { step: fsStep(id, 'doc.read', 'notes'), credential })),
    );
    expect(outcomes.map((o) => o.outcome)).toEqual(ids.map(() => 'executed'));
    const result = await g.gc.closeSession(sessionId);
    // The order the steps were governed (status/result) is the order their updates were accepted (history).
    const history = await g.client.workflow.getHandle(sessionId).fetchHistory();
    const accepted = (history.events ?? [])
      .map((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input)
      .filter((input) => input?.name === 'proposeStep')
      .map((input) => JSON.parse(Buffer.from(input!.args!.payloads![0]!.data!).toString('utf8')).step.id as string);
    expect([...accepted].sort()).toEqual(ids);
    const governedOrder = result.steps.map((s) => s.id);
    expect(governedOrder).toEqual(accepted);
    expect(ledgerKeys(sessionId).map((e) => e.idempotencyKey)).toEqual(governedOrder.map((id) => `${sessionId}/${id}`));
  });

  it('gives policy a session summary: the third deletion of a session is denied', async () => {
    const { sessionId, credential } = await open();
    const del = (id: string) =>
      g.gc.proposeStep(sessionId, { step: fsStep(id, 'doc.delete', `tmp-${id}`), credential });
    expect((await del('d1')).outcome).toBe('executed');
    expect((await del('d2')).outcome).toBe('executed');
    expect(await del('d3')).toMatchObject({
      outcome: 'denied',
      reason: expect.stringContaining('at most two deletions per session'),
      determiningPolicies: ['fs-session-delete-limit'],
    });
    const state = await g.gc.status(sessionId);
    const request = state.steps[2]!.decision;
    expect(request?.effect).toBe('deny');
    await g.gc.closeSession(sessionId);
  });

  it('a session verifies like any chain, and a tampered output is detected', async () => {
    const { sessionId, credential } = await open({ options: { continueAsNewAfterSteps: 2 } });
    for (const id of ['v1', 'v2', 'v3']) {
      const o = await g.gc.proposeStep(sessionId, { step: fsStep(id, 'doc.read', 'notes'), credential });
      expect(o.outcome).toBe('executed');
    }
    await g.gc.closeSession(sessionId);
    const histories = await fetchChainHistories(g.client, sessionId);
    expect(histories.length).toBeGreaterThan(1); // continued as new
    // The worker's own workflow bundle (prebuilt by the global setup), one replayer for every verification.
    const replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
    const report = await verifyChain({ histories, home: g.home, chainId: sessionId, replayer });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe('verified');

    // Offline: a sealed proof of the session verifies without the server.
    const proof = await buildProof({
      chainId: sessionId,
      histories,
      bundleDigests: report.bundleDigests,
      bundles: (d) => loadArchivedBundle(g.home, d),
      receiptKeys: loadPublicJwks(g.home, 'receipt'),
      signer: await loadPrivateKey(g.home, 'receipt'),
    });
    const offline = await verifyProof(JSON.parse(JSON.stringify(proof)), {
      trustedReceiptJwks: loadPublicJwks(g.home, 'receipt'),
      replayer,
    });
    expect(offline.checks.filter((c) => !c.ok)).toEqual([]);

    // Tamper with the output digest the session returned for v1 (its proposeStep update result).
    type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    const first = JSON.parse(JSON.stringify(histories[0])) as Json;
    let tampered = 0;
    for (const event of first.events as Json[]) {
      const payload = event.workflowExecutionUpdateCompletedEventAttributes?.outcome?.success?.payloads?.[0];
      if (!payload) continue;
      const outcome = JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8'));
      if (outcome.stepId !== 'v1') continue;
      outcome.outputDigest = sha256Hex('something else');
      payload.data = Buffer.from(JSON.stringify(outcome)).toString('base64');
      tampered++;
    }
    expect(tampered).toBe(1);
    const bad = await verifyChain({
      histories: [first, ...histories.slice(1)],
      runs: histories.runs,
      home: g.home,
      chainId: sessionId,
      replayer,
    });
    const failed = bad.checks.filter((c) => !c.ok);
    expect(failed.map((c) => c.name)).toEqual(['bindings']);
    expect(JSON.stringify(failed)).toMatch(
      /the proposeStep outcome of v1: its output digest is not the recorded output's/,
    );
    expect(bad.verdict).toBe('failed');

    // A worker that gave policy a false session summary (v3, decided in the second run after two reads
    // completed, claims none had) is caught: the summary is recomputed from the receipts across runs.
    const second = JSON.parse(JSON.stringify(histories[1])) as Json;
    let lied = 0;
    for (const event of second.events as Json[]) {
      for (const field of Object.values(event.markerRecordedEventAttributes?.details ?? {}) as Json[]) {
        for (const payload of field.payloads ?? []) {
          const value = JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8'));
          if (value?.receipt?.stepId !== 'v3' || !value.request?.context?.session) continue;
          expect(value.request.context.session).toEqual({ steps: 2, actions: { 'doc.read': 2 } });
          value.request.context.session = { steps: 0, actions: {} };
          payload.data = Buffer.from(JSON.stringify(value)).toString('base64');
          lied++;
        }
      }
    }
    expect(lied).toBe(1);
    const liar = await verifyChain({
      histories: [histories[0], second, ...histories.slice(2)],
      runs: histories.runs,
      home: g.home,
      chainId: sessionId,
      replayer,
    });
    expect(liar.verdict).toBe('failed');
    expect(JSON.stringify(liar.checks.filter((c) => !c.ok))).toMatch(
      /receipt \d+ \(decision, step v3\): evaluated with a session summary \(context.session\) that is not the count of the steps completed before it/,
    );
    await replayer.close();
  });

  it('a proposal sent while no governor worker runs is not lost', async () => {
    const { sessionId, credential } = await open();
    await g.gc.proposeStep(sessionId, { step: fsStep('before', 'doc.read', 'notes'), credential });
    await g.governor.stop();
    const pending = g.gc.proposeStep(sessionId, { step: fsStep('while-down', 'doc.read', 'notes'), credential });
    let settled = false;
    void pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    // Not an assertion on time: gives the update the chance to reach the server while no worker runs.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(settled).toBe(false);
    restarted = await startGovernorWorker({
      home: g.home,
      taskQueue: g.taskQueue,
      policiesDir,
      maxCachedWorkflows: 100,
    });
    expect(await pending).toMatchObject({ outcome: 'executed', stepId: 'while-down' });
    expect(ledgerKeys(sessionId)).toHaveLength(2);
    await g.gc.closeSession(sessionId);
  });
});

describe('agent sessions from the CLI', () => {
  const cli = (args: string[]) =>
    runGovernorCli(args, { TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: g.home, GOVERNOR_TASK_QUEUE: g.taskQueue });

  it('opens, proposes (executed: exit 0; denied: exit 2; malformed: exit 1 naming the field) and closes, printing JSON', async () => {
    const opened = await cli(['session', 'open', '--workload', WORKLOAD, '--as', WORKLOAD, '--json']);
    expect(opened).toMatchObject({ code: 0 });
    const { sessionId } = JSON.parse(opened.stdout) as { sessionId: string };
    const step = (id: string, resource: string) =>
      JSON.stringify({ id, action: 'doc.read', resource: file(resource), executor: { type: 'noop' } });
    const ok = await cli(['session', 'propose', sessionId, '--step', step('one', 'notes'), '--as', WORKLOAD, '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      outcome: 'executed',
      stepId: 'one',
      outputDigest: NULL_OUTPUT_DIGEST,
    });
    const no = await cli([
      'session',
      'propose',
      sessionId,
      '--step',
      step('two', 'secrets'),
      '--as',
      WORKLOAD,
      '--json',
    ]);
    expect(no.code).toBe(2);
    expect(JSON.parse(no.stdout)).toMatchObject({ outcome: 'denied', determiningPolicies: ['fs-secrets-forbid'] });
    const bad = await cli(['session', 'propose', sessionId, '--step', '{"id":"three"}', '--as', WORKLOAD, '--json']);
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(/step\.action/);
    const closed = await cli(['session', 'close', sessionId, '--reason', 'cli done', '--json']);
    expect(closed.code).toBe(0);
    expect(JSON.parse(closed.stdout)).toMatchObject({ status: 'Completed', reason: 'closed: cli done' });
  });
});

describe('agent sessions: idle timeout', () => {
  let idle: Governed;
  beforeAll(async () => {
    idle = await setupGoverned({ policiesDir: bundle('2s') });
  }, 60_000);
  afterAll(async () => {
    await idle?.stop();
  });

  it('closes an idle session with its final checkpoint', async () => {
    const c = await idle.creds();
    const { sessionId } = await idle.gc.openSession({ workload: WORKLOAD, ...c });
    const result = await idle.gc.result(sessionId);
    expect(result).toMatchObject({ status: 'Completed', reason: 'closed: idle for 2000 ms', steps: [] });
    expect(result.checkpoint).toEqual(expect.any(String));
  });
});
