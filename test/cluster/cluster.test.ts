import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { createReplayer, fetchChainHistories, verifyChain, type Replayer } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { issueApproval, issueAttestation, issueCredential } from '../../identity';
import {
  clusterDown,
  clusterPorts,
  clusterUp,
  isAlive,
  readClusterState,
  startPostgres,
  startTemporalProcess,
  stopPostgres,
  writeClusterState,
  type ClusterState,
} from '../../runtime/cluster';
import { GovernorClient } from '../../sdk/client';
import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import { defaultBundleWith } from '../harness/bundles';
import { eventually } from '../harness/eventually';
import { makeHome } from '../harness/temporal';
import { readLedgerFile } from '../harness/worker-process';
import { freeClusterBase, startChild, type Child } from './harness';

/*
 * The governor on a real Temporal cluster (issue 18, DESIGN §11): PostgreSQL, frontend, two history,
 * matching and worker services as separate processes (runtime/cluster.ts, what `governor cluster up`
 * starts), three governor worker processes and the example service in its own process.
 *
 * A few hundred chains of four kinds run in three waves — allowed (two service steps), denied (a
 * service step, then a forbidden one), escalated and approved by two SRE leads, and coordinated
 * (deploys through the coordinator of a domain) — and each wave meets one fault mid-load: a SIGKILL
 * of a governor worker, a SIGKILL of a history process (started again), a restart of PostgreSQL.
 * Afterwards every chain has its expected end state, the service's ledger holds every allowed effect
 * exactly once, the visibility counts per GovernorStatus are exact, and every chain verifies.
 * Recovery after each fault is measured (a fresh chain started at the fault, until it completes) and
 * printed; no assertion is on time.
 */

const CHAINS = Number(process.env.CLUSTER_CHAINS ?? 240);
const WORKLOAD = 'agent:release-bot';
const OWNER = 'team-release';

type Kind = 'allowed' | 'denied' | 'approved' | 'coordinated';
const KINDS: Kind[] = ['allowed', 'allowed', 'denied', 'approved', 'coordinated'];
const EXPECTED: Record<Kind, ChainResult['status']> = {
  allowed: 'Completed',
  denied: 'Denied',
  approved: 'Completed',
  coordinated: 'Completed',
};

let dir: string;
let home: string;
let state: ClusterState;
let connection: Connection | undefined;
let replayer: Replayer | undefined;
const children: Child[] = [];
const report: string[] = [];
const note = (line: string) => {
  report.push(line);
  process.stderr.write(`cluster: ${line}\n`);
};

const taskQueue = `governor-cluster-${randomUUID()}`;
const serviceQueue = `service-cluster-${randomUUID()}`;

// Coordinated deploys to dev: ordered by the domain's coordinator; deploys never conflict with each other.
const bundleDir = defaultBundleWith((m) => {
  m.coordination = {
    domains: [
      {
        name: 'cluster:dev',
        resources: ['Environment::"dev"'],
        conflicts: [['deploy', 'rollback']],
        onConflict: 'reject',
        batchingWindow: '1s',
        tieBreakerRole: 'sre-lead',
        decisionDeadline: '10m',
      },
    ],
    authority: { workloads: { [WORKLOAD]: 10 }, default: 0 },
  };
});

const step = (id: string, action: string, resource: { type: string; id: string }, executor?: object) => ({
  id,
  action,
  resource,
  input: {},
  executor: executor ?? { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
});
const env = (id: string) => ({ type: 'Environment', id });

function chainOf(kind: Kind) {
  const steps =
    kind === 'allowed'
      ? [step('deploy', 'deploy', env('staging')), step('announce', 'notify', { type: 'Channel', id: 'releases' })]
      : kind === 'denied'
        ? [step('deploy', 'deploy', env('staging')), step('drop', 'drop_table', { type: 'Database', id: 'prod' })]
        : kind === 'approved'
          ? [step('prod', 'deploy', env('prod'))]
          : [step('dev', 'deploy', env('dev'))];
  return { workload: WORKLOAD, owner: OWNER, steps };
}
/** The ledger keys an ending chain of `kind` leaves: every allowed service step, once. */
const effects = (kind: Kind, id: string): string[] =>
  kind === 'denied' ? [`${id}/deploy`] : chainOf(kind).steps.map((s) => `${id}/${s.id}`);

async function pool<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Retries a client call through a fault (the frontend or the database briefly unavailable). */
async function through<T>(what: string, fn: () => Promise<T | undefined | false>): Promise<T> {
  // An error marked `final` ends the wait at once (the awaited state can no longer come).
  const out = await eventually(
    what,
    async (): Promise<{ value: T } | { final: unknown } | undefined> => {
      try {
        const value = await fn();
        return value === undefined || value === false ? undefined : { value };
      } catch (err) {
        if ((err as { final?: boolean }).final) return { final: err };
        throw err;
      }
    },
    { timeoutMs: 180_000, intervalMs: 500 },
  );
  if ('final' in out) throw out.final;
  return out.value;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-cluster-'));
  home = await makeHome();
  const { base } = await freeClusterBase();
  const t0 = Date.now();
  state = await clusterUp({
    dir: path.join(dir, 'cluster'),
    basePort: base,
    onProgress: (m) => process.stderr.write(`cluster: ${m}\n`),
  });
  note(`cluster up in ${Date.now() - t0} ms (frontend ${state.address}, ${state.processes.length} processes)`);

  const { code } = await bundleWorkflowCode({
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    workflowsPath: require.resolve('../../workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
  const bundle = path.join(dir, 'workflow-bundle.js');
  fs.writeFileSync(bundle, code);
  replayer = createReplayer({ workflowBundle: { codePath: bundle } });

  const common = { TEMPORAL_ADDRESS: state.address, GOVERNOR_HOME: home };
  children.push(
    startChild(
      'service',
      {
        ...common,
        ROLE: 'service',
        SERVICE_TASK_QUEUE: serviceQueue,
        EXAMPLE_LEDGER: path.join(dir, 'ledger.jsonl'),
      },
      path.join(dir, 'service.log'),
    ),
  );
  for (let i = 1; i <= 3; i++) children.push(startGovernor(i, bundle));
  await Promise.all(children.map((c) => c.ready));
  connection = await Connection.connect({ address: state.address });
}, 600_000);

function startGovernor(i: number, bundle: string): Child {
  return startChild(
    `governor-${i}`,
    {
      TEMPORAL_ADDRESS: state.address,
      GOVERNOR_HOME: home,
      ROLE: 'governor',
      GOVERNOR_TASK_QUEUE: taskQueue,
      GOVERNOR_POLICIES: bundleDir,
      GOVERNOR_WORKFLOW_BUNDLE: bundle,
    },
    path.join(dir, `governor-${i}.log`),
  );
}

afterAll(async () => {
  await Promise.all(children.map((c) => c.kill()));
  await connection?.close().catch(() => undefined);
  await replayer?.close();
  if (dir) await clusterDown(path.join(dir, 'cluster'));
  if (report.length) process.stderr.write(`\n${report.map((l) => `cluster-report: ${l}`).join('\n')}\n`);
}, 120_000);

describe('a fleet of governor workers on a PostgreSQL-backed, multi-process Temporal cluster', () => {
  it('runs a few hundred chains through a worker SIGKILL, a history SIGKILL and a PostgreSQL restart: every end state, effect, count and proof exact', async () => {
    const client = new Client({ connection: connection! });
    const gc = new GovernorClient(client, taskQueue);
    const creds = async () => ({
      credential: await issueCredential({ home, sub: WORKLOAD, ttlSeconds: 4 * 3600 }),
      attestation: await issueAttestation({ home, sub: WORKLOAD }),
    });
    const chains: { id: string; kind: Kind }[] = [];
    const start = async (kind: Kind): Promise<string> => {
      const id = `cluster-${kind}-${randomUUID()}`;
      const tokens = await creds();
      await through(`starting ${id}`, async () => {
        try {
          await gc.start(chainOf(kind), { ...tokens, chainId: id });
        } catch (err) {
          if ((err as Error).name !== 'WorkflowExecutionAlreadyStartedError') throw err;
        }
        return true;
      });
      return id;
    };
    const approve = async (id: string) => {
      const waiting = await through(`${id} awaiting approval`, async () => {
        const s = await gc.status(id);
        if (s.status !== 'AwaitingApproval' && s.status !== 'Running') {
          // Ended without waiting for the approvers: fail at once, with the reason.
          throw Object.assign(new Error(`${id} ended ${s.status} before approval: ${JSON.stringify(s.steps)}`), {
            final: true,
          });
        }
        return s.status === 'AwaitingApproval' ? s : undefined;
      });
      const stepDigest = waiting.steps[0]!.approval!.stepDigest;
      for (const sub of ['alice', 'bob']) {
        const token = await issueApproval({
          home,
          sub,
          roles: ['sre-lead'],
          chainId: id,
          stepId: 'prod',
          stepDigest,
          decision: 'approve',
        });
        await through(`${sub} approves ${id}`, async () => {
          const r = await gc.submitApproval(id, token);
          return r.verdict.counted || r.verdict.reason?.includes('already') ? true : undefined;
        });
      }
    };
    /**
     * A fresh allowed chain started at the fault: how long until the cluster completes work again. Its
     * end is awaited from the fault on (not after the rest of the wave is submitted), so the time measured
     * is the probe's own; the probe still queues behind the wave's chains in flight.
     */
    const recovery = (fault: string, faultAt: number, probeId: Promise<string>) => {
      const ended = probeId.then(async (id) => {
        const result = await through(`probe ${id} after ${fault}`, () => gc.result(id));
        return { result, ms: Date.now() - faultAt };
      });
      ended.catch(() => undefined); // awaited (and its failure reported) after the wave
      return async () => {
        const { result, ms } = await ended;
        expect(result.status).toBe('Completed');
        note(`${fault}: a chain started at the fault completed ${ms} ms after it`);
      };
    };

    // Warm-up: the fleet's revocation registry recovers its list when it first starts, and until then
    // authorize denies (fail closed: "the revocation registry is recovering its list"). The load starts
    // once one chain completes; the warm-up chains are counted with their actual end state.
    const warmup: { id: string; status: ChainResult['status'] }[] = [];
    await eventually(
      'a warm-up chain to complete (the revocation registry ready)',
      async () => {
        const id = await start('allowed');
        const r = await through(`warm-up ${id}`, () => gc.result(id));
        warmup.push({ id, status: r.status });
        return r.status === 'Completed';
      },
      { timeoutMs: 300_000, intervalMs: 1000 },
    );
    note(`warm-up: ${warmup.map((w) => w.status).join(', ')}`);

    const waves = 3;
    const perWave = Math.ceil(CHAINS / waves);
    const faults: { name: string; inject: () => Promise<void> }[] = [
      {
        name: 'SIGKILL of governor worker 1 (of 3)',
        inject: async () => {
          await children[1]!.kill('SIGKILL');
        },
      },
      {
        name: 'SIGKILL of history-1 (restarted)',
        inject: async () => {
          const h = state.processes.find((p) => p.name === 'history-1')!;
          process.kill(h.pid, 'SIGKILL');
          await eventually('history-1 to exit', () => !isAlive(h.pid));
          const restarted = startTemporalProcess(state.dir, 'history-1', clusterPorts(state.basePort));
          state.processes = state.processes.map((p) => (p.name === 'history-1' ? restarted : p));
          writeClusterState(state);
        },
      },
      {
        name: 'restart of PostgreSQL (fast shutdown, start)',
        inject: async () => {
          stopPostgres(state.dir);
          const pid = startPostgres(state.dir, clusterPorts(state.basePort).postgres);
          state.processes = state.processes.map((p) => (p.kind === 'postgres' ? { ...p, pid } : p));
          writeClusterState(state);
        },
      },
    ];

    for (let w = 0; w < waves; w++) {
      const kinds = Array.from(
        { length: Math.min(perWave, CHAINS - w * perWave) },
        (_, i) => KINDS[(w * perWave + i) % KINDS.length]!,
      );
      const started: { id: string; kind: Kind }[] = [];
      const starting = pool(kinds, 4, async (kind) => {
        started.push({ id: await start(kind), kind });
      });
      // The fault lands once a third of the wave is submitted: chains are mid-flight in every state.
      await eventually(`wave ${w + 1} under way`, () => started.length >= kinds.length / 3, { timeoutMs: 300_000 });
      const faultAt = Date.now();
      await faults[w]!.inject();
      note(`${faults[w]!.name} injected after ${started.length} of ${kinds.length} chains of wave ${w + 1} started`);
      const probe = start('allowed');
      const recovered = recovery(faults[w]!.name, faultAt, probe);
      await starting;
      await pool(
        started.filter((c) => c.kind === 'approved'),
        4,
        async (c) => approve(c.id),
      );
      await recovered();
      chains.push(...started, { id: await probe, kind: 'allowed' });
      if (w === 0) {
        // The killed governor worker comes back (the fleet is three again for the next faults).
        children[1] = startGovernor(1, path.join(dir, 'workflow-bundle.js'));
        await children[1].ready;
      }
    }

    // ---- every chain ends in its expected state ----
    const results = new Map<string, ChainResult>();
    await pool(chains, 16, async (c) => {
      results.set(c.id, await through(`result of ${c.id}`, () => gc.result(c.id)));
    });
    const mismatches = chains
      .map((c) => ({ id: c.id, kind: c.kind, status: results.get(c.id)!.status, reason: results.get(c.id)!.reason }))
      .filter((r) => r.status !== EXPECTED[r.kind]);
    expect(mismatches).toEqual([]);
    for (const c of chains.filter((x) => x.kind === 'coordinated'))
      expect(results.get(c.id)!.steps[0]!.coordination).toMatchObject({ domain: 'cluster:dev', status: 'released' });
    for (const c of chains.filter((x) => x.kind === 'denied'))
      expect(results.get(c.id)!.steps.map((s) => s.status)).toEqual(['completed', 'denied']);

    // ---- the service's ledger: every allowed effect exactly once, nothing else ----
    const ledger = readLedgerFile(path.join(dir, 'ledger.jsonl')).map((e) => e.idempotencyKey);
    const expectedEffects = [
      ...chains.flatMap((c) => effects(c.kind, c.id)),
      ...warmup.filter((w) => w.status === 'Completed').flatMap((w) => effects('allowed', w.id)),
    ];
    expect(ledger.length).toBe(expectedEffects.length);
    expect([...ledger].sort()).toEqual([...expectedEffects].sort());

    // ---- visibility (SQL advanced visibility on PostgreSQL): exact counts per GovernorStatus ----
    const expectedCounts: Record<string, number> = {};
    for (const c of chains) expectedCounts[EXPECTED[c.kind]] = (expectedCounts[EXPECTED[c.kind]] ?? 0) + 1;
    for (const w of warmup) expectedCounts[w.status] = (expectedCounts[w.status] ?? 0) + 1;
    for (const status of ['Completed', 'Denied', 'Running', 'AwaitingApproval', 'Failed', 'Revoked']) {
      const want = expectedCounts[status] ?? 0;
      const query = `TaskQueue = '${taskQueue}' AND GovernorStatus = '${status}'`;
      const got = await eventually(
        `${want} chains with GovernorStatus ${status}`,
        async () => {
          const { count } = await client.workflow.count(query);
          return count === want ? count : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 1000 },
      ).catch(async () => (await client.workflow.count(query)).count);
      expect({ status, count: got }).toEqual({ status, count: want });
    }

    // ---- every chain verifies (receipts, decisions re-evaluated, replay of its history) ----
    const failures: unknown[] = [];
    await pool([...chains, ...warmup], 4, async (c) => {
      const r = await verifyChain({
        histories: await fetchChainHistories(client, c.id),
        chainId: c.id,
        home,
        replayer,
      });
      if (r.verdict !== 'verified') failures.push({ id: c.id, failed: r.checks.filter((x) => !x.ok) });
    });
    expect(failures).toEqual([]);
    note(
      `${chains.length} chains (${Object.entries(expectedCounts)
        .map(([s, n]) => `${n} ${s}`)
        .join(', ')}), ${ledger.length} effects exactly once, all verified`,
    );
    expect(readClusterState(state.dir)!.processes.filter((p) => p.kind === 'temporal')).toHaveLength(5);
  });
});
