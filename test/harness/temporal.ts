import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { initKeys } from '../../identity';
import { createGovernorWorker, type GovernorWorkerOptions } from '../../workers/worker';

/** Address of the shared test server (set by global-setup). */
export function testAddress(): string {
  const address = process.env.GOVERNOR_TEST_ADDRESS;
  if (!address)
    throw new Error('GOVERNOR_TEST_ADDRESS unset: run integration tests through jest (global-setup starts the server)');
  return address;
}

/** A fresh governor home with development keys. */
export async function makeHome(): Promise<string> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-home-'));
  await initKeys(home);
  return home;
}

/** A unique task queue per test, so tests never pick up each other's tasks. */
export function uniqueQueue(prefix = 'test'): string {
  return `${prefix}-${randomUUID()}`;
}

/** A client on the shared test server. */
export async function testClient(): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address: testAddress() });
  return { client: new Client({ connection }), connection };
}

/** The control task queue (fleet) of a test deployment on `taskQueue`: pass it to a GovernorClient that revokes workloads. */
export function controlQueueOf(taskQueue: string): string {
  return `${taskQueue}.control`;
}

/**
 * A governor worker on the shared server with the prebuilt bundle and, unless `maxCachedWorkflows`
 * says otherwise, no workflow cache (every task replays). Further worker options pass through.
 */
export async function startGovernorWorker(
  options: Partial<GovernorWorkerOptions> & { home: string; taskQueue: string },
): Promise<Awaited<ReturnType<typeof createGovernorWorker>> & { connection: NativeConnection; stop(): Promise<void> }> {
  const connection = await NativeConnection.connect({ address: testAddress() });
  let created: Awaited<ReturnType<typeof createGovernorWorker>>;
  try {
    created = await createGovernorWorker({
      connection,
      namespace: 'default',
      workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! },
      maxCachedWorkflows: 0,
      // Each test deployment (own keys) is its own fleet: its own namespace-wide registries.
      controlTaskQueue: controlQueueOf(options.taskQueue),
      ...options,
      // The worker knows the test server's frontend: never an http executor target.
      http: { ...options.http, protectedAddresses: [testAddress(), ...(options.http?.protectedAddresses ?? [])] },
    });
  } catch (err) {
    await connection.close();
    throw err;
  }
  const { worker } = created;
  const running = worker.run();
  let stopped = false;
  return {
    ...created,
    connection,
    async stop() {
      // Idempotent: a test may stop the worker itself (to show what happens while none runs).
      if (stopped) return;
      stopped = true;
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      created.watchers.forEach((w) => w.close());
      await connection.close();
    },
  };
}

// Quiet the SDK's default console logger in tests: warnings and errors only.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // already installed in this jest worker
}
