import path from 'node:path';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { startTracing, type Tracing } from '../runtime/tracing';
import { freePort } from '../workers/dev-server';
import { defaultPoliciesDir, createGovernorWorker, PAYLOAD_CONVERTER_PATH } from '../workers/worker';
import { Operations } from '../workers/operations';

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
  /**
   * Operations on, as `governor worker --metrics-port 0 --decision-log <file>` with OTEL_* set runs them:
   * the metrics/health endpoint (with the SDK's own metrics), a decision log file and OpenTelemetry
   * tracing (batch processor; spans discarded by the exporter so the figure is the worker's own cost).
   * The bundle must then include TRACING_WORKFLOW_INTERCEPTORS.
   */
  operations?: { decisionLogFile: string; tracing: boolean };
  /** A second worker, on its own task queue, whose bundle holds the baseline workflows alone. */
  lean?: { taskQueue: string; bundlePath: string };
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

/** Accepts spans and drops them (what an OTLP exporter costs is the collector's, not the governor's). */
class DiscardExporter implements SpanExporter {
  export(_spans: ReadableSpan[], done: (r: { code: number }) => void): void {
    done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Messages to the parent. */
export type FromWorker =
  | { type: 'ready'; startupMs: number; opsUrl?: string }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'stopped' }
  | { type: 'error'; message: string };

function send(message: FromWorker): void {
  process.send?.(message);
}

/** The plain baselines' activity: the noop executor's work without governance (no receipt). */
async function plainNoop(input: { idempotencyKey: string }): Promise<{ executor: string; idempotencyKey: string }> {
  return { executor: 'noop', idempotencyKey: input.idempotencyKey };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as WorkerProcessConfig;
  const opsOn = config.operations;
  const sdkMetricsAddress = opsOn ? `127.0.0.1:${await freePort()}` : undefined;
  // Core's logs (payload-size warnings, failed tasks) forwarded to the JS logger, which writes to stderr.
  Runtime.install({
    logger: new DefaultLogger('WARN'),
    telemetryOptions: {
      logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
      ...(sdkMetricsAddress
        ? { metrics: { prometheus: { bindAddress: sdkMetricsAddress, countersTotalSuffix: true } } }
        : {}),
    },
  });
  const ops = opsOn
    ? new Operations({ metricsPort: 0, decisionLog: { file: opsOn.decisionLogFile }, sdkMetricsAddress })
    : undefined;
  const tracing: Tracing | undefined = opsOn?.tracing
    ? startTracing({ serviceName: 'governor-bench-worker', exporter: new DiscardExporter() })
    : undefined;
  const t0 = performance.now();
  const connection = await NativeConnection.connect({ address: config.address });
  const { worker, policies } = await createGovernorWorker({
    connection,
    namespace: 'default',
    taskQueue: config.taskQueue,
    home: config.home,
    workflowBundle: { codePath: config.bundlePath },
    extraActivities: { plainNoop },
    ...(config.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: config.maxCachedWorkflows } : {}),
    ...(ops ? { observer: ops.observer } : {}),
    ...(tracing ? { tracing: tracing.worker } : {}),
  });
  const lean = config.lean
    ? await Worker.create({
        connection,
        namespace: 'default',
        taskQueue: config.lean.taskQueue,
        workflowBundle: { codePath: config.lean.bundlePath },
        activities: { plainNoop },
        dataConverter: { payloadConverterPath: PAYLOAD_CONVERTER_PATH },
      })
    : undefined;
  const running = Promise.all([worker.run(), lean?.run()]);
  const opsServer = await ops?.start({
    worker,
    connection,
    namespace: 'default',
    taskQueue: config.taskQueue,
    policies,
    policiesDir: path.resolve(defaultPoliciesDir()),
    home: config.home,
  });
  send({ type: 'ready', startupMs: performance.now() - t0, ...(opsServer ? { opsUrl: opsServer.url } : {}) });

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
      lean?.shutdown();
      void running
        .then(() => ops?.close())
        .then(() => tracing?.shutdown())
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
