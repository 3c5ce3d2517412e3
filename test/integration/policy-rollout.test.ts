import { eventually } from '../harness/eventually';
import { GovernorShadowDiffersKey } from '../../contracts/search-attributes';
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { issueAttestation, issueCredential } from '../../identity';
import { GovernorClient } from '../../sdk/client';
import { recordedDecisions } from '../../audit/history';
import type { ServiceActivityInput } from '../../contracts/executor';
import { GovernorPolicyDigestKey } from '../../contracts/search-attributes';
import type { ChainResult } from '../../contracts/state';
import { loadBundle } from '../../policies/bundle';
import { loadArchivedBundle } from '../../policies/bundle-archive';
import { canonicalJson, PolicyEngine } from '../../policies/engine';
import type { GovernorWorkerOptions } from '../../workers/worker';
import { addStagingFreeze, copyBundle, policyCli } from '../harness/policy';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/**
 * Live rollout, shadow mode and `policy diff` against the real dev server: bundles change under a
 * running worker, decisions record the digest they used, and recorded decisions are re-evaluated.
 */

const WORKLOAD = 'agent:release-bot';

let home: string;
let connection: Connection;
let client: Client;
let serviceConnection: NativeConnection;
let serviceWorker: Worker;
let serviceRun: Promise<void>;
const serviceQueue = uniqueQueue('policy-service');
const performed: string[] = [];
/** Steps whose service activity waits until the test releases it. */
const gates = new Map<string, { entered: () => void; release?: () => void; enteredPromise: Promise<void> }>();

function gate(stepKey: string) {
  let entered!: () => void;
  const enteredPromise = new Promise<void>((r) => (entered = r));
  const g = { entered, enteredPromise } as { entered: () => void; release?: () => void; enteredPromise: Promise<void> };
  gates.set(stepKey, g);
  return g;
}

/** A governor worker for these tests (shared harness, this file's home). */
function startWorker(options: Partial<GovernorWorkerOptions> & { taskQueue: string }) {
  return startGovernorWorker({ home, ...options });
}

async function creds(sub = WORKLOAD) {
  return { credential: await issueCredential({ home, sub }), attestation: await issueAttestation({ home, sub }) };
}

const step = (id: string, env: string, action = 'deploy', type = 'Environment') => ({
  id,
  action,
  resource: { type, id: env },
  executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
});

beforeAll(async () => {
  home = await makeHome();
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
  serviceConnection = await NativeConnection.connect({ address: testAddress() });
  serviceWorker = await Worker.create({
    connection: serviceConnection,
    taskQueue: serviceQueue,
    activities: {
      async perform(input: ServiceActivityInput) {
        const g = gates.get(input.idempotencyKey);
        if (g) {
          g.entered();
          await new Promise<void>((r) => (g.release = r));
          gates.delete(input.idempotencyKey);
        }
        performed.push(input.idempotencyKey);
        return { done: input.idempotencyKey };
      },
    },
  });
  serviceRun = serviceWorker.run();
});

afterAll(async () => {
  serviceWorker?.shutdown();
  await serviceRun;
  await serviceConnection?.close();
  await connection?.close();
});

describe('live rollout on a running worker', () => {
  it("changes the next step's decision of a running chain; the history shows both digests", async () => {
    const taskQueue = uniqueQueue('policy-rollout');
    const bundleDir = copyBundle();
    const before = loadBundle(bundleDir).digest;
    const w = await startWorker({
      taskQueue,
      policiesDir: bundleDir,
      watchPolicies: { debounceMs: 50, pollIntervalMs: 200 },
    });
    try {
      const chainId = `rollout-${randomBytes(6).toString('hex')}`;
      const g = gate(`${chainId}/s1`);
      const gc = new GovernorClient(client, taskQueue);
      const handle = await gc.start(
        { workload: WORKLOAD, steps: [step('s1', 'staging'), step('s2', 'staging')] },
        { ...(await creds()), chainId },
      );

      // s1 was authorized under the old bundle and is executing: roll out a freeze on staging now.
      await g.enteredPromise;
      addStagingFreeze(bundleDir);
      const after = loadBundle(bundleDir).digest;
      await eventually('the new bundle to be active', () => w.policies.current()!.bundle.digest === after, {
        timeoutMs: 10_000,
        intervalMs: 25,
      });
      g.release!();

      const result = (await handle.result()) as ChainResult;
      expect(result.status).toBe('Denied');
      expect(result.steps.map((s) => [s.id, s.status, s.decision?.effect, s.decision?.bundleDigest])).toEqual([
        ['s1', 'completed', 'allow', before],
        ['s2', 'denied', 'deny', after],
      ]);
      // Explain: the deny names the determining policy and carries its annotations.
      expect(result.steps[1]!.decision).toMatchObject({
        determiningPolicies: ['deploy-staging-freeze'],
        annotations: {
          'deploy-staging-freeze': { id: 'deploy-staging-freeze', reason: 'release freeze: no deployments to staging' },
        },
      });
      expect(performed).toContain(`${chainId}/s1`);
      expect(performed).not.toContain(`${chainId}/s2`);

      // The history records each decision with the digest it used …
      const recorded = recordedDecisions(await handle.fetchHistory());
      expect(recorded.map((r) => [r.stepId, r.decision.effect, r.decision.bundleDigest])).toEqual([
        ['s1', 'allow', before],
        ['s2', 'deny', after],
      ]);
      expect((await handle.describe()).typedSearchAttributes.get(GovernorPolicyDigestKey)).toBe(after);

      // … and both bundles are archived, so each decision re-evaluates byte for byte.
      for (const r of recorded) {
        const engine = PolicyEngine.fromBundle(loadArchivedBundle(home, r.decision.bundleDigest));
        expect(canonicalJson(engine.decide(r.request!))).toBe(canonicalJson(r.decision));
      }
    } finally {
      await w.stop();
    }
  });
});

describe('shadow mode', () => {
  it('records where a candidate bundle would decide differently, without enforcing it', async () => {
    const taskQueue = uniqueQueue('policy-shadow');
    const candidate = copyBundle();
    addStagingFreeze(candidate);
    const w = await startWorker({ taskQueue, shadowPoliciesDir: candidate });
    try {
      const gc = new GovernorClient(client, taskQueue);
      const handle = await gc.start(
        { workload: WORKLOAD, steps: [step('s1', 'staging'), step('s2', 'dev')] },
        await creds(),
      );
      const result = (await handle.result()) as ChainResult;
      // Not enforced: the active (default) bundle allows both.
      expect(result.status).toBe('Completed');
      expect(result.steps.map((s) => s.decision?.effect)).toEqual(['allow', 'allow']);
      expect(performed).toContain(`${handle.workflowId}/s1`);

      const recorded = recordedDecisions(await handle.fetchHistory());
      const candidateDigest = loadBundle(candidate).digest;
      expect(recorded.map((r) => [r.stepId, r.shadow?.bundleDigest, r.shadow?.effect, r.shadow?.differs])).toEqual([
        ['s1', candidateDigest, 'deny', true],
        ['s2', candidateDigest, 'allow', false],
      ]);
      expect(recorded[0]!.shadow).toMatchObject({
        determiningPolicies: ['deploy-staging-freeze'],
        reason: expect.stringContaining('release freeze'),
      });
      // ...and visible in the chain list through a search attribute.
      expect((await handle.describe()).typedSearchAttributes.get(GovernorShadowDiffersKey)).toBe(true);
      expect((await gc.status(handle.workflowId)).shadowDiffers).toBe(true);
    } finally {
      await w.stop();
    }
  });
});

describe('governor policy diff', () => {
  it('lists the recorded decisions of past chains that a candidate would flip', async () => {
    const taskQueue = uniqueQueue('policy-diff');
    const w = await startWorker({ taskQueue });
    const saved = process.env.TEMPORAL_ADDRESS;
    process.env.TEMPORAL_ADDRESS = testAddress();
    try {
      const workload = `agent:diff-${randomBytes(5).toString('hex')}`;
      const gc = new GovernorClient(client, taskQueue);
      const deploy = await gc.start(
        { workload, steps: [step('deploy', 'staging'), step('announce', 'releases', 'notify', 'Channel')] },
        await creds(workload),
      );
      const notify = await gc.start(
        { workload, steps: [step('announce', 'ops', 'notify', 'Channel')] },
        await creds(workload),
      );
      expect(((await deploy.result()) as ChainResult).status).toBe('Completed');
      expect(((await notify.result()) as ChainResult).status).toBe('Completed');

      const candidate = copyBundle();
      addStagingFreeze(candidate);
      const r = await policyCli(
        ['policy', 'diff', candidate, '--chain', deploy.workflowId, '--chain', notify.workflowId, '--json'],
        home,
      );
      expect(r).toMatchObject({ code: 0, stderr: '' });
      const report = JSON.parse(r.stdout) as {
        chains: number;
        decisions: number;
        reEvaluated: number;
        skipped: number;
        flipped: {
          chainId: string;
          stepId: string;
          recorded: { effect: string };
          candidate: { effect: string; determiningPolicies: string[] };
        }[];
        candidateDigest: string;
      };
      expect(report).toMatchObject({
        ok: true,
        chains: 2,
        decisions: 3,
        reEvaluated: 3,
        skipped: 0,
        candidateDigest: loadBundle(candidate).digest,
      });
      expect(report.flipped).toEqual([
        expect.objectContaining({
          chainId: deploy.workflowId,
          stepId: 'deploy',
          recorded: expect.objectContaining({ effect: 'allow' }),
          candidate: expect.objectContaining({ effect: 'deny', determiningPolicies: ['deploy-staging-freeze'] }),
        }),
      ]);

      const human = await policyCli(
        ['policy', 'diff', candidate, '--chain', deploy.workflowId, '--fail-on-flip'],
        home,
      );
      expect(human.code).toBe(2);
      expect(human.stdout).toContain(`${deploy.workflowId} deploy: allow → deny [deploy-staging-freeze]`);
      expect(human.stdout).toContain('1 of 2 re-evaluated decisions would flip');

      // Through visibility (eventually consistent): every chain of the workload.
      let listed: { chains: number; flipped: unknown[] } = { chains: 0, flipped: [] };
      for (let i = 0; i < 60 && listed.chains < 2; i++) {
        const out = await policyCli(['policy', 'diff', candidate, '--workload', workload, '--json'], home);
        expect(out.code).toBe(0);
        listed = JSON.parse(out.stdout) as typeof listed;
        if (listed.chains < 2) await new Promise((res) => setTimeout(res, 250));
      }
      expect(listed).toMatchObject({
        chains: 2,
        flipped: [expect.objectContaining({ chainId: deploy.workflowId, stepId: 'deploy' })],
      });

      // The bundle that made the decisions flips nothing.
      const same = await policyCli(['policy', 'diff', copyBundle(), '--chain', deploy.workflowId, '--json'], home);
      expect(JSON.parse(same.stdout)).toMatchObject({ reEvaluated: 2, flipped: [] });
    } finally {
      if (saved === undefined) delete process.env.TEMPORAL_ADDRESS;
      else process.env.TEMPORAL_ADDRESS = saved;
      await w.stop();
    }
  });
});
