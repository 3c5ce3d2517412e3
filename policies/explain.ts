import type { Decision } from '../contracts/decision';

/**
 * The human explanation of a decision: effect and reason, then every determining policy with its
 * annotations (`@reason`, `@escalate`, …), then errors and escalation requirements. One line each.
 */
export function explainDecision(decision: Decision): string[] {
  const lines = [`${decision.effect}${decision.reason ? `: ${decision.reason}` : ''}`];
  for (const id of decision.determiningPolicies) {
    const annotations = decision.annotations[id] ?? {};
    const shown = Object.entries(annotations)
      .filter(([key]) => key !== 'id')
      .map(([key, value]) => `@${key}(${JSON.stringify(value)})`);
    lines.push(`  policy ${id}${shown.length > 0 ? ` ${shown.join(' ')}` : ''}`);
  }
  if (decision.escalation) {
    const e = decision.escalation;
    lines.push(`  needs ${e.quorum} approval(s) from [${e.roles.join(', ')}] within ${e.deadline}`);
  }
  for (const error of decision.errors) {
    if (error !== decision.reason) lines.push(`  error: ${error}`);
  }
  if (decision.bundleDigest) lines.push(`  bundle ${decision.bundleDigest}`);
  return lines;
}
