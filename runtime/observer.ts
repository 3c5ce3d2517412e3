import { LRUCache } from 'lru-cache';
import type { VoteVerdict } from '../contracts/approval';
import type { Decision } from '../contracts/decision';
import type { DecisionLogLine } from '../contracts/decision-log';
import type { Receipt, ReceiptKind } from '../contracts/receipt';
import { TERMINAL_STATUSES, type ChainStatus } from '../contracts/status';
import type { DecisionLog } from './decision-log';
import { classifyTokenFailure, classifyVoteRejection, type GovernorMetrics } from './metrics';

/**
 * What the governor's activities report as they work (metrics, decision log). Called from activity
 * code only, never from workflows. Every method is total: it never throws and never waits, so an
 * observer that fails can never change a decision, an execution or a receipt.
 */
export interface ActivityObserver {
  /** A decision was made and its receipt signed (reported once per `authorize`/`governStep` attempt that returns). */
  decided(d: DecisionSeen): void;
  /** A built-in executor ran (or failed). */
  executed(e: { executor: string; kind: 'step' | 'compensation'; outcome: 'ok' | 'error' }): void;
  /** An approval vote was judged. */
  voted(v: { chainId: string; stepId: string; verdict: VoteVerdict }): void;
  /** A receipt could not be signed. */
  receiptFailed(kind: ReceiptKind | 'key-unavailable'): void;
  /** A receipt was signed (checkpoints with a final status count the chain as finished). */
  receiptSigned(kind: ReceiptKind, payload: unknown): void;
}

/** One decision as the observer sees it: identifiers and outcome only (no token, input or context). */
export interface DecisionSeen {
  chainId: string;
  stepId: string;
  kind: 'step' | 'compensation';
  workload: string;
  action: string;
  resource: { type: string; id: string };
  decision: Decision;
  receipt: Receipt;
  durationMs: number;
  attempt: number;
}

const TERMINAL = new Set<string>(TERMINAL_STATUSES);

/** Metrics + decision log. */
export class GovernorObserver implements ActivityObserver {
  /** Escalations seen by this worker, for the time to approval (bounded). */
  private readonly escalatedAt = new LRUCache<string, number>({ max: 10_000 });

  constructor(private readonly parts: { metrics?: GovernorMetrics; decisionLog?: DecisionLog; now?: () => number }) {}

  private now(): number {
    return this.parts.now ? this.parts.now() : Date.now();
  }

  decided(d: DecisionSeen): void {
    const { metrics, decisionLog } = this.parts;
    const { effect } = d.decision;
    try {
      if (metrics) {
        metrics.recordDecision(effect, d.kind, d.decision.determiningPolicies, d.durationMs / 1000);
        const reason = d.decision.errors[0];
        if (reason !== undefined) {
          const token = /^(the )?credential/i.test(reason)
            ? 'credential'
            : /^(the )?attestation/i.test(reason)
              ? 'attestation'
              : undefined;
          if (token) metrics.tokenFailures.inc({ token, reason: classifyTokenFailure(reason) });
        }
      }
      if (effect === 'escalate') this.escalatedAt.set(`${d.chainId}\u0000${d.stepId}`, this.now());
    } catch {
      // metrics never change a decision
    }
    if (decisionLog?.enabled) {
      try {
        decisionLog.write(decisionLogLine(d));
      } catch {
        metrics?.decisionLogErrors.inc({ sink: 'all' });
      }
    }
  }

  executed(e: { executor: string; kind: 'step' | 'compensation'; outcome: 'ok' | 'error' }): void {
    try {
      const executor = ['noop', 'http', 'activity', 'mcp'].includes(e.executor) ? e.executor : 'other';
      this.parts.metrics?.stepsExecuted.inc({ executor, kind: e.kind, outcome: e.outcome });
    } catch {
      // never fails the execution
    }
  }

  voted(v: { chainId: string; stepId: string; verdict: VoteVerdict }): void {
    const metrics = this.parts.metrics;
    if (!metrics) return;
    try {
      metrics.votes.inc({ counted: String(v.verdict.counted) });
      if (!v.verdict.counted) metrics.votesRejected.inc({ reason: classifyVoteRejection(v.verdict.reason) });
      else if (v.verdict.decision === 'approve') {
        const key = `${v.chainId}\u0000${v.stepId}`;
        const since = this.escalatedAt.get(key);
        if (since !== undefined) {
          metrics.timeToApproval.observe(Math.max(0, this.now() - since) / 1000);
          this.escalatedAt.delete(key);
        }
      }
    } catch {
      // never changes the verdict
    }
  }

  receiptFailed(kind: ReceiptKind | 'key-unavailable'): void {
    try {
      this.parts.metrics?.receiptSigningFailures.inc({ kind });
    } catch {
      // counted best effort
    }
  }

  receiptSigned(kind: ReceiptKind, payload: unknown): void {
    if (kind !== 'checkpoint' || !this.parts.metrics) return;
    try {
      const status = (payload as { status?: unknown } | null)?.status;
      if (typeof status === 'string' && TERMINAL.has(status))
        this.parts.metrics.chainsFinished.inc({ status: status as ChainStatus });
    } catch {
      // counted best effort
    }
  }
}

/** The decision log line of a decision (identifiers and outcome only). */
export function decisionLogLine(d: DecisionSeen): DecisionLogLine {
  return {
    decisionId: `${d.chainId}#${d.receipt.seq}`,
    time: d.decision.evaluatedAt || new Date().toISOString(),
    chainId: d.chainId,
    stepId: d.stepId,
    kind: d.kind,
    workload: d.workload,
    action: d.action,
    resource: { type: d.resource.type, id: d.resource.id },
    effect: d.decision.effect,
    determiningPolicies: [...d.decision.determiningPolicies],
    failClosed: d.decision.errors.length > 0,
    bundleDigest: d.decision.bundleDigest,
    receiptHash: d.receipt.hash,
    receiptSeq: d.receipt.seq,
    attempt: d.attempt,
    durationMs: Math.round(d.durationMs * 1000) / 1000,
  };
}
