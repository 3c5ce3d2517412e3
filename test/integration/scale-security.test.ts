import { randomUUID } from 'node:crypto';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { issueApproval, issueAttestation, issueCredential } from '../../identity';
import { GovernorClient } from '../../sdk/client';
import type { ChainResult, ChainState } from '../../contracts/state';
import { ChainStatus, WORKFLOW_TYPE } from '../../contracts/status';
import { createServiceActivities } from '../../examples/service/activities';
import { Ledger } from '../../examples/service/ledger';
import { defaultBundleWith } from '../harness/bundles';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/**
 * Issue #8 item 5: 1,000 concurrent chains on the real dev server, hundreds of them waiting for
 * approval, all reach the right end state and the visibility counts per GovernorStatus match.
 *
 * Two governor workers on one task queue (scale-out) and the example service worker executing the
 * steps with its idempotency ledger, so "the right end state" also covers the side effects: exactly
 * the allowed steps ran, once each. Figures (time to start, to reach the waiting state, to finish,
 * RSS) are printed, never asserted.
 *
 * `GOVERNOR_SCALE_CHAINS` lowers the number of chains for a quick local run (default 1,000).
 */

const TOTAL = Number(process.env.GOVERNOR_SCALE_CHAINS ?? 1000);
const CLIENT_CONCURRENCY = 50;
const WORKLOAD = 'agent:release-bot';
const OWNER = 'team-release';

// The default bundle with three changes, each for a reason:
// - no coordination domains: otherwise every approved prod deploy would queue in the one
//   `cluster:prod-eu` coordinator, whose [deploy, deploy] conflict rule rejects concurrent deploys —
//   correct behaviour, but this test is about approvals at scale, not arbitration;
// - a 5 s deadline for large payments, so the deadline group ends (Denied) while the others wait;
// - an attestation max age of 1 h: on a loaded machine the run may exceed the default 15 min, and
//   re-authorization after approval re-verifies the attestation issued at the start.
const bundleDir = defaultBundleWith(
  (m) => {
    delete m.coordination;
    for (const a of m.trustedAttesters as Record<string, unknown>[]) a.maxAge = '1h';
  },
  { 'payments.cedar': (text) => text.replace(/@deadline\("[^"]+"\)/g, '@deadline("5s")') },
);

/**
 * The mix (fractions of TOTAL). Every group's end state is known in advance:
 * - allowed:        deploy staging → notify; Completed, both steps executed;
 * - policyDenied:   deploy staging → drop_table on prod; Denied by `db-drop-table-prod-forbid` at step 2, step 1 executed;
 * - stewardApproved: export of 50,000 rows; escalates to one data-steward; approved by update → Completed;
 * - sreApproved:    deploy prod; escalates to two sre-leads; one vote by update, one by signal → Completed;
 * - approverDenied: deploy prod; an sre-lead's deny vote by signal → Denied;
 * - expired:        payment of 50,000; escalates to finance-approver with a 5 s deadline; nobody votes → Denied.
 */
type Group = 'allowed' | 'policyDenied' | 'stewardApproved' | 'sreApproved' | 'approverDenied' | 'expired';
const MIX: Record<Group, number> = {
  allowed: 0.4,
  policyDenied: 0.1,
  stewardApproved: 0.2,
  sreApproved: 0.2,
  approverDenied: 0.05,
  expired: 0.05,
};
const WAITS: readonly Group[] = ['stewardApproved', 'sreApproved', 'approverDenied'];
const FINAL: Record<Group, ChainStatus> = {
  allowed: 'Completed',
  policyDenied: 'Denied',
  stewardApproved: 'Completed',
  sreApproved: 'Completed',
  approverDenied: 'Denied',
  expired: 'Denied',
};

interface Planned {
  index: number;
  group: Group;
  chainId: string;
}

function plan(total: number): Planned[] {
  const groups = Object.keys(MIX) as Group[];
  const counts = groups.map((g) => Math.floor(total * MIX[g]));
  counts[0] = counts[0]! + total - counts.reduce((a, b) => a + b, 0);
  const run = randomUUID().slice(0, 8);
  const out: Planned[] = [];
  groups.forEach((group, gi) => {
    for (let k = 0; k < counts[gi]!; k++) out.push({ index: out.length, group, chainId: `scale-${run}-${group}-${k}` });
  });
  // Interleave the groups so each phase of the start load is mixed (deterministic shuffle).
  return out
    .map((p, i) => ({ p, key: (i * 7919) % out.length }))
    .sort((a, b) => a.key - b.key)
    .map(({ p }) => p);
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(runners);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seconds = (ms: number) => Math.round(ms / 100) / 10;
const mib = (bytes: number) => Math.round(bytes / 1024 / 1024);

let home: string;
let taskQueue: string;
let serviceQueue: string;
let connection: Connection;
let client: Client;
let gc: GovernorClient;
let ledger: Ledger;
let governors: Awaited<ReturnType<typeof startGovernorWorker>>[] = [];
let serviceWorker: Worker | undefined;
let serviceRun: Promise<void> | undefined;
let serviceConnection: NativeConnection | undefined;

beforeAll(async () => {
  home = await makeHome();
  taskQueue = uniqueQueue('governor-scale');
  serviceQueue = uniqueQueue('service-scale');
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
  gc = new GovernorClient(client, taskQueue);
  // Cache above the number of chains: no run is evicted (and replayed) while it waits. Two workers
  // on one queue show the governor scales out: workers are stateless, the chains' state is in history.
  for (let i = 0; i < 2; i++)
    governors.push(await startGovernorWorker({ home, taskQueue, policiesDir: bundleDir, maxCachedWorkflows: 1200 }));
  ledger = new Ledger();
  serviceConnection = await NativeConnection.connect({ address: testAddress() });
  serviceWorker = await Worker.create({
    connection: serviceConnection,
    taskQueue: serviceQueue,
    activities: createServiceActivities(ledger),
  });
  serviceRun = serviceWorker.run();
}, 120_000);

afterAll(async () => {
  // A failed run must not leave hundreds of waiting chains (and their timers) on the shared server.
  if (client) {
    const open: string[] = [];
    for await (const wf of client.workflow.list({
      query: `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`,
    }))
      open.push(wf.workflowId);
    await pool(open, CLIENT_CONCURRENCY, async (id) => {
      await client.workflow
        .getHandle(id)
        .terminate('scale test cleanup')
        .catch(() => undefined);
    });
  }
  serviceWorker?.shutdown();
  await serviceRun;
  await serviceConnection?.close();
  for (const g of governors) await g.stop();
  governors = [];
  await connection?.close();
}, 300_000);

const STATUSES = Object.values(ChainStatus);
const ROLES = ['sre-lead', 'data-steward', 'finance-approver'] as const;
type Role = (typeof ROLES)[number];
type Counts = Record<ChainStatus | 'open' | 'total' | `pending ${Role}`, number>;

/**
 * Visibility counts of this test's chains: per GovernorStatus, per role still needed
 * (GovernorPendingRoles, what `governor list --awaiting-approval` shows), open executions, and all.
 */
async function visibilityCounts(): Promise<Counts> {
  const base = `WorkflowType = '${WORKFLOW_TYPE}' AND TaskQueue = '${taskQueue}'`;
  const count = async (extra?: string) => (await client.workflow.count(extra ? `${base} AND ${extra}` : base)).count;
  const out = { open: await count(`ExecutionStatus = 'Running'`), total: await count() } as Counts;
  for (const s of STATUSES) out[s] = await count(`GovernorStatus = '${s}'`);
  for (const r of ROLES) out[`pending ${r}`] = await count(`GovernorPendingRoles = '${r}'`);
  return out;
}

function expectedCounts(planned: Planned[], phase: 'waiting' | 'final'): Counts {
  const out = { open: 0, total: planned.length } as Counts;
  for (const s of STATUSES) out[s] = 0;
  for (const r of ROLES) out[`pending ${r}`] = 0;
  for (const p of planned) {
    const waits = phase === 'waiting' && WAITS.includes(p.group);
    out[waits ? ChainStatus.AwaitingApproval : FINAL[p.group]]++;
    if (waits) {
      out.open++;
      for (const r of ESCALATION[p.group]!.roles) out[`pending ${r}`]++;
    }
  }
  return out;
}

let peakRss = 0;
const sampleRss = () => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
};

/**
 * Polls visibility until it shows exactly `expected` (visibility is eventually consistent). Returns
 * the last counts either way; the caller asserts on them.
 */
async function waitForCounts(label: string, expected: Counts, timeoutMs: number): Promise<Counts> {
  const deadline = Date.now() + timeoutMs;
  let last = await visibilityCounts();
  let lastLog = 0;
  while (JSON.stringify(last) !== JSON.stringify(expected) && Date.now() < deadline) {
    sampleRss();
    if (Date.now() - lastLog > 15_000) {
      lastLog = Date.now();
      console.log(`[scale] ${label}: ${JSON.stringify(last)}`);
    }
    await sleep(2000);
    last = await visibilityCounts();
  }
  return last;
}

function chainFor(p: Planned): Record<string, unknown> {
  const step = (
    id: string,
    action: string,
    resource: { type: string; id: string },
    context: Record<string, unknown> = {},
  ) => ({
    id,
    action,
    resource,
    context,
    executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
  });
  const staging = step('deploy', 'deploy', { type: 'Environment', id: 'staging' });
  const steps: Record<Group, Record<string, unknown>[]> = {
    allowed: [staging, step('notify', 'notify', { type: 'Channel', id: 'releases' })],
    policyDenied: [staging, step('drop', 'drop_table', { type: 'Database', id: 'prod' })],
    stewardApproved: [step('export', 'export_data', { type: 'Dataset', id: 'customers' }, { rowCount: 50_000 })],
    sreApproved: [step('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
    approverDenied: [step('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
    expired: [step('pay', 'pay', { type: 'Account', id: 'acme' }, { amount: 50_000, currency: 'EUR' })],
  };
  return { workload: WORKLOAD, owner: OWNER, summary: `scale ${p.group} #${p.index}`, steps: steps[p.group] };
}

/** The step that escalates in each waiting group, its roles and quorum (the default bundle's). */
const ESCALATION: Partial<Record<Group, { stepId: string; roles: Role[]; quorum: number }>> = {
  stewardApproved: { stepId: 'export', roles: ['data-steward'], quorum: 1 },
  sreApproved: { stepId: 'deploy', roles: ['sre-lead'], quorum: 2 },
  approverDenied: { stepId: 'deploy', roles: ['sre-lead'], quorum: 2 },
};

describe(`${TOTAL} concurrent chains on the real server`, () => {
  it(
    'start at once, hundreds wait for approval, votes at scale end every chain in its expected state; visibility counts match exactly',
    async () => {
      const planned = plan(TOTAL);
      const byGroup = (g: Group) => planned.filter((p) => p.group === g);
      // One credential per chain: the default bundle binds a credential's jti to the first chain presenting it.
      const attestation = await issueAttestation({ home, sub: WORKLOAD, ttlSeconds: 3600 });
      sampleRss();
      const rssBefore = process.memoryUsage().rss;

      // ---- 1. start every chain, CLIENT_CONCURRENCY starts in flight ---------------------------
      const t0 = Date.now();
      const handles = new Map<string, WorkflowHandle>();
      await pool(planned, CLIENT_CONCURRENCY, async (p) => {
        const credential = await issueCredential({ home, sub: WORKLOAD, ttlSeconds: 3600 });
        handles.set(p.chainId, await gc.start(chainFor(p), { credential, attestation, chainId: p.chainId }));
      });
      const startedMs = Date.now() - t0;
      expect(handles.size).toBe(TOTAL);
      console.log(
        `[scale] started ${TOTAL} chains in ${seconds(startedMs)} s (${CLIENT_CONCURRENCY} starts in flight)`,
      );

      // ---- 2. the waiting state: visibility shows exactly who waits and who has ended ------------
      const expectedWaiting = expectedCounts(planned, 'waiting');
      const waiting = await waitForCounts('waiting for the waiting state', expectedWaiting, 15 * 60_000);
      const waitingMs = Date.now() - t0;
      expect(waiting).toEqual(expectedWaiting);
      sampleRss();
      const rssWaiting = process.memoryUsage().rss;
      const cached = governors.map((g) => g.worker.getStatus().numCachedWorkflows);
      console.log(
        `[scale] waiting state after ${seconds(waitingMs)} s: ${JSON.stringify(waiting)}; cached runs per worker ${cached.join(' + ')}`,
      );

      // Every waiting chain says so itself, with the roles and quorum still needed; its step digest
      // binds the votes below.
      const waitingChains = planned.filter((p) => WAITS.includes(p.group));
      const digests = new Map<string, string>();
      const wrongWaiting: string[] = [];
      await pool(waitingChains, CLIENT_CONCURRENCY, async (p) => {
        const s: ChainState = await gc.status(p.chainId);
        const e = ESCALATION[p.group]!;
        const approval = s.steps.find((x) => x.id === e.stepId)?.approval;
        const ok =
          s.status === 'AwaitingApproval' &&
          JSON.stringify(s.pendingRoles) === JSON.stringify(e.roles) &&
          approval?.outcome === 'pending' &&
          approval.quorum === e.quorum &&
          approval.stillNeeded === e.quorum;
        if (!ok || !approval)
          wrongWaiting.push(
            `${p.chainId}: ${s.status} ${JSON.stringify(s.pendingRoles)} ${JSON.stringify(approval && { outcome: approval.outcome, quorum: approval.quorum, stillNeeded: approval.stillNeeded })}`,
          );
        else digests.set(p.chainId, approval.stepDigest);
      });
      expect(wrongWaiting).toEqual([]);

      // ---- 3. security at scale: votes that must not count, on a sample of waiting chains -------
      // Under load a vote still binds to its chain: a token for a neighbour chain, a vote by the
      // requesting workload or its owner, and a vote by an approver without the role are rejected,
      // and nothing moves.
      const approvable = [...byGroup('stewardApproved'), ...byGroup('sreApproved')];
      const probed = approvable.filter((_, i) => i % 20 === 0);
      const wrongVerdicts: string[] = [];
      await pool(probed, 10, async (p) => {
        const e = ESCALATION[p.group]!;
        const neighbour = approvable.find((q) => q.group === p.group && q.chainId !== p.chainId)!;
        const attempts: [string, Promise<string>, RegExp][] = [
          [
            'other chain',
            issueApproval({
              home,
              sub: 'mallory',
              roles: e.roles,
              chainId: neighbour.chainId,
              stepId: e.stepId,
              stepDigest: digests.get(neighbour.chainId)!,
              decision: 'approve',
            }),
            /another chain/,
          ],
          [
            'workload',
            issueApproval({
              home,
              sub: WORKLOAD,
              roles: e.roles,
              chainId: p.chainId,
              stepId: e.stepId,
              stepDigest: digests.get(p.chainId)!,
              decision: 'approve',
            }),
            /requesting workload and its owner may not approve/,
          ],
          [
            'owner',
            issueApproval({
              home,
              sub: OWNER,
              roles: e.roles,
              chainId: p.chainId,
              stepId: e.stepId,
              stepDigest: digests.get(p.chainId)!,
              decision: 'approve',
            }),
            /requesting workload and its owner may not approve/,
          ],
          [
            'wrong role',
            issueApproval({
              home,
              sub: 'victor',
              roles: ['viewer'],
              chainId: p.chainId,
              stepId: e.stepId,
              stepDigest: digests.get(p.chainId)!,
              decision: 'approve',
            }),
            /holds none of the eligible roles/,
          ],
        ];
        for (const [name, token, reason] of attempts) {
          const r = await gc.submitApproval(p.chainId, await token);
          if (r.verdict.counted || !reason.test(r.verdict.reason ?? '') || r.approval.stillNeeded !== e.quorum) {
            wrongVerdicts.push(
              `${p.chainId} ${name}: ${JSON.stringify(r.verdict)} stillNeeded ${r.approval.stillNeeded}`,
            );
          }
        }
      });
      expect(wrongVerdicts).toEqual([]);
      expect(await visibilityCounts()).toEqual(expectedWaiting);

      // ---- 4. the votes ------------------------------------------------------------------------
      const t1 = Date.now();
      const vote = (p: Planned, sub: string, decision: 'approve' | 'deny', reason?: string) => {
        const e = ESCALATION[p.group]!;
        return issueApproval({
          home,
          sub,
          roles: e.roles,
          chainId: p.chainId,
          stepId: e.stepId,
          stepDigest: digests.get(p.chainId)!,
          decision,
          reason,
        });
      };
      const wrongVotes: string[] = [];
      await pool(waitingChains, CLIENT_CONCURRENCY, async (p) => {
        if (p.group === 'stewardApproved') {
          const r = await gc.submitApproval(p.chainId, await vote(p, 'sam-steward', 'approve', 'export reviewed'));
          if (!r.verdict.counted || r.verdict.decision !== 'approve')
            wrongVotes.push(`${p.chainId}: ${JSON.stringify(r.verdict)}`);
        } else if (p.group === 'sreApproved') {
          // The first vote by update (the caller sees it counted, one still needed), the second by signal.
          const r = await gc.submitApproval(p.chainId, await vote(p, 'alice', 'approve'));
          if (!r.verdict.counted || r.approval.stillNeeded !== 1)
            wrongVotes.push(`${p.chainId}: ${JSON.stringify(r.verdict)} stillNeeded ${r.approval.stillNeeded}`);
          await gc.signalVote(p.chainId, await vote(p, 'carol', 'approve'), 'approve');
        } else {
          await gc.signalVote(p.chainId, await vote(p, 'bob', 'deny', 'change freeze'), 'deny');
        }
      });
      const votedMs = Date.now() - t1;
      expect(wrongVotes).toEqual([]);
      console.log(`[scale] ${waitingChains.length} waiting chains voted on in ${seconds(votedMs)} s`);

      // ---- 5. the end state: visibility, every chain's result, the service's ledger --------------
      const expectedFinal = expectedCounts(planned, 'final');
      const final = await waitForCounts('waiting for the end state', expectedFinal, 15 * 60_000);
      const finishedMs = Date.now() - t1;
      expect(final).toEqual(expectedFinal);

      const wrongResults: string[] = [];
      await pool(planned, CLIENT_CONCURRENCY, async (p) => {
        const r = (await handles.get(p.chainId)!.result()) as ChainResult;
        const problems: string[] = [];
        if (r.status !== FINAL[p.group]) problems.push(`status ${r.status} (${r.reason ?? ''})`);
        const step = (id: string) => r.steps.find((s) => s.id === id);
        switch (p.group) {
          case 'allowed':
            if (!r.steps.every((s) => s.status === 'completed' && s.decision?.effect === 'allow'))
              problems.push('a step not completed/allowed');
            break;
          case 'policyDenied':
            if (step('deploy')?.status !== 'completed') problems.push('step 1 not completed');
            if (
              step('drop')?.status !== 'denied' ||
              !step('drop')?.decision?.determiningPolicies.includes('db-drop-table-prod-forbid')
            )
              problems.push(`drop not denied by db-drop-table-prod-forbid: ${JSON.stringify(step('drop')?.decision)}`);
            break;
          case 'stewardApproved': {
            const a = step('export')?.approval;
            if (a?.outcome !== 'approved' || JSON.stringify(a.approvedBy.map((x) => x.approver)) !== '["sam-steward"]')
              problems.push(`approval ${JSON.stringify(a?.approvedBy)} ${a?.outcome}`);
            if (step('export')?.decision?.effect !== 'allow') problems.push('not allowed after approval');
            break;
          }
          case 'sreApproved': {
            const a = step('deploy')?.approval;
            if (
              a?.outcome !== 'approved' ||
              JSON.stringify(a.approvedBy.map((x) => x.approver)) !== '["alice","carol"]'
            )
              problems.push(`approval ${JSON.stringify(a?.approvedBy)} ${a?.outcome}`);
            if (step('deploy')?.decision?.effect !== 'allow') problems.push('not allowed after approval');
            break;
          }
          case 'approverDenied':
            if (
              step('deploy')?.approval?.outcome !== 'denied' ||
              !r.reason?.includes('denied by approver bob: change freeze')
            )
              problems.push(`reason ${r.reason}`);
            break;
          case 'expired':
            if (
              step('pay')?.approval?.outcome !== 'expired' ||
              !/no quorum of 1 by the approval deadline \(5s\)/.test(r.reason ?? '')
            )
              problems.push(`reason ${r.reason}`);
            break;
        }
        if (problems.length) wrongResults.push(`${p.chainId} [${p.group}]: ${problems.join('; ')}`);
      });
      expect(wrongResults).toEqual([]);

      // Side effects: exactly the steps that were allowed ran, once each (the ledger keys by
      // idempotency key `<chainId>/<stepId>`); nothing denied or expired ran.
      const expectedKeys = planned
        .flatMap((p) => {
          switch (p.group) {
            case 'allowed':
              return [`${p.chainId}/deploy`, `${p.chainId}/notify`];
            case 'policyDenied':
              return [`${p.chainId}/deploy`];
            case 'stewardApproved':
              return [`${p.chainId}/export`];
            case 'sreApproved':
              return [`${p.chainId}/deploy`];
            default:
              return [];
          }
        })
        .sort();
      expect(
        ledger
          .all()
          .map((e) => e.idempotencyKey)
          .sort(),
      ).toEqual(expectedKeys);

      sampleRss();
      const cachedAfter = governors.map((g) => g.worker.getStatus().numCachedWorkflows);
      const figures = {
        chains: TOTAL,
        mix: Object.fromEntries((Object.keys(MIX) as Group[]).map((g) => [g, byGroup(g).length])),
        clientConcurrency: CLIENT_CONCURRENCY,
        governorWorkers: governors.length,
        secondsToStartAll: seconds(startedMs),
        secondsToWaitingState: seconds(waitingMs),
        awaitingApproval: waiting.AwaitingApproval,
        secondsToVote: seconds(votedMs),
        secondsFromFirstVoteToEndState: seconds(finishedMs),
        secondsTotal: seconds(Date.now() - t0),
        ledgerEffects: ledger.all().length,
        duplicatesAbsorbed: ledger.duplicatesAbsorbed,
        cachedRunsPerWorkerWhileWaiting: cached,
        cachedRunsPerWorkerAtEnd: cachedAfter,
        rssMiB: {
          before: mib(rssBefore),
          waiting: mib(rssWaiting),
          peak: mib(peakRss),
          end: mib(process.memoryUsage().rss),
        },
        note: 'RSS of the jest worker process: both governor workers, the service worker and the client run in it',
        finalCounts: final,
      };
      console.log(`[scale] figures ${JSON.stringify(figures, null, 2)}`);
    },
    45 * 60_000,
  );
});
