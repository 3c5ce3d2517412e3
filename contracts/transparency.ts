import { defineQuery, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';

/*
 * The transparency log's messages and shapes (DESIGN §13, issue 20 item 3). Safe in the workflow sandbox.
 * Names here are recorded in history: never rename them.
 *
 * A leaf is a closed chain's final signed checkpoint: `{ v, chainId, runId, seq, hash, checkpoint }`
 * (the final run's id, the checkpoint receipt's sequence number and hash, its compact JWS). The log
 * hashes the canonical JSON of a leaf as RFC 6962 does (`H(0x00 || leaf)`).
 */

/** Workflow type of the log. */
export const TRANSPARENCY_LOG_TYPE = 'transparencyLogWorkflow';
/** The deployment's log: one per namespace, at this workflow id. */
export const TRANSPARENCY_LOG_ID = 'governor-transparency-log';

/**
 * The log the archiver of a task queue anchors that queue's proofs in: `governor-transparency-log` for the
 * default queue (`governor`), `governor-transparency-log@<queue>` for any other (test deployments, fleets
 * that keep their evidence apart). The log runs on that queue, its leaf store under its workers' home.
 */
export function transparencyLogIdFor(taskQueue: string): string {
  return taskQueue === 'governor' ? TRANSPARENCY_LOG_ID : `${TRANSPARENCY_LOG_ID}@${taskQueue}`;
}
/** Failure type of an append the log refused (the chain did not close with that checkpoint). */
export const ANCHOR_REFUSED = 'GOVERNOR_ANCHOR_REFUSED';
/** Failure type when the activity-side leaf store no longer matches the log (altered, or another host's). */
export const LOG_DIVERGED = 'GOVERNOR_LOG_DIVERGED';

const HEX64 = /^[0-9a-f]{64}$/;

/** What a caller asks the log to anchor: a chain (workflow id) and optionally the run and checkpoint it expects. */
export const AppendCheckpointInput = z.strictObject({
  chainId: z.string().min(1).max(1000),
  /** The chain's final run; default: the workflow id's latest run. */
  runId: z.string().min(1).max(200).optional(),
  /** The checkpoint (compact JWS) the caller expects: the append is refused when the chain's differs. */
  checkpoint: z.string().min(1).max(4096).optional(),
  /**
   * The checkpoint receipt itself, from a history the caller has just read (the archiver): the log then reads only
   * the run's close event, and uses the receipt only if the hash the run's own result names is its hash. Strict
   * and small: every field is checked before anything reads it.
   */
  receipt: z
    .strictObject({
      seq: z.int().min(1),
      chainId: z.string().min(1).max(1000),
      stepId: z.string().max(200).optional(),
      kind: z.literal('checkpoint'),
      digest: z.string().regex(HEX64),
      prevHash: z.string().regex(HEX64),
      hash: z.string().regex(HEX64),
      signature: z
        .string()
        .min(1)
        .max(1024)
        .regex(/^[A-Za-z0-9_.-]+$/),
    })
    .optional(),
});
export type AppendCheckpointInput = z.infer<typeof AppendCheckpointInput>;

/** Most checkpoints one `appendCheckpoints` update carries (its result, ~1.7 KB an anchor, stays under 512 KB). */
export const MAX_APPEND_BATCH = 100;
/** Most bytes (JSON) of one batch's entries. */
export const MAX_APPEND_BATCH_BYTES = 256 * 1024;

/** A batch of appends in one update (the archiver's sweep): each entry is judged alone, as `appendCheckpoint`. */
export const AppendCheckpointsInput = z.strictObject({
  v: z.literal(1),
  entries: z
    .array(
      AppendCheckpointInput.refine((e) => e.receipt === undefined || e.checkpoint === undefined, {
        message: 'give a receipt or a checkpoint, not both',
      }),
    )
    .min(1)
    .max(MAX_APPEND_BATCH)
    // The log's append activity takes up to 256 queued entries: bounded bytes keep its input far under 2 MB.
    .refine((entries) => JSON.stringify(entries).length <= MAX_APPEND_BATCH_BYTES, {
      message: `at most ${MAX_APPEND_BATCH_BYTES / 1024} KiB of entries`,
    }),
});
export type AppendCheckpointsInput = z.infer<typeof AppendCheckpointsInput>;

/** A leaf of the log: a closed chain's final signed checkpoint. */
export const CheckpointLeaf = z.strictObject({
  v: z.literal(1),
  chainId: z.string().min(1),
  runId: z.string().min(1),
  seq: z.int().min(1),
  hash: z.string().regex(HEX64),
  checkpoint: z.string().min(1),
});
export type CheckpointLeaf = z.infer<typeof CheckpointLeaf>;

/** A signed tree head: size, root (hex), time (epoch ms) and the JWS over them (audit/transparency.ts). */
export const SignedTreeHeadSchema = z.strictObject({
  treeSize: z.int().min(0),
  rootHash: z.string().regex(HEX64),
  timestamp: z.int().min(0),
  signature: z.string().min(1),
});

/** What an anchored proof carries: the leaf, its index, its audit path (hex) and the signed head it leads to. */
export const ProofAnchorSchema = z.strictObject({
  /** The log's workflow id. */
  log: z.string().min(1),
  index: z.int().min(0),
  leaf: CheckpointLeaf,
  inclusion: z.array(z.string().regex(HEX64)).max(64),
  treeHead: SignedTreeHeadSchema,
});
export type ProofAnchor = z.infer<typeof ProofAnchorSchema>;

/** Input of the log workflow. `carried` only from its own continue-as-new (checked against the store). */
export const TransparencyLogInput = z
  .strictObject({
    v: z.literal(1),
    /** Most checkpoints one batch (one activity) appends. */
    batchMax: z.int().min(1).max(1000).optional(),
    /** A fresh head is signed this often even without appends (ms; default one hour). */
    headIntervalMs: z.int().min(1000).max(86_400_000).optional(),
    /** Appends per run before the log continues as new (default 1,000; Temporal's suggestion also counts). */
    continueAsNewAfter: z.int().min(1).max(100_000).optional(),
    carried: z.strictObject({ size: z.int().min(0), rootHash: z.string().regex(HEX64) }).optional(),
  })
  .optional();
export type TransparencyLogInput = NonNullable<z.infer<typeof TransparencyLogInput>>;

/** A read of the log: an inclusion proof, a consistency proof, leaves, or the heads published since a size. */
export const ReadLogInput = z.union([
  z.strictObject({
    inclusion: z.strictObject({
      /** A leaf index, or the chain whose (last) leaf to prove. */
      index: z.int().min(0).optional(),
      chainId: z.string().min(1).max(1000).optional(),
      /** The tree size to prove against (default: the current head). */
      treeSize: z.int().min(1).optional(),
    }),
  }),
  z.strictObject({ consistency: z.strictObject({ from: z.int().min(1), to: z.int().min(1).optional() }) }),
  z.strictObject({ leaves: z.strictObject({ from: z.int().min(0), count: z.int().min(1).max(5000) }) }),
]);
export type ReadLogInput = z.infer<typeof ReadLogInput>;

/** What a read returns (the fields of the kind asked for). */
export interface ReadLogResult {
  treeSize: number;
  rootHash: string;
  inclusion?: { index: number; leaf: CheckpointLeaf; leafHash: string; proof: string[] };
  consistency?: { from: number; to: number; proof: string[] };
  leaves?: { index: number; leaf: CheckpointLeaf; leafHash: string }[];
}

/** A signed tree head (the shape; signing and checks in audit/transparency.ts). */
export type SignedTreeHeadShape = z.infer<typeof SignedTreeHeadSchema>;

/** What the `transparencyLogStatus` query returns. */
export interface TransparencyLogStatus {
  log: string;
  /** False while the run opens its store. */
  ready: boolean;
  treeSize: number;
  rootHash: string;
  /** The latest signed tree head (null before the first one). */
  head: SignedTreeHeadShape | null;
  /** Appends waiting for the next batch. */
  pending: number;
  /** Leaves appended by this run (the log continues as new after `continueAsNewAfter`). */
  appendedThisRun: number;
  /** Why the last batch failed, when it did (e.g. the leaf store diverged). */
  lastError?: string;
}

/** Appends a closed chain's checkpoint; returns its anchor (inclusion proof + signed head). */
export const appendCheckpointUpdate = defineUpdate<ProofAnchor, [AppendCheckpointInput]>('appendCheckpoint');
/** Signs and returns a fresh tree head now (on demand). */
/** Each entry's anchor, or why it was refused (`type`: ANCHOR_REFUSED, LOG_DIVERGED, or the log unavailable). */
export type AppendOutcome = { anchor: ProofAnchor } | { error: { message: string; type: string } };
/** Appends a batch: one update, one result per entry, in order (added after `appendCheckpoint`: no patch). */
export const appendCheckpointsUpdate = defineUpdate<AppendOutcome[], [AppendCheckpointsInput]>('appendCheckpoints');
export const publishTreeHeadUpdate = defineUpdate<SignedTreeHeadShape, []>('publishTreeHead');
/** Inclusion/consistency proofs and leaves, read from the leaf store (an activity) against the current tree. */
export const readTransparencyLogUpdate = defineUpdate<ReadLogResult, [ReadLogInput]>('readTransparencyLog');
/** The log's size, root and latest signed head (no history event). */
export const transparencyLogStatusQuery = defineQuery<TransparencyLogStatus>('transparencyLogStatus');
