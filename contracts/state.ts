import type { ApprovalState, VoteVerdict } from './approval';
import type { Decision } from './decision';
import type { ReceiptHead } from './receipt';
import type { ChainStatus } from './status';

/** Progress of one step. Values are shown in the status query: extend, never rename. */
export type StepStatus = 'pending' | 'authorizing' | 'awaiting-credential' | 'awaiting-approval' | 'executing' | 'completed' | 'denied' | 'failed' | 'skipped' | 'compensating' | 'compensated' | 'compensation-denied' | 'compensation-failed';

/** Outcome of an executor run, as recorded (no raw response bodies: digests only). */
export interface ExecutionOutcome {
  executor: 'noop' | 'http' | 'activity';
  idempotencyKey: string;
  /** HTTP status for the http executor. */
  httpStatus?: number;
  /** The executor's result (http: status only; activity: what the service returned). */
  result?: unknown;
}

/** One step as the status query reports it. */
export interface StepState {
  id: string;
  action: string;
  resource: string;
  status: StepStatus;
  decision?: Decision;
  outcome?: ExecutionOutcome;
  compensation?: { decision?: Decision; outcome?: ExecutionOutcome; error?: string };
  /** Present once the step escalated: votes, who approved, who is still needed. */
  approval?: ApprovalState;
  /** Coordination with other chains on a shared resource: place in the queue, verdict. */
  coordination?: {
    domain: string;
    requestId: string;
    status: 'queued' | 'granted' | 'rejected' | 'released';
    reason?: string;
    position?: number;
    order?: number;
    conflictWith?: string;
    version?: number;
  };
  /** Set when a break-glass approval let the step through. */
  breakGlass?: { approver: string; justification: string };
  error?: string;
}

/** What `statusQuery` returns. */
export interface ChainState {
  chainId: string;
  workload: string;
  status: ChainStatus;
  /** Why the chain ended Denied/Failed/Revoked. */
  reason?: string;
  /** What the chain waits for now, in words. */
  pending?: string;
  currentStep?: string;
  /** Roles whose approval the chain waits for now. */
  pendingRoles?: string[];
  breakGlass?: boolean;
  /** A shadow bundle decided differently for at least one step (never enforced). */
  shadowDiffers?: boolean;
  steps: StepState[];
  receiptHead: ReceiptHead;
  policyDigest?: string;
  /** Verdicts on malformed votes that arrived while no step awaited approval (the latest few). */
  strayVotes?: VoteVerdict[];
}

/** What the workflow returns. */
export interface ChainResult {
  chainId: string;
  status: ChainStatus;
  reason?: string;
  steps: StepState[];
  receiptHead: ReceiptHead;
  checkpoint?: string;
}
