import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineSignal,
  patched,
  proxyActivities,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { GovernorActivities } from '../activities';
import { formatIssues } from '../contracts/chain';
import { ErrorCode } from '../contracts/errors';
import { revocationsQuery, revokeWorkloadUpdate } from '../contracts/messages';
import { GENESIS_HASH } from '../contracts/receipt';
import {
  MIGRATE_REVOCATIONS_SIGNAL,
  REVOCATION_STATE_MEMO,
  parseRegistryInput,
  revocationLogName,
  RevokeWorkloadInput,
  SIGNED_REVOCATIONS_PATCH,
  type RevocationList,
  type RevocationListState,
  type SignedRevocation,
} from '../contracts/revocation';

/** Asks a registry written before signed lists to continue as new (see `legacyRegistry`). */
const migrateSignal = defineSignal(MIGRATE_REVOCATIONS_SIGNAL);

// Recovery must eventually succeed (until it does, `authorize` denies): retried without a limit.
const recovery = proxyActivities<GovernorActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '30s', nonRetryableErrorTypes: [ErrorCode.InvalidInput] },
});
const signer = proxyActivities<GovernorActivities>({
  startToCloseTimeout: '30s',
  retry: { maximumAttempts: 5, initialInterval: '500ms', nonRetryableErrorTypes: [ErrorCode.InvalidInput] },
});

/** How long a `revokeWorkload` update waits for a recovering registry before it is refused. */
const UPDATE_WAIT = '30s';

/**
 * A governor deployment's revocation list: a long-running workflow (id `governor-revocations:<queue>`) that records
 * revoked workloads; `authorize` consults it so chains started after a revocation are denied too.
 *
 * The list is a signed, append-only log (activities/revocation-log.ts): each revocation is an entry
 * signed with the governor's receipt key and hash-chained to the one before. It survives its
 * workflow: every run — first start, a start after a terminate, timeout or failure, and every
 * continue-as-new — rebuilds its list from all earlier copies (`recoverRevocations`) before it
 * publishes `ready`, so a run never starts empty, and nothing a starter passes in is trusted.
 * Inputs (the run's argument, updates) are validated with zod here, inside the workflow.
 */
export async function revocationRegistryWorkflow(carried?: unknown): Promise<void> {
  // Runs recorded before signed lists replay the code they ran (no marker in their history).
  if (!patched(SIGNED_REVOCATIONS_PATCH)) return legacyRegistry(carried as RevocationList | undefined);
  return signedRegistry(carried);
}

/** Throws the `GOVERNOR_INVALID_INPUT` failure of a revocation that does not parse, naming the field. */
function parseRevocation(input: unknown): RevokeWorkloadInput {
  const parsed = RevokeWorkloadInput.safeParse(input);
  if (!parsed.success)
    throw ApplicationFailure.nonRetryable(
      `invalid revocation: ${formatIssues(parsed.error).replace(/\n/g, '; ')}`,
      ErrorCode.InvalidInput,
    );
  return parsed.data;
}

async function signedRegistry(raw: unknown): Promise<void> {
  const info = workflowInfo();
  const registry = revocationLogName(info.namespace, info.workflowId);
  const log: SignedRevocation[] = [];
  const byWorkload = new Map<string, SignedRevocation>();
  let ready = false;
  const head = (): string => log.at(-1)?.hash ?? GENESIS_HASH;
  const view = (): RevocationList => ({ revoked: Object.fromEntries(byWorkload), seq: log.length, head: head() });
  // The list is mirrored into the memo: `authorize` reads it with DescribeWorkflowExecution, a pure
  // server call, so checking revocations never needs a workflow task (no worker, no deadlock).
  const publish = (): void => {
    const state: RevocationListState = {
      v: 1,
      registry,
      state: ready ? 'ready' : 'recovering',
      seq: log.length,
      head: head(),
    };
    upsertMemo({ revoked: Object.fromEntries(byWorkload), [REVOCATION_STATE_MEMO]: state });
  };
  // Appends run one at a time: each entry links to the one before it.
  let tail: Promise<unknown> = Promise.resolve();
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = tail.then(fn);
    tail = next.catch(() => undefined);
    return next;
  };

  // Handlers first: an update-with-start arrives in the run's first activation.
  setHandler(revocationsQuery, view);
  setHandler(
    revokeWorkloadUpdate,
    async (input) => {
      const r = parseRevocation(input);
      // (No timer when ready: a condition with a timeout always starts one.)
      if (!ready && !(await condition(() => ready, UPDATE_WAIT))) {
        throw ApplicationFailure.nonRetryable(
          'the revocation registry is still recovering its list: try again',
          ErrorCode.RevocationsUnavailable,
        );
      }
      return serially(async () => {
        if (!byWorkload.has(r.workload)) {
          const entry = await signer.signRevocation({
            registry,
            seq: log.length + 1,
            workload: r.workload,
            reason: r.reason,
            ...(r.by !== undefined ? { by: r.by } : {}),
            prevHash: head(),
          });
          log.push(entry);
          byWorkload.set(entry.workload, entry);
          publish();
        }
        return view();
      });
    },
    { validator: (input) => void parseRevocation(input) },
  );
  // A signed registry has nothing to migrate; the signal is accepted and ignored.
  setHandler(migrateSignal, () => undefined);

  // Whatever was there before (a starter's memo included) is replaced at once: not ready.
  publish();
  const input = parseRegistryInput(raw);
  if (!input.success)
    throw ApplicationFailure.nonRetryable(
      `invalid registry input: ${formatIssues(input.error, 'input').replace(/\n/g, '; ')}`,
      ErrorCode.InvalidInput,
    );
  // A legacy list is trusted only from this registry's own continue-as-new (the server says so; a starter cannot).
  const continued = info.continuedFromExecutionRunId !== undefined;
  const legacy =
    input.data && 'revoked' in input.data && continued
      ? Object.values(input.data.revoked).sort((a, b) => a.seq - b.seq)
      : [];
  const carried = input.data && 'entries' in input.data ? input.data.entries : [];
  const recovered = await recovery.recoverRevocations({
    registry,
    workflowId: info.workflowId,
    runId: info.runId,
    ...(carried.length > 0 ? { carried } : {}),
    ...(legacy.length > 0
      ? { legacy: legacy.map((r) => ({ workload: r.workload, reason: r.reason, ...(r.by ? { by: r.by } : {}) })) }
      : {}),
  });
  for (const e of recovered.entries) {
    log.push(e);
    byWorkload.set(e.workload, e);
  }
  ready = true;
  publish();

  // Runs until Temporal suggests continuing as new; the log is carried across (and recovered again).
  await condition(() => workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  await continueAsNew<typeof revocationRegistryWorkflow>({ v: 1, entries: log });
}

/**
 * The registry as it ran before signed lists (unsigned list carried in memory), kept so recorded
 * runs replay. The migrate signal (never in those histories) makes such a run continue as new: its
 * next run is a signed registry that signs the carried list.
 */
async function legacyRegistry(carried?: RevocationList): Promise<void> {
  const list: RevocationList = { revoked: { ...(carried?.revoked ?? {}) } };
  let seq = Object.values(list.revoked).reduce((m, r) => Math.max(m, r.seq), 0);
  let migrate = false;
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
    { validator: (input) => void parseRevocation(input) },
  );
  setHandler(migrateSignal, () => {
    migrate = true;
  });
  await condition(() => workflowInfo().continueAsNewSuggested || migrate);
  await condition(allHandlersFinished);
  await continueAsNew<typeof revocationRegistryWorkflow>(list);
}
