import { createHash } from 'node:crypto';
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { ServiceActivityInput } from '../contracts/executor';
import { GRANT_ISSUER, GRANT_TYP, type GrantClaims } from '../contracts/grant';
import { canonicalJson } from '../core/canonical';

export { GRANT_HEADER, GRANT_ISSUER, GRANT_TYP, type GrantClaims } from '../contracts/grant';

/** What the call being served is: the grant must be for exactly this. */
export interface ExpectedExecution {
  /** This service's own audience: its task queue, or its `host[:port]` for http. */
  audience: string;
  /** The idempotency key the call carries (`<chainId>/<stepId>`). */
  idempotencyKey: string;
  /** When known (a service activity's input), checked too. */
  chainId?: string;
  stepId?: string;
  /** The action, resource and input the call carries (a service activity's input): checked against the grant's `input` digest. */
  call?: Pick<ServiceActivityInput, 'action' | 'resource' | 'input'>;
}

/** Options of `verifyGrant`. */
export interface VerifyGrantOptions {
  /** Default: the current clock. */
  now?: Date;
  /** Clock skew tolerated on `exp`/`iat`, in seconds (default 5). */
  clockToleranceSeconds?: number;
}

/** Why a grant was refused (`code` is stable; the message never contains the token). */
export class GrantRefused extends Error {
  readonly code = 'GOVERNOR_GRANT_REFUSED';
}

/** sha256 (hex) of the canonical JSON of `{ action, resource, input }`: the grant's `input` claim. */
export function grantInputDigest(call: Pick<ServiceActivityInput, 'action' | 'resource' | 'input'>): string {
  return createHash('sha256')
    .update(canonicalJson({ action: call.action, resource: call.resource, input: call.input }))
    .digest('hex');
}

/**
 * Verifies an execution grant (DESIGN §13) against the governor's grant JWKS (`<home>/keys/grant.jwks.json`)
 * and the call being served: EdDSA signature by a key in the set, `typ` `governor-grant+jwt`, `iss`,
 * `aud` equal to this service's audience, not expired, and for exactly this idempotency key (and chain,
 * step and input when given). Returns the claims, or throws `GrantRefused` saying why.
 */
export async function verifyGrant(
  token: unknown,
  keys: JSONWebKeySet | JWTVerifyGetKey,
  expected: ExpectedExecution,
  options: VerifyGrantOptions = {},
): Promise<GrantClaims> {
  if (typeof token !== 'string' || token.length === 0) throw new GrantRefused('no execution grant');
  if (token.length > 8192) throw new GrantRefused('execution grant too long');
  const getKey = typeof keys === 'function' ? keys : createLocalJWKSet(keys);
  let claims: GrantClaims;
  try {
    const verified = await jwtVerify(token, getKey, {
      algorithms: ['EdDSA'],
      typ: GRANT_TYP,
      issuer: GRANT_ISSUER,
      audience: expected.audience,
      requiredClaims: ['exp', 'iat', 'jti'],
      clockTolerance: options.clockToleranceSeconds ?? 5,
      ...(options.now ? { currentDate: options.now } : {}),
    });
    claims = verified.payload as unknown as GrantClaims;
  } catch (err) {
    throw new GrantRefused(`execution grant refused: ${reasonOf(err)}`);
  }
  for (const k of ['chain', 'step', 'stepDigest', 'receipt', 'idk', 'input'] as const) {
    if (typeof claims[k] !== 'string') throw new GrantRefused(`execution grant refused: claim ${k} missing`);
  }
  if (claims.idk !== `${claims.chain}/${claims.step}`)
    throw new GrantRefused('execution grant refused: idempotency key does not name its chain and step');
  if (claims.idk !== expected.idempotencyKey)
    throw new GrantRefused('execution grant refused: it is for another step (idempotency key differs)');
  if (expected.chainId !== undefined && claims.chain !== expected.chainId)
    throw new GrantRefused('execution grant refused: it is for another chain');
  if (expected.stepId !== undefined && claims.step !== expected.stepId)
    throw new GrantRefused('execution grant refused: it is for another step');
  if (expected.call !== undefined && claims.input !== grantInputDigest(expected.call))
    throw new GrantRefused('execution grant refused: the call differs from what was granted');
  return claims;
}

/** Verifies the grant a service activity received (`input.grant`) for exactly that input, on task queue `audience`. */
export function verifyServiceActivityGrant(
  input: ServiceActivityInput,
  keys: JSONWebKeySet | JWTVerifyGetKey,
  audience: string,
  options: VerifyGrantOptions = {},
): Promise<GrantClaims> {
  return verifyGrant(
    input.grant,
    keys,
    { audience, idempotencyKey: input.idempotencyKey, chainId: input.chainId, stepId: input.stepId, call: input },
    options,
  );
}

function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `claim ${err.claim} invalid`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof errors.JWKSNoMatchingKey) return 'signed by a key the service does not trust';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed';
  return 'invalid';
}
