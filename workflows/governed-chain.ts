import {
  ApplicationFailure,
  condition,
  log,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { GovernorActivities, AuthorizeInput, AuthorizeResult } from '../activities';
import type { Compensation, GovernedChainInput, ResourceRef, Step } from '../contracts/chain';
import type { ServiceActivityInput } from '../contracts/executor';
import type { Decision } from '../contracts/decision';
import { refreshCredentialSignal, refreshCredentialUpdate, RefreshCredentialInput, statusQuery } from '../contracts/messages';
import { GENESIS_HASH, type ReceiptHead, type ReceiptKind } from '../contracts/receipt';
import { GovernorPolicyDigestKey, GovernorStatusKey } from '../contracts/search-attributes';
import type { ChainResult, ChainState, ExecutionOutcome, StepState } from '../contracts/state';
import { ChainStatus } from '../contracts/status';

/*
 * Deterministic code only: no Node built-ins, no clocks, no randomness, no I/O. Every decision,
 * signature and side effect happens in an activity whose result is recorded in history.
 */

// Authorization and receipts run as local activities: they are fast, in-process on the governor
// worker, and their results are still recorded in history (as markers) for replay and audit.
const governor = proxyLocalActivities<GovernorActivities>({
  startToCloseTimeout: '10s',
  retry: { maximumAttempts: 5, initialInterval: '200ms', backoffCoefficient: 2, nonRetryableErrorTypes: ['GOVERNOR_INVALID_INPUT'] },
});

// Built-in executors run as normal activities: side effects get Temporal's at-least-once delivery
// with a bounded retry policy; the idempotency key makes a retry safe on the receiving side.
const SERVICE_RETRY: RetryPolicy = { maximumAttempts: 3, initialInterval: '1s', backoffCoefficient: 2 };

const executors = proxyActivities<GovernorActivities>({
  startToCloseTimeout: '2m',
  retry: {
    maximumAttempts: 3,
    initialInterval: '1s',
    backoffCoefficient: 2,
    nonRetryableErrorTypes: ['GOVERNOR_INVALID_INPUT', 'GOVERNOR_HOST_NOT_ALLOWED', 'GOVERNOR_EXECUTOR_FAILED'],
  },
});

function resourceLabel(r: ResourceRef): string {
  return `${r.type}::"${r.id}"`;
}

/** Runs a chain: every step re-authorized, executed once, recorded (DESIGN §4). */
export async function governedChainWorkflow(input: GovernedChainInput): Promise<ChainResult> {
  const { chainId, chain } = input;
  let credential = input.credential;
  let attestation = input.attestation;
  let credentialRefreshed = false;
  let head: ReceiptHead = { seq: 0, hash: GENESIS_HASH };

  const state: ChainState = {
    chainId,
    workload: chain.workload,
    status: ChainStatus.Running,
    steps: chain.steps.map((s) => ({ id: s.id, action: s.action, resource: resourceLabel(s.resource), status: 'pending' })),
    receiptHead: head,
  };

  const applyRefresh = (refresh: RefreshCredentialInput): void => {
    credential = refresh.credential;
    if (refresh.attestation) attestation = refresh.attestation;
    credentialRefreshed = true;
  };
  setHandler(statusQuery, () => state);
  setHandler(refreshCredentialSignal, applyRefresh);
  setHandler(
    refreshCredentialUpdate,
    (refresh) => {
      applyRefresh(refresh);
      return state;
    },
    { validator: validateRefresh },
  );

  const setStatus = (status: ChainStatus, pending?: string): void => {
    state.status = status;
    state.pending = pending;
    upsertSearchAttributes([{ key: GovernorStatusKey, value: status }]);
    publishDetails();
  };

  const publishDetails = (): void => {
    const lines = state.steps.map((s, i) => {
      const mark = s.status === 'completed' ? 'x' : ' ';
      const decision = s.decision ? ` — ${s.decision.effect}` : '';
      return `- [${mark}] ${i + 1}. **${s.action}** on \`${s.resource}\`: ${s.status}${decision}`;
    });
    const head1 = `**${state.status}**${state.pending ? ` — ${state.pending}` : ''}${state.reason ? ` — ${state.reason}` : ''}`;
    setCurrentDetails([head1, '', ...lines].join('\n'));
  };

  const advance = (receipt: { seq: number; hash: string }): void => {
    head = { seq: receipt.seq, hash: receipt.hash };
    state.receiptHead = head;
  };

  /** Authorizes one action; waits for a refreshed credential when only the credential's expiry failed. */
  const authorize = async (
    stepId: string,
    kind: AuthorizeInput['kind'],
    action: string,
    resource: ResourceRef,
    context: Record<string, unknown>,
    stepState: StepState,
  ): Promise<Decision> => {
    for (;;) {
      let result: AuthorizeResult;
      try {
        result = await governor.authorize.executeWithOptions(
          {
            startToCloseTimeout: '10s',
            retry: { maximumAttempts: 5, initialInterval: '200ms', backoffCoefficient: 2, nonRetryableErrorTypes: ['GOVERNOR_INVALID_INPUT'] },
            summary: `authorize ${action} on ${resourceLabel(resource)}`,
          },
          [{ chainId, stepId, kind, workload: chain.workload, action, resource, context: context as AuthorizeInput['context'], credential, attestation, prev: head }],
        );
      } catch (err) {
        // Fail closed: authorization that cannot complete is a deny, never an allow.
        return failClosedDecision(`authorization could not complete: ${(err as Error).message}`);
      }
      advance(result.receipt);
      if (result.decision.bundleDigest && result.decision.bundleDigest !== state.policyDigest) {
        state.policyDigest = result.decision.bundleDigest;
        upsertSearchAttributes([{ key: GovernorPolicyDigestKey, value: result.decision.bundleDigest }]);
      }
      if (!result.credentialExpired) return result.decision;

      // The credential is (only) expired: wait for a refresh up to the manifest's grace period.
      credentialRefreshed = false;
      stepState.status = 'awaiting-credential';
      setStatus(ChainStatus.AwaitingCredential, `a refreshed credential (refreshCredential) within ${result.gracePeriod}`);
      const refreshed = await condition(() => credentialRefreshed, result.gracePeriod);
      if (!refreshed) return { ...result.decision, reason: `credential expired and no refresh arrived within ${result.gracePeriod}` };
      stepState.status = 'authorizing';
      setStatus(ChainStatus.Running);
    }
  };

  const record = async (stepId: string, kind: ReceiptKind, payload: unknown): Promise<void> => {
    const receipt = await governor.recordReceipt({ chainId, stepId, kind, payload, prev: head });
    advance(receipt);
  };

  const execute = async (stepId: string, action: string, resource: ResourceRef, executor: Step['executor'], stepInput: Step['input']): Promise<ExecutionOutcome> => {
    const idempotencyKey = `${chainId}/${stepId}`;
    const summary = `execute ${action} on ${resourceLabel(resource)}`;
    if (executor.type === 'activity') {
      // The service's own activity, on the service's own task queue: the governor never holds its credentials.
      const service = proxyActivities<Record<string, (arg: ServiceActivityInput) => Promise<unknown>>>({
        taskQueue: executor.taskQueue,
        startToCloseTimeout: executor.timeoutMs,
        retry: SERVICE_RETRY,
      });
      const serviceInput: ServiceActivityInput = { idempotencyKey, chainId, stepId, action, resource, input: stepInput };
      const result = await service[executor.activityType]!.executeWithOptions(
        { taskQueue: executor.taskQueue, startToCloseTimeout: executor.timeoutMs, retry: SERVICE_RETRY, summary },
        [serviceInput],
      );
      return { executor: 'activity', idempotencyKey, result: result ?? null };
    }
    return executors.execute.executeWithOptions(
      {
        startToCloseTimeout: executor.type === 'http' ? executor.timeoutMs * 2 : '30s',
        retry: { maximumAttempts: 3, initialInterval: '1s', backoffCoefficient: 2, nonRetryableErrorTypes: ['GOVERNOR_INVALID_INPUT', 'GOVERNOR_HOST_NOT_ALLOWED', 'GOVERNOR_EXECUTOR_FAILED'] },
        summary,
      },
      [{ chainId, stepId, idempotencyKey, executor, input: stepInput }],
    );
  };

  const completed: Step[] = [];
  let outcome: ChainStatus = ChainStatus.Completed;
  upsertSearchAttributes([{ key: GovernorStatusKey, value: ChainStatus.Running }]);
  publishDetails();

  for (const step of chain.steps) {
    const s = state.steps.find((x) => x.id === step.id)!;
    state.currentStep = step.id;
    s.status = 'authorizing';
    publishDetails();

    const decision = await authorize(step.id, 'step', step.action, step.resource, step.context, s);
    s.decision = decision;
    if (decision.effect !== 'allow') {
      // Escalation is not handled yet: it fails closed, like every non-allow.
      s.status = 'denied';
      s.error = decision.effect === 'escalate' ? `escalation required (${decision.reason ?? 'approvers'}) — human approval is not enabled, denied` : decision.reason ?? 'denied by policy';
      state.reason = `step ${step.id}: ${s.error}`;
      outcome = ChainStatus.Denied;
      break;
    }

    s.status = 'executing';
    setStatus(ChainStatus.Running, `executing ${step.id}`);
    try {
      s.outcome = await execute(step.id, step.action, step.resource, step.executor, step.input);
    } catch (err) {
      s.status = 'failed';
      s.error = failureMessage(err);
      state.reason = `step ${step.id} failed: ${s.error}`;
      await record(step.id, 'execution', { status: 'failed', error: s.error });
      outcome = ChainStatus.Failed;
      break;
    }
    await record(step.id, 'execution', { status: 'completed', outcome: s.outcome });
    s.status = 'completed';
    completed.push(step);
    publishDetails();
  }
  state.currentStep = undefined;

  if (outcome !== ChainStatus.Completed) {
    for (const step of state.steps) if (step.status === 'pending') step.status = 'skipped';
    // Compensate completed steps newest first, each governed like any step.
    for (const step of [...completed].reverse()) {
      if (!step.compensation) continue;
      await compensate(step, step.compensation);
    }
  }

  async function compensate(step: Step, comp: Compensation): Promise<void> {
    const s = state.steps.find((x) => x.id === step.id)!;
    const stepId = `${step.id}.compensation`;
    const resource = comp.resource ?? step.resource;
    s.status = 'compensating';
    s.compensation = {};
    publishDetails();
    const decision = await authorize(stepId, 'compensation', comp.action, resource, comp.context, s);
    s.compensation.decision = decision;
    if (decision.effect !== 'allow') {
      s.status = 'compensation-denied';
      s.compensation.error = decision.reason ?? 'denied by policy';
      log.warn('compensation denied', { chainId, stepId, reason: s.compensation.error });
      return;
    }
    try {
      s.compensation.outcome = await execute(stepId, comp.action, resource, comp.executor, comp.input);
      await record(stepId, 'compensation-execution', { status: 'completed', outcome: s.compensation.outcome });
      s.status = 'compensated';
    } catch (err) {
      s.compensation.error = failureMessage(err);
      await record(stepId, 'compensation-execution', { status: 'failed', error: s.compensation.error });
      s.status = 'compensation-failed';
    }
  }

  setStatus(outcome);
  const checkpoint = await governor.recordReceipt({ chainId, kind: 'checkpoint', payload: { status: outcome, reason: state.reason ?? null, steps: state.steps.length }, prev: head });
  advance(checkpoint);
  publishDetails();
  log.info('chain ended', { chainId, status: outcome, workflowId: workflowInfo().workflowId });
  return { chainId, status: outcome, reason: state.reason, steps: state.steps, receiptHead: head, checkpoint: checkpoint.signature };
}

function failClosedDecision(reason: string): Decision {
  return { effect: 'deny', determiningPolicies: [], annotations: {}, errors: [reason], reason, bundleDigest: '', inputDigest: '', evaluatedAt: '' };
}

/** The innermost failure message (ActivityFailure wraps the ApplicationFailure that says why). */
function failureMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  let msg = e?.message ?? String(err);
  while (e && e.cause) {
    e = e.cause as { message?: string; cause?: unknown };
    if (e.message) msg = e.message;
  }
  return msg;
}

/** Synchronous validator of a credential refresh: shape only; the activity verifies the token. */
function validateRefresh(refresh: RefreshCredentialInput): void {
  if (typeof refresh !== 'object' || refresh === null || typeof refresh.credential !== 'string' || refresh.credential.length === 0 || refresh.credential.length > 16_384) {
    throw ApplicationFailure.nonRetryable('credential: must be a non-empty JWT string', 'GOVERNOR_INVALID_INPUT');
  }
  if (refresh.attestation !== undefined && (typeof refresh.attestation !== 'string' || refresh.attestation.length > 16_384)) {
    throw ApplicationFailure.nonRetryable('attestation: must be a JWT string', 'GOVERNOR_INVALID_INPUT');
  }
}
