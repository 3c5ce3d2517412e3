import { createHash } from 'node:crypto';
import { CompactSign, compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import type { ReceiptSigner } from '../core/receipts';
import { canonicalJson } from '../core/canonical';
import { consistencyProof, leafHash, verifyConsistency, verifyInclusion, type Hash } from '../core/merkle';
import { ProofAnchorSchema, type CheckpointLeaf } from '../contracts/transparency';
import { verifySealJws } from './verify/jws';

/*
 * Signed tree heads of the transparency log (DESIGN §13, issue 20 item 3) and their checks: a tree head
 * is a JWS (the receipt key) over `{ treeSize, rootHash, timestamp }`; a verifier holding two heads
 * checks that the later one extends the earlier (consistency proof), and a chain's proof includes its
 * checkpoint's inclusion proof against a head. Two valid heads of one log that no consistency proof
 * joins are a fork: the log was rewritten.
 */

/** `typ` of a signed tree head. */
export const TREE_HEAD_TYP = 'governor-tree-head+jws';

/** SHA-256 with node:crypto. */
export const sha256: Hash = (data) => new Uint8Array(createHash('sha256').update(data).digest());

/** What a tree head commits to (`rootHash` hex). */
export interface TreeHead {
  treeSize: number;
  rootHash: string;
  timestamp: number;
}

/** A tree head and its signature (compact JWS whose payload is the canonical head). */
export interface SignedTreeHead extends TreeHead {
  signature: string;
}

const encode = (head: TreeHead): string =>
  JSON.stringify({ rootHash: head.rootHash, timestamp: head.timestamp, treeSize: head.treeSize });

/** Signs a tree head with the governor's receipt key. */
export async function signTreeHead(signer: ReceiptSigner, head: TreeHead): Promise<SignedTreeHead> {
  const signature = await new CompactSign(new TextEncoder().encode(encode(head)))
    .setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: TREE_HEAD_TYP })
    .sign(signer.key);
  return { ...head, signature };
}

/** Whether `head` carries a valid signature, by a trusted key, over exactly its fields. */
export async function verifyTreeHead(head: SignedTreeHead, jwks: JSONWebKeySet): Promise<boolean> {
  try {
    const { payload, protectedHeader } = await compactVerify(head.signature, createLocalJWKSet(jwks), {
      algorithms: ['EdDSA'],
    });
    return protectedHeader.typ === TREE_HEAD_TYP && new TextDecoder().decode(payload) === encode(head);
  } catch {
    return false;
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

/** The consistency proof (hex) from the first `oldSize` leaves to all of `leaves`. */
export function consistencyProofHex(leaves: readonly Uint8Array[], oldSize: number): string[] {
  return consistencyProof(sha256, leaves, oldSize).map(hex);
}

/**
 * Checks two signed heads of one log: both signed by a trusted key, and the later one extends the earlier
 * (`proof` from the smaller to the larger). Returns why not, or undefined: a pair of heads that fails is a
 * fork (the log was rewritten after the earlier head was published).
 */
export async function checkTreeHeads(
  older: SignedTreeHead,
  newer: SignedTreeHead,
  proof: readonly string[],
  jwks: JSONWebKeySet,
): Promise<string | undefined> {
  if (!(await verifyTreeHead(older, jwks)) || !(await verifyTreeHead(newer, jwks)))
    return 'a tree head is not signed by a trusted key';
  if (newer.treeSize < older.treeSize) return 'the later tree head is smaller: the log shrank';
  const ok = verifyConsistency(
    sha256,
    older.treeSize,
    newer.treeSize,
    bytes(older.rootHash),
    bytes(newer.rootHash),
    proof.map(bytes),
  );
  return ok ? undefined : `tree heads ${older.treeSize} and ${newer.treeSize} are not consistent: the log forked`;
}

/** Whether leaf hash `leaf` (hex) is at `index` in the tree `head` names, by `proof` (hex). */
export function checkInclusion(leaf: string, index: number, head: TreeHead, proof: readonly string[]): boolean {
  return verifyInclusion(sha256, bytes(leaf), index, head.treeSize, proof.map(bytes), bytes(head.rootHash));
}

/** RFC 6962 leaf hash (hex) of a checkpoint leaf: `H(0x00 || canonical JSON of the leaf)`. */
export function checkpointLeafHash(leaf: CheckpointLeaf): string {
  return hex(leafHash(sha256, new TextEncoder().encode(canonicalJson(leaf))));
}

/**
 * Checks a proof's anchor (what `anchorCheckpoint` returned and the exporter embedded): its shape, the
 * tree head's signature, the checkpoint's signature over the leaf's hash, the leaf's inclusion in the
 * signed tree, and that the leaf is the expected chain's final checkpoint (`expected.hash`: the final
 * receipt hash the proof's histories end with). Returns the problems found (none: anchored).
 */
export async function checkAnchor(
  raw: unknown,
  jwks: JSONWebKeySet,
  expected: { chainId?: string; hash?: string; seq?: number },
): Promise<string[]> {
  const parsed = ProofAnchorSchema.safeParse(raw);
  if (!parsed.success) return ['the anchor is not a transparency log anchor (leaf, index, inclusion, treeHead)'];
  const anchor = parsed.data;
  const { leaf } = anchor;
  const problems: string[] = [];
  if (!(await verifyTreeHead(anchor.treeHead, jwks)))
    problems.push(`tree head ${anchor.treeHead.treeSize} is not signed by a trusted receipt key`);
  const sig = await verifySealJws(leaf.checkpoint, jwks, 'governor-receipt+jws');
  if (!sig.ok || sig.payload !== leaf.hash)
    problems.push("the anchored leaf's checkpoint is not a receipt signature over its hash");
  if (expected.chainId !== undefined && leaf.chainId !== expected.chainId)
    problems.push(`the anchored leaf is chain ${leaf.chainId}'s, not ${expected.chainId}'s`);
  if (expected.hash !== undefined && (leaf.hash !== expected.hash || (expected.seq ?? leaf.seq) !== leaf.seq))
    problems.push(
      `the anchored checkpoint (receipt ${leaf.seq} ${leaf.hash.slice(0, 12)}…) is not the chain's final receipt (${String(expected.seq)} ${expected.hash.slice(0, 12)}…): the chain was rewritten after anchoring`,
    );
  if (!checkInclusion(checkpointLeafHash(leaf), anchor.index, anchor.treeHead, anchor.inclusion))
    problems.push(
      `leaf ${anchor.index} is not in the tree of ${anchor.treeHead.treeSize} leaves the signed head names (inclusion proof fails)`,
    );
  return problems;
}
