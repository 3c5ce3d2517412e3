import { ApplicationFailure } from '@temporalio/activity';
import type { Executor, JsonValue } from '../contracts/chain';
import { ErrorCode } from '../contracts/errors';
import type { ExecutionOutcome } from '../contracts/state';

/** Input of the built-in `execute` activity. */
export interface ExecuteInput {
  chainId: string;
  stepId: string;
  idempotencyKey: string;
  executor: Executor;
  input: Record<string, JsonValue>;
}

/** True when `host` matches an allow-list entry (exact, or `*.example.com` for subdomains). */
export function hostAllowed(host: string, allowList: readonly string[]): boolean {
  const h = host.toLowerCase();
  return allowList.some((entry) => {
    const e = entry.toLowerCase();
    return e.startsWith('*.') ? h.endsWith(e.slice(1)) && h.length > e.length - 1 : h === e;
  });
}

/**
 * Runs a built-in executor. `http` calls only allow-listed hosts, sends `Idempotency-Key`, and never
 * follows redirects (a redirect could leave the allow-list). 5xx and network errors are retryable;
 * 4xx is a non-retryable executor failure.
 */
export async function runBuiltInExecutor(input: ExecuteInput, allowedHosts: readonly string[]): Promise<ExecutionOutcome> {
  const { executor, idempotencyKey } = input;
  switch (executor.type) {
    case 'noop':
      return { executor: 'noop', idempotencyKey };
    case 'http': {
      const url = new URL(executor.url);
      if (!hostAllowed(url.hostname, allowedHosts)) {
        throw ApplicationFailure.nonRetryable(`host ${url.hostname} is not in the manifest's http.allowedHosts`, ErrorCode.HostNotAllowed);
      }
      const hasBody = executor.method !== 'GET' && executor.method !== 'DELETE';
      let response: Response;
      try {
        response = await fetch(url, {
          method: executor.method,
          redirect: 'manual',
          signal: AbortSignal.timeout(executor.timeoutMs),
          headers: {
            ...(executor.headers ?? {}),
            'idempotency-key': idempotencyKey,
            ...(hasBody ? { 'content-type': 'application/json' } : {}),
          },
          body: hasBody ? JSON.stringify(executor.body ?? input.input) : undefined,
        });
        await response.arrayBuffer(); // drain; the body is not recorded
      } catch (err) {
        throw ApplicationFailure.retryable(`http ${executor.method} ${url.host}: ${(err as Error).message}`, ErrorCode.ExecutorFailed + '_TRANSIENT');
      }
      if (response.status >= 500) {
        throw ApplicationFailure.retryable(`http ${executor.method} ${url.host} answered ${response.status}`, ErrorCode.ExecutorFailed + '_TRANSIENT');
      }
      if (response.status >= 300) {
        throw ApplicationFailure.nonRetryable(`http ${executor.method} ${url.host} answered ${response.status}`, ErrorCode.ExecutorFailed);
      }
      return { executor: 'http', idempotencyKey, httpStatus: response.status };
    }
    case 'activity':
      // The workflow schedules service activities on the service's task queue itself.
      throw ApplicationFailure.nonRetryable('activity executors run on the service task queue, not here', ErrorCode.InvalidInput);
  }
}
