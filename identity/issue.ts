import { createHash, randomUUID } from 'node:crypto';
import type { ApprovalClaims as ApprovalTokenClaims, ApprovalVote } from '../contracts/identity-claims';
import { SignJWT } from 'jose';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { governorHome, loadPrivateKey } from './keys';
import { keyRefFromEnv, signJwtByRef } from './key-ref';

/**
 * Dev issuance of credentials (JWT-SVID shape), attestations and approval votes, signed with the keys from `governor keys init`.
 * Security: a stand-in for a real workload identity provider (SPIFFE/SPIRE, cloud IAM) and a real attester;
 * anyone who can read `<home>/keys` can mint both.
 */

/** `iss` of dev credentials; the default bundle trusts it with `keys/issuer.jwks.json`. */
export const DEV_ISSUER = 'https://governor.local/dev-issuer';
/** `iss` of dev attestations; the default bundle trusts it with `keys/attester.jwks.json`. */
export const DEV_ATTESTER = 'https://governor.local/dev-attester';
/** `iss` of dev approval votes; the default bundle trusts it with `keys/approver.jwks.json`. */
export const DEV_APPROVER = 'https://governor.local/dev-approver';
/** Default `aud` of credentials: the governor itself. */
export const GOVERNOR_AUDIENCE = 'temporal-governor';
/** `typ` header of credentials (JWT-SVID: `JWT` or `JOSE`). */
export const CREDENTIAL_TYP = 'JWT';
/** `typ` header of attestations: explicit typing (RFC 8725 §3.11) so neither token can pass for the other. */
export const ATTESTATION_TYP = 'attestation+jwt';
/** Default `aud` of approval votes (and default `audience` of a manifest's trusted approver). */
export const APPROVAL_AUDIENCE = 'temporal-governor-approval';
/** `typ` header of approval votes: explicitly typed, so no credential or attestation can pass for one. */
export const APPROVAL_TYP = 'approval+jwt';

/** Claims of an issued credential (SPIFFE JWT-SVID shape). */
export interface CredentialClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
}

/** Claims of an issued attestation. */
export interface AttestationClaims {
  iss: string;
  sub: string;
  iat: number;
  exp: number;
  imageDigest: string;
  trustZone: string;
  environment: string;
}

/** Claims of an issued approval vote: the vote and the registered claims (contracts/identity-claims.ts). */
export type ApprovalClaims = ApprovalVote &
  Pick<ApprovalTokenClaims, 'iss' | 'aud' | 'iat' | 'exp' | 'jti'> & { idp?: { iss: string; sub: string } };

/** Inputs of `issueCredential`. */
export interface IssueCredentialOptions {
  /** Governor home holding `keys/issuer.private.jwk.json`; default `GOVERNOR_HOME` or `.governor`. */
  home?: string;
  /** The workload: `Workload::"<sub>"` in policy. */
  sub: string;
  audience?: string;
  issuer?: string;
  /** Lifetime; default 900 s (15 min), at most one day: credentials are meant to be short-lived and refreshed. */
  ttlSeconds?: number;
  /** Default: a random UUID. */
  jti?: string;
  /** Issuance time; default the current clock. */
  now?: Date;
}

/** Inputs of `issueAttestation`. */
export interface IssueAttestationOptions {
  home?: string;
  sub: string;
  /** OCI digest such as `sha256:<64 hex>`; default `devImageDigest(sub)`. */
  imageDigest?: string;
  /** Default `trusted`. */
  trustZone?: string;
  /** Default `dev`. */
  environment?: string;
  /** Default 900 s, matching the default attester `maxAge` of 15m. */
  ttlSeconds?: number;
  now?: Date;
}

/**
 * Inputs of `issueApproval`: the vote (`roles` 1 to 32 non-empty names of at most 64 characters; `stepDigest`
 * the digest of the exact step voted on, so a vote cannot be replayed onto a changed step; `reason` and
 * `justification` at most 1000 characters) and how to sign it.
 */
export type IssueApprovalOptions = ApprovalVote & {
  /** Governor home holding `keys/approver.private.jwk.json`; default `GOVERNOR_HOME` or `.governor`. */
  home?: string;
  /** Default 900 s, at most one day. */
  ttlSeconds?: number;
  now?: Date;
  issuer?: string;
  audience?: string;
  /** Default: a random UUID. */
  jti?: string;
  /** Who signed in at the IdP the vote came through (the approval inbox): recorded in the vote as claim `idp`. */
  idp?: { iss: string; sub: string };
};

/** The registered claims credentials and approvals share: `iss`, `sub`, `aud`, `iat`, `exp`, `jti`. */
function registeredClaims(
  options: { sub: string; issuer?: string; audience?: string; ttlSeconds?: number; now?: Date; jti?: string },
  defaultIssuer: string,
  defaultAudience: string,
): CredentialClaims {
  const iat = epochSeconds(options.now);
  return {
    iss: text(options.issuer ?? defaultIssuer, 'issuer'),
    sub: text(options.sub, 'sub'),
    aud: text(options.audience ?? defaultAudience, 'audience'),
    iat,
    exp: iat + ttl(options.ttlSeconds),
    jti: text(options.jti ?? randomUUID(), 'jti'),
  };
}

const MAX_TTL_SECONDS = 86_400;
const DEFAULT_TTL_SECONDS = 900;
const OCI_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/** Signs a dev credential (compact JWT) with the `issuer` key: `iss`, `sub`, `aud`, `iat`, `exp`, `jti`; header `typ: JWT`, `alg: EdDSA`, `kid`. */
export async function issueCredential(options: IssueCredentialOptions): Promise<string> {
  const claims: CredentialClaims = registeredClaims(options, DEV_ISSUER, GOVERNOR_AUDIENCE);
  return sign(options.home, 'issuer', CREDENTIAL_TYP, claims);
}

/** Signs a dev attestation (compact JWT) with the `attester` key: `iss`, `sub`, `iat`, `exp`, `imageDigest`, `trustZone`, `environment`; header `typ: attestation+jwt`. */
export async function issueAttestation(options: IssueAttestationOptions): Promise<string> {
  const sub = text(options.sub, 'sub');
  const imageDigest = options.imageDigest ?? devImageDigest(sub);
  if (!OCI_DIGEST.test(imageDigest)) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      'imageDigest must be a digest such as sha256:<64 hex>',
      'imageDigest',
    );
  }
  const iat = epochSeconds(options.now);
  const claims: AttestationClaims = {
    iss: DEV_ATTESTER,
    sub,
    iat,
    exp: iat + ttl(options.ttlSeconds),
    imageDigest,
    trustZone: text(options.trustZone ?? 'trusted', 'trustZone'),
    environment: text(options.environment ?? 'dev', 'environment'),
  };
  return sign(options.home, 'attester', ATTESTATION_TYP, claims);
}

/**
 * Signs a dev approval vote (compact JWT) with the `approver` key: `iss`, `sub`, `aud`, `iat`, `exp`, `jti`,
 * `roles`, `chainId`, `stepId`, `stepDigest`, `decision`, optional `reason` and `justification`; header
 * `typ: approval+jwt`. Security: whoever can read `<home>/keys` can vote as anyone with any role.
 */
export async function issueApproval(options: IssueApprovalOptions): Promise<string> {
  const roles = options.roles;
  if (
    !Array.isArray(roles) ||
    roles.length === 0 ||
    roles.length > 32 ||
    !roles.every((r) => typeof r === 'string' && r.length > 0 && r.length <= 64)
  ) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      'roles must be 1 to 32 non-empty strings of at most 64 characters',
      'roles',
    );
  }
  if (options.decision !== 'approve' && options.decision !== 'deny') {
    throw new GovernorError(ErrorCode.InvalidInput, 'decision must be approve or deny', 'decision');
  }
  const claims: ApprovalClaims = {
    ...registeredClaims(options, DEV_APPROVER, APPROVAL_AUDIENCE),
    roles: [...roles],
    chainId: text(options.chainId, 'chainId'),
    stepId: text(options.stepId, 'stepId'),
    stepDigest: text(options.stepDigest, 'stepDigest'),
    decision: options.decision,
  };
  if (options.reason !== undefined) claims.reason = note(options.reason, 'reason');
  if (options.justification !== undefined) claims.justification = note(options.justification, 'justification');
  if (options.idp !== undefined)
    claims.idp = { iss: text(options.idp.iss, 'idp.iss'), sub: text(options.idp.sub, 'idp.sub') };
  return sign(options.home, 'approver', APPROVAL_TYP, claims);
}

/** A deterministic fake image digest for a dev workload: `sha256:` + hex SHA-256 of `dev-image:<sub>`. */
export function devImageDigest(sub: string): string {
  return `sha256:${createHash('sha256').update(`dev-image:${sub}`).digest('hex')}`;
}

async function sign(
  home: string | undefined,
  keyName: string,
  typ: string,
  claims: CredentialClaims | AttestationClaims | ApprovalClaims,
): Promise<string> {
  // The approver key may be given by reference (a key file or a signer socket): used as given, or not at all.
  const ref = keyName === 'approver' ? keyRefFromEnv('approver') : undefined;
  if (ref) return signJwtByRef(governorHome(home), 'approver', ref, typ, { ...claims });
  const signer = await loadPrivateKey(home, keyName);
  return new SignJWT({ ...claims }).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ }).sign(signer.key);
}

function epochSeconds(now: Date | undefined): number {
  const ms = (now ?? new Date()).getTime();
  if (!Number.isFinite(ms)) throw new GovernorError(ErrorCode.InvalidInput, 'now must be a valid date', 'now');
  return Math.floor(ms / 1000);
}

function ttl(seconds: number | undefined): number {
  const value = seconds ?? DEFAULT_TTL_SECONDS;
  if (!Number.isInteger(value) || value < 1 || value > MAX_TTL_SECONDS) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `ttlSeconds must be an integer from 1 to ${MAX_TTL_SECONDS}`,
      'ttlSeconds',
    );
  }
  return value;
}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 1024) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${field} must be a non-empty string of at most 1024 characters`,
      field,
    );
  }
  return value;
}

function note(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length > 1000) {
    throw new GovernorError(ErrorCode.InvalidInput, `${field} must be a string of at most 1000 characters`, field);
  }
  return value;
}
