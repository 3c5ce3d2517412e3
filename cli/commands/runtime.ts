import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Command } from 'commander';
import type { DataConverter } from '@temporalio/common';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { DEFAULT_TASK_QUEUE } from '../../contracts/status';
import { initKeys } from '../../identity';
import { connectWorker, loadTemporalSettings } from '../../runtime/connection';
import { createLogger, installRuntimeLogger } from '../../runtime/logger';
import { startDevServer, type DevServer } from '../../workers/dev-server';
import { resolveTemporalCli } from '../../workers/temporal-cli';
import { createGovernorWorker, defaultPoliciesDir } from '../../workers/worker';
import { Exit, type CommandContext, type Out } from '../context';
import { runInbox } from './inbox';

/** `governor server`, `governor worker` and `governor up`: the processes the governor runs as. */

/** Resolves when the process is asked to stop (SIGINT/SIGTERM), with the signal's name. */
export function waitForShutdown(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

interface ServerOpts {
  ip: string;
  port: string;
  uiPort: string;
  db: string;
  headless?: boolean;
  installOnly?: boolean;
}

function parsePort(value: string, field: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new GovernorError(ErrorCode.InvalidInput, `${field}: must be a port number 1-65535`, field);
  }
  return n;
}

async function runServer(opts: ServerOpts, out: Out, home: string): Promise<DevServer> {
  const server = await startDevServer({
    ip: opts.ip,
    port: parsePort(opts.port, '--port'),
    uiPort: parsePort(opts.uiPort, '--ui-port'),
    dbFile: path.resolve(opts.db || path.join(home, 'temporal.db')),
    headless: opts.headless,
    logFile: path.join(home, 'temporal-server.log'),
    onProgress: (m) => process.stderr.write(`${m}\n`),
  });
  const ui = server.uiUrl ? `, UI ${server.uiUrl}` : '';
  out.print(`Temporal dev server on ${server.address}${ui} (pid ${server.pid})`, {
    address: server.address,
    uiUrl: server.uiUrl ?? null,
    pid: server.pid,
  });
  return server;
}

/** Worker options shared by `worker` and `up`. */
interface WorkerOpts {
  taskQueue: string;
  policies: string;
  requireSignedPolicy?: boolean;
  policyTrustJwks?: string;
  shadowPolicies?: string;
  watchPolicies?: boolean;
}

function workerOptions(cmd: Command): Command {
  return cmd
    .option('--policies <dir>', 'policy bundle folder', process.env.GOVERNOR_POLICIES ?? defaultPoliciesDir())
    .option(
      '--require-signed-policy',
      'refuse unsigned, tampered or untrusted bundles',
      process.env.GOVERNOR_REQUIRE_SIGNED_POLICY === 'true',
    )
    .option(
      '--policy-trust-jwks <file>',
      'trusted policy-signing keys (default <GOVERNOR_HOME>/keys/policy-signing.jwks.json)',
    )
    .option('--shadow-policies <dir>', 'candidate bundle evaluated beside the active one, never enforced')
    .option('--no-watch-policies', 'do not pick up bundle changes without a restart');
}

interface WorkerRun {
  opts: WorkerOpts;
  out: Out;
  home: string;
  addressOverride?: string;
  dataConverter?: DataConverter;
  /** The dev server's own endpoints (UI, HTTP API), protected like the frontend address. */
  serverEndpoints?: string[];
}

async function runWorker(run: WorkerRun): Promise<{ stop(): Promise<void> }> {
  const { opts, out, dataConverter } = run;
  const logger = createLogger({ name: 'governor-worker' });
  installRuntimeLogger(logger);
  const settings = loadTemporalSettings(run.addressOverride ? { address: run.addressOverride } : {});
  const connection = await connectWorker(settings);
  const extraProtected = (process.env.GOVERNOR_HTTP_PROTECTED ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  const { worker } = await createGovernorWorker({
    connection,
    namespace: settings.namespace,
    taskQueue: opts.taskQueue,
    policiesDir: path.resolve(opts.policies),
    requireSignedPolicy: Boolean(opts.requireSignedPolicy),
    ...(opts.policyTrustJwks ? { policyTrustJwks: path.resolve(opts.policyTrustJwks) } : {}),
    ...(opts.shadowPolicies ? { shadowPoliciesDir: path.resolve(opts.shadowPolicies) } : {}),
    watchPolicies: opts.watchPolicies !== false,
    home: run.home,
    logger,
    ...(dataConverter ? { dataConverter } : {}),
    // Temporal's own endpoints are never http executor targets (SECURITY.md, "Confused deputy").
    http: { protectedAddresses: [settings.address, ...(run.serverEndpoints ?? []), ...extraProtected] },
  });
  const running = worker.run();
  const encryption = dataConverter ? ', payload encryption on' : '';
  out.print(
    `governor worker connected to ${settings.address} (namespace ${settings.namespace}, ` +
      `task queue ${opts.taskQueue}${encryption})`,
    {
      address: settings.address,
      namespace: settings.namespace,
      taskQueue: opts.taskQueue,
      payloadEncryption: Boolean(dataConverter),
    },
  );
  return {
    async stop() {
      // Temporal's Runtime also reacts to SIGINT/SIGTERM by shutting workers down itself.
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}

/** Runs the pinned Temporal CLI with `args`, its stdio the terminal's; resolves to its exit code. */
export async function runTemporalCli(args: string[]): Promise<number> {
  const binary = resolveTemporalCli({ onProgress: (m) => process.stderr.write(`${m}\n`) });
  const child = spawn(binary, args, { stdio: 'inherit' });
  return new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? Exit.BadInput));
  });
}

/** Adds `governor server`, `governor worker` and `governor up`. */
export function registerRuntimeCommands(program: Command, ctx: CommandContext): void {
  program
    .command('server')
    .description(
      'start the local Temporal dev server (SQLite under .governor/, UI on :8233, governor search attributes)',
    )
    .option('--ip <ip>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--db <file>', 'SQLite file (default <GOVERNOR_HOME>/temporal.db)', '')
    .option('--headless', 'no Web UI')
    .option('--install-only', 'only make sure the pinned Temporal CLI is available, then exit')
    .action(async (opts: ServerOpts) => {
      if (opts.installOnly) {
        const binary = resolveTemporalCli({ onProgress: (m) => process.stderr.write(`${m}\n`) });
        ctx.out().print(`temporal CLI: ${binary}`, { path: binary });
        return ctx.setExit(Exit.Ok);
      }
      const server = await runServer(opts, ctx.out(), ctx.home());
      const signal = await waitForShutdown();
      process.stderr.write(`${signal}: stopping Temporal dev server…\n`);
      await server.stop();
      ctx.setExit(Exit.Ok);
    });

  // Listed for --help; `main` hands `governor temporal …` to the Temporal CLI before commander parses it.
  program
    .command('temporal')
    .description('run the pinned Temporal CLI (the one `governor up` uses), e.g. `governor temporal workflow list`')
    .argument('[args...]', 'arguments for the Temporal CLI')
    .allowUnknownOption()
    .action(async (args: string[]) => ctx.setExit(await runTemporalCli(args)));

  const workerCommand = program
    .command('worker')
    .description(
      'run the governor worker (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* apply)',
    )
    .option('--task-queue <name>', 'task queue', process.env.GOVERNOR_TASK_QUEUE ?? DEFAULT_TASK_QUEUE);
  workerOptions(workerCommand).action(async (opts: WorkerOpts) => {
    const worker = await runWorker({ opts, out: ctx.out(), home: ctx.home(), dataConverter: ctx.dataConverter() });
    const signal = await waitForShutdown();
    process.stderr.write(`${signal}: draining worker…\n`);
    await worker.stop();
    ctx.setExit(Exit.Ok);
  });

  const upCommand = program
    .command('up')
    .description('server + worker together (the embedded default); creates development keys on first start')
    .option('--port <port>', 'frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--task-queue <name>', 'task queue', DEFAULT_TASK_QUEUE)
    .option('--inbox-port <port>', 'approval inbox port (0: none)', '8234');
  workerOptions(upCommand).action(async (opts: WorkerOpts & { port: string; uiPort: string; inboxPort: string }) => {
    const o = ctx.out();
    const home = ctx.home();
    const keys = await initKeys(home);
    if (keys.created.length > 0) process.stderr.write(`created development keys in ${keys.dir}\n`);
    const converter = ctx.dataConverter(); // a bad key file fails before the server starts
    const server = await runServer({ ip: '127.0.0.1', port: opts.port, uiPort: opts.uiPort, db: '' }, o, home);
    let worker;
    try {
      worker = await runWorker({
        opts,
        out: o,
        home,
        addressOverride: server.address,
        dataConverter: converter,
        serverEndpoints: [`localhost:${opts.uiPort}`, server.httpAddress],
      });
    } catch (err) {
      await server.stop();
      throw err;
    }
    // The approval inbox (DESIGN §10); a failure to start it leaves the server and worker running.
    let inbox: Awaited<ReturnType<typeof runInbox>> | undefined;
    if (opts.inboxPort !== '0') {
      try {
        inbox = await runInbox(ctx, {
          port: parsePort(opts.inboxPort, '--inbox-port'),
          policies: opts.policies,
          taskQueue: opts.taskQueue,
          temporalUiUrl: server.uiUrl,
          address: server.address,
        });
      } catch (err) {
        process.stderr.write(`approval inbox not started: ${(err as Error).message}\n`);
      }
    }
    if (!o.json) {
      process.stdout.write(
        [
          '',
          `Temporal UI:  ${server.uiUrl}`,
          ...(inbox ? [`Approval inbox: ${inbox.url}`] : []),
          'Try next:',
          '  npx governor demo                         # allowed, denied and escalated example chains',
          '  npx governor run examples/chains/deploy-staging.yaml --as agent:release-bot --wait',
          '  npx governor list',
          'Ctrl-C stops the worker and the server; state persists in .governor/.',
          '',
        ].join('\n'),
      );
    }
    const signal = await waitForShutdown();
    process.stderr.write(`${signal}: stopping…\n`);
    await inbox?.closeAll();
    await worker.stop();
    await server.stop();
    ctx.setExit(Exit.Ok);
  });
}
