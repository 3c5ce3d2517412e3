import { resourceLabel } from '../../core/step';
import { ApplicationFailure } from '@temporalio/activity';
import type { ServiceActivityInput } from '../../contracts/executor';
import { GrantRefused, verifyServiceActivityGrant } from '../../sdk/grant';
import type { JSONWebKeySet, JWTVerifyGetKey } from 'jose';
import type { Ledger } from './ledger';

/** How the service checks execution grants: the governor's grant JWKS and the service's own task queue. */
export interface GrantCheck {
  keys: JSONWebKeySet | JWTVerifyGetKey;
  audience: string;
}

/** Error type of a call refused for its execution grant (final: a retry carries the same grant). */
export const GRANT_REFUSED = 'GOVERNOR_GRANT_REFUSED';

/**
 * The example service's own activities, run on the service's own task queue with its own
 * credentials. Each one honors the governor's idempotency key through the ledger and, with `grants`,
 * runs only calls that carry a valid execution grant (DESIGN §13).
 */
export function createServiceActivities(ledger: Ledger, options: { grants?: GrantCheck } = {}) {
  const perform = async (input: ServiceActivityInput) => {
    const { grants } = options;
    if (grants) {
      // Only governed calls: a call without a valid grant for exactly this step and input is refused
      // before anything is written to the ledger.
      try {
        await verifyServiceActivityGrant(input, grants.keys, grants.audience);
      } catch (err) {
        const message = err instanceof GrantRefused ? err.message : 'execution grant refused';
        throw ApplicationFailure.nonRetryable(message, GRANT_REFUSED);
      }
    }
    if (input.input.simulateFailure === true) {
      // A permanent failure of the service (tests and demos use it to show Failed + compensation).
      throw ApplicationFailure.nonRetryable(`service refused ${input.action}`, 'SERVICE_FAILED');
    }
    const { entry, duplicate } = ledger.executeOnce({
      idempotencyKey: input.idempotencyKey,
      action: input.action,
      resource: resourceLabel(input.resource),
      at: new Date().toISOString(),
    });
    return { executed: entry.idempotencyKey, duplicate };
  };
  return {
    /** Deploys (example): records the deployment once per idempotency key. */
    async deploy(input: ServiceActivityInput) {
      return perform(input);
    },
    /** Rolls back (example compensation). */
    async rollback(input: ServiceActivityInput) {
      return perform(input);
    },
    /** Generic effect for any action. */
    async perform(input: ServiceActivityInput) {
      return perform(input);
    },
  };
}
