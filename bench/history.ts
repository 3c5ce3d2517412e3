import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { createReplayer, fetchChainHistories, verifyChain, type HistoryJson } from '../audit/verify';
import { nowMs, round } from './stats';

/** `governor verify` over one chain (every run), timed, beside plain deterministic replay of the same histories. */
export interface HistoryFigures {
  label: string;
  steps: number;
  runs: number;
  events: number;
  /** Sum of payload bytes in the histories (base64-decoded). */
  payloadBytes: number;
  /** Per 1,000 history events, in ms. */
  perThousandEvents: {
    /** Fetching every run (`fetchChainHistories`). */
    fetchMs: number;
    /** `verifyChain` with a warm replayer: replay, receipts, checkpoint, bindings, decisions re-evaluated. */
    verifyMs: number;
    /** Baseline: `Worker.runReplayHistory` of the same runs, warm. */
    replayAloneMs: number;
    totalMs: number;
  };
  verdict: string;
  decisionsReEvaluated: number;
  receiptsChecked: number;
}

/** Runs `governor verify`'s check over the chain's histories with the worker's home (receipt key, bundle archive). */
export async function benchHistory(
  client: Client,
  chainId: string,
  steps: number,
  home: string,
  bundlePath: string,
): Promise<HistoryFigures> {
  let t0 = nowMs();
  const histories = await fetchChainHistories(client, chainId);
  const fetchMs = nowMs() - t0;
  const events = histories.reduce((n, h) => n + ((h.events as unknown[] | undefined)?.length ?? 0), 0);
  let payloadBytes = 0;
  JSON.stringify(histories, (key, value: unknown) => {
    if (key === 'data' && typeof value === 'string') payloadBytes += Buffer.from(value, 'base64').length;
    return value;
  });

  const replayer = createReplayer({ workflowBundle: { codePath: bundlePath } });
  try {
    // Warm the replay worker on copies that differ only in an inert field, so the measured run is not a cache hit.
    for (const h of histories) {
      const copy = JSON.parse(JSON.stringify(h)) as HistoryJson;
      const first = (copy.events as Record<string, Record<string, unknown>>[])[0]!;
      first.workflowExecutionStartedEventAttributes = {
        ...first.workflowExecutionStartedEventAttributes,
        identity: 'bench-warm-up',
      };
      await replayer.replay(copy, chainId);
    }
    t0 = nowMs();
    const report = await verifyChain({ histories, chainId, home, replayer });
    const verifyMs = nowMs() - t0;
    if (report.verdict !== 'verified')
      throw new Error(
        `verify did not verify the bench chain: ${report.checks
          .filter((c) => !c.ok)
          .map((c) => c.detail)
          .join('; ')}`,
      );

    const messages = histories.map((h) => temporal.api.history.v1.History.fromObject(h));
    for (const m of messages) await Worker.runReplayHistory({ workflowBundle: { codePath: bundlePath } }, m, chainId);
    t0 = nowMs();
    for (const m of messages) await Worker.runReplayHistory({ workflowBundle: { codePath: bundlePath } }, m, chainId);
    const replayMs = nowMs() - t0;

    const per = (ms: number): number => round((ms / events) * 1000);
    return {
      label:
        '`governor verify` (verifyChain: replay, receipts, checkpoint, bindings, re-evaluated decisions) with a warm replay worker',
      steps,
      runs: histories.length,
      events,
      payloadBytes,
      perThousandEvents: {
        fetchMs: per(fetchMs),
        verifyMs: per(verifyMs),
        replayAloneMs: per(replayMs),
        totalMs: per(fetchMs + verifyMs),
      },
      verdict: report.verdict,
      decisionsReEvaluated: report.decisions,
      receiptsChecked: report.receipts,
    };
  } finally {
    await replayer.close();
  }
}
