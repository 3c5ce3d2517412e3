import { allHandlersFinished, condition, continueAsNew, log, patched, workflowInfo } from '@temporalio/workflow';
import type { Compensation, GovernedChainInput, Step } from '../contracts/chain';
import {
  LEAN_CHAIN_PATCH,
  ONE_MARKER_CHAIN_PATCH,
  PATCHES_AT_START,
  VALIDATED_INPUT_PATCH,
} from '../contracts/patches';
import type { ChainResult } from '../contracts/state';
import { ChainStatus } from '../contracts/status';
import { compensationAction, stepAction } from '../core/step';
import { startArchive } from './chain/archive';
import { setChainHandlers } from './chain/handlers';
import { govern } from './chain/execute';
import { acceptInput, readResume, type ChainResume } from './chain/input';
import { ChainRun, Revoked } from './chain/run';
import { invalidInput } from './failure';
import { packSteps } from '../core/packed-steps';

/*
 * Deterministic code only: no Node built-ins, no clocks, no randomness, no I/O. Every decision,
 * signature and side effect happens in an activity whose result is recorded in history.
 *
 * The workflow function wires the messages to a `ChainRun` (chain/run.ts: state, credentials, receipt
 * head) and runs the chain: each step governed (chain/execute.ts: authorize, approve, coordinate,
 * execute), continue-as-new on long chains, compensation when the chain does not complete.
 */

/** Runs a chain: every step re-authorized, escalated when policy says so, executed once, recorded (DESIGN §4). */
export async function governedChainWorkflow(raw: GovernedChainInput): Promise<ChainResult> {
  // The workflow is the trust boundary: other SDKs start it without our client, so it checks its own input.
  // One marker, here, for every patch a new run takes (PATCHES_AT_START; no `patched()` call after an await);
  // older runs replay as recorded (ONE_MARKER_CHAIN_PATCH for three of them, the others where they were asked).
  const atStart = patched(PATCHES_AT_START);
  const oneMarker = atStart || patched(ONE_MARKER_CHAIN_PATCH);
  const strict = oneMarker || patched(VALIDATED_INPUT_PATCH);
  const input = strict ? await acceptInput(raw, atStart) : raw;
  // The chain id names the lineage (receipts, credential bindings, verify): it must be this workflow's id.
  if (input.chainId !== workflowInfo().workflowId) {
    const given = JSON.stringify(String(input.chainId).slice(0, 200));
    throw invalidInput(`chainId: ${given} is not this workflow's id (start the chain with workflow id = chainId)`);
  }
  // Less work per chain (folded checkpoint, search attributes together, packed states); validated runs only.
  const lean = oneMarker || (strict && patched(LEAN_CHAIN_PATCH));
  const run = new ChainRun(input, strict, readResume(input.resume), lean, oneMarker, atStart);

  // Handlers only record what arrived; the chain acts on it. Registered in this order (signals that
  // arrived before are delivered in the order their handlers are set).
  setChainHandlers(run);

  // The workload is set by the workflow itself, so `revoke --workload` finds chains started from any SDK.
  run.publishStart();
  run.publishDetails();

  let outcome = await runSteps(run);
  if (outcome !== ChainStatus.Completed) {
    for (const s of run.state.steps) if (s.status === 'pending') s.status = 'skipped';
    // Compensate completed steps newest first, each governed like any step (also after a revoke:
    // compensations undo effects; they are authorized with the chain's credential like any step).
    for (const id of [...run.completed].reverse()) {
      const step = input.chain.steps.find((x) => x.id === id)!;
      if (step.compensation) await compensate(run, step, step.compensation);
    }
  }

  // The final signed checkpoint over the receipt chain; a chain that cannot be checkpointed is not
  // provably complete, so it ends Failed (fail closed).
  const { state } = run;
  let checkpoint: string | undefined;
  const summary = { status: outcome, reason: state.reason ?? null, steps: state.steps.length };
  const folded = run.foldedCheckpoint;
  if (folded && outcome === ChainStatus.Completed && !run.receiptFailure && folded.prevHash === run.head.hash) {
    // Signed by the last step's governStep with exactly this summary (LEAN_CHAIN_PATCH).
    run.advance(folded);
    checkpoint = folded.signature;
  } else if (await run.record(undefined, 'checkpoint', summary)) {
    checkpoint = run.lastSignature;
  } else if (outcome === ChainStatus.Completed) {
    outcome = ChainStatus.Failed;
    state.reason = run.receiptFailure;
  }
  if (run.receiptFailure && outcome === ChainStatus.Completed) {
    outcome = ChainStatus.Failed;
    state.reason = run.receiptFailure;
  }
  run.setRolesAndStatus(undefined, outcome);
  // The proof archive (ARCHIVE_PROOF_PATCH) and webhooks (runs that escalated with some configured): only
  // the starts of their detached workflows are awaited, together.
  const archived = startArchive(run, 'chain');
  await run.notifications?.outcome(outcome, state.reason);
  await archived;
  await condition(allHandlersFinished);
  const { chainId } = run;
  log.info('chain ended', { chainId, status: outcome });
  // A long chain's step states come packed (lean runs): in full, 1,000 steps passed the 512 KB payload warning.
  const packed =
    run.lean && state.steps.length > PACK_RESULT_STEPS ? packSteps(chainId, undefined, state.steps) : undefined;
  const steps = packed ? { steps: [], packedSteps: packed } : { steps: state.steps };
  return { chainId, status: outcome, reason: state.reason, ...steps, receiptHead: run.head, checkpoint };
}

/** Results of chains with more steps than this carry the step states packed (lean runs). */
const PACK_RESULT_STEPS = 100;

/**
 * The steps in order, from where this run resumes; continues as new when Temporal suggests it (or after
 * `options.continueAsNewAfterSteps`). Returns how the chain ended: Completed, Denied, Failed or Revoked.
 */
async function runSteps(run: ChainRun): Promise<ChainStatus> {
  const { input, state, resume } = run;
  const { chain } = input;
  const stepsThisRun = input.options?.continueAsNewAfterSteps;
  let ranThisRun = 0;
  let outcome: ChainStatus = ChainStatus.Completed;
  try {
    for (let i = resume?.nextStep ?? 0; i < chain.steps.length; i++) {
      const step = chain.steps[i]!;
      run.stopIfRevoked();
      const due = workflowInfo().continueAsNewSuggested || (stepsThisRun !== undefined && ranThisRun >= stepsThisRun);
      if (ranThisRun > 0 && due) {
        // Long chains continue as new before Temporal's history limits, carrying the receipt head;
        // a signed checkpoint closes each run's part of the receipt chain.
        const runs = resume?.runs ?? 1;
        const payload = run.strict
          ? { continuedAsNew: true, nextStep: i, run: runs, firstRunId: run.firstRunId }
          : { continuedAsNew: true, nextStep: i, run: runs };
        if (!(await run.record(undefined, 'checkpoint', payload))) {
          state.reason = run.receiptFailure;
          outcome = ChainStatus.Failed;
          break;
        }
        await condition(allHandlersFinished);
        // Lean runs: the step states travel packed (the same states, a fraction of the bytes).
        const packedSteps = run.lean ? packSteps(run.chainId, chain.steps, state.steps) : undefined;
        const next: ChainResume = {
          nextStep: i,
          head: run.head,
          steps: packedSteps ? [] : state.steps,
          ...(packedSteps ? { packedSteps } : {}),
          completed: run.completed,
          policyDigest: state.policyDigest,
          breakGlass: state.breakGlass,
          runs: runs + 1,
          ...(run.strict && run.lastReceipt ? { checkpoint: run.lastReceipt } : {}),
        };
        const { credential, attestation } = run;
        return await continueAsNew<typeof governedChainWorkflow>({ ...input, credential, attestation, resume: next });
      }
      const s = run.stepState(step.id);
      state.currentStep = step.id;
      s.status = 'authorizing';
      const result = await govern(run, stepAction(step), s, (d) => (s.decision = d));
      ranThisRun++;
      if (result.kind === 'denied') {
        s.status = 'denied';
        s.error = result.reason;
        state.reason = `step ${step.id}: ${result.reason}`;
        outcome = ChainStatus.Denied;
        break;
      }
      if (result.kind === 'failed') {
        s.status = 'failed';
        s.error = result.reason;
        state.reason = `step ${step.id} failed: ${result.reason}`;
        outcome = ChainStatus.Failed;
        break;
      }
      s.outcome = result.outcome;
      s.status = 'completed';
      run.completed.push(step.id);
      run.publishDetails();
    }
  } catch (err) {
    if (!(err instanceof Revoked)) throw err;
    outcome = ChainStatus.Revoked;
    const { revoked } = run;
    const s = state.currentStep ? run.stepState(state.currentStep) : undefined;
    if (s && s.status !== 'completed') {
      s.status = 'denied';
      s.error = `revoked: ${revoked?.reason ?? ''}`;
    }
    state.reason = `revoked${revoked?.by ? ` by ${revoked.by}` : ''}: ${revoked?.reason ?? ''}`;
    await run.record(state.currentStep, 'decision', { revoked: revoked ?? null });
  }
  state.currentStep = undefined;
  return outcome;
}

/** Governs the compensation of a completed step like any step; a revocation does not stop it. */
export async function compensate(run: ChainRun, step: Step, comp: Compensation): Promise<void> {
  const s = run.stepState(step.id);
  s.status = 'compensating';
  s.compensation = {};
  run.publishDetails();
  const a = compensationAction(step, comp);
  const saved = run.revoked;
  run.revoked = undefined; // a revocation stops the chain, not the undoing of what it already did
  try {
    const result = await govern(run, a, s, (d) => (s.compensation!.decision = d));
    switch (result.kind) {
      case 'ran':
        s.compensation.outcome = result.outcome;
        s.status = 'compensated';
        break;
      case 'denied':
        s.compensation.error = result.reason;
        s.status = 'compensation-denied';
        log.warn('compensation denied', { chainId: run.chainId, stepId: a.stepId, reason: result.reason });
        break;
      case 'failed':
        s.compensation.error = result.reason;
        s.status = 'compensation-failed';
        break;
    }
  } catch (err) {
    if (!(err instanceof Revoked)) throw err;
    s.compensation.error = 'revoked during compensation';
    s.status = 'compensation-failed';
  } finally {
    run.revoked = saved ?? run.revoked;
  }
}
