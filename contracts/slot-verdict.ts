import { defineSignal } from '@temporalio/workflow';
import { z } from 'zod';
import type { SlotRelease, SlotWithdraw } from './coordination';

/**
 * What a chain exchanges with a coordinator: the verdict it receives and the signals it sends. Apart
 * from `coordination.ts` (which re-exports all of it) because a chain loads this module when it
 * starts, and every module a workflow loads is evaluated again for each execution: the coordinator's
 * own schemas are not built for a chain.
 */

/** Where the coordinator's receipt for a verdict is: link it into the chain's receipt chain. */
export const CoordinationReceiptRef = z.strictObject({
  coordinatorId: z.string(),
  seq: z.int().min(1),
  hash: z.string(),
  /** SHA-256 of the receipt's payload. */
  digest: z.string(),
  /**
   * Present on verdicts of validating coordinators: what the chain needs to check, before it acts on
   * the verdict, that the coordinator signed it (the receipt's link, signature and event name).
   */
  prevHash: z.string().optional(),
  signature: z.string().optional(),
  event: z.string().optional(),
});
export type CoordinationReceiptRef = z.infer<typeof CoordinationReceiptRef>;

/**
 * Payload of `slotVerdict`, sent to the chain (workflow id = chainId). `queued` is informational (the
 * place in the order, a requeue, a pending tie-break); `granted` and `rejected` are final. A `rejected`
 * after a `granted` means the slot was reclaimed (hold timeout).
 */
export const SlotVerdict = z.strictObject({
  requestId: z.string(),
  chainId: z.string(),
  stepId: z.string(),
  domain: z.string(),
  status: z.enum(['queued', 'granted', 'rejected']),
  granted: z.boolean(),
  reason: z.string(),
  /** Place in the domain's total order (assigned when the batch was ordered). */
  order: z.int().optional(),
  /** 1-based place in the queue when the verdict was sent (queued). */
  position: z.int().optional(),
  batch: z.int().optional(),
  /** The request this one lost (or tied) against. */
  conflictWith: z.string().optional(),
  tieId: z.string().optional(),
  /** Current version of the request's resource. */
  version: z.int(),
  receipt: CoordinationReceiptRef.optional(),
});
export type SlotVerdict = z.infer<typeof SlotVerdict>;

/** The holder is done with its slot. */
export const releaseSlotSignal = defineSignal<[SlotRelease]>('releaseSlot');
/** A queued request leaves the queue (chain revoked or denied). */
export const withdrawSlotSignal = defineSignal<[SlotWithdraw]>('withdrawSlot');
/** Sent by the coordinator to the chain (workflow id = chainId). */
export const slotVerdictSignal = defineSignal<[SlotVerdict]>('slotVerdict');
