import { temporal } from '@temporalio/proto';
import { Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { LRUCache } from 'lru-cache';
import { canonicalJson, sha256Hex } from '../../core/canonical';
import type { HistoryJson } from './history-fetch';
import { oneLine } from './util';

/* Replaying histories with the current workflow code: the only part of the verifier that needs `@temporalio/worker`. */

/** The outcome of replaying one history with the current workflow code. */
export type ReplayOutcome = { ok: true } | { ok: false; error: string };

/** Replays histories with one long-lived replay worker; results are cached by history content. */
export interface Replayer {
  /**
   * Replays `history` (stable JSON form). The same content (canonical JSON) is replayed once and
   * its outcome cached: replay is a pure function of the history and the workflow code, which is
   * fixed for the replayer's lifetime. `canonical`, when given, must be `canonicalJson(history)`
   * (callers that already computed it save a serialisation).
   */
  replay(history: HistoryJson, workflowId: string, canonical?: string): Promise<ReplayOutcome>;
  /** Stops the replay worker. */
  close(): Promise<void>;
}

interface QueuedReplay {
  workflowId: string;
  history: temporal.api.history.v1.History;
  resolve: (outcome: ReplayOutcome) => void;
}

/**
 * A replayer on `Worker.runReplayHistories`: one replay worker fed from a queue, so verifying many
 * chains (or one proof many times) does not pay for a worker per history. When the replay worker
 * itself fails (Core rejects a malformed history), the history in flight fails and the next one
 * starts a fresh worker.
 */
export function createReplayer(options: { workflowBundle?: WorkflowBundleOption } = {}): Replayer {
  // The governor worker's payload converter: a history holding an undecodable payload replays as it ran.
  const dataConverter = { payloadConverterPath: require.resolve('../../runtime/payload-converter') };
  const workerOptions = options.workflowBundle
    ? { workflowBundle: options.workflowBundle, dataConverter }
    : { workflowsPath: require.resolve('../../workflows'), dataConverter };
  const cache = new LRUCache<string, Promise<ReplayOutcome>>({ max: 10_000 });
  const queue: QueuedReplay[] = [];
  let inFlight: QueuedReplay | undefined;
  let wake: (() => void) | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  async function* feed(): AsyncGenerator<{ workflowId: string; history: temporal.api.history.v1.History }> {
    for (;;) {
      while (queue.length === 0) {
        if (closed) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      inFlight = queue.shift()!;
      yield { workflowId: inFlight.workflowId, history: inFlight.history };
    }
  }

  const start = (): void => {
    running = (async () => {
      try {
        for await (const result of Worker.runReplayHistories(workerOptions, feed())) {
          const done = inFlight;
          inFlight = undefined;
          done?.resolve(result.error ? { ok: false, error: oneLine(result.error.message) } : { ok: true });
        }
      } catch (err) {
        const done = inFlight;
        inFlight = undefined;
        done?.resolve({
          ok: false,
          error: `the replay worker rejected the history: ${oneLine((err as Error)?.message ?? String(err))}`,
        });
      } finally {
        running = undefined;
        if (queue.length > 0 && !closed) start();
      }
    })();
  };

  return {
    replay(history, workflowId, canonical) {
      let key: string;
      let message: temporal.api.history.v1.History;
      try {
        key = sha256Hex(`${workflowId}\n${canonical ?? canonicalJson(history)}`);
        const cached = cache.get(key);
        if (cached) return cached;
        message = temporal.api.history.v1.History.fromObject(history);
      } catch (err) {
        return Promise.resolve({ ok: false, error: `not a history: ${oneLine((err as Error).message)}` });
      }
      if (closed) return Promise.resolve({ ok: false, error: 'the replayer is closed' });
      const outcome = new Promise<ReplayOutcome>((resolve) => queue.push({ workflowId, history: message, resolve }));
      cache.set(key, outcome);
      if (!running) start();
      wake?.();
      return outcome;
    },
    async close() {
      closed = true;
      wake?.();
      await running;
      for (const q of queue.splice(0)) q.resolve({ ok: false, error: 'the replayer is closed' });
    },
  };
}
