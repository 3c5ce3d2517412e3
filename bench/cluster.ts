import { PAYLOAD_CONVERTER_PATH } from '../workers/worker';
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { initKeys } from '../identity';
import { freePort, startDevServer, type DevServer } from '../workers/dev-server';
import { resolveTemporalCli } from '../workers/temporal-cli';
import { nowMs, processCpuSeconds, selfCpuSeconds } from './stats';
import type { FromWorker, ToWorker, WorkerProcessConfig, WorkerStats } from './worker-process';

/** A worker child process driven over IPC. */
export interface WorkerChild {
  taskQueue: string;
  /**
   * The task queue of the lean baseline worker (`startWorker({ lean: true })`): in the same process, a
   * second worker whose bundle holds the baseline workflows alone, as a user's own worker would.
   */
  leanTaskQueue?: string;
  pid: number;
  startupMs: number;
  /** Base URL of the worker's metrics/health endpoint (operations on). */
  opsUrl?: string;
  stats(gc?: boolean): Promise<WorkerStats>;
  stop(): Promise<void>;
}

/** Everything a bench phase needs: a dev server, a client, a governor home and the workflow bundle. */
export interface BenchCluster {
  server: DevServer;
  client: Client;
  connection: Connection;
  home: string;
  dir: string;
  bundlePath: string;
  bundleMs: number;
  startWorker(options?: {
    maxCachedWorkflows?: number;
    profileDir?: string;
    nodeFlags?: string[];
    bundlePath?: string;
    operations?: WorkerProcessConfig['operations'];
    /** Also run the lean baseline worker (`WorkerChild.leanTaskQueue`). */
    lean?: boolean;
  }): Promise<WorkerChild>;
  /** CPU seconds used so far by the server, the load generator (this process). */
  cpu(): { server: number; client: number };
  close(): Promise<void>;
}

const quietLogger = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error(m: string) {
    process.stderr.write(`${m}\n`);
  },
  log() {},
};

/**
 * Dynamic config the bench gives the dev server. The dev server has a single history shard, and the
 * shard's transfer-queue reader is rate limited to `history.transferProcessorMaxPollRPS` (default 20):
 * once its burst is spent, every workflow or activity task waits ~50 ms before it is dispatched, so any
 * chain runs at ~100 ms per step whatever the worker does (measured: plain 10-step chain 1,050 ms
 * stock, ~90 ms with this). A production cluster has hundreds of shards, each with its own limiter.
 */
export const BENCH_SERVER_DYNAMIC_CONFIG: Readonly<Record<string, number>> = {
  'history.transferProcessorMaxPollRPS': 10_000,
};

/**
 * A `temporal` wrapper that appends `--dynamic-config-value` flags, so the bench can keep using
 * `startDevServer` (which takes no extra server flags) through its TEMPORAL_CLI_PATH override.
 */
function cliWithDynamicConfig(dir: string, progress: (m: string) => void): string {
  const real = resolveTemporalCli({ onProgress: progress });
  const flags = Object.entries(BENCH_SERVER_DYNAMIC_CONFIG).map(([k, v]) => `--dynamic-config-value '${k}=${v}'`);
  const wrapper = path.join(dir, 'temporal');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec '${real.replace(/'/g, `'\\''`)}' "$@" ${flags.join(' ')}\n`, {
    mode: 0o755,
  });
  return wrapper;
}

/**
 * Starts an in-memory headless dev server on a free port (with BENCH_SERVER_DYNAMIC_CONFIG unless
 * `stock`), builds the bench bundle and a temp GOVERNOR_HOME.
 */
export async function startCluster(
  progress: (m: string) => void,
  options: { stock?: boolean } = {},
): Promise<BenchCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-bench-'));
  const home = path.join(dir, 'home');
  await initKeys(home);

  const port = await freePort();
  progress(
    `starting Temporal dev server on 127.0.0.1:${port} (in memory, headless${options.stock ? ', stock dynamic config' : ''})`,
  );
  const saved = process.env.TEMPORAL_CLI_PATH;
  let server: DevServer;
  try {
    if (!options.stock) process.env.TEMPORAL_CLI_PATH = cliWithDynamicConfig(dir, progress);
    server = await startDevServer({
      port,
      httpPort: await freePort(),
      headless: true,
      logFile: path.join(dir, 'temporal-server.log'),
      onProgress: progress,
    });
  } finally {
    if (saved === undefined) delete process.env.TEMPORAL_CLI_PATH;
    else process.env.TEMPORAL_CLI_PATH = saved;
  }

  const t0 = nowMs();
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('./workflows'),
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    logger: quietLogger,
  });
  const bundleMs = nowMs() - t0;
  const bundlePath = path.join(dir, 'workflow-bundle.js');
  fs.writeFileSync(bundlePath, code);
  // The baselines alone: what a user's worker without the governor evaluates for each workflow it starts.
  const lean = await bundleWorkflowCode({
    workflowsPath: require.resolve('./baseline-workflows'),
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    logger: quietLogger,
  });
  const leanBundlePath = path.join(dir, 'lean-workflow-bundle.js');
  fs.writeFileSync(leanBundlePath, lean.code);

  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const children = new Set<ChildProcess>();

  return {
    server,
    client,
    connection,
    home,
    dir,
    bundlePath,
    bundleMs,
    async startWorker(options = {}) {
      const taskQueue = `bench-${randomUUID()}`;
      const config: WorkerProcessConfig = {
        address: server.address,
        taskQueue,
        home,
        bundlePath: options.bundlePath ?? bundlePath,
        maxCachedWorkflows: options.maxCachedWorkflows,
        ...(options.operations ? { operations: options.operations } : {}),
        ...(options.lean ? { lean: { taskQueue: `${taskQueue}-lean`, bundlePath: leanBundlePath } } : {}),
      };
      const execArgv = ['--expose-gc', ...(options.nodeFlags ?? [])];
      if (options.profileDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${options.profileDir}`);
      const child = fork(path.join(__dirname, 'worker-process.js'), [JSON.stringify(config)], {
        execArgv,
        // The child's stdout is this process's stderr: whatever the worker prints never mixes with `--json` output.
        stdio: ['ignore', 2, 2, 'ipc'],
      });
      children.add(child);
      child.once('exit', () => children.delete(child));
      const waiters: ((m: FromWorker) => boolean)[] = [];
      child.on('message', (m: FromWorker) => {
        const i = waiters.findIndex((w) => w(m));
        if (i >= 0) waiters.splice(i, 1);
      });
      const next = <T extends FromWorker['type']>(
        type: T,
        timeoutMs = 120_000,
      ): Promise<Extract<FromWorker, { type: T }>> =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`bench worker: no ${type} within ${timeoutMs} ms`)),
            timeoutMs,
          );
          const onExit = (code: number | null): void => {
            clearTimeout(timer);
            reject(new Error(`bench worker exited (${code}) while waiting for ${type}`));
          };
          child.once('exit', onExit);
          waiters.push((m) => {
            if (m.type === 'error') {
              clearTimeout(timer);
              child.off('exit', onExit);
              reject(new Error(`bench worker failed: ${m.message}`));
              return true;
            }
            if (m.type !== type) return false;
            clearTimeout(timer);
            child.off('exit', onExit);
            resolve(m as Extract<FromWorker, { type: T }>);
            return true;
          });
        });
      const ready = await next('ready');
      const ask = (m: ToWorker): void => {
        child.send(m);
      };
      return {
        taskQueue,
        ...(config.lean ? { leanTaskQueue: config.lean.taskQueue } : {}),
        pid: child.pid ?? -1,
        startupMs: ready.startupMs,
        ...(ready.opsUrl ? { opsUrl: ready.opsUrl } : {}),
        async stats(gc = false) {
          const reply = next('stats');
          ask({ type: 'stats', gc });
          return (await reply).stats;
        },
        async stop() {
          if (child.exitCode !== null) return;
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          ask({ type: 'stop' });
          const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
          await exited;
          clearTimeout(timer);
        },
      };
    },
    cpu() {
      return { server: processCpuSeconds(server.pid), client: selfCpuSeconds() };
    },
    async close() {
      for (const child of children) child.kill('SIGKILL');
      await connection.close();
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
