import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type CompactJWSHeaderParameters,
  type CryptoKey,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type LocalJWKSet,
} from 'jose';
import { ErrorCode, GovernorError } from '../contracts/errors';
import type { JwksSource } from '../policies/manifest';
import { governorHome } from './keys';

/**
 * Key resolution for trusted issuers and attesters. Keys come ONLY from the manifest's JWKS source, never from
 * the token (`jku`, `x5u`, `jwk`, `x5c` are rejected before we get here).
 */

/** Resolves the verification key for an (unverified) JWS header; pass it to `jwtVerify` as the key. */
export type JwksResolver = ((
  protectedHeader: CompactJWSHeaderParameters,
  token: FlattenedJWSInput,
) => Promise<CryptoKey>) & {
  /** Changes whenever the key set is (re)loaded; absent when reloads cannot be observed (remote sets). */
  generation?: () => number;
};

// Module-level caches: the authorize path verifies on every step, so a warm call must not read a file, fetch a
// URL or re-import a key. jose's JWK sets cache imported CryptoKeys themselves.
const inlineResolvers = new WeakMap<object, JwksResolver>();
const fileResolvers = new Map<string, JwksResolver>();
const uriResolvers = new Map<string, JwksResolver>();

/**
 * The cached resolver for a manifest JWKS source, created on first use:
 * `keys` → an in-memory set (cached per source object); `file` (relative paths resolve against the governor
 * home) → read on first use, re-read only when a `kid` is not found and the file has changed (key rotation);
 * `uri` → jose's remote set (cached per URI; refetched on an unknown `kid`, at most once per 30 s).
 * Failures to obtain keys are not verdicts on the token: a missing file throws `KeysMissing`, an unreachable
 * or broken remote JWKS throws `PolicyUnavailable` (both retryable), a malformed inline set `InvalidInput`.
 */
export function createJwksResolver(source: JwksSource, home?: string): JwksResolver {
  if (source.keys !== undefined) {
    let resolver = inlineResolvers.get(source);
    if (!resolver) {
      resolver = inlineResolver(source.keys);
      inlineResolvers.set(source, resolver);
    }
    return resolver;
  }
  if (source.file !== undefined) {
    const file = path.resolve(governorHome(home), source.file);
    let resolver = fileResolvers.get(file);
    if (!resolver) {
      resolver = fileResolver(file);
      fileResolvers.set(file, resolver);
    }
    return resolver;
  }
  if (source.uri !== undefined) {
    let resolver = uriResolvers.get(source.uri);
    if (!resolver) {
      resolver = uriResolver(source.uri);
      uriResolvers.set(source.uri, resolver);
    }
    return resolver;
  }
  throw new GovernorError(ErrorCode.InvalidInput, 'JWKS source needs exactly one of file, uri or keys', 'jwks');
}

function inlineResolver(keys: Record<string, unknown>[]): JwksResolver {
  let set: LocalJWKSet;
  try {
    set = createLocalJWKSet({ keys } as JSONWebKeySet);
  } catch {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      'inline JWKS of a trusted issuer or attester is malformed',
      'jwks.keys',
    );
  }
  const resolver: JwksResolver = (header, token) => set(header, token);
  resolver.generation = () => 0; // inline keys never change
  return resolver;
}

function fileResolver(file: string): JwksResolver {
  let loaded: { set: LocalJWKSet; stamp: string } | undefined;
  let generation = 0;
  const load = (): { set: LocalJWKSet; stamp: string } => {
    generation += 1;
    let text: string;
    let stamp: string;
    try {
      stamp = fileStamp(file);
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new GovernorError(
          ErrorCode.KeysMissing,
          `JWKS file ${file} is missing; run \`governor keys init\``,
          'jwks.file',
        );
      }
      throw err;
    }
    try {
      return { set: createLocalJWKSet(liveKeys(JSON.parse(text) as JSONWebKeySet)), stamp };
    } catch {
      throw new GovernorError(ErrorCode.KeysMissing, `JWKS file ${file} is not a valid JWKS`, 'jwks.file');
    }
  };
  let checkedAt = 0;
  const resolver: JwksResolver = async (header, token) => {
    // A rotation retires a key the loaded set still holds: the file is checked again at most once a
    // second, so a retired key stops verifying new tokens within a second of `governor keys rotate`.
    const now = Date.now();
    if (loaded && now - checkedAt >= 1000) {
      checkedAt = now;
      let stamp: string | undefined;
      try {
        stamp = fileStamp(file);
      } catch {
        stamp = undefined; // vanished: keep the loaded set until a miss says otherwise
      }
      if (stamp !== undefined && stamp !== loaded.stamp) loaded = load();
    }
    if (!loaded) checkedAt = now;
    const current = (loaded ??= load());
    try {
      return await current.set(header, token);
    } catch (err) {
      if (codeOf(err) !== 'ERR_JWKS_NO_MATCHING_KEY') throw err;
      // The keys may have been rotated (`governor keys init --force`) since we read the file: re-read once if it
      // changed. Only the miss path pays for the stat.
      let stamp: string;
      try {
        stamp = fileStamp(file);
      } catch {
        throw err;
      }
      if (stamp === current.stamp) throw err;
      loaded = load();
      return loaded.set(header, token);
    }
  };
  resolver.generation = () => generation;
  return resolver;
}

/**
 * The keys of a JWKS that may verify a token presented now: a key retired by `governor keys rotate`
 * (`retired` member, identity/keys.ts) stays published for stored evidence but accepts no new token.
 */
function liveKeys(jwks: JSONWebKeySet): JSONWebKeySet {
  if (!Array.isArray(jwks?.keys)) return jwks;
  return { keys: jwks.keys.filter((k) => (k as { retired?: unknown }).retired === undefined) };
}

function uriResolver(uri: string): JwksResolver {
  const url = new URL(uri);
  const remote = createRemoteJWKSet(url);
  const where = `${url.origin}${url.pathname}`; // no query or userinfo in messages
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      const code = codeOf(err);
      // A key the set does not have is a verdict on the token; anything else (timeout, HTTP error, bad JSON,
      // network) is the key source being unavailable, which a retry may fix.
      if (
        code === 'ERR_JWKS_NO_MATCHING_KEY' ||
        code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS' ||
        code === 'ERR_JOSE_NOT_SUPPORTED'
      )
        throw err;
      throw new GovernorError(ErrorCode.PolicyUnavailable, `JWKS ${where} could not be loaded`, 'jwks.uri');
    }
  };
}

function fileStamp(file: string): string {
  const s = fs.statSync(file, { bigint: true });
  return `${s.ino}:${s.mtimeNs}:${s.size}`;
}

function codeOf(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}
