import { canonicalJson, sha256Hex } from '../../../core/canonical';
import { MCP_TOOL_CALL_ACTIVITY } from '../../../contracts/executor';
import { Activity, SLOT_VERDICT_SIGNAL } from '../../../core/history';
import { compensationStepId, outdatedAttestationReason, ownContext, resourceLabel } from '../../../core/step';
import { requestDigestInput, SLOT_SEAL_TYP, slotRequestId } from '../../../contracts/coordination';
import type { Receipt } from '../../../contracts/receipt';
import { GovernorPolicyDigestKey, GovernorStatusKey, GovernorWorkloadKey } from '../../../contracts/search-attributes';
import { ChainStatus } from '../../../contracts/status';
import { NULL_OUTPUT_DIGEST, SESSION_CONTEXT_KEY } from '../../../contracts/session';
import type { DecodedRun, ReceiptEntry, RecordedUpdate, ScheduledActivity } from '../decode';
import {
  expectedIdempotencyKey,
  expectedKind,
  expectedOwnContext,
  expectedResourceLabel,
  expectedStepDigest,
  governedActions,
  requestResource,
  type ActionFacts,
  type Actions,
} from '../derive';
import { verifyCompactJws, type TrustedKeys } from '../jws';
import { CheckName, Problems, type VerifyCheck } from '../report';
import { isRecord } from '../util';
import type { ChainReceipt } from './receipts';

/*
 * The `bindings` check: what receipts do not sign themselves is tied to what they do. Step digests
 * recomputed from the chain input; requests naming the step's workload, action, resource and context;
 * approvals in a request counted before it; executor activities scheduled only after an allowing
 * decision (or break-glass) and a coordination grant, with exactly the step's input; recorded outcomes
 * equal to what executors returned; sealed coordination requests and the verdicts coordinators
 * signalled; the workflow result's step states, vote-update results and search attributes matching
 * the receipts.
 *
 * `checkBindings` walks the chain's history in order (receipts, scheduled activities, slot requests)
 * and hands each item to the function for its kind; what a step may do depends on what came before.
 * What each action's facts must be is re-derived from the chain input (../derive.ts).
 */

/**
 * Coordination slot requests are sealed by the governor's receipt key over `{domain, requestDigest}`;
 * the digest covers the request's content. Returns a problem per `<run>/<eventId>` of a slot request
 * (undefined when the seal and digest hold).
 */
export async function checkSlotSeals(
  runs: DecodedRun[],
  keySet: TrustedKeys,
): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const run of runs) {
    for (const slot of run.slots) {
      if (slot.result.coordinated !== true) continue;
      const request = isRecord(slot.result.request) ? slot.result.request : {};
      let problem: string | undefined;
      let digest: string | undefined;
      try {
        digest = sha256Hex(canonicalJson(requestDigestInput(request as Parameters<typeof requestDigestInput>[0])));
      } catch {
        digest = undefined;
      }
      if (digest === undefined || request.requestDigest !== digest) problem = 'its digest does not match its content';
      else if (typeof request.seal !== 'string') problem = 'it is not sealed';
      else {
        const verified = await verifyCompactJws(request.seal, keySet, SLOT_SEAL_TYP);
        if (!verified.ok) problem = `its seal ${verified.problem}`;
        else if (verified.payload !== canonicalJson({ domain: request.domain, requestDigest: digest }))
          problem = 'its seal covers another request';
      }
      out.set(`${run.index}/${slot.eventId}`, problem);
    }
  }
  return out;
}

/** Activities that run a built-in executor (the other executor activities are services'). */
const EXECUTED_BY_GOVERNOR: readonly string[] = [Activity.execute, Activity.governStep];

/** The chain's facts the walk checks against, and what history said so far, per step. */
interface Walk {
  chainId: string;
  workload: string;
  actions: Actions;
  /** An agent session: proposals and their outcomes are checked too (checkSessionOutcomes). */
  session: boolean;
  runs: DecodedRun[];
  problems: Problems;
  /** Seal problems of slot requests, by `<run>/<eventId>` (`checkSlotSeals`). */
  slotSeals: Map<string, string | undefined>;
  /** Service activities that completed and whose result the workflow consumed. */
  completedActivities: ScheduledActivity[];
  /** The latest decision per step. */
  lastDecision: Map<string, Record<string, unknown>>;
  /** The latest `authorize` result per step. */
  lastAuthorize: Map<string, Record<string, unknown>>;
  /** Approvers whose vote was counted, per step. */
  counted: Map<string, Set<string>>;
  /** The counted break-glass verdict per step. */
  breakGlass: Map<string, Record<string, unknown>>;
  /** The outcome of each completed execution, per step. */
  outcomes: Map<string, unknown>;
  /** Vote verdicts the receipts record, by `<run>/<seq>`. */
  verdicts: Map<string, Record<string, unknown>>;
  /** The recomputed step digest per decided step. */
  stepDigests: Map<string, string>;
  /** Coordinated steps waiting for their slot verdict. */
  awaitingSlot: Set<string>;
  /** Steps whose slot was refused. */
  slotRefused: Set<string>;
  /** The coordinator each coordinated step asked. */
  coordinators: Map<string, string>;
  /** Completed executions seen. */
  executions: number;
  /**
   * An agent session's summary as the governor must have given it to policy (`context.session`): the
   * steps that completed before the decision, in total and per action, recomputed from the receipts.
   */
  sessionSummary?: { steps: number; actions: Record<string, number> };
}

/** Whether `stepId` may run now: allowed (or escalated with break-glass), and no slot pending or refused. */
function allowed(w: Walk, stepId: string): boolean {
  const effect = w.lastDecision.get(stepId)?.effect;
  if (w.awaitingSlot.has(stepId) || w.slotRefused.has(stepId)) return false;
  return effect === 'allow' || (effect === 'escalate' && w.breakGlass.has(stepId));
}

/** One item of the chain's history the walk visits. */
type Item =
  | { kind: 'receipt'; run: number; eventId: number; receipt: ChainReceipt | undefined }
  | { kind: 'activity'; run: number; eventId: number; activity: ScheduledActivity }
  | { kind: 'slot'; run: number; eventId: number; slot: Record<string, unknown> };

/**
 * Receipts, scheduled activities and slot requests in history order. By entry, not by event: a
 * `governStep` result holds two receipts (decision, execution) in one event.
 */
function timeline(runs: DecodedRun[], chain: ChainReceipt[]): Item[] {
  const receiptsByEntry = new Map<ReceiptEntry, ChainReceipt>(chain.map((c) => [c.entry, c]));
  const items = runs.flatMap((run): Item[] => [
    ...run.entries.map((e): Item => ({
      kind: 'receipt',
      run: run.index,
      eventId: e.eventId,
      receipt: receiptsByEntry.get(e),
    })),
    ...run.activities.map((a): Item => ({ kind: 'activity', run: run.index, eventId: a.eventId, activity: a })),
    ...run.slots.map((sl): Item => ({ kind: 'slot', run: run.index, eventId: sl.eventId, slot: sl.result })),
  ]);
  return items.sort((a, b) => a.run - b.run || a.eventId - b.eventId);
}

export function checkBindings(
  runs: DecodedRun[],
  chainId: string | null,
  chain: ChainReceipt[],
  finalStatus: string | null,
  slotSeals: Map<string, string | undefined>,
): VerifyCheck {
  const problems = new Problems();
  const firstRun = runs[0];
  if (!firstRun?.input || chainId === null) {
    problems.add('no chain input to bind receipts to');
    return problems.check(CheckName.Bindings, '');
  }
  const w: Walk = {
    chainId,
    workload: firstRun.input.chain.workload,
    actions: governedActions(firstRun),
    session: firstRun.session !== undefined,
    runs,
    problems,
    slotSeals,
    completedActivities: runs.flatMap((r) =>
      r.activities.filter((a) => !EXECUTED_BY_GOVERNOR.includes(a.type) && a.completed && !a.cancelledFirst),
    ),
    lastDecision: new Map(),
    lastAuthorize: new Map(),
    counted: new Map(),
    breakGlass: new Map(),
    outcomes: new Map(),
    verdicts: new Map(),
    stepDigests: new Map(),
    awaitingSlot: new Set(),
    slotRefused: new Set(),
    coordinators: new Map(),
    executions: 0,
    ...(firstRun.session !== undefined ? { sessionSummary: { steps: 0, actions: {} } } : {}),
  };

  // An activity must be scheduled only after an allowing decision for its step, with exactly the step's input.
  for (const item of timeline(runs, chain)) {
    if (item.kind === 'activity') scheduledActivity(w, item.activity);
    else if (item.kind === 'slot') slotRequest(w, item.run, item.eventId, item.slot);
    else if (item.receipt) receipt(w, item.receipt); // not a valid receipt: the receipts check names it
  }

  // What the workflow told the world must match its receipts: its result's step states, the
  // verdicts it returned to approvers, its search attributes.
  checkResultSteps(w);
  for (const run of runs) for (const update of run.updates.values()) updateResult(w, run, update);
  // Coordination messages: verdicts received and releases/withdrawals sent name this chain's steps.
  for (const run of runs) {
    for (const signal of run.signals) slotVerdictReceived(w, run, signal);
    for (const sent of run.sent) signalSent(w, run, sent);
  }
  if (w.session) checkSessionOutcomes(w, chain);
  checkSearchAttributes(runs, w.workload, chain, finalStatus, problems);
  return problems.check(
    CheckName.Bindings,
    `receipts bound to the chain's ${w.actions.size} action(s): step digests, requests, approvals, ${w.executions} execution outcome(s), executor inputs, result, search attributes`,
  );
}

// ---- one function per item kind ------------------------------------------------------------------

/** A receipt: by its source and kind, a coordination verdict (or revocation), a decision, a vote or an execution. */
function receipt(w: Walk, { receipt: r, entry }: ChainReceipt): void {
  const label = `receipt ${r.seq} (${r.kind}${r.stepId !== undefined ? `, step ${r.stepId}` : ''})`;
  if (r.kind === 'checkpoint') return;
  if ((r.kind === 'decision' || (r.kind as string) === 'coordination') && entry.source === Activity.recordReceipt) {
    coordinationVerdict(w, label, r, entry);
    return;
  }
  const stepId = r.stepId;
  const action = stepId !== undefined ? w.actions.get(stepId) : undefined;
  if (!action || stepId === undefined) {
    w.problems.add(`${label}: names no step of the chain`);
    return;
  }
  if (entry.source === Activity.authorize) decision(w, label, r, entry.result, stepId, action);
  else if (entry.source === Activity.verifyApproval) vote(w, entry, stepId);
  else if (r.kind === 'execution' || r.kind === 'compensation-execution') execution(w, label, entry, stepId);
}

/** A coordinated step asked its domain for a slot: it may run only once a grant is recorded. */
function slotRequest(w: Walk, run: number, eventId: number, slot: Record<string, unknown>): void {
  if (slot.coordinated !== true) return;
  const request = isRecord(slot.request) ? slot.request : {};
  const stepId = typeof request.stepId === 'string' ? request.stepId : '';
  const where = `slot request at event ${eventId} of run ${run + 1}`;
  const action = w.actions.get(stepId);
  const resource = action ? expectedResourceLabel(action) : undefined;
  if (
    request.chainId !== w.chainId ||
    !action ||
    request.workload !== w.workload ||
    request.action !== action.action ||
    request.resource !== resource
  ) {
    w.problems.add(`${where}: not for a step of this chain`);
    return;
  }
  if (slot.requestId !== slotRequestId(w.chainId, stepId) || slot.domain !== request.domain)
    w.problems.add(`${where}: its request id or domain is not the request's`);
  const seal = w.slotSeals.get(`${run}/${eventId}`);
  if (seal) w.problems.add(`${where}: ${seal}`);
  if (!allowed(w, stepId)) w.problems.add(`${where}: asked before an allowing decision`);
  w.awaitingSlot.add(stepId);
  w.coordinators.set(stepId, typeof slot.coordinatorId === 'string' ? slot.coordinatorId : '');
}

/**
 * A decision the workflow recorded itself (`recordReceipt`): a revocation, or a coordination verdict,
 * final, for this step, exactly as the coordinator signalled it.
 */
function coordinationVerdict(w: Walk, label: string, r: Receipt, entry: ReceiptEntry): void {
  const payload = isRecord(entry.result.payload) ? entry.result.payload : {};
  if (r.stepId !== undefined && !w.actions.has(r.stepId)) w.problems.add(`${label}: names no step of the chain`);
  if (isRecord(payload.revoked)) return; // a revocation {revoked: {reason, by?}}, naming the step in flight if any
  const verdict = isRecord(payload.coordination) ? payload.coordination : undefined;
  if (!verdict || r.stepId === undefined) {
    w.problems.add(`${label}: a recorded decision that is neither a revocation nor a coordination verdict`);
    return;
  }
  const final =
    (verdict.status === 'granted' && verdict.granted === true) ||
    (verdict.status === 'rejected' && verdict.granted === false);
  if (!final || verdict.chainId !== w.chainId || verdict.stepId !== r.stepId)
    w.problems.add(`${label}: not a final coordination verdict for this step`);
  const signalled = w.runs[entry.run]!.signals.some(
    (sg) =>
      sg.name === SLOT_VERDICT_SIGNAL &&
      sg.eventId < entry.eventId &&
      canonicalJson(sg.arg ?? null) === canonicalJson(verdict),
  );
  if (!signalled) w.problems.add(`${label}: no coordinator signalled this verdict`);
  if (!w.awaitingSlot.delete(r.stepId)) w.problems.add(`${label}: a verdict for a slot the step never requested`);
  if (verdict.granted !== true) w.slotRefused.add(r.stepId);
}

/** An `authorize` result: for the step's digest, and (when policy ran) evaluated on exactly the step's request. */
function decision(
  w: Walk,
  label: string,
  r: Receipt,
  res: Record<string, unknown>,
  stepId: string,
  action: ActionFacts,
): void {
  const compensation = expectedKind(stepId) === 'compensation';
  if ((r.kind === 'compensation-decision') !== compensation)
    w.problems.add(`${label}: the kind does not match the step`);
  const digest = expectedStepDigest(w.chainId, stepId, action);
  if (res.stepDigest !== digest) w.problems.add(`${label}: its step digest is not the digest of the chain's step`);
  w.stepDigests.set(stepId, digest);
  w.lastDecision.set(stepId, isRecord(res.decision) ? res.decision : {});
  w.lastAuthorize.set(stepId, res);
  if (res.request !== undefined && res.request !== null) evaluatedRequest(w, label, res.request, stepId, action);
}

/**
 * The request a decision evaluated: the chain's workload, the step's action, resource and own context,
 * and approvals counted before it.
 */
function evaluatedRequest(w: Walk, label: string, request: unknown, stepId: string, action: ActionFacts): void {
  const req = isRecord(request) ? request : {};
  const principal = isRecord(req.principal) ? req.principal : {};
  const resource = requestResource(action);
  if (principal.id !== w.workload)
    w.problems.add(`${label}: evaluated for ${String(principal.id)}, not the chain's workload`);
  if (req.action !== action.action || canonicalJson(req.resource ?? null) !== canonicalJson(resource ?? null))
    w.problems.add(`${label}: evaluated another action or resource than the step's`);
  const context = isRecord(req.context) ? req.context : {};
  // A session step's `context.session` is the governor's summary of the session, not the step's own.
  const own = ownContext(context);
  if (w.session) delete own[SESSION_CONTEXT_KEY];
  // Policy may count a session's steps (e.g. "at most two deletions per session"): the summary it was given
  // must be the one the receipts show, or a lying worker could have had a step allowed on a false count.
  if (w.sessionSummary && canonicalJson(context[SESSION_CONTEXT_KEY] ?? null) !== canonicalJson(w.sessionSummary))
    w.problems.add(
      `${label}: evaluated with a session summary (context.session) that is not the count of the steps completed before it`,
    );
  if (canonicalJson(own) !== expectedOwnContext(action))
    w.problems.add(`${label}: evaluated another context than the step's`);
  const approvals = isRecord(context.approvals) ? context.approvals : undefined;
  if (approvals) {
    const approvers = Array.isArray(approvals.approvers) ? approvals.approvers : [];
    const ok = w.counted.get(stepId) ?? new Set<string>();
    for (const a of approvers)
      if (typeof a !== 'string' || !ok.has(a))
        w.problems.add(`${label}: counts approver ${String(a)}, whose vote was not counted before`);
  }
}

/** A vote's verdict (`verifyApproval`): a counted approval or break-glass counts from here on. */
function vote(w: Walk, entry: ReceiptEntry, stepId: string): void {
  const verdict = isRecord(entry.result.verdict) ? entry.result.verdict : {};
  w.verdicts.set(`${entry.run}/${String(verdict.seq)}`, verdict);
  if (
    verdict.counted === true &&
    typeof verdict.approver === 'string' &&
    (verdict.decision === 'approve' || verdict.breakGlass === true)
  ) {
    const set = w.counted.get(stepId) ?? new Set<string>();
    set.add(verdict.approver);
    w.counted.set(stepId, set);
    if (verdict.breakGlass === true) w.breakGlass.set(stepId, verdict);
  }
}

/** A completed execution: allowed, with the step's idempotency key, and the outcome the executor returned. */
function execution(w: Walk, label: string, entry: ReceiptEntry, stepId: string): void {
  const res = entry.result;
  const payload = isRecord(res.payload) ? res.payload : {};
  if (payload.status !== 'completed') return; // a failed execution records the error, not an outcome
  w.executions++;
  const summary = w.sessionSummary;
  const action = w.actions.get(stepId)?.action;
  if (summary && typeof action === 'string') {
    summary.steps++;
    summary.actions[action] = (summary.actions[action] ?? 0) + 1;
  }
  if (!allowed(w, stepId))
    w.problems.add(
      `${label}: executed without an allowing decision (last: ${String(w.lastDecision.get(stepId)?.effect)})`,
    );
  const outcome = isRecord(payload.outcome) ? payload.outcome : {};
  w.outcomes.set(stepId, payload.outcome);
  const key = expectedIdempotencyKey(w.chainId, stepId);
  if (outcome.idempotencyKey !== key) w.problems.add(`${label}: idempotency key is not ${key}`);
  if (entry.source === Activity.execute) {
    if (canonicalJson(res.outcome ?? null) !== canonicalJson(payload.outcome ?? null))
      w.problems.add(`${label}: the receipt's outcome differs from the executor's`);
  } else if (outcome.executor === 'activity' || outcome.executor === 'mcp') {
    const ran = w.completedActivities.find(
      (a) => isRecord(a.input) && a.input.idempotencyKey === outcome.idempotencyKey,
    );
    if (!ran) w.problems.add(`${label}: no completed service activity ran with its idempotency key`);
    else if (canonicalJson(ran.result ?? null) !== canonicalJson(outcome.result ?? null))
      w.problems.add(`${label}: the recorded outcome differs from what the service activity returned`);
  }
}

/** An executor activity: scheduled after an allowing decision, for a step of the chain, with the step's exact input. */
function scheduledActivity(w: Walk, a: ScheduledActivity): void {
  const where = `activity scheduled at event ${a.eventId} of run ${a.run + 1}`;
  const input = isRecord(a.input) ? a.input : {};
  const stepId = typeof input.stepId === 'string' ? input.stepId : '';
  const action = w.actions.get(stepId);
  if (!action) {
    w.problems.add(`${where}: runs no step of the chain`);
    return;
  }
  const executor = isRecord(action.executor) ? action.executor : {};
  const resource = requestResource(action);
  const key = expectedIdempotencyKey(w.chainId, stepId);
  if (a.type === Activity.governStep) {
    // Decides before it executes: its own result must hold the allowing decision (checked with the
    // receipts); here, it must carry exactly the step, bound as `authorize` binds it.
    const binding = isRecord(input.binding) ? input.binding : {};
    const ok =
      input.chainId === w.chainId &&
      input.idempotencyKey === key &&
      input.kind === expectedKind(stepId) &&
      input.action === action.action &&
      sameJson(input.resource, resource) &&
      sameJson(input.context, action.context) &&
      sameJson(binding.input, action.input) &&
      sameJson(binding.executor, action.executor) &&
      executor.type !== 'activity';
    if (!ok) w.problems.add(`${where}: its input is not step ${stepId}'s`);
    return;
  }
  if (!allowed(w, stepId)) w.problems.add(`${where}: step ${stepId} scheduled without an allowing decision`);
  let ok = input.chainId === w.chainId && input.idempotencyKey === key && sameJson(input.input, action.input);
  if (a.type === Activity.execute) {
    const receipt = isRecord(input.receipt) ? input.receipt : {};
    ok &&=
      sameJson(input.executor, action.executor) &&
      receipt.kind === (expectedKind(stepId) === 'compensation' ? 'compensation-execution' : 'execution');
  } else if (executor.type === 'mcp') {
    // An MCP tool call on the gateway's queue: that upstream's tool, with the step's arguments.
    ok &&=
      a.type === MCP_TOOL_CALL_ACTIVITY &&
      input.server === executor.server &&
      input.tool === executor.tool &&
      input.action === action.action &&
      sameJson(input.resource, resource);
  } else {
    ok &&=
      executor.type === 'activity' &&
      executor.activityType === a.type &&
      input.action === action.action &&
      sameJson(input.resource, resource);
  }
  if (!ok) w.problems.add(`${where}: its input is not step ${stepId}'s`);
}

/** A vote update's result: the verdict a receipt records, for the right step, cast by its token's approver. */
function updateResult(w: Walk, run: DecodedRun, update: RecordedUpdate): void {
  if (update.name !== 'submitApproval' || !isRecord(update.result)) return;
  const verdict = isRecord(update.result.verdict) ? update.result.verdict : {};
  const recorded = w.verdicts.get(`${run.index}/${String(verdict.seq)}`);
  const approval = isRecord(update.result.approval) ? update.result.approval : {};
  if (!recorded) {
    // Votes closed before they were verified get a rejection that no receipt records.
    if (verdict.counted !== false)
      w.problems.add(`a vote update (seq ${String(verdict.seq)}) returned a verdict that no receipt records`);
    return;
  }
  const withoutRepeat = (v: Record<string, unknown>): string =>
    canonicalJson(Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'repeat')));
  if (withoutRepeat(verdict) !== withoutRepeat(recorded))
    w.problems.add(`a vote update (seq ${String(verdict.seq)}) returned another verdict than the receipt records`);
  if (typeof approval.stepId !== 'string' || approval.stepDigest !== w.stepDigests.get(approval.stepId))
    w.problems.add(`a vote update (seq ${String(verdict.seq)}) returned the approval of another step`);
  if (recorded.counted === true) {
    const claims = jwtClaims(isRecord(update.arg) ? update.arg.token : undefined);
    const stepId = typeof approval.stepId === 'string' ? approval.stepId : '';
    if (
      !claims ||
      claims.sub !== recorded.approver ||
      claims.chainId !== w.chainId ||
      claims.stepId !== stepId ||
      claims.stepDigest !== w.stepDigests.get(stepId) ||
      claims.decision !== recorded.decision
    ) {
      w.problems.add(`the counted vote ${String(verdict.seq)} was not cast by its token's approver for this step`);
    }
  }
}

/**
 * An agent session: every answered proposal carried a credential of the session's workload, and every
 * `executed` outcome the session returned (proposeStep, awaitStep) is bound to the recorded execution:
 * its output digest is the digest of the output the execution receipt commits to, its output (when
 * returned) is that output, and its receipt hash is the step's execution receipt.
 */
function checkSessionOutcomes(w: Walk, chain: ChainReceipt[]): void {
  const executionHash = new Map<string, string>();
  for (const c of chain)
    if (c.receipt.kind === 'execution' && c.receipt.stepId) executionHash.set(c.receipt.stepId, c.receipt.hash);
  for (const run of w.runs) {
    for (const [id, u] of run.updates) {
      if (!u.completed || u.result === undefined) continue;
      if (u.name === 'proposeStep') {
        const claims = jwtClaims(isRecord(u.arg) ? u.arg.credential : undefined);
        if (!claims || claims.sub !== w.workload)
          w.problems.add(
            `run ${run.index + 1}: proposal ${id} was not made with a credential of the session's workload`,
          );
      }
      if ((u.name !== 'proposeStep' && u.name !== 'awaitStep') || !isRecord(u.result)) continue;
      const o = u.result;
      if (o.outcome !== 'executed') continue;
      const stepId = typeof o.stepId === 'string' ? o.stepId : '';
      const recorded = w.outcomes.get(stepId);
      const output = isRecord(recorded) ? (recorded.result ?? null) : undefined;
      const where = `run ${run.index + 1}: the ${u.name} outcome of ${stepId || '(no step)'}`;
      if (output === undefined) {
        w.problems.add(`${where}: no execution receipt records it`);
        continue;
      }
      const digest = output === null ? NULL_OUTPUT_DIGEST : sha256Hex(canonicalJson(output));
      if (o.outputDigest !== digest) w.problems.add(`${where}: its output digest is not the recorded output's`);
      if (o.output !== undefined && canonicalJson(o.output) !== canonicalJson(output))
        w.problems.add(`${where}: its output is not the recorded output`);
      if (o.receiptHash !== executionHash.get(stepId))
        w.problems.add(`${where}: its receipt is not the execution receipt`);
    }
  }
}

/** A slot verdict the chain received names one of its steps and that step's request. */
function slotVerdictReceived(w: Walk, run: DecodedRun, signal: DecodedRun['signals'][number]): void {
  if (signal.name !== SLOT_VERDICT_SIGNAL) return;
  const v = isRecord(signal.arg) ? signal.arg : {};
  const stepId = typeof v.stepId === 'string' ? v.stepId : '';
  if (v.chainId !== w.chainId || !w.actions.has(stepId) || v.requestId !== slotRequestId(w.chainId, stepId)) {
    w.problems.add(
      `a slot verdict received at event ${signal.eventId} of run ${run.index + 1} is not for a step of this chain`,
    );
  }
}

/** A signal the chain sent (a release or withdrawal) goes to the coordinator its step asked, about that step. */
function signalSent(w: Walk, run: DecodedRun, sent: DecodedRun['sent'][number]): void {
  const arg = isRecord(sent.arg) ? sent.arg : {};
  const stepId = typeof arg.stepId === 'string' ? arg.stepId : '';
  if (arg.chainId !== w.chainId || !w.actions.has(stepId) || w.coordinators.get(stepId) !== sent.workflowId) {
    w.problems.add(
      `the ${sent.name} signal sent at event ${sent.eventId} of run ${run.index + 1} is not for a coordinated step of this chain`,
    );
  }
}

// ---- what the workflow reported ----------------------------------------------------------------

/** The workflow result's step states against the receipts (decisions, outcomes, break-glass). */
function checkResultSteps({ runs, actions, lastAuthorize, outcomes, breakGlass, problems }: Walk): void {
  const last = runs[runs.length - 1];
  if (
    last?.closure?.type !== 'completed' ||
    !isRecord(last.closure.result) ||
    !Array.isArray(last.closure.result.steps)
  )
    return;
  const steps = last.input?.chain.steps ?? [];
  const decisionMatches = (stated: unknown, id: string): boolean => {
    const recorded = lastAuthorize.get(id)?.decision;
    // No decision in the step state: never decided, or revoked while waiting for a refreshed credential.
    if (stated === undefined) return recorded === undefined || lastAuthorize.get(id)?.credentialExpired === true;
    const d = isRecord(stated) ? stated : {};
    // Authorization that could not complete is denied in the workflow (fail closed), with no bundle.
    if (d.effect === 'deny' && d.bundleDigest === '' && d.inputDigest === '' && d.evaluatedAt === '') return true;
    if (!isRecord(recorded)) return false;
    // A credential that expired without a refresh: the recorded decision with the workflow's reason.
    if (typeof d.reason === 'string' && d.reason.startsWith('credential expired and no refresh arrived')) {
      return sameJson({ ...d, reason: undefined }, { ...recorded, reason: undefined });
    }
    // An attestation outdated after an approval, with no fresh one in time: exactly the workflow's reason.
    const authorized = lastAuthorize.get(id);
    if (authorized?.attestationOutdated === true && typeof authorized.gracePeriod === 'number') {
      const reason = outdatedAttestationReason(recorded.reason as string | undefined, authorized.gracePeriod);
      if (d.reason === reason) return sameJson({ ...d, reason: undefined }, { ...recorded, reason: undefined });
    }
    return sameJson(d, recorded);
  };
  last.closure.result.steps.forEach((raw, i) => {
    const s = isRecord(raw) ? raw : {};
    const step = steps[i];
    const where = `the result's step ${i + 1}`;
    if (!step || s.id !== step.id || s.action !== step.action || s.resource !== resourceLabel(step.resource)) {
      problems.add(`${where}: not the chain's step`);
      return;
    }
    if (!decisionMatches(s.decision, step.id))
      problems.add(`${where} (${step.id}): its decision is not the recorded one`);
    if (!sameJson(s.outcome, outcomes.get(step.id)))
      problems.add(`${where} (${step.id}): its outcome is not the recorded one`);
    const comp = isRecord(s.compensation) ? s.compensation : undefined;
    const compId = compensationStepId(step.id);
    if (comp && actions.has(compId)) {
      if (!decisionMatches(comp.decision, compId))
        problems.add(`${where} (${step.id}): its compensation decision is not the recorded one`);
      if (!sameJson(comp.outcome, outcomes.get(compId)))
        problems.add(`${where} (${step.id}): its compensation outcome is not the recorded one`);
    } else if (comp || outcomes.has(compId))
      problems.add(`${where} (${step.id}): its compensation is not the recorded one`);
    const glass = breakGlass.get(step.id);
    if (
      s.breakGlass !== undefined &&
      (!glass || !sameJson(s.breakGlass, { approver: glass.approver, justification: glass.justification ?? '' }))
    ) {
      problems.add(`${where} (${step.id}): a break-glass approval no receipt records`);
    }
  });
  if (last.closure.result.steps.length !== steps.length)
    problems.add(`the result lists ${last.closure.result.steps.length} step(s), the chain has ${steps.length}`);
}

/** Search attributes: the workload at start, policy digests that decisions name, the final status. */
function checkSearchAttributes(
  runs: DecodedRun[],
  workload: string,
  chain: ChainReceipt[],
  finalStatus: string | null,
  problems: Problems,
): void {
  const digests = new Set(
    chain
      .filter((c) => c.entry.source === Activity.authorize)
      .map((c) => (isRecord(c.entry.result.decision) ? c.entry.result.decision.bundleDigest : undefined)),
  );
  const statuses = Object.values(ChainStatus) as string[];
  for (const run of runs) {
    const started = run.startAttributes[GovernorWorkloadKey.name];
    if (started !== undefined && started !== workload)
      problems.add(
        `run ${run.index + 1}: started with search attribute ${GovernorWorkloadKey.name} ${String(started)}`,
      );
    for (const upsert of run.upserts) {
      const digest = upsert[GovernorPolicyDigestKey.name];
      if (digest !== undefined && !digests.has(digest as string))
        problems.add(`run ${run.index + 1}: ${GovernorPolicyDigestKey.name} set to a digest no decision names`);
      const status = upsert[GovernorStatusKey.name];
      if (status !== undefined && !statuses.includes(status as string))
        problems.add(`run ${run.index + 1}: ${GovernorStatusKey.name} set to ${String(status)}`);
    }
  }
  const last = runs[runs.length - 1];
  if (last?.closure?.type === 'completed' && finalStatus !== null) {
    const set = last.upserts.map((u) => u[GovernorStatusKey.name]).filter((v) => v !== undefined);
    if (set[set.length - 1] !== finalStatus)
      problems.add(`the chain ended ${finalStatus}, its ${GovernorStatusKey.name} says ${String(set[set.length - 1])}`);
  }
}

function sameJson(x: unknown, y: unknown): boolean {
  return canonicalJson(x ?? null) === canonicalJson(y ?? null);
}

/** The claims of a compact JWT, unverified (only compared with what a verified receipt records). */
function jwtClaims(token: unknown): Record<string, unknown> | undefined {
  if (typeof token !== 'string') return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    return isRecord(claims) ? claims : undefined;
  } catch {
    return undefined;
  }
}
