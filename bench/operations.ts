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
import { credentials, WORKLOAD } from './chains';
import { round, summarize } from './stats';

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
  const run = async (side: Side, n: number, keep: boolean): Promise<void> => {
    tracing(side === 'on');
    const acts = side === 'off' ? off : on;
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await acts.authorize(input);
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
    note: 'In-process authorize activity (the per-decision cost tracing, metrics and the decision log add); alternating blocks in one run. Temporal interceptor spans of workflow/activity runs are not included.',
  };
}
