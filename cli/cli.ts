import { Command, CommanderError } from 'commander';
import type { DataConverter } from '@temporalio/common';
import { ErrorCode, isGovernorError } from '../contracts/errors';
import { CODEC_KEYS_ENV, loadCodec } from '../runtime/codec';
import { registerChainCommands } from './commands/chains';
import { registerClusterCommands } from './commands/cluster';
import { registerCodecCommands } from './commands/codec';
import { registerCoordinationCommands } from './commands/coordination';
import { registerIdentityCommands } from './commands/identity';
import { registerFleetCommands } from './commands/fleet';
import { registerInboxCommands } from './commands/inbox';
import { registerMcpCommands } from './commands/mcp';
import { registerPolicyCommands } from './commands/policy';
import { registerRuntimeCommands, runTemporalCli, waitForShutdown } from './commands/runtime';
import { registerVerifyCommands } from './commands/verify';
import { registerSessionCommands } from './commands/session';
import { registerSignerCommands } from './commands/signer';
import { registerTransparencyCommands } from './commands/transparency';
import { Exit, governorHome, makeOut, type CommandContext, type Out } from './context';
import { shutdownProcessTracing } from '../runtime/tracing';

/**
 * The operator CLI (`bin/governor.js`): `main` parses the arguments and returns the exit code; each
 * command group lives in `commands/` and receives the shared context (output, exit code, home, codec).
 */

export { Exit, terminalSafe, type Out } from './context';

/** Maps an error to the CLI exit code. */
export function exitCodeFor(err: unknown): number {
  if (isGovernorError(err) && (err.code === ErrorCode.TemporalUnreachable || err.code === ErrorCode.NoWorker)) {
    return Exit.Unreachable;
  }
  return Exit.BadInput;
}

/** Builds the commander program; every action resolves to an exit code. */
export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('governor')
    .description('Temporal Governor: governed execution of agent and service action chains on Temporal')
    .option('--json', 'machine-readable output')
    .option(
      '--codec-keys <file>',
      `payload encryption key file (default $${CODEC_KEYS_ENV}; encryption is off when neither is set)`,
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const out = (): Out => makeOut(Boolean(program.opts().json));
  // Payload encryption: the same key file for the worker, every client command and verify.
  const codecKeys = (): string | undefined =>
    (program.opts().codecKeys as string | undefined) || process.env[CODEC_KEYS_ENV] || undefined;
  const dataConverter = (): DataConverter | undefined => {
    const file = codecKeys();
    return file ? loadCodec(file).dataConverter : undefined;
  };
  const ctx: CommandContext = { out, setExit, home: governorHome, dataConverter };

  registerPolicyCommands(program, { out, setExit, home: governorHome, codecKeys });
  registerVerifyCommands(program, { out, setExit, home: governorHome, codecKeys });
  registerCodecCommands(program, { out, setExit, home: governorHome, codecKeys, waitForShutdown });
  registerRuntimeCommands(program, ctx);
  registerIdentityCommands(program, ctx);
  registerChainCommands(program, ctx);
  registerCoordinationCommands(program, ctx);
  registerSessionCommands(program, ctx);
  registerMcpCommands(program, ctx);
  registerInboxCommands(program, ctx);
  registerClusterCommands(program, ctx);
  registerSignerCommands(program, ctx);
  registerFleetCommands(program, ctx);
  registerTransparencyCommands(program, ctx);
  return program;
}

/** CLI entry point: returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let code: number = Exit.Ok;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    // Every argument after `temporal` is the Temporal CLI's (its own --help, --output json, …).
    if (argv[2] === 'temporal') return await runTemporalCli(argv.slice(3));
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? Exit.Ok : Exit.BadInput;
    }
    const json = argv.includes('--json');
    const data = isGovernorError(err) ? { code: err.code, field: err.field } : undefined;
    makeOut(json).error((err as Error).message, data);
    return exitCodeFor(err);
  } finally {
    // Spans of the chains this command started reach the collector before the process exits.
    await shutdownProcessTracing();
  }
}
