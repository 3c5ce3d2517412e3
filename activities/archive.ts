import { ApplicationFailure, Context, sleep } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import { LRUCache } from 'lru-cache';
import {
  ARCHIVER_TASK_QUEUE,
  archiveKeyOf,
  type ArchiveInput,
  type ArchiveResult,
  type SweepInput,
  type SweepResult,
} from '../contracts/archive';
import { ANCHOR_REFUSED, AppendCheckpointInput, LOG_DIVERGED, transparencyLogIdFor } from '../contracts/transparency';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { SESSION_WORKFLOW_TYPE } from '../contracts/session';
import { WORKFLOW_TYPE } from '../contracts/status';
import { loadPrivateKey, loadPublicJwks, type SigningKey } from '../identity';
import { readKeyFile, type KeyRef } from '../identity/key-ref';
import { loadArchivedBundle } from '../policies/bundle-archive';
import type { LoadedBundle } from '../policies/bundle';
import {
  ArchiveConflict,
  exportProof,
  prepareProof,
  type ArchiveStore,
  type PreparedProof,
  type ProofAnchor,
} from '../audit/archive';
import type { Proof } from '../audit/proof';
import { anchorCheckpoints, withAnchor } from '../audit/transparency-log';
import { innermostMessage, innermostType } from '../runtime/error-causes';
import { fetchChainHistories, listRunIdsOf } from '../audit/verify';

/*
 * The `archiveProof` activity (README "Archived proofs"): runs in the detached archive workflow a chain or
 * session starts as it closes. It waits until the chain's execution has closed, fetches every run of it,
 * builds the sealed proof (audit/proof.ts) with this worker's receipt key and the bundle archive, and writes
 * it to the proof archive once (audit/archive.ts). Transient failures (archive unreachable, chain still
 * closing) are retried by the workflow; a refusal (unsafe chain id, not a governed chain, history gone, a
 * different proof already archived) fails it without retries, logged. The chain is never affected.
 */

/** What the archive activity needs. */
export interface ArchiveDeps {
  /** GOVERNOR_HOME: receipt keys and the bundle archive. */
  home: string;
  /** The proof archive; undefined: archiving is off (GOVERNOR_ARCHIVE=off), the activity does nothing. */
  store: ArchiveStore | undefined;
  /** The worker's payload codecs (histories are archived as stored; decoded only to find bundle digests). */
  codecs?: readonly PayloadCodec[];
  /**
   * Called with the sealed proof before it is written (the transparency log's inclusion proof). The sweep's
   * default: the proof is anchored in the log of its task queue (`transparencyLogIdFor`); `false`: not anchored.
   */
  anchor?: ProofAnchor | false;
  /** The receipt key by reference (the worker's `receiptKey`), for sealing swept proofs. */
  receiptKey?: KeyRef;
  /** How long one attempt waits for the chain to close before it is retried (default 20 s). */
  closeWaitMs?: number;
}

/** The codecs as one (decode: last applied first, as a client does). */
function composeCodecs(codecs: readonly PayloadCodec[] | undefined): PayloadCodec | undefined {
  if (!codecs || codecs.length === 0) return undefined;
  if (codecs.length === 1) return codecs[0];
  return {
    encode: async (payloads) => {
      for (const c of codecs) payloads = await c.encode(payloads);
      return payloads;
    },
    decode: async (payloads) => {
      for (const c of [...codecs].reverse()) payloads = await c.decode(payloads);
      return payloads;
    },
  };
}

const refuse = (message: string, type: string = ErrorCode.InvalidInput): ApplicationFailure =>
  ApplicationFailure.nonRetryable(message, type);

/** The archive activity. Names are recorded in history: never rename them. */
export function createArchiveActivities(deps: ArchiveDeps) {
  const codec = composeCodecs(deps.codecs);
  // Archived bundles by digest (content-addressed, so a digest's files never change): loading one parses
  // and validates its Cedar policies (~165 ms), which every export of a chain under it would repeat.
  const bundleCache = new LRUCache<string, LoadedBundle>({ max: 32 });
  const bundles = (digest: string): LoadedBundle => {
    const hit = bundleCache.get(digest);
    if (hit) return hit;
    const loaded = loadArchivedBundle(deps.home, digest);
    bundleCache.set(digest, loaded);
    return loaded;
  };
  /** The key proofs are sealed with: the receipt key file by reference, else the home's receipt key. */
  const sealKey = async (): Promise<Pick<SigningKey, 'key' | 'kid'>> => {
    const ref = deps.receiptKey;
    if (ref && 'file' in ref) {
      const { kid, key } = await readKeyFile(ref.file, 'receipt');
      // jose signs with a KeyObject as with a CryptoKey.
      return { kid, key: key as unknown as SigningKey['key'] };
    }
    if (ref)
      throw new GovernorError(
        ErrorCode.KeysMissing,
        'proofs cannot be sealed through a signer socket yet: give the worker the receipt key file (GOVERNOR_RECEIPT_KEY_FILE)',
      );
    return loadPrivateKey(deps.home, 'receipt');
  };
  /** Chains this worker's sweeps handled (`<chainId>/<runId>`), so the overlap is not exported again. */
  const done = new LRUCache<string, true>({ max: 50_000 });

  async function archiveProof(input: ArchiveInput): Promise<ArchiveResult> {
    const ctx = Context.current();
    if (!deps.store) return { outcome: 'disabled' };
    const chainId = (input as { chainId?: unknown } | null)?.chainId;
    if (typeof chainId !== 'string' || !archiveKeyOf(chainId)) {
      const message = `archive refused: the chain id is not a safe object key; nothing written`;
      ctx.log.warn(message);
      throw refuse(message);
    }
    // The chain starts this workflow just before it closes: wait (heartbeating) until it has.
    const deadline = Date.now() + (deps.closeWaitMs ?? 20_000);
    for (;;) {
      let described;
      try {
        described = await ctx.client.workflow.getHandle(chainId).describe();
      } catch (err) {
        const e = err as { name?: string; code?: number };
        if (e?.name === 'WorkflowNotFoundError' || e?.code === 5)
          throw refuse(
            `archive of ${chainId} refused: no such chain (its history is gone); nothing written`,
            ErrorCode.NotFound,
          );
        throw err;
      }
      if (described.type !== WORKFLOW_TYPE && described.type !== SESSION_WORKFLOW_TYPE)
        throw refuse(`archive of ${chainId} refused: workflow ${chainId} is a ${described.type}, not a governed chain`);
      if (described.status.name !== 'RUNNING') break;
      if (Date.now() >= deadline)
        throw ApplicationFailure.retryable(`chain ${chainId} has not closed yet`, 'ChainStillRunning');
      ctx.heartbeat();
      await sleep(250);
    }
    try {
      const histories = await fetchChainHistories(ctx.client, chainId);
      ctx.heartbeat();
      const result = await exportProof({
        store: deps.store,
        chainId,
        histories,
        ...(codec ? { codec } : {}),
        bundles,
        receiptKeys: loadPublicJwks(deps.home, 'receipt'),
        signer: await loadPrivateKey(deps.home, 'receipt'),
        ...(deps.anchor ? { anchor: deps.anchor } : {}),
      });
      ctx.log.info(result.outcome === 'written' ? 'proof archived' : 'proof already archived', {
        chainId,
        location: result.location,
      });
      return result;
    } catch (err) {
      if (err instanceof ArchiveConflict) {
        ctx.log.error('proof archive refused', { chainId, reason: err.message });
        throw refuse(`archive of ${chainId} refused: ${err.message}`, 'ArchiveConflict');
      }
      if (
        err instanceof GovernorError &&
        err.code !== ErrorCode.TemporalUnreachable &&
        err.code !== ErrorCode.KeysMissing
      ) {
        ctx.log.warn('proof archive refused', { chainId, reason: err.message });
        throw refuse(`archive of ${chainId} refused: ${err.message}`, err.code);
      }
      ctx.log.warn('proof not archived yet', { chainId, reason: (err as Error).message, attempt: ctx.info.attempt });
      throw err;
    }
  }

  /**
   * One sweep of the archiver (workflows/archive.ts): the chains and sessions of `taskQueue` that closed at
   * or after `since` (less SWEEP_OVERLAP_MS, for visibility's lag), oldest first, at most SWEEP_BATCH; each
   * one's proof built and sealed, anchored, and written, unless this process exported it already. The anchors
   * of a sweep are one `appendCheckpoints` update to the queue's log (per MAX_APPEND_BATCH), not one per chain.
   * Returns the close time the next sweep starts from: the last chain handled, or the first one that must be
   * tried again (the archive or the log unavailable), so no closed chain is skipped.
   */
  async function archiveSweep(input: SweepInput): Promise<SweepResult> {
    const ctx = Context.current();
    const taskQueue = (input as Partial<SweepInput> | null)?.taskQueue;
    const since = (input as Partial<SweepInput> | null)?.since;
    if (typeof taskQueue !== 'string' || !ARCHIVER_TASK_QUEUE.test(taskQueue))
      throw refuse('archive sweep refused: taskQueue is not a task queue name');
    if (typeof since !== 'string' || Number.isNaN(Date.parse(since)) || Date.parse(since) > Date.now() + 60_000)
      throw refuse('archive sweep refused: since is not an ISO time, or is in the future');
    const empty = { listed: 0, written: 0, anchored: 0, unchanged: 0, refused: 0, retry: 0, more: false };
    if (!deps.store) return { since, ...empty, disabled: true };
    const closed = await listClosed(ctx.client, taskQueue, new Date(Date.parse(since) - SWEEP_OVERLAP_MS));
    const todo = closed.filter((c) => !done.has(`${c.workflowId}/${c.runId}`));
    const batch = todo.slice(0, SWEEP_BATCH);
    const result: SweepResult = { since, ...empty, listed: closed.length, more: todo.length > batch.length };
    const outcomes = new Array<Outcome>(batch.length);
    // In chunks: at most SWEEP_CHUNK proofs (histories and all) are held at a time, each chunk one log update.
    let handled = 0;
    for (let from = 0; from < batch.length; from += SWEEP_CHUNK) {
      const chunk = batch.slice(from, from + SWEEP_CHUNK);
      const got = await sweepChunk(ctx, taskQueue, chunk);
      got.forEach((r, k) => {
        outcomes[from + k] = r;
        // Exported (or refused for good): no later sweep does it again, even if this one times out.
        if (r !== 'retry') done.set(`${chunk[k]!.workflowId}/${chunk[k]!.runId}`, true);
      });
      handled = from + chunk.length;
      // Something to try again (the archive or the log unavailable): the rest waits for the next sweep, which
      // starts from that chain. A log that is down costs one chunk's wait, not every chunk's.
      if (got.includes('retry')) break;
    }
    result.more ||= handled < batch.length;
    for (const r of outcomes.slice(0, handled)) {
      if (r === 'anchored') result.written++;
      result[r]++;
    }
    // The position: the first chain to try again, else the last one handled (else where this sweep began).
    const firstRetry = outcomes.indexOf('retry');
    const upTo = firstRetry >= 0 ? batch[firstRetry] : batch[handled - 1];
    if (upTo && upTo.closeTime > Date.parse(since)) result.since = new Date(upTo.closeTime).toISOString();
    if (result.written + result.refused + result.retry > 0) ctx.log.info('archive sweep', { taskQueue, ...result });
    return result;
  }

  /** Prepares, anchors and writes the proofs of some closed chains; how each went (throws only when cancelled). */
  async function sweepChunk(ctx: Context, taskQueue: string, chunk: readonly Closed[]): Promise<Outcome[]> {
    const outcomes = new Array<Outcome>(chunk.length);
    const finals = new Array<{ prepared: PreparedProof; proof: Proof; anchored: boolean } | undefined>(chunk.length);
    // A cancelled sweep (worker shutdown, timeout) ends at once: its position is not advanced.
    const orCancel = <T>(p: Promise<T>): Promise<T> => Promise.race([p, ctx.cancelled]);

    // 1. Build and seal each proof (SWEEP_CONCURRENCY at a time). The runs of every chain are listed at once (a
    // proof carries every run of its workflow id); a list that lacks the closed run itself (visibility's lag)
    // is not used, and that chain lists its own.
    const safe = chunk.filter((c) => archiveKeyOf(c.workflowId)).map((c) => c.workflowId);
    const runIds =
      safe.length === 0
        ? new Map<string, string[]>()
        : await orCancel(listRunIdsOf(ctx.client, safe, MAX_RUNS)).catch((err: unknown) => {
            if (ctx.cancellationSignal.aborted) throw err;
            ctx.log.warn('archive sweep: run lists not read in one query', { reason: innermostMessage(err) });
            return new Map<string, string[]>();
          });
    await inPool(chunk.length, async (i) => {
      ctx.heartbeat();
      const c = chunk[i]!;
      const listed = runIds.get(c.workflowId);
      // Listed newest first: when the closed run the sweep found is the newest run of its id, the lineage is read
      // from it (its type is in the listing's filter); otherwise (the id reused since) the chain is described.
      const r = await orCancel(
        prepareOne(ctx, c.workflowId, listed?.includes(c.runId) ? listed : undefined, listed?.[0] === c.runId),
      );
      if (typeof r === 'string') outcomes[i] = r;
      else finals[i] = { prepared: r, proof: r.proof, anchored: false };
    });
    // 2. Anchor them: one update for the queue's log, or each through the configured anchor. Heartbeating: the
    // log may take up to ANCHOR_TIMEOUT_MS.
    const ready = finals.flatMap((f, i) => (f ? [i] : []));
    const unanchored = (i: number, reason: string, type: string | undefined): void => {
      // A refusal is for good (the chain did not close with a checkpoint; the log's store diverged): the proof
      // is archived without an anchor (`verify --require-anchor` refuses it), never lost.
      if (type === ANCHOR_REFUSED || type === LOG_DIVERGED) {
        ctx.log[type === LOG_DIVERGED ? 'error' : 'warn']('proof archived without an anchor', {
          chainId: chunk[i]!.workflowId,
          reason,
        });
        return;
      }
      ctx.log.warn('proof not archived yet', { chainId: chunk[i]!.workflowId, reason });
      outcomes[i] = 'retry';
      finals[i] = undefined;
    };
    const beat = setInterval(() => ctx.heartbeat(), 5_000);
    try {
      if (deps.anchor === undefined && ready.length > 0) {
        const target = { taskQueue, logId: transparencyLogIdFor(taskQueue), timeoutMs: ANCHOR_TIMEOUT_MS };
        const entries = ready.map((i) => {
          const { proof, checkpoint } = finals[i]!.prepared;
          const runId = lastRunId(proof);
          // With the checkpoint receipt, the log reads only the run's close event (it checks the receipt
          // against it); a receipt its input would refuse is not sent (that chain's history is read instead).
          const receipt = receiptInput(checkpoint);
          return { chainId: chunk[i]!.workflowId, ...(runId ? { runId } : {}), ...(receipt ? { receipt } : {}) };
        });
        try {
          const anchors = await orCancel(anchorCheckpoints(ctx.client, entries, target));
          ready.forEach((i, k) => {
            const x = anchors[k];
            const f = finals[i]!;
            if (x && 'anchor' in x) Object.assign(f, { proof: withAnchor(f.proof, x.anchor), anchored: true });
            else unanchored(i, x?.error.message ?? 'the log returned no result', x?.error.type);
          });
        } catch (err) {
          if (ctx.cancellationSignal.aborted) throw err;
          // The log unreachable (or no worker of the queue answering): every chain of the chunk is tried again.
          for (const i of ready) unanchored(i, innermostMessage(err), undefined);
        }
      } else if (deps.anchor) {
        const anchor = deps.anchor;
        await inPool(ready.length, async (k) => {
          const i = ready[k]!;
          const f = finals[i]!;
          try {
            Object.assign(f, { proof: await orCancel(anchor(f.proof)), anchored: true });
          } catch (err) {
            if (ctx.cancellationSignal.aborted) throw err;
            unanchored(i, innermostMessage(err), innermostType(err));
          }
        });
      }
    } finally {
      clearInterval(beat);
    }
    // 3. Write them.
    await inPool(chunk.length, async (i) => {
      const f = finals[i];
      if (!f) return;
      ctx.heartbeat();
      outcomes[i] = await orCancel(writeOne(ctx, chunk[i]!.workflowId, () => f.prepared.write(f.proof), f.anchored));
    });
    return outcomes;
  }

  /** Builds and seals one closed chain's proof, or how it went (never throws). */
  async function prepareOne(
    ctx: Context,
    chainId: string,
    listed?: string[],
    newestListed = false,
  ): Promise<PreparedProof | Outcome> {
    if (!archiveKeyOf(chainId)) {
      ctx.log.warn('archive refused: the chain id is not a safe object key; nothing written', { chainId });
      return 'refused';
    }
    return settle(ctx, chainId, async () => {
      const histories = await fetchChainHistories(
        ctx.client,
        chainId,
        MAX_RUNS,
        listed,
        newestListed ? listed?.[0] : undefined,
      );
      const r = await prepareProof({
        store: deps.store!,
        chainId,
        histories,
        ...(codec ? { codec } : {}),
        bundles,
        receiptKeys: loadPublicJwks(deps.home, 'receipt'),
        signer: await sealKey(),
      });
      return r.outcome === 'unchanged' ? 'unchanged' : r;
    });
  }

  /** Writes one prepared proof; how it went (never throws). */
  async function writeOne(
    ctx: Context,
    chainId: string,
    write: () => Promise<ArchiveResult>,
    anchored: boolean,
  ): Promise<Outcome> {
    return settle(ctx, chainId, async () =>
      (await write()).outcome !== 'written' ? 'unchanged' : anchored ? 'anchored' : 'written',
    );
  }

  /** `work`'s outcome, a refusal (logged; not tried again), or `retry` (the archive or Temporal unavailable). */
  async function settle<T>(ctx: Context, chainId: string, work: () => Promise<T | Outcome>): Promise<T | Outcome> {
    try {
      return await work();
    } catch (err) {
      if (
        err instanceof ArchiveConflict ||
        (err instanceof GovernorError &&
          err.code !== ErrorCode.TemporalUnreachable &&
          err.code !== ErrorCode.KeysMissing)
      ) {
        ctx.log[err instanceof ArchiveConflict ? 'error' : 'warn']('proof archive refused', {
          chainId,
          reason: (err as Error).message,
        });
        return 'refused';
      }
      ctx.log.warn('proof not archived yet', { chainId, reason: innermostMessage(err) });
      return 'retry';
    }
  }

  return { archiveProof, archiveSweep };
}

/** A closed chain as the sweep lists it. */
type Closed = { workflowId: string; runId: string; closeTime: number };

/** How one chain of a sweep went. */
type Outcome = 'written' | 'anchored' | 'unchanged' | 'refused' | 'retry';

/** Closed executions one sweep takes at most, and how many it exports at a time. */
const SWEEP_BATCH = 200;
const SWEEP_CONCURRENCY = 8;
/** Proofs a sweep prepares, anchors (one log update) and writes at a time: bounds what it holds in memory. */
const SWEEP_CHUNK = 25;
/** Runs of one chain a proof carries at most (fetchChainHistories' bound). */
const MAX_RUNS = 10_000;
/** How long a sweep waits for its log to answer (its workers gone): then its chains are tried again. */
const ANCHOR_TIMEOUT_MS = 60_000;

/** Runs `fn(0..n-1)`, SWEEP_CONCURRENCY at a time. */
async function inPool(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const work = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) await fn(i);
  };
  await Promise.all(Array.from({ length: Math.min(SWEEP_CONCURRENCY, n) }, work));
}

/** The receipt as the log's input takes it (its fields only, checked), else undefined. */
function receiptInput(receipt: Record<string, unknown> | undefined): AppendCheckpointInput['receipt'] {
  if (!receipt) return undefined;
  const { seq, chainId, stepId, kind, digest, prevHash, hash, signature } = receipt;
  const parsed = AppendCheckpointInput.shape.receipt.safeParse({
    seq,
    chainId,
    ...(stepId !== undefined ? { stepId } : {}),
    kind,
    digest,
    prevHash,
    hash,
    signature,
  });
  return parsed.success ? parsed.data : undefined;
}

/** The run a proof ends with (its lineage's last): the run whose checkpoint the log anchors. */
function lastRunId(proof: Proof): string | undefined {
  return proof.runs?.find((r) => r.lineage === proof.histories.length - 1)?.runId;
}
/** How far before its position a sweep looks again (visibility records a close a moment after it happens). */
const SWEEP_OVERLAP_MS = 30_000;
/** Listing stops at this many and walks back to the oldest (Temporal lists newest closes first). */
const LIST_CAP = 2_000;

/** The governed chains and sessions of a task queue that closed at or after `from`, oldest first. */
async function listClosed(
  client: Client,
  taskQueue: string,
  from: Date,
): Promise<{ workflowId: string; runId: string; closeTime: number }[]> {
  const base =
    `TaskQueue = '${taskQueue}' AND WorkflowType IN ('${WORKFLOW_TYPE}', '${SESSION_WORKFLOW_TYPE}')` +
    ` AND ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew' AND CloseTime >= '${from.toISOString()}'`;
  let before: Date | undefined;
  for (;;) {
    const found: { workflowId: string; runId: string; closeTime: number }[] = [];
    const query = before ? `${base} AND CloseTime <= '${before.toISOString()}'` : base;
    for await (const w of client.workflow.list({ query })) {
      if (w.closeTime) found.push({ workflowId: w.workflowId, runId: w.runId, closeTime: w.closeTime.getTime() });
      if (found.length >= LIST_CAP) break;
    }
    found.sort((a, b) => a.closeTime - b.closeTime || a.workflowId.localeCompare(b.workflowId));
    // A backlog larger than one listing: walk back until the oldest closes are in hand.
    const oldest = found[0]?.closeTime;
    if (found.length < LIST_CAP || oldest === undefined || oldest <= from.getTime() || oldest === before?.getTime())
      return found;
    before = new Date(oldest);
  }
}

export type ArchiveActivities = ReturnType<typeof createArchiveActivities>;
