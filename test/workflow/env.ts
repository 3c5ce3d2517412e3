import { randomUUID } from 'node:crypto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { DefaultLogger, Runtime, Worker, bundleWorkflowCode } from '@temporalio/worker';
import type { GovernorActivities } from '../../activities';
import {
  GovernorBreakGlassKey,
  GovernorPendingRolesKey,
  GovernorPolicyDigestKey,
  GovernorShadowDiffersKey,
  GovernorStatusKey,
  GovernorWorkloadKey,
} from '../../contracts/search-attributes';
import { resolveTemporalCli } from '../../workers/temporal-cli';
import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';

/*
 * Workflow-level tests: the governor's real workflow code, its activities replaced by in-test fakes.
 *
 * Issue 15 asks for `TestWorkflowEnvironment.createTimeSkipping()`, but that downloads Temporal's Java
 * test server at run time and this project's machines and CI reach no download host ("failed to
 * download ephemeral server executable: … temporal.download … dns error"). So each test file starts
 * the pinned Temporal CLI's dev server (`createLocal` with the existing binary: TEMPORAL_CLI_PATH, then
 * PATH, then the pinned build) and uses short real durations. Tests assert what the workflow did
 * (result, status query, recorded receipts and history), never how long it took. Self-contained: no
 * jest global setup; one server, one workflow bundle and one worker per file.
 */

/** Activities by name, as the workflows call them (names from activities/index.ts). */
export type Fakes = Partial<GovernorActivities>;

/** Every activity of the governor worker: the file's one worker registers each, passing calls to the current fakes. */
const ACTIVITY_NAMES: Record<keyof GovernorActivities, true> = {
  authorize: true,
  governStep: true,
  execute: true,
  verifyApproval: true,
  recordReceipt: true,
  requestSlot: true,
  verifySlotVerdict: true,
  verifyResume: true,
  admitSlotRequests: true,
  signCoordinationReceipts: true,
  verifyTieBreak: true,
  signRevocation: true,
  recoverRevocations: true,
  sessionSettings: true,
  verifyProposal: true,
  sessionOutput: true,
  mintGrant: true,
  verifyFleetActivation: true,
  recoverFleet: true,
};

export interface WorkflowTestEnv {
  env: TestWorkflowEnvironment;
  /**
   * Runs `body` with `fakes` as the activities of the file's worker, which serves the task queue passed
   * to `body`. Tests of one file run one after the other: one set of fakes at a time.
   */
  withFakes<R>(fakes: Fakes, body: (taskQueue: string) => Promise<R>): Promise<R>;
  teardown(): Promise<void>;
}

const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} };

/**
 * A dev server, the workflow bundle and one worker for a test file. `maxCachedWorkflows: 0` makes every
 * workflow task replay from history (a nondeterminism tripwire).
 */
export async function startWorkflowTestEnv(options: { maxCachedWorkflows?: number } = {}): Promise<WorkflowTestEnv> {
  const [env, { code }] = await Promise.all([
    TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: resolveTemporalCli() },
        searchAttributes: [
          GovernorStatusKey,
          GovernorWorkloadKey,
          GovernorPendingRolesKey,
          GovernorPolicyDigestKey,
          GovernorBreakGlassKey,
          GovernorShadowDiffersKey,
        ],
      },
    }),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../../workflows'),
      payloadConverterPath: PAYLOAD_CONVERTER_PATH,
      logger: quiet,
    }),
  ]);
  let current: Fakes = {};
  const activities = Object.fromEntries(
    Object.keys(ACTIVITY_NAMES).map((name) => [
      name,
      (...args: unknown[]): Promise<unknown> => {
        const fake = current[name as keyof GovernorActivities] as ((...a: unknown[]) => Promise<unknown>) | undefined;
        if (!fake) throw ApplicationFailure.nonRetryable(`this test has no fake for the ${name} activity`);
        return fake(...args);
      },
    ]),
  );
  const taskQueue = `workflow-test-${randomUUID()}`;
  let worker: Worker;
  try {
    worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue,
      workflowBundle: { code },
      activities,
      dataConverter: { payloadConverterPath: PAYLOAD_CONVERTER_PATH },
      ...(options.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: options.maxCachedWorkflows } : {}),
    });
  } catch (err) {
    await env.teardown();
    throw err;
  }
  const running = worker.run();
  return {
    env,
    async withFakes(fakes, body) {
      current = fakes;
      try {
        return await body(taskQueue);
      } finally {
        current = {};
      }
    },
    async teardown() {
      worker.shutdown();
      await running;
      await env.teardown();
    },
  };
}

/**
 * Reads `read()` until `done` holds, 100 ms apart, for at most `budgetMs` (default 20 s); throws naming
 * `what` and the last value otherwise. The budget only bounds the wait: nothing is asserted about time.
 */
export async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  what: string,
  budgetMs = 20_000,
): Promise<T> {
  const giveUpAt = Date.now() + budgetMs;
  let last: T | undefined;
  let error: unknown;
  while (Date.now() < giveUpAt) {
    try {
      last = await read();
      if (done(last)) return last;
    } catch (err) {
      error = err; // not started yet, or between two runs
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`never ${what}; last: ${JSON.stringify(last)}${error ? `; last error: ${String(error)}` : ''}`);
}

// The SDK's default console logger: warnings and errors only.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // already installed in this jest worker
}
