import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  makeWorkflowExporter,
} from '@temporalio/interceptors-opentelemetry';
import type { ActivityInterceptorsFactory, InjectedSinks } from '@temporalio/worker';

/**
 * OpenTelemetry tracing (DESIGN §12), off by default. On when the standard variables ask for it:
 * `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, `OTEL_TRACES_EXPORTER`
 * is not `none` and `OTEL_SDK_DISABLED` is not `true`. Spans go over OTLP/HTTP (the exporter reads the
 * other `OTEL_EXPORTER_OTLP_*` variables: headers, timeout, compression; `OTEL_SERVICE_NAME` names the
 * service). Temporal's interceptors make a span per workflow run (a chain), per activity scheduled
 * and per activity run, and carry the trace context from the client that starts a chain through the
 * workflow into every activity, the service's included; the governor adds decision, step, execution
 * and approval-vote spans in its activities (`runtime/spans.ts`).
 */

/** Whether the environment turns tracing on. */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED === 'true') return false;
  if ((env.OTEL_TRACES_EXPORTER ?? '').split(',').includes('none')) return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** What a traced governor worker adds to its `Worker.create` options. */
export interface WorkerTracing {
  /** The workflow interceptors module (bundled with the workflows). */
  workflowModules: string[];
  activity: ActivityInterceptorsFactory[];
  sinks: InjectedSinks<Record<string, never>>;
}

/** A running tracer provider. */
export interface Tracing {
  provider: NodeTracerProvider;
  /** For the governor worker (and any worker running governed workflows). */
  worker: WorkerTracing;
  /** Flushes and stops (at shutdown). */
  shutdown(): Promise<void>;
}

/** The module of the workflow interceptors (a workflow bundle built for tracing includes it). */
export const TRACING_WORKFLOW_INTERCEPTORS = require.resolve('../workflows/tracing-interceptors');

/**
 * Starts tracing: a tracer provider registered as the process's global one (W3C trace context), and
 * the worker's interceptors and workflow span sink. `exporter`/`processor` default to OTLP/HTTP batched.
 */
export function startTracing(
  options: { serviceName?: string; exporter?: SpanExporter; processor?: SpanProcessor } = {},
): Tracing {
  const resource = new Resource({
    'service.name': process.env.OTEL_SERVICE_NAME ?? options.serviceName ?? 'temporal-governor',
  });
  const processor = options.processor ?? new BatchSpanProcessor(options.exporter ?? new OTLPTraceExporter());
  const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
  provider.register();
  return {
    provider,
    worker: {
      workflowModules: [TRACING_WORKFLOW_INTERCEPTORS],
      activity: tracingActivityInterceptors(),
      sinks: { exporter: makeWorkflowExporter(processor, resource) } as unknown as InjectedSinks<Record<string, never>>,
    },
    shutdown: () => provider.shutdown(),
  };
}

/** Activity interceptors that continue the workflow's trace (a service worker adds these too). */
export function tracingActivityInterceptors(): ActivityInterceptorsFactory[] {
  return [(ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx) })];
}

/** Client interceptors that start the trace a chain carries (`new Client({ interceptors: tracingClientInterceptors() })`). */
export function tracingClientInterceptors(): { workflow: OpenTelemetryWorkflowClientInterceptor[] } {
  return { workflow: [new OpenTelemetryWorkflowClientInterceptor()] };
}

let processTracing: Tracing | undefined;

/**
 * The tracing of a client process (`governor run`/`demo`/`mcp`, the SDK): when the `OTEL_*` variables ask
 * for it, one tracer provider for the process (started at the first call) and Temporal's client
 * interceptor, so the chains it starts carry its trace context; undefined when tracing is off.
 * `shutdownProcessTracing` flushes it before the process exits.
 */
export function processTracingFromEnv(
  serviceName: string,
): { tracing: Tracing; clientInterceptors: ReturnType<typeof tracingClientInterceptors> } | undefined {
  if (!tracingRequested()) return undefined;
  processTracing ??= startTracing({ serviceName });
  return { tracing: processTracing, clientInterceptors: tracingClientInterceptors() };
}

/** Flushes and stops the process's tracer provider (when one was started); never throws. */
export async function shutdownProcessTracing(): Promise<void> {
  const t = processTracing;
  processTracing = undefined;
  await t?.shutdown().catch(() => undefined);
}
