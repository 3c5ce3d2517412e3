import type { Step } from '../../contracts/chain';
import { ProposeStepInput, SESSION_CONTEXT_KEY } from '../../contracts/session';
import type { DecodedRun } from './decode';
import { isRecord } from './util';

/*
 * Agent sessions in `governor verify`: the steps a session governed are its declared steps, then the
 * steps of the `proposeStep` updates it answered (a refused proposal fails its update and governs
 * nothing), in the order the workflow accepted them, run after run. What history recorded of them is
 * then checked like a declared chain's steps (bindings, checkpoint, result).
 */

/** The proposals a session run answered, in acceptance order: the update's parsed argument. */
export function answeredProposals(run: DecodedRun): { updateId: string; proposal: ProposeStepInput }[] {
  const out: { updateId: string; proposal: ProposeStepInput }[] = [];
  for (const [updateId, u] of run.updates) {
    if (u.name !== 'proposeStep' || !u.completed || u.result === undefined) continue;
    const parsed = ProposeStepInput.safeParse(u.arg);
    if (parsed.success) out.push({ updateId, proposal: parsed.data as ProposeStepInput });
  }
  return out;
}

/**
 * Fills in every session run's chain steps (declared, then answered proposals, across all runs), so the
 * chain checks bind receipts to them. Returns problems (a proposal the workflow could not have accepted).
 */
export function linkSessionSteps(runs: DecodedRun[]): string[] {
  const problems: string[] = [];
  const first = runs[0];
  if (!first?.session) return problems;
  const steps: Step[] = [...first.session.chain.steps];
  for (const run of runs) {
    if (!run.session) continue;
    for (const { updateId, proposal } of answeredProposals(run)) {
      const step = proposal.step as Step;
      if (steps.some((s) => s.id === step.id))
        problems.push(`run ${run.index + 1}: proposal ${updateId} reuses step id ${step.id}`);
      if (isRecord(step.context) && Object.hasOwn(step.context, SESSION_CONTEXT_KEY))
        problems.push(`run ${run.index + 1}: proposal ${updateId} sets the reserved context.session`);
      steps.push(step);
    }
  }
  for (const run of runs) if (run.session && run.input) run.input.chain.steps = steps;
  return problems;
}
