import type { VoteVerdict } from '../contracts/approval';
import { ErrorCode, isGovernorError } from '../contracts/errors';
import type { Manifest } from '../policies/manifest';
import { verifyApproval } from '../identity';

/** What the workflow knows about the step a vote must be for. */
export interface VoteContext {
  chainId: string;
  stepId: string;
  stepDigest: string;
  /** The requesting workload and its declared owner: never allowed to approve (separation of duties). */
  workload: string;
  owner?: string;
  /** Roles that may vote now (policy roles plus those the escalation ladder unlocked). */
  eligibleRoles: string[];
  /** Which message carried the vote: a signal fixes the vote's direction. */
  via: VoteVerdict['via'];
  seq: number;
}

/**
 * Verifies one vote and decides whether it counts: a valid token from a trusted approver, bound to
 * this chain, step and step digest, from someone who is neither the workload nor its owner, holding
 * an eligible role (or the break-glass role with a justification). Never throws for a bad vote: the
 * rejection and its reason are the verdict.
 */
export async function judgeVote(
  token: string,
  manifest: Manifest,
  ctx: VoteContext,
  options: { now: Date; home: string },
): Promise<VoteVerdict> {
  const base = { seq: ctx.seq, via: ctx.via };
  const reject = (reason: string, extra: Partial<VoteVerdict> = {}): VoteVerdict => ({
    ...base,
    counted: false,
    reason,
    ...extra,
  });
  let vote: Awaited<ReturnType<typeof verifyApproval>>;
  try {
    vote = await verifyApproval(token, manifest, options);
  } catch (err) {
    if (isGovernorError(err) && err.code === ErrorCode.ApprovalInvalid) return reject(err.message);
    throw err; // keys unavailable: retry, never a verdict on the vote
  }
  // The IdP sign-in the vote came through (the approval inbox) is part of who voted, in every verdict.
  const who = { approver: vote.sub, decision: vote.decision, ...(vote.idp ? { idp: vote.idp } : {}) };
  if (vote.chainId !== ctx.chainId) return reject('approval is for another chain', who);
  if (vote.stepId !== ctx.stepId) return reject('approval is for another step', { ...who, forStep: vote.stepId });
  if (vote.stepDigest !== ctx.stepDigest) return reject('approval is for a different version of this step', who);
  if (ctx.via === 'approve-signal' && vote.decision !== 'approve')
    return reject('the approve signal carried a deny vote', who);
  if (ctx.via === 'deny-signal' && vote.decision !== 'deny')
    return reject('the deny signal carried an approve vote', who);
  const owners = new Set(
    [ctx.workload, ctx.owner, manifest.owners[ctx.workload]].filter((x): x is string => Boolean(x)),
  );
  if (owners.has(vote.sub)) return reject('the requesting workload and its owner may not approve', who);

  const eligible = vote.roles.filter((r) => ctx.eligibleRoles.includes(r));
  const breakGlassRole = manifest.approvals.breakGlassRole;
  const breakGlass =
    vote.decision === 'approve' &&
    eligible.length === 0 &&
    breakGlassRole !== undefined &&
    vote.roles.includes(breakGlassRole);
  if (breakGlass) {
    if (!vote.justification || vote.justification.trim().length < 10)
      return reject('break-glass approval requires a justification (10+ characters)', who);
    return {
      ...base,
      counted: true,
      reason: vote.reason ?? 'break-glass',
      approver: vote.sub,
      roles: [breakGlassRole],
      decision: 'approve',
      breakGlass: true,
      justification: vote.justification,
      ...(vote.idp ? { idp: vote.idp } : {}),
    };
  }
  if (eligible.length === 0)
    return reject(`approver holds none of the eligible roles (${ctx.eligibleRoles.join(', ')})`, who);
  return {
    ...base,
    counted: true,
    reason: vote.reason ?? '',
    approver: vote.sub,
    roles: eligible,
    decision: vote.decision,
    ...(vote.idp ? { idp: vote.idp } : {}),
  };
}
