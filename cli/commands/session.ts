import fs from 'node:fs';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import type { ProposeOutcome } from '../../contracts/session';
import { issueCredential } from '../../identity';
import { Exit, type CommandContext } from '../context';
import { credentialsFor, governorClient, taskQueue } from './chains';

/** `governor session open|propose|await|close`: agent sessions (DESIGN §9) from the command line. */

interface TokenOpts {
  token?: string;
  attestation?: string;
  as?: string;
  taskQueue: string;
}

/** A JSON or YAML document from `--step <json>` or `--step-file <file>` (exactly one). */
function readDocument(inline: string | undefined, file: string | undefined, flag: string): unknown {
  if ((inline === undefined) === (file === undefined))
    throw new GovernorError(ErrorCode.InvalidInput, `exactly one of ${flag} or ${flag}-file is required`, flag);
  let text = inline;
  if (file !== undefined) {
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      throw new GovernorError(ErrorCode.InvalidInput, `${flag}-file: cannot read ${file}`, `${flag}-file`);
    }
  }
  try {
    return parseYaml(text!) as unknown; // YAML is a superset of JSON
  } catch {
    throw new GovernorError(ErrorCode.InvalidInput, `${flag}: not JSON or YAML`, flag);
  }
}

/** One line for an outcome. */
function describeOutcome(o: ProposeOutcome): string {
  switch (o.outcome) {
    case 'executed':
      return `step ${o.stepId}: executed (output digest ${o.outputDigest})${o.output !== undefined ? `\noutput: ${JSON.stringify(o.output)}` : ''}`;
    case 'denied':
      return `step ${o.stepId}: denied: ${o.reason}${o.determiningPolicies.length ? ` (${o.determiningPolicies.join(', ')})` : ''}`;
    case 'awaiting-approval':
      return `step ${o.stepId}: awaiting approval${o.pendingRoles?.length ? ` from ${o.pendingRoles.join(' or ')}` : ''}`;
    case 'failed':
      return `step ${o.stepId}: failed: ${o.reason}`;
  }
}

const exitFor = (o: ProposeOutcome): number =>
  o.outcome === 'denied' || o.outcome === 'failed' ? Exit.Denied : Exit.Ok;

export function registerSessionCommands(program: Command, ctx: CommandContext): void {
  const { out, setExit } = ctx;
  const session = program.command('session').description('agent sessions: open, propose steps one at a time, close');
  const tokens = (c: Command) =>
    c
      .option('--token <jwt>', 'the workload credential')
      .option('--attestation <jwt>', 'the workload attestation (with --token)')
      .option('--as <workload>', 'issue a local development credential (and attestation) for this workload')
      .option('--task-queue <name>', 'governor task queue', taskQueue());

  tokens(
    session
      .command('open')
      .description('open a session (optionally with declared steps)')
      .requiredOption('--workload <sub>', 'the workload the session belongs to')
      .option('--owner <id>', "the workload's owner (never an approver of its steps)")
      .option('--summary <text>', 'what the session is for')
      .option('--steps-file <file>', 'declared steps: a JSON or YAML list')
      .option('--session-id <id>', 'session (workflow) id'),
  ).action(
    async (
      opts: TokenOpts & { workload: string; owner?: string; summary?: string; stepsFile?: string; sessionId?: string },
    ) => {
      const steps = opts.stepsFile !== undefined ? readDocument(undefined, opts.stepsFile, '--steps') : [];
      if (!Array.isArray(steps))
        throw new GovernorError(ErrorCode.InvalidInput, '--steps-file: must hold a list', '--steps-file');
      const creds = await credentialsFor(ctx, opts, opts.workload);
      const gc = await governorClient(ctx, opts.taskQueue);
      const { sessionId } = await gc.openSession({
        workload: opts.workload,
        owner: opts.owner,
        summary: opts.summary,
        steps,
        ...creds,
        sessionId: opts.sessionId,
      });
      out().print(`opened session ${sessionId}`, { sessionId });
      setExit(Exit.Ok);
    },
  );

  tokens(
    session
      .command('propose <sessionId>')
      .description('propose one step; prints its outcome (exit 2 when denied or failed)')
      .option('--step <json>', 'the step, as JSON or YAML')
      .option('--step-file <file>', 'the step, from a JSON or YAML file'),
  ).action(async (sessionId: string, opts: TokenOpts & { step?: string; stepFile?: string }) => {
    const step = readDocument(opts.step, opts.stepFile, '--step');
    const gc = await governorClient(ctx, opts.taskQueue);
    const workload = opts.as ?? (await gc.status(sessionId)).workload;
    const creds = await credentialsFor(ctx, opts, workload);
    const outcome = await gc.proposeStep(sessionId, {
      step,
      credential: creds.credential,
      attestation: creds.attestation,
    });
    out().print(describeOutcome(outcome), outcome);
    setExit(exitFor(outcome));
  });

  session
    .command('await <sessionId> <stepId>')
    .description('wait for the final outcome of a step (an escalated one: until decided and executed)')
    .option('--token <jwt>', 'the workload credential')
    .option('--as <workload>', 'issue a local development credential for this workload')
    .option('--task-queue <name>', 'governor task queue', taskQueue())
    .action(async (sessionId: string, stepId: string, opts: { token?: string; as?: string; taskQueue: string }) => {
      const gc = await governorClient(ctx, opts.taskQueue);
      const credential =
        opts.token ??
        (await issueCredential({ home: ctx.home(), sub: opts.as ?? (await gc.status(sessionId)).workload }));
      const outcome = await gc.awaitStep(sessionId, stepId, { credential });
      out().print(describeOutcome(outcome), outcome);
      setExit(exitFor(outcome));
    });

  session
    .command('close <sessionId>')
    .description('close the session; prints its result with the final signed checkpoint')
    .option('--reason <text>', 'why')
    .option('--task-queue <name>', 'governor task queue', taskQueue())
    .action(async (sessionId: string, opts: { reason?: string; taskQueue: string }) => {
      const gc = await governorClient(ctx, opts.taskQueue);
      const result = await gc.closeSession(sessionId, opts.reason !== undefined ? { reason: opts.reason } : {});
      out().print(`session ${sessionId}: ${result.status}${result.reason ? ` (${result.reason})` : ''}`, result);
      setExit(result.status === 'Completed' ? Exit.Ok : Exit.Denied);
    });
}
