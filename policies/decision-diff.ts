import type { Decision } from '../contracts/decision';

/**
 * True when two decisions would be enforced differently: another effect, or — both escalating —
 * other approval requirements (roles, quorum, deadline). Determining policies alone do not count:
 * the same outcome for another reason is not a flip. Shadow mode and `policy diff` share this rule.
 */
export function decisionsDiffer(a: Decision, b: Decision): boolean {
  if (a.effect !== b.effect) return true;
  if (a.effect !== 'escalate') return false;
  const requirement = (d: Decision): string =>
    JSON.stringify({
      roles: [...(d.escalation?.roles ?? [])].sort(),
      quorum: d.escalation?.quorum ?? 0,
      deadline: d.escalation?.deadline ?? '',
    });
  return requirement(a) !== requirement(b);
}
