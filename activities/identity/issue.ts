import { createHash, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { loadPrivateKey } from './keys';

/**
 * Dev issuance of credentials (JWT-SVID shape) and attestations, signed with the keys from `governor keys init`.
 * Security: a stand-in for a real workload identity provider (SPIFFE/SPIRE, cloud IAM) and a real attester;
 * anyone who can read `<home>/keys` can mint both.
 */

/** `iss` of dev credentials; the default bundle trusts it with `keys/issuer.jwks.json`. */
export const DEV_ISSUER = 'https://governor.local/dev-issuer';
/** `iss` of dev attestations; the default bundle trusts it with `keys/attester.jwks.json`. */
export const DEV_ATTESTER = 'https://governor.local/dev-attester';
/** Default `aud` of credentials: the governor itself. */
export const GOVERNOR_AUDIENCE = 'temporal-governor';
/** `typ` header of credentials (JWT-SVID: `JWT` or `JOSE`). */
export const CREDENTIAL_TYP = 'JWT';
/** `typ` header of attestations: explicit typing (RFC 8725 §3.11) so neither token can pass for the other. */
export const ATTESTATION_TYP = 'attestation+jwt';

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

const MAX_TTL_SECONDS = 86_400;
const DEFAULT_TTL_SECONDS = 900;
const OCI_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/** Signs a dev credential (compact JWT) with the `issuer` key: `iss`, `sub`, `aud`, `iat`, `exp`, `jti`; header `typ: JWT`, `alg: EdDSA`, `kid`. */
export async function issueCredential(options: IssueCredentialOptions): Promise<string> {
  const iat = epochSeconds(options.now);
  const claims: CredentialClaims = {
    iss: text(options.issuer ?? DEV_ISSUER, 'issuer'),
    sub: text(options.sub, 'sub'),
    aud: text(options.audience ?? GOVERNOR_AUDIENCE, 'audience'),
    iat,
    exp: iat + ttl(options.ttlSeconds),
    jti: text(options.jti ?? randomUUID(), 'jti'),
  };
  return sign(options.home, 'issuer', CREDENTIAL_TYP, claims);
}

/** Signs a dev attestation (compact JWT) with the `attester` key: `iss`, `sub`, `iat`, `exp`, `imageDigest`, `trustZone`, `environment`; header `typ: attestation+jwt`. */
export async function issueAttestation(options: IssueAttestationOptions): Promise<string> {
  const sub = text(options.sub, 'sub');
  const imageDigest = options.imageDigest ?? devImageDigest(sub);
  if (!OCI_DIGEST.test(imageDigest)) {
    throw new GovernorError(ErrorCode.InvalidInput, 'imageDigest must be a digest such as sha256:<64 hex>', 'imageDigest');
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

/** A deterministic fake image digest for a dev workload: `sha256:` + hex SHA-256 of `dev-image:<sub>`. */
export function devImageDigest(sub: string): string {
  return `sha256:${createHash('sha256').update(`dev-image:${sub}`).digest('hex')}`;
}

async function sign(home: string | undefined, keyName: string, typ: string, claims: CredentialClaims | AttestationClaims): Promise<string> {
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
    throw new GovernorError(ErrorCode.InvalidInput, `ttlSeconds must be an integer from 1 to ${MAX_TTL_SECONDS}`, 'ttlSeconds');
  }
  return value;
}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 1024) {
    throw new GovernorError(ErrorCode.InvalidInput, `${field} must be a non-empty string of at most 1024 characters`, field);
  }
  return value;
}
