import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { compactEd25519, RECEIPT_TYP } from '../core/receipts';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { REVOCATION_TYP } from '../contracts/revocation';
import { SLOT_SEAL_TYP } from '../contracts/coordination';
import { readKeyFile, type ReferencedKeyName } from './key-ref';
import { KEY_ALG } from './keys';
import { SIGNER_MAX_LINE } from './signer-client';

/**
 * `governor signer`: a process that holds the receipt (and optionally the approver) private key and signs
 * for the workers of the same host over a Unix socket (protocol: identity/signer-client.ts). The socket
 * is mode 0600 (only the signer's own user connects); the signer refuses to start on a socket path it
 * does not own, that is not a socket, that another signer serves, or in a folder others may write to
 * (without the sticky bit). It signs only what a worker or an approver needs: for the receipt key,
 * receipts and revocation entries (a SHA-256 hex digest) and slot-request seals; for the approver key,
 * approval votes. Key files are read again when they change (rotation). Nothing it logs or answers
 * carries a key, a payload or a signature.
 */

/** Options of `startSigner`. */
export interface SignerOptions {
  socket: string;
  /** Key files by name (mode 0600 or stricter; see key-ref.ts `readKeyFile`). */
  keys: Partial<Record<ReferencedKeyName, string>>;
  /** One line per event (start, refusals): never a key, payload or signature. */
  log?: (line: string) => void;
}

export interface RunningSigner {
  socket: string;
  /** kid of each key held. */
  kids: Partial<Record<ReferencedKeyName, string>>;
  close(): Promise<void>;
}

const HEX64 = /^[0-9a-f]{64}$/;

function isJsonObject(payload: string, check: (o: Record<string, unknown>) => boolean): boolean {
  try {
    const v = JSON.parse(payload) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) && check(v as Record<string, unknown>);
  } catch {
    return false;
  }
}

/** What each key signs: JWS type → a check of the payload. */
const SIGNS: Record<ReferencedKeyName, Record<string, (payload: string) => boolean>> = {
  receipt: {
    [RECEIPT_TYP]: (p) => HEX64.test(p),
    [REVOCATION_TYP]: (p) => HEX64.test(p),
    [SLOT_SEAL_TYP]: (p) =>
      isJsonObject(
        p,
        (o) => Object.keys(o).length === 2 && typeof o.domain === 'string' && HEX64.test(String(o.requestDigest ?? '')),
      ),
  },
  approver: {
    'approval+jwt': (p) =>
      isJsonObject(
        p,
        (o) =>
          typeof o.chainId === 'string' &&
          typeof o.stepId === 'string' &&
          typeof o.stepDigest === 'string' &&
          (o.decision === 'approve' || o.decision === 'deny') &&
          Array.isArray(o.roles),
      ),
  },
};

/** Refuses a socket path that is not safe to listen on; removes a stale socket of ours. */
async function prepareSocketPath(socket: string): Promise<void> {
  const uid = process.getuid?.() ?? 0;
  const refuse = (why: string) =>
    new GovernorError(ErrorCode.InvalidInput, `signer socket ${socket}: ${why}`, '--socket');
  const dir = path.dirname(socket);
  let d: fs.Stats;
  try {
    d = fs.statSync(dir);
  } catch {
    throw refuse(`its folder ${dir} does not exist`);
  }
  if (!d.isDirectory()) throw refuse(`${dir} is not a folder`);
  if (d.uid !== uid && d.uid !== 0) throw refuse(`its folder ${dir} belongs to uid ${d.uid}, not to us (${uid})`);
  if ((d.mode & 0o022) !== 0 && (d.mode & 0o1000) === 0) {
    throw refuse(
      `its folder ${dir} is writable by group or others without the sticky bit (another user could replace the socket)`,
    );
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socket);
  } catch {
    return; // free
  }
  if (!st.isSocket()) throw refuse('the path exists and is not a socket');
  if (st.uid !== uid) throw refuse(`the path belongs to uid ${st.uid}, not to us (${uid})`);
  const inUse = await new Promise<boolean>((resolve) => {
    const c = net.connect({ path: socket }, () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (inUse) throw refuse('another signer already listens on it');
  fs.unlinkSync(socket); // a stale socket of ours (a signer that did not stop cleanly)
}

/** Starts the signer; resolves once it listens. */
export async function startSigner(options: SignerOptions): Promise<RunningSigner> {
  const socketPath = path.resolve(options.socket);
  const log = options.log ?? (() => {});
  const names = Object.keys(options.keys) as ReferencedKeyName[];
  if (names.length === 0) throw new GovernorError(ErrorCode.InvalidInput, 'the signer needs at least one key', 'keys');
  // Each key: read now (a bad file refuses the start) and again when its file changes.
  const held = new Map<
    ReferencedKeyName,
    { file: string; stamp: string; checkedAt: number; kid: string; key: KeyObject }
  >();
  const stampOf = (file: string): string => {
    try {
      const s = fs.statSync(file);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return 'missing';
    }
  };
  for (const name of names) {
    const file = path.resolve(options.keys[name]!);
    const { kid, key } = await readKeyFile(file, name);
    held.set(name, { file, stamp: stampOf(file), checkedAt: Date.now(), kid, key });
  }
  const current = async (name: ReferencedKeyName) => {
    const k = held.get(name);
    if (!k) return undefined;
    const now = Date.now();
    if (now - k.checkedAt >= 1000) {
      k.checkedAt = now;
      const stamp = stampOf(k.file);
      if (stamp !== k.stamp) {
        // Rotated (or broken): a key file that no longer reads signs nothing (fail closed).
        const next = await readKeyFile(k.file, name);
        Object.assign(k, { stamp, kid: next.kid, key: next.key });
        log(`${name} key file changed: ${next.kid} signs from now on`);
      }
    }
    return k;
  };

  await prepareSocketPath(socketPath);
  const answer = async (line: string): Promise<Record<string, unknown>> => {
    let req: Record<string, unknown>;
    try {
      req = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return { error: 'request is not JSON' };
    }
    const id = typeof req.id === 'number' ? req.id : null;
    try {
      if (req.op === 'keys') {
        const keys: Record<string, { kid: string }> = {};
        for (const name of held.keys()) keys[name] = { kid: (await current(name))!.kid };
        return { id, keys };
      }
      if (req.op !== 'sign') return { id, error: 'unknown op' };
      const name = req.key as ReferencedKeyName;
      const k = typeof req.key === 'string' && Object.hasOwn(SIGNS, name) ? await current(name) : undefined;
      if (!k) return { id, error: 'no such key here' };
      const typ = req.typ;
      const check = typeof typ === 'string' && Object.hasOwn(SIGNS[name], typ) ? SIGNS[name][typ] : undefined;
      if (!check) return { id, error: `the ${name} key does not sign this type` };
      if (typeof req.payload !== 'string' || !check(req.payload)) {
        return { id, error: `not a ${String(typ)} payload` };
      }
      return { id, jws: compactEd25519({ alg: KEY_ALG, kid: k.kid, typ: typ as string }, req.payload, k.key) };
    } catch (err) {
      log(`refused a request: ${(err as Error).message}`);
      return { id, error: 'the key is unavailable' };
    }
  };

  const server = net.createServer((conn) => {
    let buffer = '';
    conn.on('error', () => conn.destroy());
    conn.on('data', (d) => {
      buffer += d.toString('utf8');
      if (buffer.length > SIGNER_MAX_LINE && !buffer.includes('\n')) {
        conn.destroy();
        return;
      }
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        void answer(line).then((a) => {
          if (!conn.destroyed) conn.write(`${JSON.stringify(a)}\n`);
        });
      }
    });
  });
  // The socket is created 0600 (umask), so no other user ever finds it connectable.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(umask);
  }
  fs.chmodSync(socketPath, 0o600);
  const kids = Object.fromEntries([...held].map(([n, k]) => [n, k.kid]));
  log(`signing with ${[...held].map(([n, k]) => `${n} ${k.kid}`).join(', ')} on ${socketPath} (mode 0600)`);
  return {
    socket: socketPath,
    kids,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        fs.rmSync(socketPath, { force: true });
      }),
  };
}
