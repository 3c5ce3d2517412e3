import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { GENESIS_HASH } from '../contracts/receipt';
import {
  REVOCATION_TYP,
  RevocationBody,
  SignedRevocation,
  type RevokeWorkloadInput,
  type SignRevocationInput,
} from '../contracts/revocation';
import { canonicalJson, sha256Hex } from '../core/canonical';
import { signCompact, type ReceiptSigning } from '../core/receipts';

/*
 * The signed, append-only revocation log (issue 14 item 2). Every entry is a hash-chained record
 * (`prevHash` → previous entry, `GENESIS_HASH` first) signed with the governor's receipt key (EdDSA
 * JWS over the entry's hash, `typ: governor-revocation+jws`). Nothing unsigned is ever accepted: an
 * entry that does not verify with the trusted receipt keys, or names another registry, is dropped.
 *
 * Copies: the registry workflow (its memo, its continue-as-new input), every earlier run of the
 * registry's workflow id (their memos, for the namespace's retention), and a JSON-lines file under
 * GOVERNOR_HOME that each worker appends every entry it signs or sees to
 * (`<home>/revocations/<registry>.jsonl`). A new registry run rebuilds its list from all of them.
 */

/** Signs the next entry of a log. */
export async function signRevocationEntry(
  signer: ReceiptSigning,
  input: SignRevocationInput,
  at: Date,
): Promise<SignedRevocation> {
  const body = RevocationBody.parse({ v: 1, ...input, at: at.toISOString() });
  const hash = revocationHash(body);
  const signature = await signCompact(signer, REVOCATION_TYP, hash);
  return { ...body, hash, signature };
}

/** SHA-256 (hex) of the canonical JSON of an entry's body (`by` omitted when absent). */
export function revocationHash(entry: RevocationBody): string {
  const { v, registry, seq, workload, reason, by, at, prevHash } = entry;
  return sha256Hex(
    canonicalJson({ v, registry, seq, workload, reason, ...(by !== undefined ? { by } : {}), at, prevHash }),
  );
}

/**
 * Checks revocation entries against trusted receipt keys. Successful checks are remembered (by the
 * entry's canonical JSON), so a list read every second costs one signature check per new entry.
 */
export class RevocationVerifier {
  private keySet?: ReturnType<typeof createLocalJWKSet>;
  private loadedAt = 0;
  private readonly ok = new Set<string>();

  /** `jwks`: the trusted receipt keys, or a loader called lazily (and again after a failure). */
  constructor(private readonly jwks: JSONWebKeySet | (() => JSONWebKeySet)) {}

  /** The entry as a `SignedRevocation` of `registry`, or a generic reason why it is not one. Never throws for a bad entry. */
  async check(
    raw: unknown,
    registry: string,
  ): Promise<{ ok: true; entry: SignedRevocation } | { ok: false; problem: string }> {
    const parsed = SignedRevocation.safeParse(raw);
    if (!parsed.success) return { ok: false, problem: 'is not a revocation entry' };
    const entry = parsed.data;
    if (entry.registry !== registry) return { ok: false, problem: 'belongs to another registry' };
    if (revocationHash(entry) !== entry.hash) return { ok: false, problem: 'does not hash to its hash' };
    // Before any verdict: keys that cannot be loaded are not a verdict on the entry (this throws; callers fail closed).
    const keys = this.keys();
    const memo = canonicalJson(entry);
    if (this.ok.has(memo)) return { ok: true, entry };
    const segments = entry.signature.split('.');
    if (
      segments.length !== 3 ||
      segments.some((s) => s.length === 0 || Buffer.from(s, 'base64url').toString('base64url') !== s)
    ) {
      return { ok: false, problem: 'is not signed (no canonical compact JWS)' };
    }
    try {
      const { payload, protectedHeader } = await compactVerify(entry.signature, keys, { algorithms: ['EdDSA'] });
      if (protectedHeader.typ !== REVOCATION_TYP)
        return { ok: false, problem: 'is signed as something else than a revocation' };
      if (new TextDecoder().decode(payload) !== entry.hash)
        return { ok: false, problem: 'has a signature over another hash' };
    } catch {
      // Deliberately generic: which part failed helps only a forger.
      return { ok: false, problem: 'is not signed by the governor receipt key' };
    }
    if (this.ok.size >= 100_000) this.ok.clear();
    this.ok.add(memo);
    return { ok: true, entry };
  }

  /** The trusted key set, reloaded (with the remembered checks forgotten) once a minute: keys may rotate. */
  private keys(): ReturnType<typeof createLocalJWKSet> {
    if (!this.keySet || performance.now() - this.loadedAt > 60_000) {
      this.keySet = createLocalJWKSet(typeof this.jwks === 'function' ? this.jwks() : this.jwks);
      this.loadedAt = performance.now();
      this.ok.clear();
    }
    return this.keySet;
  }
}

/**
 * Checks that `entries` (any order) form one complete log of `registry`: seq 1..n, each linking to
 * the one before, each verified. Returns the log in order, or the first problem.
 */
export async function verifyRevocationLog(
  entries: readonly unknown[],
  registry: string,
  verifier: RevocationVerifier,
): Promise<{ ok: true; log: SignedRevocation[] } | { ok: false; problem: string }> {
  const log: SignedRevocation[] = [];
  for (const raw of entries) {
    const r = await verifier.check(raw, registry);
    if (!r.ok) return { ok: false, problem: `an entry ${r.problem}` };
    log.push(r.entry);
  }
  log.sort((a, b) => a.seq - b.seq);
  let prev = GENESIS_HASH;
  const workloads = new Set<string>();
  for (const [i, e] of log.entries()) {
    if (e.seq !== i + 1) return { ok: false, problem: `entry ${i + 1} is missing` };
    if (e.prevHash !== prev) return { ok: false, problem: `entry ${e.seq} does not link to entry ${e.seq - 1}` };
    if (workloads.has(e.workload)) return { ok: false, problem: `entry ${e.seq} revokes a workload twice` };
    workloads.add(e.workload);
    prev = e.hash;
  }
  return { ok: true, log };
}

/** The head of a log: its length and the hash of its last entry (`GENESIS_HASH` when empty). */
export function logHead(log: readonly SignedRevocation[]): { seq: number; head: string } {
  return { seq: log.length, head: log.at(-1)?.hash ?? GENESIS_HASH };
}

/**
 * From verified entries of one registry (any sources, any branches), the longest hash chain from
 * genesis (ties: the smaller head hash) and the revocations that chain lacks (by workload, first
 * signed first), to be signed anew at its end. Never loses a workload any entry revokes.
 */
export function mergeRevocations(entries: readonly SignedRevocation[]): {
  chain: SignedRevocation[];
  missing: RevokeWorkloadInput[];
} {
  const byHash = new Map<string, SignedRevocation>();
  for (const e of entries) byHash.set(e.hash, e);
  const children = new Map<string, SignedRevocation[]>();
  for (const e of byHash.values()) {
    const list = children.get(e.prevHash) ?? [];
    list.push(e);
    children.set(e.prevHash, list);
  }
  // Longest path from genesis (a depth-first walk with one path and one workload set, O(entries));
  // an entry's seq must be its depth and a branch never revokes a workload twice.
  let tail: SignedRevocation | undefined;
  const path: SignedRevocation[] = [];
  const onPath = new Set<string>();
  const stack: { next: SignedRevocation[]; i: number }[] = [{ next: children.get(GENESIS_HASH) ?? [], i: 0 }];
  while (stack.length > 0) {
    const top = stack.at(-1)!;
    const child = top.next[top.i++];
    if (!child) {
      stack.pop();
      const left = path.pop();
      if (left) onPath.delete(left.workload);
      continue;
    }
    if (child.seq !== path.length + 1 || onPath.has(child.workload)) continue;
    path.push(child);
    onPath.add(child.workload);
    if (!tail || path.length > tail.seq || (path.length === tail.seq && child.hash < tail.hash)) tail = child;
    stack.push({ next: children.get(child.hash) ?? [], i: 0 });
  }
  const best: SignedRevocation[] = [];
  for (let e = tail; e; e = byHash.get(e.prevHash)) best.push(e);
  best.reverse();
  const revoked = new Set(best.map((e) => e.workload));
  const missing: RevokeWorkloadInput[] = [];
  for (const e of [...byHash.values()].sort((a, b) => a.at.localeCompare(b.at) || a.hash.localeCompare(b.hash))) {
    if (revoked.has(e.workload)) continue;
    revoked.add(e.workload);
    missing.push({ workload: e.workload, reason: e.reason, ...(e.by !== undefined ? { by: e.by } : {}) });
  }
  return { chain: best, missing };
}

/**
 * The durable local copy of a registry's log: `<home>/revocations/<registry>.jsonl`, one signed entry
 * per line, appended (never rewritten) by the worker that signs or sees an entry. Lines that are not
 * entries are ignored when read; entries are verified by whoever reads them.
 */
export class RevocationLogFile {
  readonly file: string;
  private readonly written = new Set<string>();
  private loaded = false;

  constructor(home: string, registry: string) {
    // The registry id holds the task queue: keep the file name to a safe alphabet, unique by a hash.
    const safe = registry.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100);
    const tag = createHash('sha256').update(registry).digest('hex').slice(0, 12);
    this.file = path.join(home, 'revocations', `${safe}-${tag}.jsonl`);
  }

  /** Every line of the file that parses as JSON (unverified). A missing file is an empty log. */
  read(): unknown[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: unknown[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // a torn or foreign line: not an entry
      }
    }
    if (!this.loaded) {
      this.loaded = true;
      for (const e of out)
        if (typeof (e as { hash?: unknown })?.hash === 'string') this.written.add((e as { hash: string }).hash);
    }
    return out;
  }

  /** Appends the entries this file does not hold yet (by hash); fsyncs. */
  append(entries: readonly SignedRevocation[]): void {
    if (!this.loaded) this.read();
    const fresh = entries.filter((e) => !this.written.has(e.hash));
    if (fresh.length === 0) return;
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const fd = fs.openSync(this.file, 'a+', 0o600);
    try {
      // After a torn last line (a crash mid-write), start on a new line so no entry is glued to it.
      const size = fs.fstatSync(fd).size;
      const last = Buffer.alloc(1);
      const torn = size > 0 && fs.readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
      fs.writeSync(fd, (torn ? '\n' : '') + fresh.map((e) => `${JSON.stringify(e)}\n`).join(''));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fresh.forEach((e) => this.written.add(e.hash));
  }
}
