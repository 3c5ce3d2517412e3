import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { initKeys } from '../identity';
import { statusQuery } from '../contracts/messages';
import { archiverWorkflowId } from '../contracts/archive';
import { projectRoot } from '../workers/temporal-cli';
import { ChainRunner, escalatedChain, noopChain, type Kind } from './chains';
import { BENCH_SERVER_DYNAMIC_CONFIG, startCluster, type BenchCluster, type WorkerChild } from './cluster';
import { benchDecision, type DecisionResults } from './decision';
import { benchEvidenceInProcess, benchEvidenceLog } from './evidence';
import { benchHistory, type HistoryFigures } from './history';
import { benchOperations, benchOperationsEndToEnd, type OperationsResults } from './operations';
import { machineInfo, type MachineInfo } from './machine';
import { summarizeProfiles, type ProfileSummary } from './profile';
import { renderMarkdown } from './report';
import { benchSession, type SessionResults } from './session';
import { closedLoop, nowMs, processCpuSeconds, ratio, round, rounded, sleep, summarize, type Summary } from './stats';

/*
 * `npm run bench [-- --json] [-- --quick]`: governance overhead, decision latency, throughput and
 * scaling, each against a baseline measured in the same run on the same dev server and worker.
 * Prints figures; never fails on timing (exit 1 only when a phase could not run at all).
 */

const PHASES = [
  'decision',
  'operations',
  'overhead',
  'throughput',
  'scaling',
  'session',
  'memory',
  'stock',
  'evidence',
] as const;
type Phase = (typeof PHASES)[number];

interface Args {
  json: boolean;
  quick: boolean;
  profile: boolean;
  skip1000: boolean;
  v8Defaults: boolean;
  only: Set<Phase>;
  outDir: string;
  /** `--cluster`: only the real-cluster bench (bench/real-cluster.ts). */
  cluster: boolean;
  /** `--warmup=N`: chains of each kind run before the overhead phase measures (default: `params`). */
  warmup?: number;
}

const USAGE = `usage: npm run bench -- [--json] [--quick] [--skip-1000] [--profile] [--v8-defaults] [--only=${PHASES.join(',')}] [--out=DIR] [--warmup=N]
  --json        print the results as JSON on stdout (progress goes to stderr; use: npm run -s bench -- --json)
  --quick       fewer iterations, no 1,000-step chain, 300 waiting chains instead of 1,000
  --skip-1000   skip the 1,000-step chain only
  --profile     also CPU-profile the worker during overhead and throughput (adds overhead; figures differ)
  --v8-defaults do not turn off V8's JS→Wasm call inlining (Node 20 may abort; see bench/run.ts)
  --only=...    run only these phases (stock: the 10-step comparison on a stock dev server)
  --out=DIR     where latest.json and latest.md go (default bench/results)
  --warmup=N    chains of each kind the overhead phase runs before it measures (default 5, 3 with --quick);
                a larger N measures a worker past its JIT warm-up (see bench/README)
  --cluster     only: 10-step chains with 1, 2, 3 worker processes on a real cluster (governor cluster up), vs plain`;

function parseArgs(argv: string[]): Args {
  const args: Args = {
    json: false,
    quick: false,
    profile: false,
    skip1000: false,
    v8Defaults: false,
    only: new Set(PHASES),
    outDir: path.join(projectRoot(), 'bench', 'results'),
    cluster: false,
  };
  for (const arg of argv) {
    if (arg === '--json') args.json = true;
    else if (arg === '--cluster') args.cluster = true;
    else if (arg === '--quick') args.quick = true;
    else if (arg === '--profile') args.profile = true;
    else if (arg === '--skip-1000') args.skip1000 = true;
    else if (arg === '--v8-defaults') args.v8Defaults = true;
    else if (arg.startsWith('--only=')) {
      const names = arg.slice('--only='.length).split(',').filter(Boolean);
      const bad = names.filter((n) => !(PHASES as readonly string[]).includes(n));
      if (bad.length) throw new UsageError(`unknown phase ${bad.join(', ')}`);
      args.only = new Set(names as Phase[]);
    } else if (arg.startsWith('--out=')) args.outDir = path.resolve(arg.slice('--out='.length));
    else if (arg.startsWith('--warmup=')) {
      const n = Number(arg.slice('--warmup='.length));
      if (!Number.isInteger(n) || n < 0 || n > 10_000)
        throw new UsageError(`--warmup: must be a whole number from 0 to 10000 (got ${arg.slice('--warmup='.length)})`);
      args.warmup = n;
    } else if (arg === '--help' || arg === '-h') throw new UsageError('');
    else throw new UsageError(`unknown option ${arg}`);
  }
  return args;
}

/** Thrown when the command line is wrong. */
class UsageError extends Error {}

/** Latency figures of one kind of chain in ms, with CPU per chain by process. */
export interface LatencyFigures {
  latencyMs: Summary;
  cpuMsPerChain: { worker: number; server: number; client: number };
}

export interface OverheadResults {
  steps: number;
  runsPerKind: number;
  /** Chains of each kind run before measuring (`--warmup`). */
  warmupPerKind: number;
  governed: LatencyFigures;
  plain: LatencyFigures;
  /** Diagnostic: the governed chain's Temporal shape (local activity before/after each step) with a trivial local activity. */
  shaped: LatencyFigures;
  p50Ratio: number;
  p95Ratio: number;
  shapedP50Ratio: number;
  /**
   * Diagnostic: the plain workflow on a worker whose bundle holds the baselines alone (`lean` kind), as a
   * user's own worker runs it. The `plain` baseline shares the governor's bundle, so every workflow it
   * starts evaluates the governor's modules too; `lean` does not.
   */
  lean?: LatencyFigures;
  /** Governed p50 over the lean baseline's p50. */
  leanP50Ratio?: number;
  /** The shared-bundle plain baseline's p50 over the lean one's: what the governor's bundle costs a plain workflow. */
  leanPlainP50Ratio?: number;
  target: string;
}

export interface ThroughputSide {
  chains: number;
  seconds: number;
  /** Of `seconds`: the time from the last chain's result until every proof was archived (governed only). */
  archiveWaitSeconds: number;
  chainsPerSecond: number;
  stepsPerSecond: number;
  latencyUnderLoadMs: Summary;
  cpuMsPerChain: { worker: number; server: number; client: number };
}

export interface ThroughputResults {
  steps: number;
  concurrency: number;
  /** Diagnostic: the archiver's sweeps that found work (all its runs: it continues as new every 25 sweeps). */
  archiver?: {
    sweeps: number;
    chainsPerSweep: number;
    sweepMs: Summary;
    /** Every sweep (those that found nothing too), and the closed executions they listed in all (rows read from visibility). */
    allSweeps: number;
    rowsListed: number;
  };
  governed: ThroughputSide;
  plain: ThroughputSide;
  ratio: number;
  target: string;
}

export interface ScalingRow {
  steps: number;
  runs: number;
  governedMsPerStep: number;
  plainMsPerStep: number;
  ratio: number;
  governedTotalMs: number;
  plainTotalMs: number;
  /** Across all runs of the chain. */
  governedHistoryEvents?: number;
  /** Runs of the governed chain (more than 1 when it continued as new). */
  governedRuns?: number;
  plainHistoryEvents?: number;
}

export interface MemorySide {
  chains: number;
  state: string;
  before: { rssMiB: number; heapUsedMiB: number };
  after: { rssMiB: number; heapUsedMiB: number };
  rssDeltaMiB: number;
  heapDeltaMiB: number;
  rssKiBPerChain: number;
  cachedWorkflows: number;
  secondsToStart: number;
}

export interface MemoryResults {
  governed: MemorySide;
  plain: MemorySide;
  rssRatio: number;
  note: string;
}

/** The same 10-step comparison on a dev server with stock dynamic config (few runs: it is slow). */
export interface StockServerResults {
  runsPerKind: number;
  governedP50Ms: number;
  plainP50Ms: number;
  p50Ratio: number;
  note: string;
}

export interface BenchResults {
  schema: 'temporal-governor/bench@1';
  date: string;
  mode: 'default' | 'quick';
  machine: MachineInfo;
  setup: {
    server: string;
    worker: string;
    chain: string;
    /** Dynamic config the bench gives the dev server (see bench/cluster.ts for why). */
    serverDynamicConfig: Record<string, number>;
    /** V8 flags of the bench process and the worker process. */
    nodeFlags: string[];
    workflowBundleMs?: number;
    workerStartupMs?: number;
  };
  overhead?: OverheadResults;
  decision?: DecisionResults;
  /** Tracing + metrics + decision log on vs off, per decision (issue 19; target ≤ 5 % at p50). */
  operations?: OperationsResults;
  throughput?: ThroughputResults;
  scaling?: { rows: ScalingRow[]; continueAsNew: string; memory?: MemoryResults; history?: HistoryFigures };
  stockDevServer?: StockServerResults;
  /** Agent sessions and the MCP gateway (issue 16): proposeStep vs a plain update, tools/call via the gateway vs direct. */
  session?: SessionResults;
  /** Evidence (issue 20 item 5): grants per step, log appends per chain through the log workflow, verify with vs without inclusion proofs. */
  evidence?: {
    inProcess?: Awaited<ReturnType<typeof benchEvidenceInProcess>>;
    log?: Awaited<ReturnType<typeof benchEvidenceLog>>;
  };
  profile?: ProfileSummary;
  notes: string[];
  errors: { phase: string; message: string }[];
  runSeconds: number;
  loadAverageAtEnd?: number;
}

const MiB = 1024 * 1024;

function params(quick: boolean) {
  return quick
    ? {
        stockRuns: 3,
        overheadRuns: 10,
        warmup: 3,
        decisionIterations: 1000,
        tpChains: 40,
        tpConcurrency: 10,
        runs100: 1,
        waiting: 300,
        session: { proposals: 40, toolCalls: 30, warmup: 3 },
        operationsRuns: 20,
        evidence: { chains: 30, verifyRuns: 5 },
      }
    : {
        stockRuns: 5,
        overheadRuns: 30,
        warmup: 5,
        decisionIterations: 5000,
        tpChains: 160,
        tpConcurrency: 20,
        runs100: 3,
        waiting: 1000,
        session: { proposals: 200, toolCalls: 150, warmup: 5 },
        operationsRuns: 60,
        evidence: { chains: 100, verifyRuns: 15 },
      };
}

/** CPU-seconds snapshot of worker, server and this process. */
function cpuSnapshot(cluster: BenchCluster, worker: WorkerChild): { worker: number; server: number; client: number } {
  const c = cluster.cpu();
  return { worker: processCpuSeconds(worker.pid), server: c.server, client: c.client };
}

async function overhead(
  cluster: BenchCluster,
  worker: WorkerChild,
  p: ReturnType<typeof params>,
  progress: (m: string) => void,
): Promise<OverheadResults> {
  const runner = new ChainRunner(cluster.client, cluster.home, worker.taskQueue, worker.leanTaskQueue);
  const chain = noopChain(10);
  const kinds: Kind[] = ['plain', 'governed', 'shaped', ...(worker.leanTaskQueue ? (['lean'] as const) : [])];
  progress(`overhead: warm-up ${p.warmup} × ${kinds.join(', ')}`);
  for (let i = 0; i < p.warmup; i++) for (const k of kinds) await runner.run(k, chain);
  const ms: Record<Kind, number[]> = { plain: [], governed: [], shaped: [], lean: [] };
  const cpu: Record<Kind, { worker: number; server: number; client: number }> = {
    plain: { worker: 0, server: 0, client: 0 },
    governed: { worker: 0, server: 0, client: 0 },
    shaped: { worker: 0, server: 0, client: 0 },
    lean: { worker: 0, server: 0, client: 0 },
  };
  progress(`overhead: ${p.overheadRuns} sequential runs of each, interleaved`);
  for (let i = 0; i < p.overheadRuns; i++) {
    // Rotate the order so no kind always runs right after the same other kind.
    const order = kinds.map((_, j) => kinds[(i + j) % kinds.length]!);
    for (const k of order) {
      const before = cpuSnapshot(cluster, worker);
      ms[k].push((await runner.run(k, chain)).ms);
      const after = cpuSnapshot(cluster, worker);
      cpu[k].worker += after.worker - before.worker;
      cpu[k].server += after.server - before.server;
      cpu[k].client += after.client - before.client;
    }
  }
  const fig = (k: Kind): LatencyFigures => ({
    latencyMs: rounded(summarize(ms[k])),
    cpuMsPerChain: {
      worker: round((cpu[k].worker * 1000) / ms[k].length),
      server: round((cpu[k].server * 1000) / ms[k].length),
      client: round((cpu[k].client * 1000) / ms[k].length),
    },
  });
  const g = summarize(ms.governed);
  const b = summarize(ms.plain);
  return {
    steps: 10,
    runsPerKind: p.overheadRuns,
    warmupPerKind: p.warmup,
    governed: fig('governed'),
    plain: fig('plain'),
    shaped: fig('shaped'),
    p50Ratio: ratio(g.p50, b.p50),
    p95Ratio: ratio(g.p95, b.p95),
    shapedP50Ratio: ratio(summarize(ms.shaped).p50, b.p50),
    ...(ms.lean.length > 0
      ? {
          lean: fig('lean'),
          leanP50Ratio: ratio(g.p50, summarize(ms.lean).p50),
          leanPlainP50Ratio: ratio(b.p50, summarize(ms.lean).p50),
        }
      : {}),
    target: '≤ 1.5× (aim ≤ 1.2×)',
  };
}

async function throughput(
  cluster: BenchCluster,
  worker: WorkerChild,
  p: ReturnType<typeof params>,
  progress: (m: string) => void,
): Promise<ThroughputResults> {
  const runner = new ChainRunner(cluster.client, cluster.home, worker.taskQueue);
  const chain = noopChain(10);
  const acc: Record<
    'plain' | 'governed',
    {
      chains: number;
      seconds: number;
      archiveWaitSeconds: number;
      lat: number[];
      cpu: { worker: number; server: number; client: number };
    }
  > = {
    plain: { chains: 0, seconds: 0, archiveWaitSeconds: 0, lat: [], cpu: { worker: 0, server: 0, client: 0 } },
    governed: { chains: 0, seconds: 0, archiveWaitSeconds: 0, lat: [], cpu: { worker: 0, server: 0, client: 0 } },
  };
  // ABBA halves, so drift (server state growing, JIT) affects both kinds alike.
  const half = Math.max(1, Math.floor(p.tpChains / 2));
  for (const kind of ['plain', 'governed', 'governed', 'plain'] as const) {
    progress(`throughput: ${half} ${kind} chains, ${p.tpConcurrency} in flight`);
    const before = cpuSnapshot(cluster, worker);
    const t0 = nowMs();
    const ids: string[] = [];
    await closedLoop(half, p.tpConcurrency, async () => {
      const r = await runner.run(kind, chain);
      acc[kind].lat.push(r.ms);
      ids.push(r.handle.workflowId);
    });
    // Governed chains count once their evidence is out: the clock stops when the worker's archiver has
    // exported (and anchored) every chain of this half, so its batched work is inside the window.
    // (Not with GOVERNOR_ARCHIVE=off, which the worker child inherits: nothing is archived then.)
    const ran = nowMs();
    if (kind === 'governed' && process.env.GOVERNOR_ARCHIVE !== 'off') await proofsArchived(cluster.home, ids);
    acc[kind].archiveWaitSeconds += (nowMs() - ran) / 1000;
    acc[kind].seconds += (nowMs() - t0) / 1000;
    acc[kind].chains += half;
    const after = cpuSnapshot(cluster, worker);
    acc[kind].cpu.worker += after.worker - before.worker;
    acc[kind].cpu.server += after.server - before.server;
    acc[kind].cpu.client += after.client - before.client;
  }
  const side = (k: 'plain' | 'governed'): ThroughputSide => {
    const a = acc[k];
    return {
      chains: a.chains,
      seconds: round(a.seconds),
      archiveWaitSeconds: round(a.archiveWaitSeconds),
      chainsPerSecond: round(a.chains / a.seconds),
      stepsPerSecond: round((a.chains * chain.steps.length) / a.seconds),
      latencyUnderLoadMs: rounded(summarize(a.lat)),
      cpuMsPerChain: {
        worker: round((a.cpu.worker * 1000) / a.chains),
        server: round((a.cpu.server * 1000) / a.chains),
        client: round((a.cpu.client * 1000) / a.chains),
      },
    };
  };
  const governed = side('governed');
  const plain = side('plain');
  const archiver = process.env.GOVERNOR_ARCHIVE === 'off' ? undefined : await archiverSweeps(cluster, worker.taskQueue);
  if (archiver)
    progress(
      `throughput: archiver ${archiver.sweeps} sweeps that found work, ${archiver.chainsPerSweep} chains each, ` +
        `sweep p50 ${archiver.sweepMs.p50} ms; ${archiver.allSweeps} sweeps in all listed ${archiver.rowsListed} closed executions`,
    );
  return {
    steps: 10,
    concurrency: p.tpConcurrency,
    governed,
    plain,
    ...(archiver ? { archiver } : {}),
    ratio: ratio(governed.chainsPerSecond, plain.chainsPerSecond),
    target: '≥ 0.7 (aim ≥ 0.85)',
  };
}

/** Diagnostic: the archiver's sweeps that found work (every run of it), chains per sweep and sweep duration. */
async function archiverSweeps(
  cluster: BenchCluster,
  taskQueue: string,
): Promise<ThroughputResults['archiver'] | undefined> {
  try {
    const id = archiverWorkflowId(taskQueue);
    const events = [];
    for await (const run of cluster.client.workflow.list({ query: `WorkflowId = '${id}'` }))
      events.push(...((await cluster.client.workflow.getHandle(id, run.runId).fetchHistory()).events ?? []));
    const ms = (t: unknown): number => {
      const x = t as { seconds?: { toNumber(): number } | number; nanos?: number } | null | undefined;
      const sec = typeof x?.seconds === 'number' ? x.seconds : (x?.seconds?.toNumber() ?? 0);
      return sec * 1000 + (x?.nanos ?? 0) / 1e6;
    };
    const started = new Map<string, number>();
    const durations: number[] = [];
    let chains = 0;
    let allSweeps = 0;
    let rowsListed = 0;
    for (const e of events) {
      if (e.activityTaskStartedEventAttributes)
        started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), ms(e.eventTime));
      const done = e.activityTaskCompletedEventAttributes;
      const data = done?.result?.payloads?.[0]?.data;
      if (!done || !data) continue;
      const r = JSON.parse(Buffer.from(data).toString('utf8')) as {
        written?: number;
        unchanged?: number;
        listed?: number;
      };
      allSweeps++;
      rowsListed += r.listed ?? 0;
      const n = (r.written ?? 0) + (r.unchanged ?? 0);
      if (n === 0) continue;
      chains += n;
      durations.push(ms(e.eventTime) - (started.get(String(done.scheduledEventId)) ?? ms(e.eventTime)));
    }
    return {
      sweeps: durations.length,
      chainsPerSweep: durations.length ? round(chains / durations.length) : 0,
      sweepMs: rounded(summarize(durations)),
      allSweeps,
      rowsListed,
    };
  } catch {
    return undefined;
  }
}

/** Waits until the archive (`<home>/archive`, the worker's default) holds the proof of every chain given. */
async function proofsArchived(home: string, chainIds: string[]): Promise<void> {
  const dir = path.join(home, 'archive');
  const deadline = nowMs() + 300_000;
  let left = chainIds;
  while (left.length > 0) {
    left = left.filter((id) => !fs.existsSync(path.join(dir, `${id}.proof.json`)));
    if (left.length === 0) return;
    if (nowMs() > deadline) throw new Error(`${left.length} governed chains were not archived within 300 s`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** History events of a workflow across all its runs (continue-as-new starts new runs), and the number of runs. */
async function eventCount(cluster: BenchCluster, handle: WorkflowHandle): Promise<{ events: number; runs: number }> {
  const runIds: string[] = [];
  for await (const wf of cluster.client.workflow.list({ query: `WorkflowId = '${handle.workflowId}'` }))
    runIds.push(wf.runId);
  if (runIds.length === 0) return { events: (await handle.fetchHistory()).events?.length ?? 0, runs: 1 };
  let events = 0;
  for (const runId of runIds)
    events += (await cluster.client.workflow.getHandle(handle.workflowId, runId).fetchHistory()).events?.length ?? 0;
  return { events, runs: runIds.length };
}

async function scaling(
  cluster: BenchCluster,
  worker: WorkerChild,
  p: ReturnType<typeof params>,
  sizes: number[],
  ten: OverheadResults | undefined,
  progress: (m: string) => void,
): Promise<{ rows: ScalingRow[]; largest?: { handle: WorkflowHandle; steps: number } }> {
  const runner = new ChainRunner(cluster.client, cluster.home, worker.taskQueue);
  const rows: ScalingRow[] = [];
  let largest: { handle: WorkflowHandle; steps: number } | undefined;
  for (const steps of sizes) {
    const chain = noopChain(steps);
    const runs = steps === 10 ? (ten ? 0 : 3) : steps >= 1000 ? 1 : p.runs100;
    const g: number[] = [];
    const b: number[] = [];
    let gh: WorkflowHandle | undefined;
    let bh: WorkflowHandle | undefined;
    if (steps === 10 && ten) {
      // Reuse the overhead phase's 10-step figures rather than re-measuring.
      g.push(ten.governed.latencyMs.p50);
      b.push(ten.plain.latencyMs.p50);
    }
    for (let i = 0; i < runs; i++) {
      progress(`scaling: ${steps}-step chains, run ${i + 1}/${runs}`);
      const rb = await runner.run('plain', chain);
      b.push(rb.ms);
      bh = rb.handle;
      const rg = await runner.run('governed', chain);
      g.push(rg.ms);
      gh = rg.handle;
    }
    const gm = summarize(g).p50;
    const bm = summarize(b).p50;
    const row: ScalingRow = {
      steps,
      runs: Math.max(runs, 1),
      governedMsPerStep: round(gm / steps),
      plainMsPerStep: round(bm / steps),
      ratio: ratio(gm, bm),
      governedTotalMs: round(gm),
      plainTotalMs: round(bm),
    };
    if (gh) {
      const c = await eventCount(cluster, gh);
      row.governedHistoryEvents = c.events;
      row.governedRuns = c.runs;
    }
    if (bh) row.plainHistoryEvents = (await eventCount(cluster, bh)).events;
    rows.push(row);
    if (gh) largest = { handle: gh, steps };
  }
  return { rows, largest };
}

async function memory(
  cluster: BenchCluster,
  p: ReturnType<typeof params>,
  nodeFlags: string[],
  progress: (m: string) => void,
): Promise<MemoryResults> {
  const side = async (kind: 'governed' | 'plain'): Promise<MemorySide> => {
    const worker = await cluster.startWorker({ nodeFlags });
    try {
      const runner = new ChainRunner(cluster.client, cluster.home, worker.taskQueue);
      // Warm the worker (JIT, wasm, keys, sandbox) with completed chains before the baseline snapshot.
      for (let i = 0; i < 5; i++) await runner.run(kind, noopChain(2));
      await sleep(500);
      const before = await worker.stats(true);
      const chain = kind === 'governed' ? escalatedChain() : noopChain(1);
      const handles: WorkflowHandle[] = [];
      progress(`memory: starting ${p.waiting} waiting ${kind} chains`);
      const t0 = nowMs();
      await closedLoop(p.waiting, 32, async () => {
        handles.push(
          await runner.start(kind === 'governed' ? 'governed' : 'wait', chain, { credentials: await runner.fresh() }),
        );
      });
      // Waiting = every chain is cached on the worker and no task is in flight.
      const deadline = Date.now() + 180_000;
      let stats = await worker.stats();
      while (
        Date.now() < deadline &&
        (stats.numCachedWorkflows < p.waiting ||
          stats.numInFlightWorkflowActivations > 0 ||
          stats.numInFlightActivities > 0)
      ) {
        await sleep(250);
        stats = await worker.stats();
      }
      const secondsToStart = (nowMs() - t0) / 1000;
      if (kind === 'governed') {
        const status = await handles[0]!.query(statusQuery);
        if (status.status !== 'AwaitingApproval')
          throw new Error(`memory: a governed chain is ${status.status}, not AwaitingApproval`);
      }
      await sleep(1000);
      const after = await worker.stats(true);
      progress(`memory: ${kind}: releasing ${handles.length} chains`);
      await closedLoop(handles.length, 32, async (i) => {
        await handles[i]!.terminate('bench done').catch(() => undefined);
      });
      const mib = (x: number): number => round(x / MiB);
      return {
        chains: p.waiting,
        state:
          kind === 'governed'
            ? 'AwaitingApproval (deploy to Environment::"prod": 2 sre-lead votes within 30m)'
            : 'waiting on a signal (condition with a 10m timeout)',
        before: { rssMiB: mib(before.rss), heapUsedMiB: mib(before.heapUsed) },
        after: { rssMiB: mib(after.rss), heapUsedMiB: mib(after.heapUsed) },
        rssDeltaMiB: mib(after.rss - before.rss),
        heapDeltaMiB: mib(after.heapUsed - before.heapUsed),
        rssKiBPerChain: round((after.rss - before.rss) / 1024 / p.waiting),
        cachedWorkflows: after.numCachedWorkflows,
        secondsToStart: round(secondsToStart),
      };
    } finally {
      await worker.stop();
    }
  };
  const plain = await side('plain');
  const governed = await side('governed');
  return {
    governed,
    plain,
    rssRatio: ratio(governed.rssDeltaMiB, plain.rssDeltaMiB),
    note: 'Fresh worker process per side, warmed with 5 completed chains; RSS includes the workflow thread (sandbox isolate) and the Rust core; heapUsed is the main thread only. The plain baseline ran one no-op activity and waits on a signal with a timer; the governed chain authorized once, escalated and waits for votes with its deadline timer.',
  };
}

async function stockServer(
  p: ReturnType<typeof params>,
  nodeFlags: string[],
  progress: (m: string) => void,
): Promise<StockServerResults> {
  const cluster = await startCluster(progress, { stock: true });
  try {
    const worker = await cluster.startWorker({ nodeFlags });
    try {
      const runner = new ChainRunner(cluster.client, cluster.home, worker.taskQueue);
      const chain = noopChain(10);
      const ms: Record<'plain' | 'governed', number[]> = { plain: [], governed: [] };
      progress(`stock dev server: ${p.stockRuns} runs of each 10-step chain`);
      await runner.run('plain', chain);
      await runner.run('governed', chain);
      for (let i = 0; i < p.stockRuns; i++) {
        for (const k of i % 2 === 0 ? (['plain', 'governed'] as const) : (['governed', 'plain'] as const))
          ms[k].push((await runner.run(k, chain)).ms);
      }
      const g = summarize(ms.governed).p50;
      const b = summarize(ms.plain).p50;
      return {
        runsPerKind: p.stockRuns,
        governedP50Ms: round(g),
        plainP50Ms: round(b),
        p50Ratio: ratio(g, b),
        note: 'Stock dev server (history.transferProcessorMaxPollRPS = 20 on its single shard): every task waits ~50 ms for the rate-limited transfer-queue reader, so both kinds run at ~100 ms/step and the ratio hides the governance cost.',
      };
    } finally {
      await worker.stop();
    }
  } finally {
    await cluster.close();
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const p = params(args.quick);
  const progress = (m: string): void => {
    process.stderr.write(`[bench] ${m}\n`);
  };
  if (args.cluster) {
    Runtime.install({
      logger: new DefaultLogger('WARN'),
      telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
    });
    const { benchRealCluster, renderRealCluster } = await import('./real-cluster');
    const r = await benchRealCluster({ progress });
    fs.mkdirSync(args.outDir, { recursive: true });
    fs.writeFileSync(path.join(args.outDir, 'cluster.json'), `${JSON.stringify(r, null, 2)}\n`);
    process.stdout.write(args.json ? `${JSON.stringify(r, null, 2)}\n` : renderRealCluster(r));
    return 0;
  }
  const started = nowMs();
  // Every log of this process goes to stderr: core's own (e.g. the SDK's payload-size warnings) is
  // forwarded to the JS logger instead of printed by Rust on stdout, which `--json` keeps for the JSON.
  Runtime.install({
    logger: new DefaultLogger('WARN'),
    telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
  });

  const results: BenchResults = {
    schema: 'temporal-governor/bench@1',
    date: new Date().toISOString(),
    mode: args.quick ? 'quick' : 'default',
    machine: machineInfo(),
    setup: {
      server: 'Temporal CLI dev server started by the bench (in memory, headless, free port)',
      worker:
        'one governor worker process (createGovernorWorker, default options) serving the governed chain and the baselines on one task queue; load generator in the bench process',
      serverDynamicConfig: { ...BENCH_SERVER_DYNAMIC_CONFIG },
      nodeFlags: args.v8Defaults ? [] : ['--no-turbo-inline-js-wasm-calls'],
      chain:
        '10 steps of `deploy` on Environment::"staging" (noop executor) by Workload::"agent:release-bot" under policies/default',
    },
    notes: [],
    errors: [],
    runSeconds: 0,
  };
  const attempt = async <T>(phase: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      progress(`${phase} failed: ${message}`);
      results.errors.push({ phase, message });
      return undefined;
    }
  };

  const needsWorker = ['overhead', 'throughput', 'scaling', 'session', 'evidence'].some((x) =>
    args.only.has(x as Phase),
  );
  const needsServer = needsWorker || args.only.has('memory') || args.only.has('operations');
  let cluster: BenchCluster | undefined;
  try {
    if (args.only.has('decision')) {
      const { dir, home } = await tempHome();
      try {
        results.decision = await attempt('decision', () => benchDecision(home, p.decisionIterations, progress));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    if (args.only.has('operations')) {
      const { dir, home } = await tempHome();
      try {
        results.operations = await attempt('operations', () => benchOperations(home, p.decisionIterations, progress));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    if (needsServer) {
      cluster = await startCluster(progress);
      results.setup.workflowBundleMs = round(cluster.bundleMs);
      if (results.operations && args.only.has('operations')) {
        const e2e = await attempt('operations', () =>
          benchOperationsEndToEnd(
            cluster!,
            { runs: p.operationsRuns, warmup: p.warmup, nodeFlags: results.setup.nodeFlags },
            progress,
          ),
        );
        if (e2e) results.operations.endToEnd = e2e;
      }
      const profileDir =
        args.profile && needsWorker ? (process.env.BENCH_PROFILE_DIR ?? path.join(cluster.dir, 'profile')) : undefined;
      const worker = needsWorker
        ? await cluster.startWorker({
            profileDir,
            nodeFlags: results.setup.nodeFlags,
            // The lean baseline only where it is measured (a second worker polls beside the governor's).
            lean: args.only.has('overhead'),
          })
        : undefined;
      if (worker) results.setup.workerStartupMs = round(worker.startupMs);
      if (worker)
        try {
          if (args.only.has('overhead'))
            results.overhead = await attempt('overhead', () =>
              overhead(cluster!, worker, { ...p, warmup: args.warmup ?? p.warmup }, progress),
            );
          if (args.only.has('throughput'))
            results.throughput = await attempt('throughput', () => throughput(cluster!, worker, p, progress));
          if (args.only.has('scaling')) {
            const sizes = args.quick || args.skip1000 ? [10, 100] : [10, 100, 1000];
            const s = await attempt('scaling', () => scaling(cluster!, worker, p, sizes, results.overhead, progress));
            if (s) {
              results.scaling = {
                rows: s.rows,
                continueAsNew: sizes.includes(1000)
                  ? 'as the workflow does it by default (when Temporal suggests it); governedRuns counts the runs of each chain'
                  : 'the 1,000-step chain was skipped (--quick/--skip-1000)',
              };
              if (s.largest) {
                progress(`scaling: governor verify over the ${s.largest.steps}-step chain`);
                results.scaling.history = await attempt('history', () =>
                  benchHistory(
                    cluster!.client,
                    s.largest!.handle.workflowId,
                    s.largest!.steps,
                    cluster!.home,
                    cluster!.bundlePath,
                  ),
                );
              }
            }
          }
          if (args.only.has('session'))
            results.session = await attempt('session', () => benchSession(cluster!, worker, p.session, progress));
          if (args.only.has('evidence')) {
            progress('evidence: grants and Merkle operations in process');
            const inProcess = await attempt('evidence', () => benchEvidenceInProcess(p.decisionIterations));
            const log = await attempt('evidence', () =>
              benchEvidenceLog(cluster!, worker.taskQueue, p.evidence.chains, p.evidence.verifyRuns, progress),
            );
            results.evidence = { ...(inProcess ? { inProcess } : {}), ...(log ? { log } : {}) };
          }
        } finally {
          await worker.stop();
        }
      if (profileDir) {
        results.profile = summarizeProfiles(profileDir);
        results.notes.push(
          '--profile: the worker ran under --cpu-prof during overhead/throughput/scaling; those figures include profiling overhead.',
        );
      }
      if (args.only.has('memory')) {
        const m = await attempt('memory', () => memory(cluster!, p, results.setup.nodeFlags, progress));
        if (m) (results.scaling ??= { rows: [], continueAsNew: 'not measured (scaling phase not run)' }).memory = m;
      }
    }
  } finally {
    await cluster?.close().catch(() => undefined);
  }
  if (args.only.has('stock'))
    results.stockDevServer = await attempt('stock', () => stockServer(p, results.setup.nodeFlags, progress));
  results.runSeconds = round((nowMs() - started) / 1000);
  results.loadAverageAtEnd = Math.round(os.loadavg()[0]! * 100) / 100;
  if (
    results.machine.loadAverageAtStart > results.machine.cores / 2 ||
    results.loadAverageAtEnd > results.machine.cores / 2
  ) {
    results.notes.push(
      `The machine was busy with other work (1-minute load ${results.machine.loadAverageAtStart} at start, ${results.loadAverageAtEnd} at end, on ${results.machine.cores} cores): absolute figures are pessimistic and noisy; ratios are measured interleaved and suffer less.`,
    );
  }
  if (args.quick)
    results.notes.push(
      '--quick: fewer iterations, no 1,000-step chain, 300 waiting chains; compare default runs with default runs.',
    );

  fs.mkdirSync(args.outDir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  const md = renderMarkdown(results);
  fs.writeFileSync(path.join(args.outDir, 'latest.json'), json);
  fs.writeFileSync(path.join(args.outDir, 'latest.md'), md);
  process.stdout.write(args.json ? json : md);
  progress(
    `wrote ${path.relative(process.cwd(), path.join(args.outDir, 'latest.json'))} and latest.md in ${results.runSeconds} s`,
  );
  return results.errors.length > 0 ? 1 : 0;
}

async function tempHome(): Promise<{ dir: string; home: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-bench-decision-'));
  const home = path.join(dir, 'home');
  await initKeys(home);
  return { dir, home };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      if (err.message) process.stderr.write(`${err.message}\n`);
      process.stderr.write(`${USAGE}\n`);
      process.exit(err.message ? 1 : 0);
    }
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
