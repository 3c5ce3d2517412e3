import { Duration, durationMs } from './manifest';

/**
 * The policy annotations the governor reads. `@id` names a policy (stable, readable, unique per
 * bundle); `@escalate`/`@quorum`/`@deadline` on a `forbid` make it escalatable ("forbid unless
 * approved"); `@reason` is a one-line human explanation used in decisions.
 */
export const Annotation = {
  id: 'id',
  escalate: 'escalate',
  quorum: 'quorum',
  deadline: 'deadline',
  reason: 'reason',
} as const;

/** What an escalatable `forbid` asks for; absent quorum/deadline fall back to the manifest defaults. */
export interface EscalationAnnotation {
  /** Approver roles, sorted and distinct (`@escalate("sre-lead")` or `@escalate("dba, sre-lead")`). */
  readonly roles: readonly string[];
  readonly quorum?: number;
  readonly deadline?: string;
}

/** Policy ids: readable, usable in logs, search attributes and receipts. */
export const POLICY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;
const ROLE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/**
 * Reads the escalation annotations of one policy. Returns `escalation` only when `@escalate` is
 * present and every annotation is well-formed; `problems` lists what is wrong (never throws).
 */
export function readEscalation(annotations: Readonly<Record<string, string>>): {
  escalation?: EscalationAnnotation;
  problems: string[];
} {
  const problems: string[] = [];
  const escalate = annotations[Annotation.escalate];
  const quorumText = annotations[Annotation.quorum];
  const deadline = annotations[Annotation.deadline];

  if (escalate === undefined) {
    if (quorumText !== undefined) problems.push('@quorum is only meaningful together with @escalate');
    if (deadline !== undefined) problems.push('@deadline is only meaningful together with @escalate');
    return { problems };
  }

  const roles = [...new Set(escalate.split(',').map((r) => r.trim()))].sort();
  if (roles.length === 0 || roles.some((r) => !ROLE_PATTERN.test(r))) {
    problems.push('@escalate must name one or more approver roles, comma-separated (e.g. @escalate("sre-lead"))');
  }
  let quorum: number | undefined;
  if (quorumText !== undefined) {
    if (!/^[1-9]\d{0,2}$/.test(quorumText)) problems.push('@quorum must be a whole number from 1 to 999');
    else quorum = Number(quorumText);
  }
  if (deadline !== undefined && (!Duration.safeParse(deadline).success || durationMs(deadline) === 0)) {
    problems.push('@deadline must be a positive duration such as 30m, 2h or 1d');
  }
  if (problems.length > 0) return { problems };
  return {
    escalation: {
      roles,
      ...(quorum !== undefined ? { quorum } : {}),
      ...(deadline !== undefined ? { deadline } : {}),
    },
    problems,
  };
}
