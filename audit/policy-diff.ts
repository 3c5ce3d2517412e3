import type { Client } from '@temporalio/client';
import type { Decision } from '../contracts/decision';
import { WORKFLOW_TYPE } from '../contracts/status';
import type { LoadedBundle } from '../policies/bundle';
import { decisionsDiffer } from '../policies/decision-diff';
import { PolicyEngine } from '../policies/engine';
import { decodeHistory, recordedDecisions, type History, type RecordedDecision } from './history';

/**
 * `governor policy diff`: re-evaluates the decisions recorded in past chains' histories against a
 * candidate bundle and lists the ones that would flip (see `decisionsDiffer`). Each recorded request
 * carries its own evaluation time, so the re-evaluation is deterministic.
 */

/** Which chains to read. `chains` (workflow ids) bypasses visibility; otherwise a visibility query. */
export interface DiffSelection {
  chains?: readonly string[];
  workload?: string;
  /** Extra visibility query, ANDed with the workflow type (e.g. `StartTime > '2025-01-01T00:00:00Z'`). */
  query?: string;
  /** Most chains (runs) to read from visibility; default 200. */
  limit?: number;
}

/** A recorded decision that the candidate would decide differently. */
export interface FlippedDecision {
  chainId: string;
  runId?: string;
  stepId: string;
  kind: string;
  eventId: number;
  recorded: Pick<Decision, 'effect' | 'bundleDigest' | 'determiningPolicies' | 'evaluatedAt'> & { reason?: string };
  candidate: Pick<Decision, 'effect' | 'determiningPolicies' | 'annotations' | 'errors'> & {
    reason?: string;
    escalation?: Decision['escalation'];
  };
}

/** What `policy diff` reports. */
export interface PolicyDiffReport {
  candidateDigest: string;
  /** Runs whose histories were read. */
  chains: number;
  /** Recorded decisions found. */
  decisions: number;
  /** Decisions re-evaluated against the candidate. */
  reEvaluated: number;
  /** Decisions that cannot be re-evaluated: verification failed before policy ran (no request recorded). */
  skipped: number;
  flipped: FlippedDecision[];
}

/** Re-evaluates recorded decisions against the candidate (pure). */
export function diffRecorded(
  engine: PolicyEngine,
  chainId: string,
  runId: string | undefined,
  recorded: readonly RecordedDecision[],
): { reEvaluated: number; skipped: number; flipped: FlippedDecision[] } {
  let reEvaluated = 0;
  let skipped = 0;
  const flipped: FlippedDecision[] = [];
  for (const r of recorded) {
    if (!r.request) {
      skipped += 1;
      continue;
    }
    reEvaluated += 1;
    const d = engine.decide(r.request);
    if (!decisionsDiffer(r.decision, d)) continue;
    flipped.push({
      chainId,
      ...(runId ? { runId } : {}),
      stepId: r.stepId,
      kind: r.kind,
      eventId: r.eventId,
      recorded: {
        effect: r.decision.effect,
        bundleDigest: r.decision.bundleDigest,
        determiningPolicies: r.decision.determiningPolicies,
        evaluatedAt: r.decision.evaluatedAt,
        ...(r.decision.reason !== undefined ? { reason: r.decision.reason } : {}),
      },
      candidate: {
        effect: d.effect,
        determiningPolicies: d.determiningPolicies,
        annotations: d.annotations,
        errors: d.errors,
        ...(d.reason !== undefined ? { reason: d.reason } : {}),
        ...(d.escalation !== undefined ? { escalation: d.escalation } : {}),
      },
    });
  }
  return { reEvaluated, skipped, flipped };
}

function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** Reads the selected chains' histories from Temporal and diffs their decisions against `candidate`. */
export async function diffRecordedDecisions(
  client: Client,
  candidate: LoadedBundle,
  selection: DiffSelection = {},
): Promise<PolicyDiffReport> {
  const engine = PolicyEngine.fromBundle(candidate);
  const runs: { chainId: string; runId?: string }[] = [];
  if (selection.chains && selection.chains.length > 0) {
    for (const chainId of selection.chains) runs.push({ chainId });
  } else {
    const clauses = [`WorkflowType = ${quote(WORKFLOW_TYPE)}`];
    if (selection.workload) clauses.push(`GovernorWorkload = ${quote(selection.workload)}`);
    if (selection.query) clauses.push(`(${selection.query})`);
    const limit = selection.limit ?? 200;
    for await (const wf of client.workflow.list({ query: clauses.join(' AND ') })) {
      runs.push({ chainId: wf.workflowId, runId: wf.runId });
      if (runs.length >= limit) break;
    }
  }
  const report: PolicyDiffReport = {
    candidateDigest: candidate.digest,
    chains: 0,
    decisions: 0,
    reEvaluated: 0,
    skipped: 0,
    flipped: [],
  };
  for (const run of runs) {
    // Decoded with the client's codecs (payload encryption); an encrypted history without them is an error.
    const history: History = await decodeHistory(
      await client.workflow.getHandle(run.chainId, run.runId).fetchHistory(),
      client.options.loadedDataConverter.payloadCodecs,
      run.chainId,
    );
    const recorded = recordedDecisions(history);
    const diff = diffRecorded(engine, run.chainId, run.runId, recorded);
    report.chains += 1;
    report.decisions += recorded.length;
    report.reEvaluated += diff.reEvaluated;
    report.skipped += diff.skipped;
    report.flipped.push(...diff.flipped);
  }
  return report;
}
