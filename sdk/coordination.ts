import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { sealSlotRequest, submitSlotRequest } from '../activities/coordination';
import { loadPrivateKey } from '../identity';
import {
  COORDINATOR_WORKFLOW_TYPE,
  chooseWinnerUpdate,
  coordinatorId,
  coordinatorStateQuery,
  releaseSlotSignal,
  withdrawSlotSignal,
  type CoordinatorInput,
  type CoordinatorState,
  type SlotAsk,
  type SlotRelease,
  type SlotRequest,
  type SlotVerdict,
  type SlotWithdraw,
  type TieBreakVerdict,
} from '../contracts/coordination';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { DEFAULT_TASK_QUEUE } from '../contracts/status';
import type { Manifest } from '../policies/manifest';

/**
 * Client side of coordination: ask a domain's coordinator for a slot (signal-with-start, so the first
 * request starts it), release or withdraw it, read its queue, settle a tie. Chains do the same from
 * the workflow through the `requestSlot` activity and external signals.
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
   * Seals a request with the governor's receipt key (in `home`) against `manifest` and sends it.
   * Returns undefined when the resource belongs to no domain. Security: only the governor deployment
   * holds that key; a request sealed with any other key is refused by the coordinator.
   */
  async requestSlot(ask: SlotAsk, options: { home: string; manifest: Pick<Manifest, 'coordination'>; domain?: string }): Promise<SlotRequest | undefined> {
    const request = await sealSlotRequest(options.manifest, ask, await loadPrivateKey(options.home, 'receipt'), options.domain !== undefined ? { domain: options.domain } : {});
    if (request) await this.send(request);
    return request;
  }

  /** Sends an already sealed request (signal-with-start). */
  async send(request: SlotRequest): Promise<void> {
    await submitSlotRequest(this.client, this.taskQueue, request);
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
      if (err instanceof WorkflowNotFoundError) throw new GovernorError(ErrorCode.NotFound, `no coordinator for domain ${domain}`, 'domain');
      throw err;
    }
  }

  /** Submits a tie-break vote (approval JWT naming the winner, `stepDigest` = the tie's digest); returns its verdict. */
  async chooseWinner(domain: string, tieId: string, token: string): Promise<TieBreakVerdict> {
    try {
      return await this.handle(domain).executeUpdate(chooseWinnerUpdate, { args: [{ tieId, token }] });
    } catch (err) {
      const cause = (err as { cause?: { message?: string; type?: string } }).cause;
      if (cause?.type === ErrorCode.InvalidInput) throw new GovernorError(ErrorCode.InvalidInput, cause.message ?? 'vote refused', 'token');
      throw err;
    }
  }

  /**
   * Polls the coordinator until a verdict for `requestId` matching `accept` appears among its recent
   * verdicts (default: a final one, granted or rejected). For callers that are not workflows.
   */
  async waitForVerdict(domain: string, requestId: string, options: { accept?: (v: SlotVerdict) => boolean; timeoutMs?: number; intervalMs?: number } = {}): Promise<SlotVerdict> {
    const accept = options.accept ?? ((v: SlotVerdict) => v.status !== 'queued');
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      try {
        const found = (await this.state(domain)).recent.filter((v) => v.requestId === requestId && accept(v)).pop();
        if (found) return found;
      } catch (err) {
        if (!(err instanceof GovernorError && err.code === ErrorCode.NotFound)) throw err;
      }
      if (Date.now() > deadline) throw new GovernorError(ErrorCode.NotFound, `no matching verdict for ${requestId} in ${domain}`, 'requestId');
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
    }
  }
}
