import {
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyOptions,
  type ProtectedHeaderParameters,
} from 'jose';
import { LRUCache } from 'lru-cache';
import { ApprovalClaims, type ApprovalVote } from '../contracts/identity-claims';
import { ErrorCode, GovernorError, isGovernorError } from '../contracts/errors';
import { APPROVAL_TOKEN_TYPES } from '../core/jws-header';
import { durationMs, type JwksSource, type Manifest } from '../policies/manifest';
import { createJwksResolver, type JwksResolver } from './jwks';

export { createJwksResolver, type JwksResolver } from './jwks';

/**
 * Fail-closed verification of workload credentials and attestations (used by the `authorize` activity) and of
 * approvers' votes.
 *
 * Threat model (jose-style): the token and everything in it is attacker-controlled until its signature has been
 * verified with a key from the manifest's JWKS for the issuer it names. Trusted: the manifest (issuers,
 * attesters, approvers, their JWKS sources and algorithm allow-lists) and the `now` passed in. Guaranteed on
 * success: the token was signed by a key of that trusted signer with an allowed asymmetric algorithm, carries
 * the `typ` of its kind (so no kind can pass for another), and its claims passed the checks listed on each
 * function. Never done: fetching keys named by the token (`jku`, `x5u`), trusting keys embedded in it (`jwk`,
 * `x5c`), `alg: none`, HMAC. Out of scope here: replay of `jti` (the `authorize` activity binds a credential's
 * `jti` to the first chain presenting it; approvals are de-duplicated per approver by the caller), revocation
 * (activities/revocations.ts), and the security of the signers' keys.
 *
 * Failures throw `GovernorError` with `CredentialInvalid` / `AttestationInvalid` / `ApprovalInvalid` and a short
 * generic reason; messages never contain the token or claim values.
 */

/** Inputs every verification takes: the evaluation time (never read from a clock here) and the governor home. */
export interface VerifyOptions {
  now: Date;
  /** Resolves relative JWKS `file` sources; default `GOVERNOR_HOME` or `.governor`. */
  home?: string;
}

/** A verified credential (JWT-SVID claims); `aud` is normalized to an array. */
export interface VerifiedCredential {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  iat: number;
  jti?: string;
}

/** A verified attestation. */
export interface VerifiedAttestation {
  iss: string;
  sub: string;
  iat: number;
  exp?: number;
  imageDigest: string;
  trustZone: string;
  environment: string;
}

/** A verified approval vote. Whether `sub` and `roles` may vote on this step is the caller's decision. */
export type VerifiedApproval = ApprovalVote & Pick<ApprovalClaims, 'iss' | 'jti' | 'iat' | 'exp'>;

type Kind = 'credential' | 'attestation' | 'approval';

/** What every trusted signer entry of the manifest (issuer, attester, approver) has in common. */
interface TrustedSigner {
  issuer: string;
  audience?: string;
  jwks: JwksSource;
  algorithms: readonly string[];
}

/** Per-kind inputs of the shared pipeline in `verifyTrusted`. */
interface KindRules<T extends TrustedSigner> {
  kind: Kind;
  /** Accepts the lower-cased `typ` header (undefined when absent). */
  typAllowed: (normalizedTyp: string | undefined) => boolean;
  signers: readonly T[];
  requiredClaims: string[];
}

// Header parameters that point at or carry keys: a verifier that honours them lets the token choose its own key.
const KEY_BEARING_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const;
// Compact JWS: three base64url segments. The signature may be empty here only so `alg: none` gets its own reason.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
// JWT-SVID allows `typ` to be absent, `JWT` or `JOSE` (media types compare case-insensitively).
const CREDENTIAL_TYPS = new Set(['jwt', 'jose', 'application/jwt', 'application/jose']);
// Attestations and approvals must be explicitly typed, so no kind can ever be presented as another.
const ATTESTATION_TYPS = new Set(['attestation+jwt', 'application/attestation+jwt']);
const APPROVAL_TYPS = new Set(APPROVAL_TOKEN_TYPES);
const OCI_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const MAX_ROLES = 32;
const MAX_ROLE_LENGTH = 64;
const MAX_NOTE_LENGTH = 1000;

/**
 * Verifies a workload credential: size (before any parsing), header guards, trusted issuer (picked by the
 * unverified `iss` only to choose its key set), allowed algorithm, signature, `iss`, `aud`, `exp`/`nbf` with
 * the manifest's clock tolerance, required `iss` `sub` `aud` `exp` `iat`, `iat` not in the future, and a
 * lifetime `exp - iat` of at most the manifest's `credential.maxLifetime`.
 * `typ` must be absent, `JWT` or `JOSE`. Throws `GovernorError(CredentialInvalid)`; key-source problems throw
 * `KeysMissing` / `PolicyUnavailable` instead (retryable, still never an allow).
 */
export async function verifyCredential(
  token: string,
  manifest: Pick<Manifest, 'trustedIssuers' | 'credential'>,
  options: VerifyOptions,
): Promise<VerifiedCredential> {
  const kind: Kind = 'credential';
  const now = checkNow(options.now);
  const { payload, trusted } = await verifyTrusted(token, manifest.credential, now, options.home, {
    kind,
    typAllowed: (typ) => typ === undefined || CREDENTIAL_TYPS.has(typ),
    signers: manifest.trustedIssuers,
    requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
  });

  // Snapshot the verified claims into plain, typed data; jose checked presence and numeric dates only.
  const sub = nonEmptyString(payload.sub, kind, 'sub');
  const iat = notInFuture(payload.iat as number, now, manifest.credential.clockToleranceSeconds, kind);
  // Bounded lifetime: with `iat` never ahead of the clock by more than the skew, `exp` cannot lie
  // further out than skew + maxLifetime, whatever the issuer wrote (ten years, 1e15).
  const exp = payload.exp as number;
  if (exp <= iat) throw invalid(kind, 'credential claim "exp" is not after "iat"');
  if ((exp - iat) * 1000 > durationMs(manifest.credential.maxLifetime)) {
    throw invalid(
      kind,
      `credential lifetime (exp - iat) exceeds credential.maxLifetime (${manifest.credential.maxLifetime})`,
    );
  }
  if (payload.jti !== undefined && typeof payload.jti !== 'string')
    throw invalid(kind, 'credential claim "jti" is invalid');
  const credential: VerifiedCredential = {
    iss: trusted.issuer,
    sub,
    aud: typeof payload.aud === 'string' ? [payload.aud] : [...(payload.aud as string[])],
    exp,
    iat,
  };
  if (payload.jti !== undefined) credential.jti = payload.jti;
  // Replay of `jti` across chains is checked by the caller once the chain is known: `authorize` binds the
  // credential to the first chain that presents it (activities/credential-claims.ts, manifest `credential.jtiReplay`).
  return credential;
}

/**
 * Verifies a workload attestation: the same size and header guards as credentials, `typ: attestation+jwt`,
 * a trusted attester and allowed algorithm, signature, required `iss` `sub` `iat` `imageDigest` `trustZone`
 * `environment`, `exp` if present, `sub` equal to `expectedSubject` (the verified credential's subject), and
 * `now - iat <= maxAge` of that attester (`iat` may be ahead of `now` by at most the clock tolerance).
 * Throws `GovernorError(AttestationInvalid)`.
 */
export async function verifyAttestation(
  token: string,
  manifest: Pick<Manifest, 'trustedAttesters' | 'credential'>,
  options: VerifyOptions & { expectedSubject: string },
): Promise<VerifiedAttestation> {
  const kind: Kind = 'attestation';
  const now = checkNow(options.now);
  if (typeof options.expectedSubject !== 'string' || options.expectedSubject.length === 0) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      'expectedSubject is required to verify an attestation',
      'expectedSubject',
    );
  }
  const { payload, trusted } = await verifyTrusted(token, manifest.credential, now, options.home, {
    kind,
    typAllowed: (typ) => typ !== undefined && ATTESTATION_TYPS.has(typ),
    signers: manifest.trustedAttesters,
    requiredClaims: ['iss', 'sub', 'iat', 'imageDigest', 'trustZone', 'environment'],
  });

  const sub = nonEmptyString(payload.sub, kind, 'sub');
  if (sub !== options.expectedSubject) throw invalid(kind, 'attestation subject does not match the credential');
  const iat = notInFuture(payload.iat as number, now, manifest.credential.clockToleranceSeconds, kind);
  if (now.getTime() - iat * 1000 > durationMs(trusted.maxAge)) {
    const stale = invalid(kind, 'attestation is stale');
    staleErrors.add(stale);
    throw stale;
  }
  const imageDigest = nonEmptyString(payload.imageDigest, kind, 'imageDigest');
  if (!OCI_DIGEST.test(imageDigest)) throw invalid(kind, 'attestation claim "imageDigest" is invalid');
  const attestation: VerifiedAttestation = {
    iss: trusted.issuer,
    sub,
    iat,
    imageDigest,
    trustZone: nonEmptyString(payload.trustZone, kind, 'trustZone'),
    environment: nonEmptyString(payload.environment, kind, 'environment'),
  };
  if (payload.exp !== undefined) attestation.exp = payload.exp;
  return attestation;
}

/**
 * Verifies an approver's vote: the same size and header guards as credentials, `typ: approval+jwt` (so neither a
 * credential nor an attestation can be presented as a vote, nor a vote as either), a trusted approver and
 * allowed algorithm, signature, `iss`, `aud` (the approver entry's audience), `exp`/`nbf` with the manifest's
 * clock tolerance, `iat` not in the future, and required `iss` `sub` `aud` `exp` `iat` `jti` `roles` `chainId`
 * `stepId` `stepDigest` `decision`: `roles` 1 to 32 non-empty strings of at most 64 characters, `decision`
 * `approve` or `deny`, optional `reason` / `justification` strings of at most 1000 characters.
 * Security: this proves who signed which vote for which step digest — NOT that the signer may approve it; the
 * caller must match `chainId`/`stepId`/`stepDigest` to the pending step, check the roles, exclude the requesting
 * workload and its owner, and count each `sub` once. With no `trustedApprovers`, every vote is rejected.
 * Throws `GovernorError(ApprovalInvalid)`; key-source problems throw `KeysMissing` / `PolicyUnavailable`.
 */
export async function verifyApproval(
  token: string,
  manifest: Pick<Manifest, 'trustedApprovers' | 'credential'>,
  options: VerifyOptions,
): Promise<VerifiedApproval> {
  const kind: Kind = 'approval';
  const now = checkNow(options.now);
  const { payload, trusted } = await verifyTrusted(token, manifest.credential, now, options.home, {
    kind,
    typAllowed: (typ) => typ !== undefined && APPROVAL_TYPS.has(typ),
    signers: manifest.trustedApprovers ?? [],
    requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'roles', 'chainId', 'stepId', 'stepDigest', 'decision'],
  });

  const sub = nonEmptyString(payload.sub, kind, 'sub');
  const iat = notInFuture(payload.iat as number, now, manifest.credential.clockToleranceSeconds, kind);
  const { decision } = payload;
  if (decision !== 'approve' && decision !== 'deny') throw invalid(kind, 'approval claim "decision" is invalid');
  const approval: VerifiedApproval = {
    iss: trusted.issuer,
    sub,
    roles: roleList(payload.roles, kind),
    chainId: nonEmptyString(payload.chainId, kind, 'chainId'),
    stepId: nonEmptyString(payload.stepId, kind, 'stepId'),
    stepDigest: nonEmptyString(payload.stepDigest, kind, 'stepDigest'),
    decision,
    jti: nonEmptyString(payload.jti, kind, 'jti'),
    iat,
    exp: payload.exp as number,
  };
  if (payload.reason !== undefined) approval.reason = note(payload.reason, kind, 'reason');
  if (payload.justification !== undefined) approval.justification = note(payload.justification, kind, 'justification');
  if (payload.idp !== undefined) {
    const idp = ApprovalClaims.shape.idp.safeParse(payload.idp);
    if (!idp.success || idp.data === undefined) throw invalid(kind, 'approval claim "idp" is invalid');
    approval.idp = { iss: idp.data.iss, sub: idp.data.sub }; // only these two reach the verdict
  }
  return approval;
}

/**
 * The pipeline every kind shares: header guards (size first), the trusted signer named by the unverified `iss`
 * (used only to pick its key set), that signer's algorithm allow-list, then signature and registered claims
 * (`iss`, `aud` when the signer has one, `exp`/`nbf` with the manifest's clock tolerance, presence of
 * `requiredClaims`). Everything after this is the caller's per-kind claim checks.
 */
async function verifyTrusted<T extends TrustedSigner>(
  token: string,
  limits: Manifest['credential'],
  now: Date,
  home: string | undefined,
  rules: KindRules<T>,
): Promise<{ payload: JWTPayload; trusted: T }> {
  const { kind } = rules;
  const header = inspectToken(token, limits.maxTokenBytes, kind, rules.typAllowed);
  const iss = peekIssuer(token, kind);
  const trusted = rules.signers.find((candidate) => candidate.issuer === iss);
  if (!trusted) throw invalid(kind, `${kind} issuer not trusted`);
  if (!trusted.algorithms.includes(header.alg)) throw invalid(kind, `${kind} algorithm not allowed`);

  const verifyOptions: JWTVerifyOptions = {
    issuer: trusted.issuer,
    algorithms: [...trusted.algorithms],
    requiredClaims: rules.requiredClaims,
    clockTolerance: limits.clockToleranceSeconds,
    currentDate: now,
  };
  if (trusted.audience !== undefined) verifyOptions.audience = trusted.audience;
  const resolver = createJwksResolver(trusted.jwks, home);
  const cacheKey = `${kind}\u0000${token}`;
  const hit = verified.get(cacheKey);
  const generation = resolver.generation?.();
  if (
    hit &&
    generation !== undefined &&
    hit.trusted === trusted &&
    hit.resolver === resolver &&
    hit.generation === generation
  ) {
    // Same token, same trusted signer entry, same key set: only the time-dependent checks can differ.
    const at = epochSeconds(now);
    const tolerance = limits.clockToleranceSeconds;
    if (typeof hit.payload.nbf === 'number' && hit.payload.nbf > at + tolerance)
      throw invalid(kind, `${kind} not yet valid`);
    if (typeof hit.payload.exp === 'number' && hit.payload.exp <= at - tolerance) throw expired(kind);
    return { payload: hit.payload, trusted };
  }
  const payload = await verifySigned(token, resolver, kind, verifyOptions);
  // The generation is read after verifying: a reload during verification makes this entry stale.
  const after = resolver.generation?.();
  if (after !== undefined) verified.set(cacheKey, { payload, trusted, resolver, generation: after });
  return { payload, trusted };
}

/**
 * Tokens whose signature and time-independent claims already verified, so a chain's credential,
 * re-presented at every step, costs one signature check per minute instead of one per step
 * (signature checks dominate the authorize path). An entry is used only for the same trusted
 * signer entry (a new bundle's manifest misses) and the same key-set generation (a reloaded JWKS
 * file misses; remote key sets, whose reloads jose hides, are never cached); `exp` and `nbf` are
 * re-checked against each call's `now`. Only successes are cached.
 */
const verified = new LRUCache<
  string,
  { payload: JWTPayload; trusted: object; resolver: JwksResolver; generation: number }
>({ max: 10_000, ttl: 60_000 });

/** Forgets every cached verification (tests; key rotation handled by the caller). */
export function clearVerifiedTokenCache(): void {
  verified.clear();
}

/**
 * Guard clauses over the raw token and its unverified header. Rejecting on unverified data is safe; nothing here
 * accepts anything — acceptance needs the signature check in `verifySigned`.
 */
function inspectToken(
  token: unknown,
  maxBytes: number,
  kind: Kind,
  typAllowed: (normalizedTyp: string | undefined) => boolean,
): { alg: string } {
  if (typeof token !== 'string' || token.length === 0) throw invalid(kind, `${kind} is missing`);
  // Size first, before any decoding: bounds the work an attacker can make us do.
  if (token.length > maxBytes || Buffer.byteLength(token, 'utf8') > maxBytes)
    throw invalid(kind, `${kind} exceeds ${maxBytes} bytes`);
  if (!COMPACT_JWS.test(token)) throw invalid(kind, `${kind} is malformed`);
  // Canonical base64url only: decoders ignore a last character's unused bits, so without this check one signed
  // token has several accepted spellings (found by fuzzing; test/unit/hostile-fuzz.test.ts).
  if (!token.split('.').every(isCanonicalBase64url)) throw invalid(kind, `${kind} is malformed`);
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw invalid(kind, `${kind} is malformed`);
  }
  const { alg, typ, kid, crit } = header as Record<string, unknown>;
  if (typeof alg !== 'string' || alg.length === 0) throw invalid(kind, `${kind} is malformed`);
  if (alg.toLowerCase() === 'none') throw invalid(kind, `${kind} is unsigned (alg none)`);
  for (const name of KEY_BEARING_HEADERS) {
    if (Object.hasOwn(header, name)) throw invalid(kind, `${kind} header "${name}" is not accepted`);
  }
  // We implement no JWS extensions, so any `crit` names something we would have to ignore: refuse.
  if (crit !== undefined) throw invalid(kind, `${kind} has unsupported critical header parameters`);
  if (typ !== undefined && typeof typ !== 'string') throw invalid(kind, `${kind} is malformed`);
  if (!typAllowed(typeof typ === 'string' ? typ.toLowerCase() : undefined))
    throw invalid(kind, `${kind} type not accepted`);
  if (kid !== undefined && typeof kid !== 'string') throw invalid(kind, `${kind} is malformed`);
  if (token.endsWith('.')) throw invalid(kind, `${kind} is malformed`); // empty signature
  return { alg };
}

/** True when `segment` is the one base64url spelling of the bytes it decodes to (no padding, unused bits zero). */
function isCanonicalBase64url(segment: string): boolean {
  return Buffer.from(segment, 'base64url').toString('base64url') === segment;
}

/** The unverified `iss`, used only to choose which trusted key set to verify against. */
function peekIssuer(token: string, kind: Kind): string | undefined {
  let claims: JWTPayload;
  try {
    claims = decodeJwt(token);
  } catch {
    throw invalid(kind, `${kind} is malformed`);
  }
  if (claims.iss === undefined) throw invalid(kind, `${kind} missing required claim "iss"`);
  return typeof claims.iss === 'string' ? claims.iss : undefined;
}

/** `jwtVerify` with jose's error codes mapped to generic reasons; the governor's own key-source errors pass through. */
async function verifySigned(
  token: string,
  keys: JwksResolver,
  kind: Kind,
  options: JWTVerifyOptions,
): Promise<JWTPayload> {
  try {
    const { payload } = await jwtVerify(token, keys, options);
    return payload;
  } catch (err) {
    if (isGovernorError(err)) throw err;
    if (typeof err === 'object' && err !== null && (err as { code?: unknown }).code === JWT_EXPIRED)
      throw expired(kind);
    throw invalid(kind, reasonFor(err, kind));
  }
}

function reasonFor(err: unknown, kind: Kind): string {
  const { code, claim, reason } = (typeof err === 'object' && err !== null ? err : {}) as {
    code?: unknown;
    claim?: unknown;
    reason?: unknown;
  };
  switch (code) {
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (reason === 'missing' && typeof claim === 'string') return `${kind} missing required claim "${claim}"`;
      switch (claim) {
        case 'aud':
          return `${kind} audience mismatch`;
        case 'iss':
          return `${kind} issuer not trusted`;
        case 'nbf':
          return `${kind} not yet valid`;
        case 'typ':
          return `${kind} type not accepted`;
        default:
          return typeof claim === 'string' && /^[a-z]{1,16}$/i.test(claim)
            ? `${kind} claim "${claim}" is invalid`
            : `${kind} claims are invalid`;
      }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return `${kind} signature invalid`;
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return `${kind} signing key not found`;
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return `${kind} signing key is ambiguous`;
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return `${kind} algorithm not allowed`;
    case 'ERR_JOSE_NOT_SUPPORTED':
      return `${kind} uses an unsupported algorithm or header`;
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return `${kind} is malformed`;
    default:
      // Anything unexpected still ends in a rejection, never an allow.
      return `${kind} could not be verified`;
  }
}

function nonEmptyString(value: unknown, kind: Kind, claim: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 1024)
    throw invalid(kind, `${kind} claim "${claim}" is invalid`);
  return value;
}

function checkNow(now: unknown): Date {
  // Not `instanceof`: a Date from another realm (sandbox, test VM) is still a Date.
  if (Object.prototype.toString.call(now) !== '[object Date]' || !Number.isFinite((now as Date).getTime())) {
    throw new GovernorError(ErrorCode.InvalidInput, 'now must be a valid Date', 'now');
  }
  return now as Date;
}

function epochSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

/** `iat` (a number: jose checked it), refused when ahead of `now` by more than the clock tolerance. */
function notInFuture(iat: number, now: Date, toleranceSeconds: number, kind: Kind): number {
  if (iat > epochSeconds(now) + toleranceSeconds) throw invalid(kind, `${kind} issued in the future`);
  return iat;
}

function roleList(value: unknown, kind: Kind): string[] {
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    value.length > MAX_ROLES ||
    !value.every((role) => typeof role === 'string' && role.length > 0 && role.length <= MAX_ROLE_LENGTH)
  ) {
    throw invalid(kind, `${kind} claim "roles" is invalid`);
  }
  return [...(value as string[])];
}

function note(value: unknown, kind: Kind, claim: string): string {
  if (typeof value !== 'string' || value.length > MAX_NOTE_LENGTH)
    throw invalid(kind, `${kind} claim "${claim}" is invalid`);
  return value;
}

const INVALID_CODES = {
  credential: ErrorCode.CredentialInvalid,
  attestation: ErrorCode.AttestationInvalid,
  approval: ErrorCode.ApprovalInvalid,
} as const satisfies Record<Kind, ErrorCode>;

function invalid(kind: Kind, reason: string): GovernorError {
  return new GovernorError(INVALID_CODES[kind], reason);
}

/** jose's code for an expired token (`JWTExpired.code`), kept on the governor's error so callers test a code, not a message. */
const JWT_EXPIRED = errors.JWTExpired.code;
const expiredErrors = new WeakSet<GovernorError>();

function expired(kind: Kind): GovernorError {
  const err = invalid(kind, `${kind} expired`);
  expiredErrors.add(err);
  return err;
}

const staleErrors = new WeakSet<GovernorError>();

/** True when an attestation failed only because it is older than its attester's `maxAge`. */
export function isAttestationStale(err: unknown): boolean {
  return err instanceof GovernorError && staleErrors.has(err);
}

/** True when a verification failed only because the token expired (jose's `ERR_JWT_EXPIRED`, or the cached check's `exp`). */
export function isTokenExpired(err: unknown): boolean {
  return err instanceof GovernorError && expiredErrors.has(err);
}
