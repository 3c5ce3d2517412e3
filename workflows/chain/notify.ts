import { log, ParentClosePolicy, startChild, WorkflowIdReusePolicy } from '@temporalio/workflow';
import type { ApprovalState, VoteVerdict } from '../../contracts/approval';
import {
  NOTIFY_WORKFLOW,
  notifyWorkflowId,
  type NotificationEvent,
  type NotifyEvent,
} from '../../contracts/notification';
import { resourceLabel, type GovernedAction } from '../../core/step';
import { failureMessage } from '../failure';
import type { ChainRun } from './run';

/**
 * A run's notifications (WEBHOOK_NOTIFY_PATCH): each event starts a detached notification workflow
 * (`workflows/notify.ts`); the run never awaits a delivery, only, before it ends, that every start was
 * accepted by the server (a failed start is logged and ignored). Deterministic.
 */
export class Notifications {
  private readonly starts: Promise<void>[] = [];

  constructor(
    private readonly run: ChainRun,
    /** The events the manifest's webhooks asked for (as of the latest escalation). */
    public events: readonly NotifyEvent[],
    private readonly kind: 'chain' | 'session' = 'chain',
  ) {}

  /** A step started waiting for approval. */
  waiting(a: GovernedAction, approval: ApprovalState): void {
    this.send('waiting', `${a.stepId}/waiting`, { step: step(a), approval: summary(approval) });
  }

  /** A counted vote (not a repeat, not rejected). */
  vote(a: GovernedAction, approval: ApprovalState, verdict: VoteVerdict): void {
    const approver = verdict.approver ?? '';
    const decision = verdict.decision ?? 'approve';
    this.send('vote', `${a.stepId}/vote/${decision}/${approver}`, {
      step: step(a),
      approval: summary(approval),
      vote: {
        approver,
        decision,
        roles: verdict.roles ?? [],
        ...(verdict.reason ? { reason: verdict.reason.slice(0, 1000) } : {}),
        ...(verdict.breakGlass ? { breakGlass: true } : {}),
      },
    });
  }

  /** The run's outcome; then waits until every notification workflow of this run has been started. */
  async outcome(status: string, reason: string | undefined): Promise<void> {
    this.send('outcome', 'outcome', { outcome: { status, ...(reason ? { reason: reason.slice(0, 1000) } : {}) } });
    await Promise.all(this.starts);
  }

  private send(event: NotifyEvent, suffix: string, facts: Partial<NotificationEvent>): void {
    if (!this.events.includes(event)) return;
    const { chainId, chain } = this.run;
    const body: NotificationEvent = {
      event,
      key: `${chainId}/${suffix}`,
      kind: this.kind,
      chainId,
      workload: chain.workload,
      ...(chain.owner ? { owner: chain.owner } : {}),
      ...facts,
    };
    const started = startChild(NOTIFY_WORKFLOW, {
      workflowId: notifyWorkflowId(body),
      args: [body],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      // The same event again (a reset, a replayed start) is not sent twice, unless its delivery failed.
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      staticSummary: `notify ${event} of ${chainId}`,
    }).then(
      () => undefined,
      (err: unknown) => log.warn('notification not started', { chainId, event, reason: failureMessage(err) }),
    );
    this.starts.push(started);
  }
}

const step = (a: GovernedAction) => ({ id: a.stepId, action: a.action, resource: resourceLabel(a.resource) });

const summary = (approval: ApprovalState): NotificationEvent['approval'] => ({
  roles: [...approval.eligibleRoles],
  quorum: approval.quorum,
  stillNeeded: approval.stillNeeded,
  approvedBy: approval.approvedBy.map((v) => v.approver),
  deadline: approval.deadline,
  ...(approval.deadlineAt ? { deadlineAt: approval.deadlineAt } : {}),
  outcome: approval.outcome,
});
