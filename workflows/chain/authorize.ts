import { condition, upsertSearchAttributes } from '@temporalio/workflow';
import type { GovernorAuthorizeInput, GovernorAuthorizeResult, GovernStepInput } from '../../activities';
import type { Decision } from '../../contracts/decision';
import { GovernorPolicyDigestKey, GovernorShadowDiffersKey } from '../../contracts/search-attributes';
import type { StepState } from '../../contracts/state';
import { AWAIT_FRESH_ATTESTATION_PATCH } from '../../contracts/patches';
import { ChainStatus } from '../../contracts/status';
import { failClosedDecision, outdatedAttestationReason, resourceLabel, type GovernedAction } from '../../core/step';
import { failureMessage } from '../failure';
import { LOCAL_ACTIVITY } from '../retry';
import { governor } from './proxies';
import { Revoked, type ChainRun } from './run';

/**
 * What authorizing an action concluded: policy decided (allow, deny or escalate, with the step digest
 * and approval rules), or no decision could be used and the action is denied (fail closed).
 */
export type Authorization =
  { kind: 'decided'; result: GovernorAuthorizeResult } | { kind: 'failed-closed'; decision: Decision };

/** An approver's vote as re-authorization puts it in the context. */
export interface Vote {
  approver: string;
  roles: string[];
}

/**
 * What `authorize` (and `governStep`) evaluate for an action: the current credentials, the receipt head,
 * the step binding.
 */
export function authorizeInput(run: ChainRun, a: GovernedAction): Omit<GovernStepInput, 'idempotencyKey'> {
  return {
    chainId: run.chainId,
    stepId: a.stepId,
    kind: a.kind,
    workload: run.chain.workload,
    action: a.action,
    resource: a.resource,
    context: a.context,
    credential: run.credential,
    attestation: run.attestation,
    firstRunId: run.firstRunId,
    prev: run.head,
    binding: { input: a.input, executor: a.executor },
    ...(run.strict ? { coordinateCompensations: true } : {}),
    // Agent sessions only (`governedSessionWorkflow`): declared chains send exactly what they always sent.
    ...(run.session ? { session: { steps: run.session.steps, actions: { ...run.session.actions } } } : {}),
  };
}

/**
 * Authorizes one action; waits for a refreshed credential when only the credential's expiry failed.
 * `recorded`: already decided by `governStep`, absorbed like an `authorize` result.
 */
export async function authorize(
  run: ChainRun,
  a: GovernedAction,
  s: StepState,
  votes?: Vote[],
  recorded?: GovernorAuthorizeResult,
  /** FOLDED_REMOTE_STEP_PATCH: ask the first `authorize` call for the execution grant too. */
  grant?: GovernorAuthorizeInput['grant'],
): Promise<Authorization> {
  for (;;) {
    let result: GovernorAuthorizeResult;
    if (recorded) {
      result = recorded;
      recorded = undefined;
    } else
      try {
        run.stopIfRevoked();
        result = await governor.authorize.executeWithOptions(
          { ...LOCAL_ACTIVITY, summary: `authorize ${a.action} on ${resourceLabel(a.resource)}` },
          [{ ...authorizeInput(run, a), ...(votes ? { approvals: votes } : {}), ...(grant ? { grant } : {}) }],
        );
        grant = undefined; // a re-authorization (fresh credential or attestation) asks for no grant
      } catch (err) {
        if (err instanceof Revoked) throw err;
        // Fail closed: authorization that cannot complete is a deny, never an allow.
        const reason = `authorization could not complete: ${failureMessage(err)}`;
        return { kind: 'failed-closed', decision: failClosedDecision(reason) };
      }
    run.advance(result.receipt);
    run.coordinatedHint.set(a.stepId, result.coordinated);
    const { state } = run;
    if (result.decision.bundleDigest && result.decision.bundleDigest !== state.policyDigest) {
      state.policyDigest = result.decision.bundleDigest;
      upsertSearchAttributes([{ key: GovernorPolicyDigestKey, value: result.decision.bundleDigest }]);
    }
    if (result.shadow?.differs && !state.shadowDiffers) {
      // Shadow mode: recorded (receipt, log, search attribute), never enforced.
      state.shadowDiffers = true;
      upsertSearchAttributes([{ key: GovernorShadowDiffersKey, value: true }]);
    }
    if (result.attestationOutdated && votes && run.takes(AWAIT_FRESH_ATTESTATION_PATCH)) {
      // People took longer to decide than the attestation lives: wait for a fresh one, then decide again.
      run.attestationRefreshed = false;
      const previous = s.status;
      const { status: shown, pending } = run.state;
      s.status = 'awaiting-attestation';
      const awaited = `a fresh attestation (refreshCredential with attestation) within ${result.gracePeriod} ms`;
      run.setStatus(ChainStatus.AwaitingAttestation, awaited);
      const fresh = await condition(() => run.attestationRefreshed || run.revoked !== undefined, result.gracePeriod);
      run.stopIfRevoked();
      if (!fresh) {
        const reason = outdatedAttestationReason(result.decision.reason, result.gracePeriod);
        return { kind: 'failed-closed', decision: { ...result.decision, reason } };
      }
      s.status = previous;
      run.setStatus(shown, pending);
      continue;
    }
    if (!result.credentialExpired) return { kind: 'decided', result };

    // The credential is (only) expired: wait for a refresh up to the manifest's grace period.
    run.credentialRefreshed = false;
    const previous = s.status;
    s.status = 'awaiting-credential';
    const awaited = `a refreshed credential (refreshCredential) within ${result.gracePeriod} ms`;
    run.setStatus(ChainStatus.AwaitingCredential, awaited);
    const refreshed = await condition(() => run.credentialRefreshed || run.revoked !== undefined, result.gracePeriod);
    run.stopIfRevoked();
    if (!refreshed) {
      const reason = `credential expired and no refresh arrived within ${result.gracePeriod} ms`;
      return { kind: 'failed-closed', decision: { ...result.decision, reason } };
    }
    s.status = previous;
    run.setStatus(ChainStatus.Running);
  }
}
