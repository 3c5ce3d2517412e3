import { canonicalJson } from '../../core/canonical';
import { stepDigest } from '../../core/digests';
import {
  compensationStepId,
  idempotencyKey,
  isCompensationStepId,
  ownContext,
  resourceLabel,
  type ActionKind,
} from '../../core/step';
import { ONE_MARKER_CHAIN_PATCH, PATCHES_AT_START, VALIDATED_INPUT_PATCH } from '../../contracts/patches';
import type { DecodedRun } from './decode';
import { isRecord } from './util';

/*
 * What `governor verify` re-derives from a chain's input: the governed actions (steps and their
 * compensations) as the workflow builds them, and the protocol facts of each (core/step.ts,
 * core/digests.ts) that history must agree with. The bindings check compares history with these;
 * test/integration/protocol-agreement.test.ts compares them with what the worker recorded.
 * Loosely typed: the chain input comes from a history, which may be hostile.
 */

/** What a governed action (a step or a compensation) is, as the workflow built it from the chain input. */
export interface ActionFacts {
  action: unknown;
  resource: unknown;
  context: unknown;
  input: unknown;
  executor: unknown;
}

/** The governed actions of a chain, by step id. */
export type Actions = Map<string, ActionFacts>;

/**
 * The governed actions of the chain `run` governs (its first run): the schema-parsed input (defaults
 * applied) when the run recorded the validated-input patch (or the one-marker or patches-at-start patch, which
 * imply it), else the raw input, exactly as the workflow (and so `authorize`) saw it.
 */
export function governedActions(run: DecodedRun): Actions {
  const validated = [VALIDATED_INPUT_PATCH, ONE_MARKER_CHAIN_PATCH, PATCHES_AT_START].some((p) =>
    run.patches.includes(p),
  );
  return actionsOf(run.session || validated ? run.input : run.rawInput);
}

/** The governed actions of a chain input by step id: each step, and the compensation of each step that has one. */
function actionsOf(rawInput: unknown): Actions {
  const out: Actions = new Map();
  const chain = isRecord(rawInput) && isRecord(rawInput.chain) ? rawInput.chain : undefined;
  const steps = chain && Array.isArray(chain.steps) ? chain.steps : [];
  for (const step of steps) {
    if (!isRecord(step) || typeof step.id !== 'string') continue;
    const { action, resource, context, input, executor } = step;
    out.set(step.id, { action, resource, context, input, executor });
    const comp = step.compensation;
    if (isRecord(comp)) {
      // Its own action and context; the resource falls back to the step's (core/step.ts compensationAction).
      out.set(compensationStepId(step.id), {
        action: comp.action,
        resource: comp.resource ?? step.resource,
        context: comp.context,
        input: comp.input,
        executor: comp.executor,
      });
    }
  }
  return out;
}

/** Whether a governed step id is a step or a compensation. */
export function expectedKind(stepId: string): ActionKind {
  return isCompensationStepId(stepId) ? 'compensation' : 'step';
}

/** The step digest `authorize` must record for the action (and approvals and receipts carry). */
export function expectedStepDigest(chainId: string, stepId: string, a: ActionFacts): string {
  const facts = { stepId, action: a.action, resource: a.resource, context: a.context };
  return stepDigest(chainId, facts, { input: a.input, executor: a.executor });
}

/** The idempotency key every executor of the action must receive. */
export function expectedIdempotencyKey(chainId: string, stepId: string): string {
  return idempotencyKey(chainId, stepId);
}

/** The resource as a Cedar request (and an executor's input) names it: `{type, id}`. */
export function requestResource(a: ActionFacts): { type: unknown; id: unknown } | undefined {
  return isRecord(a.resource) ? { type: a.resource.type, id: a.resource.id } : undefined;
}

/** The resource label `Type::"id"`, as slot requests and the chain's status name it. */
export function expectedResourceLabel(a: ActionFacts): string | undefined {
  return isRecord(a.resource) ? resourceLabel({ type: String(a.resource.type), id: String(a.resource.id) }) : undefined;
}

/** What of the action's context reaches policy: its own keys, without the keys the governor owns (canonical JSON). */
export function expectedOwnContext(a: ActionFacts): string {
  return canonicalJson(ownContext(isRecord(a.context) ? a.context : {}));
}
