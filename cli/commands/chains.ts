import path from 'node:path';
import { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { ErrorCode, GovernorError, isGovernorError } from '../../contracts/errors';
import type { ChainState } from '../../contracts/state';
import { ChainStatus, DEFAULT_TASK_QUEUE, TERMINAL_STATUSES } from '../../contracts/status';
import { issueApproval, issueAttestation, issueCredential } from '../../identity';
import { connectClient, loadTemporalSettings } from '../../runtime/connection';
import { processTracingFromEnv } from '../../runtime/tracing';
import { loadChainFile } from '../../sdk/chain-file';
import { GovernorClient, type ChainExecution } from '../../sdk/client';
import { projectRoot } from '../../workers/temporal-cli';
import { Exit, terminalSafe, type CommandContext, type Out } from '../context';
import { formatState, formatStatus, voteSummary } from '../format';

/** `governor run`, `status`, `list`, `approve`, `deny`, `revoke` and `demo`: chains on a running governor. */

/** The governor's task queue for commands without `--task-queue` (GOVERNOR_TASK_QUEUE, as the worker). */
export function taskQueue(): string {
  return process.env.GOVERNOR_TASK_QUEUE ?? DEFAULT_TASK_QUEUE;
}

export async function governorClient(ctx: CommandContext, queue: string): Promise<GovernorClient> {
  const dataConverter = ctx.dataConverter();
  const settings = loadTemporalSettings();
  const connection = await connectClient(settings);
  // With OTEL_* set, the chains this command starts carry its trace context (DESIGN §12).
  const tracing = processTracingFromEnv('temporal-governor-cli');
  const client = new Client({
    connection,
    namespace: settings.namespace,
    ...(dataConverter ? { dataConverter } : {}),
    ...(tracing ? { interceptors: tracing.clientInterceptors } : {}),
  });
  return new GovernorClient(client, queue);
}

/** The credential and attestation of `run`/`demo`: given (`--token`, `--attestation`) or issued locally (`--as`). */
export async function credentialsFor(
  ctx: CommandContext,
  opts: { token?: string; attestation?: string; as?: string },
  workload: string,
): Promise<{ credential: string; attestation: string }> {
  if (opts.token) {
    if (opts.as) throw new GovernorError(ErrorCode.InvalidInput, '--token and --as are exclusive', '--as');
    if (!opts.attestation) {
      throw new GovernorError(ErrorCode.InvalidInput, '--attestation: required with --token', '--attestation');
    }
    return { credential: opts.token, attestation: opts.attestation };
  }
  const sub = opts.as ?? workload;
  const home = ctx.home();
  return {
    credential: await issueCredential({ home, sub }),
    attestation: await issueAttestation({ home, sub }),
  };
}

function exitForStatus(status: ChainStatus): number {
  return status === 'Denied' || status === 'Failed' || status === 'Revoked' ? Exit.Denied : Exit.Ok;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Queries a chain's status every `intervalMs` until `seen` returns a result. A chain whose first
 * workflow task has not run yet cannot answer queries: such failures are retried (at most 100 in a
 * row); a governor error (unknown chain, bad input) ends the poll at once.
 */
async function pollStatus<T>(
  gc: GovernorClient,
  chainId: string,
  seen: (state: ChainState) => Promise<T | undefined> | T | undefined,
  intervalMs = 200,
): Promise<T> {
  for (let failures = 0; ;) {
    let state: ChainState;
    try {
      state = await gc.status(chainId);
      failures = 0;
    } catch (err) {
      if (isGovernorError(err) || ++failures > 100) throw err;
      await sleep(200);
      continue;
    }
    const result = await seen(state);
    if (result !== undefined) return result;
    await sleep(intervalMs);
  }
}

/** Until the chain ends or waits for someone (approval, a refreshed credential or attestation). */
function untilSettled(gc: GovernorClient, chainId: string): Promise<ChainState> {
  const waiting: readonly ChainStatus[] = ['AwaitingApproval', 'AwaitingCredential', 'AwaitingAttestation'];
  const settled = (s: ChainState) => TERMINAL_STATUSES.includes(s.status) || waiting.includes(s.status);
  return pollStatus(gc, chainId, (state) => (settled(state) ? state : undefined));
}

/** `run --wait`: prints each change of the chain's steps, then its final state; stops when it did not end cleanly. */
function follow(
  gc: GovernorClient,
  chainId: string,
  o: Out,
): Promise<{ state: ChainState; execution?: ChainExecution }> {
  let last = '';
  return pollStatus(
    gc,
    chainId,
    async (state) => {
      const line = `${state.status} ${state.steps.map((s) => `${s.id}:${s.status}`).join(' ')}`;
      if (line !== last && !o.json) process.stdout.write(`${chainId}: ${terminalSafe(line)}\n`);
      last = line;
      if (TERMINAL_STATUSES.includes(state.status)) {
        o.print(formatState(state), { chainId, status: state.status, reason: state.reason ?? null, state });
        return { state };
      }
      // Terminated, timed out or reset outside the governor: the workflow will never say so itself.
      const execution = await gc.execution(chainId, undefined, { resetFrom: false });
      if (execution.notClean) {
        const shown = execution.resetTo ? 'Reset' : execution.status;
        const data = { chainId, status: shown, reason: state.reason ?? null, state, execution };
        o.print(formatStatus(state, execution), data);
        return { state, execution };
      }
      return undefined;
    },
    300,
  );
}

/** Adds the chain commands: `run`, `status`, `list`, `approve`, `deny`, `revoke`, `demo`. */
export function registerChainCommands(program: Command, ctx: CommandContext): void {
  const { out, setExit } = ctx;
  const client = (queue: string) => governorClient(ctx, queue);

  program
    .command('run <file>')
    .description('start a chain from a YAML or JSON file')
    .option('--token <jwt>', 'the workload credential')
    .option('--attestation <jwt>', 'the workload attestation (with --token)')
    .option('--as <workload>', 'issue a local development credential and attestation for this workload')
    .option('--chain-id <id>', 'chain (workflow) id')
    .option('--task-queue <name>', 'governor task queue', taskQueue())
    .option('--wait', 'follow progress until the chain ends')
    .action(async (file: string, opts: RunOpts) => {
      const o = out();
      const chain = loadChainFile(file);
      const creds = await credentialsFor(ctx, opts, chain.workload);
      const gc = await client(opts.taskQueue);
      const handle = await gc.start(chain, { ...creds, chainId: opts.chainId });
      if (!opts.wait) {
        const data = { chainId: handle.workflowId, runId: handle.firstExecutionRunId, status: 'Running' };
        o.print(`started chain ${handle.workflowId}`, data);
        return setExit(Exit.Ok);
      }
      const { state, execution } = await follow(gc, handle.workflowId, o);
      setExit(execution?.notClean ? Exit.Denied : exitForStatus(state.status));
    });

  program
    .command('status <chainId>')
    .description(
      'show a chain: every step with its decision, and what is pending; exit 2 when it was denied, failed, revoked, ' +
        'or did not end cleanly (terminated, timed out, cancelled, superseded by a reset)',
    )
    .option('--run <runId>', 'a given run of the chain (default: its latest)')
    .action(async (chainId: string, opts: { run?: string }) => {
      const gc = await client(taskQueue());
      // How the run stands on the server first: a terminated or reset run still answers the query with what it
      // said last.
      const execution = await gc.execution(chainId, opts.run);
      const state = await gc.status(chainId, execution.runId);
      const shown = execution.notClean ? (execution.resetTo ? 'Reset' : execution.status) : state.status;
      out().print(formatStatus(state, execution), { ...state, status: shown, workflowStatus: state.status, execution });
      setExit(execution.notClean ? Exit.Denied : exitForStatus(state.status));
    });

  const statuses: string[] = Object.values(ChainStatus);
  program
    .command('list')
    .description('list chains (backed by search attributes)')
    .option('--status <status>', statuses.join(', '))
    .option('--workload <sub>', 'workload')
    .option('--awaiting-approval', 'chains waiting for approvers, with the roles still needed')
    .option('--break-glass', 'chains a break-glass approval let through (after-the-fact review)')
    .option('--limit <n>', 'at most n chains', '50')
    .action(async (opts: ListOpts) => {
      if (opts.status && !statuses.includes(opts.status)) {
        throw new GovernorError(ErrorCode.InvalidInput, `--status: must be one of ${statuses.join(', ')}`, '--status');
      }
      if (opts.awaitingApproval && opts.status && opts.status !== 'AwaitingApproval') {
        throw new GovernorError(ErrorCode.InvalidInput, '--awaiting-approval conflicts with --status', '--status');
      }
      const gc = await client(taskQueue());
      const chains = await gc.list({
        status: opts.awaitingApproval ? 'AwaitingApproval' : opts.status,
        workload: opts.workload,
        breakGlass: opts.breakGlass,
        limit: Number(opts.limit) || 50,
      });
      const lines = chains.map(
        (c) =>
          `${c.chainId.padEnd(56)} ${c.status.padEnd(18)} ${c.executionStatus.padEnd(14)} ` +
          `${(c.workload ?? '').padEnd(24)} ${c.startTime}` +
          (c.pendingRoles.length ? `  needs: ${c.pendingRoles.join(', ')}` : '') +
          (c.breakGlass ? '  BREAK-GLASS' : ''),
      );
      out().print(lines.length ? lines.join('\n') : '(no chains)', { chains });
      setExit(Exit.Ok);
    });

  for (const vote of ['approve', 'deny'] as const) {
    program
      .command(`${vote} <chainId>`)
      .description(
        `${vote} the step of a chain awaiting approval ` +
          '(exit 0 when the vote counted, 1 when rejected or a repeat of a vote already counted)',
      )
      .option('--step <id>', 'the step the vote is for (default: the step awaiting approval)')
      .option('--token <jwt>', 'a signed approval token')
      .option('--as <sub>', 'issue a local development approval token for this approver')
      .option('--roles <roles>', 'with --as: comma-separated roles')
      .option('--reason <text>', 'reason recorded with the vote')
      .option('--justification <text>', 'break-glass justification (required for a break-glass approval)')
      .option(
        '--print-token',
        'with --as: print the signed vote instead of sending it (to paste into the Temporal UI or CLI)',
      )
      .action(async (chainId: string, opts: VoteOpts) => {
        const o = out();
        const gc = await client(taskQueue());
        if (opts.token && opts.as) {
          throw new GovernorError(ErrorCode.InvalidInput, '--token and --as are exclusive', '--as');
        }
        if (opts.printToken && !opts.as) {
          throw new GovernorError(
            ErrorCode.InvalidInput,
            '--print-token needs --as <sub> --roles <r,…>',
            '--print-token',
          );
        }
        const token = opts.token || (await developmentVote(ctx, gc, chainId, vote, opts));
        if (opts.printToken) {
          // The token alone on stdout (a vote, not a secret key: it can only be this approver's vote on this step).
          o.print(token, { chainId, signal: vote, input: { token } });
          setExit(Exit.Ok);
          return;
        }
        const result = await gc.submitApproval(chainId, token);
        const v = result.verdict;
        o.print(voteSummary(result), { chainId, counted: v.counted, verdict: v, approval: result.approval });
        setExit(v.counted && !v.repeat ? Exit.Ok : Exit.BadInput);
      });
  }

  program
    .command('refresh <chainId>')
    .description(
      'send a fresh credential and attestation to a chain (AwaitingCredential / AwaitingAttestation waits for one)',
    )
    .option('--token <jwt>', 'the workload credential')
    .option('--attestation <jwt>', 'its attestation (required with --token)')
    .option('--as <sub>', 'issue both locally with the development keys for this workload')
    .action(async (chainId: string, opts: { token?: string; attestation?: string; as?: string }) => {
      const gc = await client(taskQueue());
      const state = await gc.status(chainId); // NotFound → exit 1 naming the chain
      const creds = await credentialsFor(ctx, opts, state.workload);
      const after = await gc.refreshCredential(chainId, creds);
      out().print(`refreshed chain ${chainId}: ${after.status}`, { chainId, status: after.status });
      setExit(Exit.Ok);
    });

  program
    .command('revoke')
    .description('revoke one chain (--chain) or a workload and all its running chains (--workload)')
    .option('--chain <id>', 'chain id')
    .option('--workload <sub>', 'workload subject')
    .option('--reason <text>', 'why (recorded in receipts and status)', 'revoked by operator')
    .option('--by <who>', 'who revokes (recorded)')
    .action(async (opts: { chain?: string; workload?: string; reason: string; by?: string }) => {
      if (Boolean(opts.chain) === Boolean(opts.workload)) {
        throw new GovernorError(ErrorCode.InvalidInput, 'exactly one of --chain or --workload is required', '--chain');
      }
      const gc = await client(taskQueue());
      if (opts.chain) {
        await gc.status(opts.chain); // NotFound → exit 1 naming the chain
        await gc.revoke(opts.chain, { reason: opts.reason, by: opts.by });
        out().print(`revoked chain ${opts.chain}`, { chainId: opts.chain, revoked: true });
      } else {
        const r = await gc.revokeWorkload({ workload: opts.workload!, reason: opts.reason, by: opts.by });
        const signalled = r.chains.join(', ') || 'none';
        out().print(`revoked workload ${opts.workload}; running chains signalled: ${signalled}`, {
          workload: opts.workload,
          chains: r.chains,
          revocations: r.revocations,
        });
      }
      setExit(Exit.Ok);
    });

  program
    .command('demo')
    .description('run the example chains (allowed, denied, escalated) as agent:release-bot')
    .option('--task-queue <name>', 'governor task queue', taskQueue())
    .action(async (opts: { taskQueue: string }) => {
      const o = out();
      const gc = await client(opts.taskQueue);
      if (!(await gc.workerPolling())) {
        throw new GovernorError(
          ErrorCode.NoWorker,
          `no governor worker polls task queue ${opts.taskQueue}; start the governor with \`npx governor up\` ` +
            '(dev server, UI and worker), or `npx governor worker` beside a running server (nothing was started)',
          '--task-queue',
        );
      }
      const examples = path.join(projectRoot(), 'examples', 'chains');
      const results: DemoResult[] = [];
      for (const name of ['deploy-staging.yaml', 'drop-prod-table.yaml', 'deploy-prod.yaml']) {
        const chain = loadChainFile(path.join(examples, name));
        const creds = await credentialsFor(ctx, { as: chain.workload }, chain.workload);
        const handle = await gc.start(chain, creds);
        const state = await untilSettled(gc, handle.workflowId);
        const { status, reason, pendingRoles } = state;
        results.push({ file: name, chainId: handle.workflowId, status, reason, pendingRoles });
        if (!o.json) {
          const why = state.reason ? `  (${state.reason})` : '';
          process.stdout.write(`${name.padEnd(22)} ${state.status.padEnd(17)} ${handle.workflowId}${why}\n`);
          if (state.status === 'AwaitingApproval') {
            process.stdout.write(
              `  needs ${state.pendingRoles?.join(', ')}: npx governor approve ${handle.workflowId} ` +
                '--as alice --roles sre-lead (and a second approver)\n',
            );
          }
        }
      }
      if (o.json) o.print('', { results });
      else process.stdout.write("Open the Temporal UI (http://localhost:8233) to read each chain's history.\n");
      setExit(Exit.Ok);
    });
}

interface RunOpts {
  token?: string;
  attestation?: string;
  as?: string;
  chainId?: string;
  taskQueue: string;
  wait?: boolean;
}

interface ListOpts {
  status?: string;
  workload?: string;
  awaitingApproval?: boolean;
  breakGlass?: boolean;
  limit: string;
}

interface VoteOpts {
  step?: string;
  token?: string;
  as?: string;
  roles?: string;
  reason?: string;
  justification?: string;
  printToken?: boolean;
}

interface DemoResult {
  file: string;
  chainId: string;
  status: string;
  reason?: string;
  pendingRoles?: string[];
}

/** `approve|deny --as <sub> --roles <r,…>`: a local development approval token for the step awaiting approval. */
async function developmentVote(
  ctx: CommandContext,
  gc: GovernorClient,
  chainId: string,
  decision: 'approve' | 'deny',
  opts: VoteOpts,
): Promise<string> {
  if (!opts.as) {
    throw new GovernorError(ErrorCode.InvalidInput, '--token or --as <sub> --roles <r,…> is required', '--token');
  }
  const roles = (opts.roles ?? '')
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  if (roles.length === 0) {
    throw new GovernorError(ErrorCode.InvalidInput, '--roles: at least one role is required with --as', '--roles');
  }
  const state = await gc.status(chainId);
  const pending = state.steps.find((st) => st.approval?.outcome === 'pending');
  if (!pending?.approval) {
    throw new GovernorError(ErrorCode.InvalidInput, `chain ${chainId} has no step awaiting approval`, 'chainId');
  }
  if (opts.step && opts.step !== pending.id) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `--step: step ${opts.step} is not awaiting approval (${pending.id} is)`,
      '--step',
    );
  }
  return issueApproval({
    home: ctx.home(),
    sub: opts.as,
    roles,
    chainId,
    stepId: pending.id,
    stepDigest: pending.approval.stepDigest,
    decision,
    reason: opts.reason,
    justification: opts.justification,
  });
}
