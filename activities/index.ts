import { ApplicationFailure } from '@temporalio/activity';
import { ErrorCode } from '../contracts/errors';
import type { Receipt, ReceiptHead, ReceiptKind } from '../contracts/receipt';
import type { ExecutionOutcome } from '../contracts/state';
import { authorizeAction, type AuthorizeInput, type AuthorizeResult } from './authorize';
import { runBuiltInExecutor, type ExecuteInput } from './executors';
import { loadPrivateKey } from './identity';
import type { PolicyStore } from './policy-store';
import { makeReceipt, type ReceiptSigner } from './receipts';

export type { AuthorizeInput, AuthorizeResult } from './authorize';
export type { ExecuteInput } from './executors';

/** Input of `recordReceipt`. */
export interface RecordReceiptInput {
  chainId: string;
  stepId?: string;
  kind: ReceiptKind;
  payload: unknown;
  prev: ReceiptHead;
}

/** What the governor worker needs to run its activities. */
export interface ActivityDeps {
  policies: PolicyStore;
  /** GOVERNOR_HOME: keys and JWKS files. */
  home: string;
  /** Injectable clock for tests; defaults to the system clock. */
  clock?: () => Date;
}

/** Builds the governor's activities. Names are recorded in history: never rename them. */
export function createActivities(deps: ActivityDeps) {
  const clock = deps.clock ?? (() => new Date());
  let signer: Promise<ReceiptSigner> | undefined;
  const receiptSigner = (): Promise<ReceiptSigner> => {
    const pending =
      signer ??
      loadPrivateKey(deps.home, 'receipt').catch((err: unknown) => {
        signer = undefined; // try again next time (keys may be created meanwhile)
        throw err;
      });
    signer = pending;
    return pending;
  };

  return {
    /** Re-verifies credential + attestation and evaluates policy; returns the decision and its receipt. */
    async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
      const result = await authorizeAction(deps.policies, deps.home, input, clock());
      const receipt = await makeReceipt(await receiptSigner(), {
        chainId: input.chainId,
        stepId: input.stepId,
        kind: input.kind === 'step' ? 'decision' : 'compensation-decision',
        payload: { request: result.request ?? null, decision: result.decision },
        prev: input.prev,
      });
      return { ...result, receipt };
    },

    /** Runs a built-in executor (`noop`, `http`). */
    async execute(input: ExecuteInput): Promise<ExecutionOutcome> {
      const active = deps.policies.current();
      if (!active) throw ApplicationFailure.nonRetryable('no valid policy bundle is loaded', ErrorCode.PolicyUnavailable);
      return runBuiltInExecutor(input, active.bundle.manifest.http.allowedHosts);
    },

    /** Signs and links the next receipt of a chain. */
    async recordReceipt(input: RecordReceiptInput): Promise<Receipt> {
      return makeReceipt(await receiptSigner(), input);
    },
  };
}

/** The activity interface the workflow proxies (type only: workflows never import activity code). */
export type GovernorActivities = ReturnType<typeof createActivities>;
