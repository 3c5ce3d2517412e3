import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { LRUCache } from 'lru-cache';
import { canonicalJson, sha256Hex } from '../../core/canonical';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { isRecord } from './util';
import { keyWindow, type KeyWindow } from '../../identity/keys';

/*
 * Compact JWS of the governor's receipt key (receipts, slot request seals, proof seals), checked with
 * the keys the caller trusts, never with keys a history or a proof carries.
 */

/** A verified JWS's payload and key id, or why it does not verify. */
export type JwsCheck = { ok: true; payload: string; kid: string } | { ok: false; problem: string };

/** Trusted keys as jose needs them, with an id (digest of the canonical JWKS) for memoising verifications. */
export interface TrustedKeys {
  id: string;
  keySet: ReturnType<typeof createLocalJWKSet>;
  /** Validity windows of rotated keys (`governor keys rotate`), by kid. */
  windows: Map<string, KeyWindow>;
}

/**
 * Verifications already made, by key set, `typ` and JWS: verifying is a pure function of those, and
 * a proof checked again (or a mutated copy of it) carries mostly the same signatures. Bounded.
 */
const verified = new LRUCache<string, JwsCheck>({ max: 20_000 });

/** Checks a compact JWS: canonical base64url segments, EdDSA, the expected `typ`, a trusted key. */
export async function verifyCompactJws(jws: string, keys: TrustedKeys, typ: string): Promise<JwsCheck> {
  const memo = `${keys.id}\n${typ}\n${jws}`;
  const known = verified.get(memo);
  if (known) return known;
  const result = await verifyJwsUncached(jws, keys, typ);
  verified.set(memo, result);
  return result;
}

async function verifyJwsUncached(jws: string, { keySet }: TrustedKeys, typ: string): Promise<JwsCheck> {
  const segments = jws.split('.');
  if (
    segments.length !== 3 ||
    segments.some((s) => s.length === 0 || Buffer.from(s, 'base64url').toString('base64url') !== s)
  ) {
    return { ok: false, problem: 'is not a canonical compact JWS' };
  }
  try {
    const { payload, protectedHeader } = await compactVerify(jws, keySet, { algorithms: ['EdDSA'] });
    if (protectedHeader.typ !== typ)
      return { ok: false, problem: `has typ ${String(protectedHeader.typ)}, not ${typ}` };
    return { ok: true, payload: new TextDecoder().decode(payload), kid: String(protectedHeader.kid ?? '') };
  } catch {
    // Deliberately generic: which part failed does not help anyone but a forger.
    return { ok: false, problem: 'is not valid with the trusted receipt key' };
  }
}

/** Key sets already made, by the digest of their canonical JWKS. Bounded. */
const keySets = new LRUCache<string, TrustedKeys>({ max: 16 });

/** The trusted JWKS as a jose key set; throws InvalidInput when it is not a usable JWKS. */
export function trustedKeys(jwks: JSONWebKeySet): TrustedKeys {
  if (!isRecord(jwks) || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      'trusted receipt keys: not a JWKS with at least one key',
      'receiptJwks',
    );
  }
  // A snapshot: the caller's object may change later, the memo must not.
  const snapshot = JSON.parse(JSON.stringify(jwks)) as JSONWebKeySet;
  const id = sha256Hex(canonicalJson(snapshot));
  let keys = keySets.get(id);
  if (!keys) {
    try {
      const windows = new Map<string, KeyWindow>();
      for (const k of snapshot.keys) if (typeof k.kid === 'string') windows.set(k.kid, keyWindow(k));
      keys = { id, keySet: createLocalJWKSet(snapshot), windows };
    } catch {
      throw new GovernorError(ErrorCode.InvalidInput, 'trusted receipt keys: not a valid JWKS', 'receiptJwks');
    }
    keySets.set(id, keys);
  }
  return keys;
}

/** Verifies a proof seal (or any compact JWS of ours over a text payload) with the trusted receipt keys. */
export async function verifySealJws(jws: string, jwks: JSONWebKeySet, typ: string): Promise<JwsCheck> {
  return verifyCompactJws(jws, trustedKeys(jwks), typ);
}
