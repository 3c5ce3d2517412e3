import {
  CancellationScope,
  getExternalWorkflowHandle,
  log,
  proxyLocalActivities,
  setCurrentDetails,
  sleep,
  workflowInfo,
  type LocalActivityOptions,
} from '@temporalio/workflow';
import { COORDINATOR_LOCAL_ACTIVITY } from '../retry';
import type { AdmitResult, DomainRules, GovernorActivities } from '../../activities';
import {
  slotRequestId,
  slotVerdictSignal,
  type CarriedTie,
  type CoordinatorCarry,
  type CoordinatorInboxItem,
  type CoordinatorInput,
  type CoordinatorState,
  type PendingTie,
  type QueueEntry,
  type SlotHolder,
  type SlotRelease,
  type SlotRequest,
  type SlotVerdict,
  type SlotWithdraw,
  type TieBreakSubmission,
  type TieBreakVerdict,
} from '../../contracts/coordination';
import { durationMs } from '../../contracts/duration';
import { GENESIS_HASH, type Receipt, type ReceiptHead } from '../../contracts/receipt';
import { resolveBatch, settleTie, staleness, type ConflictRules, type Contender } from '../coordination-order';
import { failureMessage } from '../failure';

/*
 * The state of one domain's coordinator and one method per event (DESIGN §4 step 4). Deterministic code
 * only: admission (seals, authority, rules), receipt signing and vote verification run in local
 * activities recorded in history. `coordinatorWorkflow` (workflows/coordinator.ts) wires the message
 * handlers to it, runs the loop and continues as new.
 *
 * Model: requests arriving within the domain's batching window form a batch; a batch is ordered and
 * its conflicts settled by the pure `resolveBatch`, then appended to the domain's queue (batches stay
 * in arrival order). Grants are serialized per domain: the queue head is granted when the previous
 * holder released its slot (or lost it at its hold timeout). A pending tie at the head holds the queue
 * until the tie-breaker role chooses or the decision deadline passes.
 *
 * Events only change state and `record` what happened; `flush` signs the recorded events into the
 * coordinator's receipt chain and sends the verdicts, `publish` shows the state in the UI. Those two
 * are the only places that produce output.
 *
 * Patch COORDINATOR_VALIDATION_PATCH (contracts/patches.ts; `validated` below): the input, carried
 * state included, is parsed in the sandbox (invalid: the run fails at once with a non-retryable
 * GOVERNOR_INVALID_INPUT naming the field; a carry is accepted only by a run that continued as new);
 * the holder records its grant time and the hold timeout runs from it across continue-as-new; pending
 * ties are carried with their deadline instead of holding continue-as-new back; verdicts carry their
 * signed receipt. Runs without the marker keep the old behaviour, so their histories replay.
 *
 * Times are governor time from local activity results (`signCoordinationReceipts().signedAt` for a
 * grant, `admitSlotRequests().now` at a run's start and for a tie's deadline), recorded in history.
 * Not `Date.now()` in the sandbox: it is workflow time, but after a local activity core moves it to
 * the activity's completion time, and a replay that has already applied the next task's start keeps
 * that later time instead (only ever moved forward). Observed on the dev server: a grant time taken
 * with `Date.now()` came out 113 ms later in the replayed run than in the run that was queried.
 *
 * Every `await` here and in the workflow's loop is where it was when the histories in
 * test/replay/coordinator were recorded: an extra or missing one can move a timer's callback before or
 * after a step that reads its flag, and so change the commands a replayed task issues.
 */

const governor = proxyLocalActivities<GovernorActivities>(COORDINATOR_LOCAL_ACTIVITY);
const withSummary = (summary: string): LocalActivityOptions => ({ ...COORDINATOR_LOCAL_ACTIVITY, summary });

/** Verdicts the state query shows (and a waiting client can find its own among). */
const RECENT_VERDICTS = 50;
/** Request ids remembered as decided, so a repeated request is ignored. */
const DECIDED_IDS = 1000;
/** Hold timeout while the domain's rules are unknown. */
const DEFAULT_HOLD_MS = 3_600_000;

/** An open tie as the coordinator keeps it. */
type OpenTie = PendingTie & { expired: boolean; rules: ConflictRules };

/** An event to sign into the coordinator's receipt chain, and the verdict it backs (sent once signed). */
interface Outgoing {
  stepId: string;
  payload: Record<string, unknown>;
  verdict?: SlotVerdict;
  onSigned?: (receipt: Receipt, signedAt: string | undefined) => void;
}

/** The batch being collected: closed when its batching window has passed (`due`). */
interface OpenBatch {
  seq: number;
  requests: SlotRequest[];
  due: boolean;
}

/** The admitted requests of a batch by request id, with the authority their admission found. */
type Admitted = Map<string, { r: SlotRequest; authority: number }>;
/** A request of a batch that was not admitted, and why. */
interface Refusal {
  requestId: string;
  reason: string;
}

const requestIdOf = (r: { chainId: string; stepId: string }): string => slotRequestId(r.chainId, r.stepId);

const contenderOf = (r: SlotRequest, authority: number): Contender => ({
  requestId: requestIdOf(r),
  action: r.action,
  resource: r.resource,
  authority,
  priority: r.priority,
  requestDigest: r.requestDigest,
  ...(r.plannedVersion !== undefined ? { plannedVersion: r.plannedVersion } : {}),
});

/** Orders and arbitrates the actions of chains on one coordination domain, for one run. */
export class Coordinator {
  readonly domain: string;
  /** The coordinator's workflow id (`coordinatorId(taskQueue, domain)`). */
  readonly self: string;
  /** Messages in arrival (history) order; the workflow's loop takes them with `nextMessage`. */
  readonly inbox: CoordinatorInboxItem[];
  /** True while the loop settles a round (the state query says `settled: false`). */
  settling = false;

  // ---- carried across continue-as-new ---------------------------------------------------------
  private head: ReceiptHead;
  private readonly queue: QueueEntry[];
  private holder: SlotHolder | undefined;
  private readonly versions: Record<string, number>;
  private readonly recent: SlotVerdict[];
  private readonly decided: string[];
  private readonly decidedSet: Set<string>;
  private readonly counters: CoordinatorCarry['counters'];
  private readonly runs: number;
  /** Open ties; ties carried by a patched run stay open and their timers start once this run knows the time. */
  private readonly ties: OpenTie[];

  // ---- this run only ----------------------------------------------------------------------------
  private rules: DomainRules | undefined;
  private bundleDigest: string | undefined;
  private receiptFailure: string | undefined;
  private batch: OpenBatch | undefined;
  private readonly votes: { seq: number; submission: TieBreakSubmission }[] = [];
  private readonly voteResults = new Map<number, TieBreakVerdict>();
  private voteSeq = 0;
  private holdExpired = false;
  private holdTimer: CancellationScope | undefined;
  private handled = 0;
  private readonly outgoing: Outgoing[] = [];
  private published = '';

  /**
   * @param input the parsed input (patched runs) or the raw one (older runs)
   * @param validated whether this run took COORDINATOR_VALIDATION_PATCH (decided once, before anything else)
   */
  constructor(
    private readonly input: CoordinatorInput,
    private readonly validated: boolean,
  ) {
    this.domain = input.domain;
    this.self = workflowInfo().workflowId;
    const carried = input.carry;
    this.head = carried?.head ?? { seq: 0, hash: GENESIS_HASH };
    this.inbox = [...(carried?.inbox ?? [])];
    this.queue = [...(carried?.queue ?? [])];
    this.holder = carried?.holder;
    this.versions = { ...(carried?.versions ?? {}) };
    this.recent = [...(carried?.recent ?? [])];
    this.decided = [...(carried?.decided ?? [])];
    this.decidedSet = new Set(this.decided);
    this.counters = { ...(carried?.counters ?? { batch: 0, order: 0, tie: 0, grant: 0 }) };
    this.runs = carried?.runs ?? 1;
    this.ties = (carried?.ties ?? []).map((t) => ({ ...t, expired: false }));
  }

  // ---- messages ---------------------------------------------------------------------------------

  /** Queues a tie-break vote (signal or update) for the loop; returns its sequence number. */
  enqueueVote(submission: TieBreakSubmission): number {
    const seq = ++this.voteSeq;
    this.votes.push({ seq, submission });
    return seq;
  }

  /** The verdict on vote `seq`, once the loop has processed it. */
  voteResult(seq: number): TieBreakVerdict | undefined {
    return this.voteResults.get(seq);
  }

  /** Whether `tieId` is open (the `chooseWinner` update's validator refuses a vote for any other). */
  hasOpenTie(tieId: string): boolean {
    return this.ties.some((t) => t.tieId === tieId);
  }

  /** The next message to handle (counted: a run that handled none does not continue as new). */
  nextMessage(): CoordinatorInboxItem | undefined {
    if (this.inbox.length === 0) return undefined;
    this.handled++;
    return this.inbox.shift()!;
  }

  /** What `coordinatorState` answers. */
  state(): CoordinatorState {
    const { batch, holder, bundleDigest, receiptFailure } = this;
    return {
      coordinatorId: this.self,
      domain: this.domain,
      runs: this.runs,
      collecting: batch?.requests.map((r) => slotRequestId(r.chainId, r.stepId)) ?? [],
      queue: this.queue.map((e, i) => ({ ...e, position: i + 1 })),
      ...(holder ? { holder } : {}),
      versions: this.versions,
      ties: this.ties.map(({ expired: _e, rules: _r, ...t }) => t),
      recent: this.recent,
      receiptHead: this.head,
      batches: this.counters.batch,
      settled: !this.settling,
      ...(bundleDigest !== undefined ? { bundleDigest } : {}),
      ...(receiptFailure !== undefined ? { receiptFailure } : {}),
    };
  }

  // ---- the loop's questions -----------------------------------------------------------------------

  /** Whether the loop has something to do. */
  hasWork(): boolean {
    return (
      this.inbox.length > 0 ||
      this.batch?.due === true ||
      this.votes.length > 0 ||
      this.ties.some((t) => t.expired) ||
      this.holdExpired ||
      (!this.holder && this.queue[0]?.state === 'queued')
    );
  }

  /** Whether the batching window of the open batch has passed. */
  batchDue(): boolean {
    return this.batch?.due === true;
  }

  /**
   * Whether to continue as new now: something was handled, no batching window is open, nothing is
   * waiting to be processed or signed, and the server suggests it (or the test limit is reached).
   */
  continueAsNewDue(): boolean {
    const limit = this.input.options?.continueAsNewAfterEvents;
    return (
      this.handled > 0 &&
      !this.batch &&
      this.tiesCarried() &&
      this.votes.length === 0 &&
      this.outgoing.length === 0 &&
      (workflowInfo().continueAsNewSuggested || (limit !== undefined && workflowInfo().historyLength >= limit))
    );
  }

  /**
   * Patched runs carry open ties with their deadlines (every tie has one: ties come from an
   * admission, which reports its time); older runs wait until none is open.
   */
  private tiesCarried(): boolean {
    return this.validated ? this.ties.every((t) => t.deadlineAt !== undefined) : this.ties.length === 0;
  }

  // ---- rules and timers ---------------------------------------------------------------------------

  /** Loads the domain's current rules and admits `requests` (undefined: the activity failed; fail closed). */
  async admit(requests: SlotRequest[]): Promise<AdmitResult | undefined> {
    try {
      const result = await governor.admitSlotRequests.executeWithOptions(
        withSummary(`admit ${requests.length} request(s) to ${this.domain}`),
        [{ domain: this.domain, requests }],
      );
      this.rules = result.rules;
      this.bundleDigest = result.bundleDigest;
      return result;
    } catch (err) {
      log.warn('coordination admission failed', { domain: this.domain, error: failureMessage(err) });
      return undefined;
    }
  }

  /**
   * At a run's start, with the admission that loaded the rules (`started`, undefined if it failed):
   * times out the carried holder and the carried ties.
   */
  startCarriedTimers(started: AdmitResult | undefined): void {
    const startedAt = started ? Date.parse(started.now) : undefined;
    if (this.holder && this.validated) {
      // The hold timeout runs from the grant, not from this run's start: sleep only what remains. A
      // carry without a grant time (older run, or the grant receipt was not signed) counts from this
      // run's start, as before, and records it so the next run does not start over again.
      const grantedAt = this.holder.grantedAt ?? started?.now;
      if (grantedAt !== undefined) this.holder = { ...this.holder, grantedAt };
      const ms =
        grantedAt !== undefined && startedAt !== undefined
          ? Date.parse(grantedAt) + this.holdTimeoutMs() - startedAt
          : this.holdTimeoutMs();
      this.startHoldTimer(this.holder.grant, ms);
    } else if (this.holder) this.startHoldTimer(this.holder.grant, this.holdTimeoutMs());
    // Carried ties (already open, see above) expire at their deadline, not a full deadline from now
    // (no time known: the full deadline, late rather than early).
    for (const tie of this.ties) {
      const ms =
        startedAt !== undefined && tie.deadlineAt !== undefined
          ? Date.parse(tie.deadlineAt) - startedAt
          : durationMs(tie.deadline);
      this.startTieTimer(tie, ms);
    }
  }

  private holdTimeoutMs(): number {
    return this.rules?.holdTimeoutMs ?? DEFAULT_HOLD_MS;
  }

  /** Times out the holder of `grant` after `ms` (patched: none left, at once; unpatched runs always start a timer). */
  private startHoldTimer(grant: number, ms: number): void {
    this.holdTimer?.cancel();
    this.holdTimer = undefined;
    if (this.validated && ms <= 0) {
      if (this.holder?.grant === grant) this.holdExpired = true;
      return;
    }
    const scope = new CancellationScope();
    this.holdTimer = scope;
    void scope
      .run(() => sleep(ms))
      .then(
        () => {
          if (this.holder?.grant === grant) this.holdExpired = true;
        },
        () => undefined, // cancelled: the holder released in time
      );
  }

  private endHold(): void {
    this.holder = undefined;
    this.holdExpired = false;
    this.holdTimer?.cancel();
    this.holdTimer = undefined;
  }

  /** Expires `tie` after `ms` (patched: none left, at once; unpatched runs always start a timer). */
  private startTieTimer(tie: OpenTie, ms: number): void {
    if (this.validated && ms <= 0) {
      tie.expired = true;
      return;
    }
    void sleep(ms).then(() => {
      tie.expired = true;
    });
  }

  // ---- events -------------------------------------------------------------------------------------

  /** A slot request: joins the open batch (opening one, with its batching window, if none is). */
  async onRequest(r: SlotRequest): Promise<void> {
    const requestId = requestIdOf(r);
    if (this.known(requestId)) {
      log.info('repeated slot request ignored', { domain: this.domain, requestId });
      return;
    }
    if (!this.batch) {
      if (!this.rules) await this.admit([]);
      const opened: OpenBatch = { seq: ++this.counters.batch, requests: [], due: false };
      this.batch = opened;
      const windowMs = this.rules?.batchingWindowMs ?? 0;
      if (windowMs <= 0) opened.due = true;
      else
        void sleep(windowMs).then(() => {
          opened.due = true;
        });
    }
    this.batch.requests.push(r);
  }

  /** A chain withdraws its request: from the holder's slot, the open batch or the queue (or before it arrives). */
  onWithdraw(w: SlotWithdraw): void {
    const requestId = requestIdOf(w);
    const why = `withdrawn${w.reason ? `: ${w.reason}` : ''}`;
    if (this.holder?.requestId === requestId) {
      const { request, grant } = this.holder;
      const { requestDigest } = request;
      this.record(requestId, 'withdrawn', { requestId, requestDigest, reason: why, held: true, grant });
      this.endHold();
      this.markDecided(requestId);
      return;
    }
    const batch = this.batch;
    const inBatch = batch?.requests.findIndex((r) => requestIdOf(r) === requestId) ?? -1;
    if (batch && inBatch >= 0) {
      const [r] = batch.requests.splice(inBatch, 1);
      this.record(requestId, 'withdrawn', { requestId, requestDigest: r!.requestDigest, reason: why, held: false });
      this.markDecided(requestId);
      return;
    }
    const e = this.queue.find((q) => q.requestId === requestId);
    if (e) {
      this.removeFromQueue(e);
      const { requestDigest } = e.request;
      this.record(requestId, 'withdrawn', { requestId, requestDigest, reason: why, held: false, order: e.order });
      this.markDecided(requestId);
      if (e.tieId && e.state === 'tie') this.leaveTie(e.tieId, requestId);
      return;
    }
    // A withdrawal that overtook its request: the request is ignored when it arrives.
    this.markDecided(requestId);
  }

  /** The holder is done (a completed release advances the resource's version); before a grant it is a withdrawal. */
  onRelease(rel: SlotRelease): void {
    const requestId = requestIdOf(rel);
    if (this.holder?.requestId === requestId) {
      const r = this.holder.request;
      if (rel.completed) this.versions[r.resource] = this.versionOf(r.resource) + 1;
      this.record(requestId, 'released', {
        requestId,
        requestDigest: r.requestDigest,
        completed: rel.completed,
        resource: r.resource,
        version: this.versionOf(r.resource),
        grant: this.holder.grant,
      });
      this.endHold();
      this.markDecided(requestId);
      return;
    }
    const waiting =
      this.queue.some((q) => q.requestId === requestId) ||
      this.batch?.requests.some((r) => requestIdOf(r) === requestId);
    if (waiting) {
      this.onWithdraw({ chainId: rel.chainId, stepId: rel.stepId, reason: 'released before its grant' });
      return;
    }
    log.info('release of a request holding no slot ignored', { domain: this.domain, requestId });
  }

  /** A contender of a tie withdrew: with fewer than two left the tie dissolves and the rest queue normally. */
  private leaveTie(tieId: string, requestId: string): void {
    const tie = this.ties.find((t) => t.tieId === tieId);
    if (!tie) return;
    tie.contenders = tie.contenders.filter((c) => c !== requestId);
    if (tie.contenders.length >= 2) return;
    this.ties.splice(this.ties.indexOf(tie), 1);
    this.record(tie.tieId, 'tie-dissolved', { tieId, remaining: tie.contenders, withdrawn: requestId });
    for (const id of tie.contenders) {
      const e = this.queue.find((q) => q.requestId === id);
      if (!e) continue;
      e.state = 'queued';
      e.note = `tie ${tieId} dissolved: ${requestId} withdrew`;
      this.notifyQueued(e, e.note);
    }
  }

  /**
   * The batching window has passed: admits the batch, orders it and settles its conflicts
   * (`resolveBatch`), rejects what is refused, queues the rest and opens its ties.
   */
  async closeBatch(): Promise<void> {
    const b = this.batch!;
    this.batch = undefined;
    if (b.requests.length === 0) return;
    const admitted = await this.admit(b.requests);
    const { ok, refused } = this.sortAdmissions(b, admitted);
    const domainRules = this.rules;
    const resolution =
      domainRules && ok.size > 0
        ? resolveBatch(
            [...ok.values()].map((x) => contenderOf(x.r, x.authority)),
            domainRules,
            this.versions,
          )
        : { queue: [], rejected: [], ties: [] };
    const tieIds = resolution.ties.map(() => `tie-${++this.counters.tie}`);
    this.record(`batch-${b.seq}`, 'batch', {
      batch: b.seq,
      bundleDigest: this.bundleDigest ?? null,
      requests: b.requests.map((r) => ({
        requestId: requestIdOf(r),
        requestDigest: r.requestDigest,
        authority: ok.get(requestIdOf(r))?.authority ?? null,
        priority: r.priority,
      })),
      order: resolution.queue.map((p) => p.requestId),
      rejected: [
        ...refused,
        ...resolution.rejected.map((p) => ({
          requestId: p.requestId,
          reason: p.disposition === 'rejected' ? p.reason : '',
        })),
      ],
      ties: resolution.ties.map((contenders, i) => ({ tieId: tieIds[i]!, contenders })),
    });
    for (const p of resolution.rejected) {
      if (p.disposition !== 'rejected') continue;
      this.reject(ok.get(p.requestId)!.r, p.reason, { batch: b.seq, conflictWith: p.conflictWith });
    }
    for (const p of resolution.queue) {
      const { r, authority } = ok.get(p.requestId)!;
      const e: QueueEntry = {
        requestId: p.requestId,
        request: r,
        authority,
        order: ++this.counters.order,
        batch: b.seq,
        state: p.disposition === 'tie' ? 'tie' : 'queued',
      };
      if (p.disposition === 'tie') {
        e.tieId = tieIds[p.tie]!;
        e.conflictWith = p.conflictWith;
        const others = resolution.ties[p.tie]!.filter((id) => id !== p.requestId).join(', ');
        const { tieBreakerRole, decisionDeadline } = domainRules!;
        const awaiting = `awaiting ${tieBreakerRole} within ${decisionDeadline}`;
        e.note = `tie with ${others} (equal authority ${authority}): ${awaiting}`;
      } else if (p.disposition === 'requeued') {
        e.conflictWith = p.conflictWith;
        e.note = p.reason;
      }
      this.queue.push(e);
    }
    resolution.ties.forEach((contenders, i) => this.openTie(tieIds[i]!, contenders, b.seq, domainRules!, admitted, ok));
    for (const e of this.queue) if (e.batch === b.seq) this.notifyQueued(e, e.note ?? `queued in batch ${b.seq}`);
  }

  /** Splits a batch by its admission: the admitted with their authority; the rest rejected, with why. */
  private sortAdmissions(b: OpenBatch, admitted: AdmitResult | undefined): { ok: Admitted; refused: Refusal[] } {
    const ok: Admitted = new Map();
    const refused: Refusal[] = [];
    b.requests.forEach((r, i) => {
      const a = admitted?.admissions[i];
      if (a?.ok) ok.set(requestIdOf(r), { r, authority: a.authority });
      else {
        const reason = admitted
          ? (a?.reason ?? 'not admitted')
          : 'coordination rules unavailable: the request could not be admitted';
        refused.push({ requestId: requestIdOf(r), reason });
        this.reject(r, reason, { batch: b.seq });
      }
    });
    return { ok, refused };
  }

  /** Opens tie `tieId` of batch `batch` between `contenders` (queued as ties), records it and starts its deadline. */
  private openTie(
    tieId: string,
    contenders: string[],
    batch: number,
    domainRules: DomainRules,
    admitted: AdmitResult | undefined,
    ok: Admitted,
  ): void {
    // Governor time of the admission + the deadline: what a later run counts the remainder from.
    const deadlineAt = admitted && new Date(Date.parse(admitted.now) + domainRules.decisionDeadlineMs).toISOString();
    const tie: OpenTie = {
      tieId,
      batch,
      role: domainRules.tieBreakerRole,
      deadline: domainRules.decisionDeadline,
      ...(deadlineAt ? { deadlineAt } : {}),
      contenders,
      expired: false,
      rules: { conflicts: domainRules.conflicts, onConflict: domainRules.onConflict },
    };
    this.ties.push(tie);
    const parties = contenders.map((id) => {
      const { r, authority } = ok.get(id)!;
      const { requestDigest, chainId, stepId, workload, action } = r;
      return { requestId: id, requestDigest, chainId, stepId, workload, action, authority };
    });
    // The tie receipt's payload digest is what a tie-break vote must name as its `stepDigest`.
    const { role, deadline } = tie;
    const event = { coordinatorId: this.self, tieId, batch, role, deadline, contenders: parties };
    this.record(tieId, 'tie', event, undefined, (receipt) => {
      tie.digest = receipt.digest;
    });
    this.startTieTimer(tie, domainRules.decisionDeadlineMs);
  }

  /** Verifies queued tie-break votes, answers each, and settles a tie on a counted vote. */
  async processVotes(): Promise<void> {
    while (this.votes.length > 0) {
      const { seq, submission } = this.votes.shift()!;
      const tie = this.ties.find((t) => t.tieId === submission.tieId);
      let verdict: TieBreakVerdict;
      if (!tie || tie.digest === undefined) {
        const reason = tie ? 'the tie is not recorded yet' : `no pending tie ${submission.tieId}`;
        verdict = { tieId: submission.tieId, counted: false, reason };
      } else {
        const contenders = tie.contenders.map((id) => this.queue.find((q) => q.requestId === id)!).filter(Boolean);
        try {
          const summary = withSummary(`verify tie-break vote for ${tie.tieId}`);
          verdict = await governor.verifyTieBreak.executeWithOptions(summary, [
            {
              tieId: tie.tieId,
              digest: tie.digest,
              role: tie.role,
              contenders: contenders.map((e) => {
                const { chainId, stepId, workload } = e.request;
                return { requestId: e.requestId, chainId, stepId, workload };
              }),
              token: submission.token,
            },
          ]);
        } catch (err) {
          const reason = `vote could not be verified: ${failureMessage(err)}`;
          verdict = { tieId: submission.tieId, counted: false, reason };
        }
      }
      this.record(submission.tieId, 'tie-vote', { tieId: submission.tieId, verdict: { ...verdict } });
      this.voteResults.set(seq, verdict);
      if (tie && verdict.counted && this.ties.includes(tie)) this.settle(tie, verdict);
    }
  }

  /** A counted vote decides `tie`: deny rejects every contender; a winner keeps what no longer conflicts. */
  private settle(tie: OpenTie, verdict: TieBreakVerdict): void {
    this.ties.splice(this.ties.indexOf(tie), 1);
    const entries = tie.contenders
      .map((id) => this.queue.find((q) => q.requestId === id))
      .filter((e): e is QueueEntry => e !== undefined);
    if (verdict.decision !== 'approve' || !verdict.winner) {
      const approver = verdict.approver ?? null;
      const { tieId, contenders } = tie;
      this.record(tieId, 'tie-decided', { tieId, approver, decision: 'deny', contenders });
      for (const e of entries) {
        this.removeFromQueue(e);
        const reason = `tie-break: ${verdict.approver} chose neither${verdict.reason ? ` (${verdict.reason})` : ''}`;
        this.reject(e.request, reason, { order: e.order, batch: e.batch, tieId: tie.tieId });
      }
      return;
    }
    const contenders = entries.map((e) => contenderOf(e.request, e.authority));
    const { kept, lost } = settleTie(contenders, verdict.winner, tie.rules);
    this.record(tie.tieId, 'tie-decided', {
      tieId: tie.tieId,
      approver: verdict.approver ?? null,
      decision: 'approve',
      winner: verdict.winner,
      kept,
      lost,
    });
    for (const id of kept) {
      const e = entries.find((x) => x.requestId === id)!;
      e.state = 'queued';
      e.note =
        id === verdict.winner
          ? `won tie-break ${tie.tieId} (chosen by ${verdict.approver})`
          : `tie ${tie.tieId} settled by ${verdict.approver}: no conflict with ${verdict.winner}`;
      this.notifyQueued(e, e.note);
    }
    for (const l of lost) {
      const e = entries.find((x) => x.requestId === l.requestId)!;
      const reason = `lost tie-break ${tie.tieId} to ${l.conflictWith} (chosen by ${verdict.approver})`;
      this.removeFromQueue(e);
      if (tie.rules.onConflict === 'requeue') {
        e.state = 'queued';
        e.conflictWith = l.conflictWith;
        e.note = `requeued: ${reason}`;
        this.queue.push(e);
        this.notifyQueued(e, e.note);
      } else {
        const extra = { order: e.order, batch: e.batch, conflictWith: l.conflictWith, tieId: tie.tieId };
        this.reject(e.request, reason, extra);
      }
    }
  }

  /** Ties past their decision deadline: every contender still queued is rejected. */
  expireTies(): void {
    for (const tie of this.ties.filter((t) => t.expired)) {
      this.ties.splice(this.ties.indexOf(tie), 1);
      this.record(tie.tieId, 'tie-expired', { tieId: tie.tieId, contenders: tie.contenders, deadline: tie.deadline });
      for (const id of tie.contenders) {
        const e = this.queue.find((q) => q.requestId === id);
        if (!e) continue;
        this.removeFromQueue(e);
        const reason = `tie-break: no choice by ${tie.role} within ${tie.deadline}`;
        const extra = { order: e.order, batch: e.batch, tieId: tie.tieId, conflictWith: e.conflictWith };
        this.reject(e.request, reason, extra);
      }
    }
  }

  /** Takes the slot back from a holder past its hold timeout, then grants the queue head while the slot is free. */
  grant(): void {
    if (this.holdExpired && this.holder) {
      // A crashed or terminated chain must not block the domain: the slot is taken back.
      const { request, order, batch } = this.holder;
      this.reject(request, `slot reclaimed: held longer than the hold timeout`, { order, batch }, 'reclaimed');
      this.endHold();
    }
    while (!this.holder && this.queue.length > 0 && this.queue[0]!.state === 'queued') {
      const e = this.queue.shift()!;
      // Versions may have advanced since the batch was ordered: check again at grant time.
      const stale = staleness(e.request.plannedVersion, this.versionOf(e.request.resource));
      if (stale) {
        this.reject(e.request, stale, { order: e.order, batch: e.batch });
        continue;
      }
      const g = ++this.counters.grant;
      this.holder = { ...e, grant: g };
      // Patched: the grant takes effect when its receipt is signed; the hold timeout counts from then
      // in later runs. Not signed: no grant time, and the next run counts from its own start.
      const onSigned: Outgoing['onSigned'] = (_receipt, signedAt) => {
        if (this.holder?.grant === g && signedAt !== undefined) this.holder.grantedAt = signedAt;
      };
      const reason = `granted: order ${e.order}, batch ${e.batch}`;
      const extra = { order: e.order, batch: e.batch, conflictWith: e.conflictWith, tieId: e.tieId };
      const verdict = this.verdictFor(e.request, 'granted', reason, extra);
      this.sendVerdict('granted', e.request, verdict, this.validated ? onSigned : undefined);
      this.markDecided(e.requestId);
      this.startHoldTimer(this.holder.grant, this.holdTimeoutMs());
    }
  }

  // ---- output -------------------------------------------------------------------------------------

  /** Signs every pending event into the coordinator's receipt chain, then sends the verdicts they back. */
  async flush(): Promise<void> {
    if (this.outgoing.length === 0) return;
    const out = this.outgoing.splice(0);
    let receipts: Receipt[] | undefined;
    let signedAt: string | undefined;
    try {
      ({ receipts, signedAt } = await governor.signCoordinationReceipts.executeWithOptions(
        withSummary(`sign ${out.length} coordination receipt(s) of ${this.domain}`),
        [
          {
            coordinatorId: this.self,
            prev: this.head,
            entries: out.map((o) => ({ stepId: o.stepId, payload: o.payload })),
          },
        ],
      ));
      this.receiptFailure = undefined;
    } catch (err) {
      // Verdicts still go out (a waiting chain must not hang), without a receipt: the chain decides.
      this.receiptFailure = `coordination receipts could not be signed: ${failureMessage(err)}`;
      log.warn('coordination receipts not signed', { domain: this.domain, error: this.receiptFailure });
    }
    out.forEach((o, i) => {
      const r = receipts?.[i];
      if (r) {
        this.head = { seq: r.seq, hash: r.hash };
        if (o.verdict) {
          o.verdict.receipt = { coordinatorId: this.self, seq: r.seq, hash: r.hash, digest: r.digest };
          // The chain verifies a signed verdict before acting on it: a signal anyone could send is no grant.
          if (this.validated) {
            Object.assign(o.verdict.receipt, { prevHash: r.prevHash, signature: r.signature, event: o.payload.event });
          }
        }
        o.onSigned?.(r, signedAt);
      }
    });
    const verdicts = out.flatMap((o) => (o.verdict ? [o.verdict] : []));
    this.recent.push(...verdicts);
    this.recent.splice(0, Math.max(0, this.recent.length - RECENT_VERDICTS));
    // Chains in parallel; the verdicts of one chain in order (a `queued` never overtakes its `granted`).
    const byChain = new Map<string, SlotVerdict[]>();
    for (const v of verdicts) byChain.set(v.chainId, [...(byChain.get(v.chainId) ?? []), v]);
    await Promise.all(
      [...byChain].map(async ([chainId, list]) => {
        const chain = getExternalWorkflowHandle(chainId);
        for (const v of list) {
          try {
            await chain.signal(slotVerdictSignal, v);
          } catch (err) {
            const error = failureMessage(err);
            const { requestId, status } = v;
            const domain = this.domain;
            log.info('slot verdict not delivered (the chain has ended)', { domain, requestId, status, error });
            break; // the chain is gone: its later verdicts cannot be delivered either
          }
        }
      }),
    );
  }

  /** Shows the coordinator's state as the workflow's current details (set only when it changed). */
  publish(): void {
    const { holder, batch, queue } = this;
    const title =
      `**Coordinator of \`${this.domain}\`** — run ${this.runs}, ` +
      `${this.counters.batch} batch(es), receipts #${this.head.seq}`;
    const lines = [title, ''];
    lines.push(
      holder
        ? `Holder: \`${holder.requestId}\` — ${holder.request.action} on \`${holder.request.resource}\`` +
            ` (grant ${holder.grant}, order ${holder.order})`
        : 'Holder: none',
    );
    if (batch) lines.push(`Collecting batch ${batch.seq}: ${batch.requests.length} request(s)`);
    lines.push('', `Queue (${queue.length}):`);
    queue.forEach((e, i) => {
      const tie = e.state === 'tie' ? ` — **tie ${e.tieId}**` : '';
      const note = e.note ? ` — ${e.note}` : '';
      const what = `${i + 1}. \`${e.requestId}\` ${e.request.action} on \`${e.request.resource}\``;
      lines.push(`${what} — authority ${e.authority}, priority ${e.request.priority}, order ${e.order}${tie}${note}`);
    });
    for (const t of this.ties) {
      const by = t.deadlineAt ?? t.deadline;
      lines.push(`- **${t.tieId}**: ${t.contenders.join(' vs ')} — awaiting ${t.role} by ${by}`);
    }
    const vs = Object.entries(this.versions);
    if (vs.length > 0) lines.push('', `Versions: ${vs.map(([r, v]) => `\`${r}\` v${v}`).join(', ')}`);
    const text = lines.join('\n');
    if (text !== this.published) {
      setCurrentDetails(text);
      this.published = text;
    }
  }

  /**
   * What the next run starts from: queue, holder, versions, receipt head and unprocessed messages (no
   * batching window is open: continueAsNewDue waits for it). Patched: open ties too, and the next run
   * sleeps what remains of their deadlines and of the holder's timeout; older runs had no open tie.
   */
  carry(): CoordinatorCarry {
    const { head, inbox, queue, holder, versions, recent, decided, counters, runs } = this;
    const carriedTies: CarriedTie[] = this.ties.flatMap(({ expired: _e, rules: r, deadlineAt, ...t }) => {
      if (deadlineAt === undefined) return [];
      const conflicts = r.conflicts.map(([x, y]) => [x, y] as [string, string]);
      return [{ ...t, deadlineAt, rules: { conflicts, onConflict: r.onConflict } }];
    });
    return {
      head,
      inbox,
      queue,
      ...(holder ? { holder } : {}),
      versions,
      recent,
      decided,
      counters,
      runs: runs + 1,
      ...(this.validated && carriedTies.length > 0 ? { ties: carriedTies } : {}),
    };
  }

  // ---- recording ----------------------------------------------------------------------------------

  /** Records an event for the receipt chain (and the verdict it backs); `flush` signs and sends it. */
  private record(
    stepId: string,
    event: string,
    payload: Record<string, unknown>,
    verdict?: SlotVerdict,
    onSigned?: Outgoing['onSigned'],
  ): void {
    this.outgoing.push({
      stepId,
      payload: { type: 'coordination', event, domain: this.domain, ...payload },
      ...(verdict ? { verdict } : {}),
      ...(onSigned ? { onSigned } : {}),
    });
  }

  private verdictFor(
    r: SlotRequest,
    status: SlotVerdict['status'],
    reason: string,
    extra: Partial<SlotVerdict> = {},
  ): SlotVerdict {
    const v: SlotVerdict = {
      requestId: requestIdOf(r),
      chainId: r.chainId,
      stepId: r.stepId,
      domain: this.domain,
      status,
      granted: status === 'granted',
      reason,
      version: this.versionOf(r.resource),
    };
    for (const [k, value] of Object.entries(extra)) if (value !== undefined) (v as Record<string, unknown>)[k] = value;
    return v;
  }

  private sendVerdict(event: string, r: SlotRequest, verdict: SlotVerdict, onSigned?: Outgoing['onSigned']): void {
    const payload = { requestDigest: r.requestDigest, verdict: { ...verdict } };
    this.record(verdict.requestId, event, payload, verdict, onSigned);
  }

  private reject(r: SlotRequest, reason: string, extra: Partial<SlotVerdict> = {}, event = 'rejected'): void {
    this.sendVerdict(event, r, this.verdictFor(r, 'rejected', reason, extra));
    this.markDecided(requestIdOf(r));
  }

  private notifyQueued(e: QueueEntry, reason: string): void {
    const position = this.queue.indexOf(e) + 1;
    const extra = { order: e.order, batch: e.batch, position, conflictWith: e.conflictWith, tieId: e.tieId };
    this.sendVerdict('queued', e.request, this.verdictFor(e.request, 'queued', reason, extra));
  }

  // ---- bookkeeping --------------------------------------------------------------------------------

  private versionOf(resource: string): number {
    return this.versions[resource] ?? 0;
  }

  private markDecided(requestId: string): void {
    if (this.decidedSet.has(requestId)) return;
    this.decided.push(requestId);
    this.decidedSet.add(requestId);
    while (this.decided.length > DECIDED_IDS) this.decidedSet.delete(this.decided.shift()!);
  }

  /** Whether `requestId` was decided, holds the slot, is queued or is in the open batch. */
  private known(requestId: string): boolean {
    return (
      this.decidedSet.has(requestId) ||
      this.holder?.requestId === requestId ||
      this.queue.some((e) => e.requestId === requestId) ||
      (this.batch?.requests.some((r) => requestIdOf(r) === requestId) ?? false)
    );
  }

  private removeFromQueue(e: QueueEntry): void {
    const i = this.queue.indexOf(e);
    if (i >= 0) this.queue.splice(i, 1);
  }
}
