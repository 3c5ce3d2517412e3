import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { SEARCH_ATTRIBUTES_FOR_CLI } from '../contracts/search-attributes';
import { resolveTemporalCli } from './temporal-cli';

/** Options of the local Temporal dev server. */
export interface DevServerOptions {
  ip?: string;
  port?: number;
  uiPort?: number;
  /**
   * Port of the frontend's HTTP API (default: `port` + 10, i.e. 7243). Fixed, not the CLI's random
   * choice, so the http executor knows it as a Temporal endpoint it must never call.
   */
  httpPort?: number;
  /** SQLite file; omit for an in-memory server (tests). */
  dbFile?: string;
  headless?: boolean;
  namespace?: string;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Where server output goes (a file path); default: discarded unless it exits early. */
  logFile?: string;
  readyTimeoutMs?: number;
  onProgress?: (message: string) => void;
}

/** A running dev server. */
export interface DevServer {
  address: string;
  /** `ip:port` of the frontend's HTTP API. */
  httpAddress: string;
  uiUrl?: string;
  namespace: string;
  pid: number;
  stop(): Promise<void>;
}

/** Resolves when `port` on `ip` can be bound; rejects with PortInUse otherwise. */
export async function assertPortFree(ip: string, port: number, what: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE' || err.code === 'EACCES') {
        reject(
          new GovernorError(
            ErrorCode.PortInUse,
            `${what} port ${ip}:${port} is already in use (another Temporal server or governor?); stop it or choose another port`,
            what,
          ),
        );
      } else reject(err);
    });
    srv.listen(port, ip, () => srv.close(() => resolve()));
  });
}

/** Asks the OS for a free TCP port on `ip`. */
export async function freePort(ip = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, ip, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Waits until the frontend answers a gRPC call, or the process exits, or the timeout passes. */
async function waitForFrontend(address: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new GovernorError(
        ErrorCode.ServerStartFailed,
        `Temporal dev server exited early (${child.exitCode ?? child.signalCode})`,
      );
    }
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.getSystemInfo({});
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new GovernorError(
    ErrorCode.ServerStartFailed,
    `Temporal dev server did not answer on ${address} within ${timeoutMs} ms: ${String((lastError as Error)?.message ?? lastError)}`,
  );
}

/**
 * Starts `temporal server start-dev` with the governor's search attributes registered and waits
 * until its frontend answers.
 */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  const ip = options.ip ?? '127.0.0.1';
  const port = options.port ?? 7233;
  const uiPort = options.uiPort ?? 8233;
  const namespace = options.namespace ?? 'default';
  await assertPortFree(ip, port, 'Temporal frontend');
  if (!options.headless) await assertPortFree(ip, uiPort, 'Temporal UI');

  const binary = resolveTemporalCli({ onProgress: options.onProgress });
  const httpPort = options.httpPort ?? port + 10;
  await assertPortFree(ip, httpPort, 'Temporal HTTP API');
  const args = [
    'server',
    'start-dev',
    '--ip',
    ip,
    '--port',
    String(port),
    '--http-port',
    String(httpPort),
    '--namespace',
    namespace,
    '--log-level',
    options.logLevel ?? 'warn',
  ];
  if (options.headless) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  if (options.dbFile) {
    fs.mkdirSync(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES_FOR_CLI))
    args.push('--search-attribute', `${name}=${type}`);
  // The dev server dispatches at most 20 transfer tasks/s by default, which adds ~50 ms to every
  // task once a few chains run (measured by bench/); a local server has no reason to throttle.
  args.push('--dynamic-config-value', 'history.transferProcessorMaxPollRPS=10000');

  let logFd: number | undefined;
  if (options.logFile) {
    fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
    logFd = fs.openSync(options.logFile, 'a');
  }
  const child = spawn(binary, args, { stdio: ['ignore', logFd ?? 'pipe', logFd ?? 'pipe'], detached: false });
  let early = '';
  child.stdout?.on('data', (d: Buffer) => {
    if (early.length < 8192) early += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    if (early.length < 8192) early += d.toString();
  });
  const address = `${ip}:${port}`;
  try {
    await waitForFrontend(address, child, options.readyTimeoutMs ?? 60_000);
  } catch (err) {
    child.kill('SIGKILL');
    const detail = early.trim() ? `\n${early.trim().split('\n').slice(-10).join('\n')}` : '';
    throw new GovernorError(ErrorCode.ServerStartFailed, `${(err as Error).message}${detail}`);
  } finally {
    if (logFd !== undefined) fs.closeSync(logFd);
  }
  // Drain output so the pipe never fills and blocks the server.
  child.stdout?.removeAllListeners('data').resume();
  child.stderr?.removeAllListeners('data').resume();

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    address,
    httpAddress: `${ip}:${httpPort}`,
    uiUrl: options.headless ? undefined : `http://localhost:${uiPort}`,
    namespace,
    pid: child.pid ?? -1,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
