import { failClosedDecision } from '../core/step';
import { refusedInputDigest } from '../core/digests';
import { asyncLocalStorage, log } from '@temporalio/activity';
import type { JsonValue, ResourceRef } from '../contracts/chain';
import type { AuthzRequest, Decision } from '../contracts/decision';
import { ErrorCode, isGovernorError } from '../contracts/errors';
import type { Receipt, ReceiptHead } from '../contracts/receipt';
import type { RevocationListRef } from '../contracts/revocation';
import { approvalsContext, requestContext, type ApprovalVote } from '../policies/context';
import { decisionsDiffer } from '../policies/decision-diff';
import type { ActiveBundle, PolicyStore } from './policy-store';
import {
  isAttestationStale,
  isTokenExpired,
  verifyAttestation,
  verifyCredential,
  type VerifiedCredential,
} from '../identity';

/** Input of the `authorize` activity: one action of a chain, with the credentials to re-check. */
export interface AuthorizeInput {
  chainId: string;
  stepId: string;
  kind: 'step' | 'compensation';
  /** The workload the chain was submitted as; the credential's `sub` must equal it. */
  workload: string;
  action: string;
  resource: ResourceRef;
  context: Record<string, JsonValue>;
  credential: string;
  attestation: string;
  /** The chain's first run id (from the workflow's own info, never from the submitter): with the chain id, what a credential is bound to. */
  firstRunId?: string;
  prev: ReceiptHead;
  /** Counted approve votes for this step (re-authorization after quorum): policy has the last word. */
  approvals?: ApprovalVote[];
  /** Agent sessions only: what the session executed so far, as `context.session` (the step's own key is dropped). */
  session?: { steps: number; actions: Record<string, number> };
}

/** What `authorize` returns (recorded in history). */
export interface AuthorizeResult {
  decision: Decision;
  /** The exact request evaluated, so the decision can be re-evaluated later (absent if verification failed first). */
  request?: AuthzRequest;
  receipt: Receipt;
  /** True when the only problem was an expired credential: the workflow may wait for a refresh. */
  credentialExpired: boolean;
  /** The manifest's credential grace period, in ms. */
  gracePeriod: number;
  /**
   * True when the only problem was an attestation that went stale or expired (e.g. while people decided):
   * after an approval the workflow waits up to the grace period for a fresh one. Absent: false.
   */
  attestationOutdated?: boolean;
  /** Shadow mode: the candidate bundle's verdict on the same request (never enforced). Absent without a candidate or a request. */
  shadow?: ShadowDecision;
  /** The verified revocation list the decision saw (absent when it was not known: then the decision is a deny saying so). */
  revocations?: RevocationListRef;
}

/**
 * What a shadow (candidate) bundle decided for the request the active bundle enforced. Recorded in the
 * decision receipt and logged when `differs`; never enforced.
 */
export interface ShadowDecision {
  /** Digest of the candidate bundle. */
  bundleDigest: string;
  effect: Decision['effect'];
  /** True when enforcing the candidate would change the outcome: another effect, or other escalation requirements. */
  differs: boolean;
  determiningPolicies: string[];
  annotations: Decision['annotations'];
  errors: string[];
  reason?: string;
  escalation?: Decision['escalation'];
}

/**
 * Verifies the credential and attestation, then evaluates policy. Never throws for a bad token or a
 * policy error: those are recorded denies. Throws only when the decision cannot be recorded.
 */
export async function authorizeAction(
  store: PolicyStore,
  home: string,
  input: AuthorizeInput,
  now: Date,
  hooks: {
    /**
     * Replay check of a verified credential (manifest `credential.jtiReplay: bind-to-chain`): a reason
     * to deny, or undefined. Throws when it cannot decide (retried, then denied: fail closed).
     */
    bindCredential?: (
      credential: VerifiedCredential & { jti: string },
      chain: { chainId: string; firstRunId?: string },
    ) => Promise<string | undefined>;
    /** The bundle to decide with (default: the store's current one), so a caller uses one snapshot for everything it derives. */
    active?: ActiveBundle | undefined;
  } = {},
): Promise<Omit<AuthorizeResult, 'receipt'>> {
  const evaluatedAt = now.toISOString();
  const active = 'active' in hooks ? hooks.active : store.current();
  if (!active) {
    return {
      decision: failClosedDecision('no valid policy bundle is loaded', { evaluatedAt }),
      credentialExpired: false,
      gracePeriod: 0,
    };
  }
  const { manifest } = active.bundle;
  const gracePeriod = active.gracePeriodMs;
  const deny = (reason: string, credentialExpired = false): Omit<AuthorizeResult, 'receipt'> => ({
    decision: failClosedDecision(reason, {
      bundleDigest: active.bundle.digest,
      evaluatedAt,
      inputDigest: refusedInputDigest(input.chainId, input),
    }),
    credentialExpired,
    gracePeriod,
  });

  let subject: string;
  let credential: VerifiedCredential;
  try {
    credential = await verifyCredential(input.credential, manifest, { now, home });
    subject = credential.sub;
  } catch (err) {
    if (isGovernorError(err) && err.code === ErrorCode.CredentialInvalid) {
      return deny(err.message, isTokenExpired(err));
    }
    // Keys or JWKS unavailable: not a verdict on the token. Throw so Temporal retries (bounded);
    // the workflow denies when the retries are exhausted.
    throw err;
  }
  if (subject !== input.workload) return deny('credential subject does not match the chain workload');
  // The replay check of the verified credential (a server round trip the first time a chain presents
  // it) runs while the attestation is verified and policy evaluated; its verdict is awaited before
  // anything is returned and comes first, exactly as when it ran before them (a replay is a deny whatever
  // the attestation or policy say; a check that cannot decide throws).
  let replayCheck: Promise<{ replayed: string | undefined } | { failed: unknown }> | undefined;
  if (manifest.credential.jtiReplay === 'bind-to-chain' && hooks.bindCredential) {
    if (credential.jti === undefined)
      return deny('credential has no jti: replay protection (credential.jtiReplay: bind-to-chain) needs one');
    replayCheck = hooks
      .bindCredential(
        { ...credential, jti: credential.jti },
        { chainId: input.chainId, ...(input.firstRunId !== undefined ? { firstRunId: input.firstRunId } : {}) },
      )
      .then(
        (replayed) => ({ replayed }),
        (err: unknown) => ({ failed: err }),
      );
  }
  const notReplayed = async (): Promise<Omit<AuthorizeResult, 'receipt'> | undefined> => {
    const checked = await replayCheck;
    if (checked && 'failed' in checked) throw checked.failed;
    return checked?.replayed ? deny(checked.replayed) : undefined;
  };

  let attestation: Awaited<ReturnType<typeof verifyAttestation>>;
  try {
    attestation = await verifyAttestation(input.attestation, manifest, { now, home, expectedSubject: subject });
  } catch (err) {
    const replayed = await notReplayed();
    if (replayed) return replayed;
    if (isGovernorError(err) && err.code === ErrorCode.AttestationInvalid) {
      const outdated = isTokenExpired(err) || isAttestationStale(err);
      return outdated ? { ...deny(err.message), attestationOutdated: true } : deny(err.message);
    }
    throw err;
  }

  const request: AuthzRequest = {
    principal: { type: 'Workload', id: subject },
    action: input.action,
    resource: { type: input.resource.type, id: input.resource.id },
    // Reserved keys (attestation, approvals, now) come only from verified sources, never from the step.
    context: requestContext(
      input.context,
      attestation,
      input.approvals ? approvalsContext(input.approvals, Object.keys(manifest.approverRoles)) : undefined,
      input.session,
    ),
    now: evaluatedAt,
  };
  const decision = active.engine.decide(request);
  const shadow = shadowDecision(store, request, decision);
  const replayed = await notReplayed();
  if (replayed) return replayed;
  return { decision, request, credentialExpired: false, gracePeriod, ...(shadow ? { shadow } : {}) };
}

/**
 * Evaluates the store's shadow candidate (if any) on the request the active bundle just decided, and
 * compares. Never enforced; never throws (the engine fails closed into a deny on its own).
 */
export function shadowDecision(
  store: PolicyStore,
  request: AuthzRequest,
  enforced: Decision,
): ShadowDecision | undefined {
  const candidate = store.shadow();
  if (!candidate || candidate.bundle.digest === enforced.bundleDigest) return undefined;
  const d = candidate.engine.decide(request);
  return {
    bundleDigest: d.bundleDigest,
    effect: d.effect,
    differs: decisionsDiffer(enforced, d),
    determiningPolicies: d.determiningPolicies,
    annotations: d.annotations,
    errors: d.errors,
    ...(d.reason !== undefined ? { reason: d.reason } : {}),
    ...(d.escalation !== undefined ? { escalation: d.escalation } : {}),
  };
}

/** Logs a shadow difference through the activity logger (no-op outside an activity or without a difference). */
export function logShadowDifference(
  input: Pick<AuthorizeInput, 'chainId' | 'stepId' | 'action'>,
  result: Pick<AuthorizeResult, 'decision' | 'shadow'>,
): void {
  if (!result.shadow?.differs || asyncLocalStorage.getStore() === undefined) return;
  log.warn('shadow policy bundle decides differently', {
    chainId: input.chainId,
    stepId: input.stepId,
    action: input.action,
    enforced: {
      bundleDigest: result.decision.bundleDigest,
      effect: result.decision.effect,
      determiningPolicies: result.decision.determiningPolicies,
    },
    shadow: {
      bundleDigest: result.shadow.bundleDigest,
      effect: result.shadow.effect,
      determiningPolicies: result.shadow.determiningPolicies,
    },
  });
}
