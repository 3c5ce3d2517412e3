import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { initKeys, issueApproval, keyPaths } from '../../identity';
import { PROOF_FORMAT } from '../../audit/proof';
import { createReplayer, fetchChainHistories, verifyChain, type Replayer, type VerifyReport } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { testAddress } from '../harness/temporal';
import { runVerifyCli } from '../harness/verify-cli';

/**
 * `governor verify` on real chains of every outcome: live (history fetched from the server) and
 * offline (an exported proof verified with no Temporal server).
 */

// The default bundle with a 2 s approval deadline on payments, so the deadline path ends in seconds.
const bundleDir = defaultBundleWith(() => undefined, {
  'payments.cedar': (t) => t.replace(/@deadline\("[^"]+"\)/g, '@deadline("2s")'),
});

let g: Governed;
let replayer: Replayer;
beforeAll(async () => {
  g = await setupGoverned({
    policiesDir: bundleDir,
    revocationCacheTtlMs: 0, // every decision reads the registry: no waiting for a cached list to expire
    // A service activity that runs until cancelled (heartbeating, so the cancellation reaches it).
    extraActivities: () => ({
      async hang() {
        const ctx = Context.current();
        for (;;) {
          ctx.heartbeat();
          await ctx.sleep(200);
        }
      },
    }),
  });
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});
afterAll(async () => {
  await replayer?.close();
  await g?.stop();
});

const step = (
  id: string,
  action: string,
  resource: { type: string; id: string },
  extra: Record<string, unknown> = {},
) => g.serviceStep(id, action, resource, extra);
const prod = { type: 'Environment', id: 'prod' };
const staging = { type: 'Environment', id: 'staging' };

/**
 * Fetches every run of the chain and verifies it with the worker's home (receipt key, bundle
 * archive); with the chain's result, the receipts verified must be exactly the ones it sealed.
 */
async function verifyLive(chainId: string, result?: ChainResult): Promise<VerifyReport> {
  const histories = await fetchChainHistories(g.client, chainId);
  const report = await verifyChain({ histories, chainId, home: g.home, replayer });
  if (result) expect(report.receipts).toBe(result.receiptHead.seq);
  return report;
}

function expectVerified(report: VerifyReport): void {
  expect(report.checks.filter((c) => !c.ok)).toEqual([]);
  expect(report.checks.map((c) => c.name)).toEqual([
    'history',
    'runs',
    'replay',
    'receipts',
    'checkpoint',
    'bindings',
    'decisions',
  ]);
  expect(report.verdict).toBe('verified');
}

async function approve(
  chainId: string,
  stepId: string,
  digest: string,
  sub: string,
  roles: string[],
  extra: { justification?: string } = {},
): Promise<void> {
  const token = await issueApproval({
    home: g.home,
    sub,
    roles,
    chainId,
    stepId,
    stepDigest: digest,
    decision: 'approve',
    ...extra,
  });
  await g.gc.submitApproval(chainId, token);
}

describe('governor verify on real chains', () => {
  it('verifies a completed chain (a service step and a built-in step)', async () => {
    const r = await g.run({
      workload: WORKLOAD,
      steps: [
        step('deploy', 'deploy', staging),
        { id: 'announce', action: 'notify', resource: { type: 'Channel', id: 'releases' }, executor: { type: 'noop' } },
      ],
    });
    expect(r.status).toBe('Completed');
    const report = await verifyLive(r.chainId, r);
    expectVerified(report);
    // decision + execution per step, then the checkpoint
    expect(report).toMatchObject({ status: 'Completed', receipts: 5, decisions: 2, runs: 1 });
  });

  it('verifies a denied chain whose completed step was compensated', async () => {
    const r = await g.run({
      workload: WORKLOAD,
      steps: [
        step('deploy', 'deploy', staging, { compensation: { action: 'rollback', executor: { type: 'noop' } } }),
        step('drop', 'drop_table', { type: 'Database', id: 'prod' }),
      ],
    });
    expect(r.status).toBe('Denied');
    expect(r.steps.map((s) => s.status)).toEqual(['compensated', 'denied']);
    const report = await verifyLive(r.chainId, r);
    expectVerified(report);
    // deploy (decision, execution), drop (decision), compensation (decision, execution), checkpoint
    expect(report).toMatchObject({ status: 'Denied', receipts: 6, decisions: 3 });
  });

  it('verifies an escalated, coordinated chain approved by a quorum, and one let through by break-glass', async () => {
    const handle = await g.gc.start(
      { workload: WORKLOAD, owner: 'team-release', steps: [step('deploy', 'deploy', prod)] },
      await g.creds(),
    );
    const waiting = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    const digest = waiting.steps[0]!.approval!.stepDigest;
    await approve(handle.workflowId, 'deploy', digest, 'alice', ['sre-lead']);
    await approve(handle.workflowId, 'deploy', digest, 'carol', ['sre-lead']);
    const approved = (await handle.result()) as ChainResult;
    expect(approved.status).toBe('Completed');
    // prod is a coordinated resource (cluster:prod-eu): the slot request, grant and release are verified too
    expect(approved.steps[0]!.coordination).toMatchObject({ domain: 'cluster:prod-eu', status: 'released' });
    const report = await verifyLive(handle.workflowId, approved);
    expectVerified(report);
    // escalate, two votes, allow after quorum, (the coordination verdict: prod is a coordinated resource), execution, checkpoint
    expect(report).toMatchObject({ status: 'Completed', decisions: 2 });
    expect(report.receipts).toBeGreaterThanOrEqual(6);

    const glass = await g.gc.start(
      { workload: WORKLOAD, owner: 'team-release', steps: [step('deploy', 'deploy', prod)] },
      await g.creds(),
    );
    const pending = await g.waitFor(glass.workflowId, (s) => s.status === 'AwaitingApproval');
    await approve(glass.workflowId, 'deploy', pending.steps[0]!.approval!.stepDigest, 'sam', ['security-officer'], {
      justification: 'outage INC-1, SREs unreachable',
    });
    const result = (await glass.result()) as ChainResult;
    expect(result.steps[0]!.breakGlass).toMatchObject({ approver: 'sam' });
    const viaGlass = await verifyLive(glass.workflowId, result);
    expectVerified(viaGlass);
    expect(viaGlass.status).toBe('Completed');
  });

  it('verifies a chain denied at its approval deadline', async () => {
    const r = await g.run({
      workload: WORKLOAD,
      steps: [step('pay', 'pay', { type: 'Account', id: 'acme' }, { context: { amount: 50_000, currency: 'EUR' } })],
    });
    expect(r.status).toBe('Denied');
    expect(r.steps[0]!.approval!.outcome).toBe('expired');
    const report = await verifyLive(r.chainId, r);
    expectVerified(report);
    expect(report).toMatchObject({ status: 'Denied', receipts: 2, decisions: 1 });
  });

  it('verifies a revoked chain, and a chain of a revoked workload denied before policy ran', async () => {
    const handle = await g.gc.start({ workload: WORKLOAD, steps: [step('deploy', 'deploy', prod)] }, await g.creds());
    await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    await g.gc.revoke(handle.workflowId, { reason: 'verify test', by: 'test' });
    const revoked = (await handle.result()) as ChainResult;
    expect(revoked.status).toBe('Revoked');
    const report = await verifyLive(handle.workflowId, revoked);
    expectVerified(report);
    // escalate, revocation, checkpoint
    expect(report).toMatchObject({ status: 'Revoked', receipts: 3, decisions: 1 });

    // Revoked with a step in flight: the service activity is cancelled, the chain compensates nothing.
    const inFlight = await g.gc.start(
      {
        workload: WORKLOAD,
        steps: [
          step('first', 'deploy', staging),
          {
            id: 'second',
            action: 'deploy',
            resource: staging,
            executor: { type: 'activity', taskQueue: g.serviceQueue, activityType: 'hang', heartbeatTimeoutMs: 2000 },
          },
        ],
      },
      await g.creds(),
    );
    await g.waitFor(inFlight.workflowId, (s) => s.steps[1]!.status === 'executing');
    await g.gc.revoke(inFlight.workflowId, { reason: 'verify test', by: 'test' });
    const stopped = (await inFlight.result()) as ChainResult;
    expect(stopped.steps.map((s) => s.status)).toEqual(['completed', 'denied']);
    const cancelled = await verifyLive(inFlight.workflowId, stopped);
    expectVerified(cancelled);
    // first (decision, execution), second (decision), revocation, checkpoint
    expect(cancelled).toMatchObject({ status: 'Revoked', receipts: 5 });

    const workload = `agent:revoked-${Date.now().toString(36)}`;
    await g.gc.revokeWorkload({ workload, reason: 'verify test', by: 'test' });
    const denied = await g.run({ workload, steps: [step('deploy', 'deploy', staging)] }, await g.creds(workload));
    expect(denied.status).toBe('Denied');
    expect(denied.reason).toContain(`workload ${workload} is revoked`);
    const before = await verifyLive(denied.chainId, denied);
    expectVerified(before);
    expect(before.checks.find((c) => c.name === 'decisions')!.detail).toMatch(
      /^0 decision\(s\) re-evaluated with 0 bundle\(s\): identical; 1 made before policy ran, all deny$/,
    );
  });

  it('verifies a chain that continued as new across its runs', async () => {
    const long = await g.gc.start(
      { workload: WORKLOAD, steps: [1, 2, 3].map((i) => step(`s${i}`, 'deploy', staging)) },
      { ...(await g.creds()), options: { continueAsNewAfterSteps: 2 } },
    );
    const result = (await long.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    const report = await verifyLive(long.workflowId, result);
    expectVerified(report);
    // 3 decisions + 3 executions + the final checkpoint (+ a checkpoint per continue-as-new when recorded), one unbroken chain
    expect(report).toMatchObject({ runs: 2, status: 'Completed' });
    expect(report.receipts).toBeGreaterThanOrEqual(7);
    const [first, second] = report.runList;
    expect(report.runList).toEqual([
      {
        runId: long.firstExecutionRunId,
        status: 'ContinuedAsNew',
        relation: 'first',
        detail: 'first run; run 1 of the chain',
        lineage: true,
      },
      {
        runId: second!.runId,
        status: 'Completed',
        relation: 'continued-as-new',
        detail: `continued as new from run ${first!.runId}; run 2 of the chain`,
        lineage: true,
      },
    ]);
  });
});

describe('governor verify (CLI): live, --export, offline --proof', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-verify-'));
  let chainId: string;

  /** Runs `governor verify …` in process; returns the exit code and the JSON it printed. */
  const cli = (args: string[], env: Record<string, string>) => runVerifyCli(args, { home: g.home, env });

  beforeAll(async () => {
    const handle = await g.gc.start(
      {
        workload: WORKLOAD,
        owner: 'team-release',
        steps: [step('build', 'deploy', staging), step('deploy', 'deploy', prod)],
      },
      await g.creds(),
    );
    const waiting = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    const digest = waiting.steps[1]!.approval!.stepDigest;
    await approve(handle.workflowId, 'deploy', digest, 'alice', ['sre-lead']);
    await approve(handle.workflowId, 'deploy', digest, 'carol', ['sre-lead']);
    expect(((await handle.result()) as ChainResult).status).toBe('Completed');
    chainId = handle.workflowId;
  });

  it('verifies a chain from the server (exit 0) and exports a sealed proof', async () => {
    const proofFile = path.join(tmp, 'proof.json');
    const r = await cli([chainId, '--export', proofFile], { TEMPORAL_ADDRESS: testAddress() });
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    expect(r.json.notAnchored).toBeUndefined();
    expect(r.json).toMatchObject({
      ok: true,
      verdict: 'verified',
      chainId,
      status: 'Completed',
      proof: proofFile,
      anchored: true,
    });
    const proof = JSON.parse(fs.readFileSync(proofFile, 'utf8')) as Record<string, unknown>;
    // Every exported proof carries its anchor in the chain's queue's transparency log (outside the seal).
    expect(Object.keys(proof).sort()).toEqual([
      'anchor',
      'bundles',
      'chainId',
      'exportedAt',
      'format',
      'histories',
      'receiptKeys',
      'runs',
      'seal',
    ]);
    expect(proof).toMatchObject({ format: PROOF_FORMAT, chainId });
    // The run list: the chain's one run, in the lineage (its history is `histories[0]`).
    expect(proof.runs).toEqual([{ runId: expect.any(String), lineage: 0 }]);
    expect(Object.keys(proof.bundles as object)).toEqual(r.json.bundleDigests);
  });

  it('verifies the proof offline with no Temporal server (exit 0), and fails it with another trusted key (exit 2)', async () => {
    const proofFile = path.join(tmp, 'proof.json');
    const offline = { TEMPORAL_ADDRESS: '127.0.0.1:1' }; // nothing listens there: any connection attempt would fail
    const r = await cli(['--proof', proofFile], offline);
    expect(r.error).toBeUndefined();
    expect(r.code).toBe(0);
    expect((r.json.checks as { name: string; ok: boolean }[]).map((c) => [c.name, c.ok])).toEqual(
      [
        'proof',
        'seal',
        'receipt-key',
        'bundles',
        'history',
        'runs',
        'replay',
        'receipts',
        'checkpoint',
        'bindings',
        'decisions',
        'anchor',
      ].map((n) => [n, true]),
    );

    const stranger = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-stranger-'));
    await initKeys(stranger, { names: ['receipt'] });
    const other = await cli(['--proof', proofFile, '--receipt-jwks', keyPaths(stranger, 'receipt').jwksPath], offline);
    expect(other.code).toBe(2);
    const failed = (other.json.checks as { name: string; ok: boolean; problems?: string[] }[]).filter((c) => !c.ok);
    expect(failed.map((c) => c.name)).toEqual(expect.arrayContaining(['seal', 'receipt-key', 'receipts']));
    // Only what the receipt key signs fails (receipts, the seal, sealed coordination requests): nothing else.
    // The anchor's tree head and checkpoint are signed with the receipt key too.
    expect(failed.find((c) => c.name === 'anchor')?.problems).toEqual([
      expect.stringMatching(/^tree head \d+ is not signed by a trusted receipt key$/),
      "the anchored leaf's checkpoint is not a receipt signature over its hash",
    ]);
    for (const c of failed.filter((x) => !['seal', 'receipt-key', 'anchor'].includes(x.name))) {
      expect({
        check: c.name,
        problems: c.problems!.filter((p) => !/(signature|seal) is not valid with the trusted receipt key$/.test(p)),
      }).toEqual({ check: c.name, problems: [] });
    }
    for (const untouched of ['proof', 'bundles', 'history', 'runs', 'replay', 'checkpoint', 'decisions'])
      expect(failed.map((c) => c.name)).not.toContain(untouched);

    const wrongChain = await cli(['someone-else', '--proof', proofFile], offline);
    expect(wrongChain.code).toBe(2);
    expect((wrongChain.json.checks as { name: string; ok: boolean; detail: string }[])[0]).toMatchObject({
      name: 'proof',
      ok: false,
      detail: `a proof of chain ${chainId}, not someone-else`,
    });
  });

  it('exits 1 on bad input and 3 when Temporal is unreachable', async () => {
    expect(await cli([], {})).toMatchObject({ code: 1, error: { code: 'GOVERNOR_INVALID_INPUT', field: 'chainId' } });
    expect(await cli(['--proof', path.join(tmp, 'missing.json')], {})).toMatchObject({
      code: 1,
      error: { field: '--proof' },
    });
    fs.writeFileSync(path.join(tmp, 'garbage.json'), '{not json');
    expect(await cli(['--proof', path.join(tmp, 'garbage.json')], {})).toMatchObject({
      code: 1,
      error: { message: expect.stringContaining('is not JSON') },
    });
    expect(await cli(['no-such-chain'], { TEMPORAL_ADDRESS: testAddress() })).toMatchObject({
      code: 1,
      error: { code: 'GOVERNOR_NOT_FOUND' },
    });
    expect(await cli([chainId], { TEMPORAL_ADDRESS: '127.0.0.1:1' })).toMatchObject({
      code: 3,
      error: { code: 'GOVERNOR_TEMPORAL_UNREACHABLE' },
    });
  });
});
