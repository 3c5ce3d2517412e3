import { ApplicationFailure } from '@temporalio/workflow';
import { ErrorCode } from '../contracts/errors';

/** The innermost failure message (ActivityFailure wraps the ApplicationFailure that says why). Sandbox-safe. */
export function failureMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  let msg = e?.message ?? String(err);
  while (e && e.cause) {
    e = e.cause as { message?: string; cause?: unknown };
    if (e.message) msg = e.message;
  }
  return msg;
}

/** The non-retryable failure of refused input: `GOVERNOR_INVALID_INPUT`, its message never echoing the value. */
export function invalidInput(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorCode.InvalidInput);
}
