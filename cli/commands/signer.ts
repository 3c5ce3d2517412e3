import path from 'node:path';
import type { Command } from 'commander';
import { keyPaths } from '../../identity/keys';
import { startSigner } from '../../identity/signer';
import { Exit, type CommandContext } from '../context';
import { waitForShutdown } from './runtime';

/**
 * `governor signer --socket <path>`: holds the receipt (and optionally the approver) private key and
 * signs for the workers of this host over a Unix socket (mode 0600); identity/signer.ts. Workers use it
 * with GOVERNOR_RECEIPT_SIGNER=<path>, approvers with GOVERNOR_APPROVER_SIGNER=<path>.
 */
export function registerSignerCommands(program: Command, ctx: CommandContext): void {
  program
    .command('signer')
    .description(
      'hold the receipt (and approver) private key and sign for the workers of this host over a Unix socket (mode 0600)',
    )
    .requiredOption('--socket <path>', 'Unix socket to listen on (its folder must be ours, not open to others)')
    .option('--receipt-key <file>', 'receipt private key file (mode 0600; default <GOVERNOR_HOME>/keys)')
    .option('--approver-key <file>', 'approver private key file (mode 0600); without it, no approver key is held')
    .action(async (opts: { socket: string; receiptKey?: string; approverKey?: string }) => {
      const receipt = opts.receiptKey ?? keyPaths(ctx.home(), 'receipt').privateKeyPath;
      const signer = await startSigner({
        socket: path.resolve(opts.socket),
        keys: { receipt, ...(opts.approverKey ? { approver: opts.approverKey } : {}) },
        log: (line) => process.stderr.write(`governor signer: ${line}\n`),
      });
      ctx.out().print(`signer listening on ${signer.socket}`, { socket: signer.socket, kids: signer.kids });
      const signal = await waitForShutdown();
      process.stderr.write(`${signal}: stopping signer…\n`);
      await signer.close();
      ctx.setExit(Exit.Ok);
    });
}
