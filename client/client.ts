import { randomUUID } from 'node:crypto';
import { Client, WithStartWorkflowOperation, WorkflowExecutionInfo, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { Chain, formatIssues, GovernedChainInput } from '../contracts/chain';
import { ErrorCode, GovernorError } from '../contracts/errors';
import type { SubmitApprovalResult } from '../contracts/approval';
import { revocationRegistryId, REVOCATION_REGISTRY_TYPE, RevokeWorkloadInput, type RevocationList } from '../contracts/revocation';
import { approveSignal, denySignal, refreshCredentialUpdate, revokeSignal, revokeWorkloadUpdate, statusQuery, submitApprovalUpdate, type RefreshCredentialInput, type RevokeInput } from '../contracts/messages';
import { GovernorBreakGlassKey, GovernorPendingRolesKey, GovernorStatusKey, GovernorWorkloadKey } from '../contracts/search-attributes';
import type { ChainResult, ChainState } from '../contracts/state';
import { ChainStatus, DEFAULT_TASK_QUEUE, WORKFLOW_TYPE } from '../contracts/status';

/** Options to start a chain. */
export interface StartChainOptions {
  credential: string;
  attestation: string;
  /** Workflow id of the chain (default `<workload>-<uuid>`). */
  chainId?: string;
  /** Run options, e.g. `continueAsNewAfterSteps`. */
  options?: GovernedChainInput['options'];
}

/** One line of `list`. */
export interface ChainSummary {
  chainId: string;
  runId: string;
  status: string;
  workload?: string;
  startTime: string;
  closeTime?: string;
  /** Roles whose approval the chain waits for (AwaitingApproval). */
  pendingRoles: string[];
  breakGlass: boolean;
}

/** Filters of `list`, combined with AND. */
export interface ListFilter {
  status?: string;
  workload?: string;
  /** Only chains a break-glass approval let through. */
  breakGlass?: boolean;
  limit?: number;
}

function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** TypeScript client for services: start chains, read status, list, refresh credentials. */
export class GovernorClient {
  constructor(
    readonly client: Client,
    readonly taskQueue: string = DEFAULT_TASK_QUEUE,
  ) {}

  /** Validates the chain (nothing starts when it is malformed) and starts its workflow. */
  async start(chain: unknown, options: StartChainOptions): Promise<WorkflowHandleWithFirstExecutionRunId> {
    const parsedChain = Chain.safeParse(chain);
    if (!parsedChain.success) {
      throw new GovernorError(ErrorCode.InvalidInput, `invalid chain:\n${formatIssues(parsedChain.error)}`, String(parsedChain.error.issues[0]?.path.join('.') ?? ''));
    }
    const c = parsedChain.data;
    const chainId = options.chainId ?? `${c.workload.replace(/[^A-Za-z0-9_.-]/g, '-')}-${randomUUID()}`;
    const input = GovernedChainInput.safeParse({ chainId, chain: c, credential: options.credential, attestation: options.attestation, ...(options.options ? { options: options.options } : {}) });
    if (!input.success) {
      throw new GovernorError(ErrorCode.InvalidInput, `invalid chain input:\n${formatIssues(input.error)}`, String(input.error.issues[0]?.path.join('.') ?? ''));
    }
    const steps = c.steps.map((s, i) => `${i + 1}. ${s.action} on ${s.resource.type}::"${s.resource.id}" (${s.executor.type})`);
    try {
      return await this.client.workflow.start(WORKFLOW_TYPE, {
        taskQueue: this.taskQueue,
        workflowId: chainId,
        // A chain id names one lineage: it is never reused, even after the chain ended.
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [input.data],
        typedSearchAttributes: [
          { key: GovernorStatusKey, value: ChainStatus.Running },
          { key: GovernorWorkloadKey, value: c.workload },
        ],
        staticSummary: c.summary ?? `${c.workload}: ${c.steps.map((s) => s.action).join(' → ')}`.slice(0, 200),
        staticDetails: [`Governed chain of **${c.workload}**${c.owner ? ` (owner ${c.owner})` : ''}`, '', ...steps].join('\n'),
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new GovernorError(ErrorCode.InvalidInput, `chainId: chain ${chainId} already exists (chain ids are never reused)`, 'chainId');
      throw err;
    }
  }

  /** The handle of an existing chain. */
  handle(chainId: string): WorkflowHandle {
    return this.client.workflow.getHandle(chainId);
  }

  /** Live state from the workflow (works while running and after it closed). */
  async status(chainId: string): Promise<ChainState> {
    try {
      return await this.handle(chainId).query(statusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new GovernorError(ErrorCode.NotFound, `no chain ${chainId}`, 'chainId');
      throw err;
    }
  }

  /** Waits for the chain to end and returns its result. */
  async result(chainId: string): Promise<ChainResult> {
    return (await this.handle(chainId).result()) as ChainResult;
  }

  /** Sends a refreshed credential and returns the chain state after the workflow accepted it. */
  async refreshCredential(chainId: string, refresh: RefreshCredentialInput): Promise<ChainState> {
    return this.handle(chainId).executeUpdate(refreshCredentialUpdate, { args: [refresh] });
  }

  /** Submits a signed vote by update; returns the verdict (counted or rejected, with its reason) and the approval state. */
  async submitApproval(chainId: string, token: string): Promise<SubmitApprovalResult> {
    try {
      return await this.handle(chainId).executeUpdate(submitApprovalUpdate, { args: [{ token }] });
    } catch (err) {
      const cause = (err as { cause?: { message?: string; type?: string } }).cause;
      if (cause?.type === ErrorCode.InvalidInput) throw new GovernorError(ErrorCode.InvalidInput, cause.message ?? 'vote rejected', 'token');
      throw err;
    }
  }

  /** Sends a vote by signal (fire and forget, as the Temporal UI and CLI do). */
  async signalVote(chainId: string, token: string, vote: 'approve' | 'deny'): Promise<void> {
    await this.handle(chainId).signal(vote === 'approve' ? approveSignal : denySignal, { token });
  }

  /** Revokes one chain: it stops at its next step and its step in flight is cancelled. */
  async revoke(chainId: string, revoke: RevokeInput): Promise<void> {
    await this.handle(chainId).signal(revokeSignal, revoke);
  }

  /**
   * Revokes a workload: records it in the revocation registry (update-with-start), so `authorize`
   * denies it from now on, then revokes every running chain of the workload. Returns the chains signalled.
   */
  async revokeWorkload(input: RevokeWorkloadInput): Promise<{ revocations: RevocationList; chains: string[] }> {
    // The registry validates again (it is the trust boundary) and, started anew, recovers its list first.
    const parsed = RevokeWorkloadInput.safeParse(input);
    if (!parsed.success) throw new GovernorError(ErrorCode.InvalidInput, `invalid revocation:\n${formatIssues(parsed.error)}`, String(parsed.error.issues[0]?.path.join('.') ?? ''));
    const startWorkflowOperation = new WithStartWorkflowOperation(REVOCATION_REGISTRY_TYPE, {
      workflowId: revocationRegistryId(this.taskQueue),
      taskQueue: this.taskQueue,
      args: [],
      workflowIdConflictPolicy: 'USE_EXISTING',
      staticSummary: 'Governor revocation registry',
    });
    const revocations = await this.client.workflow.executeUpdateWithStart(revokeWorkloadUpdate, { args: [parsed.data], startWorkflowOperation });
    const chains: string[] = [];
    const query = `WorkflowType = '${WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND GovernorWorkload = ${quote(input.workload)}`;
    for await (const wf of this.client.workflow.list({ query })) {
      await this.revoke(wf.workflowId, { reason: input.reason, by: input.by });
      chains.push(wf.workflowId);
    }
    return { revocations, chains };
  }

  /** Lists chains through the governor's search attributes. */
  async list(filter: ListFilter = {}): Promise<ChainSummary[]> {
    const clauses = [`WorkflowType = '${WORKFLOW_TYPE}'`];
    if (filter.status) clauses.push(`GovernorStatus = ${quote(filter.status)}`);
    if (filter.workload) clauses.push(`GovernorWorkload = ${quote(filter.workload)}`);
    if (filter.breakGlass) clauses.push('GovernorBreakGlass = true');
    const out: ChainSummary[] = [];
    const limit = filter.limit ?? 100;
    for await (const wf of this.client.workflow.list({ query: clauses.join(' AND ') })) {
      out.push(summarize(wf));
      if (out.length >= limit) break;
    }
    return out;
  }
}

function summarize(wf: WorkflowExecutionInfo): ChainSummary {
  const status = wf.typedSearchAttributes.get(GovernorStatusKey) ?? wf.status.name;
  return {
    chainId: wf.workflowId,
    runId: wf.runId,
    status,
    workload: wf.typedSearchAttributes.get(GovernorWorkloadKey),
    startTime: wf.startTime.toISOString(),
    closeTime: wf.closeTime?.toISOString(),
    pendingRoles: wf.typedSearchAttributes.get(GovernorPendingRolesKey) ?? [],
    breakGlass: wf.typedSearchAttributes.get(GovernorBreakGlassKey) ?? false,
  };
}
