import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { ask, final, idOf, startCoordinatorHarness, type CoordinatorHarness } from '../harness/coordinator';

/**
 * Runs one coordinator through a holder carried across continue-as-new, a tie opened and expired,
 * malformed messages and a release; saves every run's history and replays it with the current
 * workflow code. With RECORD_HISTORIES=1 the histories are written to test/replay/coordinator/ as
 * `<RECORD_PREFIX or "coordinator">-run-<n>.json`; test/unit/replay-coordinator.test.ts replays them.
 * (The `v1-coordinator-*` files there were recorded before the input-validation patch.)
 */
const record = process.env.RECORD_HISTORIES === '1';
const target = record
  ? path.join(__dirname, '..', 'replay', 'coordinator')
  : fs.mkdtempSync(path.join(os.tmpdir(), 'governor-coordinator-histories-'));
const prefix = process.env.RECORD_PREFIX ?? 'coordinator';

let h: CoordinatorHarness;
beforeAll(async () => {
  h = await startCoordinatorHarness(
    [
      {
        name: 'hist',
        resources: ['Cluster::*'],
        conflicts: [['deploy', 'rollback']],
        batchingWindow: '300ms',
        tieBreakerRole: 'sre-lead',
        decisionDeadline: '2s',
        holdTimeout: '1h',
      },
    ],
    { 'agent:release-bot': 10, 'agent:peer-a': 5, 'agent:peer-b': 5 },
  );
});
afterAll(async () => {
  await h?.stop();
});

it('records a coordinator that carries a holder across runs, expires a tie and replays every run', async () => {
  const run = randomUUID().slice(0, 8);
  const noop = (): Promise<void> => h.cc.release('hist', { chainId: `nobody-${run}`, stepId: 's', completed: false });
  await h.cc.start('hist', { continueAsNewAfterEvents: 1 });
  const a = await h.seal('hist', ask(`hist-${run}-a`, 'agent:release-bot', 'deploy'));
  await h.cc.send(a);
  await h.waitState('hist', (s) => s.holder?.requestId === idOf(a), 'granted the first request');
  await noop(); // handled: the coordinator continues as new with the holder
  await h.waitState('hist', (s) => s.runs >= 2 && s.holder?.requestId === idOf(a), 'continued as new with its holder');

  const b = await h.seal('hist', ask(`hist-${run}-b`, 'agent:peer-a', 'deploy'));
  const c = await h.seal('hist', ask(`hist-${run}-c`, 'agent:peer-b', 'rollback'));
  await h.cc.send(b);
  await h.cc.send(c);
  await h.waitState('hist', (s) => s.ties[0]?.digest !== undefined, 'opened a tie');
  await noop();
  await h.client.workflow.getHandle(h.cc.coordinatorId('hist')).signal('releaseSlot', { chainId: 42 }); // malformed: ignored
  const expired = await h.waitState(
    'hist',
    (s) => final(s, idOf(b)) !== undefined && final(s, idOf(c)) !== undefined,
    'expired the tie',
  );
  for (const r of [b, c])
    expect(final(expired, idOf(r))).toMatchObject({
      status: 'rejected',
      reason: 'tie-break: no choice by sre-lead within 2s',
    });
  await noop();
  await h.cc.release('hist', { chainId: a.chainId, stepId: 's', completed: true });
  const released = await h.waitState(
    'hist',
    (s) => s.holder === undefined && s.versions['Cluster::"eu-1"'] === 1,
    'released the holder',
  );
  expect(released.runs).toBeGreaterThanOrEqual(3);

  const workflowId = h.cc.coordinatorId('hist');
  const runs = await h.runs(workflowId);
  expect(runs.length).toBeGreaterThanOrEqual(3);
  // The last run is still open (it may not have had a workflow task yet): the closed runs are saved.
  for (const [i, r] of runs.filter((x) => x.status === 'CONTINUED_AS_NEW').entries()) {
    fs.writeFileSync(
      path.join(target, `${prefix}-run-${i + 1}.json`),
      `${JSON.stringify({ workflowId, history: r.history })}\n`,
    );
    await expect(
      Worker.runReplayHistory(
        { workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } },
        r.history,
        workflowId,
      ),
    ).resolves.toBeUndefined();
  }
  await h.client.workflow.getHandle(workflowId).terminate('test done');
}, 180_000);
