/**
 * Error codes shared by the workflow, activities, worker and CLI. Safe to load in the workflow sandbox.
 * Branch on `code` (not `instanceof`: the sandbox has its own realm); across the Temporal boundary the
 * code travels as `ApplicationFailure.type`.
 */
export const ErrorCode = {
  InvalidInput: 'GOVERNOR_INVALID_INPUT',
  CredentialInvalid: 'GOVERNOR_CREDENTIAL_INVALID',
  AttestationInvalid: 'GOVERNOR_ATTESTATION_INVALID',
  ApprovalInvalid: 'GOVERNOR_APPROVAL_INVALID',
  PolicyError: 'GOVERNOR_POLICY_ERROR',
  PolicyUnavailable: 'GOVERNOR_POLICY_UNAVAILABLE',
  ExecutorFailed: 'GOVERNOR_EXECUTOR_FAILED',
  HostNotAllowed: 'GOVERNOR_HOST_NOT_ALLOWED',
  TemporalUnreachable: 'GOVERNOR_TEMPORAL_UNREACHABLE',
  PortInUse: 'GOVERNOR_PORT_IN_USE',
  ToolchainMissing: 'GOVERNOR_TOOLCHAIN_MISSING',
  ServerStartFailed: 'GOVERNOR_SERVER_START_FAILED',
  KeysMissing: 'GOVERNOR_KEYS_MISSING',
  NotFound: 'GOVERNOR_NOT_FOUND',
  /** No governor worker polls the task queue: a chain started now would wait without progress. */
  NoWorker: 'GOVERNOR_NO_WORKER',
  /** The revocation list is not known (registry not running, recovering, unreachable or unverified). */
  RevocationsUnavailable: 'GOVERNOR_REVOCATIONS_UNAVAILABLE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Thrown when the governor refuses or cannot do something; `code` says which. */
export class GovernorError extends Error {
  readonly code: ErrorCode;
  /** The offending field or setting, when there is one (never the raw value). */
  readonly field?: string;

  constructor(code: ErrorCode, message: string, field?: string) {
    super(message);
    this.name = 'GovernorError';
    this.code = code;
    if (field !== undefined) this.field = field;
  }
}

/** True when `err` carries one of the governor's error codes. */
export function isGovernorError(err: unknown): err is GovernorError {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    (Object.values(ErrorCode) as string[]).includes((err as { code: string }).code)
  );
}
