import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { z } from 'zod';
import type { TransparencyActivities } from '../activities/transparency';
import { formatIssues } from '../contracts/chain';
import { ErrorCode } from '../contracts/errors';
import {
  ANCHOR_REFUSED,
  AppendCheckpointInput,
  AppendCheckpointsInput,
  LOG_DIVERGED,
  ReadLogInput,
  TransparencyLogInput,
  appendCheckpointUpdate,
  appendCheckpointsUpdate,
  publishTreeHeadUpdate,
  readTransparencyLogUpdate,
  transparencyLogStatusQuery,
  type ProofAnchor,
  type SignedTreeHeadShape,
} from '../contracts/transparency';

/*
 * The transparency log (DESIGN §13, issue 20 item 3): an append-only Merkle log (RFC 6962 hashing) of
 * closed chains' final signed checkpoints, kept by this workflow (id `governor-transparency-log`, one per
 * namespace). Deterministic code only.
 *
 * - Appends arrive as `appendCheckpoint` updates naming a chain, or `appendCheckpoints` naming a batch of them
 *   (validated here: the workflow is the trust boundary). They queue, and the loop appends whatever has queued in one `transparencyAppend` activity
 *   (a batch), which reads each chain's checkpoint from its own history, checks its signature, appends
 *   the leaves to the activity-side leaf store and signs the new tree head. Each update returns its
 *   leaf's index, audit path and that signed head: the anchor an exported proof embeds.
 * - State stays bounded: the workflow holds the tree's size, root and latest head; the leaves are in the
 *   store (activities/transparency.ts), which must hold exactly this tree (else every call is refused).
 *   After `continueAsNewAfter` appends (or Temporal's suggestion) the log continues as new carrying size
 *   and root only.
 * - A fresh head is signed every `headIntervalMs` (default one hour) and on demand (`publishTreeHead`).
 * - Reads (`readTransparencyLog`: inclusion and consistency proofs, leaves) run an activity on the store.
 */

const DEFAULT_BATCH = 256;
const DEFAULT_HEAD_INTERVAL_MS = 3_600_000;
const DEFAULT_CONTINUE_AS_NEW_AFTER = 1_000;

const store = proxyActivities<TransparencyActivities>({
  startToCloseTimeout: '5m',
  retry: {
    initialInterval: '1s',
    maximumInterval: '30s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [ErrorCode.InvalidInput, LOG_DIVERGED],
  },
});

interface Waiting {
  entry: AppendCheckpointInput;
  done: boolean;
  anchor?: ProofAnchor;
  error?: { message: string; type: string };
}

function parseOrRefuse<T>(schema: z.ZodType<T>, v: unknown, what: string): T {
  const parsed = schema.safeParse(v);
  if (!parsed.success)
    throw ApplicationFailure.nonRetryable(
      `invalid ${what}: ${formatIssues(parsed.error).replace(/\n/g, '; ')}`,
      ErrorCode.InvalidInput,
    );
  return parsed.data;
}

function failureText(err: unknown): { message: string; type: string } {
  const e = err as { cause?: { message?: string; type?: string }; message?: string; type?: string };
  const cause: { message?: string; type?: string } = e.cause ?? e;
  return { message: cause.message ?? String(err), type: cause.type ?? 'GOVERNOR_LOG_UNAVAILABLE' };
}

/** The transparency log workflow (see the file comment). */
export async function transparencyLogWorkflow(raw?: unknown): Promise<void> {
  const info = workflowInfo();
  const log = info.workflowId;
  let ready = false;
  let size = 0;
  let rootHash = '';
  let head: SignedTreeHeadShape | null = null;
  let appended = 0;
  let lastError: string | undefined;
  const queue: Waiting[] = [];
  const headWaiters: { done: boolean; head?: SignedTreeHeadShape; error?: { message: string; type: string } }[] = [];

  // Handlers first: an update-with-start arrives in the run's first activation.
  setHandler(transparencyLogStatusQuery, () => ({
    log,
    ready,
    treeSize: size,
    rootHash,
    head,
    pending: queue.length,
    appendedThisRun: appended,
    ...(lastError !== undefined ? { lastError } : {}),
  }));
  setHandler(
    appendCheckpointUpdate,
    async (arg) => {
      const w: Waiting = { entry: parseOrRefuse(AppendCheckpointInput, arg, 'append'), done: false };
      queue.push(w);
      await condition(() => w.done);
      if (w.error) throw ApplicationFailure.nonRetryable(w.error.message, w.error.type);
      return w.anchor!;
    },
    { validator: (arg) => void parseOrRefuse(AppendCheckpointInput, arg, 'append') },
  );
  // A batch (the archiver's): its entries queue like single appends and each gets its own outcome, so one
  // refused chain does not refuse the others. One update instead of one per chain.
  setHandler(
    appendCheckpointsUpdate,
    async (arg) => {
      const ws: Waiting[] = parseOrRefuse(AppendCheckpointsInput, arg, 'append batch').entries.map((entry) => ({
        entry,
        done: false,
      }));
      queue.push(...ws);
      await condition(() => ws.every((w) => w.done));
      return ws.map((w) => (w.error ? { error: w.error } : { anchor: w.anchor! }));
    },
    { validator: (arg) => void parseOrRefuse(AppendCheckpointsInput, arg, 'append batch') },
  );
  setHandler(publishTreeHeadUpdate, async () => {
    const w: (typeof headWaiters)[number] = { done: false };
    headWaiters.push(w);
    await condition(() => w.done);
    if (w.error) throw ApplicationFailure.nonRetryable(w.error.message, w.error.type);
    return w.head!;
  });
  setHandler(
    readTransparencyLogUpdate,
    async (arg) => {
      const read = parseOrRefuse(ReadLogInput, arg, 'log read');
      await condition(() => ready);
      try {
        return await store.transparencyRead({ log, size, rootHash, read });
      } catch (err) {
        const e = failureText(err);
        throw ApplicationFailure.nonRetryable(e.message, e.type);
      }
    },
    { validator: (arg) => void parseOrRefuse(ReadLogInput, arg, 'log read') },
  );

  const input = parseOrRefuse(TransparencyLogInput, raw, 'log input') ?? { v: 1 as const };
  const batchMax = input.batchMax ?? DEFAULT_BATCH;
  const interval = input.headIntervalMs ?? DEFAULT_HEAD_INTERVAL_MS;
  const rollAfter = input.continueAsNewAfter ?? DEFAULT_CONTINUE_AS_NEW_AFTER;
  // The tree the previous run held is trusted only from this log's own continue-as-new (the server says so).
  const carried = info.continuedFromExecutionRunId !== undefined ? input.carried : undefined;
  const opened = await store.transparencyOpen({ log, ...(carried ? { carried } : {}) });
  size = opened.size;
  rootHash = opened.rootHash;
  head = opened.head;
  ready = true;

  // One timer at a time for the head interval (not one per wait: two events fewer per batch).
  let tick = false;
  const arm = (): void => {
    void sleep(interval).then(() => {
      tick = true;
      arm();
    });
  };
  arm();
  const due = (): boolean => appended >= rollAfter || workflowInfo().continueAsNewSuggested;
  for (;;) {
    // Woken by work, by the head interval, or by the end of this run (nothing in flight).
    await condition(() => queue.length > 0 || headWaiters.length > 0 || tick || (due() && allHandlersFinished()));
    if (queue.length > 0) {
      const batch = queue.splice(0, batchMax);
      try {
        const r = await store.transparencyAppend({ log, size, rootHash, entries: batch.map((w) => w.entry) });
        if (r.head.treeSize < size) throw new Error(`the store returned a smaller tree (${r.head.treeSize} < ${size})`);
        appended += r.head.treeSize - size;
        size = r.head.treeSize;
        rootHash = r.head.rootHash;
        head = r.head;
        lastError = undefined;
        batch.forEach((w, i) => {
          const x = r.results[i];
          if (x?.ok) w.anchor = { log, index: x.index, leaf: x.leaf, inclusion: x.inclusion, treeHead: r.head };
          else w.error = { message: x?.reason ?? 'no result', type: ANCHOR_REFUSED };
          w.done = true;
        });
      } catch (err) {
        const e = failureText(err);
        lastError = e.message;
        batch.forEach((w) => {
          w.error = e;
          w.done = true;
        });
      }
      continue;
    }
    if (headWaiters.length > 0 || tick) {
      tick = false;
      const waiting = headWaiters.splice(0);
      try {
        const signed = await store.transparencySignHead({ log, size, rootHash });
        head = signed;
        lastError = undefined;
        waiting.forEach((w) => ((w.head = signed), (w.done = true)));
      } catch (err) {
        const e = failureText(err);
        lastError = e.message;
        waiting.forEach((w) => ((w.error = e), (w.done = true)));
      }
      continue;
    }
    // Due, nothing queued and no handler in flight: this activation continues as new (no update can slip in).
    break;
  }
  await continueAsNew<typeof transparencyLogWorkflow>({ ...input, carried: { size, rootHash } });
}
