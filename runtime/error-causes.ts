/**
 * Reading the errors Temporal's client and the SDK throw: an error and its causes (gRPC status codes, failure
 * types, messages). One place for what the transparency log, its clients and the archiver each decide from
 * them: what is worth trying again, and what refuses one entry for good.
 */

type Cause = { code?: unknown; message?: unknown; type?: unknown; cause?: unknown };

/** The error, then each of its causes, outermost first. */
function* causes(err: unknown): Generator<Cause> {
  for (let e = err as Cause | undefined, n = 0; e && n < 32; e = e.cause as Cause | undefined, n++) yield e;
}

/** gRPC status codes the governor reads. */
export const Grpc = {
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  Internal: 13,
  Unavailable: 14,
  Unauthenticated: 16,
} as const;

/** The first gRPC status code on the error or its causes. */
export function grpcCodeOf(err: unknown): number | undefined {
  for (const e of causes(err)) if (typeof e.code === 'number') return e.code;
  return undefined;
}

/** The innermost message of an error's causes (what actually went wrong), else the error itself. */
export function innermostMessage(err: unknown): string {
  let message = String((err as Error | undefined)?.message ?? err);
  for (const e of causes(err)) if (typeof e.message === 'string' && e.message) message = e.message;
  return message;
}

/** The failure type at the bottom of an error's causes. */
export function innermostType(err: unknown): string | undefined {
  let type: string | undefined;
  for (const e of causes(err)) if (typeof e.type === 'string') type = e.type;
  return type;
}

/** Some cause has one of `codes`, or a message that `pattern` matches. */
function anyCause(err: unknown, codes: readonly number[], pattern: RegExp): boolean {
  for (const e of causes(err)) {
    if (codes.includes(e.code as number) || pattern.test(String(e.message))) return true;
  }
  return false;
}

/**
 * A refusal an idempotent update may retry at once: the server overloaded (RESOURCE_EXHAUSTED, including the
 * per-workflow in-flight update limit), unavailable, past a deadline, or the update aborted by a busy server.
 */
export function isTransientRefusal(err: unknown): boolean {
  return anyCause(
    err,
    [Grpc.ResourceExhausted, Grpc.Unavailable, Grpc.DeadlineExceeded],
    /RESOURCE_EXHAUSTED|could not be executed|update was aborted/i,
  );
}

/**
 * Temporal or a codec server unreachable, overloaded, slow or refusing this worker (what an operator must mend:
 * PERMISSION_DENIED, UNAUTHENTICATED, INTERNAL): worth trying again, never a reason to refuse for good.
 */
export function isUnavailable(err: unknown): boolean {
  return anyCause(
    err,
    [
      Grpc.DeadlineExceeded,
      Grpc.PermissionDenied,
      Grpc.ResourceExhausted,
      Grpc.Internal,
      Grpc.Unavailable,
      Grpc.Unauthenticated,
    ],
    /UNAVAILABLE|DEADLINE|RESOURCE_EXHAUSTED|ECONNREFUSED|ECONNRESET|ETIMEDOUT|fetch failed|socket hang up/i,
  );
}
