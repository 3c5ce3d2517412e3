import { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { DEFAULT_TASK_QUEUE } from '../../contracts/status';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { loadGatewayConfig } from '../../gateway/config';
import {
  ATTESTATION_ENV,
  ATTESTATION_FILE_ENV,
  CREDENTIAL_ENV,
  CREDENTIAL_FILE_ENV,
  secretFromEnv,
  startGateway,
} from '../../gateway/run';
import { governorSessionPort } from '../../gateway/session-port';
import { loadBundle } from '../../policies/bundle';
import { connectClient, connectWorker, loadTemporalSettings } from '../../runtime/connection';
import { processTracingFromEnv } from '../../runtime/tracing';
import { GovernorClient } from '../../sdk/client';
import { defaultPoliciesDir } from '../../workers/worker';
import { Exit, type CommandContext } from '../context';
import { waitForShutdown } from './runtime';

/** `governor mcp`: the MCP gateway in front of upstream MCP servers (README "Governing an AI agent"). */

interface McpOpts {
  config: string;
  http?: string;
  host: string;
  policies: string;
  taskQueue: string;
}

/** Diagnostics go to stderr only: on stdio, stdout is the MCP channel. Never credentials or arguments. */
function stderrLog(message: string, fields?: Record<string, unknown>): void {
  process.stderr.write(`governor mcp: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`);
}

export function registerMcpCommands(program: Command, ctx: CommandContext): void {
  program
    .command('mcp')
    .description(
      'MCP gateway: serve the tools of upstream MCP servers, every call governed as a step of the agent session',
    )
    .requiredOption('--config <file>', 'gateway configuration (JSON or YAML): upstreams, escalationWaitMs, ...')
    .option('--http <port>', 'serve Streamable HTTP on this port (default: stdio)')
    .option('--host <address>', 'HTTP listen address', '127.0.0.1')
    .option(
      '--policies <dir>',
      'policy bundle folder (mapping rules)',
      process.env.GOVERNOR_POLICIES ?? defaultPoliciesDir(),
    )
    .option('--task-queue <queue>', "the governor's task queue", process.env.GOVERNOR_TASK_QUEUE ?? DEFAULT_TASK_QUEUE)
    .action(async (opts: McpOpts) => {
      const config = loadGatewayConfig(opts.config);
      const bundle = loadBundle(opts.policies);
      let http: { port: number; host: string } | undefined;
      if (opts.http !== undefined) {
        const port = Number(opts.http);
        if (!Number.isInteger(port) || port < 0 || port > 65535) {
          throw new GovernorError(ErrorCode.InvalidInput, '--http: must be a port number', '--http');
        }
        http = { port, host: opts.host };
      }
      // stdio: the agent's credential comes from the environment (or files), read once and never logged.
      const identity = http
        ? undefined
        : {
            credential: secretFromEnv(CREDENTIAL_ENV, CREDENTIAL_FILE_ENV),
            attestation: secretFromEnv(ATTESTATION_ENV, ATTESTATION_FILE_ENV),
          };
      const settings = loadTemporalSettings();
      const dataConverter = ctx.dataConverter();
      const clientConnection = await connectClient(settings);
      // With OTEL_* set: a span per tools/call whose context reaches the session's step (DESIGN §12).
      const tracing = processTracingFromEnv('temporal-governor-mcp');
      const client = new Client({
        connection: clientConnection,
        namespace: settings.namespace,
        ...(dataConverter ? { dataConverter } : {}),
        ...(tracing ? { interceptors: tracing.clientInterceptors } : {}),
      });
      const port = governorSessionPort(new GovernorClient(client, opts.taskQueue));
      const connection = await connectWorker(settings);
      const gateway = await startGateway({
        config,
        bundle,
        home: ctx.home(),
        port,
        connection,
        namespace: settings.namespace,
        ...(dataConverter ? { dataConverter } : {}),
        ...(http ? { http } : {}),
        ...(identity ? { identity } : {}),
        log: stderrLog,
        ...(tracing ? { tracing: true } : {}),
      });
      stderrLog(gateway.url ? `serving MCP on ${gateway.url}` : 'serving MCP on stdio', {
        upstreams: Object.keys(config.upstreams),
        taskQueue: config.taskQueue,
      });
      const signal = waitForShutdown().then((s) => gateway.close(`the MCP gateway stopped (${s})`));
      await Promise.race([gateway.done, signal]);
      await gateway.done;
      await connection.close().catch(() => undefined);
      await clientConnection.close().catch(() => undefined);
      ctx.setExit(Exit.Ok);
    });
}
