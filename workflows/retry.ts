import type { ActivityOptions, Duration, LocalActivityOptions, RetryPolicy } from '@temporalio/common';
import type { Executor } from '../contracts/chain';
import { ErrorCode } from '../contracts/errors';

/*
 * Every retry policy and activity option the governor's workflows schedule with, in one place. They are
 * part of the commands the workflow records: change one only behind `patched()`. Sandbox-safe.
 */

/** The governor's local activities (authorize, verify a vote, verdict or resume, request a slot, record a receipt). */
export const LOCAL_RETRY: RetryPolicy = {
  maximumAttempts: 5,
  initialInterval: '200ms',
  backoffCoefficient: 2,
  nonRetryableErrorTypes: [ErrorCode.InvalidInput],
};

// Authorization, vote verification and receipts run as local activities: fast, in-process on the
// governor worker, and their results are still recorded in history (as markers) for replay and audit.
export const LOCAL_ACTIVITY: LocalActivityOptions = { startToCloseTimeout: '10s', retry: LOCAL_RETRY };

// Executors run as normal activities: side effects get Temporal's at-least-once delivery with a
// bounded retry policy; the idempotency key makes a retry safe on the receiving side.
export const EXECUTOR_RETRY: RetryPolicy = {
  maximumAttempts: 3,
  initialInterval: '1s',
  backoffCoefficient: 2,
  nonRetryableErrorTypes: [ErrorCode.InvalidInput, ErrorCode.HostNotAllowed, ErrorCode.ExecutorFailed],
};

/** Defaults of the executor proxy (every call passes its own timeout, see below). */
export const EXECUTOR_ACTIVITY: ActivityOptions = { startToCloseTimeout: '2m', retry: EXECUTOR_RETRY };

/** A built-in executor other than http (noop): its `execute` or `governStep` activity. */
const BUILT_IN_TIMEOUT = '30s';

/** `execute` of a built-in executor: an http request gets twice its own timeout. */
export function executeTimeout(executor: Executor): Duration {
  return executor.type === 'http' ? executor.timeoutMs * 2 : BUILT_IN_TIMEOUT;
}

/** `governStep` (decision and built-in execution in one activity): `execute`'s timeout plus 10 s to decide. */
export function governStepTimeout(executor: Executor): Duration {
  return executor.type === 'http' ? executor.timeoutMs * 2 + 10_000 : BUILT_IN_TIMEOUT;
}

/** A service's own activity: its errors are the service's, all retried the same bounded number of times. */
export const SERVICE_RETRY: RetryPolicy = { maximumAttempts: 3, initialInterval: '1s', backoffCoefficient: 2 };

/** Options of a service's own activity, on the service's own task queue, with the timeouts the step declares. */
export function serviceActivityOptions(executor: Extract<Executor, { type: 'activity' }>): ActivityOptions {
  return {
    taskQueue: executor.taskQueue,
    startToCloseTimeout: executor.timeoutMs,
    ...(executor.heartbeatTimeoutMs ? { heartbeatTimeout: executor.heartbeatTimeoutMs } : {}),
    retry: SERVICE_RETRY,
  };
}

/**
 * An MCP tool call (the `mcp` executor), on the gateway's own task queue: attempted exactly once. An MCP
 * tool call carries no idempotency key, so a retry could repeat the effect; a call whose gateway
 * crashed fails its step instead (SECURITY.md). A call that no gateway picks up within the step's
 * timeout (no gateway on the queue) fails too, instead of running later by surprise.
 */
export const MCP_RETRY: RetryPolicy = { maximumAttempts: 1 };

/** Options of an MCP tool call on the gateway's task queue, bounded by the step's timeout. */
export function mcpActivityOptions(executor: Extract<Executor, { type: 'mcp' }>): ActivityOptions {
  return {
    taskQueue: executor.taskQueue,
    startToCloseTimeout: executor.timeoutMs,
    scheduleToStartTimeout: executor.timeoutMs,
    retry: MCP_RETRY,
  };
}

/** The coordinator's local activities (admission, vote verification, receipt signing): quick retries; bad input or no policy is final. */
export const COORDINATOR_LOCAL_RETRY: RetryPolicy = {
  maximumAttempts: 5,
  initialInterval: '200ms',
  backoffCoefficient: 2,
  nonRetryableErrorTypes: [ErrorCode.InvalidInput, ErrorCode.PolicyUnavailable],
};

/** Options of every local activity the coordinator runs; each call adds its `summary`. */
export const COORDINATOR_LOCAL_ACTIVITY: LocalActivityOptions = {
  startToCloseTimeout: '10s',
  retry: COORDINATOR_LOCAL_RETRY,
};
