/** Lifecycle of a governed chain, as shown in `GovernorStatus`. Values are recorded: never rename. */
export const ChainStatus = {
  Running: 'Running',
  AwaitingApproval: 'AwaitingApproval',
  AwaitingCredential: 'AwaitingCredential',
  /** After an approval, the attestation went stale: waiting for a fresh one (`refreshCredential`). */
  AwaitingAttestation: 'AwaitingAttestation',
  Completed: 'Completed',
  Denied: 'Denied',
  Failed: 'Failed',
  Revoked: 'Revoked',
  /** The workflow refused its own input (`GOVERNOR_INVALID_INPUT`): nothing was authorized or executed. */
  Rejected: 'Rejected',
} as const;
export type ChainStatus = (typeof ChainStatus)[keyof typeof ChainStatus];

/** Statuses after which a chain never changes again. */
export const TERMINAL_STATUSES: readonly ChainStatus[] = ['Completed', 'Denied', 'Failed', 'Revoked', 'Rejected'];

/** Workflow type and default task queue of the governor (documented for other SDKs: never rename). */
export const WORKFLOW_TYPE = 'governedChainWorkflow';
export const DEFAULT_TASK_QUEUE = 'governor';
