import { CancellationScope, isCancellation, log, proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { GovernStepResult, SessionOutputResult } from '../../activities';
import type { Decision } from '../../contracts/decision';
import { ErrorCode } from '../../contracts/errors';
import { MCP_TOOL_CALL_ACTIVITY, type McpToolCallInput, type ServiceActivityInput } from '../../contracts/executor';
import { grantLifetimeMs } from '../../contracts/grant';
import { EXECUTION_GRANT_PATCH, FOLDED_REMOTE_STEP_PATCH, GOVERN_STEP_PATCH } from '../../contracts/patches';
import type { Receipt, ReceiptKind } from '../../contracts/receipt';
import type { ExecutionOutcome, StepState } from '../../contracts/state';
import { ChainStatus } from '../../contracts/status';
import { idempotencyKey, resourceLabel, type GovernedAction } from '../../core/step';
import { failureMessage } from '../failure';
import {
  EXECUTOR_RETRY,
  LOCAL_ACTIVITY,
  executeTimeout,
  governStepTimeout,
  mcpActivityOptions,
  serviceActivityOptions,
} from '../retry';
import { awaitApproval } from './approval';
import { authorize, authorizeInput } from './authorize';
import { coordinate, type Slot } from './coordination';
import { executors, governor } from './proxies';
import { Revoked, type ChainRun } from './run';

/** How governing one action ended: it ran (with its outcome), or it was denied, or it failed. */
export type GovernResult =
  | { kind: 'ran'; outcome: ExecutionOutcome; output?: SessionOutputResult }
  | { kind: 'denied'; reason: string }
  | { kind: 'failed'; reason: string };

/** FOLDED_REMOTE_STEP_PATCH: a grant `authorize` minted with its decision, bound to that decision's receipt. */
interface Preminted {
  grant: string;
  receipt: string;
}

/** What an executor did: its outcome, and the execution receipt a built-in executor signs itself. */
interface Executed {
  outcome: ExecutionOutcome;
  receipt?: Receipt;
}

/** The kind of the receipt that records an action's execution. */
const executionKind = (a: GovernedAction): ReceiptKind => (a.kind === 'step' ? 'execution' : 'compensation-execution');

/**
 * Runs the executor. Built-in executors sign their own execution receipt (returned here); a
 * service activity's outcome is recorded by the caller with `recordReceipt`.
 */
async function execute(run: ChainRun, a: GovernedAction, stepDigest: string, preminted?: Preminted): Promise<Executed> {
  const { chainId } = run;
  const key = idempotencyKey(chainId, a.stepId);
  const summary = `execute ${a.action} on ${resourceLabel(a.resource)}`;
  const scope = new CancellationScope();
  run.inFlight = scope;
  try {
    return await scope.run(async () => {
      // The step as the remote activity sees it (a service's, or the MCP gateway's): the same binding for both.
      const binding: ServiceActivityInput = {
        idempotencyKey: key,
        chainId,
        stepId: a.stepId,
        action: a.action,
        resource: a.resource,
        input: a.input,
      };
      // Runs before grants existed carry none (their histories have no mintGrant marker).
      const granted = a.executor.type !== 'noop' && run.takes(EXECUTION_GRANT_PATCH);
      if (granted && preminted !== undefined && preminted.receipt === run.head.hash) {
        // Minted by `authorize` with the decision that allows this execution, which is still the head.
        binding.grant = preminted.grant;
      } else if (granted && (a.executor.type === 'activity' || a.executor.type === 'mcp')) {
        // Signed by a local activity (never in workflow code), bound to the receipt that allowed this execution.
        const minted = await governor.mintGrant.executeWithOptions(
          { ...LOCAL_ACTIVITY, summary: `grant ${a.action} on ${resourceLabel(a.resource)}` },
          [
            {
              chainId,
              stepId: a.stepId,
              idempotencyKey: key,
              stepDigest,
              receipt: run.head.hash,
              audience: a.executor.taskQueue,
              action: a.action,
              resource: a.resource,
              input: a.input,
              ttlMs: grantLifetimeMs(a.executor.timeoutMs),
            },
          ],
        );
        binding.grant = minted.grant;
      }
      if (a.executor.type === 'activity') {
        // The service's own activity, on the service's own task queue: the governor never holds its credentials.
        const result = await remote(serviceActivityOptions(a.executor), a.executor.activityType, binding, summary);
        return { outcome: { executor: 'activity' as const, idempotencyKey: key, result } };
      }
      if (a.executor.type === 'mcp') {
        // An upstream MCP tool, called once by the MCP gateway that holds the connection (its own task queue).
        const call: McpToolCallInput = { ...binding, server: a.executor.server, tool: a.executor.tool };
        const result = await remote(mcpActivityOptions(a.executor), MCP_TOOL_CALL_ACTIVITY, call, summary);
        return { outcome: { executor: 'mcp' as const, idempotencyKey: key, result } };
      }
      const done = await executors.execute.executeWithOptions(
        { startToCloseTimeout: executeTimeout(a.executor), retry: EXECUTOR_RETRY, summary },
        [
          {
            chainId,
            stepId: a.stepId,
            idempotencyKey: key,
            executor: a.executor,
            input: a.input,
            ...(granted ? { grant: { stepDigest, action: a.action, resource: a.resource } } : {}),
            receipt: { kind: executionKind(a), prev: run.head },
          },
        ],
      );
      return { outcome: done.outcome, receipt: done.receipt };
    });
  } catch (err) {
    if (run.revoked && isCancellation(err)) throw new Revoked();
    throw err;
  } finally {
    run.inFlight = undefined;
  }
}

/**
 * `governStep`: authorize and, when allowed outright, run a built-in executor in one activity.
 * Undefined when the activity could not complete (the workflow then authorizes as usual, which
 * fails closed).
 */
async function governInOne(run: ChainRun, a: GovernedAction): Promise<GovernStepResult | undefined> {
  try {
    // Not cancellable: a built-in executor cannot be interrupted mid-request anyway, so a revocation
    // that arrives meanwhile lets the step finish and be recorded (and compensated like any completed
    // step) instead of leaving an effect without a receipt; the chain stops at its next step.
    // Lean runs: one shared scope for every call (scopes are not in history); the chain's last step also
    // asks for the final checkpoint, signed after its execution when it runs here (LEAN_CHAIN_PATCH).
    const steps = run.chain.steps;
    const last = run.lean && a.kind === 'step' && !run.receiptFailure && steps[steps.length - 1]!.id === a.stepId;
    const call = () =>
      executors.governStep.executeWithOptions(
        {
          startToCloseTimeout: governStepTimeout(a.executor),
          retry: EXECUTOR_RETRY,
          summary: `authorize and execute ${a.action} on ${resourceLabel(a.resource)}`,
        },
        [
          {
            ...authorizeInput(run, a),
            idempotencyKey: idempotencyKey(run.chainId, a.stepId),
            ...(last ? { checkpoint: { steps: steps.length } } : {}),
          },
        ],
      );
    const result = run.lean ? await run.uncancellable.run(call) : await CancellationScope.nonCancellable(call);
    if (last && result.executed && result.checkpoint) run.foldedCheckpoint = result.checkpoint.receipt;
    return result;
  } catch (err) {
    if (isCancellation(err)) throw err;
    const reason = failureMessage(err);
    const where = { chainId: run.chainId, stepId: a.stepId };
    log.warn('governStep could not complete; authorizing step by step', { ...where, reason });
    return undefined;
  }
}

/** Authorizes (escalating when needed) and runs one action. Says why it did not run, if it did not. */
export async function govern(
  run: ChainRun,
  a: GovernedAction,
  s: StepState,
  onDecision: (d: Decision) => void,
): Promise<GovernResult> {
  run.stopIfRevoked();
  // Built-in executors: decision and execution in one activity (histories written before this
  // existed have no patch marker and replay through `authorize` + `execute`, as they ran).
  // (An `mcp` executor runs on the gateway's queue like a service activity; it never runs in `governStep`.)
  const builtIn = a.executor.type !== 'activity' && a.executor.type !== 'mcp';
  const inOne = builtIn && (run.oneMarker || run.takes(GOVERN_STEP_PATCH)) ? await governInOne(run, a) : undefined;
  // Service activities and MCP tool calls: the grant is asked with the decision, a session step's output
  // digested with its execution receipt (runs recorded before this replay as they ran).
  const folded = !builtIn && run.takes(FOLDED_REMOTE_STEP_PATCH);
  const grantAsk =
    folded && a.executor.type !== 'noop' && a.executor.type !== 'http'
      ? {
          audience: a.executor.taskQueue,
          idempotencyKey: idempotencyKey(run.chainId, a.stepId),
          ttlMs: grantLifetimeMs(a.executor.timeoutMs),
        }
      : undefined;
  const first = await authorize(run, a, s, undefined, inOne?.authorized, grantAsk);
  if (first.kind === 'failed-closed') {
    onDecision(first.decision);
    return { kind: 'denied', reason: first.decision.reason ?? 'denied' };
  }
  const { decision } = first.result;
  onDecision(decision);
  if (decision.effect === 'allow' && inOne?.executed) {
    // It ran: recorded even if a revocation arrived meanwhile (the revocation stops the next step).
    run.advance(inOne.executed.receipt);
    return { kind: 'ran', outcome: inOne.executed.outcome };
  }
  if (decision.effect === 'allow' && inOne?.executionFailed !== undefined) {
    // The executor refused for good (e.g. a 4xx): recorded as the step's failure, never sent twice.
    await run.record(a.stepId, executionKind(a), { status: 'failed', error: inOne.executionFailed });
    return { kind: 'failed', reason: inOne.executionFailed };
  }
  if (decision.effect === 'deny') return { kind: 'denied', reason: decision.reason ?? 'denied by policy' };
  if (decision.effect === 'escalate') {
    const verdict = await awaitApproval(run, a, s, first.result);
    onDecision(verdict.decision);
    if (!verdict.allowed) return { kind: 'denied', reason: verdict.reason ?? 'not approved' };
  }
  run.stopIfRevoked();
  // Only steps whose resource the manifest may coordinate ask for a slot; `authorize` said which (a
  // result recorded without the flag, from an older worker, asks as before: replay stays identical).
  const coordinated = (a.kind === 'step' || run.strict) && run.coordinatedHint.get(a.stepId) !== false;
  const slot: Slot = coordinated ? await coordinate(run, a, s) : { granted: true };
  if (!slot.granted) return { kind: 'denied', reason: slot.reason };
  s.status = a.kind === 'step' ? 'executing' : 'compensating';
  run.setStatus(ChainStatus.Running);
  run.publishDetails(); // step progress changed even when the chain's status did not
  let executed: Executed;
  try {
    const { grant, receipt } = first.result;
    const preminted = folded && grant !== undefined ? { grant, receipt: receipt.hash } : undefined;
    executed = await execute(run, a, first.result.stepDigest, preminted);
    await slot.release?.(true);
  } catch (err) {
    // A holder that did not complete releases without advancing the resource's version.
    await slot.release?.(false);
    if (err instanceof Revoked) throw err;
    const message = failureMessage(err);
    await run.record(a.stepId, executionKind(a), { status: 'failed', error: message });
    // The executor refused the target before sending anything (connect-time re-check): a deny.
    if (run.strict && (err as { cause?: { type?: string } })?.cause?.type === ErrorCode.HostNotAllowed) {
      return { kind: 'denied', reason: message };
    }
    return { kind: 'failed', reason: message };
  }
  const { outcome } = executed;
  if (executed.receipt) run.advance(executed.receipt);
  else if (!(await run.record(a.stepId, executionKind(a), { status: 'completed', outcome }, folded && !!run.session))) {
    return { kind: 'failed', reason: run.receiptFailure ?? 'receipt could not be recorded' };
  }
  const output = executed.receipt ? undefined : run.recordedOutput;
  return output ? { kind: 'ran', outcome, output } : { kind: 'ran', outcome };
}

/** Runs `activityType` on another worker's task queue (a service's, the MCP gateway's); its result or null. */
async function remote<T>(options: ActivityOptions, activityType: string, input: T, summary: string): Promise<unknown> {
  const activities = proxyActivities<Record<string, (arg: T) => Promise<unknown>>>(options);
  return (await activities[activityType]!.executeWithOptions({ ...options, summary }, [input])) ?? null;
}
