import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { GovernorActivities } from '../../activities';
import { EXECUTOR_ACTIVITY, LOCAL_ACTIVITY } from '../retry';

/** The governor's own decisions, verifications and receipts: local activities on the governor worker. */
export const governor = proxyLocalActivities<GovernorActivities>(LOCAL_ACTIVITY);

/** The built-in executors (and `governStep`): normal activities, so side effects get Temporal's retries. */
export const executors = proxyActivities<GovernorActivities>(EXECUTOR_ACTIVITY);
