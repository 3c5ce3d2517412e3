import { proxyActivities } from '@temporalio/workflow';
import type { ArchiveActivities } from '../activities/archive';
import type { ArchiveInput, ArchiveResult } from '../contracts/archive';

/*
 * Deterministic code only. The archive workflow exports one closed chain's sealed proof to the proof archive
 * (README "Archived proofs") with the `archiveProof` activity and its retries. Chains start it detached
 * (parent close: abandon) as they close and await only its start: an archive that is down costs this
 * workflow its retries, never the chain its time or its outcome.
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

/** Archives the proof of `input.chainId` once it has closed (fails, visibly in the UI, only when refused). */
export async function governorArchiveWorkflow(input: ArchiveInput): Promise<ArchiveResult> {
  return await archiveProof(input);
}
