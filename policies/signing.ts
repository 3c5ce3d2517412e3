import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CompactSign,
  createLocalJWKSet,
  decodeProtectedHeader,
  flattenedVerify,
  type CryptoKey,
  type JSONWebKeySet,
  type KeyObject,
} from 'jose';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { loadBundleFromFiles, readBundleFiles, formatIssue, type LoadedBundle } from './bundle';

/**
 * Bundle signatures: a detached JWS (RFC 7515 appendix F) whose payload is the bundle digest (the
 * 64 hex characters, UTF-8), kept next to the bundle as `bundle.sig`:
 *
 *   <base64url protected header>..<base64url signature>
 *
 * The payload part is left empty: a verifier recomputes the digest from the files it actually loads
 * and verifies the signature over that, so what is verified is exactly what is enforced. The
 * signature file is not covered by the digest (it cannot sign itself).
 *
 * Version 2 (compatible): the protected header — signed content, like the digest — also carries the
 * bundle's `bundleVersion` (a positive integer the signer chooses, increasing with every release) and
 * `issuedAt` (ISO-8601, when it was signed). A verifier that predates them ignores unknown header
 * parameters; one that knows them reports them, so a fleet can refuse an older version than the one
 * it enforces (rollback protection). A signature without them has no version (`version` undefined).
 *
 * Security: trust comes only from the verifier's own JWKS (GOVERNOR_HOME's
 * `keys/policy-signing.jwks.json` or a configured file), never from the bundle or the JWS header
 * (`jku`, `jwk`, `x5u`, `x5c` are refused). A bundle cannot vouch for itself.
 */

/** File name of a bundle's detached signature, in the bundle directory. */
export const SIGNATURE_FILE = 'bundle.sig';
/** `typ` of a bundle signature, so no other JWS made with the same key can pass for one. */
export const SIGNATURE_TYP = 'governor-policy-bundle+jws';
/** Asymmetric algorithms only: a shared secret could sign as well as verify. */
export const SIGNATURE_ALGORITHMS = ['EdDSA', 'Ed25519', 'ES256', 'ES384', 'PS256', 'RS256'] as const;
const MAX_SIGNATURE_BYTES = 16 * 1024;
const DIGEST = /^[0-9a-f]{64}$/;

/** Outcome of a signature check. Only `valid` lets a bundle through when signatures are required. */
export const SignatureStatus = {
  Valid: 'valid',
  Unsigned: 'unsigned',
  Malformed: 'malformed',
  Untrusted: 'untrusted',
  Tampered: 'tampered',
} as const;
export type SignatureStatus = (typeof SignatureStatus)[keyof typeof SignatureStatus];

/** What checking a bundle's signature found. `message` is safe to log (no key material). */
export interface SignatureCheck {
  readonly status: SignatureStatus;
  /** The digest the check was made against (recomputed from the loaded files). */
  readonly digest: string;
  /** Key id from the JWS header, when there is a readable header. */
  readonly kid?: string;
  /** The signed `bundleVersion` (valid signatures only; absent in signatures made before versions). */
  readonly version?: number;
  /** The signed `issuedAt` (valid signatures only; absent in signatures made before versions). */
  readonly issuedAt?: string;
  readonly message: string;
}

/** What a version-2 signature signs besides the digest (protected header parameters). */
export interface BundleSignatureClaims {
  /** Positive integer, strictly increasing across the releases of a fleet's bundles. */
  version: number;
  /** ISO-8601 time of signing (default: now). */
  issuedAt?: string;
}

/** Largest accepted bundle version (a safe integer well below 2^53). */
export const MAX_BUNDLE_VERSION = 1_000_000_000_000;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** Throws InvalidInput unless `version` is an integer in 1..MAX_BUNDLE_VERSION. */
export function checkBundleVersion(version: unknown, field = 'version'): number {
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version > MAX_BUNDLE_VERSION)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${field}: must be an integer from 1 to ${MAX_BUNDLE_VERSION}`,
      field,
    );
  return version;
}

/** A private key to sign with (what `loadPrivateKey(home, 'policy-signing')` returns). */
export interface BundleSigningKey {
  readonly kid: string;
  readonly alg: string;
  readonly key: CryptoKey | KeyObject;
}

/**
 * Signs a bundle digest: the detached compact JWS (`header..signature`) to store as `bundle.sig`. With
 * `claims`, the signed header also carries the bundle's version and issue time (format version 2).
 */
export async function signDigest(
  digest: string,
  key: BundleSigningKey,
  claims?: BundleSignatureClaims,
): Promise<string> {
  if (!DIGEST.test(digest))
    throw new GovernorError(ErrorCode.InvalidInput, 'digest: must be 64 lowercase hex characters', 'digest');
  const versioned = claims
    ? {
        bundleVersion: checkBundleVersion(claims.version),
        issuedAt: claims.issuedAt ?? new Date().toISOString(),
      }
    : {};
  if (claims?.issuedAt !== undefined && !ISO_TIME.test(claims.issuedAt))
    throw new GovernorError(ErrorCode.InvalidInput, 'issuedAt: must be an ISO-8601 time', 'issuedAt');
  const jws = await new CompactSign(new TextEncoder().encode(digest))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: SIGNATURE_TYP, ...versioned })
    .sign(key.key);
  const [header, , signature] = jws.split('.');
  return `${header}..${signature}`;
}

/**
 * Verifies a detached bundle signature over `digest` against the trusted JWKS. Never throws for a
 * bad signature: the status says what is wrong (generic messages, jose-style).
 */
export async function verifyDigestSignature(
  digest: string,
  signature: string | undefined,
  trusted: JSONWebKeySet,
): Promise<SignatureCheck> {
  if (signature === undefined)
    return { status: SignatureStatus.Unsigned, digest, message: `the bundle has no ${SIGNATURE_FILE}` };
  const text = signature.trim();
  const parts = text.split('.');
  if (
    parts.length !== 3 ||
    parts[1] !== '' ||
    !parts[0] ||
    !parts[2] ||
    !/^[\w-]+$/.test(parts[0]) ||
    !/^[\w-]+$/.test(parts[2])
  ) {
    return {
      status: SignatureStatus.Malformed,
      digest,
      message: `${SIGNATURE_FILE} is not a detached compact JWS (header..signature)`,
    };
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(`${parts[0]}.e30.${parts[2]}`);
  } catch {
    return {
      status: SignatureStatus.Malformed,
      digest,
      message: `${SIGNATURE_FILE} has an unreadable protected header`,
    };
  }
  const kid = typeof header.kid === 'string' ? header.kid : undefined;
  const malformed = (message: string): SignatureCheck => ({
    status: SignatureStatus.Malformed,
    digest,
    ...(kid ? { kid } : {}),
    message,
  });
  if (header.typ !== SIGNATURE_TYP) return malformed(`${SIGNATURE_FILE} header typ must be "${SIGNATURE_TYP}"`);
  for (const param of ['jku', 'jwk', 'x5u', 'x5c'] as const) {
    if (header[param] !== undefined)
      return malformed(`${SIGNATURE_FILE} header must not carry "${param}": keys come only from the trusted JWKS`);
  }
  if (header.b64 === false)
    return malformed(`${SIGNATURE_FILE} header must not set b64: the payload is the base64url digest`);
  if (kid === undefined) return malformed(`${SIGNATURE_FILE} header has no kid`);
  if (!DIGEST.test(digest)) return malformed('digest: must be 64 lowercase hex characters');
  const { bundleVersion, issuedAt } = header as { bundleVersion?: unknown; issuedAt?: unknown };
  if ((bundleVersion === undefined) !== (issuedAt === undefined))
    return malformed(`${SIGNATURE_FILE} header must carry both bundleVersion and issuedAt, or neither`);
  if (
    bundleVersion !== undefined &&
    (typeof bundleVersion !== 'number' ||
      !Number.isInteger(bundleVersion) ||
      bundleVersion < 1 ||
      bundleVersion > MAX_BUNDLE_VERSION)
  )
    return malformed(`${SIGNATURE_FILE} header bundleVersion must be an integer from 1 to ${MAX_BUNDLE_VERSION}`);
  if (issuedAt !== undefined && (typeof issuedAt !== 'string' || !ISO_TIME.test(issuedAt)))
    return malformed(`${SIGNATURE_FILE} header issuedAt must be an ISO-8601 time`);

  try {
    await flattenedVerify(
      { protected: parts[0], payload: Buffer.from(digest, 'utf8').toString('base64url'), signature: parts[2] },
      createLocalJWKSet(trusted),
      { algorithms: [...SIGNATURE_ALGORITHMS] },
    );
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (
      code === 'ERR_JWKS_NO_MATCHING_KEY' ||
      code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS' ||
      code === 'ERR_JWKS_INVALID'
    ) {
      return {
        status: SignatureStatus.Untrusted,
        digest,
        kid,
        message: `${SIGNATURE_FILE} is signed by key "${kid}", which is not a trusted policy-signing key`,
      };
    }
    if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') {
      return {
        status: SignatureStatus.Tampered,
        digest,
        kid,
        message: `${SIGNATURE_FILE} does not match the bundle content: it was changed after signing (or the signature was altered)`,
      };
    }
    return malformed(`${SIGNATURE_FILE} cannot be verified (${code ?? 'invalid JWS'})`);
  }
  return {
    status: SignatureStatus.Valid,
    digest,
    kid,
    ...(typeof bundleVersion === 'number' ? { version: bundleVersion, issuedAt: issuedAt as string } : {}),
    message:
      typeof bundleVersion === 'number'
        ? `signed by trusted key "${kid}" (version ${bundleVersion}, issued ${issuedAt as string})`
        : `signed by trusted key "${kid}"`,
  };
}

/** The signature text in `<dir>/bundle.sig`, or undefined when there is none. Oversized files throw InvalidInput. */
export function readBundleSignature(dir: string): string | undefined {
  const file = join(dir, SIGNATURE_FILE);
  let size: number;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) return undefined;
    size = stat.size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (size > MAX_SIGNATURE_BYTES)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${SIGNATURE_FILE}: larger than ${MAX_SIGNATURE_BYTES} bytes`,
      SIGNATURE_FILE,
    );
  return readFileSync(file, 'utf8');
}

/**
 * Reads a trusted policy-signing JWKS file (public keys only). Throws GovernorError(KeysMissing)
 * naming the file when it is missing or not a JWKS, so a worker that requires signatures cannot start.
 */
export function readTrustedKeys(file: string): JSONWebKeySet {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new GovernorError(
      ErrorCode.KeysMissing,
      `trusted policy-signing keys: cannot read ${file} (${code}); run \`governor keys init\` or configure the JWKS file`,
      'policyTrustJwks',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new GovernorError(
      ErrorCode.KeysMissing,
      `trusted policy-signing keys: ${file} is not JSON`,
      'policyTrustJwks',
    );
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (
    !Array.isArray(keys) ||
    keys.length === 0 ||
    !keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))
  ) {
    throw new GovernorError(
      ErrorCode.KeysMissing,
      `trusted policy-signing keys: ${file} is not a JWKS with at least one key`,
      'policyTrustJwks.keys',
    );
  }
  if (keys.some((k: Record<string, unknown>) => 'd' in k || 'k' in k)) {
    // A private or symmetric key in a trust file means it is the wrong file: refuse rather than use it.
    throw new GovernorError(
      ErrorCode.KeysMissing,
      `trusted policy-signing keys: ${file} must hold public keys only`,
      'policyTrustJwks.keys',
    );
  }
  return { keys: keys as JSONWebKeySet['keys'] };
}

/** A bundle read from a directory together with its signature check (the files are read once). */
export interface SignedBundle {
  readonly bundle: LoadedBundle;
  /** The raw `bundle.sig` text, when present (archived with the bundle). */
  readonly signature?: string;
  /** Absent when no trusted keys were given (signature not checked). */
  readonly check?: SignatureCheck;
}

/**
 * Reads, checks and (with `trusted`) signature-checks the bundle in `dir`. The digest the signature is
 * verified against is computed from the very files that are loaded. With `requireSigned`, anything
 * but a valid signature from a trusted key throws GovernorError(PolicyError) naming the status.
 */
export async function loadSignedBundle(
  dir: string,
  options: { trusted?: JSONWebKeySet; requireSigned?: boolean } = {},
): Promise<SignedBundle> {
  if (options.requireSigned && !options.trusted) {
    throw new GovernorError(
      ErrorCode.PolicyError,
      'signed policy is required but no trusted policy-signing keys are configured',
      'policyTrustJwks',
    );
  }
  const read = readBundleFiles(dir);
  if (read.issues.length > 0) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `cannot read policy bundle ${dir}:\n${read.issues.map(formatIssue).join('\n')}`,
      dir,
    );
  }
  const bundle = loadBundleFromFiles(read.files, dir);
  const signature = readBundleSignature(dir);
  if (!options.trusted) return { bundle, ...(signature !== undefined ? { signature } : {}) };
  const check = await verifyDigestSignature(bundle.digest, signature, options.trusted);
  if (options.requireSigned && check.status !== SignatureStatus.Valid) {
    throw new GovernorError(
      ErrorCode.PolicyError,
      `policy bundle ${dir} refused (${check.status}): ${check.message}`,
      SIGNATURE_FILE,
    );
  }
  return { bundle, ...(signature !== undefined ? { signature } : {}), check };
}

/** Signs the (valid) bundle in `dir` and writes `<dir>/bundle.sig` atomically. Throws on an invalid bundle. */
export async function signBundleDir(
  dir: string,
  key: BundleSigningKey,
  claims?: BundleSignatureClaims,
): Promise<{ digest: string; kid: string; file: string; signature: string }> {
  const read = readBundleFiles(dir);
  if (read.issues.length > 0) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `cannot read policy bundle ${dir}:\n${read.issues.map(formatIssue).join('\n')}`,
      dir,
    );
  }
  const bundle = loadBundleFromFiles(read.files, dir);
  const signature = await signDigest(bundle.digest, key, claims);
  const file = join(dir, SIGNATURE_FILE);
  // Via a temp file and rename, so a watching worker never reads half a signature.
  const tmp = join(dir, `.${SIGNATURE_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    writeFileSync(tmp, `${signature}\n`, { mode: 0o644, flag: 'wx' });
    renameSync(tmp, file);
  } finally {
    rmSync(tmp, { force: true });
  }
  return { digest: bundle.digest, kid: key.kid, file, signature };
}
