import {
  createPrivateKey,
  createPublicKey,
  verify as nodeVerify,
  type JsonWebKey as NodeJwk,
  type KeyObject,
} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { compactEd25519, type ReceiptSigning } from '../core/receipts';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { KEY_ALG, loadPublicJwks, markKeyUsed, readPrivateJwk } from './keys';
import { SignerClient } from './signer-client';

/**
 * Signing keys given by reference (issue 18 item 4, docs/production.md): a worker of a fleet need not
 * keep its receipt key in GOVERNOR_HOME. Either
 * - a key file anywhere (`GOVERNOR_RECEIPT_KEY_FILE`, `GOVERNOR_APPROVER_KEY_FILE`; what a secrets
 *   manager mounts), readable by its owner only: a file group or others may read or write is refused;
 * - or a signer process on the same host (`governor signer`, identity/signer.ts) that holds the key and
 *   signs over a Unix socket (`GOVERNOR_RECEIPT_SIGNER`, `GOVERNOR_APPROVER_SIGNER`).
 * The public JWKS stays in GOVERNOR_HOME: a referenced key whose kid it does not publish (or publishes as
 * retired) is refused, and every signature a signer returns is checked against it before it is used.
 * Fail closed: a reference that cannot be used is an error, never a fall back to a key in the home.
 */

/** A private key held elsewhere than `<home>/keys`. */
export type KeyRef = { file: string } | { signer: string };

/** The keys that can be given by reference. */
export type ReferencedKeyName = 'receipt' | 'approver';

/** Environment variables of each reference. */
export const KEY_REF_ENV: Record<ReferencedKeyName, { file: string; signer: string }> = {
  receipt: { file: 'GOVERNOR_RECEIPT_KEY_FILE', signer: 'GOVERNOR_RECEIPT_SIGNER' },
  approver: { file: 'GOVERNOR_APPROVER_KEY_FILE', signer: 'GOVERNOR_APPROVER_SIGNER' },
};

/** The reference the environment gives for key `name` (none: the key in GOVERNOR_HOME). */
export function keyRefFromEnv(name: ReferencedKeyName, env: NodeJS.ProcessEnv = process.env): KeyRef | undefined {
  const vars = KEY_REF_ENV[name];
  const file = env[vars.file];
  const signer = env[vars.signer];
  if (file && signer) {
    throw new GovernorError(ErrorCode.InvalidInput, `set ${vars.file} or ${vars.signer}, not both`, vars.file);
  }
  if (file) return { file: path.resolve(file) };
  if (signer) return { signer: path.resolve(signer) };
  return undefined;
}

/** A short description of a reference for messages (paths only: never key material). */
export function describeKeyRef(name: string, ref: KeyRef): string {
  return 'file' in ref ? `${name} key file ${ref.file}` : `${name} signer at ${ref.signer}`;
}

/**
 * Reads a private key file given by reference: a regular file, accessible to nobody but its owner, holding
 * an Ed25519 private JWK. Errors name the file and what is wrong, never its content.
 */
export async function readKeyFile(file: string, name: string): Promise<{ kid: string; key: KeyObject }> {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    throw new GovernorError(
      ErrorCode.KeysMissing,
      `${name} key file ${file} is unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      name,
    );
  }
  if (!st.isFile()) {
    throw new GovernorError(ErrorCode.KeysMissing, `${name} key file ${file} is not a regular file`, name);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new GovernorError(
      ErrorCode.KeysMissing,
      `${name} key file ${file} is accessible to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); ` +
        `a private key must be readable by its owner only: chmod 600 ${file}`,
      name,
    );
  }
  let jwk;
  try {
    jwk = await readPrivateJwk(file, name);
  } catch (err) {
    if (err instanceof GovernorError) throw err;
    throw new GovernorError(
      ErrorCode.KeysMissing,
      `${name} key file ${file} is unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      name,
    );
  }
  try {
    return { kid: jwk.kid as string, key: createPrivateKey({ key: jwk as NodeJwk, format: 'jwk' }) };
  } catch {
    throw new GovernorError(ErrorCode.KeysMissing, `${name} key file ${file} is not a valid Ed25519 key`, name);
  }
}

/** How long a retired key's signatures are still taken from a signer (its reload lags a rotation by ≤ 1 s). */
const RETIRED_GRACE_S = 10;

/**
 * The public key `kid` of pair `name` as `<home>/keys/<name>.jwks.json` publishes it, or why it cannot
 * sign: not published (the JWKS has not reached this worker, or the key is not the fleet's) or retired.
 */
function publishedKey(home: string, name: string, kid: string, now = Date.now()): KeyObject | string {
  const jwks = loadPublicJwks(home, name);
  const jwk = jwks.keys.find((k) => k.kid === kid) as (Record<string, unknown> & { kid: string }) | undefined;
  const where = path.join(home, 'keys', `${name}.jwks.json`);
  if (!jwk) return `${name} key ${kid} is not published in ${where}`;
  if (typeof jwk.retired === 'number' && jwk.retired + RETIRED_GRACE_S < now / 1000)
    return `${name} key ${kid} is retired in ${where}`;
  try {
    return createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x } as NodeJwk, format: 'jwk' });
  } catch {
    return `${name} key ${kid} in ${where} is not a valid Ed25519 key`;
  }
}

/**
 * Checks that a reference can sign now: the key file is readable, private and published; or the signer
 * answers, holds key `name`, and that key is published. Throws a `GovernorError` saying what is wrong.
 */
export async function checkKeyRef(home: string, name: ReferencedKeyName, ref: KeyRef): Promise<{ kid: string }> {
  let kid: string;
  if ('file' in ref) {
    kid = (await readKeyFile(ref.file, name)).kid;
  } else {
    const client = new SignerClient(ref.signer);
    try {
      const keys = await client.keys();
      if (!keys[name]) {
        throw new GovernorError(ErrorCode.KeysMissing, `${describeKeyRef(name, ref)} holds no ${name} key`, name);
      }
      kid = keys[name].kid;
    } finally {
      client.close();
    }
  }
  const published = publishedKey(home, name, kid);
  if (typeof published === 'string') {
    throw new GovernorError(ErrorCode.KeysMissing, `${describeKeyRef(name, ref)}: ${published}`, name);
  }
  return { kid };
}

/** Reads a compact JWS's protected header and payload (without checking it). */
function parseCompact(jws: string): { header: Record<string, unknown>; payload: string; input: string; sig: Buffer } {
  const parts = jws.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  return {
    header,
    payload: Buffer.from(parts[1]!, 'base64url').toString('utf8'),
    input: `${parts[0]}.${parts[1]}`,
    sig: Buffer.from(parts[2]!, 'base64url'),
  };
}

/**
 * Signs through signer `client` with key `name`, and accepts the answer only when it is a JWS of exactly
 * `typ` and `payload`, by a key the home publishes, whose signature verifies.
 */
export async function signVia(
  client: SignerClient,
  home: string,
  name: ReferencedKeyName,
  typ: string,
  payload: string,
): Promise<{ jws: string; kid: string }> {
  const jws = await client.sign(name, typ, payload);
  const refused = (why: string) =>
    new GovernorError(ErrorCode.KeysMissing, `${name} signer at ${client.socketPath}: ${why}`, name);
  let parsed;
  try {
    parsed = parseCompact(jws);
  } catch {
    throw refused('its answer is not a compact JWS');
  }
  const { header } = parsed;
  if (header.alg !== KEY_ALG || header.typ !== typ || typeof header.kid !== 'string' || parsed.payload !== payload) {
    throw refused('its answer is not a signature of what was asked');
  }
  const key = publishedKey(home, name, header.kid);
  if (typeof key === 'string') throw refused(key);
  if (!nodeVerify(null, Buffer.from(parsed.input), key, parsed.sig)) throw refused('its signature does not verify');
  return { jws, kid: header.kid };
}

/**
 * The receipt signer of a worker whose receipt key is given by reference. A key file is read when first
 * needed and again when it changes (checked at most once a second: `governor keys rotate receipt
 * --key-file` or a secrets manager replacing it); a signer is asked for every signature. Each kid that
 * signs is noted in the home (`keys init --force` then refuses to drop it).
 */
export function referencedReceiptSigner(home: string, ref: KeyRef): () => Promise<ReceiptSigning> {
  if ('signer' in ref) {
    const client = new SignerClient(ref.signer);
    const used = new Set<string>();
    const remote: ReceiptSigning = {
      remote: async (typ, payload) => {
        const { jws, kid } = await signVia(client, home, 'receipt', typ, payload);
        if (!used.has(kid)) {
          markKeyUsed(home, 'receipt', kid);
          used.add(kid);
        }
        return jws;
      },
    };
    return () => Promise.resolve(remote);
  }
  let loaded: Promise<ReceiptSigning> | undefined;
  let stamp = '';
  let checkedAt = 0;
  const load = async (): Promise<ReceiptSigning> => {
    const { kid, key } = await readKeyFile(ref.file, 'receipt');
    const published = publishedKey(home, 'receipt', kid);
    if (typeof published === 'string') {
      throw new GovernorError(ErrorCode.KeysMissing, `${describeKeyRef('receipt', ref)}: ${published}`, 'receipt');
    }
    markKeyUsed(home, 'receipt', kid);
    return { kid, key };
  };
  return () => {
    const now = Date.now();
    if (loaded && now - checkedAt >= 1000) {
      checkedAt = now;
      if (fileStamp(ref.file) !== stamp) loaded = undefined;
    }
    if (!loaded) {
      stamp = fileStamp(ref.file);
      checkedAt = now;
      loaded = load().catch((err: unknown) => {
        loaded = undefined; // read again next time (the file may be fixed meanwhile); never a fall back
        throw err;
      });
    }
    return loaded;
  };
}

/** Signs `payload` (a JWT's claims, as JSON) as a compact JWS of type `typ` with a key given by reference. */
export async function signJwtByRef(
  home: string,
  name: ReferencedKeyName,
  ref: KeyRef,
  typ: string,
  claims: Record<string, unknown>,
): Promise<string> {
  const payload = JSON.stringify(claims);
  if ('signer' in ref) {
    const client = new SignerClient(ref.signer);
    try {
      return (await signVia(client, home, name, typ, payload)).jws;
    } finally {
      client.close();
    }
  }
  const { kid, key } = await readKeyFile(ref.file, name);
  const published = publishedKey(home, name, kid);
  if (typeof published === 'string') {
    throw new GovernorError(ErrorCode.KeysMissing, `${describeKeyRef(name, ref)}: ${published}`, name);
  }
  return compactEd25519({ alg: KEY_ALG, kid, typ }, payload, key);
}

function fileStamp(file: string): string {
  try {
    const s = fs.statSync(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}
