import { eventually } from '../harness/eventually';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { issueApproval, issueAttestation, issueCredential } from '../../identity';
import { GovernorClient } from '../../sdk/client';
import { createReplayer, fetchChainHistories, verifyChain, type Replayer } from '../../audit/verify';
import { GovernorPendingRolesKey, GovernorStatusKey } from '../../contracts/search-attributes';
import type { ChainResult, ChainState } from '../../contracts/state';
import { freePort, startDevServer, type DevServer } from '../../workers/dev-server';
import { makeHome, uniqueQueue } from '../harness/temporal';
import { readLedgerFile, startWorkerProcess, within, type WorkerProcess } from '../harness/worker-process';

/*
 * Server restart (issue #8): a dev server of this test's own, persisted in a SQLite file, is
 * SIGKILLed while chains are in flight — two with a service step mid-execution, one waiting for
 * approval with one of its two votes counted, one already completed — and started again on the
 * same port and file. The governor worker and the example service (one child process,
 * test/harness/crash-worker.ts) keep running throughout and reconnect by themselves.
 *
 * After the restart: the status query and the search attributes (GovernorStatus,
 * GovernorPendingRoles, visibility list) are what they were; the waiting chain counts the vote it
 * had and completes on the second; the held steps finish; every effect is in the ledger exactly
 * once; every chain verifies. One held step is released after the restart (its completion reaches
 * the restarted server), the other while the server is down, which stays down until the worker has
 * given up reporting that completion: the server retries the lost attempt after its timeout and
 * the ledger absorbs it. Waits are bounded generously; no assertion is on time.
 */

const WORKLOAD = 'agent:release-bot';
const OWNER = 'team-release';

let home: string;
let dir: string;
let dbFile: string;
let port: number;
let httpPort: number;
let server: DevServer | undefined;
let worker: WorkerProcess | undefined;
let replayer: Replayer;
const connections: Connection[] = [];

beforeAll(async () => {
  home = await makeHome();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-restart-server-'));
  dbFile = path.join(dir, 'temporal.db');
  port = await freePort();
  httpPort = await freePort();
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});

afterAll(async () => {
  // The child and this test's server are stopped whatever happened in the test.
  await worker?.kill();
  await Promise.all(connections.map((c) => c.close().catch(() => undefined)));
  await server?.stop();
  await replayer?.close();
});

async function startServer(): Promise<DevServer> {
  // The same port and SQLite file every time.
  return startDevServer({
    port,
    httpPort,
    headless: true,
    dbFile,
    logFile: path.join(dir, 'temporal-server.log'),
    readyTimeoutMs: 120_000,
  });
}

async function connect(address: string): Promise<{ client: Client; gc: GovernorClient }> {
  const connection = await Connection.connect({ address });
  connections.push(connection);
  const client = new Client({ connection });
  return { client, gc: new GovernorClient(client, taskQueue) };
}

const taskQueue = uniqueQueue('governor-restart');
const serviceQueue = uniqueQueue('service-restart');
const step = (
  id: string,
  action: string,
  resource: { type: string; id: string },
  executor: Record<string, unknown> = {},
  input: Record<string, unknown> = {},
) => ({
  id,
  action,
  resource,
  input,
  executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform', ...executor },
});
const staging = { type: 'Environment', id: 'staging' };
const prod = { type: 'Environment', id: 'prod' };
const releases = { type: 'Channel', id: 'releases' };

describe('the Temporal server killed and restarted mid-chain', () => {
  it('resumes every chain: held steps finish, approvals survive, search attributes and queries are right, effects exactly once, lineage verifies', async () => {
    server = await startServer();
    const ledgerFile = path.join(dir, 'ledger.jsonl');
    worker = startWorkerProcess(
      {
        address: server.address,
        home,
        taskQueue,
        serviceQueue,
        ledgerFile,
        workflowBundle: process.env.GOVERNOR_TEST_BUNDLE!,
      },
      path.join(dir, 'worker.log'),
    );
    await within(worker.ready, 60_000, 'the worker process starts');
    const before = await connect(server.address);
    const creds = async () => ({
      credential: await issueCredential({ home, sub: WORKLOAD, ttlSeconds: 3600 }),
      attestation: await issueAttestation({ home, sub: WORKLOAD }),
    });

    // A held step released after the restart, one released while the server is down.
    const holdAfter = path.join(dir, 'release-after-restart');
    const holdDuring = path.join(dir, 'release-while-down');
    const chains = {
      done: { workload: WORKLOAD, owner: OWNER, steps: [step('deploy', 'deploy', staging)] },
      heldAfter: {
        workload: WORKLOAD,
        owner: OWNER,
        steps: [
          step('deploy', 'deploy', staging),
          step('slow', 'deploy', staging, { timeoutMs: 120_000 }, { holdUntilFile: holdAfter }),
          step('announce', 'notify', releases),
        ],
      },
      heldDuring: {
        workload: WORKLOAD,
        owner: OWNER,
        steps: [
          step('deploy', 'deploy', staging),
          step('slow', 'deploy', staging, { timeoutMs: 15_000 }, { holdUntilFile: holdDuring }),
          step('announce', 'notify', releases),
        ],
      },
      approval: {
        workload: WORKLOAD,
        owner: OWNER,
        steps: [step('staging', 'deploy', staging), step('prod', 'deploy', prod), step('announce', 'notify', releases)],
      },
    };
    const ids: Record<keyof typeof chains, string> = { done: '', heldAfter: '', heldDuring: '', approval: '' };
    for (const name of Object.keys(chains) as (keyof typeof chains)[])
      ids[name] = (await before.gc.start(chains[name], await creds())).workflowId;

    const done = (await within(before.gc.result(ids.done), 120_000, 'the first chain completes')) as ChainResult;
    expect(done.status).toBe('Completed');
    // Both held steps are executing in the service (their activity entered the hold).
    await eventually('both held steps to be mid-execution', async () =>
      fs.existsSync(`${holdAfter}.entered`) && fs.existsSync(`${holdDuring}.entered`) ? true : undefined,
    );
    const waiting = await eventually('the approval chain to await approval', async () => {
      const s = await before.gc.status(ids.approval);
      return s.status === 'AwaitingApproval' ? s : undefined;
    });
    const digest = waiting.steps[1]!.approval!.stepDigest;
    const vote = (sub: string) =>
      issueApproval({
        home,
        sub,
        roles: ['sre-lead'],
        chainId: ids.approval,
        stepId: 'prod',
        stepDigest: digest,
        decision: 'approve',
      });
    const alice = await before.gc.submitApproval(ids.approval, await vote('alice'));
    expect(alice.verdict).toMatchObject({ counted: true, approver: 'alice' });

    // ---- kill the server (SIGKILL: no graceful shutdown of the SQLite store) ----
    const killedAt = Date.now();
    process.kill(server.pid, 'SIGKILL');
    await server.stop(); // waits for the exit
    server = undefined;
    // While it is down, the second held step acts and returns: its completion cannot reach the server.
    fs.writeFileSync(holdDuring, '');
    await eventually('the step released while the server is down to act', async () =>
      readLedgerFile(ledgerFile).some((e) => e.idempotencyKey === `${ids.heldDuring}/slow`) ? true : undefined,
    );
    expect(readLedgerFile(ledgerFile).some((e) => e.idempotencyKey === `${ids.heldAfter}/slow`)).toBe(false);
    // The server stays down until the worker gives up reporting that completion (Core retries it
    // for a few seconds, then drops it): the attempt is lost, the restarted server must retry it.
    const workerLog = path.join(dir, 'worker.log');
    await eventually(
      'the worker to give up reporting the completion',
      async () =>
        fs.readFileSync(workerLog, 'utf8').includes('Network error while completing activity') ? true : undefined,
      { timeoutMs: 120_000 },
    );

    // ---- start it again on the same port and file ----
    server = await eventually('the server to start again on the same port and file', () => startServer(), {
      timeoutMs: 120_000,
    });
    const restartedAt = Date.now();
    const after = await connect(server.address);
    // The worker process rode through the outage.
    expect(worker.running()).toBe(true);

    // Status queries (answered by the reconnected worker) and search attributes are what they were.
    const resumed = await eventually('the approval chain to answer its status query after the restart', async () => {
      const s = await after.gc.status(ids.approval);
      return s.status === 'AwaitingApproval' ? s : undefined;
    });
    expect(resumed.pendingRoles).toEqual(['sre-lead']);
    expect(resumed.steps.map((s) => s.status)).toEqual(['completed', 'awaiting-approval', 'pending']);
    expect(resumed.steps[1]!.approval).toMatchObject({
      stillNeeded: 1,
      outcome: 'pending',
      approvedBy: [expect.objectContaining({ approver: 'alice' })],
    });
    const described = await after.client.workflow.getHandle(ids.approval).describe();
    expect(described.typedSearchAttributes.get(GovernorStatusKey)).toBe('AwaitingApproval');
    expect(described.typedSearchAttributes.get(GovernorPendingRolesKey)).toEqual(['sre-lead']);
    expect(
      (await after.client.workflow.getHandle(ids.done).describe()).typedSearchAttributes.get(GovernorStatusKey),
    ).toBe('Completed');
    const heldState: ChainState = await after.gc.status(ids.heldAfter);
    expect(heldState.steps.map((s) => s.status)).toEqual(['completed', 'executing', 'pending']);
    expect(
      (await after.client.workflow.getHandle(ids.heldAfter).describe()).typedSearchAttributes.get(GovernorStatusKey),
    ).toBe('Running');
    // The visibility store (SQLite) lists the waiting chain with the roles it needs.
    const listed = await eventually('the waiting chain in the visibility list', async () => {
      const l = await after.gc.list({ status: 'AwaitingApproval', workload: WORKLOAD });
      return l.find((c) => c.chainId === ids.approval);
    });
    expect(listed.pendingRoles).toEqual(['sre-lead']);

    // ---- resume: release the held step, give the second vote ----
    fs.writeFileSync(holdAfter, '');
    const bob = await after.gc.submitApproval(ids.approval, await vote('bob'));
    expect(bob.verdict).toMatchObject({ counted: true, approver: 'bob' });
    const results = {} as Record<keyof typeof chains, ChainResult>;
    for (const name of Object.keys(chains) as (keyof typeof chains)[]) {
      results[name] = (await within(
        after.gc.result(ids[name]),
        180_000,
        `chain ${name} completes after the restart\n${worker.output()}`,
      )) as ChainResult;
      expect({ name, status: results[name].status, reason: results[name].reason }).toEqual({
        name,
        status: 'Completed',
        reason: undefined,
      });
      expect(results[name].steps.every((s) => s.status === 'completed')).toBe(true);
    }
    const completedAt = Date.now();
    expect(results.approval.steps[1]!.approval).toMatchObject({
      outcome: 'approved',
      approvedBy: [expect.objectContaining({ approver: 'alice' }), expect.objectContaining({ approver: 'bob' })],
    });

    // 0 duplicated, 0 lost: every append of the ledger file, each key once.
    const entries = readLedgerFile(ledgerFile).map((e) => e.idempotencyKey);
    const expected = (Object.keys(chains) as (keyof typeof chains)[]).flatMap((name) =>
      chains[name].steps.map((s) => `${ids[name]}/${s.id}`),
    );
    expect([...entries].sort()).toEqual([...expected].sort());

    // Search attributes after the restart, and every lineage verifies.
    for (const name of Object.keys(chains) as (keyof typeof chains)[]) {
      await eventually(`GovernorStatus Completed on ${name}`, async () =>
        (await after.client.workflow.getHandle(ids[name]).describe()).typedSearchAttributes.get(GovernorStatusKey) ===
        'Completed'
          ? true
          : undefined,
      );
      const report = await verifyChain({
        histories: await fetchChainHistories(after.client, ids[name]),
        chainId: ids[name],
        home,
        replayer,
      });
      expect({ name, failed: report.checks.filter((c) => !c.ok) }).toEqual({ name, failed: [] });
      expect(report).toMatchObject({
        verdict: 'verified',
        status: 'Completed',
        receipts: results[name].receiptHead.seq,
      });
    }

    // The step whose completion was lost ran a second attempt, which the ledger absorbed; the step
    // released after the restart completed in its first attempt.
    const absorbed = (name: keyof typeof chains) =>
      (results[name].steps[1]?.outcome?.result as { duplicate?: boolean } | undefined)?.duplicate ?? false;
    const attempts = (file: string) => fs.readFileSync(`${file}.entered`, 'utf8').trim().split('\n').length;
    expect({ attempts: attempts(holdDuring), absorbed: absorbed('heldDuring') }).toEqual({
      attempts: 2,
      absorbed: true,
    });
    expect({ attempts: attempts(holdAfter), absorbed: absorbed('heldAfter') }).toEqual({
      attempts: 1,
      absorbed: false,
    });
    process.stderr.write(
      `server restart (observed, not asserted; logs in ${dir}): ${JSON.stringify({
        chains: Object.keys(chains).length,
        ledgerEntries: entries.length,
        duplicates: entries.length - new Set(entries).size,
        lost: expected.filter((k) => !entries.includes(k)).length,
        serverDownMs: restartedAt - killedAt,
        completeAfterRestartMs: completedAt - restartedAt,
        heldAfter: { attempts: attempts(holdAfter), retryAbsorbedByLedger: absorbed('heldAfter') },
        heldDuring: { attempts: attempts(holdDuring), retryAbsorbedByLedger: absorbed('heldDuring') },
        receipts: Object.fromEntries(Object.entries(results).map(([n, r]) => [n, r.receiptHead.seq])),
      })}\n`,
    );
  }, 600_000);
});
