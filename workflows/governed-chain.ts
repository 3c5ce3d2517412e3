import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { GovernorActivities, GovernorAuthorizeResult, GovernStepResult } from '../activities';
import { ApprovalSubmission, type ApprovalState, type VoteVerdict } from '../contracts/approval';
import { GovernedChainInput, type Compensation, type Step } from '../contracts/chain';
import type { Decision } from '../contracts/decision';
import { durationMs } from '../contracts/duration';
import type { ServiceActivityInput } from '../contracts/executor';
import {
  approveSignal,
  denySignal,
  refreshCredentialSignal,
  refreshCredentialUpdate,
  revokeSignal,
  statusQuery,
  submitApprovalUpdate,
  type RefreshCredentialInput,
  type RevokeInput,
} from '../contracts/messages';
import { GENESIS_HASH, type Receipt, type ReceiptHead, type ReceiptKind } from '../contracts/receipt';
import { ErrorCode } from '../contracts/errors';
import { GOVERN_STEP_PATCH, VALIDATED_INPUT_PATCH } from '../contracts/patches';
import { UNDECODABLE_PAYLOAD, formatIssuePath, invalidInputMessage } from '../contracts/issues';
import { findTooDeep } from '../contracts/limits';
import {
  GovernorBreakGlassKey,
  GovernorPendingRolesKey,
  GovernorPolicyDigestKey,
  GovernorShadowDiffersKey,
  GovernorStatusKey,
  GovernorWorkloadKey,
} from '../contracts/search-attributes';
import type { ChainResult, ChainState, ExecutionOutcome, StepState } from '../contracts/state';
import { ChainStatus } from '../contracts/status';
import { ApprovalQueue } from './approval-queue';
import { SlotVerdict, releaseSlotSignal, slotVerdictSignal, withdrawSlotSignal } from '../contracts/coordination';
import { failureMessage } from './failure';
import { chainStepIdOf, compensationAction, failClosedDecision, idempotencyKey, resourceLabel, stepAction, type GovernedAction } from '../core/step';

/*
 * Deterministic code only: no Node built-ins, no clocks, no randomness, no I/O. Every decision,
 * signature and side effect happens in an activity whose result is recorded in history.
 */

const LOCAL_RETRY: RetryPolicy = { maximumAttempts: 5, initialInterval: '200ms', backoffCoefficient: 2, nonRetryableErrorTypes: ['GOVERNOR_INVALID_INPUT'] };

// Authorization, vote verification and receipts run as local activities: fast, in-process on the
// governor worker, and their results are still recorded in history (as markers) for replay and audit.
const governor = proxyLocalActivities<GovernorActivities>({ startToCloseTimeout: '10s', retry: LOCAL_RETRY });

// Executors run as normal activities: side effects get Temporal's at-least-once delivery with a
// bounded retry policy; the idempotency key makes a retry safe on the receiving side.
const EXECUTOR_RETRY: RetryPolicy = {
  maximumAttempts: 3,
  initialInterval: '1s',
  backoffCoefficient: 2,
  nonRetryableErrorTypes: ['GOVERNOR_INVALID_INPUT', 'GOVERNOR_HOST_NOT_ALLOWED', 'GOVERNOR_EXECUTOR_FAILED'],
};
const executors = proxyActivities<GovernorActivities>({ startToCloseTimeout: '2m', retry: EXECUTOR_RETRY });

export { GOVERN_STEP_PATCH, VALIDATED_INPUT_PATCH };

/** Most malformed-vote verdicts kept for `status` while no step awaits approval. */
const MAX_STRAY_VERDICTS = 20;

/** One governed action (a step or a compensation) as the chain authorizes and executes it. */
type Action = GovernedAction;

/** Thrown inside the chain when it was revoked; never leaves the workflow. */
class Revoked extends Error {}

/** Runs a chain: every step re-authorized, escalated when policy says so, executed once, recorded (DESIGN §4). */
export async function governedChainWorkflow(raw: GovernedChainInput): Promise<ChainResult> {
  // The workflow is the trust boundary: other SDKs start it without our client, so it checks its own input.
  const strict = patched(VALIDATED_INPUT_PATCH);
  const input = strict ? await acceptInput(raw) : raw;
  const { chainId, chain } = input;
  // The chain id names the lineage (receipts, credential bindings, verify): it must be this workflow's id.
  const { workflowId, firstExecutionRunId } = workflowInfo();
  if (chainId !== workflowId) throw ApplicationFailure.nonRetryable(`chainId: ${JSON.stringify(String(chainId).slice(0, 200))} is not this workflow's id (start the chain with workflow id = chainId)`, 'GOVERNOR_INVALID_INPUT');
  const resume = input.resume;
  let credential = input.credential;
  let attestation = input.attestation;
  let credentialRefreshed = false;
  let revoked: RevokeInput | undefined;
  let head: ReceiptHead = resume?.head ?? { seq: 0, hash: GENESIS_HASH };
  let lastSignature: string | undefined;
  let lastReceipt: Receipt | undefined;
  let receiptFailure: string | undefined;
  const approvals = new ApprovalQueue();
  // The step in flight runs in its own scope so a revocation can cancel it.
  let inFlight: CancellationScope | undefined;

  const state: ChainState = {
    chainId,
    workload: chain.workload,
    status: ChainStatus.Running,
    steps: (resume?.steps as unknown as StepState[] | undefined) ?? chain.steps.map((s) => ({ id: s.id, action: s.action, resource: resourceLabel(s.resource), status: 'pending' })),
    receiptHead: head,
    policyDigest: resume?.policyDigest,
    breakGlass: resume?.breakGlass,
  };
  const stepState = (id: string): StepState => state.steps.find((x) => x.id === id)!;

  // ---- messages -------------------------------------------------------------------------------
  const applyRefresh = (refresh: RefreshCredentialInput): void => {
    credential = refresh.credential;
    if (refresh.attestation) attestation = refresh.attestation;
    credentialRefreshed = true;
  };
  setHandler(statusQuery, () => state);
  setHandler(refreshCredentialSignal, (refresh) => {
    try {
      validateRefresh(refresh);
      applyRefresh(refresh);
    } catch (err) {
      log.warn('refreshCredential signal ignored', { chainId, reason: (err as Error).message });
    }
  });
  setHandler(
    refreshCredentialUpdate,
    (refresh) => {
      applyRefresh(refresh);
      return state;
    },
    { validator: validateRefresh },
  );
  const onVoteSignal = (via: 'approve-signal' | 'deny-signal') => (submission: ApprovalSubmission) => {
    const parsed = ApprovalSubmission.safeParse(submission);
    if (!parsed.success) {
      // Recorded in history as a signal; malformed, so it is never counted.
      log.warn('vote signal ignored', { chainId, via, reason: 'malformed vote' });
      if (strict) {
        // The sender (UI, CLI) cannot see a signal's fate: the rejected verdict is shown by `status`.
        const verdict = approvals.reject(via, `malformed vote: ${invalidInputMessage(parsed.error)}`);
        if (!approvals.current) state.strayVotes = [...(state.strayVotes ?? []), verdict].slice(-MAX_STRAY_VERDICTS);
        publishDetails();
      }
      return;
    }
    // Queued even when no step awaits approval yet: a vote that arrives early is not lost.
    approvals.enqueue(parsed.data.token, via);
  };
  setHandler(approveSignal, onVoteSignal('approve-signal'));
  setHandler(denySignal, onVoteSignal('deny-signal'));
  setHandler(
    submitApprovalUpdate,
    async (submission) => {
      const seq = approvals.enqueue(submission.token, 'update');
      const approval = approvals.current!;
      // Answered once the vote's consequences are decided (quorum → re-authorized → approved or
      // denied), so the caller sees the approval's real outcome, not 'pending'.
      await condition(() => approvals.verdicts.has(seq) && !(strict && approvals.deciding));
      return { verdict: approvals.verdicts.get(seq)!, approval };
    },
    {
      validator: (submission) => {
        const parsed = ApprovalSubmission.safeParse(submission);
        if (!parsed.success) throw ApplicationFailure.nonRetryable(strict ? invalidInputMessage(parsed.error) : parsed.error.issues.map((i) => i.message).join('; '), ErrorCode.InvalidInput);
        if (!approvals.current) throw ApplicationFailure.nonRetryable('no step of this chain is awaiting approval', 'GOVERNOR_INVALID_INPUT');
      },
    },
  );
  // Coordination verdicts arrive by signal from the domain's coordinator, keyed by request id.
  const slotVerdicts = new Map<string, SlotVerdict>();
  /** Validating runs: every final verdict received per request, in arrival order (each verified before use). */
  const receivedVerdicts = new Map<string, SlotVerdict[]>();
  setHandler(slotVerdictSignal, (raw) => {
    if (typeof raw?.requestId !== 'string') return;
    let verdict = raw;
    if (strict) {
      const parsed = SlotVerdict.safeParse(raw);
      if (!parsed.success || parsed.data.chainId !== chainId) {
        log.warn('slotVerdict signal ignored', { chainId, reason: parsed.success ? 'another chain' : invalidInputMessage(parsed.error) });
        return;
      }
      verdict = parsed.data;
    }
    // A compensation's request is shown on its step.
    const s = state.steps.find((x) => x.id === (strict ? chainStepIdOf(verdict.stepId) : verdict.stepId));
    if (s?.coordination && s.coordination.requestId === verdict.requestId && s.coordination.status === 'queued') {
      s.coordination = { ...s.coordination, status: verdict.status, reason: verdict.reason, position: verdict.position, order: verdict.order, conflictWith: verdict.conflictWith, version: verdict.version };
    }
    if (verdict.status !== 'queued') {
      slotVerdicts.set(verdict.requestId, verdict);
      if (strict) receivedVerdicts.set(verdict.requestId, [...(receivedVerdicts.get(verdict.requestId) ?? []), verdict]);
    }
    publishDetails();
  });
  setHandler(revokeSignal, (revoke) => {
    if (revoked) return;
    revoked = { reason: typeof revoke?.reason === 'string' ? revoke.reason.slice(0, 500) : 'revoked', by: typeof revoke?.by === 'string' ? revoke.by.slice(0, 200) : undefined };
    inFlight?.cancel();
  });

  // ---- visibility -----------------------------------------------------------------------------
  const publishDetails = (): void => {
    const lines = state.steps.map((s, i) => {
      const mark = s.status === 'completed' ? 'x' : ' ';
      const decision = s.decision ? ` — ${s.decision.effect}` : '';
      const queued = s.coordination?.status === 'queued' ? ` (queued in ${s.coordination.domain}${s.coordination.position !== undefined ? `, place ${s.coordination.position}` : ''})` : '';
      const waiting = s.approval?.outcome === 'pending' ? ` (approved by ${s.approval.approvedBy.map((a) => a.approver).join(', ') || 'nobody yet'}; ${s.approval.stillNeeded} more of ${s.approval.eligibleRoles.join('/')})` : '';
      return `- [${mark}] ${i + 1}. **${s.action}** on \`${s.resource}\`: ${s.status}${decision}${waiting}${queued}`;
    });
    const headline = `**${state.status}**${state.pending ? ` — ${state.pending}` : ''}${state.reason ? ` — ${state.reason}` : ''}`;
    setCurrentDetails([headline, '', ...lines].join('\n'));
  };
  // Search attributes and details are upserted only on change: each upsert is a history event.
  let publishedStatus: ChainStatus | undefined;
  const setStatus = (status: ChainStatus, pending?: string): void => {
    const changed = status !== state.status || pending !== state.pending;
    state.status = status;
    state.pending = pending;
    if (status !== publishedStatus) {
      upsertSearchAttributes([{ key: GovernorStatusKey, value: status }]);
      publishedStatus = status;
    }
    if (changed) publishDetails();
  };
  const setPendingRoles = (roles: string[] | undefined): void => {
    state.pendingRoles = roles;
    upsertSearchAttributes([{ key: GovernorPendingRolesKey, value: roles ?? [] }]);
  };

  // ---- receipts -------------------------------------------------------------------------------
  const advance = (receipt: Receipt): void => {
    head = { seq: receipt.seq, hash: receipt.hash };
    lastSignature = receipt.signature;
    lastReceipt = receipt;
    state.receiptHead = head;
  };
  /** Signs and links a receipt; false (and the chain fails closed) when it cannot be recorded. */
  const record = async (stepId: string | undefined, kind: ReceiptKind, payload: unknown): Promise<boolean> => {
    try {
      advance((await governor.recordReceipt({ chainId, stepId, kind, payload, prev: head })).receipt);
      return true;
    } catch (err) {
      receiptFailure ??= `a ${kind} receipt could not be recorded: ${failureMessage(err)}`;
      return false;
    }
  };

  // ---- authorization --------------------------------------------------------------------------
  /** What the latest `authorize` of each step said about coordination (undefined: it did not say). */
  const coordinatedHint = new Map<string, boolean | undefined>();
  /** What `authorize` (and `governStep`) evaluate for an action: the current credentials, the receipt head, the step binding. */
  const authorizeInput = (a: Action) => ({
    chainId,
    stepId: a.stepId,
    kind: a.kind,
    workload: chain.workload,
    action: a.action,
    resource: a.resource,
    context: a.context,
    credential,
    attestation,
    firstRunId: firstExecutionRunId,
    prev: head,
    binding: { input: a.input, executor: a.executor },
    ...(strict ? { coordinateCompensations: true } : {}),
  });
  /** Authorizes one action; waits for a refreshed credential when only the credential's expiry failed. */
  const authorize = async (a: Action, s: StepState, votes?: { approver: string; roles: string[] }[], recorded?: GovernorAuthorizeResult): Promise<GovernorAuthorizeResult | Decision> => {
    for (;;) {
      let result: GovernorAuthorizeResult;
      if (recorded) {
        // Already decided by `governStep`: absorbed like an `authorize` result.
        result = recorded;
        recorded = undefined;
      } else try {
        if (revoked) throw new Revoked();
        result = await governor.authorize.executeWithOptions(
          { startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: `authorize ${a.action} on ${resourceLabel(a.resource)}` },
          [{ ...authorizeInput(a), ...(votes ? { approvals: votes } : {}) }],
        );
      } catch (err) {
        if (err instanceof Revoked) throw err;
        // Fail closed: authorization that cannot complete is a deny, never an allow.
        return failClosedDecision(`authorization could not complete: ${failureMessage(err)}`);
      }
      advance(result.receipt);
      coordinatedHint.set(a.stepId, result.coordinated);
      if (result.decision.bundleDigest && result.decision.bundleDigest !== state.policyDigest) {
        state.policyDigest = result.decision.bundleDigest;
        upsertSearchAttributes([{ key: GovernorPolicyDigestKey, value: result.decision.bundleDigest }]);
      }
      if (result.shadow?.differs && !state.shadowDiffers) {
        // Shadow mode: recorded (receipt, log, search attribute), never enforced.
        state.shadowDiffers = true;
        upsertSearchAttributes([{ key: GovernorShadowDiffersKey, value: true }]);
      }
      if (!result.credentialExpired) return result;

      // The credential is (only) expired: wait for a refresh up to the manifest's grace period.
      credentialRefreshed = false;
      const previous = s.status;
      s.status = 'awaiting-credential';
      setStatus(ChainStatus.AwaitingCredential, `a refreshed credential (refreshCredential) within ${result.gracePeriod} ms`);
      const refreshed = await condition(() => credentialRefreshed || revoked !== undefined, result.gracePeriod);
      if (revoked) throw new Revoked();
      if (!refreshed) return { ...result.decision, reason: `credential expired and no refresh arrived within ${result.gracePeriod} ms` };
      s.status = previous;
      setStatus(ChainStatus.Running);
    }
  };

  /**
   * Waits for human approval of an escalated action: verified votes, quorum of distinct eligible
   * approvers, deny on an authorized deny vote or at the deadline, then re-authorization with the
   * approvals in context (policy has the last word).
   */
  const awaitApproval = async (a: Action, s: StepState, first: GovernorAuthorizeResult): Promise<{ allowed: boolean; decision: Decision; reason?: string }> => {
    let decision = first.decision;
    const requirement = decision.escalation!;
    const deadlineMs = durationMs(requirement.deadline);
    const approval: ApprovalState = {
      stepId: a.stepId,
      stepDigest: first.stepDigest,
      roles: [...requirement.roles],
      eligibleRoles: [...requirement.roles],
      quorum: requirement.quorum,
      deadline: requirement.deadline,
      deadlineAt: decision.evaluatedAt ? new Date(Date.parse(decision.evaluatedAt) + deadlineMs).toISOString() : undefined,
      approvedBy: [],
      stillNeeded: requirement.quorum,
      verdicts: [],
      outcome: 'pending',
    };
    s.approval = approval;
    approvals.current = approval;
    approvals.resume(a.stepId);
    s.status = 'awaiting-approval';
    setPendingRoles(approval.eligibleRoles);
    setStatus(ChainStatus.AwaitingApproval, `${approval.quorum} approval(s) from ${approval.eligibleRoles.join(' or ')} by ${approval.deadlineAt ?? requirement.deadline}`);

    let expired = false;
    const timers = new CancellationScope();
    const timersDone = timers
      .run(() =>
        Promise.all([
          sleep(deadlineMs).then(() => {
            expired = true;
          }),
          // The escalation ladder: after each interval a further role becomes eligible.
          ...(first.approvalRules?.ladder ?? []).map((rung) =>
            sleep(rung.afterMs).then(() => {
              for (const role of rung.roles) if (!approval.eligibleRoles.includes(role)) approval.eligibleRoles.push(role);
              setPendingRoles(approval.eligibleRoles);
              publishDetails();
            }),
          ),
        ]),
      )
      .catch((err: unknown) => {
        if (!isCancellation(err)) throw err;
      });

    const finish = async (outcome: ApprovalState['outcome'], result: { allowed: boolean; decision: Decision; reason?: string }) => {
      approval.outcome = outcome;
      approvals.close(`the approval of step ${a.stepId} is no longer pending (${outcome})`);
      timers.cancel();
      await timersDone;
      setPendingRoles(undefined);
      setStatus(ChainStatus.Running);
      return result;
    };

    for (;;) {
      await condition(() => approvals.pending.length > 0 || expired || revoked !== undefined);
      if (revoked) {
        await finish('denied', { allowed: false, decision });
        throw new Revoked();
      }
      let breakGlass: VoteVerdict | undefined;
      while (approvals.pending.length > 0 && !breakGlass) {
        const submission = approvals.pending.shift()!;
        let verdict: VoteVerdict;
        try {
          const r = await governor.verifyApproval.executeWithOptions(
            { startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: `verify vote ${submission.seq} for ${a.stepId}` },
            [
              {
                token: submission.token,
                via: submission.via,
                seq: submission.seq,
                chainId,
                stepId: a.stepId,
                stepDigest: approval.stepDigest,
                workload: chain.workload,
                owner: chain.owner,
                eligibleRoles: [...approval.eligibleRoles],
                prev: head,
              },
            ],
          );
          advance(r.receipt);
          verdict = r.verdict;
        } catch (err) {
          verdict = { seq: submission.seq, via: submission.via, counted: false, reason: `vote could not be verified: ${failureMessage(err)}` };
        }
        const later = verdict.forStep ? chain.steps.findIndex((x) => x.id === verdict.forStep) : -1;
        if (later > chain.steps.findIndex((x) => x.id === a.stepId)) {
          // A valid vote for a later step of this chain: kept for when that step awaits approval.
          approvals.defer(verdict.forStep!, submission);
          approvals.verdicts.set(submission.seq, verdict);
          continue;
        }
        approvals.settle(verdict);
        publishDetails();
        if (verdict.counted && verdict.decision === 'deny') {
          return finish('denied', { allowed: false, decision, reason: `denied by approver ${verdict.approver}${verdict.reason ? `: ${verdict.reason}` : ''}` });
        }
        if (verdict.breakGlass) breakGlass = verdict;
      }

      if (breakGlass || approval.approvedBy.length >= approval.quorum) {
        const votes = [...approval.approvedBy, ...(breakGlass ? [{ approver: breakGlass.approver!, roles: breakGlass.roles ?? [] }] : [])];
        approvals.deciding = true;
        let again: Awaited<ReturnType<typeof authorize>>;
        try {
          again = await authorize(a, s, votes);
        } finally {
          approvals.deciding = false;
        }
        if (!('decision' in again)) return finish('denied', { allowed: false, decision: again, reason: again.reason });
        decision = again.decision;
        if (decision.effect === 'allow') return finish('approved', { allowed: true, decision });
        if (decision.effect === 'deny') return finish('denied', { allowed: false, decision, reason: `policy denied after approval: ${decision.reason ?? 'deny'}` });
        if (breakGlass) {
          // Only escalatable forbids still block: break-glass lets the step through, marked for review.
          s.breakGlass = { approver: breakGlass.approver!, justification: breakGlass.justification ?? '' };
          state.breakGlass = true;
          upsertSearchAttributes([{ key: GovernorBreakGlassKey, value: true }]);
          return finish('break-glass', { allowed: true, decision });
        }
        // Policy still escalates (e.g. a second role is needed): keep waiting with its requirement.
        const next = decision.escalation!;
        for (const role of next.roles) if (!approval.eligibleRoles.includes(role)) approval.eligibleRoles.push(role);
        approval.quorum = Math.max(approval.quorum, next.quorum, approval.approvedBy.length + 1);
        approval.stillNeeded = Math.max(0, approval.quorum - approval.approvedBy.length);
        setPendingRoles(approval.eligibleRoles);
        publishDetails();
      }
      if (expired && approvals.pending.length === 0) {
        return finish('expired', { allowed: false, decision, reason: `no quorum of ${approval.quorum} by the approval deadline (${approval.deadline})` });
      }
    }
  };

  // ---- execution ------------------------------------------------------------------------------
  /**
   * Runs the executor. Built-in executors sign their own execution receipt (returned here); a
   * service activity's outcome is recorded by the caller with `recordReceipt`.
   */
  const execute = async (a: Action): Promise<{ outcome: ExecutionOutcome; receipt?: Receipt }> => {
    const key = idempotencyKey(chainId, a.stepId);
    const summary = `execute ${a.action} on ${resourceLabel(a.resource)}`;
    const scope = new CancellationScope();
    inFlight = scope;
    try {
      return await scope.run(async () => {
        if (a.executor.type === 'activity') {
          // The service's own activity, on the service's own task queue: the governor never holds its credentials.
          const retry: RetryPolicy = { maximumAttempts: 3, initialInterval: '1s', backoffCoefficient: 2 };
          const options = {
            taskQueue: a.executor.taskQueue,
            startToCloseTimeout: a.executor.timeoutMs,
            ...(a.executor.heartbeatTimeoutMs ? { heartbeatTimeout: a.executor.heartbeatTimeoutMs } : {}),
            retry,
          };
          const service = proxyActivities<Record<string, (arg: ServiceActivityInput) => Promise<unknown>>>(options);
          const serviceInput: ServiceActivityInput = { idempotencyKey: key, chainId, stepId: a.stepId, action: a.action, resource: a.resource, input: a.input };
          const result = await service[a.executor.activityType]!.executeWithOptions(
            { ...options, summary },
            [serviceInput],
          );
          return { outcome: { executor: 'activity' as const, idempotencyKey: key, result: result ?? null } };
        }
        const kind: ReceiptKind = a.kind === 'step' ? 'execution' : 'compensation-execution';
        const done = await executors.execute.executeWithOptions(
          { startToCloseTimeout: a.executor.type === 'http' ? a.executor.timeoutMs * 2 : '30s', retry: EXECUTOR_RETRY, summary },
          [{ chainId, stepId: a.stepId, idempotencyKey: key, executor: a.executor, input: a.input, receipt: { kind, prev: head } }],
        );
        return { outcome: done.outcome, receipt: done.receipt };
      });
    } catch (err) {
      if (revoked && isCancellation(err)) throw new Revoked();
      throw err;
    } finally {
      inFlight = undefined;
    }
  };

  /**
   * Asks the domain's coordinator for a slot when the step's resource is coordinated, and waits for
   * the grant or the rejection (recorded as a receipt linked to the coordinator's own receipt).
   */
  const coordinate = async (a: Action, s: StepState): Promise<{ granted: true; release?: (completed: boolean) => Promise<void> } | { granted: false; reason: string }> => {
    // Approvers' roles can raise the step's authority in a conflict (manifest coordination.authority.roles).
    const counted = s.approval?.verdicts.filter((v) => v.counted && v.decision === 'approve') ?? [];
    const approverRoles = [...new Set(counted.flatMap((v) => v.roles ?? []))].sort();
    const ask = () =>
      governor.requestSlot.executeWithOptions(
        { startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: `request a slot for ${a.action} on ${resourceLabel(a.resource)}` },
        [{ chainId, stepId: a.stepId, workload: chain.workload, action: a.action, resource: a.resource, ...(a.coordination?.priority !== undefined ? { priority: a.coordination.priority } : {}), ...(a.coordination?.plannedVersion !== undefined ? { plannedVersion: a.coordination.plannedVersion } : {}), ...(approverRoles.length ? { approverRoles } : {}), taskQueue: workflowInfo().taskQueue }],
      );
    let asked: Awaited<ReturnType<typeof ask>>;
    if (!strict) asked = await ask();
    else {
      try {
        asked = await ask();
      } catch (err) {
        // Fail closed: a step whose coordination cannot be asked for does not run.
        return { granted: false, reason: `coordination could not be requested: ${failureMessage(err)}` };
      }
    }
    if (!asked.coordinated) return { granted: true };
    const coordinator = getExternalWorkflowHandle(asked.coordinatorId);
    s.coordination = { domain: asked.domain, requestId: asked.requestId, status: 'queued' };
    setStatus(ChainStatus.Running, `queued in coordination domain ${asked.domain}`);
    let verdict: SlotVerdict;
    for (;;) {
      const next = (): SlotVerdict | undefined => (strict ? receivedVerdicts.get(asked.requestId)?.[0] : slotVerdicts.get(asked.requestId));
      await condition(() => next() !== undefined || revoked !== undefined);
      if (revoked && !next()?.granted) {
        await coordinator.signal(withdrawSlotSignal, { chainId, stepId: a.stepId, reason: 'chain revoked' });
        throw new Revoked();
      }
      verdict = next()!;
      if (!strict) break;
      receivedVerdicts.get(asked.requestId)!.shift();
      // Anyone who may signal this workflow can send a verdict: act only on one the coordinator signed.
      let unverified: string | undefined;
      let judged = true;
      try {
        const checked = await governor.verifySlotVerdict.executeWithOptions(
          { startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: `verify the ${verdict.status} verdict of ${asked.domain}` },
          [{ verdict, coordinatorId: asked.coordinatorId, requestDigest: asked.request.requestDigest }],
        );
        if (!checked.ok) unverified = checked.reason;
      } catch (err) {
        // The check itself failed (keys unreadable…): the verdict may be genuine, so it is not skipped
        // and waited past (the coordinator sends it once); the step is denied instead.
        judged = false;
        unverified = `it could not be verified: ${failureMessage(err)}`;
      }
      if (unverified === undefined) break;
      if (judged && verdict.receipt?.signature !== undefined) {
        // A signature that does not verify is not the coordinator's: ignored, the chain keeps waiting.
        log.warn('slot verdict ignored', { chainId, stepId: a.stepId, reason: unverified });
        s.coordination = { ...s.coordination, status: 'queued' };
        continue;
      }
      // No signed receipt (the coordinator could not sign, or a sender without one), or no way to check
      // it: fail closed.
      await coordinator.signal(withdrawSlotSignal, { chainId, stepId: a.stepId, reason: 'unverifiable slot verdict' });
      s.coordination = { ...s.coordination, status: 'rejected', reason: unverified };
      setStatus(ChainStatus.Running);
      return { granted: false, reason: `coordination (${asked.domain}): the slot verdict is not verified as the coordinator's (${unverified})` };
    }
    s.coordination = { ...s.coordination, status: verdict.granted ? 'granted' : 'rejected', reason: verdict.reason, order: verdict.order, conflictWith: verdict.conflictWith, version: verdict.version };
    const recorded = await record(a.stepId, 'decision', { coordination: verdict });
    setStatus(ChainStatus.Running);
    if (!verdict.granted) return { granted: false, reason: `coordination (${asked.domain}): ${verdict.reason}` };
    if (strict && !recorded) {
      // A grant that cannot be recorded is not used: the slot goes back, the step does not run.
      await coordinator.signal(releaseSlotSignal, { chainId, stepId: a.stepId, completed: false });
      s.coordination = { ...s.coordination, status: 'released' };
      return { granted: false, reason: receiptFailure ?? 'the coordination grant could not be recorded' };
    }
    return {
      granted: true,
      release: async (completed) => {
        await coordinator.signal(releaseSlotSignal, { chainId, stepId: a.stepId, completed });
        s.coordination = { ...s.coordination!, status: 'released' };
      },
    };
  };

  /**
   * `governStep`: authorize and, when allowed outright, run a built-in executor in one activity.
   * Undefined when the activity could not complete (the workflow then authorizes as usual, which
   * fails closed).
   */
  const governInOne = async (a: Action): Promise<GovernStepResult | undefined> => {
    try {
      // Not cancellable: a built-in executor cannot be interrupted mid-request anyway, so a revocation
      // that arrives meanwhile lets the step finish and be recorded (and compensated like any completed
      // step) instead of leaving an effect without a receipt; the chain stops at its next step.
      return await CancellationScope.nonCancellable(() =>
        executors.governStep.executeWithOptions(
          {
            startToCloseTimeout: a.executor.type === 'http' ? a.executor.timeoutMs * 2 + 10_000 : '30s',
            retry: EXECUTOR_RETRY,
            summary: `authorize and execute ${a.action} on ${resourceLabel(a.resource)}`,
          },
          [{ ...authorizeInput(a), idempotencyKey: idempotencyKey(chainId, a.stepId) }],
        ),
      );
    } catch (err) {
      if (isCancellation(err)) throw err;
      log.warn('governStep could not complete; authorizing step by step', { chainId, stepId: a.stepId, reason: failureMessage(err) });
      return undefined;
    }
  };

  /** Authorizes (escalating when needed) and runs one action. Returns why it did not run, if it did not. */
  const govern = async (a: Action, s: StepState, onDecision: (d: Decision) => void): Promise<{ ran: true; outcome: ExecutionOutcome } | { ran: false; denied: string } | { ran: false; failed: string }> => {
    if (revoked) throw new Revoked();
    // Built-in executors: decision and execution in one activity (histories written before this
    // existed have no patch marker and replay through `authorize` + `execute`, as they ran).
    const inOne = a.executor.type !== 'activity' && patched(GOVERN_STEP_PATCH) ? await governInOne(a) : undefined;
    const first = await authorize(a, s, undefined, inOne?.authorized);
    if (inOne?.executed && 'decision' in first && first.decision.effect === 'allow') {
      // It ran: recorded even if a revocation arrived meanwhile (the revocation stops the next step).
      onDecision(first.decision);
      advance(inOne.executed.receipt);
      return { ran: true, outcome: inOne.executed.outcome };
    }
    if (inOne?.executionFailed !== undefined && 'decision' in first && first.decision.effect === 'allow') {
      // The executor refused for good (e.g. a 4xx): recorded as the step's failure, never sent twice.
      onDecision(first.decision);
      await record(a.stepId, a.kind === 'step' ? 'execution' : 'compensation-execution', { status: 'failed', error: inOne.executionFailed });
      return { ran: false, failed: inOne.executionFailed };
    }
    if (!('decision' in first)) {
      onDecision(first);
      return { ran: false, denied: first.reason ?? 'denied' };
    }
    onDecision(first.decision);
    if (first.decision.effect === 'deny') return { ran: false, denied: first.decision.reason ?? 'denied by policy' };
    if (first.decision.effect === 'escalate') {
      const verdict = await awaitApproval(a, s, first);
      onDecision(verdict.decision);
      if (!verdict.allowed) return { ran: false, denied: verdict.reason ?? 'not approved' };
    }
    if (revoked) throw new Revoked();
    // Only steps whose resource the manifest may coordinate ask for a slot; `authorize` said which (a
    // result recorded without the flag, from an older worker, asks as before: replay stays identical).
    const slot = (a.kind === 'step' || strict) && coordinatedHint.get(a.stepId) !== false ? await coordinate(a, s) : { granted: true as const };
    if (!slot.granted) return { ran: false, denied: slot.reason };
    s.status = a.kind === 'step' ? 'executing' : 'compensating';
    setStatus(ChainStatus.Running);
    publishDetails(); // step progress changed even when the chain's status did not
    let executed: { outcome: ExecutionOutcome; receipt?: Receipt };
    try {
      executed = await execute(a);
      await slot.release?.(true);
    } catch (err) {
      // A holder that did not complete releases without advancing the resource's version.
      await slot.release?.(false);
      if (err instanceof Revoked) throw err;
      const message = failureMessage(err);
      await record(a.stepId, a.kind === 'step' ? 'execution' : 'compensation-execution', { status: 'failed', error: message });
      // The executor refused the target before sending anything (connect-time re-check): a deny.
      if (strict && (err as { cause?: { type?: string } })?.cause?.type === ErrorCode.HostNotAllowed) return { ran: false, denied: message };
      return { ran: false, failed: message };
    }
    const { outcome } = executed;
    if (executed.receipt) advance(executed.receipt);
    else if (!(await record(a.stepId, a.kind === 'step' ? 'execution' : 'compensation-execution', { status: 'completed', outcome }))) {
      return { ran: false, failed: receiptFailure ?? 'receipt could not be recorded' };
    }
    return { ran: true, outcome };
  };

  // ---- the chain ------------------------------------------------------------------------------
  const completed: string[] = [...(resume?.completed ?? [])];
  let outcome: ChainStatus = ChainStatus.Completed;
  // Set by the workflow itself, so `revoke --workload` finds chains started from any SDK.
  if (strict) upsertSearchAttributes([{ key: GovernorWorkloadKey, value: chain.workload }]);
  setStatus(ChainStatus.Running);
  publishDetails();
  const stepsThisRun = input.options?.continueAsNewAfterSteps;
  let ranThisRun = 0;

  try {
    for (let i = resume?.nextStep ?? 0; i < chain.steps.length; i++) {
      const step = chain.steps[i]!;
      if (revoked) throw new Revoked();
      if (ranThisRun > 0 && (workflowInfo().continueAsNewSuggested || (stepsThisRun !== undefined && ranThisRun >= stepsThisRun))) {
        // Long chains continue as new before Temporal's history limits, carrying the receipt head;
        // a signed checkpoint closes each run's part of the receipt chain.
        const run = resume?.runs ?? 1;
        const payload = strict ? { continuedAsNew: true, nextStep: i, run, firstRunId: firstExecutionRunId } : { continuedAsNew: true, nextStep: i, run };
        if (!(await record(undefined, 'checkpoint', payload))) {
          state.reason = receiptFailure;
          outcome = ChainStatus.Failed;
          break;
        }
        await condition(allHandlersFinished);
        return await continueAsNew<typeof governedChainWorkflow>({
          ...input,
          credential,
          attestation,
          resume: {
            nextStep: i,
            head,
            steps: state.steps as unknown as Record<string, unknown>[],
            completed,
            policyDigest: state.policyDigest,
            breakGlass: state.breakGlass,
            runs: run + 1,
            ...(strict && lastReceipt ? { checkpoint: lastReceipt } : {}),
          },
        });
      }
      const s = stepState(step.id);
      state.currentStep = step.id;
      s.status = 'authorizing';
      const result = await govern(stepAction(step), s, (d) => (s.decision = d));
      ranThisRun++;
      if (!result.ran && 'denied' in result) {
        s.status = 'denied';
        s.error = result.denied;
        state.reason = `step ${step.id}: ${result.denied}`;
        outcome = ChainStatus.Denied;
        break;
      }
      if (!result.ran) {
        s.status = 'failed';
        s.error = result.failed;
        state.reason = `step ${step.id} failed: ${result.failed}`;
        outcome = ChainStatus.Failed;
        break;
      }
      s.outcome = result.outcome;
      s.status = 'completed';
      completed.push(step.id);
      publishDetails();
    }
  } catch (err) {
    if (!(err instanceof Revoked)) throw err;
    outcome = ChainStatus.Revoked;
    const s = state.currentStep ? stepState(state.currentStep) : undefined;
    if (s && s.status !== 'completed') {
      s.status = 'denied';
      s.error = `revoked: ${revoked?.reason ?? ''}`;
    }
    state.reason = `revoked${revoked?.by ? ` by ${revoked.by}` : ''}: ${revoked?.reason ?? ''}`;
    await record(state.currentStep, 'decision', { revoked: revoked ?? null });
  }
  state.currentStep = undefined;

  if (outcome !== ChainStatus.Completed) {
    for (const s of state.steps) if (s.status === 'pending') s.status = 'skipped';
    // Compensate completed steps newest first, each governed like any step (also after a revoke:
    // compensations undo effects; they are authorized with the chain's credential like any step).
    for (const id of [...completed].reverse()) {
      const step = chain.steps.find((x) => x.id === id)!;
      if (step.compensation) await compensate(step, step.compensation);
    }
  }

  async function compensate(step: Step, comp: Compensation): Promise<void> {
    const s = stepState(step.id);
    s.status = 'compensating';
    s.compensation = {};
    publishDetails();
    const a: Action = compensationAction(step, comp);
    const saved = revoked;
    revoked = undefined; // a revocation stops the chain, not the undoing of what it already did
    try {
      const result = await govern(a, s, (d) => (s.compensation!.decision = d));
      if (result.ran) {
        s.compensation.outcome = result.outcome;
        s.status = 'compensated';
      } else if ('denied' in result) {
        s.compensation.error = result.denied;
        s.status = 'compensation-denied';
        log.warn('compensation denied', { chainId, stepId: a.stepId, reason: result.denied });
      } else {
        s.compensation.error = result.failed;
        s.status = 'compensation-failed';
      }
    } catch (err) {
      if (!(err instanceof Revoked)) throw err;
      s.compensation.error = 'revoked during compensation';
      s.status = 'compensation-failed';
    } finally {
      revoked = saved ?? revoked;
    }
  }

  // The final signed checkpoint over the receipt chain; a chain that cannot be checkpointed is not
  // provably complete, so it ends Failed (fail closed).
  let checkpoint: string | undefined;
  if (await record(undefined, 'checkpoint', { status: outcome, reason: state.reason ?? null, steps: state.steps.length })) {
    checkpoint = lastSignature;
  } else if (outcome === ChainStatus.Completed) {
    outcome = ChainStatus.Failed;
    state.reason = receiptFailure;
  }
  if (receiptFailure && outcome === ChainStatus.Completed) {
    outcome = ChainStatus.Failed;
    state.reason = receiptFailure;
  }
  setPendingRoles(undefined);
  setStatus(outcome);
  await condition(allHandlersFinished);
  log.info('chain ended', { chainId, status: outcome });
  return { chainId, status: outcome, reason: state.reason, steps: state.steps, receiptHead: head, checkpoint };
}

/**
 * Parses the workflow's own input (defaults applied) and checks `resume`; anything invalid ends the run
 * at once as `Rejected` with a non-retryable `GOVERNOR_INVALID_INPUT` naming the field, before anything
 * is authorized or executed (never a workflow-task retry loop).
 */
async function acceptInput(raw: unknown): Promise<GovernedChainInput> {
  const info = workflowInfo();
  const reject = (message: string): never => {
    const state: ChainState = { chainId: info.workflowId, workload: '', status: ChainStatus.Rejected, reason: message, steps: [], receiptHead: { seq: 0, hash: GENESIS_HASH } };
    setHandler(statusQuery, () => state);
    upsertSearchAttributes([{ key: GovernorStatusKey, value: ChainStatus.Rejected }]);
    throw ApplicationFailure.nonRetryable(`invalid workflow input: ${message}`, ErrorCode.InvalidInput);
  };
  if (typeof raw === 'object' && raw !== null && typeof (raw as Record<string, unknown>)[UNDECODABLE_PAYLOAD] === 'string') {
    return reject(`(root): the payload could not be decoded (${(raw as Record<string, string>)[UNDECODABLE_PAYLOAD]}): send one JSON object (encoding json/plain)`);
  }
  // Only the governor's own continue-as-new carries `resume`: refused first in a run nobody continued,
  // whatever else is wrong with it (a first run with `resume` would skip steps without authorization).
  const claimsResume = typeof raw === 'object' && raw !== null && (raw as { resume?: unknown }).resume !== undefined;
  if (claimsResume && !info.continuedFromExecutionRunId) return reject('resume: set only by the governor when a chain continues as new; a new chain must not carry it');
  // Before zod, which recurses: a hostile 20,000-level document would overflow the stack.
  const deep = findTooDeep(raw);
  if (deep) return reject(`${formatIssuePath(deep)}: ${deep.message}`);
  const parsed = GovernedChainInput.safeParse(raw);
  if (!parsed.success) return reject(invalidInputMessage(parsed.error));
  const input = parsed.data;
  if (input.chainId !== info.workflowId) return reject(`chainId: is not this workflow's id (start the chain with workflow id = chainId)`);
  const { resume } = input;
  if (resume) {
    // A continued run: its head must be the checkpoint the previous run of this chain signed.
    let reason: string | undefined;
    try {
      const checked = await governor.verifyResume.executeWithOptions({ startToCloseTimeout: '10s', retry: LOCAL_RETRY, summary: 'verify the signed checkpoint this run resumes from' }, [
        {
          chainId: input.chainId,
          firstRunId: info.firstExecutionRunId,
          continuedFromRunId: info.continuedFromExecutionRunId,
          nextStep: resume.nextStep,
          runs: resume.runs,
          head: resume.head,
          ...(resume.checkpoint ? { checkpoint: resume.checkpoint } : {}),
        },
      ]);
      if (!checked.ok) reason = checked.reason;
    } catch (err) {
      reason = `resume: the checkpoint could not be verified: ${failureMessage(err)}`;
    }
    if (reason !== undefined) return reject(reason);
    if (resume.nextStep > input.chain.steps.length) return reject('resume.nextStep: beyond the last step of the chain');
  }
  return input;
}



/** Synchronous validator of a credential refresh: shape only; the activity verifies the token. */
function validateRefresh(refresh: RefreshCredentialInput): void {
  if (typeof refresh !== 'object' || refresh === null || typeof refresh.credential !== 'string' || refresh.credential.length === 0 || refresh.credential.length > 16_384) {
    throw ApplicationFailure.nonRetryable('credential: must be a non-empty JWT string', 'GOVERNOR_INVALID_INPUT');
  }
  if (refresh.attestation !== undefined && (typeof refresh.attestation !== 'string' || refresh.attestation.length > 16_384)) {
    throw ApplicationFailure.nonRetryable('attestation: must be a JWT string', 'GOVERNOR_INVALID_INPUT');
  }
}
