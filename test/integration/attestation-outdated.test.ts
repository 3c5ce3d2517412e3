import { createReplayer, fetchChainHistories, verifyChain, type Replayer } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { issueApproval, issueAttestation, issueCredential } from '../../identity';
import { defaultBundleWith } from '../harness/bundles';
import { runGovernorCli } from '../harness/cli';
import { testAddress } from '../harness/temporal';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * Attestations do not go stale while people decide (issue 17 item 6), on the real server: the default
 * attester `maxAge` is 15m and approval deadlines are longer, so a deploy approved late finds its
 * attestation stale at re-authorization. It then waits in `AwaitingAttestation` for a fresh one (up to
 * the grace period, 12 s here) instead of being denied; without one it is denied, saying why.
 */

const bundleDir = defaultBundleWith((m) => {
  (m.credential as Record<string, unknown>).gracePeriod = '12s';
});

let g: Governed;
let replayer: Replayer;
beforeAll(async () => {
  g = await setupGoverned({ policiesDir: bundleDir });
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});
afterAll(async () => {
  await replayer?.close();
  await g?.stop();
});

const MAX_AGE_MS = 15 * 60_000;
const FRESH_FOR_MS = 8_000;

/** A prod deploy started with an attestation that goes stale FRESH_FOR_MS from now; resolves once it awaits approval. */
async function escalatedWithAgingAttestation(): Promise<{ chainId: string; digest: string; staleAt: number }> {
  const issuedAt = Date.now() - MAX_AGE_MS + FRESH_FOR_MS;
  const creds = {
    credential: await issueCredential({ home: g.home, sub: WORKLOAD, ttlSeconds: 3600 }),
    attestation: await issueAttestation({ home: g.home, sub: WORKLOAD, now: new Date(issuedAt) }),
  };
  const handle = await g.gc.start(
    {
      workload: WORKLOAD,
      owner: 'team-release',
      steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
    },
    creds,
  );
  const waiting = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
  return { chainId: handle.workflowId, digest: waiting.steps[0]!.approval!.stepDigest, staleAt: issuedAt + MAX_AGE_MS };
}

async function approveTwice(chainId: string, digest: string): Promise<void> {
  for (const sub of ['alice', 'carol']) {
    const token = await issueApproval({
      home: g.home,
      sub,
      roles: ['sre-lead'],
      chainId,
      stepId: 'deploy',
      stepDigest: digest,
      decision: 'approve',
    });
    await g.gc.signalVote(chainId, token, 'approve');
  }
}

async function expectVerified(chainId: string): Promise<void> {
  const report = await verifyChain({
    histories: await fetchChainHistories(g.client, chainId),
    chainId,
    home: g.home,
    replayer,
  });
  expect(report.checks.filter((c) => !c.ok)).toEqual([]);
  expect(report.verdict).toBe('verified');
}

it('waits in AwaitingAttestation after a late approval, runs once on a fresh attestation, and verifies', async () => {
  const { chainId, digest, staleAt } = await escalatedWithAgingAttestation();
  await new Promise((r) => setTimeout(r, Math.max(0, staleAt - Date.now() + 500)));
  await approveTwice(chainId, digest);

  const waiting = await g.waitFor(chainId, (s) => s.status === 'AwaitingAttestation');
  expect(waiting.pending).toBe('a fresh attestation (refreshCredential with attestation) within 12000 ms');
  expect(waiting.steps[0]!).toMatchObject({ status: 'awaiting-attestation' });
  expect(waiting.steps[0]!.approval!.approvedBy.map((a) => a.approver)).toEqual(['alice', 'carol']);
  expect(g.ledger.all().filter((e) => e.idempotencyKey === `${chainId}/deploy`)).toEqual([]);

  // The service (here the operator CLI, with the development keys) pushes a fresh one.
  const refreshed = await runGovernorCli(['refresh', chainId, '--as', WORKLOAD], {
    TEMPORAL_ADDRESS: testAddress(),
    GOVERNOR_HOME: g.home,
    GOVERNOR_TASK_QUEUE: g.taskQueue,
  });
  expect({ code: refreshed.code, stderr: refreshed.stderr }).toEqual({ code: 0, stderr: '' });
  const result = (await g.client.workflow.getHandle(chainId).result()) as ChainResult;
  expect(result.status).toBe('Completed');
  expect(g.ledger.all().filter((e) => e.idempotencyKey === `${chainId}/deploy`)).toHaveLength(1);
  await expectVerified(chainId);
});

it('denies, saying why, when no fresh attestation arrives within the grace period', async () => {
  const { chainId, digest, staleAt } = await escalatedWithAgingAttestation();
  await new Promise((r) => setTimeout(r, Math.max(0, staleAt - Date.now() + 500)));
  await approveTwice(chainId, digest);
  await g.waitFor(chainId, (s) => s.status === 'AwaitingAttestation');

  const result = (await g.client.workflow.getHandle(chainId).result()) as ChainResult;
  expect(result.status).toBe('Denied');
  expect(result.steps[0]!.error ?? result.reason ?? '').toMatch(
    /attestation is stale; no fresh attestation arrived within 12000 ms/,
  );
  expect(g.ledger.all().filter((e) => e.idempotencyKey === `${chainId}/deploy`)).toEqual([]);
  await expectVerified(chainId);
});
