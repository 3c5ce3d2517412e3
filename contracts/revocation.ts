/** Workload revocations, kept by one registry workflow per governor task queue. Sandbox-safe. */

/** Workflow type of the revocation registry. Recorded: never rename. */
export const REVOCATION_REGISTRY_TYPE = 'revocationRegistryWorkflow';

/**
 * Workflow id of the revocation registry of the governor deployment serving `taskQueue` (every
 * worker of a deployment polls the same queue, so they share one list).
 */
export function revocationRegistryId(taskQueue: string): string {
  return `governor-revocations:${taskQueue}`;
}

/** Input of a workload revocation. */
export interface RevokeWorkloadInput {
  workload: string;
  reason: string;
  by?: string;
}

/** One revoked workload. */
export interface Revocation extends RevokeWorkloadInput {
  /** Order of revocation in the registry. */
  seq: number;
}

/** The registry's state: revoked workloads by subject. */
export interface RevocationList {
  revoked: Record<string, Revocation>;
}
