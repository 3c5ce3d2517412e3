/*
 * An append-only Merkle log with RFC 6962 / RFC 9162 hashing (DESIGN §13, issue 20 item 3):
 * leaf hash = H(0x00 || d), node hash = H(0x01 || left || right), the tree of n leaves split at the
 * largest power of two below n. Inclusion proofs (audit path) and consistency proofs between two tree
 * sizes, and their verification, exactly as RFC 9162 §2.1.3 and §2.1.4 specify them.
 * Sandbox-safe: no Node built-ins; the hash function is passed in (SHA-256), so the log workflow can
 * run it with a pure implementation and verifiers with node:crypto.
 */

/** SHA-256 (or another hash) of a byte string. */
export type Hash = (data: Uint8Array) => Uint8Array;

const LEAF = 0x00;
const NODE = 0x01;

function concat(prefix: number, ...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  out[0] = prefix;
  let at = 1;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** H(0x00 || data): a leaf's hash. */
export function leafHash(h: Hash, data: Uint8Array): Uint8Array {
  return h(concat(LEAF, data));
}

/** H(0x01 || left || right): an interior node's hash. */
export function nodeHash(h: Hash, left: Uint8Array, right: Uint8Array): Uint8Array {
  return h(concat(NODE, left, right));
}

/** The largest power of two strictly smaller than n (n > 1). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Subtree roots already computed, by leaf list and `lo:hi` (a proof needs many; leaves never change in place). */
const subtreeRoots = new WeakMap<readonly Uint8Array[], Map<string, Uint8Array>>();

/** MTH of the leaf hashes `leaves[lo, hi)` (RFC 9162 §2.1.1); the empty tree's root is H(""). */
export function rootOf(h: Hash, leaves: readonly Uint8Array[], lo = 0, hi = leaves.length): Uint8Array {
  const n = hi - lo;
  if (n === 0) return h(new Uint8Array(0));
  if (n === 1) return leaves[lo]!;
  let memo = subtreeRoots.get(leaves);
  if (!memo) subtreeRoots.set(leaves, (memo = new Map()));
  const key = `${lo}:${hi}`;
  const known = memo.get(key);
  if (known) return known;
  const k = split(n);
  const r = nodeHash(h, rootOf(h, leaves, lo, lo + k), rootOf(h, leaves, lo + k, hi));
  memo.set(key, r);
  return r;
}

/** PATH(m, D[n]) (RFC 9162 §2.1.3.1): the audit path of leaf `index` in the tree of `leaves` (leaf hashes). */
export function inclusionProof(h: Hash, leaves: readonly Uint8Array[], index: number): Uint8Array[] {
  if (!Number.isInteger(index) || index < 0 || index >= leaves.length) throw new RangeError('leaf index out of range');
  const path = (m: number, lo: number, hi: number): Uint8Array[] => {
    const n = hi - lo;
    if (n === 1) return [];
    const k = split(n);
    return m < k
      ? [...path(m, lo, lo + k), rootOf(h, leaves, lo + k, hi)]
      : [...path(m - k, lo + k, hi), rootOf(h, leaves, lo, lo + k)];
  };
  return path(index, 0, leaves.length);
}

/** PROOF(m, D[n]) (RFC 9162 §2.1.4.1): proves the tree of the first `m` leaves is a prefix of the tree of all of them. */
export function consistencyProof(h: Hash, leaves: readonly Uint8Array[], m: number): Uint8Array[] {
  const n = leaves.length;
  if (!Number.isInteger(m) || m < 1 || m > n) throw new RangeError('old tree size out of range');
  const subproof = (m: number, lo: number, hi: number, complete: boolean): Uint8Array[] => {
    const size = hi - lo;
    if (m === size) return complete ? [] : [rootOf(h, leaves, lo, hi)];
    const k = split(size);
    return m <= k
      ? [...subproof(m, lo, lo + k, complete), rootOf(h, leaves, lo + k, hi)]
      : [...subproof(m - k, lo + k, hi, false), rootOf(h, leaves, lo, lo + k)];
  };
  return subproof(m, 0, n, true);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** RFC 9162 §2.1.3.2: whether `proof` shows leaf hash `leaf` at `index` in the tree of `treeSize` leaves with `root`. */
export function verifyInclusion(
  h: Hash,
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isInteger(index) || !Number.isInteger(treeSize) || index < 0 || index >= treeSize) return false;
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(h, p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(h, r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

/** RFC 9162 §2.1.4.2: whether `proof` shows the tree (`newSize`, `newRoot`) extends the tree (`oldSize`, `oldRoot`). */
export function verifyConsistency(
  h: Hash,
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isInteger(oldSize) || !Number.isInteger(newSize) || oldSize < 1 || oldSize > newSize) return false;
  if (oldSize === newSize) return proof.length === 0 && equal(oldRoot, newRoot);
  let path = [...proof];
  // If the old size is a power of two, the old root is the first node of the path.
  if ((oldSize & (oldSize - 1)) === 0) path = [oldRoot, ...path];
  if (path.length === 0) return false;
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(h, c, fr);
      sr = nodeHash(h, c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(h, sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return equal(fr, oldRoot) && equal(sr, newRoot) && sn === 0;
}

/**
 * An append-only log's state as the log keeps it compactly: the roots of its perfect subtrees, largest
 * first (at most log2(n) hashes), so appending is O(log n) and the root needs no leaf list.
 */
export class CompactRange {
  private readonly h: Hash;
  /** [size, hash] of each perfect subtree, left to right (sizes strictly decreasing powers of two). */
  private readonly peaks: { size: number; hash: Uint8Array }[] = [];
  size = 0;

  constructor(h: Hash) {
    this.h = h;
  }

  /** Appends one leaf hash. */
  append(leaf: Uint8Array): void {
    let node = { size: 1, hash: leaf };
    while (this.peaks.length > 0 && this.peaks[this.peaks.length - 1]!.size === node.size) {
      const left = this.peaks.pop()!;
      node = { size: left.size * 2, hash: nodeHash(this.h, left.hash, node.hash) };
    }
    this.peaks.push(node);
    this.size += 1;
  }

  /** The tree's root (RFC 9162 MTH): the peaks folded right to left. */
  root(): Uint8Array {
    if (this.peaks.length === 0) return this.h(new Uint8Array(0));
    let r = this.peaks[this.peaks.length - 1]!.hash;
    for (let i = this.peaks.length - 2; i >= 0; i--) r = nodeHash(this.h, this.peaks[i]!.hash, r);
    return r;
  }
}
