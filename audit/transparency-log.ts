import { WithStartWorkflowOperation, type Client } from '@temporalio/client';
import {
  TRANSPARENCY_LOG_ID,
  MAX_APPEND_BATCH,
  TRANSPARENCY_LOG_TYPE,
  appendCheckpointUpdate,
  appendCheckpointsUpdate,
  publishTreeHeadUpdate,
  readTransparencyLogUpdate,
  transparencyLogStatusQuery,
  type AppendCheckpointInput,
  type AppendOutcome,
  type ProofAnchor,
  type ReadLogInput,
  type ReadLogResult,
  type SignedTreeHeadShape,
  type TransparencyLogInput,
  type TransparencyLogStatus,
} from '../contracts/transparency';
import { innermostMessage, innermostType, isTransientRefusal } from '../runtime/error-causes';
import type { Proof } from './proof';

/*
 * The transparency log from a client (DESIGN §13, issue 20 item 3): anchoring a closed chain's checkpoint
 * (update-with-start of the log workflow, so the first anchor starts it), the log's status, a fresh head
 * on demand, and inclusion/consistency proofs. The exporter of archived proofs calls `anchorProof` before
 * writing a proof and embeds the anchor it returns (`withAnchor`).
 */

/** Where the log runs: the governor task queue (its worker holds the leaf store) and the log's workflow id. */
export interface LogTarget {
  taskQueue: string;
  /** Default `governor-transparency-log` (one per namespace). */
  logId?: string;
  /** The log's options when this call starts it (batch size, head interval, continue-as-new). */
  input?: TransparencyLogInput;
  /**
   * Appends this client sends the log at a time (default 8; the rest wait here, in order): under Temporal's
   * in-flight update limit (`history.maxInFlightUpdates`, 10), whose refusals cost more than waiting here.
   */
  maxInFlight?: number;
  /** Give up after this long (no worker of the queue answering must not hold the caller): an error names the log. */
  timeoutMs?: number;
}

/** `work`, or an error naming the log once `target.timeoutMs` has passed (no limit without it). */
async function withinTimeout<T>(target: LogTarget, work: Promise<T>): Promise<T> {
  if (target.timeoutMs === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `the transparency log ${target.logId ?? TRANSPARENCY_LOG_ID} (task queue ${target.taskQueue}) did not answer within ${target.timeoutMs! / 1000} s`,
          ),
        ),
      target.timeoutMs,
    );
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Default of `LogTarget.maxInFlight`. */
export const DEFAULT_MAX_IN_FLIGHT_APPENDS = 8;

/** Appends in flight per client and log, and the callers waiting for a slot. */
const inFlight = new WeakMap<Client, Map<string, { active: number; waiting: (() => void)[] }>>();

/**
 * Runs `fn` once fewer than `width` appends of this client to `log` are in flight. Why not let the server refuse
 * the excess: an update refused over the in-flight limit (RESOURCE_EXHAUSTED) is an error in the history service,
 * and any error there clears the workflow's cached mutable state (service/history/workflow/cache, makeReleaseFunc),
 * which loses the speculative workflow task of an update being processed. The worker's completion of that task is
 * then answered "Workflow task not found", the SDK evicts the log from its cache, and its next task replays the
 * whole history (every append of the run). With a hundred concurrent callers this made anchoring quadratic in the
 * log's length (200 appends: 45 evictions, 35-40 s; queued here: none, 13 s).
 */
async function withAppendSlot<T>(client: Client, log: string, width: number, fn: () => Promise<T>): Promise<T> {
  let logs = inFlight.get(client);
  if (!logs) inFlight.set(client, (logs = new Map()));
  let slots = logs.get(log);
  if (!slots) logs.set(log, (slots = { active: 0, waiting: [] }));
  const s = slots;
  while (s.active >= width) await new Promise<void>((res) => s.waiting.push(res));
  s.active++;
  try {
    return await fn();
  } finally {
    s.active--;
    s.waiting.shift()?.();
    if (s.active === 0 && s.waiting.length === 0) logs.delete(log);
  }
}

function startOperation(target: LogTarget) {
  return new WithStartWorkflowOperation(TRANSPARENCY_LOG_TYPE, {
    workflowId: target.logId ?? TRANSPARENCY_LOG_ID,
    taskQueue: target.taskQueue,
    args: [target.input ?? { v: 1 }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    staticSummary: 'Governor transparency log',
  });
}

/**
 * Appends a closed chain's final checkpoint to the log and returns its anchor: the leaf, its index, its
 * inclusion proof and the signed tree head it leads to. The log reads the checkpoint from the chain's own
 * history: it refuses (`GOVERNOR_ANCHOR_REFUSED`) a chain that did not complete with a signed checkpoint,
 * or whose checkpoint differs from `target.checkpoint`.
 */
export async function anchorCheckpoint(
  client: Client,
  entry: AppendCheckpointInput,
  target: LogTarget,
): Promise<ProofAnchor> {
  // Temporal admits a few in-flight updates per workflow (history.maxInFlightUpdates, 10 by default): this
  // client sends at most `maxInFlight` at a time (see withAppendSlot). Other clients may still take the rest,
  // so RESOURCE_EXHAUSTED can come back; a loaded server may also abort an update or answer UNAVAILABLE. An
  // append is idempotent (the same checkpoint is never a second leaf): it is tried again.
  const width = Math.max(1, target.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT_APPENDS);
  return withinTimeout(
    target,
    withAppendSlot(client, target.logId ?? TRANSPARENCY_LOG_ID, width, () =>
      retryTransient(() =>
        client.workflow.executeUpdateWithStart(appendCheckpointUpdate, {
          args: [entry],
          startWorkflowOperation: startOperation(target),
        }),
      ),
    ),
  );
}

/**
 * Appends a batch of closed chains' checkpoints (`appendCheckpoints`: one update per MAX_APPEND_BATCH entries
 * instead of one per chain) and returns, in order, each one's anchor or why the log refused it. A refusal is
 * per entry (ANCHOR_REFUSED, LOG_DIVERGED); the log unreachable throws. A log whose worker predates batches
 * (a rolling upgrade: no handler for the update) is sent one `appendCheckpoint` per entry, without the receipt
 * (its input does not know that field), and each entry's error becomes that entry's outcome.
 */
export async function anchorCheckpoints(
  client: Client,
  entries: readonly AppendCheckpointInput[],
  target: LogTarget,
): Promise<AppendOutcome[]> {
  const width = Math.max(1, target.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT_APPENDS);
  const chunks: AppendCheckpointInput[][] = [];
  for (let i = 0; i < entries.length; i += MAX_APPEND_BATCH) chunks.push(entries.slice(i, i + MAX_APPEND_BATCH));
  const results = await withinTimeout(
    target,
    Promise.all(
      chunks.map((chunk) =>
        withAppendSlot(client, target.logId ?? TRANSPARENCY_LOG_ID, width, () =>
          retryTransient(() =>
            client.workflow.executeUpdateWithStart(appendCheckpointsUpdate, {
              args: [{ v: 1, entries: chunk }],
              startWorkflowOperation: startOperation(target),
            }),
          ),
        ).catch((err: unknown) => {
          if (!/No registered handler for update/.test(innermostMessage(err))) throw err;
          return Promise.all(chunk.map((entry) => appendOne(client, entry, target)));
        }),
      ),
    ),
  );
  return results.flat();
}

/** One entry through `appendCheckpoint` (a log without the batch update), its error as its outcome. */
async function appendOne(client: Client, entry: AppendCheckpointInput, target: LogTarget): Promise<AppendOutcome> {
  const { receipt: _receipt, ...single } = entry;
  try {
    return { anchor: await anchorCheckpoint(client, single, target) };
  } catch (err) {
    return { error: { message: innermostMessage(err), type: innermostType(err) ?? 'GOVERNOR_LOG_UNAVAILABLE' } };
  }
}

/** Runs an idempotent append again while the server answers with a transient refusal (see anchorCheckpoint). */
async function retryTransient<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransientRefusal(err) || attempt >= 600) throw err;
      await new Promise((res) => setTimeout(res, 20 + Math.random() * Math.min(500, 20 * 2 ** Math.min(attempt, 5))));
    }
  }
}

/** Anchors the chain a proof is of (its final run and checkpoint as Temporal holds them). */
export async function anchorProof(
  client: Client,
  proof: Pick<Proof, 'chainId'>,
  target: LogTarget,
): Promise<ProofAnchor> {
  return anchorCheckpoint(client, { chainId: proof.chainId }, target);
}

/** The proof with its anchor embedded (outside the seal: the anchor proves itself). */
export function withAnchor<P extends Proof>(proof: P, anchor: ProofAnchor): P & { anchor: ProofAnchor } {
  return { ...proof, anchor };
}

/** The log's size, root and latest signed head (a query: no history event). */
export async function logStatus(client: Client, logId = TRANSPARENCY_LOG_ID): Promise<TransparencyLogStatus> {
  return client.workflow.getHandle(logId).query(transparencyLogStatusQuery);
}

/** Signs and returns a fresh tree head now. */
export async function publishTreeHead(client: Client, logId = TRANSPARENCY_LOG_ID): Promise<SignedTreeHeadShape> {
  return client.workflow.getHandle(logId).executeUpdate(publishTreeHeadUpdate);
}

/** An inclusion or consistency proof, or leaves, from the log's store. */
export async function readLog(client: Client, read: ReadLogInput, logId = TRANSPARENCY_LOG_ID): Promise<ReadLogResult> {
  return client.workflow.getHandle(logId).executeUpdate(readTransparencyLogUpdate, { args: [read] });
}
