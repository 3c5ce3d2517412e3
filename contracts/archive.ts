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
