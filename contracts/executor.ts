import type { JsonValue, ResourceRef } from './chain';

/**
 * What a service's own activity receives when a step uses the `activity` executor. The service must
 * treat `idempotencyKey` (`<chainId>/<stepId>`) as the identity of the side effect: a retried
 * activity carries the same key and must not act twice.
 */
export interface ServiceActivityInput {
  idempotencyKey: string;
  chainId: string;
  stepId: string;
  action: string;
  resource: ResourceRef;
  input: Record<string, JsonValue>;
}
