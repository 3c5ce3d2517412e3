import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { freePort, startDevServer, type DevServer } from '../../workers/dev-server';
import { eventually } from '../harness/eventually';
import { startLingerRelay } from '../harness/linger-relay';

/*
 * The relay the integration run reaches its shared dev server through (test/harness/linger-relay.ts),
 * checked against a real dev server of this file's own: a client process SIGKILLed while its visibility
 * list is running on the server gets that list cancelled on the server when it connects directly (the
 * cancellation that can leave the dev server's SQLite "interrupted" for good), and not through the relay.
 * The relay part runs first, before anything was cancelled on this server.
 */

const LIST_CANCELLED = 'ListWorkflowExecutions operation failed. Select failed: context canceled';

// Lists the seeded workflows in a loop until it is killed (a plain-Node client, no build step).
const LISTER = path.join(__dirname, '..', 'fixtures', 'relay', 'lister.js');

async function killMidList(address: string): Promise<void> {
  const child = spawn(process.execPath, [LISTER, address], {
    cwd: process.cwd(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise((resolve, reject) => {
    child.stdout!.once('data', resolve);
    child.once('exit', (code) => reject(new Error(`the lister exited (${code}) before listing`)));
  });
  await new Promise((r) => setTimeout(r, 150 + Math.random() * 150));
  child.kill('SIGKILL');
  await exited;
}

const cancelledLists = (log: string): number =>
  fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.includes(LIST_CANCELLED)).length;

describe('the harness relay keeps a killed client from cancelling its calls on the server', () => {
  let server: DevServer | undefined;
  let relay: Awaited<ReturnType<typeof startLingerRelay>> | undefined;
  let connection: Connection | undefined;
  let log: string;

  beforeAll(async () => {
    log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-relay-')), 'temporal-server.log');
    server = await startDevServer({ port: await freePort(), httpPort: await freePort(), headless: true, logFile: log });
    connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    // Enough rows that the server spends a good part of each list in its SQLite select.
    for (let i = 0; i < 3000; i += 100)
      await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          client.workflow.start('relay-seed', {
            taskQueue: 'relay-seed-nobody-polls',
            workflowId: `relay-seed-${i + j}`,
          }),
        ),
      );
    await eventually('visibility to list every seeded execution', async () =>
      (await client.workflow.count("WorkflowType = 'relay-seed'")).count === 3000 ? true : undefined,
    );
  }, 120_000);

  afterAll(async () => {
    await connection?.close();
    await relay?.close();
    await server?.stop();
  });

  it('through the relay a dead client’s list runs to its end; directly, the server cancels it', async () => {
    // Through the relay first: nothing has been cancelled on this server yet.
    relay = await startLingerRelay(server!.address, 3000);
    const mark = cancelledLists(log);
    for (let k = 0; k < 8; k++) {
      await killMidList(relay.address);
      // The client is dead; a moment later the server still has its connection (and the list on it).
      await new Promise((r) => setTimeout(r, 200));
      expect(relay.openUpstreams()).toBeGreaterThan(0);
    }
    // Past the linger: the relay has closed each upstream connection, with nothing left in flight on it.
    await new Promise((r) => setTimeout(r, 4000));
    expect(relay.openUpstreams()).toBe(0);
    expect(cancelledLists(log) - mark).toBe(0);
    await connection!.workflowService.describeNamespace({ namespace: 'default' });

    // Directly: a kill that lands while the select runs cancels it (about one kill in two to four here;
    // stops at the first, at most 30 kills).
    const before = cancelledLists(log);
    let direct = 0;
    for (let k = 0; k < 30 && direct === 0; k++) {
      await killMidList(server!.address);
      // The server logs a cancelled list a moment after it sees the connection drop.
      await new Promise((r) => setTimeout(r, 300));
      direct = cancelledLists(log) - before;
    }
    expect(direct).toBeGreaterThan(0);
  }, 120_000);
});
