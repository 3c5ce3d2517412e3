import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createGovernorWorker } from '../workers/worker';

/*
 * The bench worker, in its own process so its CPU and memory are measured apart from the load
 * generator: the governor worker exactly as `createGovernorWorker` builds it, with a bundle that adds
 * the baseline workflows. Driven over IPC by bench/run.ts.
 */

/** Configuration passed as the single argv argument (JSON). */
export interface WorkerProcessConfig {
  address: string;
  taskQueue: string;
  home: string;
  bundlePath: string;
  maxCachedWorkflows?: number;
}

/** Messages from the parent. */
export type ToWorker = { type: 'stats'; gc?: boolean } | { type: 'stop' };

/** Resource figures of the worker process. */
export interface WorkerStats {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  cpuSeconds: number;
  numCachedWorkflows: number;
  numInFlightWorkflowActivations: number;
  numInFlightActivities: number;
}

/** Messages to the parent. */
export type FromWorker =
  | { type: 'ready'; startupMs: number }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'stopped' }
  | { type: 'error'; message: string };

function send(message: FromWorker): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as WorkerProcessConfig;
  // Core's logs (payload-size warnings, failed tasks) forwarded to the JS logger, which writes to stderr.
  Runtime.install({
    logger: new DefaultLogger('WARN'),
    telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
  });
  const t0 = performance.now();
  const connection = await NativeConnection.connect({ address: config.address });
  const { worker } = await createGovernorWorker({
    connection,
    namespace: 'default',
    taskQueue: config.taskQueue,
    home: config.home,
    workflowBundle: { codePath: config.bundlePath },
    // The plain baselines' activity: the noop executor's work without governance (no receipt).
    extraActivities: {
      async plainNoop(input: { idempotencyKey: string }) {
        return { executor: 'noop', idempotencyKey: input.idempotencyKey };
      },
    },
    ...(config.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: config.maxCachedWorkflows } : {}),
  });
  const running = worker.run();
  send({ type: 'ready', startupMs: performance.now() - t0 });

  process.on('message', (message: ToWorker) => {
    if (message.type === 'stats') {
      if (message.gc && typeof global.gc === 'function') {
        global.gc();
        global.gc();
      }
      const m = process.memoryUsage();
      const cpu = process.cpuUsage();
      const status = worker.getStatus();
      send({
        type: 'stats',
        stats: {
          rss: m.rss,
          heapUsed: m.heapUsed,
          heapTotal: m.heapTotal,
          external: m.external,
          arrayBuffers: m.arrayBuffers,
          cpuSeconds: (cpu.user + cpu.system) / 1e6,
          numCachedWorkflows: status.numCachedWorkflows,
          numInFlightWorkflowActivations: status.numInFlightWorkflowActivations,
          numInFlightActivities: status.numInFlightActivities,
        },
      });
    } else if (message.type === 'stop') {
      worker.shutdown();
      void running
        .then(() => connection.close())
        .then(() => {
          send({ type: 'stopped' });
          // A normal exit, so --cpu-prof writes its profile.
          process.exit(0);
        });
    }
  });
  process.on('disconnect', () => process.exit(0));
  await running;
}

main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
});
