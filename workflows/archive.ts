import {
  ApplicationFailure,
  continueAsNew,
  proxyActivities,
  sleep,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { ArchiveActivities } from '../activities/archive';
import {
  ARCHIVER_POSITION_MEMO,
  ARCHIVER_TASK_QUEUE,
  archiverWorkflowId,
  type ArchiveInput,
  type ArchiveResult,
  type ArchiverInput,
} from '../contracts/archive';
import { ErrorCode } from '../contracts/errors';

/*
 * Deterministic code only. Two ways proofs reach the proof archive (README "Archived proofs"):
 *
 * - `governorArchiverWorkflow` (ARCHIVE_BY_SWEEPER_PATCH, current): one per governor task queue, started by
 *   its workers. It sweeps: the `archiveSweep` activity lists the queue's chains and sessions that closed
 *   since the last sweep (Temporal visibility), exports each one's sealed proof, anchored in the transparency
 *   log, and returns where the next sweep starts. A chain never waits for it; an archive or log that is
 *   down holds the sweep's position (the activity's retries, then the next sweep), so no closed chain is
 *   skipped. It continues as new when Temporal suggests it.
 * - `governorArchiveWorkflow` (ARCHIVE_PROOF_PATCH, runs recorded before the sweeper): a chain started it
 *   detached as it closed; kept so those runs replay and their archive workflows finish.
 */

/**
 * One attempt waits (heartbeating) up to about 20 s for the chain's execution to close, then fetches its
 * history, builds the proof and writes it; retried for up to 7 days (well inside a namespace retention
 * that keeps histories long enough to be archived).
 */
const { archiveProof } = proxyActivities<ArchiveActivities>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: '30s',
  scheduleToCloseTimeout: '7d',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10m' },
  summary: 'export the sealed proof to the archive',
});

/** One sweep: bounded (a batch of chains), heartbeating; retried without end (the position is kept). */
const { archiveSweep } = proxyActivities<ArchiveActivities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: '60s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
});

/** Archives the proof of `input.chainId` once it has closed (fails, visibly in the UI, only when refused). */
export async function governorArchiveWorkflow(input: ArchiveInput): Promise<ArchiveResult> {
  return await archiveProof(input);
}

const DEFAULT_IDLE_MS = 1_000;
/** Idle sweeps back off (doubling) to this wait; a sweep that finds work goes back to `idleMs`. */
const MAX_IDLE_MS = 10_000;
/** Sweeps per run (about ten events each), then continue-as-new: a short history to replay. */
const SWEEPS_PER_RUN = 25;
const START_LOOKBACK_MS = 10 * 60_000;

/** The task queue's archiver (see the file comment). Refuses to run on a malformed input (no sweep). */
export async function governorArchiverWorkflow(input: ArchiverInput): Promise<void> {
  const info = workflowInfo();
  const taskQueue = (input as Partial<ArchiverInput> | undefined)?.taskQueue;
  if (typeof taskQueue !== 'string' || !ARCHIVER_TASK_QUEUE.test(taskQueue) || taskQueue !== info.taskQueue)
    throw ApplicationFailure.nonRetryable(
      `invalid archiver input: taskQueue must be the task queue this archiver runs on (${info.taskQueue})`,
      ErrorCode.InvalidInput,
    );
  // One archiver per queue, under its own id: others would only add load (or, hijacked, hold a position).
  if (info.workflowId !== archiverWorkflowId(taskQueue))
    throw ApplicationFailure.nonRetryable(
      `invalid archiver: its workflow id must be ${archiverWorkflowId(taskQueue)}`,
      ErrorCode.InvalidInput,
    );
  // A position in the future would skip every chain closing until then.
  if (
    input.since !== undefined &&
    (typeof input.since !== 'string' ||
      Number.isNaN(Date.parse(input.since)) ||
      Date.parse(input.since) > info.runStartTime.getTime() + 60_000)
  )
    throw ApplicationFailure.nonRetryable(
      'invalid archiver input: since must be an ISO time, not in the future',
      ErrorCode.InvalidInput,
    );
  let since = input.since ?? new Date(info.startTime.getTime() - START_LOOKBACK_MS).toISOString();
  const idle =
    typeof input.idleMs === 'number' && Number.isFinite(input.idleMs) ? Math.max(200, input.idleMs) : DEFAULT_IDLE_MS;
  // From the input, not a patch: an archiver replays with the waits its own input gave it.
  const busy =
    typeof input.busyMs === 'number' && Number.isFinite(input.busyMs)
      ? Math.min(Math.max(100, input.busyMs), idle)
      : idle;
  let wait = idle;
  for (let sweeps = 0; sweeps < SWEEPS_PER_RUN && !workflowInfo().continueAsNewSuggested; sweeps++) {
    const r = await archiveSweep({ taskQueue, since });
    // The position, visible in the memo: a worker that starts a new archiver (this one terminated) resumes there.
    if (r.since !== since) upsertMemo({ [ARCHIVER_POSITION_MEMO]: r.since });
    since = r.since;
    // Progress resets the wait; sweeps that find nothing, or only chains to try again, back off.
    const found = r.written + r.unchanged + r.refused > 0;
    wait = r.disabled ? 60_000 : found ? idle : Math.min(Math.max(wait, idle) * 2, Math.max(idle, MAX_IDLE_MS));
    if (!r.more || !found) await sleep(found && !r.disabled ? busy : wait);
  }
  await continueAsNew<typeof governorArchiverWorkflow>({ ...input, since });
}
