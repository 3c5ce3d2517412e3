import { ApplicationFailure, Context, sleep } from '@temporalio/activity';
import type { PayloadCodec } from '@temporalio/common';
import { archiveKeyOf, type ArchiveInput, type ArchiveResult } from '../contracts/archive';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { SESSION_WORKFLOW_TYPE } from '../contracts/session';
import { WORKFLOW_TYPE } from '../contracts/status';
import { loadPrivateKey, loadPublicJwks } from '../identity';
import { loadArchivedBundle } from '../policies/bundle-archive';
import { ArchiveConflict, exportProof, type ArchiveStore, type ProofAnchor } from '../audit/archive';
import { fetchChainHistories } from '../audit/verify';

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
  /** Called with the sealed proof before it is written (the transparency log's inclusion proof); default none. */
  anchor?: ProofAnchor;
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
        bundles: (digest) => loadArchivedBundle(deps.home, digest),
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

  return { archiveProof };
}

export type ArchiveActivities = ReturnType<typeof createArchiveActivities>;
