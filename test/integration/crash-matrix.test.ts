import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { issueAttestation, issueCredential } from '../../identity';
import { GovernorClient } from '../../sdk/client';
import { createReplayer, fetchChainHistories, verifyChain, type Replayer } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { makeHome, testAddress, uniqueQueue } from '../harness/temporal';
import {
  CRASH_POINTS,
  readLedgerFile,
  startWorkerProcess,
  within,
  type CrashMarker,
  type CrashPoint,
  type WorkerProcess,
} from '../harness/worker-process';

/*
 * Crash matrix (issue #8): the governor worker process — with the example service worker and its
 * file-backed ledger in the same process, see test/harness/crash-worker.ts — is SIGKILLed at each
 * point of one step of a five-step chain, then started again. Every chain must end Completed with
 * each side effect in the ledger exactly once (no duplicate, none lost), one decision and one
 * execution receipt per step, and a lineage that `governor verify` still verifies.
 *
 * Recovery is driven by Temporal's timeouts: a workflow task (and its local activities) lost with
 * the process is retried after the workflow task / sticky queue timeout (10 s); a service activity
 * lost with it after its start-to-close timeout (STEP_TIMEOUT_MS). No assertion is on time: the
 * waits below are generous bounds, and the observed recovery times are only reported.
 */

const WORKLOAD = 'agent:release-bot';
const STEPS = ['s1', 's2', 's3', 's4', 's5'];
const CRASH_STEP = 's3';
/** Start-to-close timeout of each service step: how long a lost attempt takes to be retried. */
const STEP_TIMEOUT_MS = 8_000;

let home: string;
let dir: string;
let connection: Connection;
let client: Client;
let replayer: Replayer;
const children: WorkerProcess[] = [];
const figures: Record<string, unknown>[] = [];

beforeAll(async () => {
  home = await makeHome();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-crash-matrix-'));
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});

afterAll(async () => {
  // Every child is killed, whatever happened in the tests.
  await Promise.all(children.map((c) => c.kill()));
  await replayer?.close();
  await connection?.close();
  if (figures.length)
    process.stderr.write(
      `crash matrix (observed, not asserted; logs in ${dir}):\n${figures.map((f) => `  ${JSON.stringify(f)}`).join('\n')}\n`,
    );
});

function spawnWorker(
  point: CrashPoint,
  queues: { taskQueue: string; serviceQueue: string },
  ledgerFile: string,
  markerFile: string,
): WorkerProcess {
  const child = startWorkerProcess(
    {
      address: testAddress(),
      home,
      ...queues,
      ledgerFile,
      workflowBundle: process.env.GOVERNOR_TEST_BUNDLE!,
      crash: { at: point, stepId: CRASH_STEP, markerFile },
    },
    path.join(dir, `${point}.log`),
  );
  children.push(child);
  return child;
}

describe('crash matrix: the governor worker process SIGKILLed at each point of a step', () => {
  it.each(CRASH_POINTS.map((p) => [p]))(
    '%s: the chain completes, every side effect exactly once, the lineage verifies',
    async (point) => {
      const queues = { taskQueue: uniqueQueue('governor-crash'), serviceQueue: uniqueQueue('service-crash') };
      const ledgerFile = path.join(dir, `${point}.ledger.jsonl`);
      const markerFile = path.join(dir, `${point}.crashed.json`);
      const first = spawnWorker(point, queues, ledgerFile, markerFile);
      await within(first.ready, 60_000, 'the first worker process starts');

      const gc = new GovernorClient(client, queues.taskQueue);
      const chain = {
        workload: WORKLOAD,
        steps: STEPS.map((id, i) => ({
          id,
          action: i % 2 === 0 ? 'deploy' : 'notify',
          resource: i % 2 === 0 ? { type: 'Environment', id: 'staging' } : { type: 'Channel', id: 'releases' },
          executor: {
            type: 'activity',
            taskQueue: queues.serviceQueue,
            activityType: 'perform',
            timeoutMs: STEP_TIMEOUT_MS,
          },
        })),
      };
      const handle = await gc.start(chain, {
        credential: await issueCredential({ home, sub: WORKLOAD }),
        attestation: await issueAttestation({ home, sub: WORKLOAD }),
      });
      const chainId = handle.workflowId;
      const key = (stepId: string): string => `${chainId}/${stepId}`;

      // The worker kills itself at the crash point of step s3.
      const exit = await within(
        first.exited,
        120_000,
        `the worker process reaches ${point} of ${CRASH_STEP}\n${first.output()}`,
      );
      const crashedAt = Date.now();
      expect(exit.signal).toBe('SIGKILL');
      const marker = JSON.parse(fs.readFileSync(markerFile, 'utf8')) as CrashMarker;
      expect(marker).toMatchObject({ point, chainId, stepId: CRASH_STEP, pid: first.pid });
      // What the service had done when the process died: the crash step's effect only once the ledger appended it.
      const effectBeforeCrash = ['during-execute', 'after-execute', 'before-receipt'].includes(point);
      expect(readLedgerFile(ledgerFile).map((e) => e.idempotencyKey)).toEqual([
        key('s1'),
        key('s2'),
        ...(effectBeforeCrash ? [key(CRASH_STEP)] : []),
      ]);

      const second = spawnWorker(point, queues, ledgerFile, markerFile);
      const result = (await within(
        handle.result(),
        180_000,
        `the chain completes after the restart\n${second.output()}`,
      )) as ChainResult;
      const recoveryMs = Date.now() - crashedAt;

      expect(result.status).toBe('Completed');
      expect(result.steps.map((s) => [s.id, s.status])).toEqual(STEPS.map((id) => [id, 'completed']));
      // 0 duplicated, 0 lost: the ledger file (every append, not the deduplicated index) holds each key once, in step order.
      const entries = readLedgerFile(ledgerFile);
      expect(entries.map((e) => e.idempotencyKey)).toEqual(STEPS.map(key));
      // The service saw the crash step again (and the ledger absorbed it) exactly when the first
      // attempt had acted but its completion was lost with the process.
      const absorbed = result.steps.map((s) => (s.outcome?.result as { duplicate?: boolean } | undefined)?.duplicate);
      const retriedAfterEffect = point === 'during-execute' || point === 'after-execute';
      expect(absorbed).toEqual(STEPS.map((id) => id === CRASH_STEP && retriedAfterEffect));
      // One decision and one execution receipt per step, then the checkpoint: nothing decided or recorded twice.
      expect(result.receiptHead.seq).toBe(2 * STEPS.length + 1);

      // History: the workflow scheduled each step's activity once; a lost attempt was retried by the server.
      const history = await handle.fetchHistory();
      const events = history.events ?? [];
      const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes);
      expect(scheduled).toHaveLength(STEPS.length);
      const crashStepScheduled = scheduled[STEPS.indexOf(CRASH_STEP)]!;
      const crashStepStarted = events.find(
        (e) =>
          e.activityTaskStartedEventAttributes?.scheduledEventId?.toString() === crashStepScheduled.eventId?.toString(),
      );
      const attempts = crashStepStarted?.activityTaskStartedEventAttributes?.attempt ?? 0;
      expect(attempts).toBe(['before-execute', 'during-execute', 'after-execute'].includes(point) ? 2 : 1);

      // `governor verify`: replay with the current code, receipts, checkpoint, bindings, decisions.
      const report = await verifyChain({
        histories: await fetchChainHistories(client, chainId),
        chainId,
        home,
        replayer,
      });
      expect(report.checks.filter((c) => !c.ok)).toEqual([]);
      expect(report).toMatchObject({
        verdict: 'verified',
        status: 'Completed',
        receipts: result.receiptHead.seq,
        decisions: STEPS.length,
      });

      figures.push({
        point,
        steps: STEPS.length,
        ledgerEntries: entries.length,
        duplicates: entries.length - new Set(entries.map((e) => e.idempotencyKey)).size,
        lost: STEPS.filter((id) => !entries.some((e) => e.idempotencyKey === key(id))).length,
        retriesAbsorbedByLedger: absorbed.filter(Boolean).length,
        crashStepAttempts: attempts,
        workflowTaskTimeouts: events.filter((e) => e.workflowTaskTimedOutEventAttributes).length,
        workflowTaskFailures: events.filter((e) => e.workflowTaskFailedEventAttributes).length,
        historyEvents: events.length,
        receipts: result.receiptHead.seq,
        recoveryMs,
      });
      await second.kill();
    },
    360_000,
  );
});
