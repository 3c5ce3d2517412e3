import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  proxyActivities,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { GovernorActivities } from '../activities';
import { formatIssues } from '../contracts/chain';
import { ErrorCode } from '../contracts/errors';
import {
  ActivateFleetBundleInput,
  FLEET_ACTIVATION_HISTORY,
  FLEET_FORGET_MS,
  FLEET_MEMO,
  FleetRegistryInput,
  WorkerHeartbeat,
  activateFleetBundleUpdate,
  fleetHeartbeatSignal,
  fleetStatusQuery,
  type FleetActivation,
  type FleetMemo,
  type FleetStatus,
  type FleetWorker,
} from '../contracts/fleet';

// Recovery must eventually succeed (until it does, the registry publishes `recovering`): no attempt limit.
const recovery = proxyActivities<GovernorActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '30s', nonRetryableErrorTypes: [ErrorCode.InvalidInput] },
});
const verifier = proxyActivities<GovernorActivities>({
  startToCloseTimeout: '30s',
  retry: { maximumAttempts: 5, initialInterval: '500ms', nonRetryableErrorTypes: [ErrorCode.InvalidInput] },
});

/** How long an activation waits for a recovering registry before it is refused. */
const UPDATE_WAIT = '30s';

function parseActivation(input: unknown): ActivateFleetBundleInput {
  const parsed = ActivateFleetBundleInput.safeParse(input);
  if (!parsed.success)
    throw ApplicationFailure.nonRetryable(
      `invalid activation: ${formatIssues(parsed.error).replace(/\n/g, '; ')}`,
      ErrorCode.InvalidInput,
    );
  return parsed.data;
}

/**
 * The fleet registry (id `governor-fleet`, one per namespace; contracts/fleet.ts): the workers' heartbeats
 * and the fleet's declared active bundle. Every run first rebuilds the active bundle from every earlier
 * run and what its previous run carried (`recoverFleet` verifies each statement; the newest valid one
 * wins), so neither a terminate nor a starter's argument can roll it back. An activation is verified by
 * the `verifyFleetActivation` activity (trusted policy-signing keys) and must be newer than the active
 * bundle. Continues as new when Temporal suggests it.
 */
export async function governorFleetWorkflow(raw?: unknown): Promise<void> {
  const info = workflowInfo();
  const workers = new Map<string, FleetWorker>();
  let activations: FleetActivation[] = [];
  let active: FleetActivation | undefined;
  let ready = false;
  const status = (): FleetStatus => ({
    state: ready ? 'ready' : 'recovering',
    ...(active ? { active } : {}),
    workers: [...workers.values()].sort((a, b) => a.workerId.localeCompare(b.workerId)),
    activations: [...activations],
  });
  const publish = (): void => {
    const memo: FleetMemo = { v: 1, state: ready ? 'ready' : 'recovering', ...(active ? { active } : {}) };
    upsertMemo({ [FLEET_MEMO]: memo });
  };
  // Activations run one at a time: each is compared with the one before.
  let tail: Promise<unknown> = Promise.resolve();
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = tail.then(fn);
    tail = next.catch(() => undefined);
    return next;
  };

  // Handlers first: a signal- or update-with-start arrives in the run's first activation.
  setHandler(fleetStatusQuery, status);
  setHandler(fleetHeartbeatSignal, (input: unknown) => {
    const parsed = WorkerHeartbeat.safeParse(input);
    if (!parsed.success) return; // a malformed report is dropped (signals cannot be refused)
    const at = parsed.data.sentAt;
    const known = workers.get(parsed.data.workerId);
    workers.set(parsed.data.workerId, { ...parsed.data, firstSeen: known?.firstSeen ?? at, lastSeen: at });
    if (workers.size > 1000 || !known) {
      // Forgotten: unheard of for a day before the newest report (the reports' clocks).
      const horizon = Date.parse(at) - FLEET_FORGET_MS;
      for (const [id, w] of workers) if (!(Date.parse(w.lastSeen) >= horizon)) workers.delete(id);
    }
  });
  setHandler(
    activateFleetBundleUpdate,
    async (input) => {
      const request = parseActivation(input);
      if (!ready && !(await condition(() => ready, UPDATE_WAIT)))
        throw ApplicationFailure.nonRetryable(
          'the fleet registry is still recovering its active bundle: try again',
          ErrorCode.PolicyUnavailable,
        );
      return serially(async () => {
        const verified = await verifier.verifyFleetActivation({
          digest: request.digest,
          signature: request.signature,
        });
        if (!verified.ok)
          throw ApplicationFailure.nonRetryable(`activation refused: ${verified.reason}`, ErrorCode.PolicyError);
        if (active && verified.digest === active.digest) return status(); // already active
        if (active && verified.version <= active.version)
          throw ApplicationFailure.nonRetryable(
            `activation refused (rollback): bundle ${verified.digest} is version ${verified.version}, not newer than the active bundle ${active.digest} (version ${active.version})`,
            ErrorCode.PolicyError,
          );
        active = {
          digest: verified.digest,
          version: verified.version,
          issuedAt: verified.issuedAt,
          kid: verified.kid,
          signature: request.signature,
          ...(request.by !== undefined ? { by: request.by } : {}),
          at: verified.verifiedAt,
        };
        activations = [...activations, active].slice(-FLEET_ACTIVATION_HISTORY);
        publish();
        return status();
      });
    },
    { validator: (input) => void parseActivation(input) },
  );

  // Whatever a starter put in the memo is replaced at once: not ready.
  publish();
  const input =
    raw === undefined || raw === null ? { success: true as const, data: undefined } : FleetRegistryInput.safeParse(raw);
  if (!input.success)
    throw ApplicationFailure.nonRetryable(
      `invalid fleet registry input: ${formatIssues(input.error, 'input').replace(/\n/g, '; ')}`,
      ErrorCode.InvalidInput,
    );
  // Workers carried across continue-as-new are only the registry's own view (informational).
  if (info.continuedFromExecutionRunId !== undefined) {
    for (const w of input.data?.workers ?? []) {
      if (typeof w !== 'object' || w === null) continue;
      const { firstSeen, lastSeen, ...report } = w as Record<string, unknown>;
      const parsed = WorkerHeartbeat.safeParse(report);
      if (parsed.success && typeof firstSeen === 'string' && typeof lastSeen === 'string')
        workers.set(parsed.data.workerId, { ...parsed.data, firstSeen, lastSeen });
    }
    activations = [...(input.data?.activations ?? [])];
  }
  const recovered = await recovery.recoverFleet({
    workflowId: info.workflowId,
    runId: info.runId,
    ...(input.data?.active ? { carried: input.data.active } : {}),
  });
  // An activation accepted while recovering waited for `ready`; none can have happened.
  active = recovered.active;
  if (active && activations.at(-1)?.digest !== active.digest)
    activations = [...activations, active].slice(-FLEET_ACTIVATION_HISTORY);
  ready = true;
  publish();

  await condition(() => workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  await continueAsNew<typeof governorFleetWorkflow>({
    v: 1,
    ...(active ? { active } : {}),
    workers: [...workers.values()],
    activations,
  } satisfies FleetRegistryInput);
}
