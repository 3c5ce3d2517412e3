import { condition, getExternalWorkflowHandle, log, workflowInfo } from '@temporalio/workflow';
import { SlotVerdict, releaseSlotSignal, withdrawSlotSignal } from '../../contracts/slot-verdict';
import { invalidInputMessage } from '../../contracts/issues';
import type { StepState } from '../../contracts/state';
import { ChainStatus } from '../../contracts/status';
import { chainStepIdOf, resourceLabel, type GovernedAction } from '../../core/step';
import { failureMessage } from '../failure';
import { LOCAL_ACTIVITY } from '../retry';
import { governor } from './proxies';
import { Revoked, type ChainRun } from './run';

/** A step's place on a coordinated resource: granted (with the release to send when it is done), or not. */
export type Slot =
  { granted: true; release?: (completed: boolean) => Promise<void> } | { granted: false; reason: string };

/** `slotVerdict`: a coordinator's verdict on one of this chain's slot requests (verified before use). */
export function onSlotVerdict(run: ChainRun, raw: SlotVerdict): void {
  if (typeof raw?.requestId !== 'string') return;
  let verdict = raw;
  if (run.strict) {
    const parsed = SlotVerdict.safeParse(raw);
    if (!parsed.success || parsed.data.chainId !== run.chainId) {
      const reason = parsed.success ? 'another chain' : invalidInputMessage(parsed.error);
      log.warn('slotVerdict signal ignored', { chainId: run.chainId, reason });
      return;
    }
    verdict = parsed.data;
  }
  // A compensation's request is shown on its step.
  const s = run.state.steps.find((x) => x.id === (run.strict ? chainStepIdOf(verdict.stepId) : verdict.stepId));
  if (s?.coordination && s.coordination.requestId === verdict.requestId && s.coordination.status === 'queued') {
    const { status, reason, position, order, conflictWith, version } = verdict;
    s.coordination = { ...s.coordination, status, reason, position, order, conflictWith, version };
  }
  if (verdict.status !== 'queued') {
    run.slotVerdicts.set(verdict.requestId, verdict);
    if (run.strict) {
      run.receivedVerdicts.set(verdict.requestId, [...(run.receivedVerdicts.get(verdict.requestId) ?? []), verdict]);
    }
  }
  run.publishDetails();
}

/**
 * Asks the domain's coordinator for a slot when the step's resource is coordinated, and waits for
 * the grant or the rejection (recorded as a receipt linked to the coordinator's own receipt).
 */
export async function coordinate(run: ChainRun, a: GovernedAction, s: StepState): Promise<Slot> {
  const { chainId, chain, strict } = run;
  // Approvers' roles can raise the step's authority in a conflict (manifest coordination.authority.roles).
  const counted = s.approval?.verdicts.filter((v) => v.counted && v.decision === 'approve') ?? [];
  const approverRoles = [...new Set(counted.flatMap((v) => v.roles ?? []))].sort();
  const ask = () =>
    governor.requestSlot.executeWithOptions(
      { ...LOCAL_ACTIVITY, summary: `request a slot for ${a.action} on ${resourceLabel(a.resource)}` },
      [
        {
          chainId,
          stepId: a.stepId,
          workload: chain.workload,
          action: a.action,
          resource: a.resource,
          ...(a.coordination?.priority !== undefined ? { priority: a.coordination.priority } : {}),
          ...(a.coordination?.plannedVersion !== undefined ? { plannedVersion: a.coordination.plannedVersion } : {}),
          ...(approverRoles.length ? { approverRoles } : {}),
          taskQueue: workflowInfo().taskQueue,
        },
      ],
    );
  let asked: Awaited<ReturnType<typeof ask>>;
  if (!strict) asked = await ask();
  else {
    try {
      asked = await ask();
    } catch (err) {
      // Fail closed: a step whose coordination cannot be asked for does not run.
      return { granted: false, reason: `coordination could not be requested: ${failureMessage(err)}` };
    }
  }
  if (!asked.coordinated) return { granted: true };
  const coordinator = getExternalWorkflowHandle(asked.coordinatorId);
  s.coordination = { domain: asked.domain, requestId: asked.requestId, status: 'queued' };
  run.setStatus(ChainStatus.Running, `queued in coordination domain ${asked.domain}`);
  let verdict: SlotVerdict;
  for (;;) {
    const next = (): SlotVerdict | undefined =>
      strict ? run.receivedVerdicts.get(asked.requestId)?.[0] : run.slotVerdicts.get(asked.requestId);
    await condition(() => next() !== undefined || run.revoked !== undefined);
    if (run.revoked && !next()?.granted) {
      await coordinator.signal(withdrawSlotSignal, { chainId, stepId: a.stepId, reason: 'chain revoked' });
      throw new Revoked();
    }
    verdict = next()!;
    if (!strict) break;
    run.receivedVerdicts.get(asked.requestId)!.shift();
    // Anyone who may signal this workflow can send a verdict: act only on one the coordinator signed.
    let unverified: string | undefined;
    let judged = true;
    try {
      const checked = await governor.verifySlotVerdict.executeWithOptions(
        { ...LOCAL_ACTIVITY, summary: `verify the ${verdict.status} verdict of ${asked.domain}` },
        [{ verdict, coordinatorId: asked.coordinatorId, requestDigest: asked.request.requestDigest }],
      );
      if (!checked.ok) unverified = checked.reason;
    } catch (err) {
      // The check itself failed (keys unreadable…): the verdict may be genuine, so it is not skipped
      // and waited past (the coordinator sends it once); the step is denied instead.
      judged = false;
      unverified = `it could not be verified: ${failureMessage(err)}`;
    }
    if (unverified === undefined) break;
    if (judged && verdict.receipt?.signature !== undefined) {
      // A signature that does not verify is not the coordinator's: ignored, the chain keeps waiting.
      log.warn('slot verdict ignored', { chainId, stepId: a.stepId, reason: unverified });
      s.coordination = { ...s.coordination, status: 'queued' };
      continue;
    }
    // No signed receipt (the coordinator could not sign, or a sender without one), or no way to check
    // it: fail closed.
    await coordinator.signal(withdrawSlotSignal, { chainId, stepId: a.stepId, reason: 'unverifiable slot verdict' });
    s.coordination = { ...s.coordination, status: 'rejected', reason: unverified };
    run.setStatus(ChainStatus.Running);
    const why = `the slot verdict is not verified as the coordinator's (${unverified})`;
    return { granted: false, reason: `coordination (${asked.domain}): ${why}` };
  }
  const { reason, order, conflictWith, version } = verdict;
  const status = verdict.granted ? 'granted' : 'rejected';
  s.coordination = { ...s.coordination, status, reason, order, conflictWith, version };
  const recorded = await run.record(a.stepId, 'decision', { coordination: verdict });
  run.setStatus(ChainStatus.Running);
  if (!verdict.granted) return { granted: false, reason: `coordination (${asked.domain}): ${verdict.reason}` };
  if (strict && !recorded) {
    // A grant that cannot be recorded is not used: the slot goes back, the step does not run.
    await coordinator.signal(releaseSlotSignal, { chainId, stepId: a.stepId, completed: false });
    s.coordination = { ...s.coordination, status: 'released' };
    return { granted: false, reason: run.receiptFailure ?? 'the coordination grant could not be recorded' };
  }
  return {
    granted: true,
    release: async (completed) => {
      await coordinator.signal(releaseSlotSignal, { chainId, stepId: a.stepId, completed });
      s.coordination = { ...s.coordination!, status: 'released' };
    },
  };
}
