import { createPrivateKey, randomBytes, type JsonWebKey as NodeJwk, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JSONWebKeySet,
  type JWK,
} from 'jose';
import { ErrorCode, GovernorError } from '../contracts/errors';

/**
 * Dev key material under `<home>/keys/`: one Ed25519 key pair per name, the private half as a JWK file
 * (mode 0600), the public half as a JWKS file that a manifest can point at (`{file: 'keys/<name>.jwks.json'}`).
 *
 * Security: these are development keys kept on local disk, unencrypted. Production issuers, attesters and
 * signers should keep their private keys in a KMS/HSM and publish only a JWKS.
 */

/** Key pairs created by `governor keys init`. Helpers accept any valid name, so further pairs can be added later. */
export const DEV_KEY_NAMES = ['issuer', 'attester', 'receipt', 'policy-signing', 'approver', 'grant'] as const;
/** One of `DEV_KEY_NAMES`. */
export type DevKeyName = (typeof DEV_KEY_NAMES)[number];

/**
 * Kinds `governor keys rotate` rotates, by the key pair each names. Their JWKS keeps every retired public
 * key with its validity window, so what it signed before a rotation still verifies.
 */
export const ROTATABLE_KEYS = { receipt: 'receipt', approver: 'approver', policy: 'policy-signing' } as const;
/** One of `ROTATABLE_KEYS`' kinds. */
export type RotatableKind = keyof typeof ROTATABLE_KEYS;

/**
 * A published key's validity window (members of its JWK in the JWKS, epoch seconds): `nbf`, when it
 * became the signing key (absent for a key created before key history existed: valid from the start),
 * and `retired`, when a rotation replaced it (absent for the current key). Verifiers of stored evidence
 * accept a signature by a key only when it was made inside the key's window; verifiers of live tokens
 * (jwks.ts) no longer accept a retired key at all.
 */
export interface KeyWindow {
  nbf?: number;
  retired?: number;
}

/** JWS algorithm of every dev key (Ed25519). */
export const KEY_ALG = 'EdDSA';

// A key name becomes part of a file name: keep it to a safe, boring alphabet (no separators, no dots).
const KEY_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Where one key pair lives on disk. */
export interface KeyPaths {
  privateKeyPath: string;
  jwksPath: string;
}

/** One key pair in the `initKeys` summary. */
export interface KeySummary extends KeyPaths {
  name: string;
  kid: string;
  alg: typeof KEY_ALG;
  /** True when this call generated the pair; false when an existing one was kept. */
  created: boolean;
}

/** What `initKeys` did. */
export interface KeysSummary {
  home: string;
  /** The `<home>/keys` directory. */
  dir: string;
  /** Names of the pairs this call generated (empty when every pair already existed). */
  created: string[];
  keys: KeySummary[];
}

/** A private signing key ready for `SignJWT#sign`, with the `kid` to put in the header. */
export interface SigningKey {
  name: string;
  kid: string;
  alg: typeof KEY_ALG;
  key: CryptoKey;
}

/** The governor home directory: the argument, else `GOVERNOR_HOME`, else `.governor` (resolved to an absolute path). */
export function governorHome(home?: string): string {
  return path.resolve(home ?? process.env.GOVERNOR_HOME ?? '.governor');
}

/** The `<home>/keys` directory. */
export function keysDir(home?: string): string {
  return path.join(governorHome(home), 'keys');
}

/** File paths of key pair `name`: `<home>/keys/<name>.private.jwk.json` and `<home>/keys/<name>.jwks.json`. */
export function keyPaths(home: string | undefined, name: string): KeyPaths {
  assertKeyName(name);
  const dir = keysDir(home);
  return { privateKeyPath: path.join(dir, `${name}.private.jwk.json`), jwksPath: path.join(dir, `${name}.jwks.json`) };
}

/**
 * Creates the dev key pairs (default: `DEV_KEY_NAMES`). Idempotent: an existing private key is kept (and its
 * public JWKS rewritten if missing or out of step) unless `force`, which replaces it — invalidating every token
 * it signed.
 */
export async function initKeys(
  home?: string,
  options: { force?: boolean; names?: readonly string[] } = {},
): Promise<KeysSummary> {
  const names = options.names ?? DEV_KEY_NAMES;
  names.forEach(assertKeyName);
  const dir = keysDir(home);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keys: KeySummary[] = [];
  for (const name of names) keys.push(await ensureKeyPair(home, name, options.force === true));
  return { home: governorHome(home), dir, created: keys.filter((k) => k.created).map((k) => k.name), keys };
}

/**
 * Loads the private key of pair `name`. Throws `GovernorError(KeysMissing)` naming the file when it is absent
 * or unusable. Not cached: callers on a hot path should keep the result.
 */
export async function loadPrivateKey(home: string | undefined, name: string): Promise<SigningKey> {
  const { privateKeyPath } = keyPaths(home, name);
  const jwk = await readPrivateJwk(privateKeyPath, name);
  markUsed(home, name, jwk.kid as string);
  const key = await importJWK(jwk, KEY_ALG);
  if (!isCryptoKey(key)) throw keyFileInvalid(privateKeyPath, name);
  return { name, kid: jwk.kid as string, alg: KEY_ALG, key };
}

/**
 * Loads the private key of pair `name` as a Node key object, for signing synchronously with node:crypto
 * (receipts). A Node key object made directly from the JWK file: converting a non-extractable WebCrypto
 * key instead is deprecated from Node 24 (DEP0204).
 */
export async function loadPrivateKeyObject(
  home: string | undefined,
  name: string,
): Promise<{ kid: string; key: KeyObject }> {
  const { privateKeyPath } = keyPaths(home, name);
  const jwk = await readPrivateJwk(privateKeyPath, name);
  markUsed(home, name, jwk.kid as string);
  try {
    return { kid: jwk.kid as string, key: createPrivateKey({ key: jwk as NodeJwk, format: 'jwk' }) };
  } catch {
    throw keyFileInvalid(privateKeyPath, name);
  }
}

/** Loads the public JWKS of pair `name` (what verifiers trust). Throws `GovernorError(KeysMissing)` when absent. */
export function loadPublicJwks(home: string | undefined, name: string): JSONWebKeySet {
  const { jwksPath } = keyPaths(home, name);
  const text = readOrMissing(jwksPath, name);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw keyFileInvalid(jwksPath, name);
  }
  if (!isJwks(parsed)) throw keyFileInvalid(jwksPath, name);
  return parsed;
}

/** The public half of an Ed25519 private JWK, as published in a JWKS. */
export function publicJwk(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, kid: jwk.kid, alg: KEY_ALG, use: 'sig' } as JWK;
}

/**
 * Rotates key pair `name`: a new private key replaces the current one (which can sign nothing more), and
 * the JWKS publishes the new key (`nbf` now) before every earlier one, the replaced key with `retired`
 * now. Evidence signed before the rotation keeps verifying; the replaced key signs nothing valid after it.
 */
export async function rotateKey(
  home: string | undefined,
  name: string,
  now: Date = new Date(),
  options: { privateKeyPath?: string } = {},
): Promise<{ name: string; kid: string; retiredKid: string; jwksPath: string }> {
  // `privateKeyPath`: the private key lives outside the home (a key file given by reference,
  // identity/key-ref.ts); the JWKS stays in the home.
  const paths = {
    ...keyPaths(home, name),
    ...(options.privateKeyPath ? { privateKeyPath: options.privateKeyPath } : {}),
  };
  const current = await readPrivateJwk(paths.privateKeyPath, name);
  const at = Math.floor(now.getTime() / 1000);
  const next = await generatePrivateJwk();
  const published = publishedKeys(paths.jwksPath).filter((k) => k.kid !== current.kid && k.kid !== next.kid);
  const previous = publishedKeys(paths.jwksPath).find((k) => k.kid === current.kid);
  const retired = { ...publicJwk(current), ...windowOf(previous), retired: at };
  const jwks = { keys: [{ ...publicJwk(next), nbf: at }, retired, ...published] };
  // The JWKS first: a verifier must know the new key before anything is signed with it.
  writeFileAtomic(paths.jwksPath, `${JSON.stringify(jwks, null, 2)}\n`, 0o644, true);
  writeFileAtomic(paths.privateKeyPath, `${JSON.stringify(next, null, 2)}\n`, 0o600, true);
  return { name, kid: next.kid as string, retiredKid: current.kid as string, jwksPath: paths.jwksPath };
}

/** The validity window a published JWK carries (`nbf`, `retired`), when it carries one. */
export function keyWindow(jwk: unknown): KeyWindow {
  return windowOf(isObject(jwk) ? jwk : undefined);
}

function windowOf(jwk: Record<string, unknown> | undefined): KeyWindow {
  const w: KeyWindow = {};
  if (typeof jwk?.nbf === 'number' && Number.isFinite(jwk.nbf)) w.nbf = jwk.nbf;
  if (typeof jwk?.retired === 'number' && Number.isFinite(jwk.retired)) w.retired = jwk.retired;
  return w;
}

/** The keys a JWKS file publishes (empty when absent or unreadable). */
function publishedKeys(file: string): Record<string, unknown>[] {
  const text = readIfExists(file);
  if (text === undefined) return [];
  try {
    const parsed = JSON.parse(text) as unknown;
    return isJwks(parsed) ? (parsed.keys as Record<string, unknown>[]) : [];
  } catch {
    return [];
  }
}

/** `<home>/keys/<name>.used.json`: key ids of pair `name` that were loaded to sign something (rotatable kinds only). */
function usedPath(home: string | undefined, name: string): string {
  return path.join(keysDir(home), `${name}.used.json`);
}

const ROTATABLE_NAMES: readonly string[] = Object.values(ROTATABLE_KEYS);

/** Notes that `kid` of a rotatable pair signs evidence, so `keys init --force` will not drop it. */
export function markKeyUsed(home: string | undefined, name: string, kid: string): void {
  markUsed(home, name, kid);
}

function markUsed(home: string | undefined, name: string, kid: string): void {
  if (!ROTATABLE_NAMES.includes(name)) return;
  const used = usedKids(home, name);
  if (used.includes(kid)) return;
  try {
    writeFileAtomic(usedPath(home, name), `${JSON.stringify([...used, kid])}\n`, 0o644, true);
  } catch {
    // Best effort: a read-only home still signs (the JWKS history protects verification either way).
  }
}

function usedKids(home: string | undefined, name: string): string[] {
  const text = readIfExists(usedPath(home, name));
  if (text === undefined) return [];
  try {
    const parsed = JSON.parse(text) as unknown;
    return Array.isArray(parsed) ? parsed.filter((k): k is string => typeof k === 'string') : [];
  } catch {
    return [];
  }
}

async function ensureKeyPair(home: string | undefined, name: string, force: boolean): Promise<KeySummary> {
  const paths = keyPaths(home, name);
  let created = false;
  let jwk: JWK | undefined;
  const published = publishedKeys(paths.jwksPath);
  if (force && ROTATABLE_NAMES.includes(name)) {
    // Replacing a key that signed evidence (or whose JWKS keeps retired keys) would make that evidence
    // unverifiable: rotation keeps it.
    const used = usedKids(home, name);
    const drops = published.filter(
      (k) => typeof k.kid === 'string' && (used.includes(k.kid) || k.retired !== undefined),
    );
    if (drops.length > 0) {
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `keys init --force would drop ${name} key(s) ${drops.map((k) => String(k.kid)).join(', ')} that signed ` +
          `existing evidence; use \`governor keys rotate ${kindOf(name)}\` instead`,
        name,
      );
    }
  }
  if (!force && fs.existsSync(paths.privateKeyPath)) {
    jwk = await readPrivateJwk(paths.privateKeyPath, name);
  } else {
    jwk = await generatePrivateJwk();
    // Without force, create-if-absent atomically so two concurrent `keys init` never overwrite each other.
    created = writeFileAtomic(paths.privateKeyPath, `${JSON.stringify(jwk, null, 2)}\n`, 0o600, force);
    if (!created) jwk = await readPrivateJwk(paths.privateKeyPath, name);
  }
  // The current key first (keeping its window), then every retired key the JWKS already publishes.
  const current = published.find((k) => k.kid === jwk.kid);
  const retired = force ? [] : published.filter((k) => k.kid !== jwk.kid && k.retired !== undefined);
  const jwks = `${JSON.stringify({ keys: [{ ...publicJwk(jwk), ...windowOf(current) }, ...retired] }, null, 2)}\n`;
  if (readIfExists(paths.jwksPath) !== jwks) writeFileAtomic(paths.jwksPath, jwks, 0o644, true);
  return { name, kid: jwk.kid as string, alg: KEY_ALG, created, ...paths };
}

async function generatePrivateJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('Ed25519', { extractable: true });
  const exported = await exportJWK(privateKey);
  const jwk: JWK = { kty: exported.kty, crv: exported.crv, x: exported.x, d: exported.d } as JWK;
  // RFC 7638 thumbprint (over crv, kty, x only), so the kid is derived from the public key, not chosen.
  jwk.kid = await calculateJwkThumbprint(jwk, 'sha256');
  jwk.alg = KEY_ALG;
  jwk.use = 'sig';
  return jwk;
}

/** Reads and checks an Ed25519 private JWK file (its kid must be its thumbprint); errors name the file, never its content. */
export async function readPrivateJwk(file: string, name: string): Promise<JWK> {
  const text = readOrMissing(file, name);
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw keyFileInvalid(file, name);
  }
  if (
    !isObject(jwk) ||
    jwk.kty !== 'OKP' ||
    jwk.crv !== 'Ed25519' ||
    !isB64u(jwk.x) ||
    !isB64u(jwk.d) ||
    typeof jwk.kid !== 'string'
  ) {
    throw keyFileInvalid(file, name);
  }
  // A kid that is not the key's thumbprint means the file was edited or mixed up with another one.
  if ((await calculateJwkThumbprint(jwk as JWK, 'sha256')) !== jwk.kid) throw keyFileInvalid(file, name);
  return jwk as JWK;
}

function readOrMissing(file: string, name: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new GovernorError(
        ErrorCode.KeysMissing,
        `key "${name}" not found: ${file} is missing; set GOVERNOR_HOME to the governor's home ` +
          '(the `.governor` directory the worker uses), or run `governor keys init` to create new keys there',
        name,
      );
    }
    throw err;
  }
}

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes via a temp file so a reader never sees half a key. Returns false when `replace` is off and the file exists. */
function writeFileAtomic(file: string, data: string, mode: number, replace: boolean): boolean {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, data, { mode, flag: 'wx' });
  try {
    fs.chmodSync(tmp, mode); // the umask may have narrowed or (for 0644) changed the mode
    if (replace) {
      fs.renameSync(tmp, file);
      return true;
    }
    try {
      fs.linkSync(tmp, file); // fails with EEXIST instead of overwriting
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function keyFileInvalid(file: string, name: string): GovernorError {
  return new GovernorError(
    ErrorCode.KeysMissing,
    `key "${name}" is unusable: ${file} is not a valid Ed25519 key file; run \`governor keys init --force\``,
    name,
  );
}

function kindOf(name: string): string {
  return Object.entries(ROTATABLE_KEYS).find(([, n]) => n === name)?.[0] ?? name;
}

function assertKeyName(name: string): void {
  if (typeof name !== 'string' || !KEY_NAME.test(name)) {
    throw new GovernorError(ErrorCode.InvalidInput, 'key name must match [a-z][a-z0-9-]*', 'name');
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isB64u(v: unknown): v is string {
  return typeof v === 'string' && /^[A-Za-z0-9_-]+$/.test(v);
}

function isJwks(v: unknown): v is JSONWebKeySet {
  return isObject(v) && Array.isArray(v.keys) && v.keys.every(isObject);
}

function isCryptoKey(k: CryptoKey | Uint8Array): k is CryptoKey {
  return !(k instanceof Uint8Array);
}
