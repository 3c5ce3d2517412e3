import { CancellationScope, condition, isCancellation, log, sleep, upsertSearchAttributes } from '@temporalio/workflow';
import type { GovernorAuthorizeResult } from '../../activities';
import {
  ApprovalSubmission,
  type ApprovalState,
  type SubmitApprovalResult,
  type VoteVerdict,
} from '../../contracts/approval';
import type { Decision } from '../../contracts/decision';
import { durationMs } from '../../contracts/duration';
import { notAnApprovalVote } from '../../core/jws-header';
import { invalidInputMessage } from '../../contracts/issues';
import { GovernorBreakGlassKey } from '../../contracts/search-attributes';
import type { StepState } from '../../contracts/state';
import { ChainStatus } from '../../contracts/status';
import { WEBHOOK_NOTIFY_PATCH } from '../../contracts/patches';
import type { GovernedAction } from '../../core/step';
import { failureMessage, invalidInput } from '../failure';
import { LOCAL_ACTIVITY } from '../retry';
import { authorize, type Authorization } from './authorize';
import { Notifications } from './notify';
import { governor } from './proxies';
import { Revoked, type ChainRun } from './run';

/** Most malformed-vote verdicts kept for `status` while no step awaits approval. */
const MAX_STRAY_VERDICTS = 20;

/** How an approval ended: the action may run (approved, break-glass), or not, and why. */
export type ApprovalResult =
  { allowed: true; decision: Decision } | { allowed: false; decision: Decision; reason?: string };

// ---- messages ---------------------------------------------------------------------------------

/** `approve` / `deny` signals: queued even when no step awaits approval yet (a vote that arrives early is not lost). */
export function onVoteSignal(
  run: ChainRun,
  via: 'approve-signal' | 'deny-signal',
  submission: ApprovalSubmission,
): void {
  const { approvals, state } = run;
  const parsed = ApprovalSubmission.safeParse(submission);
  if (!parsed.success) {
    // Recorded in history as a signal; malformed, so it is never counted.
    log.warn('vote signal ignored', { chainId: run.chainId, via, reason: 'malformed vote' });
    if (run.strict) {
      // The sender (UI, CLI) cannot see a signal's fate: the rejected verdict is shown by `status`.
      const verdict = approvals.reject(via, `malformed vote: ${invalidInputMessage(parsed.error)}`);
      if (!approvals.current) state.strayVotes = [...(state.strayVotes ?? []), verdict].slice(-MAX_STRAY_VERDICTS);
      run.publishDetails();
    }
    return;
  }
  approvals.enqueue(parsed.data.token, via);
}

/** `submitApproval` validator: a well-formed vote, while a step awaits approval. */
export function validateSubmission(run: ChainRun, submission: ApprovalSubmission): void {
  const parsed = ApprovalSubmission.safeParse(submission);
  if (!parsed.success) {
    // Runs before `validated-input` worded it with zod's bare messages.
    throw invalidInput(
      run.strict ? invalidInputMessage(parsed.error) : parsed.error.issues.map((i) => i.message).join('; '),
    );
  }
  if (!run.approvals.current) throw invalidInput('no step of this chain is awaiting approval');
  // A workload credential or attestation pasted as a vote is refused here, before it reaches history
  // (validators do not run on replay). Signals have no validator: their verdict records the same refusal.
  const wrongKind = notAnApprovalVote(parsed.data.token);
  if (wrongKind) throw invalidInput(wrongKind);
}

/** `submitApproval`: the vote's verdict and the approval after it. */
export async function submitApproval(run: ChainRun, submission: ApprovalSubmission): Promise<SubmitApprovalResult> {
  const { approvals } = run;
  const seq = approvals.enqueue(submission.token, 'update');
  const approval = approvals.current!;
  // Answered once the vote's consequences are decided (quorum → re-authorized → approved or
  // denied), so the caller sees the approval's real outcome, not 'pending'.
  await condition(() => approvals.verdicts.has(seq) && !(run.strict && approvals.deciding));
  return { verdict: approvals.verdicts.get(seq)!, approval };
}

// ---- the approval of one action ---------------------------------------------------------------

/**
 * Waits for human approval of an escalated action: verified votes, quorum of distinct eligible
 * approvers, deny on an authorized deny vote or at the deadline, then re-authorization with the
 * approvals in context (policy has the last word).
 */
export async function awaitApproval(
  run: ChainRun,
  a: GovernedAction,
  s: StepState,
  first: GovernorAuthorizeResult,
): Promise<ApprovalResult> {
  const { approvals, chain } = run;
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
    deadlineAt: decision.evaluatedAt
      ? new Date(Date.parse(decision.evaluatedAt) + deadlineMs).toISOString()
      : undefined,
    approvedBy: [],
    stillNeeded: requirement.quorum,
    verdicts: [],
    outcome: 'pending',
  };
  s.approval = approval;
  approvals.current = approval;
  approvals.resume(a.stepId);
  s.status = 'awaiting-approval';
  // The headline says what the step says: what is still needed, from whom, by when (details only, no command).
  const waiting = () =>
    `still needed: ${approval.stillNeeded} approval(s) from ${approval.eligibleRoles.join(' or ')} ` +
    `by ${approval.deadlineAt ?? requirement.deadline}`;
  const showWaiting = () => run.setStatus(ChainStatus.AwaitingApproval, waiting());
  run.setRolesAndStatus(approval.eligibleRoles, ChainStatus.AwaitingApproval, waiting());
  // Webhooks (only when the manifest has some): told now, on each counted vote, and at the run's outcome.
  const notify = first.approvalRules?.notify;
  if (notify && notify.length > 0 && run.takes(WEBHOOK_NOTIFY_PATCH)) {
    if (run.notifications) run.notifications.events = notify;
    else run.notifications = new Notifications(run, notify, run.session ? 'session' : 'chain');
    run.notifications.waiting(a, approval);
  }

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
            for (const role of rung.roles) {
              if (!approval.eligibleRoles.includes(role)) approval.eligibleRoles.push(role);
            }
            run.setPendingRoles(approval.eligibleRoles);
            showWaiting();
          }),
        ),
      ]),
    )
    .catch((err: unknown) => {
      if (!isCancellation(err)) throw err;
    });

  const finish = async (outcome: ApprovalState['outcome'], result: ApprovalResult): Promise<ApprovalResult> => {
    approval.outcome = outcome;
    approvals.close(`the approval of step ${a.stepId} is no longer pending (${outcome})`);
    timers.cancel();
    await timersDone;
    run.setRolesAndStatus(undefined, ChainStatus.Running);
    return result;
  };

  for (;;) {
    await condition(() => approvals.pending.length > 0 || expired || run.revoked !== undefined || run.closeRequested);
    if (run.revoked) {
      await finish('denied', { allowed: false, decision });
      throw new Revoked();
    }
    if (run.closeRequested) {
      // Only sessions set it (chains never do): closing does not wait out an approval deadline.
      const reason = 'the session was closed while the step awaited approval';
      return finish('denied', { allowed: false, decision, reason });
    }
    let breakGlass: VoteVerdict | undefined;
    while (approvals.pending.length > 0 && !breakGlass) {
      const submission = approvals.pending.shift()!;
      let verdict: VoteVerdict;
      try {
        const r = await governor.verifyApproval.executeWithOptions(
          { ...LOCAL_ACTIVITY, summary: `verify vote ${submission.seq} for ${a.stepId}` },
          [
            {
              token: submission.token,
              via: submission.via,
              seq: submission.seq,
              chainId: run.chainId,
              stepId: a.stepId,
              stepDigest: approval.stepDigest,
              workload: chain.workload,
              owner: chain.owner,
              eligibleRoles: [...approval.eligibleRoles],
              prev: run.head,
            },
          ],
        );
        run.advance(r.receipt);
        verdict = r.verdict;
      } catch (err) {
        const reason = `vote could not be verified: ${failureMessage(err)}`;
        verdict = { seq: submission.seq, via: submission.via, counted: false, reason };
      }
      const later = verdict.forStep ? chain.steps.findIndex((x) => x.id === verdict.forStep) : -1;
      if (later > chain.steps.findIndex((x) => x.id === a.stepId)) {
        // A valid vote for a later step of this chain: kept for when that step awaits approval.
        approvals.defer(verdict.forStep!, submission);
        approvals.verdicts.set(submission.seq, verdict);
        continue;
      }
      approvals.settle(verdict);
      showWaiting();
      if (verdict.counted && !verdict.repeat) run.notifications?.vote(a, approval, verdict);
      if (verdict.counted && verdict.decision === 'deny') {
        const reason = `denied by approver ${verdict.approver}${verdict.reason ? `: ${verdict.reason}` : ''}`;
        return finish('denied', { allowed: false, decision, reason });
      }
      if (verdict.breakGlass) breakGlass = verdict;
    }

    if (breakGlass || approval.approvedBy.length >= approval.quorum) {
      const breakGlassVote = breakGlass ? [{ approver: breakGlass.approver!, roles: breakGlass.roles ?? [] }] : [];
      const votes = [...approval.approvedBy, ...breakGlassVote];
      approvals.deciding = true;
      let again: Authorization;
      try {
        again = await authorize(run, a, s, votes);
      } finally {
        approvals.deciding = false;
      }
      if (again.kind === 'failed-closed') {
        return finish('denied', { allowed: false, decision: again.decision, reason: again.decision.reason });
      }
      decision = again.result.decision;
      if (decision.effect === 'allow') return finish('approved', { allowed: true, decision });
      if (decision.effect === 'deny') {
        const reason = `policy denied after approval: ${decision.reason ?? 'deny'}`;
        return finish('denied', { allowed: false, decision, reason });
      }
      if (breakGlass) {
        // Only escalatable forbids still block: break-glass lets the step through, marked for review.
        s.breakGlass = { approver: breakGlass.approver!, justification: breakGlass.justification ?? '' };
        run.state.breakGlass = true;
        upsertSearchAttributes([{ key: GovernorBreakGlassKey, value: true }]);
        return finish('break-glass', { allowed: true, decision });
      }
      // Policy still escalates (e.g. a second role is needed): keep waiting with its requirement.
      const next = decision.escalation!;
      for (const role of next.roles) if (!approval.eligibleRoles.includes(role)) approval.eligibleRoles.push(role);
      approval.quorum = Math.max(approval.quorum, next.quorum, approval.approvedBy.length + 1);
      approval.stillNeeded = Math.max(0, approval.quorum - approval.approvedBy.length);
      run.setPendingRoles(approval.eligibleRoles);
      showWaiting();
    }
    if (expired && approvals.pending.length === 0) {
      const reason = `no quorum of ${approval.quorum} by the approval deadline (${approval.deadline})`;
      return finish('expired', { allowed: false, decision, reason });
    }
  }
}
