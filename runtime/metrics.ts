import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The governor's Prometheus metrics (DESIGN §12). Recorded by the worker's activities and its own code,
 * never by workflow code (a workflow replays; a metric recorded there would count every replay).
 *
 * Label values are bounded: effects, kinds, executor types and chain statuses are fixed sets; reasons
 * are classified into fixed categories (never the free text of an error, which may quote input);
 * policy ids come from the active bundle and are capped at `MAX_POLICY_LABELS` distinct values (later
 * ones count as `other`). No token, input value, workload name or secret is ever a label value.
 */

/** Distinct policy ids kept as label values; beyond that a policy counts as `other`. */
export const MAX_POLICY_LABELS = 200;

/** The reasons a credential or attestation is refused, as label values. */
export const TOKEN_FAILURE_REASONS = [
  'missing',
  'malformed',
  'expired',
  'not_yet_valid',
  'issuer_untrusted',
  'algorithm',
  'signature',
  'claims',
  'subject_mismatch',
  'stale',
  'replayed',
  'revoked',
  'other',
] as const;
export type TokenFailureReason = (typeof TOKEN_FAILURE_REASONS)[number];

/** The reasons a vote is rejected, as label values. */
export const VOTE_REJECTION_REASONS = [
  'invalid_token',
  'other_chain',
  'other_step',
  'step_changed',
  'wrong_direction',
  'separation_of_duties',
  'break_glass_unjustified',
  'role_not_eligible',
  'no_bundle',
  'other',
] as const;
export type VoteRejectionReason = (typeof VOTE_REJECTION_REASONS)[number];

/** Classifies a credential/attestation refusal message into a fixed category (the text never becomes a label). */
export function classifyTokenFailure(message: string): TokenFailureReason {
  const m = message.toLowerCase();
  if (m.includes('replay')) return 'replayed';
  if (m.includes('revoked')) return 'revoked';
  if (m.includes('stale')) return 'stale';
  if (m.includes('expired')) return 'expired';
  if (m.includes('not yet valid') || m.includes('in the future')) return 'not_yet_valid';
  if (m.includes('is missing')) return 'missing';
  if (m.includes('malformed') || m.includes('exceeds') || m.includes('header') || m.includes('type not accepted'))
    return 'malformed';
  if (m.includes('issuer not trusted')) return 'issuer_untrusted';
  if (m.includes('algorithm') || m.includes('unsigned')) return 'algorithm';
  if (m.includes('signature')) return 'signature';
  if (m.includes('subject')) return 'subject_mismatch';
  if (m.includes('claim')) return 'claims';
  return 'other';
}

/** Classifies a vote rejection reason (`judgeVote`'s text) into a fixed category. */
export function classifyVoteRejection(reason: string | undefined): VoteRejectionReason {
  const m = (reason ?? '').toLowerCase();
  if (m.includes('another chain')) return 'other_chain';
  if (m.includes('another step')) return 'other_step';
  if (m.includes('different version')) return 'step_changed';
  if (m.includes('signal carried')) return 'wrong_direction';
  if (m.includes('may not approve')) return 'separation_of_duties';
  if (m.includes('break-glass')) return 'break_glass_unjustified';
  if (m.includes('eligible roles')) return 'role_not_eligible';
  if (m.includes('no valid policy bundle')) return 'no_bundle';
  if (m.startsWith('approval')) return 'invalid_token';
  return 'other';
}

/** Keeps at most `max` distinct values of one label; later values map to `other`. */
export class BoundedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  value(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(v);
    return v;
  }
}

/** A policy bundle as the `governor_policy_bundle_active` gauge reports it. */
export interface BundleInfo {
  role: 'active' | 'shadow';
  name: string;
  digest: string;
}

/** Open chains by status (from Temporal visibility), or undefined when unknown. */
export type OpenChainsSource = () => Promise<Record<string, number> | undefined>;

/** Options of `GovernorMetrics`. */
export interface GovernorMetricsOptions {
  /** The bundles in use now (read at every scrape). */
  bundles?: () => BundleInfo[];
  /** Open chains by status (read at every scrape, the caller caches). */
  openChains?: OpenChainsSource;
  /** Node.js process metrics (CPU, memory, event loop lag). Default true. */
  processMetrics?: boolean;
}

/** The governor's metrics on one prom-client registry. */
export class GovernorMetrics {
  readonly registry = new Registry();
  private readonly policyLabel = new BoundedLabel(MAX_POLICY_LABELS);
  readonly decisions: Counter<'effect' | 'kind'>;
  readonly decisionPolicies: Counter<'effect' | 'policy'>;
  readonly decisionSeconds: Histogram<'effect'>;
  readonly chainsFinished: Counter<'status'>;
  readonly stepsExecuted: Counter<'executor' | 'kind' | 'outcome'>;
  readonly votes: Counter<'counted'>;
  readonly votesRejected: Counter<'reason'>;
  readonly timeToApproval: Histogram;
  readonly receiptSigningFailures: Counter<'kind'>;
  readonly tokenFailures: Counter<'token' | 'reason'>;
  readonly decisionLogErrors: Counter<'sink'>;
  readonly decisionLogDropped: Counter<'sink'>;

  private bundles: (() => BundleInfo[]) | undefined;
  private openChains: OpenChainsSource | undefined;

  constructor(options: GovernorMetricsOptions = {}) {
    const registers = [this.registry];
    this.bundles = options.bundles;
    this.openChains = options.openChains;
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'governor_' });
    this.decisions = new Counter({
      name: 'governor_decisions_total',
      help: 'Decisions made, by effect and kind (step or compensation).',
      labelNames: ['effect', 'kind'],
      registers,
    });
    this.decisionPolicies = new Counter({
      name: 'governor_decision_policies_total',
      help: 'Decisions by effect and determining policy (one count per determining policy; "none" when no policy determined it, e.g. a verification deny).',
      labelNames: ['effect', 'policy'],
      registers,
    });
    this.decisionSeconds = new Histogram({
      name: 'governor_decision_duration_seconds',
      help: 'Time to decide (verification, policy evaluation, receipt signing), by effect.',
      labelNames: ['effect'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.chainsFinished = new Counter({
      name: 'governor_chains_finished_total',
      help: 'Chains that reached a final status (counted when their final checkpoint is signed), by status.',
      labelNames: ['status'],
      registers,
    });
    const open: Gauge<'status'> = new Gauge({
      name: 'governor_chains_open',
      help: 'Chains not yet finished on this task queue, by status (Temporal visibility; the same fleet-wide number on every worker).',
      labelNames: ['status'],
      registers,
      collect: async () => {
        const counts = this.openChains ? await this.openChains() : undefined;
        open.reset();
        for (const [status, n] of Object.entries(counts ?? {})) open.set({ status }, n);
      },
    });
    const waiting: Gauge = new Gauge({
      name: 'governor_approvals_waiting',
      help: 'Chains waiting for an approval on this task queue (Temporal visibility, fleet-wide).',
      registers,
      collect: async () => {
        const counts = this.openChains ? await this.openChains() : undefined;
        waiting.reset();
        if (counts && counts.AwaitingApproval !== undefined) waiting.set(counts.AwaitingApproval);
      },
    });
    this.stepsExecuted = new Counter({
      name: 'governor_steps_executed_total',
      help: 'Built-in executions run by this worker (noop, http), by executor type, kind and outcome.',
      labelNames: ['executor', 'kind', 'outcome'],
      registers,
    });
    this.votes = new Counter({
      name: 'governor_approval_votes_total',
      help: 'Approval votes verified, by whether they counted.',
      labelNames: ['counted'],
      registers,
    });
    this.votesRejected = new Counter({
      name: 'governor_approval_votes_rejected_total',
      help: 'Approval votes rejected, by reason category.',
      labelNames: ['reason'],
      registers,
    });
    this.timeToApproval = new Histogram({
      name: 'governor_time_to_approval_seconds',
      help: 'From the escalation decision to the first counted approving vote (both seen by this worker).',
      buckets: [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600],
      registers,
    });
    this.receiptSigningFailures = new Counter({
      name: 'governor_receipt_signing_failures_total',
      help: 'Receipts that could not be signed (key unreadable, signing error), by receipt kind.',
      labelNames: ['kind'],
      registers,
    });
    this.tokenFailures = new Counter({
      name: 'governor_token_failures_total',
      help: 'Credentials and attestations refused at a decision, by token and reason category.',
      labelNames: ['token', 'reason'],
      registers,
    });
    const bundle: Gauge<'role' | 'name' | 'digest'> = new Gauge({
      name: 'governor_policy_bundle_active',
      help: 'The policy bundles in use (1 per bundle), labelled with role, manifest name and digest.',
      labelNames: ['role', 'name', 'digest'],
      registers,
      collect: () => {
        bundle.reset();
        for (const b of this.bundles ? this.bundles() : [])
          bundle.set({ role: b.role, name: b.name, digest: b.digest }, 1);
      },
    });
    this.decisionLogErrors = new Counter({
      name: 'governor_decision_log_errors_total',
      help: 'Decision log writes that failed (the decisions themselves are unaffected), by sink.',
      labelNames: ['sink'],
      registers,
    });
    this.decisionLogDropped = new Counter({
      name: 'governor_decision_log_dropped_total',
      help: 'Decision log lines dropped (buffer full or retries exhausted), by sink.',
      labelNames: ['sink'],
      registers,
    });
  }

  /** Sets where the scrape-time gauges read from (known once the worker is built). */
  setSources(sources: { bundles?: () => BundleInfo[]; openChains?: OpenChainsSource }): void {
    if (sources.bundles) this.bundles = sources.bundles;
    if (sources.openChains) this.openChains = sources.openChains;
  }

  private readonly children = new Map<string, { inc(n?: number): void }>();
  private readonly timers = new Map<string, { observe(v: number): void }>();

  /**
   * Counts one decision: by effect and kind, by determining policy, and its duration. The label
   * children are bound once per label set (no label hashing per decision).
   */
  recordDecision(effect: string, kind: string, policies: readonly string[], seconds: number): void {
    this.child(this.decisions, `d\u0000${effect}\u0000${kind}`, { effect, kind }).inc();
    if (policies.length === 0)
      this.child(this.decisionPolicies, `p\u0000${effect}\u0000`, { effect, policy: 'none' }).inc();
    for (const p of policies) {
      const policy = this.policy(p);
      this.child(this.decisionPolicies, `p\u0000${effect}\u0000${policy}`, { effect, policy }).inc();
    }
    let timer = this.timers.get(effect);
    if (!timer) {
      timer = this.decisionSeconds.labels({ effect });
      this.timers.set(effect, timer);
    }
    timer.observe(seconds);
  }

  private child<L extends string>(
    counter: Counter<L>,
    key: string,
    labels: Record<L, string>,
  ): { inc(n?: number): void } {
    let c = this.children.get(key);
    if (!c) {
      c = counter.labels(labels as never);
      this.children.set(key, c);
    }
    return c;
  }

  /** A policy id as a label value (bounded). */
  policy(id: string): string {
    return this.policyLabel.value(id);
  }
}

/** Fetches the Temporal SDK's own metrics (Core's Prometheus exporter on loopback), or '' when unavailable. */
export async function fetchSdkMetrics(address: string | undefined, timeoutMs = 2000): Promise<string> {
  if (!address) return '';
  try {
    const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok ? await res.text() : '';
  } catch {
    return '';
  }
}
