import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  checkInclusion,
  checkTreeHeads,
  consistencyProofHex,
  sha256,
  signTreeHead,
  type SignedTreeHead,
} from '../../audit/transparency';
import {
  CompactRange,
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from '../../core/merkle';
import { initKeys, loadPrivateKeyObject, loadPublicJwks } from '../../identity';

/**
 * The transparency log's Merkle code (issue 20 item 3): RFC 6962 hashing, inclusion and consistency
 * proofs over 1,000 leaves (every leaf, and every earlier tree size), and targeted tampering: a removed
 * leaf, a reordered leaf, a forked (rewritten) tree head.
 */

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const N = 1000;
const data = Array.from({ length: N }, (_, i) => new TextEncoder().encode(`checkpoint of chain-${i}`));
const leaves = data.map((d) => leafHash(sha256, d));
const root = rootOf(sha256, leaves);

test('RFC 6962 hashing: leaf H(0x00||d), node H(0x01||l||r), the empty tree H("")', () => {
  const d = new TextEncoder().encode('x');
  expect(hex(leafHash(sha256, d))).toBe(hex(sha256(new Uint8Array([0, ...d]))));
  const [a, b] = [leaves[0]!, leaves[1]!];
  expect(hex(nodeHash(sha256, a, b))).toBe(hex(sha256(new Uint8Array([1, ...a, ...b]))));
  expect(hex(rootOf(sha256, []))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  // Three leaves split 2 + 1: the root is node(node(l0, l1), l2).
  expect(hex(rootOf(sha256, leaves.slice(0, 3)))).toBe(hex(nodeHash(sha256, nodeHash(sha256, a, b), leaves[2]!)));
});

test('the compact range a log workflow keeps gives the same root as the full tree at every size', () => {
  const range = new CompactRange(sha256);
  for (let i = 0; i < N; i++) {
    range.append(leaves[i]!);
    if (i < 70 || i % 97 === 0 || i === N - 1)
      expect(hex(range.root())).toBe(hex(rootOf(sha256, leaves.slice(0, i + 1))));
  }
});

test('every one of 1,000 leaves has a valid inclusion proof; a wrong index, leaf or root fails', () => {
  for (let i = 0; i < N; i++) {
    const proof = inclusionProof(sha256, leaves, i);
    expect(verifyInclusion(sha256, leaves[i]!, i, N, proof, root)).toBe(true);
  }
  const proof = inclusionProof(sha256, leaves, 500);
  expect(verifyInclusion(sha256, leaves[500]!, 501, N, proof, root)).toBe(false);
  expect(verifyInclusion(sha256, leaves[501]!, 500, N, proof, root)).toBe(false);
  expect(verifyInclusion(sha256, leaves[500]!, 500, N, proof.slice(1), root)).toBe(false);
});

test('the tree of 1,000 leaves is consistent with each of its 999 earlier sizes; proofs do not transfer', () => {
  for (let m = 1; m <= N; m++) {
    const old = rootOf(sha256, leaves, 0, m);
    const proof = consistencyProof(sha256, leaves, m);
    expect(verifyConsistency(sha256, m, N, old, root, proof)).toBe(true);
    if (m % 50 === 0 && m < N) expect(verifyConsistency(sha256, m + 1, N, old, root, proof)).toBe(false);
  }
});

test('tampering is detected: a removed leaf, a reordered leaf', () => {
  const older = 600;
  const oldRoot = rootOf(sha256, leaves.slice(0, older));
  // A leaf (a chain's checkpoint) removed after the head of 600 was published.
  const removed = [...leaves.slice(0, 300), ...leaves.slice(301)];
  const removedRoot = rootOf(sha256, removed);
  expect(hex(removedRoot)).not.toBe(hex(root));
  expect(
    verifyConsistency(sha256, older, removed.length, oldRoot, removedRoot, consistencyProof(sha256, removed, older)),
  ).toBe(false);
  // The removed leaf's old inclusion proof fails against the rewritten tree; so does its neighbour's.
  expect(
    verifyInclusion(sha256, leaves[300]!, 300, removed.length, inclusionProof(sha256, leaves, 300), removedRoot),
  ).toBe(false);
  expect(verifyInclusion(sha256, leaves[301]!, 301, N, inclusionProof(sha256, leaves, 301), removedRoot)).toBe(false);
  // Two leaves swapped.
  const reordered = [...leaves];
  [reordered[10], reordered[11]] = [reordered[11]!, reordered[10]!];
  const reorderedRoot = rootOf(sha256, reordered);
  expect(verifyConsistency(sha256, older, N, oldRoot, reorderedRoot, consistencyProof(sha256, reordered, older))).toBe(
    false,
  );
  expect(verifyInclusion(sha256, leaves[10]!, 10, N, inclusionProof(sha256, leaves, 10), reorderedRoot)).toBe(false);
});

test('signed tree heads: consistent heads pass, a forked head, a shrunk log or a forged signature fail', async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-log-'));
  try {
    await initKeys(home, { names: ['receipt'] });
    const signer = await loadPrivateKeyObject(home, 'receipt');
    const jwks = loadPublicJwks(home, 'receipt');
    const head = async (ls: Uint8Array[], timestamp: number): Promise<SignedTreeHead> =>
      signTreeHead(signer, { treeSize: ls.length, rootHash: hex(rootOf(sha256, ls)), timestamp });
    const h400 = await head(leaves.slice(0, 400), 1);
    const h1000 = await head(leaves, 2);
    expect(await checkTreeHeads(h400, h1000, consistencyProofHex(leaves, 400), jwks)).toBeUndefined();
    // A fork: the log rewritten below 400 (leaf 7 replaced) and a new head signed over it.
    const forked = [...leaves];
    forked[7] = leafHash(sha256, new TextEncoder().encode('a different checkpoint'));
    const fork1000 = await head(forked, 3);
    expect(await checkTreeHeads(h400, fork1000, consistencyProofHex(forked, 400), jwks)).toMatch(/forked/);
    expect(await checkTreeHeads(h1000, h400, [], jwks)).toMatch(/shrank/);
    const forged = { ...h1000, treeSize: 1001 };
    expect(await checkTreeHeads(h400, forged, consistencyProofHex(leaves, 400), jwks)).toMatch(/not signed/);
    // Inclusion of a chain's checkpoint against a signed head.
    const proof = inclusionProof(sha256, leaves, 123).map(hex);
    expect(checkInclusion(hex(leaves[123]!), 123, h1000, proof)).toBe(true);
    expect(checkInclusion(hex(leaves[123]!), 123, fork1000, proof)).toBe(false);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});
