import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { AdmitResult, DomainRules, GovernorActivities } from '../activities';
import {
  CoordinatorInput,
  SlotRelease,
  SlotRequest,
  SlotWithdraw,
  TieBreakSubmission,
  chooseWinnerSignal,
  chooseWinnerUpdate,
  coordinatorStateQuery,
  releaseSlotSignal,
  requestSlotSignal,
  slotRequestId,
  slotVerdictSignal,
  withdrawSlotSignal,
  type CarriedTie,
  type CoordinatorCarry,
  type CoordinatorInboxItem,
  type CoordinatorState,
  type PendingTie,
  type QueueEntry,
  type SlotHolder,
  type SlotVerdict,
  type TieBreakVerdict,
} from '../contracts/coordination';
import { ErrorCode } from '../contracts/errors';
import { invalidInputMessage } from '../contracts/issues';
import { durationMs } from '../contracts/duration';
import { COORDINATOR_VALIDATION_PATCH } from '../contracts/patches';
import { GENESIS_HASH, type Receipt, type ReceiptHead } from '../contracts/receipt';
import { resolveBatch, settleTie, staleness, type ConflictRules, type Contender } from './coordination-order';
import { failureMessage } from './failure';

/*
 * One coordinator per domain (DESIGN §4 step 4). Deterministic code only: admission (seals, authority,
 * rules), receipt signing and vote verification run in local activities recorded in history.
 *
 * Model: requests arriving within the domain's batching window form a batch; a batch is ordered and
 * its conflicts settled by the pure `resolveBatch`, then appended to the domain's queue (batches stay
 * in arrival order). Grants are serialized per domain: the queue head is granted when the previous
 * holder released its slot (or lost it at its hold timeout). A pending tie at the head holds the queue
 * until the tie-breaker role chooses or the decision deadline passes.
 */

const LOCAL_RETRY: RetryPolicy = { maximumAttempts: 5, initialInterval: '200ms', backoffCoefficient: 2, nonRetryableErrorTypes: [ErrorCode.InvalidInput, ErrorCode.PolicyUnavailable] };
const governor = proxyLocalActivities<GovernorActivities>({ startToCloseTimeout: '10s', retry: LOCAL_RETRY });

const RECENT_VERDICTS = 50;
const DECIDED_IDS = 1000;
const DEFAULT_HOLD_MS = 3_600_000;

/*
 * Patch COORDINATOR_VALIDATION_PATCH (contracts/patches.ts): the input, carried state included, is
 * parsed in the sandbox (invalid: the run fails at once with a non-retryable GOVERNOR_INVALID_INPUT
 * naming the field; a carry is accepted only by a run that continued as new); the holder records its
 * grant time and the hold timeout runs from it across continue-as-new; pending ties are carried with
 * their deadline instead of holding continue-as-new back; verdicts carry their signed receipt. Runs
 * without the marker keep the old behaviour, so their histories replay.
 *
 * Times are governor time from local activity results (`signCoordinationReceipts().signedAt` for a
 * grant, `admitSlotRequests().now` at a run's start and for a tie's deadline), recorded in history.
 * Not `Date.now()` in the sandbox: it is workflow time, but after a local activity core moves it to
 * the activity's completion time, and a replay that has already applied the next task's start keeps
 * that later time instead (only ever moved forward). Observed on the dev server: a grant time taken
 * with `Date.now()` came out 113 ms later in the replayed run than in the run that was queried.
 */
export { COORDINATOR_VALIDATION_PATCH };

/**
 * The input as the coordinator may use it: parsed with the contract's schema, a carry only from a
 * run that continued as new (a first run with a forged carry could queue unsealed requests).
 */
function parseInput(raw: unknown): CoordinatorInput {
  const parsed = CoordinatorInput.safeParse(raw);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(invalidInputMessage(parsed.error), ErrorCode.InvalidInput);
  if (parsed.data.carry !== undefined && workflowInfo().continuedFromExecutionRunId === undefined) {
    throw ApplicationFailure.nonRetryable('carry: only a coordinator continuing as new may carry state into its next run', ErrorCode.InvalidInput);
  }
  return parsed.data;
}

/** An open tie as the coordinator keeps it. */
type OpenTie = PendingTie & { expired: boolean; rules: ConflictRules };

/** An event to sign into the coordinator's receipt chain, and the verdict it backs (sent once signed). */
interface Outgoing {
  stepId: string;
  payload: Record<string, unknown>;
  verdict?: SlotVerdict;
  onSigned?: (receipt: Receipt, signedAt: string | undefined) => void;
}

/** Orders and arbitrates the actions of chains on one coordination domain. Runs forever, continuing as new. */
export async function coordinatorWorkflow(raw: CoordinatorInput): Promise<void> {
  // Decided once, before anything else: a run keeps one behaviour from its first task to its last.
  const validated = patched(COORDINATOR_VALIDATION_PATCH);
  const input = validated ? parseInput(raw) : raw;
  const { domain } = input;
  const self = workflowInfo().workflowId;
  const carried = input.carry;
  let head: ReceiptHead = carried?.head ?? { seq: 0, hash: GENESIS_HASH };
  const inbox: CoordinatorInboxItem[] = [...(carried?.inbox ?? [])];
  const queue: QueueEntry[] = [...(carried?.queue ?? [])];
  let holder: SlotHolder | undefined = carried?.holder;
  const versions: Record<string, number> = { ...(carried?.versions ?? {}) };
  const recent: SlotVerdict[] = [...(carried?.recent ?? [])];
  const decided: string[] = [...(carried?.decided ?? [])];
  const decidedSet = new Set(decided);
  const counters = { ...(carried?.counters ?? { batch: 0, order: 0, tie: 0, grant: 0 }) };
  const runs = carried?.runs ?? 1;

  let rules: DomainRules | undefined;
  let bundleDigest: string | undefined;
  let receiptFailure: string | undefined;
  let batch: { seq: number; requests: SlotRequest[]; due: boolean } | undefined;
  // Ties carried by a patched run stay open: their timers start once this run knows the time.
  const ties: OpenTie[] = (carried?.ties ?? []).map((t) => ({ ...t, expired: false }));
  const votes: { seq: number; submission: TieBreakSubmission }[] = [];
  const voteResults = new Map<number, TieBreakVerdict>();
  let voteSeq = 0;
  let holdExpired = false;
  let holdTimer: CancellationScope | undefined;
  let handled = 0;
  let settling = false;
  const outgoing: Outgoing[] = [];

  // ---- messages -------------------------------------------------------------------------------
  // Handlers only validate and enqueue; the main loop processes in arrival (history) order.
  setHandler(requestSlotSignal, (request) => {
    const parsed = SlotRequest.safeParse(request);
    if (parsed.success) inbox.push({ kind: 'request', request: parsed.data });
    else log.warn('malformed requestSlot ignored', { domain, error: invalidInputMessage(parsed.error) });
  });
  setHandler(releaseSlotSignal, (release) => {
    const parsed = SlotRelease.safeParse(release);
    if (parsed.success) inbox.push({ kind: 'release', release: parsed.data });
    else log.warn('malformed releaseSlot ignored', { domain, error: invalidInputMessage(parsed.error) });
  });
  setHandler(withdrawSlotSignal, (withdraw) => {
    const parsed = SlotWithdraw.safeParse(withdraw);
    if (parsed.success) inbox.push({ kind: 'withdraw', withdraw: parsed.data });
    else log.warn('malformed withdrawSlot ignored', { domain, error: invalidInputMessage(parsed.error) });
  });
  const enqueueVote = (submission: TieBreakSubmission): number => {
    const seq = ++voteSeq;
    votes.push({ seq, submission });
    return seq;
  };
  setHandler(chooseWinnerSignal, (submission) => {
    const parsed = TieBreakSubmission.safeParse(submission);
    if (parsed.success) enqueueVote(parsed.data);
    else log.warn('malformed chooseWinner ignored', { domain, error: invalidInputMessage(parsed.error) });
  });
  setHandler(
    chooseWinnerUpdate,
    async (submission) => {
      // The validator ran when the update was accepted; parsed again so the handler uses only what
      // the schema allows (validators are not run on replay).
      const parsed = TieBreakSubmission.safeParse(submission);
      if (!parsed.success) throw ApplicationFailure.nonRetryable(invalidInputMessage(parsed.error), ErrorCode.InvalidInput);
      const seq = enqueueVote(parsed.data);
      await condition(() => voteResults.has(seq));
      return voteResults.get(seq)!;
    },
    {
      validator: (submission) => {
        const parsed = TieBreakSubmission.safeParse(submission);
        if (!parsed.success) throw ApplicationFailure.nonRetryable(invalidInputMessage(parsed.error), ErrorCode.InvalidInput);
        if (!ties.some((t) => t.tieId === parsed.data.tieId)) throw ApplicationFailure.nonRetryable(`tieId: no pending tie ${parsed.data.tieId} in ${domain}`, ErrorCode.InvalidInput);
      },
    },
  );
  setHandler(coordinatorStateQuery, (): CoordinatorState => ({
    coordinatorId: self,
    domain,
    runs,
    collecting: batch?.requests.map((r) => slotRequestId(r.chainId, r.stepId)) ?? [],
    queue: queue.map((e, i) => ({ ...e, position: i + 1 })),
    ...(holder ? { holder } : {}),
    versions,
    ties: ties.map(({ expired: _e, rules: _r, ...t }) => t),
    recent,
    receiptHead: head,
    batches: counters.batch,
    settled: !settling,
    ...(bundleDigest !== undefined ? { bundleDigest } : {}),
    ...(receiptFailure !== undefined ? { receiptFailure } : {}),
  }));

  // ---- helpers ----------------------------------------------------------------------------------
  const idOf = (r: { chainId: string; stepId: string }): string => slotRequestId(r.chainId, r.stepId);
  const versionOf = (resource: string): number => versions[resource] ?? 0;
  const contenderOf = (r: SlotRequest, authority: number): Contender => ({
    requestId: idOf(r),
    action: r.action,
    resource: r.resource,
    authority,
    priority: r.priority,
    requestDigest: r.requestDigest,
    ...(r.plannedVersion !== undefined ? { plannedVersion: r.plannedVersion } : {}),
  });
  const markDecided = (requestId: string): void => {
    if (decidedSet.has(requestId)) return;
    decided.push(requestId);
    decidedSet.add(requestId);
    while (decided.length > DECIDED_IDS) decidedSet.delete(decided.shift()!);
  };
  const known = (requestId: string): boolean =>
    decidedSet.has(requestId) || holder?.requestId === requestId || queue.some((e) => e.requestId === requestId) || (batch?.requests.some((r) => idOf(r) === requestId) ?? false);

  const record = (stepId: string, event: string, payload: Record<string, unknown>, verdict?: SlotVerdict, onSigned?: Outgoing['onSigned']): void => {
    outgoing.push({ stepId, payload: { type: 'coordination', event, domain, ...payload }, ...(verdict ? { verdict } : {}), ...(onSigned ? { onSigned } : {}) });
  };
  const verdictFor = (r: SlotRequest, status: SlotVerdict['status'], reason: string, extra: Partial<SlotVerdict> = {}): SlotVerdict => {
    const v: SlotVerdict = { requestId: idOf(r), chainId: r.chainId, stepId: r.stepId, domain, status, granted: status === 'granted', reason, version: versionOf(r.resource) };
    for (const [k, value] of Object.entries(extra)) if (value !== undefined) (v as Record<string, unknown>)[k] = value;
    return v;
  };
  const sendVerdict = (event: string, r: SlotRequest, verdict: SlotVerdict, onSigned?: Outgoing['onSigned']): void => {
    record(verdict.requestId, event, { requestDigest: r.requestDigest, verdict: { ...verdict } }, verdict, onSigned);
  };
  const reject = (r: SlotRequest, reason: string, extra: Partial<SlotVerdict> = {}, event = 'rejected'): void => {
    sendVerdict(event, r, verdictFor(r, 'rejected', reason, extra));
    markDecided(idOf(r));
  };
  const notifyQueued = (e: QueueEntry, reason: string): void => {
    sendVerdict('queued', e.request, verdictFor(e.request, 'queued', reason, { order: e.order, batch: e.batch, position: queue.indexOf(e) + 1, conflictWith: e.conflictWith, tieId: e.tieId }));
  };
  const removeFromQueue = (e: QueueEntry): void => {
    const i = queue.indexOf(e);
    if (i >= 0) queue.splice(i, 1);
  };

  /** Loads the domain's current rules and admits `requests` (undefined: the activity failed; fail closed). */
  const admit = async (requests: SlotRequest[]): Promise<AdmitResult | undefined> => {
    try {
      const result = await governor.admitSlotRequests.executeWithOptions(
        { startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: `admit ${requests.length} request(s) to ${domain}` },
        [{ domain, requests }],
      );
      rules = result.rules;
      bundleDigest = result.bundleDigest;
      return result;
    } catch (err) {
      log.warn('coordination admission failed', { domain, error: failureMessage(err) });
      return undefined;
    }
  };

  const endHold = (): void => {
    holder = undefined;
    holdExpired = false;
    holdTimer?.cancel();
    holdTimer = undefined;
  };
  const holdTimeoutMs = (): number => rules?.holdTimeoutMs ?? DEFAULT_HOLD_MS;
  /** Times out the holder of `grant` after `ms` (patched: none left, at once; unpatched runs always start a timer). */
  const startHoldTimer = (grant: number, ms: number): void => {
    holdTimer?.cancel();
    holdTimer = undefined;
    if (validated && ms <= 0) {
      if (holder?.grant === grant) holdExpired = true;
      return;
    }
    const scope = new CancellationScope();
    holdTimer = scope;
    void scope.run(() => sleep(ms)).then(
      () => {
        if (holder?.grant === grant) holdExpired = true;
      },
      () => undefined, // cancelled: the holder released in time
    );
  };

  /** Expires `tie` after `ms` (patched: none left, at once; unpatched runs always start a timer). */
  const startTieTimer = (tie: OpenTie, ms: number): void => {
    if (validated && ms <= 0) {
      tie.expired = true;
      return;
    }
    void sleep(ms).then(() => {
      tie.expired = true;
    });
  };

  // ---- events -----------------------------------------------------------------------------------
  const onRequest = async (r: SlotRequest): Promise<void> => {
    const requestId = idOf(r);
    if (known(requestId)) {
      log.info('repeated slot request ignored', { domain, requestId });
      return;
    }
    if (!batch) {
      if (!rules) await admit([]);
      const opened = { seq: ++counters.batch, requests: [] as SlotRequest[], due: false };
      batch = opened;
      const windowMs = rules?.batchingWindowMs ?? 0;
      if (windowMs <= 0) opened.due = true;
      else
        void sleep(windowMs).then(() => {
          opened.due = true;
        });
    }
    batch.requests.push(r);
  };

  const leaveTie = (tieId: string, requestId: string): void => {
    const tie = ties.find((t) => t.tieId === tieId);
    if (!tie) return;
    tie.contenders = tie.contenders.filter((c) => c !== requestId);
    if (tie.contenders.length >= 2) return;
    ties.splice(ties.indexOf(tie), 1);
    record(tie.tieId, 'tie-dissolved', { tieId, remaining: tie.contenders, withdrawn: requestId });
    for (const id of tie.contenders) {
      const e = queue.find((q) => q.requestId === id);
      if (!e) continue;
      e.state = 'queued';
      e.note = `tie ${tieId} dissolved: ${requestId} withdrew`;
      notifyQueued(e, e.note);
    }
  };

  const onWithdraw = (w: SlotWithdraw): void => {
    const requestId = idOf(w);
    const why = `withdrawn${w.reason ? `: ${w.reason}` : ''}`;
    if (holder?.requestId === requestId) {
      record(requestId, 'withdrawn', { requestId, requestDigest: holder.request.requestDigest, reason: why, held: true, grant: holder.grant });
      endHold();
      markDecided(requestId);
      return;
    }
    const inBatch = batch?.requests.findIndex((r) => idOf(r) === requestId) ?? -1;
    if (batch && inBatch >= 0) {
      const [r] = batch.requests.splice(inBatch, 1);
      record(requestId, 'withdrawn', { requestId, requestDigest: r!.requestDigest, reason: why, held: false });
      markDecided(requestId);
      return;
    }
    const e = queue.find((q) => q.requestId === requestId);
    if (e) {
      removeFromQueue(e);
      record(requestId, 'withdrawn', { requestId, requestDigest: e.request.requestDigest, reason: why, held: false, order: e.order });
      markDecided(requestId);
      if (e.tieId && e.state === 'tie') leaveTie(e.tieId, requestId);
      return;
    }
    // A withdrawal that overtook its request: the request is ignored when it arrives.
    markDecided(requestId);
  };

  const onRelease = (rel: SlotRelease): void => {
    const requestId = idOf(rel);
    if (holder?.requestId === requestId) {
      const r = holder.request;
      if (rel.completed) versions[r.resource] = versionOf(r.resource) + 1;
      record(requestId, 'released', { requestId, requestDigest: r.requestDigest, completed: rel.completed, resource: r.resource, version: versionOf(r.resource), grant: holder.grant });
      endHold();
      markDecided(requestId);
      return;
    }
    if (queue.some((q) => q.requestId === requestId) || batch?.requests.some((r) => idOf(r) === requestId)) {
      onWithdraw({ chainId: rel.chainId, stepId: rel.stepId, reason: 'released before its grant' });
      return;
    }
    log.info('release of a request holding no slot ignored', { domain, requestId });
  };

  const closeBatch = async (): Promise<void> => {
    const b = batch!;
    batch = undefined;
    if (b.requests.length === 0) return;
    const admitted = await admit(b.requests);
    const ok = new Map<string, { r: SlotRequest; authority: number }>();
    const refused: { requestId: string; reason: string }[] = [];
    b.requests.forEach((r, i) => {
      const a = admitted?.admissions[i];
      if (a?.ok) ok.set(idOf(r), { r, authority: a.authority });
      else {
        const reason = admitted ? (a?.reason ?? 'not admitted') : 'coordination rules unavailable: the request could not be admitted';
        refused.push({ requestId: idOf(r), reason });
        reject(r, reason, { batch: b.seq });
      }
    });
    const domainRules = rules;
    const resolution = domainRules && ok.size > 0 ? resolveBatch([...ok.values()].map((x) => contenderOf(x.r, x.authority)), domainRules, versions) : { queue: [], rejected: [], ties: [] };
    const tieIds = resolution.ties.map(() => `tie-${++counters.tie}`);
    record(`batch-${b.seq}`, 'batch', {
      batch: b.seq,
      bundleDigest: bundleDigest ?? null,
      requests: b.requests.map((r) => ({ requestId: idOf(r), requestDigest: r.requestDigest, authority: ok.get(idOf(r))?.authority ?? null, priority: r.priority })),
      order: resolution.queue.map((p) => p.requestId),
      rejected: [...refused, ...resolution.rejected.map((p) => ({ requestId: p.requestId, reason: p.disposition === 'rejected' ? p.reason : '' }))],
      ties: resolution.ties.map((contenders, i) => ({ tieId: tieIds[i]!, contenders })),
    });
    for (const p of resolution.rejected) {
      if (p.disposition !== 'rejected') continue;
      reject(ok.get(p.requestId)!.r, p.reason, { batch: b.seq, conflictWith: p.conflictWith });
    }
    for (const p of resolution.queue) {
      const { r, authority } = ok.get(p.requestId)!;
      const e: QueueEntry = { requestId: p.requestId, request: r, authority, order: ++counters.order, batch: b.seq, state: p.disposition === 'tie' ? 'tie' : 'queued' };
      if (p.disposition === 'tie') {
        e.tieId = tieIds[p.tie]!;
        e.conflictWith = p.conflictWith;
        e.note = `tie with ${resolution.ties[p.tie]!.filter((id) => id !== p.requestId).join(', ')} (equal authority ${authority}): awaiting ${domainRules!.tieBreakerRole} within ${domainRules!.decisionDeadline}`;
      } else if (p.disposition === 'requeued') {
        e.conflictWith = p.conflictWith;
        e.note = p.reason;
      }
      queue.push(e);
    }
    resolution.ties.forEach((contenders, i) => {
      const tieId = tieIds[i]!;
      const tie: OpenTie = {
        tieId,
        batch: b.seq,
        role: domainRules!.tieBreakerRole,
        deadline: domainRules!.decisionDeadline,
        // Governor time of the admission + the deadline: what a later run counts the remainder from.
        ...(admitted ? { deadlineAt: new Date(Date.parse(admitted.now) + domainRules!.decisionDeadlineMs).toISOString() } : {}),
        contenders,
        expired: false,
        rules: { conflicts: domainRules!.conflicts, onConflict: domainRules!.onConflict },
      };
      ties.push(tie);
      const parties = contenders.map((id) => {
        const { r, authority } = ok.get(id)!;
        return { requestId: id, requestDigest: r.requestDigest, chainId: r.chainId, stepId: r.stepId, workload: r.workload, action: r.action, authority };
      });
      // The tie receipt's payload digest is what a tie-break vote must name as its `stepDigest`.
      record(tieId, 'tie', { coordinatorId: self, tieId, batch: b.seq, role: tie.role, deadline: tie.deadline, contenders: parties }, undefined, (receipt) => {
        tie.digest = receipt.digest;
      });
      startTieTimer(tie, domainRules!.decisionDeadlineMs);
    });
    for (const e of queue) if (e.batch === b.seq) notifyQueued(e, e.note ?? `queued in batch ${b.seq}`);
  };

  const settle = (tie: OpenTie, verdict: TieBreakVerdict): void => {
    ties.splice(ties.indexOf(tie), 1);
    const entries = tie.contenders.map((id) => queue.find((q) => q.requestId === id)).filter((e): e is QueueEntry => e !== undefined);
    if (verdict.decision !== 'approve' || !verdict.winner) {
      record(tie.tieId, 'tie-decided', { tieId: tie.tieId, approver: verdict.approver ?? null, decision: 'deny', contenders: tie.contenders });
      for (const e of entries) {
        removeFromQueue(e);
        reject(e.request, `tie-break: ${verdict.approver} chose neither${verdict.reason ? ` (${verdict.reason})` : ''}`, { order: e.order, batch: e.batch, tieId: tie.tieId });
      }
      return;
    }
    const { kept, lost } = settleTie(entries.map((e) => contenderOf(e.request, e.authority)), verdict.winner, tie.rules);
    record(tie.tieId, 'tie-decided', { tieId: tie.tieId, approver: verdict.approver ?? null, decision: 'approve', winner: verdict.winner, kept, lost });
    for (const id of kept) {
      const e = entries.find((x) => x.requestId === id)!;
      e.state = 'queued';
      e.note = id === verdict.winner ? `won tie-break ${tie.tieId} (chosen by ${verdict.approver})` : `tie ${tie.tieId} settled by ${verdict.approver}: no conflict with ${verdict.winner}`;
      notifyQueued(e, e.note);
    }
    for (const l of lost) {
      const e = entries.find((x) => x.requestId === l.requestId)!;
      const reason = `lost tie-break ${tie.tieId} to ${l.conflictWith} (chosen by ${verdict.approver})`;
      removeFromQueue(e);
      if (tie.rules.onConflict === 'requeue') {
        e.state = 'queued';
        e.conflictWith = l.conflictWith;
        e.note = `requeued: ${reason}`;
        queue.push(e);
        notifyQueued(e, e.note);
      } else {
        reject(e.request, reason, { order: e.order, batch: e.batch, conflictWith: l.conflictWith, tieId: tie.tieId });
      }
    }
  };

  const processVotes = async (): Promise<void> => {
    while (votes.length > 0) {
      const { seq, submission } = votes.shift()!;
      const tie = ties.find((t) => t.tieId === submission.tieId);
      let verdict: TieBreakVerdict;
      if (!tie || tie.digest === undefined) {
        verdict = { tieId: submission.tieId, counted: false, reason: tie ? 'the tie is not recorded yet' : `no pending tie ${submission.tieId}` };
      } else {
        const contenders = tie.contenders.map((id) => queue.find((q) => q.requestId === id)!).filter(Boolean);
        try {
          verdict = await governor.verifyTieBreak.executeWithOptions(
            { startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: `verify tie-break vote for ${tie.tieId}` },
            [{ tieId: tie.tieId, digest: tie.digest, role: tie.role, contenders: contenders.map((e) => ({ requestId: e.requestId, chainId: e.request.chainId, stepId: e.request.stepId, workload: e.request.workload })), token: submission.token }],
          );
        } catch (err) {
          verdict = { tieId: submission.tieId, counted: false, reason: `vote could not be verified: ${failureMessage(err)}` };
        }
      }
      record(submission.tieId, 'tie-vote', { tieId: submission.tieId, verdict: { ...verdict } });
      voteResults.set(seq, verdict);
      if (tie && verdict.counted && ties.includes(tie)) settle(tie, verdict);
    }
  };

  const expireTies = (): void => {
    for (const tie of ties.filter((t) => t.expired)) {
      ties.splice(ties.indexOf(tie), 1);
      record(tie.tieId, 'tie-expired', { tieId: tie.tieId, contenders: tie.contenders, deadline: tie.deadline });
      for (const id of tie.contenders) {
        const e = queue.find((q) => q.requestId === id);
        if (!e) continue;
        removeFromQueue(e);
        reject(e.request, `tie-break: no choice by ${tie.role} within ${tie.deadline}`, { order: e.order, batch: e.batch, tieId: tie.tieId, conflictWith: e.conflictWith });
      }
    }
  };

  const grant = (): void => {
    if (holdExpired && holder) {
      // A crashed or terminated chain must not block the domain: the slot is taken back.
      reject(holder.request, `slot reclaimed: held longer than the hold timeout`, { order: holder.order, batch: holder.batch }, 'reclaimed');
      endHold();
    }
    while (!holder && queue.length > 0 && queue[0]!.state === 'queued') {
      const e = queue.shift()!;
      // Versions may have advanced since the batch was ordered: check again at grant time.
      const stale = staleness(e.request.plannedVersion, versionOf(e.request.resource));
      if (stale) {
        reject(e.request, stale, { order: e.order, batch: e.batch });
        continue;
      }
      const g = ++counters.grant;
      holder = { ...e, grant: g };
      // Patched: the grant takes effect when its receipt is signed; the hold timeout counts from then
      // in later runs. Not signed: no grant time, and the next run counts from its own start.
      const onSigned: Outgoing['onSigned'] = (_receipt, signedAt) => {
        if (holder?.grant === g && signedAt !== undefined) holder.grantedAt = signedAt;
      };
      sendVerdict('granted', e.request, verdictFor(e.request, 'granted', `granted: order ${e.order}, batch ${e.batch}`, { order: e.order, batch: e.batch, conflictWith: e.conflictWith, tieId: e.tieId }), validated ? onSigned : undefined);
      markDecided(e.requestId);
      startHoldTimer(holder.grant, holdTimeoutMs());
    }
  };

  /** Signs every pending event into the coordinator's receipt chain, then sends the verdicts they back. */
  const flush = async (): Promise<void> => {
    if (outgoing.length === 0) return;
    const out = outgoing.splice(0);
    let receipts: Receipt[] | undefined;
    let signedAt: string | undefined;
    try {
      ({ receipts, signedAt } = await governor.signCoordinationReceipts.executeWithOptions(
        { startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: `sign ${out.length} coordination receipt(s) of ${domain}` },
        [{ coordinatorId: self, prev: head, entries: out.map((o) => ({ stepId: o.stepId, payload: o.payload })) }],
      ));
      receiptFailure = undefined;
    } catch (err) {
      // Verdicts still go out (a waiting chain must not hang), without a receipt: the chain decides.
      receiptFailure = `coordination receipts could not be signed: ${failureMessage(err)}`;
      log.warn('coordination receipts not signed', { domain, error: receiptFailure });
    }
    out.forEach((o, i) => {
      const r = receipts?.[i];
      if (r) {
        head = { seq: r.seq, hash: r.hash };
        if (o.verdict) {
          o.verdict.receipt = { coordinatorId: self, seq: r.seq, hash: r.hash, digest: r.digest };
          // The chain verifies a signed verdict before acting on it: a signal anyone could send is no grant.
          if (validated) Object.assign(o.verdict.receipt, { prevHash: r.prevHash, signature: r.signature, event: o.payload.event });
        }
        o.onSigned?.(r, signedAt);
      }
    });
    const verdicts = out.flatMap((o) => (o.verdict ? [o.verdict] : []));
    recent.push(...verdicts);
    recent.splice(0, Math.max(0, recent.length - RECENT_VERDICTS));
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
            log.info('slot verdict not delivered (the chain has ended)', { domain, requestId: v.requestId, status: v.status, error: failureMessage(err) });
            break; // the chain is gone: its later verdicts cannot be delivered either
          }
        }
      }),
    );
  };

  // ---- visibility -------------------------------------------------------------------------------
  let published = '';
  const publish = (): void => {
    const lines = [`**Coordinator of \`${domain}\`** — run ${runs}, ${counters.batch} batch(es), receipts #${head.seq}`, ''];
    lines.push(holder ? `Holder: \`${holder.requestId}\` — ${holder.request.action} on \`${holder.request.resource}\` (grant ${holder.grant}, order ${holder.order})` : 'Holder: none');
    if (batch) lines.push(`Collecting batch ${batch.seq}: ${batch.requests.length} request(s)`);
    lines.push('', `Queue (${queue.length}):`);
    queue.forEach((e, i) => lines.push(`${i + 1}. \`${e.requestId}\` ${e.request.action} on \`${e.request.resource}\` — authority ${e.authority}, priority ${e.request.priority}, order ${e.order}${e.state === 'tie' ? ` — **tie ${e.tieId}**` : ''}${e.note ? ` — ${e.note}` : ''}`));
    for (const t of ties) lines.push(`- **${t.tieId}**: ${t.contenders.join(' vs ')} — awaiting ${t.role} by ${t.deadlineAt ?? t.deadline}`);
    const vs = Object.entries(versions);
    if (vs.length > 0) lines.push('', `Versions: ${vs.map(([r, v]) => `\`${r}\` v${v}`).join(', ')}`);
    const text = lines.join('\n');
    if (text !== published) {
      setCurrentDetails(text);
      published = text;
    }
  };

  // ---- the loop ---------------------------------------------------------------------------------
  const limit = input.options?.continueAsNewAfterEvents;
  // Patched runs carry open ties with their deadlines (every tie has one: ties come from an
  // admission, which reports its time); older runs wait until none is open.
  const tiesCarried = (): boolean => (validated ? ties.every((t) => t.deadlineAt !== undefined) : ties.length === 0);
  const continueAsNewDue = (): boolean =>
    handled > 0 && !batch && tiesCarried() && votes.length === 0 && outgoing.length === 0 && (workflowInfo().continueAsNewSuggested || (limit !== undefined && workflowInfo().historyLength >= limit));

  // the domain's current rules (batching window, hold timeout) before the first message, and the time
  const started = await admit([]);
  const startedAt = started ? Date.parse(started.now) : undefined;
  if (holder && validated) {
    // The hold timeout runs from the grant, not from this run's start: sleep only what remains. A
    // carry without a grant time (older run, or the grant receipt was not signed) counts from this
    // run's start, as before, and records it so the next run does not start over again.
    const grantedAt = holder.grantedAt ?? started?.now;
    if (grantedAt !== undefined) holder = { ...holder, grantedAt };
    startHoldTimer(holder.grant, grantedAt !== undefined && startedAt !== undefined ? Date.parse(grantedAt) + holdTimeoutMs() - startedAt : holdTimeoutMs());
  } else if (holder) startHoldTimer(holder.grant, holdTimeoutMs());
  // Carried ties (already open, see above) expire at their deadline, not a full deadline from now
  // (no time known: the full deadline, late rather than early).
  for (const tie of ties) startTieTimer(tie, startedAt !== undefined && tie.deadlineAt !== undefined ? Date.parse(tie.deadlineAt) - startedAt : durationMs(tie.deadline));
  publish();
  for (;;) {
    await condition(
      () =>
        inbox.length > 0 ||
        batch?.due === true ||
        votes.length > 0 ||
        ties.some((t) => t.expired) ||
        holdExpired ||
        (!holder && queue[0]?.state === 'queued') ||
        continueAsNewDue(),
    );
    if (continueAsNewDue()) break;
    settling = true;
    while (inbox.length > 0) {
      const item = inbox.shift()!;
      handled++;
      if (item.kind === 'request') await onRequest(item.request);
      else if (item.kind === 'release') onRelease(item.release);
      else onWithdraw(item.withdraw);
    }
    if (batch?.due) await closeBatch();
    await processVotes();
    expireTies();
    grant();
    await flush();
    settling = false;
    publish();
  }

  // Queue, holder, versions, receipt head and unprocessed messages go to the next run; no batching
  // window is open (continueAsNewDue waits for it). Patched: open ties go too, and the next run
  // sleeps what remains of their deadlines and of the holder's timeout; older runs had no open tie.
  await condition(allHandlersFinished);
  const carriedTies: CarriedTie[] = ties.flatMap(({ expired: _e, rules: r, deadlineAt, ...t }) =>
    deadlineAt === undefined ? [] : [{ ...t, deadlineAt, rules: { conflicts: r.conflicts.map(([x, y]) => [x, y] as [string, string]), onConflict: r.onConflict } }],
  );
  const carry: CoordinatorCarry = { head, inbox, queue, ...(holder ? { holder } : {}), versions, recent, decided, counters, runs: runs + 1, ...(validated && carriedTies.length > 0 ? { ties: carriedTies } : {}) };
  await continueAsNew<typeof coordinatorWorkflow>({ domain, ...(input.options ? { options: input.options } : {}), carry });
}

