import { Worker } from '@temporalio/worker';
import { PATCHES_AT_START } from '../../contracts/patches';
import { TERMINAL_STATUSES } from '../../contracts/status';
import fs from 'node:fs';
import path from 'node:path';
import {
  chainIdOfSavedJson,
  cutAfter,
  cuttableMarkers,
  hasCutAfterLocalActivity,
  historyFromSavedJson,
  patchIds,
  type JsonEvent,
} from '../harness/history';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * A chain's history must replay however its workflow tasks were cut. When a query reaches the worker while a
 * local activity runs, SDK core (1.24) may complete the workflow task with the activity's marker and hand the
 * activity's result to the workflow only in a forced next task; on replay the result comes one task earlier.
 * Runs recorded before PATCHES_AT_START asked `patched()` after their final checkpoint's local activity, and
 * such a history failed every replay after it closed (every later query, `governor verify`) with
 * "[TMPRL1100] Non-deprecated patch marker encountered for change archive-by-sweeper": 9 of 20 denied chains
 * polled as `governor run --wait` polls did, on this test's load. Now every patch is decided at the start.
 */

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned();
});
afterAll(async () => {
  await g?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const denied = {
  workload: WORKLOAD,
  owner: 'team-release',
  summary: 'drop a production table (denied by the default bundle)',
  steps: [
    {
      id: 'drop-orders',
      action: 'drop_table',
      resource: { type: 'Database', id: 'prod' },
      input: { table: 'orders' },
      executor: { type: 'noop' },
    },
  ],
};
const completed = {
  workload: WORKLOAD,
  owner: 'team-release',
  summary: 'deploy to staging',
  steps: [
    {
      id: 'deploy',
      action: 'deploy',
      resource: { type: 'Environment', id: 'staging' },
      input: { service: 'web' },
      executor: { type: 'noop' },
      compensation: { action: 'rollback', executor: { type: 'noop' } },
    },
    {
      id: 'announce',
      action: 'notify',
      resource: { type: 'Channel', id: 'releases' },
      input: { text: 'web is on staging' },
      executor: { type: 'noop' },
    },
  ],
};

const replay = (events: JsonEvent[], workflowId: string) =>
  Worker.runReplayHistory(
    { workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } },
    historyFromSavedJson({ events }),
    workflowId,
  );

const savedEvents = async (workflowId: string) =>
  (JSON.parse(JSON.stringify(await g.client.workflow.getHandle(workflowId).fetchHistory())) as { events: JsonEvent[] })
    .events;

it('chains polled by status queries while they run answer every query after they close, and every history replays', async () => {
  const n = 24;
  const failures: string[] = [];
  const ids = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const chainId = `polled-${i % 2 ? 'denied' : 'completed'}-${i}-${Date.now()}`;
      await g.gc.start(i % 2 ? denied : completed, { ...(await g.creds()), chainId });
      // As `governor run --wait` does: status until the chain has ended, then a few more after it closed.
      let after = 0;
      for (let k = 0; k < 600 && after < 4; k++) {
        try {
          const state = await g.gc.status(chainId);
          if (TERMINAL_STATUSES.includes(state.status)) after++;
        } catch (err) {
          failures.push(`${chainId}: ${(err as Error).message}`);
          after++;
        }
        await sleep(25);
      }
      return chainId;
    }),
  );
  expect(failures).toEqual([]);

  let cut = 0;
  for (const id of ids) {
    const events = await savedEvents(id);
    expect({ id, closed: events.at(-1)!.eventType }).toEqual({ id, closed: 'EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED' });
    // One patch marker, in the first workflow task, whatever the chain did after.
    expect({ id, patches: patchIds(events) }).toEqual({ id, patches: [PATCHES_AT_START] });
    if (hasCutAfterLocalActivity(events)) cut++;
    await expect(replay(events, id)).resolves.toBeUndefined();
  }
  // How many histories the queries cut (load-dependent, so reported, not required).
  process.stderr.write(`query-replay: ${cut} of ${n} histories cut after a local activity by a query\n`);
}, 240_000);

it('every history of a new chain replays however a query cut its workflow tasks (after each local activity)', async () => {
  const service = {
    workload: WORKLOAD,
    owner: 'team-release',
    summary: 'a service step: authorize, execute, record',
    steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' })],
  };
  let cuts = 0;
  for (const [kind, chain] of Object.entries({ denied, completed, service })) {
    const chainId = `cut-${kind}-${Date.now()}`;
    await (await g.gc.start(chain, { ...(await g.creds()), chainId })).result();
    const events = await savedEvents(chainId);
    await expect(replay(events, chainId)).resolves.toBeUndefined();
    for (const at of cuttableMarkers(events)) {
      const cut = cutAfter(events, at);
      expect(hasCutAfterLocalActivity(cut)).toBe(true);
      await expect(replay(cut, chainId)).resolves.toBeUndefined();
      cuts++;
    }
  }
  // The denied chain's final checkpoint, the service step's authorize and its execution receipt, at least.
  expect(cuts).toBeGreaterThanOrEqual(3);
});

it('the same cut of a chain recorded before patches-decided-at-start fails its replay (the defect it mends)', async () => {
  // Recorded by the workflow code of 003b2f1: its `archive-by-sweeper` check came after the final checkpoint.
  const file = path.join(__dirname, '..', 'replay', 'histories', 'v3-denied.json');
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { events: JsonEvent[] };
  const chainId = chainIdOfSavedJson(json);
  expect(patchIds(json.events)).toContain('archive-by-sweeper');
  await expect(replay(json.events, chainId)).resolves.toBeUndefined();
  const last = cuttableMarkers(json.events).at(-1)!;
  await expect(replay(cutAfter(json.events, last), chainId)).rejects.toThrow(
    /Non-deprecated patch marker encountered for change archive-by-sweeper/,
  );
});
