import { SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';

/**
 * Spans of the governor's own work (DESIGN §12): decision, step, execution, approval vote. Made with
 * the OpenTelemetry API only: without a registered tracer provider (tracing off, the default) every
 * span is a no-op. Activity code only (never workflow code). Attributes carry identifiers and outcomes,
 * never a token, step input, context value or secret.
 */

const tracer = () => trace.getTracer('temporal-governor');

/** Sets attributes on the span `inSpan` runs `fn` in. */
export type Annotate = (attributes: Attributes) => void;

/** Runs `fn` in a child span of the active one (the activity's span under the Temporal interceptors). */
export async function inSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (annotate: Annotate) => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn((a) => span.setAttributes(a));
    } catch (err) {
      // The error's type only: a message may quote input.
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.name ?? 'Error' });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The attributes of an action (identifiers only). */
export function actionAttributes(a: {
  chainId: string;
  stepId: string;
  kind?: string;
  workload: string;
  action: string;
  resource: { type: string; id: string };
}): Attributes {
  return {
    'governor.chain_id': a.chainId,
    'governor.step_id': a.stepId,
    'governor.kind': a.kind ?? 'step',
    'governor.workload': a.workload,
    'governor.action': a.action,
    'governor.resource': `${a.resource.type}::${a.resource.id}`,
  };
}

/** The attributes of a decision's outcome. */
export function decisionAttributes(d: {
  effect: string;
  determiningPolicies: string[];
  bundleDigest: string;
  errors: string[];
}): Attributes {
  return {
    'governor.effect': d.effect,
    'governor.determining_policies': [...d.determiningPolicies],
    'governor.bundle_digest': d.bundleDigest,
    'governor.fail_closed': d.errors.length > 0,
  };
}
