import { createHash, randomUUID } from 'node:crypto';
import { temporal } from '@temporalio/proto';
import { isCompensationStepId, resourceLabel } from '../core/step';
import { chainResultSteps } from '../core/packed-steps';
import {
  Client,
  isGrpcServiceError,
  ServiceError,
  WithStartWorkflowOperation,
  WorkflowExecutionInfo,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { Chain, formatIssues, GovernedChainInput } from '../contracts/chain';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { COMPENSATION_ID_PROBLEM } from '../contracts/session';
import { ApprovalSubmission, type SubmitApprovalResult } from '../contracts/approval';
import { formatIssuePath, invalidInputMessage } from '../contracts/issues';
import {
  findTooDeep,
  findTooLarge,
  formatPath,
  MAX_JSON_DEPTH,
  MAX_WORKFLOW_INPUT_BYTES,
  tokenTooLong,
} from '../contracts/limits';
import {
  namespaceRevocationRegistryId,
  REVOCATION_REGISTRY_TYPE,
  RevokeWorkloadInput,
  type RevocationList,
} from '../contracts/revocation';
import { controlTaskQueueFromEnv } from '../contracts/fleet';
import {
  approveSignal,
  denySignal,
  refreshCredentialUpdate,
  revokeSignal,
  revokeWorkloadUpdate,
  statusQuery,
  submitApprovalUpdate,
  type RefreshCredentialInput,
  type RevokeInput,
} from '../contracts/messages';
import {
  GovernorBreakGlassKey,
  GovernorPendingRolesKey,
  GovernorStatusKey,
  GovernorWorkloadKey,
} from '../contracts/search-attributes';
import type { ChainResult, ChainState } from '../contracts/state';
import { ChainStatus, DEFAULT_TASK_QUEUE, WORKFLOW_TYPE } from '../contracts/status';
import {
  AwaitStepInput,
  CloseSessionInput,
  GovernedSessionInput,
  MAX_PROPOSAL_BYTES,
  ProposeOutcome,
  ProposeStepInput,
  SESSION_CONTEXT_KEY,
  SESSION_WORKFLOW_TYPE,
  SessionChain,
  awaitStepUpdate,
  closeSessionUpdate,
  proposeStepUpdate,
} from '../contracts/session';

/** Options to start a chain. */
export interface StartChainOptions {
  credential: string;
  attestation: string;
  /** Workflow id of the chain (default `<workload>-<uuid>`). */
  chainId?: string;
  /** Run options, e.g. `continueAsNewAfterSteps`. */
  options?: GovernedChainInput['options'];
}

/** Options of `openSession`: the chain's workload, owner and summary, the declared steps (zero or more), the agent's tokens. */
export interface OpenSessionOptions {
  workload: string;
  owner?: string;
  summary?: string;
  steps?: unknown[];
  credential: string;
  attestation: string;
  /** Workflow id of the session (default `<workload>-session-<uuid>`). */
  sessionId?: string;
  /** Run options, e.g. `continueAsNewAfterSteps`. */
  options?: GovernedSessionInput['options'];
}

/** A proposal: the step (same schema as a declared step) and the agent's current credential. */
export interface ProposeStepOptions {
  step: unknown;
  credential: string;
  attestation?: string;
}

/** Workflow types `list` and `revokeWorkload` cover: declared chains and agent sessions. */
const CHAIN_TYPES_QUERY = `(WorkflowType = '${WORKFLOW_TYPE}' OR WorkflowType = '${SESSION_WORKFLOW_TYPE}')`;

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
  /** Temporal's execution status of the run (`Terminated`, `TimedOut`… when the chain did not end itself). */
  executionStatus: string;
}

/** How a chain's run stands on the Temporal server, which the workflow's own status cannot say. */
export interface ChainExecution {
  runId: string;
  /** Temporal's execution status: Running, Completed, Failed, Canceled, Terminated, ContinuedAsNew, TimedOut. */
  status: string;
  /** This run was reset by an operator into a newer run: it is not the chain's latest run. */
  resetTo?: string;
  /** This run was made by an operator's reset of an earlier run, at that run's event `eventId`. */
  resetFrom?: { runId: string; eventId: number };
  /** The chain did not end cleanly in this run: terminated, timed out, cancelled or failed outside the governor, or superseded by a reset. */
  notClean: boolean;
}

/** Temporal's execution status names, as `governor` prints them. */
const EXECUTION_STATUS: Record<string, string> = {
  RUNNING: 'Running',
  COMPLETED: 'Completed',
  FAILED: 'Failed',
  CANCELLED: 'Canceled',
  TERMINATED: 'Terminated',
  CONTINUED_AS_NEW: 'ContinuedAsNew',
  TIMED_OUT: 'TimedOut',
  PAUSED: 'Paused',
};

/** Execution statuses in which the governor's workflow is still in charge of (or ended) the chain itself. */
const CLEAN_EXECUTION_STATUSES = ['Running', 'Completed', 'ContinuedAsNew'];

/** Temporal's execution status name (`TERMINATED`) as governor prints it (`Terminated`). */
export function executionStatusName(name: string): string {
  return EXECUTION_STATUS[name] ?? name;
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
  /**
   * `controlTaskQueue`: the fleet's control task queue (namespace-wide registries: revocations, fleet);
   * default GOVERNOR_CONTROL_TASK_QUEUE, else `governor-control`. It must be the workers' own.
   */
  constructor(
    readonly client: Client,
    readonly taskQueue: string = DEFAULT_TASK_QUEUE,
    readonly controlTaskQueue: string = controlTaskQueueFromEnv(process.env),
  ) {}

  /** True when a governor worker has polled this client's task queue for workflow tasks recently. */
  async workerPolling(): Promise<boolean> {
    const { pollers } = await this.client.workflowService.describeTaskQueue({
      namespace: this.client.options.namespace,
      taskQueue: { name: this.taskQueue },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    return (pollers ?? []).length > 0;
  }

  /**
   * Validates the chain (nothing starts when it is malformed) and starts its workflow. Limits are
   * checked before anything is sent (`contracts/limits.ts`): nesting (64 levels), token length (16 KiB)
   * and the whole workflow input (1 MiB of JSON), each error naming the field and the limit.
   */
  async start(chain: unknown, options: StartChainOptions): Promise<WorkflowHandleWithFirstExecutionRunId> {
    const deep = findTooDeep(chain, MAX_JSON_DEPTH);
    if (deep)
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `${formatPath(deep.path)}: ${deep.message} (nothing was sent)`,
        formatPath(deep.path),
      );
    for (const [field, token] of [
      ['credential', options.credential],
      ['attestation', options.attestation],
    ] as const) {
      const problem = tokenTooLong(token);
      if (problem) throw new GovernorError(ErrorCode.InvalidInput, `${field}: ${problem} (nothing was sent)`, field);
    }
    // Before validating (a 20 MB chain is refused at once), and again on exactly what would be sent.
    checkInputSize({
      chainId: options.chainId ?? '',
      chain,
      credential: options.credential,
      attestation: options.attestation,
      options: options.options,
    });
    const parsedChain = Chain.safeParse(chain);
    if (!parsedChain.success) {
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `invalid chain:\n${formatIssues(parsedChain.error)}`,
        String(parsedChain.error.issues[0]?.path.join('.') ?? ''),
      );
    }
    const c = parsedChain.data;
    const reserved = c.steps.findIndex((s) => isCompensationStepId(s.id));
    if (reserved >= 0) {
      const field = `steps.${reserved}.id`;
      throw new GovernorError(ErrorCode.InvalidInput, `invalid chain:\n${field}: ${COMPENSATION_ID_PROBLEM}`, field);
    }
    const chainId = options.chainId ?? `${c.workload.replace(/[^A-Za-z0-9_.-]/g, '-')}-${randomUUID()}`;
    const input = GovernedChainInput.safeParse({
      chainId,
      chain: c,
      credential: options.credential,
      attestation: options.attestation,
      ...(options.options ? { options: options.options } : {}),
    });
    if (!input.success) {
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `invalid chain input:\n${formatIssues(input.error)}`,
        String(input.error.issues[0]?.path.join('.') ?? ''),
      );
    }
    checkInputSize(input.data);
    const steps = c.steps.map((s, i) => `${i + 1}. ${s.action} on ${resourceLabel(s.resource)} (${s.executor.type})`);
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
        staticDetails: [
          `Governed chain of **${c.workload}**${c.owner ? ` (owner ${c.owner})` : ''}`,
          '',
          ...steps,
        ].join('\n'),
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError)
        throw new GovernorError(
          ErrorCode.InvalidInput,
          `chainId: chain ${chainId} already exists (chain ids are never reused)`,
          'chainId',
        );
      throw err;
    }
  }

  /** The handle of an existing chain. */
  handle(chainId: string): WorkflowHandle {
    return this.client.workflow.getHandle(chainId);
  }

  /**
   * Live state from the workflow (works while running and after it closed). This is what the
   * workflow says of itself: a run terminated, timed out or reset outside the governor keeps saying
   * what it said last. `execution` says how the run really stands.
   */
  async status(chainId: string, runId?: string): Promise<ChainState> {
    try {
      return await this.client.workflow.getHandle(chainId, runId).query(statusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError)
        throw new GovernorError(ErrorCode.NotFound, `no chain ${chainId}${runId ? ` run ${runId}` : ''}`, 'chainId');
      throw err;
    }
  }

  /**
   * How the chain's run (default: its latest) stands on the server: Temporal's execution status,
   * and whether an operator reset it (from which run and event, or into which newer run). Finding
   * `resetFrom` reads the run's history; `{ resetFrom: false }` skips that (polling).
   */
  async execution(chainId: string, runId?: string, options: { resetFrom?: boolean } = {}): Promise<ChainExecution> {
    const handle = this.client.workflow.getHandle(chainId, runId);
    let described;
    try {
      described = await handle.describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError)
        throw new GovernorError(ErrorCode.NotFound, `no chain ${chainId}${runId ? ` run ${runId}` : ''}`, 'chainId');
      throw err;
    }
    const status = executionStatusName(described.status.name);
    const extended = described.raw.workflowExtendedInfo;
    const resetRunId = extended?.resetRunId || undefined;
    const resetTo = resetRunId && resetRunId !== described.runId ? resetRunId : undefined;
    // The reset that made this run is in its history: the workflow task failed with cause RESET_WORKFLOW naming this run.
    let resetFrom: ChainExecution['resetFrom'];
    if (
      options.resetFrom !== false &&
      (extended?.lastResetTime || described.raw.workflowExecutionInfo?.firstRunId !== described.runId)
    ) {
      const history = await this.client.workflow.getHandle(chainId, described.runId).fetchHistory();
      for (const event of history.events ?? []) {
        const failed = event.workflowTaskFailedEventAttributes;
        if (failed?.newRunId === described.runId && failed.baseRunId)
          resetFrom = { runId: failed.baseRunId, eventId: Number(event.eventId ?? 0) };
      }
    }
    return {
      runId: described.runId,
      status,
      ...(resetTo ? { resetTo } : {}),
      ...(resetFrom ? { resetFrom } : {}),
      notClean: !CLEAN_EXECUTION_STATUSES.includes(status) || resetTo !== undefined,
    };
  }

  /** Waits for the chain to end and returns its result. */
  async result(chainId: string): Promise<ChainResult> {
    const result = (await this.handle(chainId).result()) as ChainResult;
    if (result.packedSteps === undefined) return result;
    // A long chain's step states come packed (lean runs): unpacked here, so `steps` always holds them.
    const { packedSteps: _packed, ...rest } = result;
    const steps = chainResultSteps(result);
    if (!steps) throw new Error(`chain ${chainId}: its result's packedSteps are not packed step states`);
    return { ...rest, steps: steps as ChainResult['steps'] };
  }

  /** Sends a refreshed credential and returns the chain state after the workflow accepted it. */
  async refreshCredential(chainId: string, refresh: RefreshCredentialInput): Promise<ChainState> {
    for (const [field, token] of [
      ['credential', refresh.credential],
      ['attestation', refresh.attestation],
    ] as const) {
      const problem = token === undefined && field === 'attestation' ? undefined : tokenTooLong(token);
      if (problem) throw new GovernorError(ErrorCode.InvalidInput, `${field}: ${problem} (nothing was sent)`, field);
    }
    return this.handle(chainId).executeUpdate(refreshCredentialUpdate, { args: [refresh] });
  }

  /** Submits a signed vote by update; returns the verdict (counted or rejected, with its reason) and the approval state. */
  async submitApproval(chainId: string, token: string): Promise<SubmitApprovalResult> {
    checkVoteToken(token);
    // One update id per vote: a retry after the server aborted the update (its workflow task failed
    // or timed out, e.g. while a worker restarts) is the same update, never a second vote.
    const updateId = `vote-${createHash('sha256').update(token).digest('hex').slice(0, 32)}`;
    const deadline = Date.now() + SUBMIT_RETRY_WINDOW_MS;
    for (let wait = 250; ; wait = Math.min(wait * 2, 4000)) {
      try {
        return await this.handle(chainId).executeUpdate(submitApprovalUpdate, { args: [{ token }], updateId });
      } catch (err) {
        const cause = (err as { cause?: { message?: string; type?: string } }).cause;
        if (cause?.type === ErrorCode.InvalidInput)
          throw new GovernorError(ErrorCode.InvalidInput, cause.message ?? 'vote rejected', 'token');
        if (!updateAborted(err) || Date.now() + wait > deadline) throw err;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /** Sends a vote by signal (fire and forget, as the Temporal UI and CLI do). */
  async signalVote(chainId: string, token: string, vote: 'approve' | 'deny'): Promise<void> {
    checkVoteToken(token);
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
    if (!parsed.success)
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `invalid revocation:\n${formatIssues(parsed.error)}`,
        String(parsed.error.issues[0]?.path.join('.') ?? ''),
      );
    // The namespace-wide registry (on the control task queue every governor worker polls): one
    // revocation applies to the workers of every task queue.
    const startWorkflowOperation = new WithStartWorkflowOperation(REVOCATION_REGISTRY_TYPE, {
      workflowId: namespaceRevocationRegistryId(this.controlTaskQueue),
      taskQueue: this.controlTaskQueue,
      args: [],
      workflowIdConflictPolicy: 'USE_EXISTING',
      staticSummary: 'Governor revocation registry',
    });
    const revocations = await this.client.workflow.executeUpdateWithStart(revokeWorkloadUpdate, {
      args: [parsed.data],
      startWorkflowOperation,
    });
    const chains: string[] = [];
    const query = `${CHAIN_TYPES_QUERY} AND ExecutionStatus = 'Running' AND GovernorWorkload = ${quote(input.workload)}`;
    for await (const wf of this.client.workflow.list({ query })) {
      await this.revoke(wf.workflowId, { reason: input.reason, by: input.by });
      chains.push(wf.workflowId);
    }
    return { revocations, chains };
  }

  // ---- agent sessions (DESIGN §9) --------------------------------------------------------------

  /**
   * Opens an agent session: a governed chain with zero or more declared steps, to which the agent then
   * proposes steps one at a time. Validated before anything is sent; the workflow validates again.
   */
  async openSession(options: OpenSessionOptions): Promise<{ sessionId: string }> {
    if (typeof options !== 'object' || options === null) throw invalid('(root)', 'options are required');
    checkTokens({ credential: options.credential, attestation: options.attestation });
    const chain = {
      workload: options.workload,
      ...(options.owner !== undefined ? { owner: options.owner } : {}),
      ...(options.summary !== undefined ? { summary: options.summary } : {}),
      steps: options.steps ?? [],
    };
    const deep = findTooDeep(chain, MAX_JSON_DEPTH);
    if (deep) throw invalid(formatPath(deep.path), `${deep.message} (nothing was sent)`);
    const parsedChain = SessionChain.safeParse(chain);
    if (!parsedChain.success) throw zodInvalid('invalid session', parsedChain.error);
    const c = parsedChain.data;
    const sessionId = options.sessionId ?? `${c.workload.replace(/[^A-Za-z0-9_.-]/g, '-')}-session-${randomUUID()}`;
    const input = GovernedSessionInput.safeParse({
      chainId: sessionId,
      chain: c,
      credential: options.credential,
      attestation: options.attestation,
      ...(options.options ? { options: options.options } : {}),
    });
    if (!input.success) throw zodInvalid('invalid session input', input.error);
    checkInputSize(input.data);
    try {
      await this.client.workflow.start(SESSION_WORKFLOW_TYPE, {
        taskQueue: this.taskQueue,
        workflowId: sessionId,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [input.data],
        typedSearchAttributes: [
          { key: GovernorStatusKey, value: ChainStatus.Running },
          { key: GovernorWorkloadKey, value: c.workload },
        ],
        staticSummary: (c.summary ?? `${c.workload}: agent session`).slice(0, 200),
        staticDetails: `Agent session of **${c.workload}**${c.owner ? ` (owner ${c.owner})` : ''}`,
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError)
        throw invalid('sessionId', `session ${sessionId} already exists (session ids are never reused)`);
      throw err;
    }
    return { sessionId };
  }

  /**
   * Proposes one step to a session and returns its outcome: `executed` (with the output), `denied`
   * (reason, determining policies), `failed`, or `awaiting-approval` at once when it escalates (then
   * `awaitStep`). A proposal the workflow refuses throws `GovernorError(InvalidInput)` naming the field.
   */
  async proposeStep(sessionId: string, proposal: ProposeStepOptions): Promise<ProposeOutcome> {
    if (typeof proposal !== 'object' || proposal === null) throw invalid('(root)', 'a proposal is required');
    checkTokens({ credential: proposal.credential, attestation: proposal.attestation }, ['attestation']);
    const deep = findTooDeep(proposal.step, MAX_JSON_DEPTH);
    if (deep) throw invalid(formatPath(deep.path, 'step'), `${deep.message} (nothing was sent)`);
    const large = findTooLarge(proposal, MAX_PROPOSAL_BYTES, 'the proposal');
    if (large) throw invalid(formatPath(large.path), `${large.message} (nothing was sent)`);
    const parsed = ProposeStepInput.safeParse({
      step: proposal.step,
      credential: proposal.credential,
      ...(proposal.attestation !== undefined ? { attestation: proposal.attestation } : {}),
    });
    if (!parsed.success) throw zodInvalid('invalid proposal', parsed.error);
    if (Object.prototype.hasOwnProperty.call(parsed.data.step.context, SESSION_CONTEXT_KEY))
      throw invalid(
        'step.context.session',
        'reserved: the governor fills it with the session summary (nothing was sent)',
      );
    return ProposeOutcome.parse(await this.sessionUpdate(sessionId, proposeStepUpdate, parsed.data));
  }

  /** Waits for the final outcome of a session step (an escalated one: until approved and executed, or denied). */
  async awaitStep(sessionId: string, stepId: string, options: { credential: string }): Promise<ProposeOutcome> {
    checkTokens({ credential: options?.credential });
    const parsed = AwaitStepInput.safeParse({ stepId, credential: options?.credential });
    if (!parsed.success) throw zodInvalid('invalid awaitStep', parsed.error);
    return ProposeOutcome.parse(await this.sessionUpdate(sessionId, awaitStepUpdate, parsed.data));
  }

  /**
   * Ends the session (after the steps already accepted) and returns its result with the final signed
   * checkpoint. Idempotent: a session that has already ended (closed by another caller at the same time,
   * timed out, revoked) answers with the result it ended with.
   */
  async closeSession(sessionId: string, options: { reason?: string } = {}): Promise<ChainResult> {
    const parsed = CloseSessionInput.safeParse(options ?? {});
    if (!parsed.success) throw zodInvalid('invalid closeSession', parsed.error);
    try {
      const closed = await this.sessionUpdate(sessionId, closeSessionUpdate, parsed.data);
      // The update answers as the session signs its final checkpoint; the run may still take a workflow task
      // to close (it starts its proof's archive workflow first). The caller gets a session that has ended,
      // so a `verify` right after sees it closed.
      return (await this.hasEnded(sessionId)) ? closed : await this.result(sessionId);
    } catch (err) {
      // The session ended before this update was delivered, or while it was in flight (the server aborts
      // the updates still open when a workflow completes): its result is the answer.
      if (err instanceof SessionEndedError || (await this.hasEnded(sessionId))) return this.result(sessionId);
      throw err;
    }
  }

  /** Whether the workflow's latest run has closed (false when it cannot be described). */
  private async hasEnded(workflowId: string): Promise<boolean> {
    const described = await this.handle(workflowId)
      .describe()
      .catch(() => undefined);
    return described !== undefined && described.status.name !== 'RUNNING';
  }

  /** Sends a session update; a refusal by the workflow becomes `GovernorError(InvalidInput)` naming the field. */
  private async sessionUpdate<R, A>(
    sessionId: string,
    update: import('@temporalio/common').UpdateDefinition<R, [A]>,
    arg: A,
  ): Promise<R> {
    try {
      return await this.handle(sessionId).executeUpdate(update, { args: [arg] });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        // The server answers "not found" for an update to a workflow that has ended: say which.
        const ended = await this.handle(sessionId)
          .describe()
          .catch(() => undefined);
        if (!ended) throw new GovernorError(ErrorCode.NotFound, `no session ${sessionId}`, 'sessionId');
        const status = ended.typedSearchAttributes.get(GovernorStatusKey) ?? executionStatusName(ended.status.name);
        throw new SessionEndedError(status);
      }
      const cause = (err as { cause?: { message?: string; type?: string } }).cause;
      if (cause?.type === ErrorCode.InvalidInput) {
        const message = cause.message ?? 'refused';
        throw new GovernorError(ErrorCode.InvalidInput, message, message.split(':')[0]);
      }
      throw err;
    }
  }

  /** Lists chains through the governor's search attributes. */
  async list(filter: ListFilter = {}): Promise<ChainSummary[]> {
    const clauses = [CHAIN_TYPES_QUERY];
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

/** A session update refused because the session has ended; `status` is how it ended (e.g. Completed, Revoked). */
export class SessionEndedError extends GovernorError {
  constructor(readonly status: string) {
    super(
      ErrorCode.InvalidInput,
      `session: closed (the session has ended: ${status}); no further step is accepted`,
      'session',
    );
  }
}

/** `GovernorError(InvalidInput)` for `field`. */
function invalid(field: string, message: string): GovernorError {
  return new GovernorError(ErrorCode.InvalidInput, `${field}: ${message}`, field);
}

/** `GovernorError(InvalidInput)` from zod issues, naming the first field. */
function zodInvalid(what: string, error: import('zod').ZodError): GovernorError {
  const issue = error.issues[0];
  const field = issue ? formatIssuePath(issue) : '(root)';
  return new GovernorError(
    ErrorCode.InvalidInput,
    `${field}: ${what}: ${invalidInputMessage(error)} (nothing was sent)`,
    field,
  );
}

/** Refuses missing or oversized tokens before anything is sent. */
function checkTokens(tokens: Record<string, unknown>, optional: string[] = []): void {
  for (const [field, token] of Object.entries(tokens)) {
    if (token === undefined && optional.includes(field)) continue;
    if (token === undefined || token === '') throw invalid(field, 'is required (nothing was sent)');
    const problem = tokenTooLong(token);
    if (problem) throw invalid(field, `${problem} (nothing was sent)`);
  }
}

/** Refuses an oversized or malformed vote before it is sent (the workflow would reject it too, later). */
/** How long `submitApproval` retries an update the server aborted before the workflow saw it. */
const SUBMIT_RETRY_WINDOW_MS = 60_000;

/**
 * True when the server gave up on an update that the workflow had not accepted yet (gRPC UNAVAILABLE,
 * after the client's own retries): the server documents this as retryable with the same update id.
 */
function updateAborted(err: unknown): boolean {
  const cause = err instanceof ServiceError ? err.cause : undefined;
  return isGrpcServiceError(cause) && cause.code === GRPC_UNAVAILABLE;
}
const GRPC_UNAVAILABLE = 14;

function checkVoteToken(token: unknown): void {
  const tooLong = tokenTooLong(token);
  if (tooLong) throw new GovernorError(ErrorCode.InvalidInput, `token: ${tooLong} (nothing was sent)`, 'token');
  const parsed = ApprovalSubmission.safeParse({ token });
  if (!parsed.success) {
    const message = parsed.error.issues[0]?.message ?? 'invalid';
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${message.startsWith('token:') ? message : `token: ${message}`} (nothing was sent)`,
      'token',
    );
  }
}

/** Refuses a workflow input over MAX_WORKFLOW_INPUT_BYTES, naming the field that makes it large (as in the chain file). */
function checkInputSize(input: unknown): void {
  const large = findTooLarge(input, MAX_WORKFLOW_INPUT_BYTES, 'the workflow input');
  if (!large) return;
  const path = large.path[0] === 'chain' ? large.path.slice(1) : large.path;
  const message = large.message.replace(/most of it is chain\./, 'most of it is ');
  throw new GovernorError(
    ErrorCode.InvalidInput,
    `${message} (nothing was sent)`,
    path.length > 0 ? formatPath(path) : 'chain',
  );
}

function summarize(wf: WorkflowExecutionInfo): ChainSummary {
  const executionStatus = executionStatusName(wf.status.name);
  // A run that did not end itself shows how it ended, not the last status the workflow set.
  const status = CLEAN_EXECUTION_STATUSES.includes(executionStatus)
    ? (wf.typedSearchAttributes.get(GovernorStatusKey) ?? executionStatus)
    : executionStatus;
  return {
    chainId: wf.workflowId,
    runId: wf.runId,
    status,
    executionStatus,
    workload: wf.typedSearchAttributes.get(GovernorWorkloadKey),
    startTime: wf.startTime.toISOString(),
    closeTime: wf.closeTime?.toISOString(),
    pendingRoles: wf.typedSearchAttributes.get(GovernorPendingRolesKey) ?? [],
    breakGlass: wf.typedSearchAttributes.get(GovernorBreakGlassKey) ?? false,
  };
}
