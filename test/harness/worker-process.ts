import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LedgerEntry } from '../../examples/service/ledger';

/*
 * A governor worker and the example service worker in one child process (test/harness/crash-worker.ts),
 * so a test can SIGKILL them and start them again. The child runs the TypeScript sources directly:
 * a require hook transpiles them with @swc/core exactly as jest does (no build, no dist/).
 */

/**
 * Where the child kills itself (SIGKILL, once: a marker file keeps the restarted child alive), each a
 * point inside one step of the chain (CRASH_STEP):
 *
 * - `before-authorize`  the `authorize` local activity has started, its function has not run
 * - `after-authorize`   `authorize` returned, its result is not yet reported (the decision is made again)
 * - `before-execute`    the decision is recorded in history and the service activity was delivered, not run
 * - `during-execute`    the service's ledger has appended and fsynced the effect, the activity has not returned
 * - `after-execute`     the service activity returned, its completion is not yet reported to the server
 * - `before-receipt`    the execution is completed in history, its `recordReceipt` local activity has not run
 */
export const CRASH_POINTS = [
  'before-authorize',
  'after-authorize',
  'before-execute',
  'during-execute',
  'after-execute',
  'before-receipt',
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

/** What the child records in the marker file just before it kills itself. */
export interface CrashMarker {
  point: CrashPoint;
  chainId: string;
  stepId: string;
  pid: number;
  at: string;
}

/** Configuration of the child (passed as environment variables). */
export interface WorkerProcessConfig {
  address: string;
  home: string;
  /** The governor's task queue. */
  taskQueue: string;
  /** The example service's task queue. */
  serviceQueue: string;
  /** The service's file-backed ledger (JSON lines). */
  ledgerFile: string;
  /** Prebuilt workflow bundle (global-setup's GOVERNOR_TEST_BUNDLE). */
  workflowBundle: string;
  policiesDir?: string;
  crash?: { at: CrashPoint; stepId: string; markerFile: string };
}

/** A running child. */
export interface WorkerProcess {
  pid: number;
  /** Resolves once both workers poll; rejects when the child exits first. */
  ready: Promise<void>;
  /** Resolves when the child has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True until the child has exited. */
  running(): boolean;
  /** The last output of the child (diagnostics). */
  output(): string;
  /** SIGKILLs the child (if still running) and waits for its exit. */
  kill(): Promise<void>;
}

const root = path.join(__dirname, '..', '..');
let registerFile: string | undefined;

/** A require hook for `.ts` files (written once per test process): `node -r <it> file.ts`. */
export function swcRegister(): string {
  if (registerFile) return registerFile;
  const swc = require.resolve('@swc/core', { paths: [root] });
  const source = `'use strict';
const fs = require('node:fs');
const swc = require(${JSON.stringify(swc)});
require.extensions['.ts'] = function (module, filename) {
  const { code } = swc.transformSync(fs.readFileSync(filename, 'utf8'), {
    filename,
    sourceMaps: 'inline',
    jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
  });
  module._compile(code, filename);
};
`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-swc-register-'));
  registerFile = path.join(dir, 'register.js');
  fs.writeFileSync(registerFile, source);
  return registerFile;
}

/** Starts the child; `logFile` collects its output. */
export function startWorkerProcess(config: WorkerProcessConfig, logFile: string): WorkerProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEMPORAL_ADDRESS: config.address,
    GOVERNOR_HOME: config.home,
    GOVERNOR_TASK_QUEUE: config.taskQueue,
    SERVICE_TASK_QUEUE: config.serviceQueue,
    EXAMPLE_LEDGER: config.ledgerFile,
    GOVERNOR_WORKFLOW_BUNDLE: config.workflowBundle,
    ...(config.policiesDir ? { GOVERNOR_POLICIES: config.policiesDir } : {}),
    ...(config.crash
      ? { CRASH_AT: config.crash.at, CRASH_STEP: config.crash.stepId, CRASH_MARKER: config.crash.markerFile }
      : {}),
  };
  const child: ChildProcess = spawn(process.execPath, ['-r', swcRegister(), path.join(__dirname, 'crash-worker.ts')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const log = fs.openSync(logFile, 'a');
  const collect = (d: Buffer): void => {
    fs.writeSync(log, d);
    tail = (tail + d.toString()).slice(-8192);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      fs.closeSync(log);
      resolve({ code, signal });
    }),
  );
  const ready = new Promise<void>((resolve, reject) => {
    let seen = '';
    child.stdout!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (/^ready\b/m.test(seen)) resolve();
    });
    void exited.then((e) =>
      reject(new Error(`worker process exited before it was ready (${e.code ?? e.signal}):\n${tail}`)),
    );
  });
  ready.catch(() => undefined); // observed by whoever awaits it
  return {
    pid: child.pid ?? -1,
    ready,
    exited,
    running: () => child.exitCode === null && child.signalCode === null,
    output: () => tail,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Rejects with `what` when `promise` has not settled within `ms` (a bound on waiting, never an assertion on speed). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)),
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every line of a ledger file as written (duplicates included: the Ledger class would fold them). */
export function readLedgerFile(file: string): LedgerEntry[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as LedgerEntry);
}
