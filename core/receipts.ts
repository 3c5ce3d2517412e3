import { KeyObject as NodeKeyObject, sign as nodeSign } from 'node:crypto';
import { CompactSign, type CryptoKey, type KeyObject } from 'jose';
import { canonicalJson, sha256Hex } from './canonical';
import { Activity } from './history';
import type { Receipt, ReceiptHead, ReceiptKind } from '../contracts/receipt';

/** JWS `typ` of a chain receipt's signature. */
export const RECEIPT_TYP = 'governor-receipt+jws';

/** A key that signs receipts (the governor's Ed25519 receipt key) and its key id. */
export interface ReceiptSigner {
  key: CryptoKey | KeyObject | Uint8Array;
  kid: string;
}

/**
 * A receipt key held elsewhere (identity/signer.ts: a signer process over a local socket): `sign`
 * returns the compact EdDSA JWS of `payload` with header `{alg, kid, typ}`, made and checked by the
 * caller's side (identity/key-ref.ts checks it against the published JWKS before it is used).
 */
export interface RemoteSigner {
  remote: (typ: string, payload: string) => Promise<string>;
}

/** What the worker signs receipts (and its other receipt-key statements) with: a key in hand, or a signer. */
export type ReceiptSigning = ReceiptSigner | RemoteSigner;

/** Signs `payload` as a compact EdDSA JWS of type `typ` with the receipt key, wherever it is held. */
export async function signCompact(signer: ReceiptSigning, typ: string, payload: string): Promise<string> {
  if ('remote' in signer) return signer.remote(typ, payload);
  const header = { alg: 'EdDSA', kid: signer.kid, typ };
  const ed25519 = ed25519PrivateKey(signer.key);
  return ed25519
    ? compactEd25519(header, payload, ed25519)
    : new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader(header).sign(signer.key);
}

/**
 * Builds the next receipt after `prev`: links it by hash and signs the hash (EdDSA JWS).
 * Deterministic in its inputs except the signature bytes, which Ed25519 also makes deterministic.
 */
export async function makeReceipt(
  signer: ReceiptSigning,
  args: { chainId: string; stepId?: string; kind: ReceiptKind; payload: unknown; prev: ReceiptHead },
): Promise<Receipt> {
  const digest = sha256Hex(canonicalJson(args.payload ?? null));
  const seq = args.prev.seq + 1;
  const body = receiptBody({
    seq,
    chainId: args.chainId,
    stepId: args.stepId,
    kind: args.kind,
    digest,
    prevHash: args.prev.hash,
  });
  const hash = sha256Hex(canonicalJson(body));
  const signature = await signCompact(signer, RECEIPT_TYP, hash);
  return { ...body, hash, signature };
}

/** Node key objects of the Ed25519 private keys receipts are signed with (null: another kind of key). */
const nodeKeys = new WeakMap<object, NodeKeyObject | null>();

function ed25519PrivateKey(key: ReceiptSigner['key']): NodeKeyObject | undefined {
  if (key instanceof Uint8Array) return undefined;
  let known = nodeKeys.get(key);
  if (known === undefined) {
    // Only a Node key object (identity/keys.ts loadPrivateKeyObject): converting a non-extractable
    // WebCrypto key is deprecated from Node 24 (DEP0204), so those sign through jose.
    const k = key instanceof NodeKeyObject ? key : undefined;
    known = k && k.type === 'private' && k.asymmetricKeyType === 'ed25519' ? k : null;
    nodeKeys.set(key, known);
  }
  return known ?? undefined;
}

/**
 * The compact JWS jose's `CompactSign` makes (same protected header serialization, same payload
 * encoding), signed synchronously: Ed25519 signatures are deterministic, so the bytes are the same with
 * one WebCrypto job (a thread-pool round trip and its promises) fewer per receipt.
 */
export function compactEd25519(header: Record<string, string>, payload: string, key: NodeKeyObject): string {
  const encoded = (text: string): string => Buffer.from(text).toString('base64url');
  const signingInput = `${encoded(JSON.stringify(header))}.${encoded(payload)}`;
  return `${signingInput}.${nodeSign(null, Buffer.from(signingInput), key).toString('base64url')}`;
}

/** The hashed part of a receipt (`stepId` omitted when absent, so the hash is well defined). */
export function receiptBody(r: Omit<Receipt, 'hash' | 'signature'>): Omit<Receipt, 'hash' | 'signature'> {
  const body: Omit<Receipt, 'hash' | 'signature'> = {
    seq: r.seq,
    chainId: r.chainId,
    kind: r.kind,
    digest: r.digest,
    prevHash: r.prevHash,
  };
  if (r.stepId !== undefined) body.stepId = r.stepId;
  return body;
}

/**
 * The receipt payload of a decision: the exact request, the decision, the shadow block when one was
 * evaluated, and the revocation list it saw (when the worker consulted one). Loosely typed: the
 * verifier rebuilds it from recorded, possibly hostile results.
 */
export function decisionReceiptPayload(result: {
  request?: unknown;
  decision: unknown;
  shadow?: unknown;
  revocations?: unknown;
}): Record<string, unknown> {
  return {
    request: result.request ?? null,
    decision: result.decision,
    ...(result.shadow ? { shadow: result.shadow } : {}),
    ...(result.revocations ? { revocations: result.revocations } : {}),
  };
}

/** The activities whose results carry a receipt of the chain. */
export type ReceiptSource =
  | typeof Activity.authorize
  | typeof Activity.verifyApproval
  | typeof Activity.recordReceipt
  | typeof Activity.execute
  | typeof Activity.governStep;

/**
 * The receipt kinds each source's result may hold (`coordination`: receipts of a coordinator's own chain).
 * A `governStep` result's decision and execution are read as an `authorize` and an `execute` result; what
 * it holds on its own is the chain's final checkpoint (LEAN_CHAIN_PATCH), only after its execution.
 */
export const RECEIPT_KINDS_BY_SOURCE: Record<ReceiptSource, readonly string[]> = {
  [Activity.authorize]: ['decision', 'compensation-decision'],
  [Activity.verifyApproval]: ['approval'],
  [Activity.recordReceipt]: ['decision', 'coordination', 'execution', 'compensation-execution', 'checkpoint'],
  [Activity.execute]: ['execution', 'compensation-execution'],
  [Activity.governStep]: ['checkpoint'],
};

/** The sources whose result may hold the receipt that seals a completed chain (its final checkpoint). */
export const FINAL_CHECKPOINT_SOURCES: readonly ReceiptSource[] = [Activity.recordReceipt, Activity.governStep];
