/**
 * Archived proofs (DESIGN §13, README "Archived proofs"): names shared by the chain, the archive workflow
 * and its activity. Names recorded in history: never rename them. Sandbox-safe.
 */

/** Workflow type of the detached archive workflow a chain or session starts when it closes. */
export const ARCHIVE_WORKFLOW = 'governorArchiveWorkflow';

/** What a chain passes to its archive workflow. */
export interface ArchiveInput {
  chainId: string;
}

/** What one export did. */
export interface ArchiveResult {
  /** `written`: a new object; `unchanged`: the archive already held this chain's proof of the same history. */
  outcome: 'written' | 'unchanged' | 'disabled';
  /** Where the proof is (`<dir>/<key>` or `s3://bucket/key`); absent when archiving is disabled. */
  location?: string;
}

/** The deterministic workflow id of a chain's archive workflow (one per chain id). */
export function archiveWorkflowId(chainId: string): string {
  return `governor-archive:${chainId}`;
}

/**
 * Chain ids that are safe object keys and file names: a chain id is already 1–128 of `[A-Za-z0-9_.:@-]`
 * starting with a letter or digit (contracts/chain.ts), which also rules out `..`, `/` and absolute paths;
 * checked again here because the archive is written from ids read back from Temporal.
 */
export const ARCHIVE_CHAIN_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;

/** The object key of a chain's proof (below the archive's prefix), or undefined for an unsafe chain id. */
export function archiveKeyOf(chainId: string): string | undefined {
  if (typeof chainId !== 'string' || !ARCHIVE_CHAIN_ID.test(chainId) || chainId.includes('..')) return undefined;
  return `${chainId}.proof.json`;
}

/**
 * Workflow type of the archiver (ARCHIVE_BY_SWEEPER_PATCH): one per governor task queue, started by its
 * workers, that exports the proofs of the queue's closed chains and sessions in batches (`archiveSweep`),
 * instead of a detached archive workflow per chain.
 */
export const ARCHIVER_WORKFLOW = 'governorArchiverWorkflow';

/** The archiver's workflow id on a task queue (one per queue). */
export function archiverWorkflowId(taskQueue: string): string {
  return `governor-archiver@${taskQueue}`;
}

/** Memo key of the archiver's position (close time, ISO): where a new archiver of the queue resumes. */
export const ARCHIVER_POSITION_MEMO = 'archiverPosition';

/** Task queue names the archiver accepts (they are quoted into a visibility query: no quotes, no spaces). */
export const ARCHIVER_TASK_QUEUE = /^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$/;

/** The archiver's input (carried across continue-as-new). */
export interface ArchiverInput {
  taskQueue: string;
  /** Close time (ISO) up to which every closed chain of the queue has been handled; default: the start time less ten minutes. */
  since?: string;
  /** Wait between sweeps (default 1 s; doubling while sweeps find nothing, to 10 s). */
  idleMs?: number;
  /**
   * Wait after a sweep that found work (default `idleMs`, as archivers started before this field ran; workers now
   * start archivers with 250 ms, so a busy queue's proofs are out about a second sooner).
   */
  busyMs?: number;
}

/** One sweep: the closed chains of `taskQueue` that closed at or after `since` (less an overlap). */
export interface SweepInput {
  taskQueue: string;
  since: string;
}

/** What one sweep did. */
export interface SweepResult {
  /** Where the next sweep starts: the close time of the last chain handled (or of the first one that must be tried again). */
  since: string;
  /** Chains listed in the window. */
  listed: number;
  /** New proofs written; of those, anchored in the transparency log. */
  written: number;
  anchored: number;
  /** Already in the archive (the same evidence). */
  unchanged: number;
  /** Refused for good (logged): not a governed chain, history gone, a different proof archived. */
  refused: number;
  /** To be tried again by the next sweep (the archive or the log unavailable). */
  retry: number;
  /** More chains are waiting than one sweep takes: sweep again at once. */
  more: boolean;
  /** Archiving is off on the worker that ran the sweep. */
  disabled?: boolean;
}
