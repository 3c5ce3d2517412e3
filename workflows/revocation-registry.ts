import { ApplicationFailure, allHandlersFinished, condition, continueAsNew, setHandler, upsertMemo, workflowInfo } from '@temporalio/workflow';
import { revocationsQuery, revokeWorkloadUpdate } from '../contracts/messages';
import type { RevocationList } from '../contracts/revocation';

/**
 * A governor deployment's revocation list: a long-running workflow (id `governor-revocations:<queue>`) that records
 * revoked workloads; `authorize` consults it so chains started after a revocation are denied too.
 */
export async function revocationRegistryWorkflow(carried?: RevocationList): Promise<void> {
  const list: RevocationList = { revoked: { ...(carried?.revoked ?? {}) } };
  let seq = Object.values(list.revoked).reduce((m, r) => Math.max(m, r.seq), 0);
  // The list is mirrored into the memo: `authorize` reads it with DescribeWorkflowExecution, a pure
  // server call, so checking revocations never needs a workflow task (no worker, no deadlock).
  const publish = (): void => upsertMemo({ revoked: list.revoked });
  if (carried) publish();
  setHandler(revocationsQuery, () => list);
  setHandler(
    revokeWorkloadUpdate,
    (input) => {
      if (!list.revoked[input.workload]) {
        list.revoked[input.workload] = { workload: input.workload, reason: input.reason, by: input.by, seq: ++seq };
        publish();
      }
      return list;
    },
    {
      validator: (input) => {
        if (typeof input?.workload !== 'string' || input.workload.length === 0 || input.workload.length > 128) {
          throw ApplicationFailure.nonRetryable('workload: must be a non-empty workload subject', 'GOVERNOR_INVALID_INPUT');
        }
        if (typeof input.reason !== 'string' || input.reason.length === 0 || input.reason.length > 500) {
          throw ApplicationFailure.nonRetryable('reason: must be 1-500 characters', 'GOVERNOR_INVALID_INPUT');
        }
      },
    },
  );
  // Runs until Temporal suggests continuing as new; the list is carried across.
  await condition(() => workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  await continueAsNew<typeof revocationRegistryWorkflow>(list);
}
