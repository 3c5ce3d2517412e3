import { z } from 'zod';

/** Kinds of receipts. Recorded in history and in proofs: extend, never rename. */
export const ReceiptKind = z.enum([
  'decision',
  'execution',
  'compensation-decision',
  'compensation-execution',
  'approval',
  'checkpoint',
]);
export type ReceiptKind = z.infer<typeof ReceiptKind>;

/** The hash-chained, signed record of one decision, outcome or checkpoint (DESIGN §2). */
export const Receipt = z.strictObject({
  seq: z.int().min(1),
  chainId: z.string(),
  stepId: z.string().optional(),
  kind: ReceiptKind,
  /** SHA-256 (hex) of the canonical JSON of what the receipt records (a decision, an outcome…). */
  digest: z.string(),
  /** Hash of the previous receipt (`GENESIS_HASH` for the first). */
  prevHash: z.string(),
  /** SHA-256 (hex) of the canonical JSON of {seq, chainId, stepId, kind, digest, prevHash}. */
  hash: z.string(),
  /** Compact JWS (EdDSA, governor receipt key) whose payload is `hash`. */
  signature: z.string(),
});
export type Receipt = z.infer<typeof Receipt>;

/** The head a chain carries forward: the last receipt's sequence number and hash. */
export const ReceiptHead = z.strictObject({ seq: z.int().min(0), hash: z.string() });
export type ReceiptHead = z.infer<typeof ReceiptHead>;

/** Hash the first receipt of every chain links to. */
export const GENESIS_HASH = '0'.repeat(64);
