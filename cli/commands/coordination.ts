import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import type { CoordinatorState, PendingTie, TieBreakVerdict } from '../../contracts/coordination';
import { issueApproval } from '../../identity';
import { CoordinationClient } from '../../sdk/coordination';
import type { GovernorClient } from '../../sdk/client';
import { Exit, type CommandContext } from '../context';
import { governorClient, taskQueue } from './chains';
import { splitRequestId as requestParts } from '../../inbox/chains';

/**
 * `governor coordination show|pick`: a domain's queue and open ties with their contenders side by side,
 * and the tie-breaker's choice (a signed vote naming the winner and carrying the tie's digest).
 */

interface PickOpts {
  winner?: string;
  neither?: boolean;
  token?: string;
  as?: string;
  roles?: string;
  reason?: string;
}

/** One contender of a tie as the tie-breaker needs to see it: which chain, which workload, what it would do. */
interface Contender {
  requestId: string;
  chainId: string;
  stepId: string;
  workload?: string;
  action?: string;
  resource?: string;
}

/** `chainId/stepId` → its parts (a chain id may not contain `/`: the step id is after the last one). */
function splitRequestId(requestId: string, field: string): { chainId: string; stepId: string } {
  const parts = requestParts(requestId);
  if (!parts) throw new GovernorError(ErrorCode.InvalidInput, `${field}: must be <chainId>/<stepId>`, field);
  return parts;
}

async function contenders(gc: GovernorClient, tie: PendingTie): Promise<Contender[]> {
  return Promise.all(
    tie.contenders.map(async (requestId) => {
      const { chainId, stepId } = splitRequestId(requestId, 'contender');
      const state = await gc.status(chainId).catch(() => undefined);
      const step = state?.steps.find((s) => s.id === stepId);
      return { requestId, chainId, stepId, workload: state?.workload, action: step?.action, resource: step?.resource };
    }),
  );
}

function openTie(state: CoordinatorState, tieId: string): PendingTie {
  const tie = state.ties.find((t) => t.tieId === tieId);
  if (!tie) {
    const open = state.ties.map((t) => t.tieId).join(', ') || 'none';
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `tie ${tieId} is not open in ${state.domain} (open: ${open})`,
      'tie',
    );
  }
  if (!tie.digest) {
    throw new GovernorError(ErrorCode.InvalidInput, `tie ${tieId} is not signed yet; try again in a moment`, 'tie');
  }
  return tie;
}

function verdictLine(v: TieBreakVerdict): string {
  if (!v.counted) return `tie-break vote rejected: ${v.reason}`;
  return v.decision === 'approve'
    ? `tie ${v.tieId} settled by ${v.approver}: ${v.winner} goes first; the other contenders are rejected`
    : `tie ${v.tieId} settled by ${v.approver}: neither goes; every contender is rejected`;
}

export function registerCoordinationCommands(program: Command, ctx: CommandContext): void {
  const { out, setExit } = ctx;
  const coordination = program
    .command('coordination')
    .description("a coordinated domain's queue and ties; settle a tie as its tie-breaker role");

  coordination
    .command('show <domain>')
    .description('the holder, the queue and every open tie with its contenders side by side')
    .action(async (domain: string) => {
      const gc = await governorClient(ctx, taskQueue());
      const state = await new CoordinationClient(gc.client, gc.taskQueue).state(domain);
      const ties = await Promise.all(state.ties.map(async (t) => ({ ...t, contenders: await contenders(gc, t) })));
      const lines = [
        `domain ${state.domain}  holder ${state.holder?.requestId ?? 'none'}  queued ${state.queue.length}`,
        ...state.queue.map((q) => `  ${String(q.position).padStart(3)} ${q.requestId} (${q.state})`),
        ...ties.flatMap((t) => [
          `tie ${t.tieId}: ${t.role} decides by ${t.deadlineAt ?? t.deadline} (else every contender is rejected)`,
          ...t.contenders.map(
            (c) =>
              `  ${c.requestId.padEnd(60)} ${(c.workload ?? '?').padEnd(24)} ${c.action ?? '?'} on ${c.resource ?? '?'}`,
          ),
          `  settle: npx governor coordination pick ${state.domain} ${t.tieId} --winner <chainId/stepId> --as <you> --roles ${t.role}`,
        ]),
      ];
      out().print(lines.join('\n'), { ...state, ties });
      setExit(Exit.Ok);
    });

  coordination
    .command('pick <domain> <tieId>')
    .description('settle a tie: --winner <chainId/stepId> goes first, or --neither (every contender is rejected)')
    .option('--winner <requestId>', 'the contender that goes first (<chainId>/<stepId>, as `show` lists it)')
    .option('--neither', 'choose no contender: every one is rejected')
    .option('--token <jwt>', 'a signed vote from your approver IdP (naming the winner, carrying the tie digest)')
    .option('--as <sub>', 'issue a local development vote for this tie-breaker')
    .option('--roles <roles>', 'with --as: comma-separated roles (must include the tie-breaker role)')
    .option('--reason <text>', 'reason recorded with the choice')
    .action(async (domain: string, tieId: string, opts: PickOpts) => {
      if (Boolean(opts.winner) === Boolean(opts.neither)) {
        throw new GovernorError(ErrorCode.InvalidInput, 'exactly one of --winner or --neither is required', '--winner');
      }
      if (Boolean(opts.token) === Boolean(opts.as)) {
        throw new GovernorError(ErrorCode.InvalidInput, 'exactly one of --token or --as is required', '--as');
      }
      const gc = await governorClient(ctx, taskQueue());
      const cc = new CoordinationClient(gc.client, gc.taskQueue);
      let token = opts.token;
      if (!token) {
        const tie = openTie(await cc.state(domain), tieId);
        const named = opts.winner ?? tie.contenders[0]!;
        if (!tie.contenders.includes(named)) {
          const list = tie.contenders.join(', ');
          throw new GovernorError(
            ErrorCode.InvalidInput,
            `--winner: ${named} is not a contender (${list})`,
            '--winner',
          );
        }
        const roles = (opts.roles ?? '')
          .split(',')
          .map((r) => r.trim())
          .filter(Boolean);
        if (roles.length === 0) {
          throw new GovernorError(
            ErrorCode.InvalidInput,
            '--roles: at least one role is required with --as',
            '--roles',
          );
        }
        token = await issueApproval({
          home: ctx.home(),
          sub: opts.as!,
          roles,
          ...splitRequestId(named, '--winner'),
          stepDigest: tie.digest!,
          decision: opts.neither ? 'deny' : 'approve',
          reason: opts.reason,
        });
      }
      const verdict = await cc.chooseWinner(domain, tieId, token);
      out().print(verdictLine(verdict), verdict);
      setExit(verdict.counted ? Exit.Ok : Exit.BadInput);
    });
}
