import fs from 'node:fs';
import path from 'node:path';
import { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { startInbox, type Inbox } from '../../inbox/server';
import { loadBundle } from '../../policies/bundle';
import { connectClient, loadTemporalSettings } from '../../runtime/connection';
import { defaultPoliciesDir } from '../../workers/worker';
import { Exit, type CommandContext } from '../context';
import { taskQueue } from './chains';
import { waitForShutdown } from './runtime';

/** `governor inbox`: the approval inbox web page (DESIGN §10); `governor up` starts it too (`runInbox`). */

export interface InboxRunOptions {
  port: number;
  host?: string;
  policies?: string;
  taskQueue?: string;
  temporalUiUrl?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Temporal address override (`up` passes its dev server's). */
  address?: string;
}

/** Starts the inbox on a running governor: its manifest from the policy bundle, its secret from the environment. */
export async function runInbox(
  ctx: CommandContext,
  opts: InboxRunOptions,
): Promise<Inbox & { closeAll(): Promise<void> }> {
  const manifest = loadBundle(
    path.resolve(opts.policies ?? process.env.GOVERNOR_POLICIES ?? defaultPoliciesDir()),
  ).manifest;
  const secretEnv = manifest.inbox?.oidc?.clientSecretEnv;
  const clientSecret = secretEnv ? process.env[secretEnv] : undefined;
  if (secretEnv && !clientSecret) {
    throw new GovernorError(ErrorCode.InvalidInput, `inbox.oidc.clientSecretEnv: ${secretEnv} is not set`, secretEnv);
  }
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
    throw new GovernorError(ErrorCode.InvalidInput, '--tls-cert and --tls-key go together', '--tls-cert');
  }
  const settings = loadTemporalSettings(opts.address ? { address: opts.address } : {});
  const connection = await connectClient(settings);
  const dataConverter = ctx.dataConverter();
  const client = new Client({ connection, namespace: settings.namespace, ...(dataConverter ? { dataConverter } : {}) });
  let inbox: Inbox;
  try {
    inbox = await startInbox({
      client,
      taskQueue: opts.taskQueue ?? taskQueue(),
      manifest,
      home: ctx.home(),
      namespace: settings.namespace,
      temporalUiUrl: opts.temporalUiUrl ?? process.env.GOVERNOR_TEMPORAL_UI_URL ?? 'http://localhost:8233',
      host: opts.host,
      port: opts.port,
      clientSecret,
      ...(opts.tlsCert && opts.tlsKey
        ? { tls: { cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) } }
        : {}),
      log: (line) => process.stderr.write(`inbox: ${line}\n`),
    });
  } catch (err) {
    await connection.close();
    throw err;
  }
  return {
    ...inbox,
    async closeAll() {
      await inbox.close();
      await connection.close();
    },
  };
}

/** Adds `governor inbox`. */
export function registerInboxCommands(program: Command, ctx: CommandContext): void {
  program
    .command('inbox')
    .description(
      'serve the approval inbox: chains awaiting your roles, approve/deny with a reason, ties to settle ' +
        '(OIDC sign-in from the manifest `inbox.oidc`; development sign-in without one, refused when NODE_ENV=production)',
    )
    .option('--port <port>', 'port', '8234')
    .option('--host <ip>', 'address to bind', '127.0.0.1')
    .option('--policies <dir>', 'policy bundle whose manifest configures the inbox')
    .option('--task-queue <name>', 'governor task queue', taskQueue())
    .option('--temporal-ui <url>', 'Temporal UI base URL for chain links')
    .option('--tls-cert <file>', 'serve over TLS with this certificate (PEM); cookies are then Secure')
    .option('--tls-key <file>', 'the TLS private key (PEM)')
    .action(
      async (opts: {
        port: string;
        host: string;
        policies?: string;
        taskQueue: string;
        temporalUi?: string;
        tlsCert?: string;
        tlsKey?: string;
      }) => {
        const port = Number(opts.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) {
          throw new GovernorError(ErrorCode.InvalidInput, '--port: must be a port number 0-65535', '--port');
        }
        const inbox = await runInbox(ctx, { ...opts, port, temporalUiUrl: opts.temporalUi });
        ctx.out().print(`approval inbox on ${inbox.url}`, { url: inbox.url });
        const signal = await waitForShutdown();
        process.stderr.write(`${signal}: stopping the inbox…\n`);
        await inbox.closeAll();
        ctx.setExit(Exit.Ok);
      },
    );
}
