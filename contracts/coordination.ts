import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import { idempotencyKey } from '../core/step';
import { DURATION_PATTERN } from './duration';
import { ReceiptHead, type ReceiptKind } from './receipt';
import { SlotVerdict } from './slot-verdict';

// Defined apart so a chain, which only receives verdicts, does not build the coordinator's schemas.
export {
  CoordinationReceiptRef,
  SlotVerdict,
  releaseSlotSignal,
  slotVerdictSignal,
  withdrawSlotSignal,
} from './slot-verdict';

/**
 * Coordination (DESIGN §4 step 4, issue 6): one coordinator workflow per domain orders and arbitrates
 * the actions of different chains on a shared resource. Sandbox-safe: schemas, message definitions,
 * ids and pure helpers only. Message names are recorded in history: never rename.
 */

// ---- manifest section ---------------------------------------------------------------------------

const Identifier = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/, 'must be 1-128 characters: letters, digits, _ . : @ -');
const Duration = z.string().regex(DURATION_PATTERN, 'must be a duration such as 30s, 30m, 2h');
const Authority = z.int().min(-1_000_000).max(1_000_000);
const Priority = z.int().min(-1000).max(1000);

/** `Type::"id"` (exact), `Type::"prefix-*"` (`*` matches any characters) or `Type::*` (any id of the type). */
export const ResourcePattern = z
  .string()
  .regex(
    /^[A-Z][A-Za-z0-9_]*(::[A-Z][A-Za-z0-9_]*)*::(\*|"[^"]{0,256}")$/,
    'must be a resource pattern such as Environment::"prod" or Environment::*',
  );

/** One coordination domain of the manifest (`coordination.domains[]`). */
export const CoordinationDomain = z.strictObject({
  /** Domain name, e.g. `cluster:prod-eu`; part of the coordinator's workflow id (no `/`). */
  name: Identifier,
  /** Resources of the domain; a step whose resource matches one is coordinated here (first domain wins). */
  resources: z.array(ResourcePattern).min(1),
  /** Action pairs that conflict within a batch (unordered; `[migrate, migrate]` makes two migrations conflict). */
  conflicts: z.array(z.tuple([Identifier, Identifier])).default([]),
  /** What happens to the loser of a conflict: rejected (default), or queued again after the winner. */
  onConflict: z.enum(['reject', 'requeue']).default('reject'),
  /** Requests arriving within this window after the first are ordered together. */
  batchingWindow: Duration.default('2s'),
  /** Approver role that settles a conflict between equal authorities. */
  tieBreakerRole: z.string().min(1).max(64),
  /** No tie-break choice by then: every contender of the tie is denied. */
  decisionDeadline: Duration.default('15m'),
  /** A holder that has not released its slot by then loses it (a crashed or terminated chain never blocks the domain). */
  holdTimeout: Duration.default('1h'),
});
export type CoordinationDomain = z.infer<typeof CoordinationDomain>;

/** The manifest's `coordination` section. */
export const Coordination = z
  .strictObject({
    domains: z.array(CoordinationDomain).default([]),
    /** Authority ranks: a higher rank wins a conflict. Unlisted workloads get `default`. */
    authority: z
      .strictObject({
        workloads: z.record(z.string().min(1).max(128), Authority).default({}),
        /** Ranks of approver roles: a step approved by holders of a role ranks at least that high. */
        roles: z.record(z.string().min(1).max(64), Authority).default({}),
        default: Authority.default(0),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.domains.forEach((d, i) => {
      if (seen.has(d.name))
        ctx.addIssue({
          code: 'custom',
          path: ['domains', i, 'name'],
          message: `duplicate coordination domain "${d.name}"`,
        });
      seen.add(d.name);
    });
  });
export type Coordination = z.infer<typeof Coordination>;

// ---- ids --------------------------------------------------------------------------------------

/** Workflow type of the coordinator. Recorded: never rename. */
export const COORDINATOR_WORKFLOW_TYPE = 'coordinatorWorkflow';

/**
 * Workflow id of the coordinator of `domain` for the governor deployment serving `taskQueue`:
 * `governor-coordinator:<taskQueue>/<domain>` (domain names cannot contain `/`).
 */
export function coordinatorId(taskQueue: string, domain: string): string {
  return `governor-coordinator:${taskQueue}/${domain}`;
}

/** Id of one slot request: the step's idempotency key `<chainId>/<stepId>`. */
export function slotRequestId(chainId: string, stepId: string): string {
  return idempotencyKey(chainId, stepId);
}

/**
 * Kind of the coordinator's own receipts. `decision` until `ReceiptKind` gains a `coordination`
 * kind; every coordination receipt's payload carries `type: 'coordination'`.
 */
export const COORDINATION_RECEIPT_KIND: ReceiptKind = 'decision';

/** JWS `typ` of a slot request seal (the governor's receipt key over `{domain, requestDigest}`). */
export const SLOT_SEAL_TYP = 'governor-slot-request+jws';

// ---- resources --------------------------------------------------------------------------------

const LABEL = /^([A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*)::"(.*)"$/s;
const PATTERN = /^([A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*)::(\*|"(.*)")$/s;

/** True when the resource label `Type::"id"` matches the pattern. Pure. */
export function matchesResourcePattern(pattern: string, label: string): boolean {
  const p = PATTERN.exec(pattern);
  const l = LABEL.exec(label);
  if (!p || !l || p[1] !== l[1]) return false;
  if (p[2] === '*') return true;
  const glob = p[3]!;
  if (!glob.includes('*')) return glob === l[2];
  const re = new RegExp(
    `^${glob
      .split('*')
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
    's',
  );
  return re.test(l[2]!);
}

/** The first domain (manifest order) whose resources match the label. */
export function findDomain<D extends Pick<CoordinationDomain, 'name' | 'resources'>>(
  domains: readonly D[],
  label: string,
): D | undefined {
  return domains.find((d) => d.resources.some((p) => matchesResourcePattern(p, label)));
}

// ---- messages -----------------------------------------------------------------------------------

/** What a chain asks for (input of the `requestSlot` activity): the governor resolves domain and authority. */
export const SlotAsk = z.strictObject({
  chainId: Identifier,
  stepId: Identifier,
  workload: Identifier,
  action: Identifier,
  resource: z.strictObject({ type: z.string().min(1).max(256), id: z.string().min(1).max(256) }),
  /** Declared priority: orders requests of equal authority (higher first). */
  priority: Priority.optional(),
  /** Resource version the step was planned against; lower than the current version: rejected as stale. */
  plannedVersion: z.int().min(0).optional(),
  /** Roles of the approvers whose votes let the step through (they can raise its authority). */
  approverRoles: z.array(z.string().min(1).max(64)).max(32).optional(),
  /** Governor task queue (default: the activity's own). */
  taskQueue: z.string().min(1).max(200).optional(),
});
export type SlotAsk = z.infer<typeof SlotAsk>;

/**
 * Payload of `requestSlot`, built and sealed by the governor (never trusted as sent: the coordinator
 * re-checks the seal, the digest, the domain and the authority in an activity).
 */
export const SlotRequest = z.strictObject({
  chainId: Identifier,
  stepId: Identifier,
  domain: Identifier,
  workload: Identifier,
  action: Identifier,
  /** `Type::"id"`. */
  resource: z.string().min(1).max(600),
  priority: Priority.default(0),
  plannedVersion: z.int().min(0).optional(),
  /** Authority rank resolved from the manifest when the request was made. */
  authority: Authority,
  /** Roles of the step's approvers (sealed with the request; re-ranked on admission). */
  approverRoles: z.array(z.string().min(1).max(64)).max(32).optional(),
  /** SHA-256 (hex) of the canonical request content (`requestDigestInput`); the stable tie-break. */
  requestDigest: z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest'),
  /** Compact JWS (governor receipt key) over `{domain, requestDigest}`: binds the request to its domain. */
  seal: z.string().min(16).max(4096),
});
export type SlotRequest = z.infer<typeof SlotRequest>;

/** The fields a request digest covers (canonical JSON, SHA-256). The domain is bound by the seal instead. */
export function requestDigestInput(
  r: Pick<
    SlotRequest,
    | 'chainId'
    | 'stepId'
    | 'workload'
    | 'action'
    | 'resource'
    | 'priority'
    | 'plannedVersion'
    | 'authority'
    | 'approverRoles'
  >,
): Record<string, unknown> {
  return {
    chainId: r.chainId,
    stepId: r.stepId,
    workload: r.workload,
    action: r.action,
    resource: r.resource,
    priority: r.priority,
    plannedVersion: r.plannedVersion ?? null,
    authority: r.authority,
    // Only when present, so digests of requests without approvers stay as they always were.
    ...(r.approverRoles && r.approverRoles.length > 0 ? { approverRoles: [...r.approverRoles].sort() } : {}),
  };
}

/** Payload of `releaseSlot`: the holder is done; `completed` advances the resource's version. */
export const SlotRelease = z.strictObject({ chainId: Identifier, stepId: Identifier, completed: z.boolean() });
export type SlotRelease = z.infer<typeof SlotRelease>;

/** Payload of `withdrawSlot`: a chain revoked or denied while queued leaves the queue (a holder releases without completing). */
export const SlotWithdraw = z.strictObject({
  chainId: Identifier,
  stepId: Identifier,
  reason: z.string().max(500).optional(),
});
export type SlotWithdraw = z.infer<typeof SlotWithdraw>;

/**
 * Payload of `chooseWinner`: an approval JWT of the domain's tie-breaker role whose `chainId`/`stepId`
 * name the winning request and whose `stepDigest` is the tie's digest (`coordinatorState().ties[].digest`).
 * `decision: deny` chooses neither: every contender is denied.
 */
export const TieBreakSubmission = z.strictObject({
  tieId: z.string().min(1).max(64),
  token: z
    .string()
    .min(16)
    .max(16_384)
    .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'must be a compact JWS (header.payload.signature)'),
});
export type TieBreakSubmission = z.infer<typeof TieBreakSubmission>;

/** The verdict on one tie-break vote. */
export interface TieBreakVerdict {
  tieId: string;
  counted: boolean;
  reason: string;
  approver?: string;
  decision?: 'approve' | 'deny';
  /** Request id of the chosen winner (approve). */
  winner?: string;
}

// ---- coordinator state ----------------------------------------------------------------------
// Schemas, not only types: the coordinator parses its input (carried state included) in the sandbox.

const Count = z.int().min(0);
const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest');
/** Workflow time as ISO-8601 (`Date.prototype.toISOString` in the sandbox). */
const Instant = z.iso.datetime({ message: 'must be an ISO-8601 UTC timestamp' });
const RequestId = z.string().min(1).max(300);

const QueueEntryShape = z.strictObject({
  /** `slotRequestId(request.chainId, request.stepId)`. */
  requestId: RequestId,
  request: SlotRequest,
  /** Authority as admitted (the manifest's rank at batch time). */
  authority: Authority,
  order: Count,
  batch: Count,
  state: z.enum(['queued', 'tie']),
  tieId: z.string().min(1).max(64).optional(),
  conflictWith: RequestId.optional(),
  note: z.string().optional(),
});
const idMatchesRequest = (
  e: { requestId: string; request: { chainId: string; stepId: string } },
  ctx: z.RefinementCtx,
): void => {
  if (e.requestId !== slotRequestId(e.request.chainId, e.request.stepId))
    ctx.addIssue({ code: 'custom', path: ['requestId'], message: 'must be <request.chainId>/<request.stepId>' });
};

/** A request the coordinator has ordered: waiting for its turn, or a contender of a pending tie. */
export const QueueEntry = QueueEntryShape.superRefine(idMatchesRequest);
export type QueueEntry = z.infer<typeof QueueEntryShape>;

/** The request holding the domain's slot. */
export const SlotHolder = QueueEntryShape.extend({
  grant: Count,
  /**
   * Workflow time of the grant. The hold timeout runs from here, across continue-as-new: a new run
   * sleeps only what remains. Absent in state carried by older runs (then: the new run's start).
   */
  grantedAt: Instant.optional(),
}).superRefine(idMatchesRequest);
export type SlotHolder = z.infer<typeof SlotHolder>;

/** A conflict between equal authorities, waiting for the tie-breaker role. */
export const PendingTie = z.strictObject({
  tieId: z.string().min(1).max(64),
  batch: Count,
  role: z.string().min(1).max(64),
  deadline: Duration,
  /** When the decision deadline passes (ISO-8601): workflow time, or governor time in older runs. */
  deadlineAt: Instant.optional(),
  /** Request ids in order. */
  contenders: z.array(RequestId),
  /** SHA-256 of the tie receipt's payload: the `stepDigest` a tie-break vote must carry. */
  digest: Sha256Hex.optional(),
});
export type PendingTie = z.infer<typeof PendingTie>;

/** The domain's conflict rules as a tie was opened under them (settles the tie). */
export const TieRules = z.strictObject({
  conflicts: z.array(z.tuple([Identifier, Identifier])),
  onConflict: z.enum(['reject', 'requeue']),
});
export type TieRules = z.infer<typeof TieRules>;

/** A pending tie carried into the next run: its deadline (workflow time) is kept, not restarted. */
export const CarriedTie = PendingTie.extend({ deadlineAt: Instant, rules: TieRules });
export type CarriedTie = z.infer<typeof CarriedTie>;

/** Raw message waiting to be processed (carried across continue-as-new). */
export const CoordinatorInboxItem = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('request'), request: SlotRequest }),
  z.strictObject({ kind: z.literal('release'), release: SlotRelease }),
  z.strictObject({ kind: z.literal('withdraw'), withdraw: SlotWithdraw }),
]);
export type CoordinatorInboxItem = z.infer<typeof CoordinatorInboxItem>;

/** What a coordinator carries into its next run. */
export const CoordinatorCarry = z.strictObject({
  head: ReceiptHead,
  inbox: z.array(CoordinatorInboxItem),
  queue: z.array(QueueEntry),
  holder: SlotHolder.optional(),
  versions: z.record(z.string().min(1).max(600), Count),
  recent: z.array(SlotVerdict),
  /** Request ids with a final outcome, newest last (bounded): repeats are ignored. */
  decided: z.array(RequestId),
  counters: z.strictObject({ batch: Count, order: Count, tie: Count, grant: Count }),
  runs: z.int().min(1),
  /** Pending ties (absent in state carried by older runs, which never continued with a tie open). */
  ties: z.array(CarriedTie).optional(),
});
export type CoordinatorCarry = z.infer<typeof CoordinatorCarry>;

/** Input of `coordinatorWorkflow`. */
export const CoordinatorInput = z.strictObject({
  domain: Identifier,
  options: z
    .strictObject({
      /** Continue-as-new once history has this many events (tests; default: when Temporal suggests it). */
      continueAsNewAfterEvents: z.int().min(1).max(1_000_000).optional(),
    })
    .optional(),
  /** Set by the coordinator itself when it continues as new (refused on a first run). */
  carry: CoordinatorCarry.optional(),
});
export type CoordinatorInput = z.infer<typeof CoordinatorInput>;

/** What `coordinatorState` returns. */
export interface CoordinatorState {
  coordinatorId: string;
  domain: string;
  runs: number;
  /** Requests collected in the open batching window (not yet ordered). */
  collecting: string[];
  /** Ordered requests, 1-based positions; the holder is not in the queue. */
  queue: (QueueEntry & { position: number })[];
  holder?: SlotHolder;
  versions: Record<string, number>;
  ties: PendingTie[];
  recent: SlotVerdict[];
  receiptHead: ReceiptHead;
  batches: number;
  /**
   * False while the coordinator is processing messages (a query can be answered while one of its
   * local activities runs): the holder may already be set before its grant receipt is signed.
   */
  settled: boolean;
  bundleDigest?: string;
  /** The last coordination receipt could not be signed (verdicts went out without a receipt). */
  receiptFailure?: string;
}

/** A chain (via the `requestSlot` activity or `CoordinationClient`) asks for a slot. */
export const requestSlotSignal = defineSignal<[SlotRequest]>('requestSlot');
/** A tie-break vote by signal (Temporal UI / CLI). */
export const chooseWinnerSignal = defineSignal<[TieBreakSubmission]>('chooseWinner');
/** A tie-break vote by update: returns the verdict on the vote. */
export const chooseWinnerUpdate = defineUpdate<TieBreakVerdict, [TieBreakSubmission]>('chooseWinnerUpdate');
/** The coordinator's queue (with positions), holder, versions, pending ties and recent verdicts. */
export const coordinatorStateQuery = defineQuery<CoordinatorState>('coordinatorState');
