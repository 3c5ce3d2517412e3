import { randomUUID } from 'node:crypto';
import type { Client, Connection } from '@temporalio/client';
import { compactVerify, createLocalJWKSet } from 'jose';
import { issueApproval, loadPublicJwks } from '../../identity';
import { CoordinationClient } from '../../sdk/coordination';
import {
  COORDINATOR_WORKFLOW_TYPE,
  slotRequestId,
  type CoordinatorState,
  type SlotAsk,
  type SlotRequest,
  type SlotVerdict,
} from '../../contracts/coordination';
import type { Receipt } from '../../contracts/receipt';
import type { Manifest } from '../../policies/manifest';
import { defaultBundleWith } from '../harness/bundles';
import { runGovernorCli } from '../harness/cli';
import { sealSlotRequestWithKey } from '../harness/coordinator';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createGovernorWorker } from '../../workers/worker';
import { makeHome, testAddress, testClient, uniqueQueue } from '../harness/temporal';

/*
 * The coordinator against the real dev server, driven directly: requests are sealed like the
 * `requestSlot` activity seals them and sent with signal-with-start; chains are simulated by ids (a
 * verdict to a workflow that does not exist is logged and dropped) or by an idle receiver workflow.
 */

const domain = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  resources: ['Cluster::*'],
  conflicts: [['deploy', 'rollback']],
  batchingWindow: '1500ms',
  tieBreakerRole: 'sre-lead',
  decisionDeadline: '30s',
  ...extra,
});
const bundleDir = defaultBundleWith((m) => {
  m.coordination = {
    domains: [
      domain('perm-1'),
      domain('perm-2'),
      domain('perm-3'),
      domain('requeue', { onConflict: 'requeue' }),
      domain('tie'),
      domain('tie-expiry', { decisionDeadline: '2s' }),
      domain('tie-cli'),
      domain('versions', { batchingWindow: '500ms' }),
      domain('can', { batchingWindow: '500ms' }),
      domain('forged', { batchingWindow: '300ms' }),
    ],
    authority: {
      workloads: { 'agent:release-bot': 10, 'agent:ops-bot': 5, 'agent:peer-a': 5, 'agent:peer-b': 5 },
      default: 0,
    },
  };
});

let home: string;
let taskQueue: string;
let governor: { worker: Worker; connection: NativeConnection; running: Promise<void> };
let client: Client;
let connection: Connection;
let cc: CoordinationClient;
let manifest: Manifest;

beforeAll(async () => {
  home = await makeHome();
  taskQueue = uniqueQueue('coordination');
  // Unlike the other suites, this worker keeps a workflow cache: the coordinator receives signals
  // while its local activities run, and without a cache the SDK evicts the run mid-activity (the task
  // times out and is retried 10 s later). Determinism is checked instead by replaying every
  // coordinator history at the end (see afterAll).
  const native = await NativeConnection.connect({ address: testAddress() });
  const { worker, policies } = await createGovernorWorker({
    connection: native,
    namespace: 'default',
    taskQueue,
    home,
    policiesDir: bundleDir,
    workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! },
    maxCachedWorkflows: 50,
  });
  governor = { worker, connection: native, running: worker.run() };
  ({ client, connection } = await testClient());
  cc = new CoordinationClient(client, taskQueue);
  manifest = policies.current()!.bundle.manifest;
});
afterAll(async () => {
  if (governor) {
    governor.worker.shutdown();
    await governor.running;
    await governor.connection.close();
  }
  await connection?.close();
});

const ask = (chainId: string, workload: string, action: string, extra: Partial<SlotAsk> = {}): SlotAsk => ({
  chainId,
  stepId: 's',
  workload,
  action,
  resource: { type: 'Cluster', id: 'eu-1' },
  ...extra,
});
const seal = async (d: string, a: SlotAsk): Promise<SlotRequest> =>
  (await sealSlotRequestWithKey(home, manifest, d, a))!;
const idOf = (r: { chainId: string; stepId: string }) => slotRequestId(r.chainId, r.stepId);

async function waitState(
  d: string,
  predicate: (s: CoordinatorState) => boolean,
  what: string,
): Promise<CoordinatorState> {
  let last: CoordinatorState | undefined;
  for (let i = 0; i < 150; i++) {
    try {
      last = await cc.state(d);
      if (last.settled && predicate(last)) return last;
    } catch {
      // not started yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `${d}: never ${what}; last state: ${JSON.stringify({ holder: last?.holder?.requestId, queue: last?.queue.map((q) => q.requestId), ties: last?.ties, recent: last?.recent.map((v) => [v.requestId, v.status, v.reason]) })}`,
  );
}
const final = (s: CoordinatorState, requestId: string): SlotVerdict | undefined =>
  s.recent.filter((v) => v.requestId === requestId && v.status !== 'queued').pop();

describe('deterministic order', () => {
  it('orders the same pending set identically whatever the arrival order, and settles conflicts by authority', async () => {
    const run = randomUUID().slice(0, 8);
    const asks = [
      ask(`p-${run}-deploy`, 'agent:release-bot', 'deploy'),
      ask(`p-${run}-rollback`, 'agent:ops-bot', 'rollback'),
      ask(`p-${run}-urgent`, 'agent:peer-a', 'scale', { priority: 2 }),
      ask(`p-${run}-peer`, 'agent:peer-b', 'scale'),
      ask(`p-${run}-anon1`, 'agent:nobody', 'notify'),
      ask(`p-${run}-anon2`, 'agent:nobody-else', 'notify'),
    ];
    const permutations = [
      ['perm-1', [0, 1, 2, 3, 4, 5]],
      ['perm-2', [5, 4, 3, 2, 1, 0]],
      ['perm-3', [3, 0, 5, 1, 4, 2]],
    ] as const;
    const outcomes = await Promise.all(
      permutations.map(async ([d, order]) => {
        const requests = await Promise.all(asks.map((a) => seal(d, a)));
        for (const i of order) await cc.send(requests[i]!);
        const s = await waitState(
          d,
          (x) => x.holder !== undefined && x.collecting.length === 0 && x.queue.length === 4,
          'ordered its batch',
        );
        return { s, digests: requests.map((r) => r.requestDigest) };
      }),
    );
    const orders = outcomes.map(({ s }) => [s.holder!.requestId, ...s.queue.map((q) => q.requestId)]);
    const rejections = outcomes.map(({ s }) =>
      s.recent.filter((v) => v.status === 'rejected').map((v) => [v.requestId, v.reason]),
    );
    // The digest does not depend on the domain: the same request is the same tie-break everywhere.
    expect(outcomes[1]!.digests).toEqual(outcomes[0]!.digests);
    expect(orders[1]).toEqual(orders[0]);
    expect(orders[2]).toEqual(orders[0]);
    expect(rejections[1]).toEqual(rejections[0]);
    expect(rejections[2]).toEqual(rejections[0]);
    const [deploy, rollback, urgent, peer] = asks.map(idOf);
    expect(orders[0]!.slice(0, 3)).toEqual([deploy, urgent, peer]);
    expect(rejections[0]).toEqual([[rollback, `conflicts with ${deploy} (deploy, authority 10 > 5)`]]);
    const { s } = outcomes[0]!;
    expect(s.queue.map((q) => q.position)).toEqual([1, 2, 3, 4]);
    expect(s.batches).toBe(1);
    const queued = s.recent.filter((v) => v.status === 'queued');
    expect(queued).toHaveLength(5);
    expect(queued.every((v) => v.receipt && v.batch === 1)).toBe(true);
  });
});

describe('conflicts, receipts and delivery to the chain', () => {
  it('requeues the lower authority behind the winner, grants in order, signals each chain with the receipt of its verdict', async () => {
    // An idle workflow stands in for the winning chain: its history shows the signals it received.
    const winnerChain = `recv-${randomUUID()}`;
    await client.workflow.start(COORDINATOR_WORKFLOW_TYPE, {
      workflowId: winnerChain,
      taskQueue,
      args: [{ domain: 'receiver' }],
    });
    const winner = await seal('requeue', ask(winnerChain, 'agent:release-bot', 'deploy'));
    const loser = await seal('requeue', ask(`loser-${randomUUID()}`, 'agent:ops-bot', 'rollback'));
    await cc.send(loser);
    await cc.send(winner);
    let s = await waitState('requeue', (x) => x.holder?.requestId === idOf(winner), 'granted the winner');
    expect(s.queue).toEqual([
      expect.objectContaining({
        requestId: idOf(loser),
        state: 'queued',
        conflictWith: idOf(winner),
        note: expect.stringContaining(`requeued after ${idOf(winner)}`),
      }),
    ]);

    await cc.release('requeue', { chainId: winner.chainId, stepId: 's', completed: true });
    s = await waitState('requeue', (x) => x.holder?.requestId === idOf(loser), 'granted the requeued request');
    expect(s.versions).toEqual({ 'Cluster::"eu-1"': 1 });
    expect(final(s, idOf(loser))).toMatchObject({
      status: 'granted',
      granted: true,
      conflictWith: idOf(winner),
      version: 1,
    });
    await cc.release('requeue', { chainId: loser.chainId, stepId: 's', completed: false });
    s = await waitState('requeue', (x) => x.holder === undefined, 'released');
    expect(s.versions).toEqual({ 'Cluster::"eu-1"': 1 }); // not completed: the version stays

    // The chain received its verdicts, each with the coordinator's receipt.
    const received = (await client.workflow.getHandle(winnerChain).fetchHistory())
      .events!.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'slotVerdict')
      .map(
        (e) =>
          JSON.parse(
            Buffer.from(e.workflowExecutionSignaledEventAttributes!.input!.payloads![0]!.data!).toString(),
          ) as SlotVerdict,
      );
    expect(received.map((v) => v.status)).toEqual(['queued', 'granted']);
    const granted = s.recent.find((v) => v.requestId === idOf(winner) && v.status === 'granted')!;
    expect(received[1]).toEqual(granted);
    expect(granted.receipt).toMatchObject({
      coordinatorId: cc.coordinatorId('requeue'),
      seq: expect.any(Number),
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    await client.workflow.getHandle(winnerChain).terminate('test done');

    // The coordinator's receipt chain: every batch, verdict and release, linked and signed.
    const receipts = (await client.workflow.getHandle(cc.coordinatorId('requeue')).fetchHistory())
      .events!.filter((e) => e.markerRecordedEventAttributes?.details?.result)
      .flatMap((e) => {
        const result = JSON.parse(
          Buffer.from(e.markerRecordedEventAttributes!.details!.result!.payloads![0]!.data!).toString(),
        ) as { receipts?: Receipt[] };
        return result.receipts ?? [];
      });
    const jwks = createLocalJWKSet(loadPublicJwks(home, 'receipt'));
    let prev = '0'.repeat(64);
    for (const [i, r] of receipts.entries()) {
      expect({ seq: r.seq, prevHash: r.prevHash, chainId: r.chainId }).toEqual({
        seq: i + 1,
        prevHash: prev,
        chainId: cc.coordinatorId('requeue'),
      });
      expect(new TextDecoder().decode((await compactVerify(r.signature, jwks)).payload)).toBe(r.hash);
      prev = r.hash;
    }
    expect(receipts.map((r) => r.stepId)).toEqual([
      'batch-1',
      idOf(winner),
      idOf(loser),
      idOf(winner),
      idOf(winner),
      idOf(loser),
      idOf(loser),
    ]);
    expect(s.receiptHead).toEqual({ seq: receipts.length, hash: prev });
    expect(receipts.find((r) => r.hash === granted.receipt!.hash)).toBeDefined();
  });

  it('refuses a request not sealed by this governor, naming why', async () => {
    const good = await seal('forged', ask(`forged-${randomUUID()}`, 'agent:nobody', 'deploy'));
    const inflated = { ...good, chainId: `forged-${randomUUID()}`, authority: 1000 };
    const reforged = { ...good, stepId: 'other' };
    const sealedElsewhere = await sealSlotRequestWithKey(
      await makeHome(),
      manifest,
      'forged',
      ask(`forged-${randomUUID()}`, 'agent:nobody', 'deploy'),
    );
    for (const r of [inflated, reforged, sealedElsewhere!]) await cc.send(r);
    const s = await waitState(
      'forged',
      (x) => x.recent.filter((v) => v.status === 'rejected').length === 3,
      'refused the forgeries',
    );
    expect(
      Object.fromEntries(s.recent.filter((v) => v.status === 'rejected').map((v) => [v.requestId, v.reason])),
    ).toEqual({
      [idOf(inflated)]: 'request digest does not match the request',
      [idOf(reforged)]: 'request digest does not match the request',
      [idOf(sealedElsewhere!)]: 'request is not sealed by this governor',
    });
  });
});

describe('ties between equal authorities', () => {
  it('waits for the tie-breaker role: refuses contenders and other roles, then grants the chosen winner and rejects the other', async () => {
    const a = await seal('tie', ask(`tie-a-${randomUUID()}`, 'agent:peer-a', 'deploy'));
    const b = await seal('tie', ask(`tie-b-${randomUUID()}`, 'agent:peer-b', 'rollback'));
    await cc.send(a);
    await cc.send(b);
    const s = await waitState('tie', (x) => x.ties[0]?.digest !== undefined, 'opened a tie');
    const tie = s.ties[0]!;
    expect(tie).toMatchObject({
      role: 'sre-lead',
      deadline: '30s',
      contenders: expect.arrayContaining([idOf(a), idOf(b)]),
      deadlineAt: expect.any(String),
    });
    expect(s.holder).toBeUndefined(); // the tie holds the queue
    expect(s.queue.map((q) => q.state)).toEqual(['tie', 'tie']);

    const vote = (sub: string, roles: string[], winner: SlotRequest, stepDigest = tie.digest!) =>
      issueApproval({
        home,
        sub,
        roles,
        chainId: winner.chainId,
        stepId: winner.stepId,
        stepDigest,
        decision: 'approve',
      });
    await expect(cc.chooseWinner('tie', 'tie-99', await vote('sally', ['sre-lead'], b))).rejects.toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringContaining('no pending tie tie-99'),
    });
    expect(await cc.chooseWinner('tie', tie.tieId, await vote('agent:peer-a', ['sre-lead'], a))).toMatchObject({
      counted: false,
      reason: 'a contender or its owner may not settle the tie',
    });
    expect(await cc.chooseWinner('tie', tie.tieId, await vote('bob', ['viewer'], a))).toMatchObject({
      counted: false,
      reason: 'approver does not hold the tie-breaker role (sre-lead)',
    });
    expect(await cc.chooseWinner('tie', tie.tieId, await vote('sally', ['sre-lead'], a, 'f'.repeat(64)))).toMatchObject(
      { counted: false, reason: 'vote is not for this tie' },
    );
    expect(await cc.chooseWinner('tie', tie.tieId, await vote('sally', ['sre-lead'], b))).toEqual({
      tieId: tie.tieId,
      counted: true,
      reason: '',
      approver: 'sally',
      decision: 'approve',
      winner: idOf(b),
    });

    const after = await waitState('tie', (x) => x.holder?.requestId === idOf(b), 'granted the chosen winner');
    expect(after.ties).toEqual([]);
    expect(final(after, idOf(a))).toMatchObject({
      status: 'rejected',
      conflictWith: idOf(b),
      tieId: tie.tieId,
      reason: `lost tie-break ${tie.tieId} to ${idOf(b)} (chosen by sally)`,
    });
    expect(final(after, idOf(b))).toMatchObject({ status: 'granted', tieId: tie.tieId });
  });

  it('governor coordination show lists a tie with its contenders side by side; pick settles it', async () => {
    const a = await seal('tie-cli', ask(`cli-a-${randomUUID()}`, 'agent:peer-a', 'deploy'));
    const b = await seal('tie-cli', ask(`cli-b-${randomUUID()}`, 'agent:peer-b', 'rollback'));
    await cc.send(a);
    await cc.send(b);
    const opened = await waitState('tie-cli', (x) => x.ties[0]?.digest !== undefined, 'opened a tie');
    const tieId = opened.ties[0]!.tieId;
    const cli = (args: string[]) =>
      runGovernorCli(args, { TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: home, GOVERNOR_TASK_QUEUE: taskQueue });

    const shown = await cli(['coordination', 'show', 'tie-cli']);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`tie ${tieId}: sre-lead decides by`);
    for (const r of [a, b]) expect(shown.stdout).toContain(idOf(r));
    expect(shown.stdout).toContain(`settle: npx governor coordination pick tie-cli ${tieId} --winner <chainId/stepId>`);

    const stranger = await cli([
      'coordination',
      'pick',
      'tie-cli',
      tieId,
      '--winner',
      'nope/x',
      '--as',
      'sally',
      '--roles',
      'sre-lead',
    ]);
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain('--winner: nope/x is not a contender');
    const wrongRole = await cli([
      'coordination',
      'pick',
      'tie-cli',
      tieId,
      '--winner',
      idOf(a),
      '--as',
      'bob',
      '--roles',
      'viewer',
    ]);
    expect({ code: wrongRole.code, out: wrongRole.stdout.trim() }).toEqual({
      code: 1,
      out: 'tie-break vote rejected: approver does not hold the tie-breaker role (sre-lead)',
    });

    const picked = await cli([
      'coordination',
      'pick',
      'tie-cli',
      tieId,
      '--winner',
      idOf(b),
      '--as',
      'sally',
      '--roles',
      'sre-lead',
    ]);
    expect({ code: picked.code, stderr: picked.stderr }).toEqual({ code: 0, stderr: '' });
    expect(picked.stdout.trim()).toBe(
      `tie ${tieId} settled by sally: ${idOf(b)} goes first; the other contenders are rejected`,
    );
    const after = await waitState('tie-cli', (x) => x.holder?.requestId === idOf(b), 'granted the chosen winner');
    expect(final(after, idOf(a))).toMatchObject({
      status: 'rejected',
      reason: `lost tie-break ${tieId} to ${idOf(b)} (chosen by sally)`,
    });
  });

  it('denies every contender when nobody chooses by the decision deadline', async () => {
    const a = await seal('tie-expiry', ask(`exp-a-${randomUUID()}`, 'agent:peer-a', 'deploy'));
    const b = await seal('tie-expiry', ask(`exp-b-${randomUUID()}`, 'agent:peer-b', 'rollback'));
    await cc.send(b);
    await cc.send(a);
    const s = await waitState(
      'tie-expiry',
      (x) => final(x, idOf(a)) !== undefined && final(x, idOf(b)) !== undefined,
      'denied both',
    );
    for (const r of [a, b])
      expect(final(s, idOf(r))).toMatchObject({
        status: 'rejected',
        granted: false,
        reason: 'tie-break: no choice by sre-lead within 2s',
        tieId: 'tie-1',
      });
    expect(s.queue).toEqual([]);
    expect(s.holder).toBeUndefined();
    expect(s.ties).toEqual([]);
  });
});

describe('state consistency', () => {
  it('rejects steps planned against a stale (or unknown) version, at batch time and at grant time', async () => {
    const run = randomUUID().slice(0, 8);
    const first = await seal('versions', ask(`v-${run}-first`, 'agent:release-bot', 'deploy', { plannedVersion: 0 }));
    const behind = await seal('versions', ask(`v-${run}-behind`, 'agent:nobody', 'scale', { plannedVersion: 0 }));
    await cc.send(first);
    await cc.send(behind);
    await waitState(
      'versions',
      (x) => x.holder?.requestId === idOf(first) && x.queue.length === 1,
      'granted the first',
    );
    await cc.release('versions', { chainId: first.chainId, stepId: 's', completed: true });
    let s = await waitState('versions', (x) => final(x, idOf(behind)) !== undefined, 'judged the queued one');
    expect(final(s, idOf(behind))).toMatchObject({
      status: 'rejected',
      reason: 'stale: planned against version 0, current 1',
      version: 1,
    });

    const stale = await seal('versions', ask(`v-${run}-stale`, 'agent:release-bot', 'deploy', { plannedVersion: 0 }));
    const fresh = await seal('versions', ask(`v-${run}-fresh`, 'agent:nobody', 'scale', { plannedVersion: 1 }));
    const future = await seal('versions', ask(`v-${run}-future`, 'agent:nobody', 'scale', { plannedVersion: 5 }));
    for (const r of [stale, fresh, future]) await cc.send(r);
    s = await waitState('versions', (x) => x.holder?.requestId === idOf(fresh), 'granted the fresh one');
    expect(final(s, idOf(stale))).toMatchObject({
      status: 'rejected',
      reason: 'stale: planned against version 0, current 1',
    });
    expect(final(s, idOf(future))).toMatchObject({
      status: 'rejected',
      reason: 'unknown version: planned against version 5, current 1',
    });
    expect(final(s, idOf(fresh))).toMatchObject({ status: 'granted', version: 1 });
  });
});

describe('continue-as-new and withdrawal', () => {
  it('keeps queue, holder, versions and receipts across runs; a withdrawn request leaves the queue; a repeat is ignored', async () => {
    await cc.start('can', { continueAsNewAfterEvents: 40 });
    const run = randomUUID().slice(0, 8);
    const requests = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((i) => seal('can', ask(`can-${run}-${i}`, 'agent:nobody', 'scale', { priority: 10 - i }))),
    );
    for (const r of requests) await cc.send(r);
    let s = await waitState(
      'can',
      (x) => x.holder?.requestId === idOf(requests[0]!) && x.queue.length === 5,
      'ordered the batch',
    );
    await cc.withdraw('can', { chainId: requests[2]!.chainId, stepId: 's', reason: 'chain revoked' });
    await cc.release('can', { chainId: requests[0]!.chainId, stepId: 's', completed: true });
    s = await waitState(
      'can',
      (x) => x.runs >= 2 && x.holder?.requestId === idOf(requests[1]!),
      'continued as new with the next holder',
    );
    expect(s.queue.map((q) => q.requestId)).toEqual([3, 4, 5].map((i) => idOf(requests[i]!)));
    expect(s.versions).toEqual({ 'Cluster::"eu-1"': 1 });
    const headBefore = s.receiptHead.seq;
    expect(headBefore).toBeGreaterThan(5);

    await cc.send(requests[0]!); // a repeat of a finished request (e.g. a retried activity): ignored
    await cc.release('can', { chainId: requests[1]!.chainId, stepId: 's', completed: true });
    s = await waitState('can', (x) => x.holder?.requestId === idOf(requests[3]!), 'granted past the withdrawn request');
    expect(s.queue.map((q) => q.requestId)).toEqual([4, 5].map((i) => idOf(requests[i]!)));
    expect(s.versions).toEqual({ 'Cluster::"eu-1"': 2 });
    expect(s.receiptFailure).toBeUndefined();
    expect(s.receiptHead.seq).toBeGreaterThan(headBefore);
    expect(s.collecting).toEqual([]);
    expect(s.recent.some((v) => v.requestId === idOf(requests[2]!) && v.status === 'granted')).toBe(false);
    const runs: string[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${cc.coordinatorId('can')}'` }))
      runs.push(wf.status.name);
    expect(runs).toContain('CONTINUED_AS_NEW');
  });
});

describe('replay', () => {
  it('replays every coordinator history of this suite with the current workflow code', async () => {
    const ids: string[] = [];
    for await (const wf of client.workflow.list({
      query: `WorkflowType = '${COORDINATOR_WORKFLOW_TYPE}' AND TaskQueue = '${taskQueue}'`,
    }))
      ids.push(`${wf.workflowId} ${wf.runId}`);
    expect(ids.length).toBeGreaterThanOrEqual(8);
    for (const entry of ids) {
      const [workflowId, runId] = entry.split(' ') as [string, string];
      const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
      await expect(
        Worker.runReplayHistory(
          { workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } },
          history,
          workflowId,
        ),
      ).resolves.toBeUndefined();
    }
  });
});
