import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { z } from 'zod';
import {
  CoordinatorInput,
  SlotRelease,
  SlotRequest,
  SlotWithdraw,
  TieBreakSubmission,
  type CoordinatorInboxItem,
  chooseWinnerSignal,
  chooseWinnerUpdate,
  coordinatorStateQuery,
  releaseSlotSignal,
  requestSlotSignal,
  withdrawSlotSignal,
} from '../contracts/coordination';
import { ErrorCode } from '../contracts/errors';
import { invalidInputMessage } from '../contracts/issues';
import { COORDINATOR_VALIDATION_PATCH } from '../contracts/patches';
import { Coordinator } from './coordinator/coordinator';

/*
 * One coordinator per domain (DESIGN §4 step 4): the workflow function wires the messages to a
 * `Coordinator` (workflows/coordinator/coordinator.ts: its state, one method per event, the patch and
 * the times it uses), runs the loop and continues as new. Its name is recorded in history: never rename.
 */
export { COORDINATOR_VALIDATION_PATCH };

/**
 * The input as the coordinator may use it: parsed with the contract's schema, a carry only from a
 * run that continued as new (a first run with a forged carry could queue unsealed requests).
 */
function parseInput(raw: unknown): CoordinatorInput {
  const parsed = CoordinatorInput.safeParse(raw);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(invalidInputMessage(parsed.error), ErrorCode.InvalidInput);
  if (parsed.data.carry !== undefined && workflowInfo().continuedFromExecutionRunId === undefined) {
    const message = 'carry: only a coordinator continuing as new may carry state into its next run';
    throw ApplicationFailure.nonRetryable(message, ErrorCode.InvalidInput);
  }
  return parsed.data;
}

/** A tie-break vote as the schema allows it, or a non-retryable GOVERNOR_INVALID_INPUT naming the field. */
function parseVote(submission: unknown): TieBreakSubmission {
  const parsed = TieBreakSubmission.safeParse(submission);
  if (!parsed.success) throw ApplicationFailure.nonRetryable(invalidInputMessage(parsed.error), ErrorCode.InvalidInput);
  return parsed.data;
}

/** Orders and arbitrates the actions of chains on one coordination domain. Runs forever, continuing as new. */
export async function coordinatorWorkflow(raw: CoordinatorInput): Promise<void> {
  // Decided once, before anything else: a run keeps one behaviour from its first task to its last.
  const validated = patched(COORDINATOR_VALIDATION_PATCH);
  const input = validated ? parseInput(raw) : raw;
  const { domain } = input;
  const c = new Coordinator(input, validated);

  // Handlers only validate and enqueue; the loop below processes in arrival (history) order. A signal
  // handler passes what `schema` accepts to `accept`, and logs and ignores anything else.
  const valid =
    <T>(schema: z.ZodType<T>, signal: string, accept: (value: T) => void) =>
    (payload: unknown): void => {
      const result = schema.safeParse(payload);
      if (result.success) accept(result.data);
      else log.warn(`malformed ${signal} ignored`, { domain, error: invalidInputMessage(result.error) });
    };
  const enqueue = (item: CoordinatorInboxItem): number => c.inbox.push(item);
  setHandler(
    requestSlotSignal,
    valid(SlotRequest, 'requestSlot', (request) => enqueue({ kind: 'request', request })),
  );
  setHandler(
    releaseSlotSignal,
    valid(SlotRelease, 'releaseSlot', (release) => enqueue({ kind: 'release', release })),
  );
  setHandler(
    withdrawSlotSignal,
    valid(SlotWithdraw, 'withdrawSlot', (w) => enqueue({ kind: 'withdraw', withdraw: w })),
  );
  setHandler(
    chooseWinnerSignal,
    valid(TieBreakSubmission, 'chooseWinner', (vote) => c.enqueueVote(vote)),
  );
  setHandler(
    chooseWinnerUpdate,
    async (submission) => {
      // The validator ran when the update was accepted; parsed again so the handler uses only what
      // the schema allows (validators are not run on replay).
      const seq = c.enqueueVote(parseVote(submission));
      await condition(() => c.voteResult(seq) !== undefined);
      return c.voteResult(seq)!;
    },
    {
      validator: (submission) => {
        const { tieId } = parseVote(submission);
        if (c.hasOpenTie(tieId)) return;
        throw ApplicationFailure.nonRetryable(`tieId: no pending tie ${tieId} in ${domain}`, ErrorCode.InvalidInput);
      },
    },
  );
  setHandler(coordinatorStateQuery, () => c.state());

  // The domain's current rules (batching window, hold timeout) before the first message, and the time.
  c.startCarriedTimers(await c.admit([]));
  c.publish();
  for (;;) {
    await condition(() => c.hasWork() || c.continueAsNewDue());
    if (c.continueAsNewDue()) break;
    c.settling = true;
    for (let item = c.nextMessage(); item !== undefined; item = c.nextMessage()) {
      if (item.kind === 'request') await c.onRequest(item.request);
      else if (item.kind === 'release') c.onRelease(item.release);
      else c.onWithdraw(item.withdraw);
    }
    if (c.batchDue()) await c.closeBatch();
    await c.processVotes();
    c.expireTies();
    c.grant();
    await c.flush();
    c.settling = false;
    c.publish();
  }

  // Continue as new once every handler has finished (see `Coordinator.carry` for what is carried).
  await condition(allHandlersFinished);
  const carry = c.carry();
  const options = input.options ? { options: input.options } : {};
  await continueAsNew<typeof coordinatorWorkflow>({ domain, ...options, carry });
}
