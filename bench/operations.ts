import fs from 'node:fs';
import path from 'node:path';
import { context, trace } from '@opentelemetry/api';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { createActivities } from '../activities';
import type { AuthorizeInput } from '../activities/authorize';
import { PolicyStore } from '../activities/policy-store';
import { GENESIS_HASH } from '../contracts/receipt';
import { createDecisionLog } from '../runtime/decision-log';
import { GovernorMetrics } from '../runtime/metrics';
import { GovernorObserver } from '../runtime/observer';
import { defaultPoliciesDir } from '../workers/worker';
import { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode } from '@temporalio/worker';
import { PAYLOAD_CONVERTER_PATH } from '../workers/worker';
import {
  TRACING_WORKFLOW_INTERCEPTORS,
  tracingActivityInterceptors,
  tracingClientInterceptors,
} from '../runtime/tracing';
import { ChainRunner, credentials, noopChain, WORKLOAD } from './chains';
import type { BenchCluster, WorkerChild } from './cluster';
import { processCpuSeconds, ratio, round, rounded, summarize, type Summary } from './stats';

/** Results of the operations overhead phase (issue 19): the `authorize` activity with tracing + metrics + decision log on vs off. */
export interface OperationsResults {
  iterations: number;
  off: { p50Micros: number; p99Micros: number };
  on: { p50Micros: number; p99Micros: number };
  /** Metrics and decision log on, tracing off. */
  metricsOnly: { p50Micros: number; p99Micros: number };
  /** (on p50 - off p50) / off p50, in percent. Target ≤ 5. */
  p50OverheadPercent: number;
  /** (metricsOnly p50 - off p50) / off p50, in percent. */
  metricsOnlyP50OverheadPercent: number;
  targetPercent: number;
  note: string;
  /** What users feel: the governed 10-step chain end to end, worker with operations on vs off. */
  endToEnd?: OperationsEndToEnd;
}

/** One side of the end-to-end comparison. */
export interface OperationsSide {
  latencyMs: Summary;
  workerCpuMsPerChain: number;
}

/** The governed 10-step chain end to end on two worker processes, operations on vs off, interleaved. */
export interface OperationsEndToEnd {
  steps: number;
  runsPerSide: number;
  off: OperationsSide;
  on: OperationsSide;
  p50Ratio: number;
  p95Ratio: number;
  /** (on p50 - off p50) / off p50, in percent. Target ≤ 5. */
  p50OverheadPercent: number;
  /** Lines in the on worker's decision log after it stopped, and the decisions it made (10 per chain). */
  decisionLogLines: number;
  decisionsExpected: number;
  /** Scrapes of the on worker's /metrics during the runs (one every `scrapeEverySeconds`). */
  scrapes: number;
  scrapeEverySeconds: number;
  targetPercent: number;
  setup: string;
}

/**
 * The governed 10-step chain end to end (start call to result) on two worker processes of the same
 * cluster: one with operations off (no observer, no tracing, as `governor worker` runs by default), one
 * with all of them on (metrics endpoint with the SDK's own metrics, scraped every few seconds; a decision
 * log file; OpenTelemetry with the tracing workflow bundle, batch processor and discarding exporter) and
 * started by a client with Temporal's OpenTelemetry interceptor. Runs alternate between the two, order
 * rotated every run, so both share the server's and the machine's drift.
 */
export async function benchOperationsEndToEnd(
  cluster: BenchCluster,
  options: { runs: number; warmup: number; nodeFlags: string[]; scrapeEverySeconds?: number },
  progress: (m: string) => void,
): Promise<OperationsEndToEnd> {
  const scrapeEverySeconds = options.scrapeEverySeconds ?? 5;
  progress('operations: bundling the workflows with the tracing interceptors');
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('./workflows'),
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    workflowInterceptorModules: [TRACING_WORKFLOW_INTERCEPTORS],
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
  });
  const tracedBundle = path.join(cluster.dir, 'workflow-bundle-traced.js');
  fs.writeFileSync(tracedBundle, code);
  const decisionLogFile = path.join(cluster.dir, 'operations-decisions.jsonl');
  // The client side of tracing: a provider in this process (discarding exporter) and a client with the interceptor.
  const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(new DiscardExporter())] });
  provider.register();
  let off: WorkerChild | undefined;
  let on: WorkerChild | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    off = await cluster.startWorker({ nodeFlags: options.nodeFlags });
    on = await cluster.startWorker({
      nodeFlags: options.nodeFlags,
      bundlePath: tracedBundle,
      operations: { decisionLogFile, tracing: true },
    });
    if (!on.opsUrl) throw new Error('operations: the worker with operations on serves no metrics endpoint');
    const tracedClient = new Client({ connection: cluster.connection, interceptors: tracingClientInterceptors() });
    const runners = {
      off: new ChainRunner(cluster.client, cluster.home, off.taskQueue),
      on: new ChainRunner(tracedClient, cluster.home, on.taskQueue),
    };
    const workers = { off, on };
    const chain = noopChain(10);
    let chainsOn = 0;
    progress(`operations: warm-up ${options.warmup} chains on each worker`);
    for (let i = 0; i < options.warmup; i++) {
      await runners.off.run('governed', chain);
      await runners.on.run('governed', chain);
      chainsOn++;
    }
    let scrapes = 0;
    const opsUrl = on.opsUrl;
    timer = setInterval(() => {
      void fetch(`${opsUrl}/metrics`)
        .then(async (r) => {
          await r.text();
          if (r.ok) scrapes++;
        })
        .catch(() => undefined);
    }, scrapeEverySeconds * 1000);
    const ms = { off: [] as number[], on: [] as number[] };
    const cpu = { off: 0, on: 0 };
    progress(`operations: ${options.runs} governed 10-step chains on each worker, interleaved`);
    for (let i = 0; i < options.runs; i++) {
      for (const side of i % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        const c0 = processCpuSeconds(workers[side].pid);
        ms[side].push((await runners[side].run('governed', chain)).ms);
        cpu[side] += processCpuSeconds(workers[side].pid) - c0;
        if (side === 'on') chainsOn++;
      }
    }
    clearInterval(timer);
    timer = undefined;
    await on.stop(); // flushes the decision log
    const decisionLogLines = fs
      .readFileSync(decisionLogFile, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0).length;
    const a = summarize(ms.off);
    const b = summarize(ms.on);
    return {
      steps: 10,
      runsPerSide: options.runs,
      off: { latencyMs: rounded(a), workerCpuMsPerChain: round((cpu.off * 1000) / options.runs) },
      on: { latencyMs: rounded(b), workerCpuMsPerChain: round((cpu.on * 1000) / options.runs) },
      p50Ratio: ratio(b.p50, a.p50),
      p95Ratio: ratio(b.p95, a.p95),
      p50OverheadPercent: round(((b.p50 - a.p50) / a.p50) * 100),
      decisionLogLines,
      decisionsExpected: chainsOn * 10,
      scrapes,
      scrapeEverySeconds,
      targetPercent: 5,
      setup:
        'Two worker processes on one dev server. Off: createGovernorWorker defaults. On: /metrics + /healthz + /readyz (governor metrics and the SDK worker metrics, scraped by the bench), decision log file, OpenTelemetry (tracing workflow bundle, activity interceptors, workflow span sink, BatchSpanProcessor, discarding exporter), client with the OpenTelemetry interceptor.',
    };
  } finally {
    if (timer) clearInterval(timer);
    await off?.stop().catch(() => undefined);
    await on?.stop().catch(() => undefined);
    trace.disable();
    context.disable();
    await provider.shutdown().catch(() => undefined);
  }
}

/** Accepts spans and drops them (an exporter that costs nothing, so the figure is the governor's own cost). */
class DiscardExporter implements SpanExporter {
  export(_spans: ReadableSpan[], done: (r: { code: number }) => void): void {
    done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The same `authorize` activity (credential + attestation verification, Cedar, receipt signing) timed in
 * alternating blocks, in one process: off (no tracer provider, no observer) and on (a registered tracer
 * provider with a batch processor, the decision span, Prometheus metrics and a decision log file).
 * Alternating blocks share the machine's drift between both sides. Temporal's own interceptor spans
 * (workflow and activity runs) are not part of this figure.
 */
export async function benchOperations(
  home: string,
  iterations: number,
  progress: (m: string) => void,
): Promise<OperationsResults> {
  const store = new PolicyStore();
  store.activateDir(defaultPoliciesDir());
  const { credential, attestation } = await credentials(home);
  const input: AuthorizeInput = {
    chainId: 'bench-operations',
    stepId: 's1',
    kind: 'step',
    workload: WORKLOAD,
    action: 'deploy',
    resource: { type: 'Environment', id: 'staging' },
    context: {},
    credential,
    attestation,
    prev: { seq: 0, hash: GENESIS_HASH },
  };
  const metrics = new GovernorMetrics();
  const decisionLog = createDecisionLog({ file: path.join(home, 'decisions.jsonl'), maxBytes: 16 * 1024 * 1024 });
  const off = createActivities({ policies: store, home });
  const on = createActivities({ policies: store, home, observer: new GovernorObserver({ metrics, decisionLog }) });
  const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(new DiscardExporter())] });
  const tracing = (enabled: boolean): void => {
    trace.disable();
    context.disable();
    if (enabled) provider.register();
  };
  const block = Math.max(50, Math.floor(iterations / 20));
  type Side = 'off' | 'on' | 'metricsOnly';
  const samples: Record<Side, number[]> = { off: [], on: [], metricsOnly: [] };
  // Each call runs as an activity does on a worker (its Context in AsyncLocalStorage, the worker's
  // activity interceptors: with tracing on, Temporal's OpenTelemetry one, which opens the activity span).
  const envs: Record<Side, MockActivityEnvironment> = {
    off: new MockActivityEnvironment(),
    on: new MockActivityEnvironment(undefined, { interceptors: tracingActivityInterceptors() }),
    metricsOnly: new MockActivityEnvironment(),
  };
  const run = async (side: Side, n: number, keep: boolean): Promise<void> => {
    tracing(side === 'on');
    const acts = side === 'off' ? off : on;
    const env = envs[side];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await env.run(acts.authorize, input);
      if (keep) samples[side].push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
  };
  progress(`operations: authorize with tracing + metrics + decision log on vs off, ${iterations} each`);
  await run('off', Math.min(500, iterations), false);
  await run('on', Math.min(500, iterations), false);
  for (let done = 0; done < iterations; done += block) {
    const n = Math.min(block, iterations - done);
    // Alternate which side goes first, so neither always runs right after a GC of the other.
    const order: Side[] = (done / block) % 2 === 0 ? ['off', 'on', 'metricsOnly'] : ['metricsOnly', 'on', 'off'];
    for (const side of order) await run(side, n, true);
  }
  tracing(false);
  await provider.shutdown();
  await decisionLog.close();
  fs.rmSync(path.join(home, 'decisions.jsonl'), { force: true });
  const a = summarize(samples.off);
  const b = summarize(samples.on);
  const c = summarize(samples.metricsOnly);
  return {
    iterations,
    off: { p50Micros: round(a.p50), p99Micros: round(a.p99) },
    on: { p50Micros: round(b.p50), p99Micros: round(b.p99) },
    metricsOnly: { p50Micros: round(c.p50), p99Micros: round(c.p99) },
    p50OverheadPercent: round(((b.p50 - a.p50) / a.p50) * 100),
    metricsOnlyP50OverheadPercent: round(((c.p50 - a.p50) / a.p50) * 100),
    targetPercent: 5,
    note: "In-process authorize activity run as on a worker (MockActivityEnvironment: the activity Context in AsyncLocalStorage; with tracing on, Temporal's OpenTelemetry activity interceptor and its span): the per-decision cost tracing, metrics and the decision log add; alternating blocks in one run. Workflow-side spans are in endToEnd.",
  };
}
