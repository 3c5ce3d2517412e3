import {
  allHandlersFinished,
  condition,
  defineSignal,
  defineUpdate,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
} from '@temporalio/workflow';
import type { GovernorActivities } from '../activities';
import type { GovernedChainInput } from '../contracts/chain';

/*
 * Baselines for the benchmarks: what a user would run on Temporal without governance. They run on the
 * governor worker itself (same task queue, same activities, same worker options), so the only difference
 * measured is the governance. Deterministic code only, like workflows/.
 */

// The same options as the governed chain's built-in executors (workflows/retry.ts).
/** The baselines' activity (registered by bench/worker-process.ts): the noop executor without receipts. */
interface PlainActivities {
  plainNoop(input: {
    chainId: string;
    stepId: string;
    idempotencyKey: string;
    executor: unknown;
    input: unknown;
  }): Promise<unknown>;
}

const executors = proxyActivities<PlainActivities>({
  startToCloseTimeout: '30s',
  retry: {
    maximumAttempts: 3,
    initialInterval: '1s',
    backoffCoefficient: 2,
    nonRetryableErrorTypes: ['GOVERNOR_INVALID_INPUT', 'GOVERNOR_HOST_NOT_ALLOWED', 'GOVERNOR_EXECUTOR_FAILED'],
  },
});

const local = proxyLocalActivities<GovernorActivities>({
  startToCloseTimeout: '10s',
  retry: { maximumAttempts: 5, initialInterval: '200ms', backoffCoefficient: 2 },
});

/** Plain baseline: runs each step's executor as the same `execute` activity, nothing else. */
export async function plainChainWorkflow(input: GovernedChainInput): Promise<number> {
  for (const step of input.chain.steps) {
    await executors.plainNoop({
      chainId: input.chainId,
      stepId: step.id,
      idempotencyKey: `${input.chainId}/${step.id}`,
      executor: step.executor,
      input: step.input,
    });
  }
  return input.chain.steps.length;
}

/**
 * Diagnostic baseline: the governed chain's Temporal shape (a local activity before and after each
 * step's activity, one more at the end) with the cheapest local activity the worker has
 * (`recordReceipt`: a hash and one Ed25519 signature). Governed minus this = the cost of the work
 * inside `authorize` plus workflow bookkeeping (search attributes, details, state).
 */
export async function shapedChainWorkflow(input: GovernedChainInput): Promise<number> {
  // The receipts are not linked (every one points at genesis): only the cost of the shape matters here.
  const prev = { seq: 0, hash: '0'.repeat(64) };
  for (const step of input.chain.steps) {
    await local.recordReceipt({ chainId: input.chainId, stepId: step.id, kind: 'decision', payload: null, prev });
    await executors.plainNoop({
      chainId: input.chainId,
      stepId: step.id,
      idempotencyKey: `${input.chainId}/${step.id}`,
      executor: step.executor,
      input: step.input,
    });
    await local.recordReceipt({ chainId: input.chainId, stepId: step.id, kind: 'execution', payload: null, prev });
  }
  await local.recordReceipt({ chainId: input.chainId, kind: 'checkpoint', payload: null, prev });
  return input.chain.steps.length;
}

/** Releases a waiting baseline workflow. */
export const releaseSignal = defineSignal('benchRelease');

/** Plain baseline of a waiting chain: blocks on a signal (or a timeout), like a workflow waiting for a human. */
export async function plainWaitWorkflow(input: GovernedChainInput): Promise<number> {
  let released = false;
  setHandler(releaseSignal, () => {
    released = true;
  });
  await executors.plainNoop({
    chainId: input.chainId,
    stepId: 'wait',
    idempotencyKey: `${input.chainId}/wait`,
    executor: { type: 'noop' },
    input: {},
  });
  await condition(() => released, '10m');
  return input.chain.steps.length;
}

/** One step of the plain update baseline (the `session` phase): runs the no-op activity, returns its result. */
export const plainStepUpdate = defineUpdate<unknown, [{ stepId: string }]>('benchStep');

/**
 * Plain baseline of an agent session (the `session` phase): a workflow that stays open and, for each
 * `benchStep` update, runs the same no-op activity as the other baselines and returns its result; ends
 * on `benchRelease` (or after 30m) once every update has finished.
 */
export async function plainUpdateWorkflow(input: { chainId: string }): Promise<number> {
  let released = false;
  let steps = 0;
  setHandler(releaseSignal, () => {
    released = true;
  });
  setHandler(plainStepUpdate, async ({ stepId }) => {
    steps++;
    return executors.plainNoop({
      chainId: input.chainId,
      stepId,
      idempotencyKey: `${input.chainId}/${stepId}`,
      executor: { type: 'noop' },
      input: {},
    });
  });
  await condition(() => released, '30m');
  await condition(allHandlersFinished);
  return steps;
}
