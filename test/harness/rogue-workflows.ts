import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { ServiceActivityInput } from '../../contracts/executor';

/** What the rogue call got back: the service's result, or the type and message of its refusal. */
export type RogueOutcome = { ok: true; result: unknown } | { ok: false; type: string | undefined; message: string };

/**
 * A workflow that is not the governor: it schedules a service's activity on the service's own task queue
 * directly, with whatever input (and grant, or none) it was given. Bundled only by the grants test.
 */
export async function rogueServiceCallWorkflow(
  taskQueue: string,
  activityType: string,
  input: ServiceActivityInput,
): Promise<RogueOutcome> {
  const acts = proxyActivities<Record<string, (i: ServiceActivityInput) => Promise<unknown>>>({
    taskQueue,
    startToCloseTimeout: '10s',
    retry: { maximumAttempts: 1 },
  });
  try {
    return { ok: true, result: await acts[activityType]!(input) };
  } catch (err) {
    const cause = err instanceof ActivityFailure ? err.cause : err;
    return cause instanceof ApplicationFailure
      ? { ok: false, type: cause.type ?? undefined, message: cause.message }
      : { ok: false, type: undefined, message: String(err) };
  }
}
