import { failClosedDecision } from '../core/step';
import { refusedInputDigest, stepDigest } from '../core/digests';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { VoteVerdict } from '../contracts/approval';
import type { Executor, JsonValue } from '../contracts/chain';
import { durationMs } from '../contracts/duration';
import { ErrorCode } from '../contracts/errors';
import { judgeVote, type VoteContext } from './approvals';
import type { Receipt, ReceiptHead, ReceiptKind } from '../contracts/receipt';
import type { ExecutionOutcome } from '../contracts/state';
import { ChainStatus } from '../contracts/status';
import { authorizeAction, logShadowDifference, type AuthorizeInput, type AuthorizeResult } from './authorize';
import { HTTP_REFUSED, runBuiltInExecutor, type ExecuteInput } from './executors';
import { HttpGuard, type HttpExecutorOptions } from './http-guard';
import { keyPaths, loadPrivateKeyObject, loadPublicJwks } from '../identity';
import { statSync } from 'node:fs';
import {
  admitRequests,
  checkSlotVerdict,
  judgeTieBreak,
  sealSlotRequest,
  signCoordination,
  submitSlotRequest,
  type AdmitInput,
  type AdmitResult,
  type RequestSlotResult,
  type SignCoordinationInput,
  type SignCoordinationResult,
  type VerifyTieBreakInput,
  type VerifySlotVerdictInput,
} from './coordination';
import { resourceLabel } from '../core/step';
import {
  coordinatorId,
  findDomain,
  slotRequestId,
  type SlotAsk,
  type TieBreakVerdict,
} from '../contracts/coordination';
import type { ActiveBundle, PolicyStore } from './policy-store';
import type { RevocationCache } from './revocations';
import { createFleetActivities, type FleetMember } from './fleet';
import { signRevocationEntry } from './revocation-log';
import { formatIssues } from '../contracts/chain';
import {
  SignRevocationInput,
  type RecoverRevocationsInput,
  type RecoverRevocationsResult,
  type SignedRevocation,
} from '../contracts/revocation';
import type { CredentialClaims } from './credential-claims';
import { decisionReceiptPayload, makeReceipt as signReceipt, type ReceiptSigning } from '../core/receipts';
import { referencedReceiptSigner, type KeyRef } from '../identity/key-ref';
import type { ActivityObserver } from '../runtime/observer';
import { actionAttributes, decisionAttributes, inSpan } from '../runtime/spans';
import { classifyVoteRejection } from '../runtime/metrics';
import { checkResume, type VerifyResumeInput } from './resume';
import { createSessionActivities, sessionOutputOf, type SessionOutputResult } from './sessions';
import { subscribedEvents, type NotifyEvent } from '../contracts/notification';
import { GrantSigner } from './grants';
import type { MintGrantInput } from '../contracts/grant';

export type { AuthorizeInput, AuthorizeResult } from './authorize';
export type {
  AdmitInput,
  AdmitResult,
  DomainRules,
  RequestSlotResult,
  SignCoordinationInput,
  VerifyTieBreakInput,
} from './coordination';

/** `authorize` input: the action, plus the parts of the step an approval must be bound to. */
export interface GovernorAuthorizeInput extends AuthorizeInput {
  binding?: { input: Record<string, JsonValue>; executor: Executor };
  /**
   * Set by chains that order compensations through the coordinator like steps: `coordinated` is then
   * reported for compensations too, and `governStep` never runs a coordinated compensation outright.
   */
  coordinateCompensations?: boolean;
  /**
   * FOLDED_REMOTE_STEP_PATCH: the execution grant of a service activity or MCP tool call, asked with the
   * decision. Minted only when the decision allows the action outright (no escalation, no coordination,
   * credential valid), bound to this decision's receipt; the workflow uses it only if that receipt is still
   * the head when the step runs (otherwise it mints one with `mintGrant`, as before).
   */
  grant?: { audience: string; idempotencyKey: string; ttlMs: number };
}

/** `authorize` result: the decision, the step digest approvals bind to, and the approval rules that apply. */
export interface GovernorAuthorizeResult extends AuthorizeResult {
  stepDigest: string;
  /** Present when the decision escalates: the manifest's escalation ladder and break-glass role. */
  approvalRules?: {
    ladder: { afterMs: number; roles: string[] }[];
    /** The events the manifest's webhooks asked for; absent when it has none (nothing is sent). */
    notify?: NotifyEvent[];
  };
  /**
   * Whether the active manifest puts the step's resource in a coordination domain (steps only). `false`
   * lets the workflow skip `requestSlot` (one local activity fewer per step); `governor verify` checks it
   * against the recorded bundle. Absent in histories written before it existed: the workflow asks anyway.
   */
  coordinated?: boolean;
  /** The execution grant the input asked for (`grant`), when the decision allows the action outright. */
  grant?: string;
}

/** Input of `governStep`: one action to authorize and, when allowed outright, run with its built-in executor. */
export interface GovernStepInput extends GovernorAuthorizeInput {
  binding: { input: Record<string, JsonValue>; executor: Executor };
  idempotencyKey: string;
  /**
   * Set for the chain's last step (LEAN_CHAIN_PATCH): when the step runs here the chain is complete, so
   * this activity also signs its final checkpoint (`{ status: 'Completed', reason: null, steps }`), after
   * the execution receipt.
   */
  checkpoint?: { steps: number };
}

/**
 * Result of `governStep`: always the decision (exactly what `authorize` returns); the execution only
 * when the decision allowed the action outright (no escalation, no coordination, credential valid)
 * and the built-in executor succeeded. `executionError` says why an allowed action did not run here;
 * the workflow then runs it through `execute` with its own retries (same idempotency key).
 */
export interface GovernStepResult {
  authorized: GovernorAuthorizeResult;
  executed?: { outcome: ExecutionOutcome } & RecordedReceipt;
  /** A transient executor error: the workflow runs the step through `execute` (its retries, same key). */
  executionError?: string;
  /** A final executor error (non-retryable, e.g. a 4xx answer or a redirect): the step failed, nothing is retried. A refused http target is a deny instead (`authorized`). */
  executionFailed?: string;
  /** The chain's final checkpoint, after `executed`, when the input asked for it (`checkpoint`) and the step ran here. */
  checkpoint?: RecordedReceipt;
}

/** Input of `verifyApproval`. */
export interface VerifyApprovalInput extends VoteContext {
  token: string;
  prev: ReceiptHead;
}
export type { ExecuteInput } from './executors';
export type { VerifyResumeInput } from './resume';
export type { SessionOutputResult, VerifyProposalInput, VerifyProposalResult } from './sessions';
export type { HttpExecutorOptions, HttpResolver } from './http-guard';

/** Result of `recordReceipt`: the receipt and the exact payload it commits to. */
export interface RecordedReceipt {
  receipt: Receipt;
  payload: unknown;
  /**
   * FOLDED_REMOTE_STEP_PATCH (agent sessions): digest and size of the executor's output (`payload.outcome.result`,
   * canonical JSON), what `sessionOutput` computes, when the input asked for it and the output is not null.
   */
  output?: SessionOutputResult;
}

/** Input of `recordReceipt`. */
export interface RecordReceiptInput {
  chainId: string;
  stepId?: string;
  kind: ReceiptKind;
  payload: unknown;
  prev: ReceiptHead;
  /** Also digest the recorded outcome's output (`output` in the result): a session step's execution receipt. */
  digestOutput?: boolean;
}

/** What the governor worker needs to run its activities. */
export interface ActivityDeps {
  policies: PolicyStore;
  /** GOVERNOR_HOME: keys and JWKS files. */
  home: string;
  /** The receipt key given by reference (a key file or a signer socket; identity/key-ref.ts); absent: `<home>/keys`. */
  receiptKey?: KeyRef;
  /** The deployment's revocation list and log store (absent: nothing is ever treated as revoked, e.g. in-process benchmarks). */
  revocations?: RevocationCache;
  /**
   * The worker's fleet membership (absent: no fleet check, e.g. in-process benchmarks): a decision made
   * with a bundle other than the fleet's declared active one is a deny naming both digests.
   */
  fleet?: FleetMember;
  /** Binds credentials to the chain that first presents them (absent: no replay check, e.g. in-process benchmarks). */
  credentialClaims?: CredentialClaims;
  /** Injectable clock for tests; defaults to the system clock. */
  clock?: () => Date;
  /** The http executor's Temporal endpoints (never callable) and, for tests, its resolver. */
  http?: HttpExecutorOptions;
  /** Metrics and decision log (runtime/observer.ts); never changes what an activity returns. */
  observer?: ActivityObserver;
}

/** The attempt of the running activity (1 outside an activity context). */
function currentAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}

/**
 * The deny of an action whose http target the manifest does not allow: made without a Cedar request
 * (like a verification failure), so `governor verify` counts it among the denies made before policy.
 */
function targetDenied(
  input: Pick<AuthorizeInput, 'chainId' | 'stepId' | 'action' | 'resource'>,
  reason: string,
  bundleDigest: string,
  gracePeriod: number,
  now: Date,
): Omit<AuthorizeResult, 'receipt'> {
  return {
    decision: failClosedDecision(reason, {
      bundleDigest,
      evaluatedAt: now.toISOString(),
      inputDigest: refusedInputDigest(input.chainId, input),
    }),
    credentialExpired: false,
    gracePeriod,
  };
}

/** Builds the governor's activities. Names are recorded in history: never rename them. */
export function createActivities(deps: ActivityDeps) {
  const clock = deps.clock ?? (() => new Date());
  const httpGuard = new HttpGuard(deps.home, deps.http);
  const grants = new GrantSigner(deps.home, clock);
  let signer: Promise<ReceiptSigning> | undefined;
  // A rotation (`governor keys rotate receipt`) replaces the key file: checked at most once a second, so
  // receipts are signed by the retired key at most that long after its retirement (verify's grace covers it).
  const receiptKeyFile = keyPaths(deps.home, 'receipt').privateKeyPath;
  let receiptKeyStamp = '';
  let receiptKeyCheckedAt = 0;
  // A key given by reference is used as given, or not at all (never a fall back to the home's key).
  const referenced = deps.receiptKey ? referencedReceiptSigner(deps.home, deps.receiptKey) : undefined;
  const receiptSigner = (): Promise<ReceiptSigning> => {
    if (referenced)
      return referenced().catch((err: unknown) => {
        deps.observer?.receiptFailed('key-unavailable');
        throw err;
      });
    const now = Date.now();
    if (signer && now - receiptKeyCheckedAt >= 1000) {
      receiptKeyCheckedAt = now;
      const stamp = fileStampOf(receiptKeyFile);
      if (stamp !== receiptKeyStamp) signer = undefined;
    }
    if (!signer) {
      receiptKeyStamp = fileStampOf(receiptKeyFile);
      receiptKeyCheckedAt = now;
    }
    const pending =
      signer ??
      loadPrivateKeyObject(deps.home, 'receipt').catch((err: unknown) => {
        signer = undefined; // try again next time (keys may be created meanwhile)
        deps.observer?.receiptFailed('key-unavailable');
        throw err;
      });
    signer = pending;
    return pending;
  };
  /** Signs a receipt, reporting it (or its failure) to the observer. */
  const makeReceipt: typeof signReceipt = async (key, input) => {
    try {
      const receipt = await signReceipt(key, input);
      deps.observer?.receiptSigned(input.kind, input.payload);
      return receipt;
    } catch (err) {
      deps.observer?.receiptFailed(input.kind);
      throw err;
    }
  };
  /** `authorize` in a `governor.decision` span (identifiers and outcome as attributes). */
  const decide = (input: GovernorAuthorizeInput): Promise<GovernorAuthorizeResult> =>
    inSpan('governor.decision', actionAttributes(input), async (annotate) => {
      const result = await authorize(input);
      annotate(decisionAttributes(result.decision));
      return result;
    });
  /** Reports a decision `authorize` or `governStep` returns (metrics, decision log). */
  const observeDecision = (
    input: GovernorAuthorizeInput,
    result: GovernorAuthorizeResult,
    durationMs: number,
  ): void => {
    deps.observer?.decided({
      chainId: input.chainId,
      stepId: input.stepId,
      kind: input.kind === 'compensation' ? 'compensation' : 'step',
      workload: input.workload,
      action: input.action,
      resource: input.resource,
      decision: result.decision,
      receipt: result.receipt,
      durationMs,
      attempt: currentAttempt(),
    });
  };

  const bindCredential = (active: ActiveBundle | undefined) => {
    const claims = deps.credentialClaims;
    if (!claims) return undefined;
    // The claim is never scheduled past the longest a credential may live under this manifest.
    const limits = active?.bundle.manifest.credential;
    const bound = {
      maxLifetimeMs: durationMs(limits?.maxLifetime ?? '24h'),
      clockToleranceMs: (limits?.clockToleranceSeconds ?? 5) * 1000,
    };
    return async (
      credential: { iss: string; jti: string; exp: number },
      chain: { chainId: string; firstRunId?: string },
    ): Promise<string | undefined> => {
      // Bound to the chain's workflow (id from the server, never the submitter's input) and its first run.
      let workflowId: string | undefined;
      try {
        workflowId = Context.current().info.workflowExecution?.workflowId;
      } catch {
        workflowId = undefined;
      }
      if (workflowId !== chain.chainId || !chain.firstRunId)
        return 'credential cannot be bound: the chain is not the workflow presenting it';
      const outcome = await claims.claim(credential, { chainId: chain.chainId, firstRunId: chain.firstRunId }, bound);
      return outcome.bound ? undefined : outcome.reason;
    };
  };

  /** Re-verifies credential + attestation and evaluates policy; returns the decision and its receipt. */
  async function authorize(input: GovernorAuthorizeInput): Promise<GovernorAuthorizeResult> {
    const { binding, coordinateCompensations, grant: grantAsk, ...action } = input;
    const now = clock();
    // One bundle snapshot for the decision and everything derived from it (ladder, coordination), even
    // if a rollout activates another bundle while this call awaits the server.
    const active = deps.policies.current();
    // The revocation list is consulted first: a revoked workload is denied whatever its token says,
    // and so is every workload while the list is not known (fail closed). The decision names the list.
    // The fleet check runs beside it: a worker whose bundle is not the fleet's active one refuses to decide.
    const [seen, fleet] = await Promise.all([
      deps.revocations ? deps.revocations.snapshot() : undefined,
      deps.fleet ? deps.fleet.check(active) : undefined,
    ]);
    const revoked = seen?.ok ? seen.revoked[input.workload] : undefined;
    const refused = (reason: string): Omit<AuthorizeResult, 'receipt'> => ({
      decision: failClosedDecision(reason, {
        bundleDigest: active?.bundle.digest ?? '',
        evaluatedAt: now.toISOString(),
      }),
      credentialExpired: false,
      gracePeriod: 0,
    });
    const decided: Omit<AuthorizeResult, 'receipt'> =
      fleet && !fleet.ok
        ? refused(fleet.reason)
        : seen && !seen.ok
          ? refused(`revocation list unavailable: ${seen.reason}`)
          : revoked
            ? refused(`workload ${input.workload} is revoked: ${revoked.reason}`)
            : await authorizeAction(deps.policies, deps.home, action, now, {
                bindCredential: bindCredential(active),
                active,
              });
    let result: Omit<AuthorizeResult, 'receipt'> = seen?.ok ? { ...decided, revocations: seen.ref } : decided;
    // Pre-flight of an http step that policy would let run (now or after approval): a target the
    // manifest does not allow is a deny now, before any approval is awaited or anything is sent.
    if (active && binding?.executor.type === 'http' && !result.credentialExpired && result.decision.effect !== 'deny') {
      const checked = await httpGuard.check(active.bundle.manifest.http, binding.executor);
      if (!checked.ok)
        result = {
          ...targetDenied(input, `${HTTP_REFUSED}: ${checked.reason}`, active.bundle.digest, result.gracePeriod, now),
          ...(seen?.ok ? { revocations: seen.ref } : {}),
        };
    }
    logShadowDifference(input, result);
    const digest = stepDigest(input.chainId, input, binding ?? null);
    const ladder = active?.bundle.manifest.approvals.ladder ?? [];
    const notify = subscribedEvents(active?.bundle.manifest.notifications.webhooks ?? []);
    const approvalRules =
      result.decision.effect === 'escalate'
        ? {
            ladder: ladder.map((l) => ({ afterMs: durationMs(l.after), roles: [...l.roles] })),
            ...(notify.length > 0 ? { notify } : {}),
          }
        : undefined;
    const domains = active?.bundle.manifest.coordination.domains;
    // Unknown (no bundle) counts as coordinated: the workflow then asks requestSlot, which fails closed.
    const coordinated =
      input.kind === 'step' || coordinateCompensations
        ? !domains || findDomain(domains, resourceLabel(input.resource)) !== undefined
        : undefined;
    const signed = await signDecision(input, result, {
      stepDigest: digest,
      ...(approvalRules ? { approvalRules } : {}),
      ...(coordinated !== undefined ? { coordinated } : {}),
    });
    // The grant of a remote execution that follows this decision at once, minted here rather than by one
    // more local activity (FOLDED_REMOTE_STEP_PATCH): only for an outright allow of a step that is not coordinated.
    const outright =
      signed.decision.effect === 'allow' &&
      !signed.credentialExpired &&
      (input.kind === 'compensation' && !coordinateCompensations ? true : coordinated === false);
    const remote = binding?.executor.type === 'activity' || binding?.executor.type === 'mcp';
    if (!grantAsk || !binding || !remote || !outright) return signed;
    const grant = await grants.mint({
      chainId: input.chainId,
      stepId: input.stepId,
      idempotencyKey: grantAsk.idempotencyKey,
      stepDigest: digest,
      receipt: signed.receipt.hash,
      audience: grantAsk.audience,
      action: input.action,
      resource: input.resource,
      input: binding.input,
      ttlMs: grantAsk.ttlMs,
    });
    return { ...signed, grant };
  }

  /** Signs a decision receipt and assembles the `authorize` result. */
  async function signDecision(
    input: GovernorAuthorizeInput,
    result: Omit<AuthorizeResult, 'receipt'>,
    extras: Pick<GovernorAuthorizeResult, 'stepDigest' | 'approvalRules' | 'coordinated'>,
  ): Promise<GovernorAuthorizeResult> {
    const receipt = await makeReceipt(await receiptSigner(), {
      chainId: input.chainId,
      stepId: input.stepId,
      kind: input.kind === 'step' ? 'decision' : 'compensation-decision',
      payload: { ...decisionReceiptPayload(result), stepDigest: extras.stepDigest },
      prev: input.prev,
    });
    return { ...result, receipt, ...extras };
  }

  /**
   * Runs a built-in executor (`noop`, `http`) and, on success, signs its execution receipt in the
   * same activity (one round trip per step fewer than a separate `recordReceipt`).
   */
  async function execute(
    input: ExecuteInput & { receipt: { kind: ReceiptKind; prev: ReceiptHead } },
  ): Promise<{ outcome: ExecutionOutcome } & RecordedReceipt> {
    const active = deps.policies.current();
    if (!active) throw ApplicationFailure.nonRetryable('no valid policy bundle is loaded', ErrorCode.PolicyUnavailable);
    const { receipt: r, grant, ...executeInput } = input;
    const kind = r.kind === 'compensation-execution' ? 'compensation' : 'step';
    const where = {
      'governor.chain_id': input.chainId,
      'governor.step_id': input.stepId,
      'governor.kind': kind,
      'governor.executor': input.executor.type,
    };
    // An http request carries its execution grant, bound to the receipt its execution links to (the
    // step's allow, or the approval or slot verdict after it), for the host actually called.
    const mint = grant
      ? (audience: string) =>
          grants.mint({
            chainId: input.chainId,
            stepId: input.stepId,
            idempotencyKey: input.idempotencyKey,
            stepDigest: grant.stepDigest,
            receipt: r.prev.hash,
            audience,
            action: grant.action,
            resource: grant.resource,
            input: input.input,
            ttlMs: input.executor.type === 'http' ? input.executor.timeoutMs * 2 : 60_000,
          })
      : undefined;
    const outcome = await inSpan('governor.execution', where, () =>
      runBuiltInExecutor(executeInput, { section: active.bundle.manifest.http, guard: httpGuard }, mint),
    ).catch((err: unknown) => {
      deps.observer?.executed({ executor: input.executor.type, kind, outcome: 'error' });
      throw err;
    });
    deps.observer?.executed({ executor: input.executor.type, kind, outcome: 'ok' });
    const payload = { status: 'completed', outcome };
    const receipt = await makeReceipt(await receiptSigner(), {
      chainId: input.chainId,
      stepId: input.stepId,
      kind: r.kind,
      payload,
      prev: r.prev,
    });
    return { outcome, receipt, payload };
  }

  /**
   * `authorize` and, when the decision allows the action outright, its built-in executor, in one
   * activity: a step that needs neither approval nor coordination costs one workflow task and one
   * activity, like the same step without governance. Anything else (deny, escalate, coordinated
   * resource, expired credential, executor error) returns the decision alone and the workflow goes on
   * as after `authorize`. A retried attempt re-authorizes: a step never runs on a stale decision.
   */
  async function governStep(input: GovernStepInput, took: { ms: number }): Promise<GovernStepResult> {
    const { idempotencyKey, checkpoint, ...authorizeInput } = input;
    const t0 = performance.now();
    const authorized = await decide(authorizeInput);
    took.ms = performance.now() - t0;
    const outright =
      authorized.decision.effect === 'allow' &&
      !authorized.credentialExpired &&
      ((input.kind === 'compensation' && !input.coordinateCompensations) || authorized.coordinated === false);
    const type = input.binding.executor.type;
    if (!outright || type === 'activity' || type === 'mcp') return { authorized };
    try {
      const executed = await execute({
        chainId: input.chainId,
        stepId: input.stepId,
        idempotencyKey,
        executor: input.binding.executor,
        input: input.binding.input,
        grant: { stepDigest: authorized.stepDigest, action: input.action, resource: input.resource },
        receipt: {
          kind: input.kind === 'step' ? 'execution' : 'compensation-execution',
          prev: { seq: authorized.receipt.seq, hash: authorized.receipt.hash },
        },
      });
      if (!checkpoint || input.kind !== 'step') return { authorized, executed };
      // The last step ran: the chain is complete, and its checkpoint is signed here rather than by one
      // more local activity (exactly the payload the workflow records for a completed chain). A
      // checkpoint that cannot be signed is left to the workflow's own `recordReceipt`, as before.
      const payload = { status: ChainStatus.Completed, reason: null, steps: checkpoint.steps };
      const prev = { seq: executed.receipt.seq, hash: executed.receipt.hash };
      const signed = await receiptSigner()
        .then((key) => makeReceipt(key, { chainId: input.chainId, kind: 'checkpoint', payload, prev }))
        .catch(() => undefined);
      return signed ? { authorized, executed, checkpoint: { receipt: signed, payload } } : { authorized, executed };
    } catch (err) {
      const message = (err as Error)?.message ?? String(err);
      if (err instanceof ApplicationFailure && err.type === ErrorCode.HostNotAllowed) {
        // Refused at connect time (the target resolved elsewhere than at the decision, or the bundle
        // changed): nothing was sent. The step is denied, with this deny as its one decision receipt
        // (the allow above is discarded unreturned, so it is in no history).
        const denied = targetDenied(
          authorizeInput,
          message,
          authorized.decision.bundleDigest,
          authorized.gracePeriod,
          clock(),
        );
        const { coordinated, stepDigest } = authorized;
        return {
          authorized: await signDecision(authorizeInput, denied, {
            stepDigest,
            ...(coordinated !== undefined ? { coordinated } : {}),
          }),
        };
      }
      return err instanceof ApplicationFailure && err.nonRetryable
        ? { authorized, executionFailed: message }
        : { authorized, executionError: message };
    }
  }

  return {
    async authorize(input: GovernorAuthorizeInput): Promise<GovernorAuthorizeResult> {
      const t0 = performance.now();
      const result = await decide(input);
      observeDecision(input, result, performance.now() - t0);
      return result;
    },
    execute,
    ...createSessionActivities({ policies: deps.policies, home: deps.home, clock }),
    ...createFleetActivities({ policies: deps.policies }),

    /**
     * `authorize` and, when the decision allows the action outright, its built-in executor, in one
     * activity: a step that needs neither approval nor coordination costs one workflow task and one
     * activity, like the same step without governance. Anything else (deny, escalate, coordinated
     * resource, expired credential, executor error) returns the decision alone and the workflow goes on
     * as after `authorize`. A retried attempt re-authorizes: a step never runs on a stale decision.
     */
    async governStep(input: GovernStepInput): Promise<GovernStepResult> {
      const took = { ms: 0 };
      const result = await inSpan('governor.step', actionAttributes(input), async (annotate) => {
        const r = await governStep(input, took);
        annotate({ ...decisionAttributes(r.authorized.decision), 'governor.executed': r.executed !== undefined });
        return r;
      });
      const { idempotencyKey: _key, checkpoint: _checkpoint, ...authorizeInput } = input;
      observeDecision(authorizeInput, result.authorized, took.ms);
      return result;
    },

    /** Verifies one approval vote and records the verdict (counted, or rejected with its reason). */
    async verifyApproval(input: VerifyApprovalInput): Promise<{ verdict: VoteVerdict; receipt: Receipt }> {
      const active = deps.policies.current();
      const { token, prev, ...ctx } = input;
      const verdict: VoteVerdict = await inSpan(
        'governor.approval_vote',
        { 'governor.chain_id': input.chainId, 'governor.step_id': input.stepId, 'governor.workload': input.workload },
        async (annotate) => {
          const v: VoteVerdict = active
            ? await judgeVote(token, active.bundle.manifest, ctx, { now: clock(), home: deps.home })
            : { seq: ctx.seq, via: ctx.via, counted: false, reason: 'no valid policy bundle is loaded' };
          annotate({
            'governor.vote_counted': v.counted,
            ...(v.counted ? {} : { 'governor.vote_rejected': classifyVoteRejection(v.reason) }),
            ...(active ? { 'governor.bundle_digest': active.bundle.digest } : {}),
          });
          return v;
        },
      );
      deps.observer?.voted({ chainId: input.chainId, stepId: input.stepId, verdict });
      const receipt = await makeReceipt(await receiptSigner(), {
        chainId: input.chainId,
        stepId: input.stepId,
        kind: 'approval',
        payload: { verdict, stepDigest: input.stepDigest },
        prev,
      });
      return { verdict, receipt };
    },

    /**
     * Coordination (DESIGN §4 step 4): resolves the step's domain and authority from the active manifest,
     * seals the request and delivers it to the domain's coordinator (signal-with-start). The verdict
     * arrives later as the chain's `slotVerdict` signal. Not coordinated: `{ coordinated: false }`.
     */
    async requestSlot(ask: SlotAsk): Promise<RequestSlotResult> {
      const active = deps.policies.current();
      if (!active)
        throw ApplicationFailure.nonRetryable('no valid policy bundle is loaded', ErrorCode.PolicyUnavailable);
      let request;
      try {
        request = await sealSlotRequest(active.bundle.manifest, ask, await receiptSigner());
      } catch (err) {
        const e = err as { code?: string; message?: string };
        if (e.code === ErrorCode.InvalidInput)
          throw ApplicationFailure.nonRetryable(e.message ?? 'invalid slot request', ErrorCode.InvalidInput);
        throw err;
      }
      if (!request) return { coordinated: false };
      const taskQueue = ask.taskQueue ?? Context.current().info.taskQueue;
      await submitSlotRequest(Context.current().client, taskQueue, request);
      return {
        coordinated: true,
        domain: request.domain,
        coordinatorId: coordinatorId(taskQueue, request.domain),
        requestId: slotRequestId(request.chainId, request.stepId),
        request,
      };
    },

    /** The coordinator's admission of a batch (seal, digest, domain, current authority) and its domain's current rules. */
    async admitSlotRequests(input: AdmitInput): Promise<AdmitResult> {
      const active = deps.policies.current();
      if (!active)
        throw ApplicationFailure.nonRetryable('no valid policy bundle is loaded', ErrorCode.PolicyUnavailable);
      return admitRequests(active.bundle.manifest, active.bundle.digest, input, {
        now: clock(),
        receiptJwks: loadPublicJwks(deps.home, 'receipt'),
      });
    },

    /** Signs the coordinator's next receipts (one call per batch of verdicts). */
    async signCoordinationReceipts(input: SignCoordinationInput): Promise<SignCoordinationResult> {
      return signCoordination(await receiptSigner(), input);
    },

    /** Verifies a tie-break vote against the pending tie (never throws for a bad vote: the verdict says why). */
    async verifyTieBreak(input: VerifyTieBreakInput): Promise<TieBreakVerdict> {
      const active = deps.policies.current();
      if (!active) return { tieId: input.tieId, counted: false, reason: 'no valid policy bundle is loaded' };
      const { token, ...tie } = input;
      return judgeTieBreak(token, active.bundle.manifest, tie, { now: clock(), home: deps.home });
    },

    /**
     * Checks a continued run's `resume` against the checkpoint the previous run signed: `{ ok: true }`
     * or `{ ok: false, reason }` (the workflow then refuses its input). Keys unreadable: throws, and
     * the workflow refuses the input after the retries (fail closed).
     */
    async verifyResume(input: VerifyResumeInput): Promise<{ ok: true } | { ok: false; reason: string }> {
      const reason = await checkResume(input, loadPublicJwks(deps.home, 'receipt'));
      return reason === undefined ? { ok: true } : { ok: false, reason };
    },

    /** Checks that a final slot verdict the chain received was signed by its domain's coordinator. */
    async verifySlotVerdict(input: VerifySlotVerdictInput): Promise<{ ok: true } | { ok: false; reason: string }> {
      const reason = await checkSlotVerdict(input, loadPublicJwks(deps.home, 'receipt'));
      return reason === undefined ? { ok: true } : { ok: false, reason };
    },

    /** The revocation registry's next log entry, signed with the receipt key and kept in this worker's log file. */
    async signRevocation(input: SignRevocationInput): Promise<SignedRevocation> {
      const parsed = SignRevocationInput.safeParse(input);
      if (!parsed.success)
        throw ApplicationFailure.nonRetryable(
          `invalid revocation entry: ${formatIssues(parsed.error).replace(/\n/g, '; ')}`,
          ErrorCode.InvalidInput,
        );
      const entry = await signRevocationEntry(await receiptSigner(), parsed.data, clock());
      deps.revocations?.store.file(entry.registry).append([entry]);
      return entry;
    },

    /** A new revocation registry run's list, rebuilt from every earlier copy (see `RevocationStore.recover`). */
    async recoverRevocations(input: RecoverRevocationsInput): Promise<RecoverRevocationsResult> {
      const store = deps.revocations?.store;
      if (!store)
        throw ApplicationFailure.nonRetryable(
          'this worker keeps no revocation store',
          ErrorCode.RevocationsUnavailable,
        );
      const signer = await receiptSigner();
      return store.recover(input, (next) => signRevocationEntry(signer, next, clock()));
    },

    /**
     * The execution grant of a service activity or MCP tool call (contracts/grant.ts), minted right
     * before the workflow schedules it: the workflow never signs anything itself.
     */
    async mintGrant(input: MintGrantInput): Promise<{ grant: string }> {
      return { grant: await grants.mint(input) };
    },

    /** Signs and links the next receipt of a chain. */
    async recordReceipt(input: RecordReceiptInput): Promise<RecordedReceipt> {
      // The payload is echoed back so history (which keeps local activity results, not inputs)
      // holds everything `governor verify` needs to recompute the receipt's digest.
      const { digestOutput, ...receiptInput } = input;
      const recorded = {
        receipt: await makeReceipt(await receiptSigner(), receiptInput),
        payload: input.payload ?? null,
      };
      const output = digestOutput ? recordedOutput(input.payload) : undefined;
      return output === undefined ? recorded : { ...recorded, output: sessionOutputOf(output) };
    },
  };
}

/** The output an execution receipt's payload records (`{ status, outcome: { result } }`); undefined when null or absent. */
function recordedOutput(payload: unknown): unknown {
  const outcome = (payload as { outcome?: { result?: unknown } } | null)?.outcome;
  const result = outcome?.result;
  return result === null ? undefined : result;
}

/** Identity of a file's current content (inode, mtime, size), or '' when it cannot be read. */
function fileStampOf(file: string): string {
  try {
    const s = statSync(file, { bigint: true });
    return `${s.ino}:${s.mtimeNs}:${s.size}`;
  } catch {
    return '';
  }
}

/** The activity interface the workflow proxies (type only: workflows never import activity code). */
export type GovernorActivities = ReturnType<typeof createActivities>;
