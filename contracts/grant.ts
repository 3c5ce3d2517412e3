import type { JsonValue, ResourceRef } from './chain';

/*
 * Execution grants (DESIGN §13): a short-lived JWS the governor signs for every execution of a governed
 * step that leaves the governor (a service's activity, an MCP tool call, an http request). A service
 * verifies it (sdk/grant.ts `verifyGrant`) and so tells a governed call from any other workflow in the
 * namespace that schedules the same activity. Names here are part of the protocol: never rename them.
 * Sandbox-safe (the workflow imports this module).
 */

/** `typ` header of a grant: explicitly typed, so no credential, vote or receipt can pass for one. */
export const GRANT_TYP = 'governor-grant+jwt';

/** `iss` of every grant. */
export const GRANT_ISSUER = 'temporal-governor';

/** The http executor sends the grant in this request header. */
export const GRANT_HEADER = 'governor-grant';

/** The key pair (under `<home>/keys/`) grants are signed with; services trust `keys/grant.jwks.json`. */
export const GRANT_KEY_NAME = 'grant';

/** Claims of an execution grant. */
export interface GrantClaims {
  iss: string;
  /** Who may act on it: the service's task queue (`activity`, `mcp`), or the http target's `host[:port]`. */
  aud: string;
  /** The chain (workflow id) and the governed step id (a compensation's id ends in `.compensation`). */
  chain: string;
  step: string;
  /** The step digest (core/digests.ts `stepDigest`): what was decided, bound to its executor and input. */
  stepDigest: string;
  /** Hash of the receipt that allowed the execution (the step's decision, or the approval or slot verdict after it). */
  receipt: string;
  /** The idempotency key the execution carries (`<chain>/<step>`). */
  idk: string;
  /** sha256 (hex) of the canonical JSON of `{ action, resource, input }` the executor receives (`grantInputDigest`). */
  input: string;
  iat: number;
  exp: number;
  jti: string;
}

/** What the governor's `mintGrant` local activity receives (its input is not recorded in history). */
export interface MintGrantInput {
  chainId: string;
  stepId: string;
  idempotencyKey: string;
  stepDigest: string;
  /** Hash of the receipt that allowed the execution. */
  receipt: string;
  audience: string;
  action: string;
  resource: ResourceRef;
  input: Record<string, JsonValue>;
  /** Lifetime of the grant. */
  ttlMs: number;
}

/**
 * How long a grant for a service activity (or MCP tool call) stays valid: every attempt the retry policy
 * allows (3 × the step's timeout) plus a minute of queueing. A service that picks the task up later
 * than that refuses it (the step fails: fail closed).
 */
export function grantLifetimeMs(timeoutMs: number): number {
  return timeoutMs * 3 + 60_000;
}
