import { log, ParentClosePolicy, patched, startChild, WorkflowIdReusePolicy } from '@temporalio/workflow';
import { ARCHIVE_WORKFLOW, archiveWorkflowId, type ArchiveInput } from '../../contracts/archive';
import { ARCHIVE_BY_SWEEPER_PATCH, ARCHIVE_PROOF_PATCH } from '../../contracts/patches';
import { failureMessage } from '../failure';
import type { ChainRun } from './run';

/**
 * Starts the chain's archive workflow (ARCHIVE_PROOF_PATCH) when the chain or session closes: detached
 * (parent close: abandon), so the export, its waits and retries never hold up or fail the chain. Returns the
 * start to await before the run ends (a child must have started before its parent closes); a failed start
 * (e.g. an archive workflow of this chain still running) is logged and ignored. Runs recorded before the
 * patch start nothing. Runs since ARCHIVE_BY_SWEEPER_PATCH (implied by PATCHES_AT_START) start nothing either:
 * the task queue's archiver (workflows/archive.ts) exports them in batches, at no cost to the chain.
 * Deterministic.
 */
export function startArchive(run: ChainRun, kind: 'chain' | 'session'): Promise<void> {
  // Checked first: a run recorded with the per-chain archive has no sweeper marker and takes the old path.
  if (run.takes(ARCHIVE_BY_SWEEPER_PATCH) || !patched(ARCHIVE_PROOF_PATCH)) return Promise.resolve();
  const { chainId } = run;
  const input: ArchiveInput = { chainId };
  return startChild(ARCHIVE_WORKFLOW, {
    workflowId: archiveWorkflowId(chainId),
    args: [input],
    parentClosePolicy: ParentClosePolicy.ABANDON,
    // A chain closed again (a reset of a closed chain) is exported again: the export compares and refuses to
    // overwrite a different proof, visibly.
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    staticSummary: `archive the proof of ${kind} ${chainId}`,
  }).then(
    () => undefined,
    (err: unknown) => log.warn('proof archive not started', { chainId, reason: failureMessage(err) }),
  );
}
