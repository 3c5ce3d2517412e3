import {
  OpenTelemetryInboundInterceptor,
  OpenTelemetryInternalsInterceptor,
  OpenTelemetryOutboundInterceptor,
} from '@temporalio/interceptors-opentelemetry/lib/workflow';
import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';

/**
 * Workflow interceptors of a traced worker (`runtime/tracing.ts`, only when tracing is on): a span per
 * workflow run (the chain) and per activity it schedules, with the trace context passed to activities
 * in their headers. Spans leave the sandbox through the SDK's sink; nothing here issues a command, so
 * histories replay the same with or without it.
 */
export const interceptors: WorkflowInterceptorsFactory = () => ({
  inbound: [new OpenTelemetryInboundInterceptor()],
  outbound: [new OpenTelemetryOutboundInterceptor()],
  internals: [new OpenTelemetryInternalsInterceptor()],
});
