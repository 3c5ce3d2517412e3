/**
 * Notifications (DESIGN §10): what a chain tells the webhooks of its manifest (`notifications.webhooks`)
 * when a step starts waiting for approval, on each counted vote, and on the chain's outcome. Sandbox-safe.
 *
 * The event is recorded in history (the notification workflow's input): it carries no secret, no token
 * and no step input, only what an approver needs to find the chain.
 */

/** The events a webhook may ask for. */
export const NOTIFY_EVENTS = ['waiting', 'vote', 'outcome'] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** Workflow type of the detached notification workflow (one per event; never rename). */
export const NOTIFY_WORKFLOW = 'governorNotifyWorkflow';

/** One notification, as the chain records it and the `notify` activity sends it. */
export interface NotificationEvent {
  event: NotifyEvent;
  /**
   * What makes the event unique: chain, step, event and (votes) approver and decision. The same event
   * sent again (a retry, a replay, a reset) has the same key; the `Idempotency-Key` header is its SHA-256.
   */
  key: string;
  /** `chain` or an agent `session`. */
  kind: 'chain' | 'session';
  chainId: string;
  workload: string;
  owner?: string;
  step?: { id: string; action: string; resource: string };
  approval?: {
    roles: string[];
    quorum: number;
    stillNeeded: number;
    approvedBy: string[];
    deadline: string;
    deadlineAt?: string;
    outcome: string;
  };
  vote?: { approver: string; decision: 'approve' | 'deny'; roles: string[]; reason?: string; breakGlass?: boolean };
  outcome?: { status: string; reason?: string };
}

/** Workflow id of the notification of `event`: stable, so the same event is never started twice while one ran. */
export function notifyWorkflowId(event: Pick<NotificationEvent, 'key'>): string {
  return `governor-notify:${event.key}`.slice(0, 900);
}

/** The events at least one of `webhooks` asked for, in {@link NOTIFY_EVENTS} order (what `authorize` reports). */
export function subscribedEvents(webhooks: readonly { events: readonly NotifyEvent[] }[]): NotifyEvent[] {
  return NOTIFY_EVENTS.filter((e) => webhooks.some((h) => h.events.includes(e)));
}
