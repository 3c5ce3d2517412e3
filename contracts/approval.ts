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
    .regex(
      /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/,
      'token: must be a compact JWS (header.payload.signature)',
    ),
});
export type ApprovalSubmission = z.infer<typeof ApprovalSubmission>;

/** The verdict on one submitted vote, recorded in history (counted, or rejected with its reason). Extend, never rename. */
export const VoteVerdict = z.strictObject({
  /** Order of arrival within the chain. */
  seq: z.int().min(1),
  via: z.enum(['approve-signal', 'deny-signal', 'update']),
  counted: z.boolean(),
  /** Why it was rejected, or the approver's reason when counted. */
  reason: z.string(),
  approver: z.string().optional(),
  /** The approver's roles that were eligible for this step. */
  roles: z.array(z.string()).optional(),
  decision: z.enum(['approve', 'deny']).optional(),
  breakGlass: z.boolean().optional(),
  justification: z.string().optional(),
  /** The vote repeated an earlier vote of the same approver: counted once. */
  repeat: z.boolean().optional(),
  /** The verified step the vote names, when it was not the step awaiting approval (kept for that step). */
  forStep: z.string().optional(),
  /** The approver as signed in at the identity provider (the approval inbox): issuer and subject. */
  idp: z.strictObject({ iss: z.string(), sub: z.string() }).optional(),
});
export type VoteVerdict = z.infer<typeof VoteVerdict>;

/** Outcome of an approval: `pending` until a quorum approves, an approver denies, break-glass, or the deadline passes. */
export const ApprovalOutcome = z.enum(['pending', 'approved', 'denied', 'expired', 'break-glass']);
export type ApprovalOutcome = z.infer<typeof ApprovalOutcome>;

/** Approval progress of the step awaiting approval, as `status` and `submitApproval` report it. */
export const ApprovalState = z.strictObject({
  stepId: z.string(),
  /** SHA-256 of the exact step the votes must name. */
  stepDigest: z.string(),
  /** Roles required by policy; `eligibleRoles` adds those the escalation ladder unlocked. */
  roles: z.array(z.string()),
  eligibleRoles: z.array(z.string()),
  quorum: z.int().min(1),
  /** The approval deadline as written in policy (`30m`). */
  deadline: z.string(),
  /** When the deadline passes (ISO-8601 UTC). */
  deadlineAt: z.string().optional(),
  approvedBy: z.array(z.strictObject({ approver: z.string(), roles: z.array(z.string()) })),
  /** Approvals still needed to reach quorum. */
  stillNeeded: z.int().min(0),
  verdicts: z.array(VoteVerdict),
  outcome: ApprovalOutcome,
});
export type ApprovalState = z.infer<typeof ApprovalState>;

/** What `submitApproval` returns: the verdict on this vote and the approval state after it. */
export const SubmitApprovalResult = z.strictObject({
  verdict: VoteVerdict,
  approval: ApprovalState,
});
export type SubmitApprovalResult = z.infer<typeof SubmitApprovalResult>;
