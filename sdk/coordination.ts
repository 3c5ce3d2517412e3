import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import {
  COORDINATOR_WORKFLOW_TYPE,
  chooseWinnerUpdate,
  coordinatorId,
  coordinatorStateQuery,
  releaseSlotSignal,
  requestSlotSignal,
  withdrawSlotSignal,
  type CoordinatorInput,
  type CoordinatorState,
  type SlotRelease,
  type SlotRequest,
  type SlotVerdict,
  type SlotWithdraw,
  type TieBreakVerdict,
} from '../contracts/coordination';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { DEFAULT_TASK_QUEUE } from '../contracts/status';

/**
 * Client side of coordination: send a domain's coordinator a sealed slot request (signal-with-start, so
 * the first request starts it), release or withdraw it, read its queue, settle a tie. Chains do the same
 * from the workflow through the `requestSlot` activity and external signals.
 *
 * Security: a request counts only when sealed with the governor's receipt key, which only the governor
 * deployment holds; the SDK therefore never seals (the `requestSlot` activity does, and tests seal with
 * test/harness/coordinator.ts `sealSlotRequestWithKey`).
 */
export class CoordinationClient {
  constructor(
    readonly client: Client,
    readonly taskQueue: string = DEFAULT_TASK_QUEUE,
  ) {}

  /** Workflow id of the coordinator of `domain`. */
  coordinatorId(domain: string): string {
    return coordinatorId(this.taskQueue, domain);
  }

  /** The coordinator's workflow handle. */
  handle(domain: string): WorkflowHandle {
    return this.client.workflow.getHandle(this.coordinatorId(domain));
  }

  /** Starts the coordinator of `domain` unless it runs already (options such as `continueAsNewAfterEvents`). */
  async start(domain: string, options?: CoordinatorInput['options']): Promise<void> {
    const input: CoordinatorInput = { domain, ...(options ? { options } : {}) };
    await this.client.workflow.start(COORDINATOR_WORKFLOW_TYPE, {
      workflowId: this.coordinatorId(domain),
      taskQueue: this.taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      staticSummary: `Coordinator of ${domain}`,
    });
  }

  /**
   * Sends a sealed request to its domain's coordinator, starting the coordinator if it is not running
   * (signal-with-start: atomic, so concurrent first requests never start two coordinators). The same
   * call as the `requestSlot` activity's `submitSlotRequest`.
   */
  async send(request: SlotRequest): Promise<void> {
    const input: CoordinatorInput = { domain: request.domain };
    await this.client.workflow.signalWithStart(COORDINATOR_WORKFLOW_TYPE, {
      workflowId: this.coordinatorId(request.domain),
      taskQueue: this.taskQueue,
      args: [input],
      signal: requestSlotSignal,
      signalArgs: [request],
      staticSummary: `Coordinator of ${request.domain}`,
    });
  }

  /** Reports the end of the holder's action; `completed` advances the resource's version. */
  async release(domain: string, release: SlotRelease): Promise<void> {
    await this.handle(domain).signal(releaseSlotSignal, release);
  }

  /** Takes a request out of the queue (or gives up a held slot without completing). */
  async withdraw(domain: string, withdraw: SlotWithdraw): Promise<void> {
    await this.handle(domain).signal(withdrawSlotSignal, withdraw);
  }

  /** The coordinator's queue, holder, versions, ties and recent verdicts. */
  async state(domain: string): Promise<CoordinatorState> {
    try {
      return await this.handle(domain).query(coordinatorStateQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError)
        throw new GovernorError(ErrorCode.NotFound, `no coordinator for domain ${domain}`, 'domain');
      throw err;
    }
  }

  /** Submits a tie-break vote (approval JWT naming the winner, `stepDigest` = the tie's digest); returns its verdict. */
  async chooseWinner(domain: string, tieId: string, token: string): Promise<TieBreakVerdict> {
    try {
      return await this.handle(domain).executeUpdate(chooseWinnerUpdate, { args: [{ tieId, token }] });
    } catch (err) {
      const cause = (err as { cause?: { message?: string; type?: string } }).cause;
      if (cause?.type === ErrorCode.InvalidInput)
        throw new GovernorError(ErrorCode.InvalidInput, cause.message ?? 'vote refused', 'token');
      throw err;
    }
  }

  /**
   * Polls the coordinator until a verdict for `requestId` matching `accept` appears among its recent
   * verdicts (default: a final one, granted or rejected). For callers that are not workflows.
   */
  async waitForVerdict(
    domain: string,
    requestId: string,
    options: { accept?: (v: SlotVerdict) => boolean; timeoutMs?: number; intervalMs?: number } = {},
  ): Promise<SlotVerdict> {
    const accept = options.accept ?? ((v: SlotVerdict) => v.status !== 'queued');
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      try {
        const found = (await this.state(domain)).recent.filter((v) => v.requestId === requestId && accept(v)).pop();
        if (found) return found;
      } catch (err) {
        if (!(err instanceof GovernorError && err.code === ErrorCode.NotFound)) throw err;
      }
      if (Date.now() > deadline)
        throw new GovernorError(ErrorCode.NotFound, `no matching verdict for ${requestId} in ${domain}`, 'requestId');
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
    }
  }
}
