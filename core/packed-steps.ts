import type { Step } from '../contracts/chain';
import { PackedSteps, type PackedStep, type StepState } from '../contracts/state';
import { idempotencyKey, resourceLabel } from './step';

/*
 * Step states packed for continue-as-new (`resume.packedSteps`) and for a long chain's result
 * (`ChainResult.packedSteps`). In full, a completed step costs about 600 bytes, most of it its decision
 * (annotations, determining policies, bundle digest), which is the same from step to step but for its
 * input digest and time; a 1,000-step chain's continue-as-new input and result passed the SDK's 512 KB
 * payload warning. Packed, each distinct decision is kept once in a table and a step names it with its
 * own digest and time; with the chain at hand (a resume), what the chain gives is left out as well (id,
 * action, resource label, a built-in executor's outcome). Lossless: `packSteps` returns nothing unless
 * unpacking gives the same states. Sandbox-safe (the workflow imports it).
 */

/** JSON with sorted keys (undefined dropped, as JSON drops it): equal for equal JSON values. */
function stable(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, (v as Record<string, unknown>)[k]]),
        )
      : v,
  );
}

/** The outcome a built-in executor records for a step (what `o: 1` stands for). */
function builtInOutcome(chainId: string, step: Step): StepState['outcome'] {
  return { executor: step.executor.type as 'noop' | 'http', idempotencyKey: idempotencyKey(chainId, step.id) };
}

/**
 * Packs the step states; undefined when they cannot be packed without loss (then carry them in full).
 * `chainSteps`: the chain's steps when the reader has them (a resume); without them (a result) every
 * field but the decision stays in the packed step.
 */
export function packSteps(
  chainId: string,
  chainSteps: readonly Step[] | undefined,
  steps: readonly StepState[],
): PackedSteps | undefined {
  if (chainSteps && steps.length !== chainSteps.length) return undefined;
  const decisions: Record<string, unknown>[] = [];
  const known = new Map<string, number>();
  const packed: PackedStep[] = steps.map((state, n) => {
    const step = chainSteps?.[n];
    const { id, action, resource, status, decision, outcome, ...rest } = state;
    const x: Record<string, unknown> = {};
    if (!step || id !== step.id || action !== step.action || resource !== resourceLabel(step.resource))
      Object.assign(x, { id, action, resource });
    Object.assign(x, rest);
    const entry: PackedStep = { s: status };
    if (decision) {
      const { inputDigest, evaluatedAt, ...shared } = decision;
      const key = stable(shared);
      let d = known.get(key);
      if (d === undefined) {
        d = decisions.push(shared) - 1;
        known.set(key, d);
      }
      Object.assign(entry, { d, i: inputDigest, t: evaluatedAt });
    }
    if (outcome) {
      if (step && step.executor.type !== 'activity' && stable(outcome) === stable(builtInOutcome(chainId, step)))
        entry.o = 1;
      else x.outcome = outcome;
    }
    if (Object.values(x).some((v) => v !== undefined)) entry.x = x;
    return entry;
  });
  const result: PackedSteps = { decisions, steps: packed };
  const problem = packedStepsProblem(chainSteps, result);
  if (problem !== undefined) return undefined;
  return stable(unpackSteps(chainId, chainSteps, result)) === stable(steps) ? result : undefined;
}

/** Why `packed` cannot be unpacked (with `chainSteps`, when given), or undefined. Checked before unpacking. */
export function packedStepsProblem(chainSteps: readonly Step[] | undefined, packed: PackedSteps): string | undefined {
  if (chainSteps && packed.steps.length !== chainSteps.length)
    return `packedSteps: ${packed.steps.length} step(s), the chain has ${chainSteps.length}`;
  const bad = packed.steps.findIndex(
    (e) =>
      (e.d !== undefined) !== (e.i !== undefined && e.t !== undefined) ||
      (e.d !== undefined && e.d >= packed.decisions.length) ||
      (e.o !== undefined && !chainSteps) ||
      (!chainSteps &&
        (typeof e.x?.id !== 'string' || typeof e.x.action !== 'string' || typeof e.x.resource !== 'string')),
  );
  return bad >= 0
    ? `packedSteps.steps.${bad}: names no decision of the table, or only part of one, or no step`
    : undefined;
}

/**
 * A chain result's step states: `steps`, or its `packedSteps` unpacked (a long chain's lean result).
 * Undefined when `packedSteps` is there but is not packed step states (or `steps` is not empty beside it).
 */
export function chainResultSteps(result: {
  chainId?: unknown;
  steps?: unknown;
  packedSteps?: unknown;
}): unknown[] | undefined {
  if (result.packedSteps === undefined) return Array.isArray(result.steps) ? result.steps : undefined;
  const parsed = PackedSteps.safeParse(result.packedSteps);
  if (!parsed.success || !Array.isArray(result.steps) || result.steps.length > 0) return undefined;
  if (packedStepsProblem(undefined, parsed.data) !== undefined) return undefined;
  return unpackSteps(typeof result.chainId === 'string' ? result.chainId : '', undefined, parsed.data);
}

/** The step states `packSteps` packed (check `packedStepsProblem` first). */
export function unpackSteps(
  chainId: string,
  chainSteps: readonly Step[] | undefined,
  packed: PackedSteps,
): StepState[] {
  return packed.steps.map((e, n) => {
    const step = chainSteps?.[n];
    const state = (
      step ? { id: step.id, action: step.action, resource: resourceLabel(step.resource) } : {}
    ) as StepState;
    state.status = e.s;
    if (e.d !== undefined)
      state.decision = { ...packed.decisions[e.d], inputDigest: e.i, evaluatedAt: e.t } as StepState['decision'];
    if (e.o === 1 && step) state.outcome = builtInOutcome(chainId, step);
    // A structured copy: the table's objects are shared between entries, the states must not be.
    return JSON.parse(JSON.stringify({ ...state, ...e.x })) as StepState;
  });
}
