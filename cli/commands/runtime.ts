import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Command } from 'commander';
import type { DataConverter } from '@temporalio/common';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { DEFAULT_TASK_QUEUE } from '../../contracts/status';
import { initKeys } from '../../identity';
import { connectWorker, loadTemporalSettings } from '../../runtime/connection';
import { createLogger, installRuntimeLogger } from '../../runtime/logger';
import { freePort, startDevServer, type DevServer } from '../../workers/dev-server';
import { decisionLogSettingsFromEnv } from '../../runtime/decision-log';
import { Operations } from '../../workers/operations';
import { startTracing, tracingRequested } from '../../runtime/tracing';
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
  metricsPort?: string;
  metricsHost?: string;
  decisionLog?: string;
  decisionLogUrl?: string;
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
    .option('--no-watch-policies', 'do not pick up bundle changes without a restart')
    .option(
      '--metrics-port <port>',
      '/metrics (Prometheus), /healthz and /readyz on this port (GOVERNOR_METRICS_PORT; 0: any free port)',
      process.env.GOVERNOR_METRICS_PORT,
    )
    .option(
      '--metrics-host <ip>',
      'interface of the metrics port (GOVERNOR_METRICS_HOST, default 127.0.0.1)',
      process.env.GOVERNOR_METRICS_HOST,
    )
    .option('--decision-log <file>', 'every decision as a JSON line, rotated by size (GOVERNOR_DECISION_LOG)')
    .option('--decision-log-url <url>', 'POST decision lines in batches to this URL (GOVERNOR_DECISION_LOG_URL)');
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

/** The operations settings of `worker`/`up` (flags over environment). */
async function operationsOf(opts: WorkerOpts): Promise<Operations> {
  const metricsPort =
    opts.metricsPort !== undefined && opts.metricsPort !== ''
      ? opts.metricsPort === '0'
        ? 0
        : parsePort(opts.metricsPort, '--metrics-port')
      : undefined;
  let decisionLog;
  try {
    decisionLog = decisionLogSettingsFromEnv();
  } catch (err) {
    throw new GovernorError(ErrorCode.InvalidInput, (err as Error).message, 'decision log');
  }
  if (opts.decisionLog) decisionLog.file = opts.decisionLog;
  if (opts.decisionLogUrl) decisionLog.url = opts.decisionLogUrl;
  return new Operations({
    ...(metricsPort !== undefined ? { metricsPort } : {}),
    ...(opts.metricsHost ? { metricsHost: opts.metricsHost } : {}),
    decisionLog,
    // The SDK's own worker metrics: Core's exporter on a loopback port, served through /metrics.
    ...(metricsPort !== undefined ? { sdkMetricsAddress: `127.0.0.1:${await freePort()}` } : {}),
  });
}

async function runWorker(run: WorkerRun): Promise<{ stop(): Promise<void>; opsUrl?: string }> {
  const { opts, out, dataConverter } = run;
  const logger = createLogger({ name: 'governor-worker' });
  const ops = await operationsOf(opts);
  installRuntimeLogger(logger, {
    ...(ops.settings.sdkMetricsAddress ? { sdkMetricsAddress: ops.settings.sdkMetricsAddress } : {}),
  });
  const settings = loadTemporalSettings(run.addressOverride ? { address: run.addressOverride } : {});
  // OpenTelemetry traces, off unless the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables ask for them.
  const tracing = tracingRequested() ? startTracing({ serviceName: 'temporal-governor-worker' }) : undefined;
  const connection = await connectWorker(settings);
  const extraProtected = (process.env.GOVERNOR_HTTP_PROTECTED ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  const { worker, policies, fleet } = await createGovernorWorker({
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
    observer: ops.observer,
    ...(tracing ? { tracing: tracing.worker } : {}),
  });
  const running = worker.run();
  const opsServer = await ops.start({
    worker,
    connection,
    namespace: settings.namespace,
    taskQueue: opts.taskQueue,
    policies,
    policiesDir: path.resolve(opts.policies),
    home: run.home,
    ...(fleet ? { fleet } : {}),
  });
  if (opsServer)
    out.print(`metrics ${opsServer.url}/metrics, health ${opsServer.url}/healthz, readiness ${opsServer.url}/readyz`, {
      metricsUrl: `${opsServer.url}/metrics`,
      healthUrl: `${opsServer.url}/healthz`,
      readyUrl: `${opsServer.url}/readyz`,
    });
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
    ...(opsServer ? { opsUrl: opsServer.url } : {}),
    async stop() {
      // Temporal's Runtime also reacts to SIGINT/SIGTERM by shutting workers down itself.
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await ops.close();
      await tracing?.shutdown().catch(() => undefined);
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
    // `up` always serves metrics and health (any free port unless --metrics-port or GOVERNOR_METRICS_PORT says).
    if (opts.metricsPort === undefined) opts.metricsPort = '0';
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
    const urls = {
      temporalAddress: server.address,
      uiUrl: server.uiUrl ?? null,
      inboxUrl: inbox?.url ?? null,
      metricsUrl: worker.opsUrl ? `${worker.opsUrl}/metrics` : null,
      healthUrl: worker.opsUrl ? `${worker.opsUrl}/healthz` : null,
      readyUrl: worker.opsUrl ? `${worker.opsUrl}/readyz` : null,
      taskQueue: opts.taskQueue,
    };
    // --json: one last line with every URL, printed once all of them serve.
    if (o.json) o.print('governor up', { up: true, ...urls });
    else {
      process.stdout.write(
        [
          '',
          `Temporal UI:  ${server.uiUrl}`,
          ...(inbox ? [`Approval inbox: ${inbox.url}`] : []),
          ...(worker.opsUrl
            ? [`Metrics:      ${urls.metricsUrl}`, `Health:       ${urls.healthUrl}`, `Readiness:    ${urls.readyUrl}`]
            : []),
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
