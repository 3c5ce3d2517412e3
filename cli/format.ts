import type { ChainState } from '../contracts/state';
import type { SubmitApprovalResult } from '../contracts/approval';
import type { ChainExecution } from '../sdk/client';

/** Human renderings of a chain for `status` and `run --wait` (`Out.print` makes them terminal-safe). */

type Step = ChainState['steps'][number];

/** Human rendering of a chain state (`shownStatus`: the status to print when the execution did not end cleanly). */
export function formatState(state: ChainState, shownStatus: string = state.status): string {
  const pending = state.pending && shownStatus === state.status ? `  pending: ${state.pending}` : '';
  const lines = [`chain ${state.chainId}  workload ${state.workload}  status ${shownStatus}${pending}`];
  if (state.reason) lines.push(`reason: ${state.reason}`);
  for (const s of state.steps) lines.push(...stepLines(s));
  if (state.policyDigest) lines.push(`policy bundle ${state.policyDigest}`);
  return lines.join('\n');
}

function stepLines(s: Step): string[] {
  const d = s.decision;
  const why = d && d.effect !== 'allow' ? ` [${d.determiningPolicies.join(', ') || d.errors.join('; ')}]` : '';
  const lines = [
    `  ${s.id.padEnd(20)} ${s.action.padEnd(14)} ${s.resource.padEnd(32)} ${s.status.padEnd(12)} ` +
      `${d ? d.effect : ''}${why}${s.error ? ` — ${s.error}` : ''}`,
  ];
  const a = s.approval;
  if (a) {
    const approvedBy = a.approvedBy.map((x) => `${x.approver} (${x.roles.join(',')})`).join(', ') || 'nobody yet';
    lines.push(
      `      approval ${a.outcome}: ${a.quorum} of ${a.eligibleRoles.join('/')} by ${a.deadlineAt ?? a.deadline}; ` +
        `approved by ${approvedBy}; still needed: ${a.stillNeeded}`,
    );
    for (const v of a.verdicts) {
      const who = `${v.approver ? ` ${v.approver}` : ''}${v.decision ? ` ${v.decision}` : ''}`;
      const flags = `${v.repeat ? ' (repeat)' : ''}${v.breakGlass ? ' BREAK-GLASS' : ''}`;
      const counted = v.counted ? 'counted' : 'rejected';
      lines.push(`        vote ${v.seq} via ${v.via}: ${counted}${who}${flags} — ${v.reason}`);
    }
  }
  if (s.breakGlass) lines.push(`      break-glass by ${s.breakGlass.approver}: ${s.breakGlass.justification}`);
  const c = s.coordination;
  if (c) {
    const details = [
      c.position !== undefined ? `, place ${c.position} in the queue` : '',
      c.order !== undefined ? `, order ${c.order}` : '',
      c.conflictWith ? `, conflict with ${c.conflictWith}` : '',
      c.version !== undefined ? `, resource version ${c.version}` : '',
      c.reason ? ` — ${c.reason}` : '',
    ].join('');
    lines.push(`      coordination ${c.domain}: ${c.status}${details}`);
  }
  if (d && d.effect !== 'allow') {
    for (const [id, ann] of Object.entries(d.annotations)) {
      lines.push(
        `      ${id}: ${Object.entries(ann)
          .map(([k, v]) => `@${k}("${v}")`)
          .join(' ')}`,
      );
    }
  }
  return lines;
}

/** `status`: the chain state, and how its run stands on the server when that is not what the workflow says. */
export function formatStatus(state: ChainState, execution: ChainExecution): string {
  const shown = execution.notClean ? (execution.resetTo ? 'Reset' : execution.status) : state.status;
  const lines = [formatState(state, shown)];
  if (execution.resetTo) {
    lines.push(
      `reset: run ${execution.runId} was reset by an operator into run ${execution.resetTo}; ` +
        `it is not the chain's latest run (the workflow last reported ${state.status})`,
    );
  } else if (execution.notClean) {
    const pending = state.pending ? `, pending: ${state.pending}` : '';
    lines.push(
      `execution ${execution.status}: the chain did not end cleanly; its workflow was stopped outside the governor ` +
        `(it last reported ${state.status}${pending})`,
    );
  }
  if (execution.resetFrom) {
    lines.push(
      `reset: this run was made by an operator's reset of run ${execution.resetFrom.runId} at event ` +
        `${execution.resetFrom.eventId}; \`governor verify ${state.chainId}\` checks that no step ran in both`,
    );
  }
  return lines.join('\n');
}

/**
 * One line on what the vote did: counted (and what the step still needs, or how its approval ended),
 * a repeat of a vote already counted (counted once, changes nothing), or rejected with the reason.
 */
export function voteSummary({ verdict: v, approval: a }: SubmitApprovalResult): string {
  if (!v.counted) return `vote rejected: ${v.reason}`;
  const who = `${v.approver} ${v.decision}${v.breakGlass ? ' (BREAK-GLASS)' : ''}`;
  const approvedBy = a.approvedBy.map((x) => x.approver).join(', ') || 'nobody';
  const standing =
    a.outcome === 'pending'
      ? `approved by ${approvedBy}; still needed: ${a.stillNeeded}`
      : a.outcome === 'denied'
        ? 'the step is denied: the chain ends Denied'
        : a.outcome === 'expired'
          ? 'the approval deadline had passed: the step is denied'
          : `the step is approved (${a.outcome === 'break-glass' ? 'break-glass' : `approved by ${approvedBy}`})`;
  return v.repeat
    ? `repeat vote: ${who} was already counted; counted once, nothing changed; ${standing}`
    : `vote counted: ${who}; ${standing}`;
}
