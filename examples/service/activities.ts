import { resourceLabel } from '../../core/step';
import { ApplicationFailure } from '@temporalio/activity';
import type { ServiceActivityInput } from '../../contracts/executor';
import type { Ledger } from './ledger';

/**
 * The example service's own activities, run on the service's own task queue with its own
 * credentials. Each one honors the governor's idempotency key through the ledger.
 */
export function createServiceActivities(ledger: Ledger) {
  const perform = (input: ServiceActivityInput) => {
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
