import type { Compensation, Executor, JsonValue, ResourceRef, Step } from '../contracts/chain';
import type { Decision } from '../contracts/decision';

/*
 * The protocol's facts about a step, defined once. The workflow, the activities and `governor verify`
 * all import them, so the verifier cannot disagree with the worker about what a step is.
 * Sandbox-safe: no Node built-ins, no I/O (the workflow imports this module).
 */

/** Suffix of a compensation's step id: the compensation of step `s` is governed as `s.compensation`. */
export const COMPENSATION_SUFFIX = '.compensation';

/** Keys the governor owns in a step's context: a step's own context can never set them (no spoofed claims or time). */
export const RESERVED_CONTEXT_KEYS = ['attestation', 'approvals', 'now', 'nowEpochSeconds'] as const;

/** What is governed: a chain's step, or the compensation of one. */
export type ActionKind = 'step' | 'compensation';

/** One governed action as the workflow asks for it and `governor verify` re-derives it from the chain. */
export interface GovernedAction {
  stepId: string;
  kind: ActionKind;
  action: string;
  resource: ResourceRef;
  context: Record<string, JsonValue>;
  input: Record<string, JsonValue>;
  executor: Executor;
  /** Coordination hints of a step (compensations are not coordinated). */
  coordination?: Step['coordination'];
}

/** The step id under which the compensation of `stepId` is governed. */
export function compensationStepId(stepId: string): string {
  return `${stepId}${COMPENSATION_SUFFIX}`;
}

/**
 * Why a step id may not end in `.compensation`: that is the governed id of a step's compensation, so
 * the two would share an idempotency key and the compensation would be taken for a duplicate of the
 * step (never performed), and `verify` would read the step as a compensation.
 */
export const COMPENSATION_ID_PROBLEM =
  'must not end in ".compensation" (reserved for the governed id of a step\'s compensation)';

/** Whether a governed step id names a compensation. */
export function isCompensationStepId(stepId: string): boolean {
  return stepId.endsWith(COMPENSATION_SUFFIX);
}

/** The chain step a governed step id belongs to (a compensation belongs to its step). */
export function chainStepIdOf(stepId: string): string {
  return isCompensationStepId(stepId) ? stepId.slice(0, -COMPENSATION_SUFFIX.length) : stepId;
}

/** The action a chain's step asks for. */
export function stepAction(step: Step): GovernedAction {
  return {
    stepId: step.id,
    kind: 'step',
    action: step.action,
    resource: step.resource,
    context: step.context,
    input: step.input,
    executor: step.executor,
    ...(step.coordination !== undefined ? { coordination: step.coordination } : {}),
  };
}

/** The action that undoes `step`: its own action and context; the resource falls back to the step's. */
export function compensationAction(step: Pick<Step, 'id' | 'resource'>, comp: Compensation): GovernedAction {
  return {
    stepId: compensationStepId(step.id),
    kind: 'compensation',
    action: comp.action,
    resource: comp.resource ?? step.resource,
    context: comp.context,
    input: comp.input,
    executor: comp.executor,
  };
}

/** The key an executor receives to make a retried effect happen once: `<chainId>/<stepId>`. */
export function idempotencyKey(chainId: string, stepId: string): string {
  return `${chainId}/${stepId}`;
}

/** A resource as Cedar names it and the chain's status shows it: `Type::"id"`. */
export function resourceLabel(r: { type: string; id: string }): string {
  return `${r.type}::"${r.id}"`;
}

/** A context without the keys the governor owns. */
export function ownContext(context: Record<string, unknown>): Record<string, unknown> {
  const reserved: readonly string[] = RESERVED_CONTEXT_KEYS;
  return Object.fromEntries(Object.entries(context).filter(([k]) => !reserved.includes(k)));
}

/** The facts of a governed action a digest commits to (loosely typed: the verifier re-derives them from recorded, possibly hostile input). */
export interface StepFacts {
  stepId: string;
  action: unknown;
  resource: unknown;
  context: unknown;
}

/** What runs if the action is allowed. */
export interface StepBinding {
  input: unknown;
  executor: unknown;
}

/**
 * What a step's digest commits to: the chain, the step, what it does, to what, in which context, and
 * the binding (executor and input) that will run if it is allowed. Approvals and receipts carry the
 * digest, so a vote or a decision cannot be moved to another step or another binding.
 */
export function stepDigestInput(chainId: string, a: StepFacts, binding: StepBinding | null): Record<string, unknown> {
  return { chainId, stepId: a.stepId, action: a.action, resource: a.resource, context: a.context, binding };
}

/** What the input digest of a deny made before policy commits to (no Cedar request was built). */
export function refusedInputDigestInput(chainId: string, a: Omit<StepFacts, 'context'>): Record<string, unknown> {
  return { chainId, stepId: a.stepId, action: a.action, resource: a.resource };
}

/**
 * The reason a step is denied when, after an approval, its attestation was outdated and no fresh one
 * arrived within the grace period: the recorded decision's reason with what the workflow waited for.
 * The workflow writes it and the verifier expects exactly it.
 */
export function outdatedAttestationReason(recordedReason: string | undefined, gracePeriodMs: number): string {
  return `${recordedReason ?? 'attestation outdated'}; no fresh attestation arrived within ${gracePeriodMs} ms`;
}

/**
 * The deny recorded when no decision could be made (verification failed, no bundle, authorization
 * could not run): every path that cannot decide ends here.
 */
export function failClosedDecision(
  reason: string,
  made: { bundleDigest?: string; evaluatedAt?: string; inputDigest?: string } = {},
): Decision {
  return {
    effect: 'deny',
    determiningPolicies: [],
    annotations: {},
    errors: [reason],
    reason,
    bundleDigest: made.bundleDigest ?? '',
    inputDigest: made.inputDigest ?? '',
    evaluatedAt: made.evaluatedAt ?? '',
  };
}
