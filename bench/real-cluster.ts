import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { initKeys } from '../identity';
import { CLUSTER_PORT_SPAN, clusterDown, clusterUp, type ClusterState } from '../runtime/cluster';
import { PAYLOAD_CONVERTER_PATH } from '../workers/worker';
import { ChainRunner, noopChain, type Kind } from './chains';
import { machineInfo, type MachineInfo } from './machine';
import { closedLoop, nowMs, ratio, round, rounded, selfCpuSeconds, summarize, type Summary } from './stats';
import type { FromWorker, WorkerProcessConfig } from './worker-process';

/*
 * `npm run bench -- --cluster`: the governor on a real cluster (runtime/cluster.ts `clusterUp`: PostgreSQL,
 * frontend, two history, matching and worker services as separate processes), in its own temp folder and
 * torn down after. With 1, 2 and 3 governor worker processes on one task queue: throughput of 10-step
 * governed chains and of plain 10-activity workflows (same processes, same cluster, same run), per-step
 * latency, and the CPU each part used per chain, read from /proc (worker processes; Temporal services;
 * PostgreSQL with its backends; the load generator), to say what bounds the scaling.
 */

const STEPS = 10;

export interface RealClusterRow {
  workers: number;
  kind: Kind;
  chains: number;
  concurrency: number;
  wallSeconds: number;
  chainsPerSecond: number;
  /** End-to-end chain latency (start call to result), ms. */
  chainMs: Summary;
  /** Chain latency / steps, ms. */
  stepMs: Summary;
  /** CPU seconds per chain, by part. */
  cpuPerChain: { workers: number; temporal: number; postgres: number; loadGenerator: number };
  /** CPU used by every part together, in cores (CPU seconds / wall seconds). */
  coresBusy: number;
}

export interface RealClusterResults {
  schema: 'temporal-governor/bench-cluster@1';
  date: string;
  machine: MachineInfo;
  cluster: { serverVersion: string; startMs: number; processes: string[] };
  chain: string;
  rows: RealClusterRow[];
  /** governed / plain throughput per worker count. */
  ratios: { workers: number; governedOverPlain: number }[];
  /** Throughput with n workers over throughput with one, per kind. */
  speedup: { workers: number; governed: number; plain: number }[];
  bound: string;
  loadAverage: { start: number; end: number };
  runSeconds: number;
}

/** utime + stime (+ reaped children) of `pid` and the CPU of its live children, in seconds (/proc). */
function treeCpuSeconds(pid: number): number {
  const fieldsOf = (p: number): string[] | undefined => {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    } catch {
      return undefined;
    }
  };
  const own = fieldsOf(pid);
  if (!own) return 0;
  // fields[1] is ppid; [11] utime, [12] stime, [13] cutime, [14] cstime (clock ticks, USER_HZ 100).
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = fieldsOf(Number(entry));
    if (f && Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / 100;
}

async function freeBase(): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * (32767 - CLUSTER_PORT_SPAN - 20000));
    let ok = true;
    for (let p = base; p <= base + CLUSTER_PORT_SPAN && ok; p++) ok = await free(p);
    if (ok) return base;
  }
  throw new Error('no free port block for the cluster');
}

/** A bench worker process (bench/worker-process.ts) on `taskQueue`; resolves once it polls. */
function startWorker(config: WorkerProcessConfig): Promise<ChildProcess> {
  const child = fork(path.join(__dirname, 'worker-process.js'), [JSON.stringify(config)], {
    execArgv: ['--no-turbo-inline-js-wasm-calls'],
    stdio: ['ignore', 2, 2, 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.on('message', (m: FromWorker) => {
      if (m.type === 'ready') resolve(child);
      if (m.type === 'error') reject(new Error(`bench worker failed: ${m.message}`));
    });
    child.once('exit', (code) => reject(new Error(`bench worker exited (${code}) before it was ready`)));
  });
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.send({ type: 'stop' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

export async function benchRealCluster(options: {
  progress: (m: string) => void;
  chains?: number;
  concurrency?: number;
}): Promise<RealClusterResults> {
  const { progress } = options;
  const total = options.chains ?? 30;
  const concurrency = options.concurrency ?? 12;
  const started = nowMs();
  const machine = machineInfo();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-bench-cluster-'));
  const home = path.join(dir, 'home');
  await initKeys(home);
  let state: ClusterState | undefined;
  let connection: Connection | undefined;
  const rows: RealClusterRow[] = [];
  try {
    state = await clusterUp({ dir: path.join(dir, 'cluster'), basePort: await freeBase(), onProgress: progress });
    progress(`cluster up in ${state.startMs} ms (frontend ${state.address})`);
    const { code } = await bundleWorkflowCode({
      workflowsPath: require.resolve('./workflows'),
      payloadConverterPath: PAYLOAD_CONVERTER_PATH,
      logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
    });
    const bundlePath = path.join(dir, 'workflow-bundle.js');
    fs.writeFileSync(bundlePath, code);
    connection = await Connection.connect({ address: state.address });
    const client = new Client({ connection });
    const temporalPids = state.processes.filter((p) => p.kind === 'temporal').map((p) => p.pid);
    const pgPid = state.processes.find((p) => p.kind === 'postgres')!.pid;

    for (const n of [1, 2, 3]) {
      const taskQueue = `bench-cluster-${n}-${randomUUID()}`;
      const config: WorkerProcessConfig = { address: state.address, taskQueue, home, bundlePath };
      progress(`${n} governor worker process(es) on ${taskQueue}…`);
      const workers = await Promise.all(Array.from({ length: n }, () => startWorker(config)));
      try {
        const runner = new ChainRunner(client, home, taskQueue);
        const chain = noopChain(STEPS);
        // Warm-up: the fleet's revocation registry recovers its list first (authorize denies until then).
        const deadline = Date.now() + 120_000;
        for (;;) {
          try {
            await runner.run('governed', chain);
            break;
          } catch (err) {
            if (Date.now() > deadline) throw err;
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
        await closedLoop(2 * n, n, async () => {
          await runner.run('governed', chain);
          await runner.run('plain', chain);
        });
        for (const kind of ['governed', 'plain'] as const) {
          const cpu = () => ({
            workers: workers.reduce((s, w) => s + treeCpuSeconds(w.pid!), 0),
            temporal: temporalPids.reduce((s, p) => s + treeCpuSeconds(p), 0),
            postgres: treeCpuSeconds(pgPid),
            loadGenerator: selfCpuSeconds(),
          });
          const before = cpu();
          const latencies: number[] = [];
          const t0 = nowMs();
          await closedLoop(total, concurrency, async () => {
            latencies.push((await runner.run(kind, chain)).ms);
          });
          const wall = (nowMs() - t0) / 1000;
          const after = cpu();
          const per = (k: keyof typeof before) => round((after[k] - before[k]) / total);
          const used = (Object.keys(before) as (keyof typeof before)[]).reduce((s, k) => s + after[k] - before[k], 0);
          const row: RealClusterRow = {
            workers: n,
            kind,
            chains: total,
            concurrency,
            wallSeconds: round(wall),
            chainsPerSecond: round(total / wall),
            chainMs: rounded(summarize(latencies)),
            stepMs: rounded(summarize(latencies.map((l) => l / STEPS))),
            cpuPerChain: {
              workers: per('workers'),
              temporal: per('temporal'),
              postgres: per('postgres'),
              loadGenerator: per('loadGenerator'),
            },
            coresBusy: round(used / wall),
          };
          rows.push(row);
          progress(
            `${n} worker(s), ${kind}: ${row.chainsPerSecond} chains/s, step p50 ${row.stepMs.p50} ms, ${row.coresBusy} cores busy`,
          );
        }
      } finally {
        await Promise.all(workers.map(stopWorker));
      }
    }
  } finally {
    await connection?.close().catch(() => undefined);
    await clusterDown(path.join(dir, 'cluster')).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const row = (n: number, kind: Kind) => rows.find((r) => r.workers === n && r.kind === kind)!;
  const ratios = [1, 2, 3].map((n) => ({
    workers: n,
    governedOverPlain: ratio(row(n, 'governed').chainsPerSecond, row(n, 'plain').chainsPerSecond),
  }));
  const speedup = [1, 2, 3].map((n) => ({
    workers: n,
    governed: ratio(row(n, 'governed').chainsPerSecond, row(1, 'governed').chainsPerSecond),
    plain: ratio(row(n, 'plain').chainsPerSecond, row(1, 'plain').chainsPerSecond),
  }));
  const g = row(1, 'governed').cpuPerChain;
  const parts = Object.entries(g).sort((a, b) => b[1] - a[1]);
  const cores = machine.cores;
  const busy = Math.max(...rows.map((r) => r.coresBusy));
  const loadEnd = os.loadavg()[0]!;
  const starved =
    busy < cores * 0.8 && Math.max(machine.loadAverageAtStart, loadEnd) > cores
      ? ` The cluster and workers got at most ${busy} of ${cores} cores while the load average was ` +
        `${machine.loadAverageAtStart}–${round(loadEnd)}: other work on the machine took the rest, so these rows ` +
        `measure CPU contention more than the governor's scaling (more worker processes add CPU per chain).`
      : '';
  const bound =
    `On ${cores} cores the parts together kept up to ${busy} cores busy (of ${cores}; the 1-minute load average ` +
    `also counts other work on the machine). Per governed chain (1 worker) the CPU went to ${parts
      .map(([k, v]) => `${k} ${v} s`)
      .join(', ')}: adding governor worker processes cannot raise throughput once the machine's cores are ` +
    `spent, and the ${parts[0]![0]} share is the largest, so it bounds the scaling first.${starved}`;
  return {
    schema: 'temporal-governor/bench-cluster@1',
    date: new Date().toISOString(),
    machine,
    cluster: {
      serverVersion: state?.serverVersion ?? '',
      startMs: state?.startMs ?? 0,
      processes: state?.processes.map((p) => p.name) ?? [],
    },
    chain: `${STEPS} steps of \`deploy\` on Environment::"staging" (noop executor), policies/default; plain: ${STEPS} activities in a workflow, no governance`,
    rows,
    ratios,
    speedup,
    bound,
    loadAverage: { start: machine.loadAverageAtStart, end: Math.round(os.loadavg()[0]! * 100) / 100 },
    runSeconds: round((nowMs() - started) / 1000),
  };
}

/** The results as a Markdown table. */
export function renderRealCluster(r: RealClusterResults): string {
  const lines = [
    `# Governor on a real cluster (${r.date})`,
    '',
    `Temporal ${r.cluster.serverVersion} on PostgreSQL (${r.cluster.processes.join(', ')}), up in ${r.cluster.startMs} ms; ` +
      `${r.machine.cores} cores (${r.machine.cpuModel}); load average ${r.loadAverage.start} at start, ${r.loadAverage.end} at end.`,
    `Chain: ${r.chain}. ${r.rows[0]?.chains ?? 0} chains per row, ${r.rows[0]?.concurrency ?? 0} in flight.`,
    '',
    '| workers | kind | chains/s | step p50 ms | step p95 ms | chain p50 ms | CPU s/chain workers | temporal | postgres | load gen | cores busy |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...r.rows.map(
      (x) =>
        `| ${x.workers} | ${x.kind} | ${x.chainsPerSecond} | ${x.stepMs.p50} | ${x.stepMs.p95} | ${x.chainMs.p50} | ` +
        `${x.cpuPerChain.workers} | ${x.cpuPerChain.temporal} | ${x.cpuPerChain.postgres} | ${x.cpuPerChain.loadGenerator} | ${x.coresBusy} |`,
    ),
    '',
    `Governed / plain throughput: ${r.ratios.map((x) => `${x.workers} worker(s) ${x.governedOverPlain}`).join(', ')}.`,
    `Speedup over one worker: ${r.speedup.map((x) => `${x.workers}: governed ${x.governed}×, plain ${x.plain}×`).join('; ')}.`,
    '',
    r.bound,
    '',
    `Run time ${r.runSeconds} s.`,
    '',
  ];
  return lines.join('\n');
}
