import { z } from 'zod';

/**
 * Approval messages. A vote is a signed approval token (JWT of an approver, see SECURITY.md); the
 * workflow never trusts its content until the `verifyApproval` activity has verified it.
 */

/** Payload of the `approve` / `deny` signals and of the `submitApproval` update. */
export const ApprovalSubmission = z.strictObject({
  token: z
    .string()
    .min(16, 'token: must be a compact JWS (header.payload.signature)')
    .max(16_384, 'token: too large')
    .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'token: must be a compact JWS (header.payload.signature)'),
});
export type ApprovalSubmission = z.infer<typeof ApprovalSubmission>;

/** The verdict on one submitted vote, recorded in history (counted, or rejected with its reason). */
export interface VoteVerdict {
  /** Order of arrival within the chain. */
  seq: number;
  via: 'approve-signal' | 'deny-signal' | 'update';
  counted: boolean;
  /** Why it was rejected, or the approver's reason when counted. */
  reason: string;
  approver?: string;
  /** The approver's roles that were eligible for this step. */
  roles?: string[];
  decision?: 'approve' | 'deny';
  breakGlass?: boolean;
  justification?: string;
  /** The vote repeated an earlier vote of the same approver: counted once. */
  repeat?: boolean;
  /** The verified step the vote names, when it was not the step awaiting approval (kept for that step). */
  forStep?: string;
}

/** Approval progress of the step awaiting approval, as `status` and `submitApproval` report it. */
export interface ApprovalState {
  stepId: string;
  /** SHA-256 of the exact step the votes must name. */
  stepDigest: string;
  /** Roles required by policy; `eligibleRoles` adds those the escalation ladder unlocked. */
  roles: string[];
  eligibleRoles: string[];
  quorum: number;
  deadline: string;
  deadlineAt?: string;
  approvedBy: { approver: string; roles: string[] }[];
  /** Approvals still needed to reach quorum. */
  stillNeeded: number;
  verdicts: VoteVerdict[];
  outcome: 'pending' | 'approved' | 'denied' | 'expired' | 'break-glass';
}

/** What `submitApproval` returns: the verdict on this vote and the approval state after it. */
export interface SubmitApprovalResult {
  verdict: VoteVerdict;
  approval: ApprovalState;
}
