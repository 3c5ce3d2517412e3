import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { DataConverter } from '@temporalio/common';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { verifyCredential } from '../identity';
import type { LoadedBundle } from '../policies/bundle';
import type { GatewayConfig } from './config';
import { createHttpGateway, type HttpGateway } from './http';
import { neverAllowedActions } from './policy-notes';
import { AgentSession, createGatewayServer, type AgentIdentity, type GatewayOptions } from './server';
import type { SessionPort } from './session-port';
import { Upstreams } from './upstreams';
import { createGatewayWorker } from './worker';

/**
 * Runs the MCP gateway: connects the upstreams, starts the gateway's Temporal worker (the `mcp`
 * executor), then serves MCP on stdio or Streamable HTTP. Used by `governor mcp` and by the tests.
 */

export const CREDENTIAL_ENV = 'GOVERNOR_AGENT_CREDENTIAL';
export const CREDENTIAL_FILE_ENV = 'GOVERNOR_AGENT_CREDENTIAL_FILE';
export const ATTESTATION_ENV = 'GOVERNOR_AGENT_ATTESTATION';
export const ATTESTATION_FILE_ENV = 'GOVERNOR_AGENT_ATTESTATION_FILE';

/** Reads a secret from `<NAME>` or the file `<NAME>_FILE` (exactly one); never echoes it. */
export function secretFromEnv(name: string, fileName: string, env: NodeJS.ProcessEnv = process.env): string {
  const direct = env[name];
  const file = env[fileName];
  if (direct && file) throw new GovernorError(ErrorCode.InvalidInput, `set ${name} or ${fileName}, not both`);
  if (direct) return direct.trim();
  if (file) {
    try {
      const value = fs.readFileSync(file, 'utf8').trim();
      if (value) return value;
    } catch {
      throw new GovernorError(ErrorCode.InvalidInput, `${fileName}: cannot read the file it names`);
    }
    throw new GovernorError(ErrorCode.InvalidInput, `${fileName}: the file is empty`);
  }
  throw new GovernorError(ErrorCode.InvalidInput, `the agent's ${name} (or ${fileName}) is required`);
}

/** Verifies an agent's credential with the bundle's trusted issuers; the session's workload is its `sub`. */
export function identifier(
  bundle: LoadedBundle,
  config: GatewayConfig,
  home: string,
): (credential: string, attestation: string) => Promise<AgentIdentity> {
  return async (credential, attestation) => {
    const verified = await verifyCredential(credential, bundle.manifest, { now: new Date(), home });
    return { credential, attestation, workload: config.sessionWorkload ?? verified.sub };
  };
}

export interface StartGatewayOptions {
  config: GatewayConfig;
  bundle: LoadedBundle;
  home: string;
  port: SessionPort;
  /** The Temporal connection of the gateway's worker. */
  connection: NativeConnection;
  namespace: string;
  dataConverter?: DataConverter;
  /** Streamable HTTP on this port (0: any free port); stdio when absent. */
  http?: { port: number; host?: string };
  /** stdio only: the agent's identity (from the environment). */
  identity?: { credential: string; attestation: string };
  log?: GatewayOptions['log'];
  progressIntervalMs?: number;
  /**
   * OpenTelemetry on (a tracer provider is registered, runtime/tracing.ts): the `mcp` executor's activity
   * continues the chain's trace. The gateway's span per `tools/call` needs only the provider, and reaches
   * the governor when the `port`'s client carries `tracingClientInterceptors()`.
   */
  tracing?: boolean;
}

export interface RunningGateway {
  /** The HTTP address (`http://host:port/mcp`) when serving HTTP. */
  url?: string;
  http?: HttpGateway;
  worker: Worker;
  upstreams: Upstreams;
  /** Closes the agent sessions (final checkpoints), the server, the worker and the upstreams. */
  close(reason?: string): Promise<void>;
  /** Settles when the gateway stopped (stdio: the client went away). */
  done: Promise<void>;
}

export async function startGateway(options: StartGatewayOptions): Promise<RunningGateway> {
  const { config, bundle } = options;
  const upstreams = new Upstreams(config);
  await upstreams.connectAll();
  const worker = await createGatewayWorker({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: config.taskQueue,
    upstreams,
    maxResultBytes: config.maxResultBytes,
    toolTimeoutMs: config.toolTimeoutMs,
    ...(options.dataConverter ? { dataConverter: options.dataConverter } : {}),
    ...(options.tracing ? { tracing: true } : {}),
  });
  const workerRun = worker.run();
  workerRun.catch((err: Error) => options.log?.('the gateway worker stopped', { error: err.message }));
  const gateway: GatewayOptions = {
    port: options.port,
    catalog: upstreams,
    rules: bundle.manifest.mcp.tools,
    neverAllowed: neverAllowedActions(bundle),
    taskQueue: config.taskQueue,
    toolTimeoutMs: config.toolTimeoutMs,
    escalationWaitMs: config.escalationWaitMs,
    ...(options.progressIntervalMs !== undefined ? { progressIntervalMs: options.progressIntervalMs } : {}),
    ...(options.log ? { log: options.log } : {}),
  };
  const identify = identifier(bundle, config, options.home);

  let stopped = false;
  let closeServer: (reason: string) => Promise<void>;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let url: string | undefined;
  let http: HttpGateway | undefined;
  const stopWorker = async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await workerRun.catch(() => undefined);
    await upstreams.close();
  };

  try {
    if (options.http) {
      http = createHttpGateway({ ...gateway, identify, maxBodyBytes: config.maxBodyBytes });
      const server = http.server;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.http!.port, options.http!.host ?? '127.0.0.1', () => resolve());
      });
      const address = server.address() as AddressInfo;
      url = `http://${options.http.host ?? '127.0.0.1'}:${address.port}/mcp`;
      closeServer = (reason) => http!.close(reason);
    } else {
      if (!options.identity) throw new GovernorError(ErrorCode.InvalidInput, 'stdio needs the agent credential');
      const identity = await identify(options.identity.credential, options.identity.attestation);
      const session = new AgentSession(options.port, identity, `MCP agent session (${identity.workload})`);
      const server = createGatewayServer(gateway, session);
      const transport = new StdioServerTransport();
      transport.onclose = () => {
        void close('the MCP client closed stdio');
      };
      await server.connect(transport);
      process.stdin.once('end', () => void close('the MCP client closed stdio'));
      closeServer = async (reason) => {
        await session
          .close(reason)
          .catch((err: Error) => options.log?.('could not close the session', { error: err.message }));
        await server.close().catch(() => undefined);
      };
    }
  } catch (err) {
    await stopWorker();
    throw err;
  }

  async function close(reason = 'the MCP gateway stopped'): Promise<void> {
    if (stopped) return done;
    stopped = true;
    try {
      await closeServer(reason);
    } finally {
      await stopWorker();
      resolveDone();
    }
  }

  return { ...(url ? { url } : {}), ...(http ? { http } : {}), worker, upstreams, close, done };
}
