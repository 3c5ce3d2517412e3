import type { JsonValue } from '../contracts/chain';
import { RESERVED_CONTEXT_KEYS } from '../core/step';

/**
 * The context shape the governor's policies expect (see policies/default/schema.cedarschema), and
 * pure helpers to build it. The engine itself adds `now` and `nowEpochSeconds`.
 */

/** Verified attestation claims, as `context.attestation`. */
export interface AttestationContext {
  imageDigest: string;
  trustZone: string;
  environment: string;
}

/** One verified approve vote from an authorized approver. */
export interface ApprovalVote {
  /** The approver's subject. */
  readonly approver: string;
  /** The approver's roles (from the verified vote). */
  readonly roles: readonly string[];
}

/** `context.approvals`: distinct approvers, their roles, and how many approvers hold each role. */
export interface ApprovalsContext {
  count: number;
  approvers: string[];
  roles: string[];
  /** Every role in `declaredRoles` (0 when none) plus any role a voter holds. */
  byRole: Record<string, number>;
}

/**
 * Builds `context.approvals` from verified approve votes. An approver who voted twice counts once
 * (their roles are merged). Pass the manifest's approver roles as `declaredRoles` so every role a
 * policy may test is present: a missing role is an evaluation error, i.e. a deny.
 */
export function approvalsContext(votes: readonly ApprovalVote[], declaredRoles: readonly string[]): ApprovalsContext {
  const rolesByApprover = new Map<string, Set<string>>();
  for (const vote of votes) {
    const roles = rolesByApprover.get(vote.approver) ?? new Set<string>();
    vote.roles.forEach((r) => roles.add(r));
    rolesByApprover.set(vote.approver, roles);
  }
  const counts = new Map<string, number>(declaredRoles.map((r) => [r, 0]));
  for (const roles of rolesByApprover.values()) {
    for (const role of roles) counts.set(role, (counts.get(role) ?? 0) + 1);
  }
  const byRole: Record<string, number> = {};
  for (const role of [...counts.keys()].sort()) byRole[role] = counts.get(role)!;
  return {
    count: rolesByApprover.size,
    approvers: [...rolesByApprover.keys()].sort(),
    roles: [...new Set([...rolesByApprover.values()].flatMap((r) => [...r]))].sort(),
    byRole,
  };
}

/**
 * The request context for one step: the step's own context without the reserved keys, then the
 * verified attestation claims and (when any were gathered) the approvals.
 */
export function requestContext(
  stepContext: Readonly<Record<string, JsonValue>>,
  attestation: AttestationContext,
  approvals?: ApprovalsContext,
  session?: { steps: number; actions: Record<string, number> },
): Record<string, JsonValue> {
  const context: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(stepContext)) {
    // A session step's `session` is the governor's summary, never the step's own (declared chains: unchanged).
    if (session && key === 'session') continue;
    if (!(RESERVED_CONTEXT_KEYS as readonly string[]).includes(key)) context[key] = value;
  }
  context.attestation = {
    imageDigest: attestation.imageDigest,
    trustZone: attestation.trustZone,
    environment: attestation.environment,
  };
  if (approvals) context.approvals = { ...approvals, byRole: { ...approvals.byRole } };
  if (session) context.session = { steps: session.steps, actions: { ...session.actions } };
  return context;
}
