import { proxyActivities } from '@temporalio/workflow';
import type { NotifyActivities, NotifyResult } from '../activities/notify';
import type { NotificationEvent } from '../contracts/notification';

/*
 * Deterministic code only. The notification workflow delivers one event to the manifest's webhooks with
 * the `notify` activity and its retries. Chains start it detached (parent close: abandon) and await only
 * its start: a receiver that is down or hangs costs this workflow its retries, never the chain its time.
 */

/** Options of `notify`: one attempt is one request per webhook (in parallel, 5 s timeout each); about 5 minutes of retries. */
const { notify } = proxyActivities<NotifyActivities>({
  startToCloseTimeout: '15s',
  scheduleToCloseTimeout: '10m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 10 },
  summary: 'POST to webhooks',
});

/** Delivers `event` (fails, visibly in the UI, when a webhook still refuses it after every retry). */
export async function governorNotifyWorkflow(event: NotificationEvent): Promise<NotifyResult> {
  return await notify(event);
}
