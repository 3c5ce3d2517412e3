import { createHash } from 'node:crypto';
import { Client, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import {
  CREDENTIAL_CLAIM_ID_PREFIX,
  CREDENTIAL_CLAIM_WORKFLOW_TYPE,
  type CredentialClaimInput,
} from '../contracts/credential-claim';

/** Workflow id of a credential's claim: namespace-wide, from its issuer and `jti` (hashed: any length, any characters). */
export function credentialClaimId(iss: string, jti: string): string {
  return CREDENTIAL_CLAIM_ID_PREFIX + createHash('sha256').update(`${iss}\n${jti}`).digest('hex');
}

/** A credential's identity for replay detection: its issuer, `jti` and expiry (seconds since the epoch). */
export interface CredentialIdentity {
  iss: string;
  jti: string;
  exp: number;
}

/** How far ahead a credential may expire (the manifest's `credential.maxLifetime` and clock tolerance), in ms. */
export interface LifetimeBound {
  maxLifetimeMs: number;
  clockToleranceMs: number;
}

const DEFAULT_BOUND: LifetimeBound = { maxLifetimeMs: 24 * 3_600_000, clockToleranceMs: 5000 };
/** Margin after a credential's expiry before its claim workflow runs. */
const CLAIM_MARGIN_MS = 10_000;
/** How long after its delay a claim workflow may still be open (no worker picked it up). */
const CLAIM_RUN_TIMEOUT_MS = 3_600_000;

/** Outcome of a claim: bound to this chain, or already bound to another one (a replay). */
export type ClaimOutcome = { bound: true } | { bound: false; reason: string };

/**
 * Binds each credential (`iss` + `jti`) to the first chain that presents it, namespace-wide, using
 * Temporal's workflow-id uniqueness as the store: the first claim starts a small workflow whose id is
 * derived from the credential and whose memo names the chain, with `REJECT_DUPLICATE` so the id stays
 * taken while the workflow exists and for the namespace's retention after it closes. The workflow is
 * started with a delay that ends after the credential expires, runs once and completes: it costs one
 * server call per credential and no worker time while the credential is valid. The delay (and the
 * run's execution timeout) are bounded by the manifest's `credential.maxLifetime`, never by the
 * credential's own `exp` alone.
 *
 * A later claim by the same chain (next step, retry, continue-as-new, another worker) finds the memo
 * naming that chain (workflow id and first run id) and passes; any other chain is refused. Verified bindings are cached per worker
 * until the credential expires. Server errors throw: `authorize` retries and then denies (fail closed).
 */
export class CredentialClaims {
  private readonly bound = new Map<string, { holder: string; exp: number }>();

  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
    private readonly now: () => number = Date.now,
    private readonly maxCached = 50_000,
  ) {}

  /**
   * Claims `credential` for the chain (its workflow id and first run id: a chain id reused after its
   * chain ended has another first run, so it does not inherit the credential).
   */
  async claim(
    credential: CredentialIdentity,
    chain: { chainId: string; firstRunId: string },
    bound: LifetimeBound = DEFAULT_BOUND,
  ): Promise<ClaimOutcome> {
    const key = `${credential.iss}\n${credential.jti}`;
    const me = `${chain.chainId}\n${chain.firstRunId}`;
    const now = this.now();
    // Verification already refused longer-lived credentials; this keeps the bound even if it did not.
    const latest = now + bound.clockToleranceMs + bound.maxLifetimeMs;
    if (!Number.isFinite(credential.exp) || credential.exp * 1000 > latest)
      return { bound: false, reason: 'credential lifetime exceeds credential.maxLifetime: not claimed' };
    const cached = this.bound.get(key);
    if (cached && cached.exp * 1000 > now) return this.judge(cached.holder, me);

    const workflowId = credentialClaimId(credential.iss, credential.jti);
    // After expiry (plus the clock tolerance and a margin) the credential is refused anyway; never
    // later than the longest a credential may live from now (so never years ahead).
    const delayMs = Math.min(
      Math.max(1000, credential.exp * 1000 - now + bound.clockToleranceMs + CLAIM_MARGIN_MS),
      bound.maxLifetimeMs + 2 * bound.clockToleranceMs + CLAIM_MARGIN_MS,
    );
    const { chainId, firstRunId } = chain;
    const input: CredentialClaimInput = { chainId, firstRunId, iss: credential.iss, exp: credential.exp };
    let holder: string;
    try {
      await this.client.workflow.start(CREDENTIAL_CLAIM_WORKFLOW_TYPE, {
        workflowId,
        taskQueue: this.taskQueue,
        args: [input],
        memo: { chainId, firstRunId },
        startDelay: delayMs,
        // Bounded like its delay: the claim never outlives the credential's bound by more than an hour.
        workflowExecutionTimeout: delayMs + CLAIM_RUN_TIMEOUT_MS,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        staticSummary: `credential bound to chain ${chainId}`,
      });
      holder = me;
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      const described = await this.client.workflow.getHandle(workflowId).describe();
      const memo = described.memo ?? {};
      // A claim without a readable holder is not proof of ownership: refuse (fail closed).
      holder =
        typeof memo.chainId === 'string' && typeof memo.firstRunId === 'string'
          ? `${memo.chainId}\n${memo.firstRunId}`
          : '';
    }
    if (holder) this.remember(key, holder, credential.exp);
    return this.judge(holder, me);
  }

  private judge(holder: string, me: string): ClaimOutcome {
    if (holder === me) return { bound: true };
    // The other chain's id is not disclosed: the presenter may not be entitled to know it.
    return { bound: false, reason: 'credential replayed: its jti is already bound to another chain' };
  }

  private remember(key: string, holder: string, exp: number): void {
    if (this.bound.size >= this.maxCached) {
      const now = this.now();
      for (const [k, v] of this.bound) if (v.exp * 1000 <= now) this.bound.delete(k);
      // Still full: forget the oldest half (they are claimed again from the server when needed).
      if (this.bound.size >= this.maxCached)
        [...this.bound.keys()].slice(0, this.maxCached / 2).forEach((k) => this.bound.delete(k));
    }
    this.bound.set(key, { holder, exp });
  }
}
