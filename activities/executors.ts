import http from 'node:http';
import https from 'node:https';
import { ApplicationFailure } from '@temporalio/activity';
import type { Executor, JsonValue, ResourceRef } from '../contracts/chain';
import { ErrorCode } from '../contracts/errors';
import { GRANT_HEADER } from '../contracts/grant';
import type { ExecutionOutcome } from '../contracts/state';
import { entryLabel, type HttpSection } from '../policies/http-allow';
import type { CheckedCall, HttpGuard } from './http-guard';

/** Input of the built-in `execute` activity. */
export interface ExecuteInput {
  chainId: string;
  stepId: string;
  idempotencyKey: string;
  executor: Executor;
  input: Record<string, JsonValue>;
  /**
   * Set by workflows that grant executions (EXECUTION_GRANT_PATCH): what the http request's execution
   * grant binds besides the chain, step and key (the receipt is the one the step's execution links to).
   */
  grant?: { stepDigest: string; action: string; resource: ResourceRef };
}

/** Mints the execution grant of an http request for its audience (the target's `host[:port]`). */
export type MintHttpGrant = (audience: string) => Promise<string>;

/** Prefix of every refusal before sending (error type `GOVERNOR_HOST_NOT_ALLOWED`): what `governStep` turns into a deny. */
export const HTTP_REFUSED = 'http target refused';

/**
 * Runs a built-in executor. `http` calls only what the manifest's `http.allow` names (checked again
 * here, right before connecting, against the addresses the host resolves to now) and connects to
 * exactly the address that check accepted. A refused call throws `GOVERNOR_HOST_NOT_ALLOWED` before
 * anything is sent. Redirects are never followed (a 3xx fails the step); the response body is read up
 * to the entry's `maxResponseBytes` and discarded; the whole call is bounded by the entry's `timeout`
 * (or the chain's shorter `timeoutMs`). 5xx, network errors and timeouts are retryable (same
 * idempotency key); 3xx, 4xx and an oversize response are final.
 */
export async function runBuiltInExecutor(
  input: ExecuteInput,
  http: { section: HttpSection; guard: HttpGuard },
  mintGrant?: MintHttpGrant,
): Promise<ExecutionOutcome> {
  const { executor, idempotencyKey } = input;
  switch (executor.type) {
    case 'noop':
      return { executor: 'noop', idempotencyKey };
    case 'http': {
      const decided = await http.guard.check(http.section, executor);
      if (!decided.ok)
        throw ApplicationFailure.nonRetryable(`${HTTP_REFUSED}: ${decided.reason}`, ErrorCode.HostNotAllowed);
      const hasBody = executor.method !== 'GET' && executor.method !== 'DELETE';
      const body = hasBody ? Buffer.from(JSON.stringify(executor.body ?? input.input), 'utf8') : undefined;
      // The grant names the host actually called (after the guard's check), never one from the step's input.
      const grant = mintGrant ? await mintGrant(decided.checked.call.url.host) : undefined;
      const status = await send(
        decided.checked,
        executor.method,
        idempotencyKey,
        grant,
        body,
        Math.min(executor.timeoutMs, decided.checked.call.target.timeoutMs),
      );
      return { executor: 'http', idempotencyKey, httpStatus: status };
    }
    case 'activity':
    case 'mcp':
      // The workflow schedules service activities (and MCP tool calls) on their own task queue itself.
      throw ApplicationFailure.nonRetryable(
        `${executor.type} executors run on their own task queue, not here`,
        ErrorCode.InvalidInput,
      );
  }
}

/** One request to the checked address; resolves with the status once the (bounded) body has been read. */
function send(
  checked: CheckedCall,
  method: string,
  idempotencyKey: string,
  grant: string | undefined,
  body: Buffer | undefined,
  timeoutMs: number,
): Promise<number> {
  const { call, addresses, entryHeaders } = checked;
  const { url, host, port, target } = call;
  const where = `${method} ${target.origin}`;
  const defaultPort = url.protocol === 'https:' ? 443 : 80;
  const hostHeader = `${host.kind === 'ipv6' ? `[${host.host}]` : host.host}${port === defaultPort ? '' : `:${port}`}`;
  const headers: Record<string, string> = {
    ...Object.fromEntries(call.chainHeaders),
    ...Object.fromEntries(entryHeaders),
    host: hostHeader,
    'idempotency-key': idempotencyKey,
    ...(grant ? { [GRANT_HEADER]: grant } : {}),
    ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}),
  };
  const address = addresses[0]!;
  const options: https.RequestOptions = {
    // The exact address the guard checked: no lookup happens between the check and the connect.
    host: address.address,
    family: address.family,
    port,
    method,
    path: `${url.pathname}${url.search}`,
    headers,
    setHost: false,
    agent: false,
    lookup: () => {
      throw new Error('the http executor never resolves names at connect time');
    },
    ...(url.protocol === 'https:' && host.kind === 'name' ? { servername: host.host } : {}),
  };
  const transport = url.protocol === 'https:' ? https : http;
  const limit = target.maxResponseBytes;

  return new Promise<number>((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, status?: number): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(status!);
    };
    const req = transport.request(options, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        res.destroy();
        finish(
          ApplicationFailure.nonRetryable(
            `http ${where} answered ${status}: redirects are not followed`,
            ErrorCode.ExecutorFailed,
          ),
        );
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > limit) {
        res.destroy();
        finish(
          ApplicationFailure.nonRetryable(
            `http ${where}: response of ${declared} bytes exceeds ${limit} (${entryLabel(target)}.maxResponseBytes)`,
            ErrorCode.ExecutorFailed,
          ),
        );
        return;
      }
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > limit) {
          res.destroy();
          finish(
            ApplicationFailure.nonRetryable(
              `http ${where}: response exceeds ${limit} bytes (${entryLabel(target)}.maxResponseBytes)`,
              ErrorCode.ExecutorFailed,
            ),
          );
        }
      });
      res.on('end', () => finish(undefined, status));
      res.on('error', (err) =>
        finish(ApplicationFailure.retryable(`http ${where}: ${err.message}`, `${ErrorCode.ExecutorFailed}_TRANSIENT`)),
      );
    });
    const timer = setTimeout(() => {
      finish(
        ApplicationFailure.retryable(
          `http ${where}: no complete answer within ${timeoutMs} ms`,
          `${ErrorCode.ExecutorFailed}_TRANSIENT`,
        ),
      );
      req.destroy();
    }, timeoutMs);
    req.on('error', (err) =>
      finish(ApplicationFailure.retryable(`http ${where}: ${err.message}`, `${ErrorCode.ExecutorFailed}_TRANSIENT`)),
    );
    req.end(body);
  }).then((status) => {
    if (status >= 500)
      throw ApplicationFailure.retryable(`http ${where} answered ${status}`, `${ErrorCode.ExecutorFailed}_TRANSIENT`);
    if (status >= 400 || status < 200)
      throw ApplicationFailure.nonRetryable(`http ${where} answered ${status}`, ErrorCode.ExecutorFailed);
    return status;
  });
}
