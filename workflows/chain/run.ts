import {
  CancellationScope,
  log,
  patched,
  setCurrentDetails,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import type { SessionOutputResult } from '../../activities';
import type { Chain, GovernedChainInput, ResourceRef } from '../../contracts/chain';
import type { SlotVerdict } from '../../contracts/slot-verdict';
import type { RefreshCredentialInput, RevokeInput } from '../../contracts/messages';
import { GENESIS_HASH, type Receipt, type ReceiptHead, type ReceiptKind } from '../../contracts/receipt';
import { GovernorPendingRolesKey, GovernorStatusKey, GovernorWorkloadKey } from '../../contracts/search-attributes';
import type { ChainState, StepState } from '../../contracts/state';
import { ChainStatus } from '../../contracts/status';
import { resourceLabel } from '../../core/step';
import { ApprovalQueue } from '../approval-queue';
import { failureMessage, invalidInput } from '../failure';
import { unpackSteps } from '../../core/packed-steps';
import type { ChainResume } from './input';
import type { Notifications } from './notify';
import { governor } from './proxies';

/** Thrown inside the chain when it was revoked; never leaves the workflow. */
export class Revoked extends Error {}

/**
 * One run of a governed chain: what `status` shows, the credentials in force, the receipt chain's head,
 * and what the message handlers received. The handlers only change this state; the chain acts on it.
 * Deterministic: every change comes from the workflow's input, its messages or recorded activity results.
 */
export class ChainRun {
  readonly chainId: string;
  readonly chain: Chain;
  /** The first run of the chain: credentials and receipts are bound to its lineage. */
  readonly firstRunId: string;
  /** What the previous run carried over (continue-as-new), if this run continues one. */
  readonly resume: ChainResume | undefined;
  /** What the `status` query returns. */
  readonly state: ChainState;
  /** Ids of completed steps, oldest first (compensated newest first). */
  readonly completed: string[];
  readonly approvals = new ApprovalQueue();
  /** Coordination verdicts arrive by signal from the domain's coordinator, keyed by request id. */
  readonly slotVerdicts = new Map<string, SlotVerdict>();
  /** Validating runs: every final verdict received per request, in arrival order (each verified before use). */
  readonly receivedVerdicts = new Map<string, SlotVerdict[]>();
  /** What the latest `authorize` of each step said about coordination (undefined: it did not say). */
  readonly coordinatedHint = new Map<string, boolean | undefined>();
  credential: string;
  attestation: string;
  /** Set when a refreshed credential arrives (the credential-expiry wait clears it first). */
  credentialRefreshed = false;
  /** Set when a refresh carries an attestation (the outdated-attestation wait clears it first). */
  attestationRefreshed = false;
  revoked: RevokeInput | undefined;
  /** Agent sessions: `closeSession` arrived, so a step awaiting approval is denied instead of holding the close. */
  closeRequested = false;
  head: ReceiptHead;
  lastSignature: string | undefined;
  lastReceipt: Receipt | undefined;
  /** Why the first receipt that could not be recorded failed (the chain then fails closed). */
  receiptFailure: string | undefined;
  /** The step in flight runs in its own scope so a revocation can cancel it. */
  inFlight: CancellationScope | undefined;
  /** Agent sessions only: what the session executed so far (`context.session` of its next decision). */
  session: { steps: number; actions: Record<string, number> } | undefined;
  /**
   * Every `governStep` call runs in this one scope: not cancellable (a built-in executor cannot be
   * interrupted mid-request, so a step that started is finished and recorded). Scopes are not in history.
   */
  readonly uncancellable = new CancellationScope({ cancellable: false });
  /** A folded final checkpoint the last step's `governStep` signed (LEAN_CHAIN_PATCH), until it is used. */
  foldedCheckpoint: Receipt | undefined;
  /** The output digest the last `record(…, digestOutput)` returned (FOLDED_REMOTE_STEP_PATCH). */
  recordedOutput: SessionOutputResult | undefined;
  /** Webhook notifications (WEBHOOK_NOTIFY_PATCH), from the first escalation of a manifest with webhooks. */
  notifications: Notifications | undefined;
  private publishedStatus: ChainStatus | undefined;
  /** Lean runs: pending roles were set at least once (so ending the chain clears them). */
  private rolesPublished = false;

  constructor(
    readonly input: GovernedChainInput,
    /** The run took the `validated-input` path (`patched(VALIDATED_INPUT_PATCH)`). */
    readonly strict: boolean,
    resume: ChainResume | undefined,
    /** The run does less per chain (`patched(LEAN_CHAIN_PATCH)`, strict runs only). */
    readonly lean = false,
    /**
     * The run recorded ONE_MARKER_CHAIN_PATCH: it takes the paths of the patches that one implies (built-in
     * steps in `governStep` included) without asking for their markers. Agent sessions: always false.
     */
    readonly oneMarker = false,
    /**
     * The run recorded PATCHES_AT_START: it takes the path of every patch that one implies and asks for no
     * marker after its start ({@link takes}).
     */
    readonly atStart = false,
  ) {
    this.chainId = input.chainId;
    this.chain = input.chain;
    this.firstRunId = workflowInfo().firstExecutionRunId;
    this.resume = resume;
    this.credential = input.credential;
    this.attestation = input.attestation;
    this.head = resume?.head ?? { seq: 0, hash: GENESIS_HASH };
    this.state = {
      chainId: this.chainId,
      workload: this.chain.workload,
      status: ChainStatus.Running,
      steps: resume?.packedSteps
        ? unpackSteps(this.chainId, this.chain.steps, resume.packedSteps)
        : (resume?.steps ?? this.chain.steps.map((s) => pendingStep(s.id, s.action, s.resource))),
      receiptHead: this.head,
      policyDigest: resume?.policyDigest,
      breakGlass: resume?.breakGlass,
    };
    this.completed = [...(resume?.completed ?? [])];
  }

  stepState(id: string): StepState {
    return this.state.steps.find((x) => x.id === id)!;
  }

  // ---- messages -------------------------------------------------------------------------------

  /** `refreshCredential` (update, already validated): the credential (and attestation) for the next authorizations. */
  refresh(refresh: RefreshCredentialInput): ChainState {
    this.credential = refresh.credential;
    if (refresh.attestation) {
      this.attestation = refresh.attestation;
      this.attestationRefreshed = true;
    }
    this.credentialRefreshed = true;
    return this.state;
  }

  /** `refreshCredential` (signal): like the update; an invalid refresh is logged and ignored. */
  onRefreshSignal(refresh: RefreshCredentialInput): void {
    try {
      validateRefresh(refresh);
      this.refresh(refresh);
    } catch (err) {
      log.warn('refreshCredential signal ignored', { chainId: this.chainId, reason: (err as Error).message });
    }
  }

  /** `revoke`: the first revocation stops the chain (the step in flight is cancelled). */
  revoke(revoke: RevokeInput): void {
    if (this.revoked) return;
    this.revoked = {
      reason: typeof revoke?.reason === 'string' ? revoke.reason.slice(0, 500) : 'revoked',
      by: typeof revoke?.by === 'string' ? revoke.by.slice(0, 200) : undefined,
    };
    this.inFlight?.cancel();
  }

  /** Throws {@link Revoked} once the chain was revoked. */
  stopIfRevoked(): void {
    if (this.revoked) throw new Revoked();
  }

  // ---- visibility -----------------------------------------------------------------------------

  publishDetails(): void {
    const lines = this.state.steps.map((s, i) => {
      const mark = s.status === 'completed' ? 'x' : ' ';
      const decision = s.decision ? ` — ${s.decision.effect}` : '';
      const place = s.coordination?.position !== undefined ? `, place ${s.coordination.position}` : '';
      const queued = s.coordination?.status === 'queued' ? ` (queued in ${s.coordination.domain}${place})` : '';
      const approvers = s.approval?.approvedBy.map((a) => a.approver).join(', ') || 'nobody yet';
      const waiting =
        s.approval?.outcome === 'pending'
          ? ` (approved by ${approvers}; ${s.approval.stillNeeded} more of ${s.approval.eligibleRoles.join('/')})`
          : '';
      return `- [${mark}] ${i + 1}. **${s.action}** on \`${s.resource}\`: ${s.status}${decision}${waiting}${queued}`;
    });
    const { status, pending, reason } = this.state;
    const headline = `**${status}**${pending ? ` — ${pending}` : ''}${reason ? ` — ${reason}` : ''}`;
    setCurrentDetails([headline, '', ...lines].join('\n'));
  }

  // Search attributes and details are upserted only on change: each upsert is a history event.
  setStatus(status: ChainStatus, pending?: string): void {
    const changed = status !== this.state.status || pending !== this.state.pending;
    this.state.status = status;
    this.state.pending = pending;
    if (status !== this.publishedStatus) {
      upsertSearchAttributes([{ key: GovernorStatusKey, value: status }]);
      this.publishedStatus = status;
    }
    if (changed) this.publishDetails();
  }

  setPendingRoles(roles: string[] | undefined): void {
    this.state.pendingRoles = roles;
    this.rolesPublished = true;
    upsertSearchAttributes([{ key: GovernorPendingRolesKey, value: roles ?? [] }]);
  }

  /**
   * The pending roles and the status together: lean runs upsert both in one command (one history event),
   * others as before (roles, then status).
   */
  setRolesAndStatus(roles: string[] | undefined, status: ChainStatus, pending?: string): void {
    if (!this.lean) {
      this.setPendingRoles(roles);
      this.setStatus(status, pending);
      return;
    }
    this.state.pendingRoles = roles;
    const changed = status !== this.state.status || pending !== this.state.pending;
    this.state.status = status;
    this.state.pending = pending;
    const pairs: SearchAttributeUpdatePair[] = [];
    // No roles to clear when none were ever set (the attribute is then absent, which reads as none).
    if (roles !== undefined || this.rolesPublished) pairs.push({ key: GovernorPendingRolesKey, value: roles ?? [] });
    if (roles !== undefined) this.rolesPublished = true;
    if (status !== this.publishedStatus) pairs.push({ key: GovernorStatusKey, value: status });
    if (pairs.length > 0) upsertSearchAttributes(pairs);
    this.publishedStatus = status;
    if (changed) this.publishDetails();
  }

  /**
   * At the start of the run: the workload (strict runs) and the `Running` status. Lean runs upsert only
   * what the run does not already carry (the SDK client starts chains with both; continue-as-new keeps
   * them), in one command.
   */
  publishStart(): void {
    if (!this.lean) {
      if (this.strict) upsertSearchAttributes([{ key: GovernorWorkloadKey, value: this.chain.workload }]);
      this.setStatus(ChainStatus.Running);
      return;
    }
    const carried = workflowInfo().typedSearchAttributes;
    const pairs: SearchAttributeUpdatePair[] = [];
    if (carried.get(GovernorWorkloadKey) !== this.chain.workload)
      pairs.push({ key: GovernorWorkloadKey, value: this.chain.workload });
    if (carried.get(GovernorStatusKey) !== ChainStatus.Running)
      pairs.push({ key: GovernorStatusKey, value: ChainStatus.Running });
    if (pairs.length > 0) upsertSearchAttributes(pairs);
    this.state.status = ChainStatus.Running;
    this.publishedStatus = ChainStatus.Running;
  }

  // ---- receipts -------------------------------------------------------------------------------

  /** Moves the head of the receipt chain to `receipt` (signed by an activity). */
  advance(receipt: Receipt): void {
    this.head = { seq: receipt.seq, hash: receipt.hash };
    this.lastSignature = receipt.signature;
    this.lastReceipt = receipt;
    this.state.receiptHead = this.head;
  }

  /**
   * Whether the run takes the path of patch `patchId`: always for a run that recorded PATCHES_AT_START (which
   * implies it, and asks for no marker after the start); for a run recorded before, as `patched()` says.
   */
  takes(patchId: string): boolean {
    return this.atStart || patched(patchId);
  }

  /**
   * Signs and links a receipt; false (and the chain fails closed) when it cannot be recorded. With
   * `digestOutput` (FOLDED_REMOTE_STEP_PATCH, a session step's execution), the same local activity also
   * digests the outcome's output, kept in {@link recordedOutput}.
   */
  async record(
    stepId: string | undefined,
    kind: ReceiptKind,
    payload: unknown,
    digestOutput = false,
  ): Promise<boolean> {
    this.recordedOutput = undefined;
    try {
      const recorded = await governor.recordReceipt({
        chainId: this.chainId,
        stepId,
        kind,
        payload,
        prev: this.head,
        ...(digestOutput ? { digestOutput } : {}),
      });
      this.advance(recorded.receipt);
      this.recordedOutput = recorded.output;
      return true;
    } catch (err) {
      this.receiptFailure ??= `a ${kind} receipt could not be recorded: ${failureMessage(err)}`;
      return false;
    }
  }
}

/** A step not yet governed, as `status` shows it. */
function pendingStep(id: string, action: string, resource: ResourceRef): StepState {
  return { id, action, resource: resourceLabel(resource), status: 'pending' };
}

/** Synchronous validator of a credential refresh: shape only; the activity verifies the token. */
export function validateRefresh(refresh: RefreshCredentialInput): void {
  if (
    typeof refresh !== 'object' ||
    refresh === null ||
    typeof refresh.credential !== 'string' ||
    refresh.credential.length === 0 ||
    refresh.credential.length > 16_384
  ) {
    throw invalidInput('credential: must be a non-empty JWT string');
  }
  const { attestation } = refresh;
  if (attestation !== undefined && (typeof attestation !== 'string' || attestation.length > 16_384)) {
    throw invalidInput('attestation: must be a JWT string');
  }
}
