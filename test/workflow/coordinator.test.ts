import { randomUUID } from 'node:crypto';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { DomainRules } from '../../activities';
import {
  COORDINATOR_WORKFLOW_TYPE,
  chooseWinnerUpdate,
  coordinatorId,
  coordinatorStateQuery,
  releaseSlotSignal,
  requestSlotSignal,
  slotRequestId,
  type CoordinatorInput,
  type CoordinatorState,
  type SlotRequest,
  type SlotVerdict,
} from '../../contracts/coordination';
import type { coordinatorWorkflow } from '../../workflows/coordinator';
import { FakeReceipts, fakeToken, hex } from './fakes';
import { eventually, startWorkflowTestEnv, type Fakes, type WorkflowTestEnv } from './env';

/*
 * coordinatorWorkflow's deadlines with fake activities: a holder that never releases loses its slot at
 * the hold timeout (also while the coordinator keeps continuing as new), and a tie nobody breaks is
 * settled at its decision deadline. Admission admits every request with the authority it carries;
 * signing records every event the coordinator signs, in order.
 */

let t: WorkflowTestEnv;
beforeAll(async () => {
  t = await startWorkflowTestEnv();
}, 120_000);
afterAll(async () => {
  await t?.teardown();
});

const rulesOf = (domain: string, rules: Partial<DomainRules>): DomainRules => ({
  name: domain,
  resources: ['Cluster::*'],
  conflicts: [['deploy', 'rollback']],
  onConflict: 'reject',
  batchingWindowMs: 0,
  tieBreakerRole: 'sre-lead',
  decisionDeadline: '1h',
  decisionDeadlineMs: 3_600_000,
  holdTimeoutMs: 3_600_000,
  ...rules,
});

/** Fake coordination activities for one domain, and the events the coordinator signed. */
function coordinatorFakes(rules: DomainRules) {
  const receipts = new FakeReceipts();
  const signed: { stepId: string; event: string }[] = [];
  const activities: Fakes = {
    async admitSlotRequests(input) {
      const admissions = input.requests.map((r) => ({ requestId: idOf(r), ok: true, authority: r.authority }));
      return { rules, bundleDigest: hex(0xb), now: new Date().toISOString(), admissions };
    },
    async signCoordinationReceipts(input) {
      const events = input.entries.map((e) => ({ stepId: e.stepId, event: eventOf(e.payload) }));
      signed.push(...events);
      const made = input.entries.map((e) => receipts.make(input.coordinatorId, e.stepId, 'decision', e.payload));
      return { receipts: made, signedAt: new Date().toISOString() };
    },
  };
  return { activities, signed };
}

let requests = 0;
function request(domain: string, action: string, authority: number): SlotRequest {
  const n = ++requests;
  const chainId = `chain-${n}-${randomUUID().slice(0, 8)}`;
  return {
    chainId,
    stepId: 's',
    domain,
    workload: `agent:w${n}`,
    action,
    resource: 'Cluster::"eu-1"',
    priority: 0,
    authority,
    requestDigest: hex(0x1000 + n),
    seal: `fake.seal-${n}.signature`,
  };
}

async function startCoordinator(taskQueue: string, domain: string, options?: CoordinatorInput['options']) {
  const args: [CoordinatorInput] = [{ domain, ...(options ? { options } : {}) }];
  const workflowId = coordinatorId(taskQueue, domain);
  const start = { taskQueue, workflowId, args };
  return t.env.client.workflow.start<typeof coordinatorWorkflow>(COORDINATOR_WORKFLOW_TYPE, start);
}

const state =
  (h: WorkflowHandle): (() => Promise<CoordinatorState>) =>
  () =>
    h.query(coordinatorStateQuery);
/** The state once `done` holds between two rounds (`settled`: not while a round's verdicts are signed and sent). */
const until = (h: WorkflowHandle, done: (s: CoordinatorState) => boolean, what: string): Promise<CoordinatorState> =>
  eventually(state(h), (s) => s.settled && done(s), what);
const idOf = (r: SlotRequest): string => slotRequestId(r.chainId, r.stepId);
/** The last final (granted or rejected) verdict for `r` among the recent ones. */
const final = (s: CoordinatorState, r: SlotRequest): SlotVerdict | undefined =>
  s.recent.filter((v) => v.requestId === idOf(r) && v.status !== 'queued').pop();
const reclaimed = 'slot reclaimed: held longer than the hold timeout';
const eventOf = (payload: unknown): string => String((payload as { event?: unknown }).event);

it('takes the slot back from a holder that never releases it at the hold timeout, then grants the next', async () => {
  const domain = 'hold';
  const f = coordinatorFakes(rulesOf(domain, { holdTimeoutMs: 1500 }));
  const a = request(domain, 'deploy', 5);
  const b = request(domain, 'deploy', 5);
  const after = await t.withFakes(f.activities, async (tq) => {
    const h = await startCoordinator(tq, domain);
    await h.signal(requestSlotSignal, a);
    await until(h, (s) => s.holder?.requestId === idOf(a), 'granted the first request');
    await h.signal(requestSlotSignal, b); // a never releases
    const after = await until(h, (s) => s.holder?.requestId === idOf(b), 'granted the second request');
    await h.terminate('test done');
    return after;
  });

  expect(final(after, a)).toMatchObject({ status: 'rejected', granted: false, reason: reclaimed });
  expect(final(after, b)).toMatchObject({ status: 'granted', granted: true });
  const at = (id: string, event: string): number => f.signed.findIndex((e) => e.stepId === id && e.event === event);
  expect(at(idOf(a), 'granted')).toBeGreaterThanOrEqual(0);
  expect(at(idOf(a), 'reclaimed')).toBeGreaterThan(at(idOf(a), 'granted'));
  expect(at(idOf(b), 'granted')).toBeGreaterThan(at(idOf(a), 'reclaimed'));
});

it('keeps the hold timeout across continue-as-new: steady traffic does not keep a dead holder alive', async () => {
  const domain = 'hold-can';
  const f = coordinatorFakes(rulesOf(domain, { holdTimeoutMs: 2000 }));
  const a = request(domain, 'deploy', 5);
  const after = await t.withFakes(f.activities, async (tq) => {
    // Continues as new after every message it handles; a release of nothing every 200 ms keeps it rolling.
    const h = await startCoordinator(tq, domain, { continueAsNewAfterEvents: 1 });
    await h.signal(requestSlotSignal, a);
    await until(h, (s) => s.holder?.requestId === idOf(a), 'granted the request');
    const noop = { chainId: `nobody-${randomUUID().slice(0, 8)}`, stepId: 's', completed: false };
    const after = await eventually(
      async () => {
        await h.signal(releaseSlotSignal, noop);
        await new Promise((r) => setTimeout(r, 200));
        return state(h)();
      },
      (s) => s.settled && final(s, a)?.status === 'rejected',
      'reclaimed the slot',
      30_000, // of traffic: the hold timeout is 2 s
    );
    await h.terminate('test done');
    return after;
  });

  expect(final(after, a)).toMatchObject({ status: 'rejected', reason: reclaimed });
  expect(after.holder).toBeUndefined();
  // The holder was carried through several runs before it was reclaimed.
  expect(after.runs).toBeGreaterThanOrEqual(3);
  expect(f.signed.filter((e) => e.stepId === idOf(a)).map((e) => e.event)).toEqual(['queued', 'granted', 'reclaimed']);
});

it('rejects every contender of a tie nobody breaks by the decision deadline, and refuses a late vote', async () => {
  const domain = 'tie';
  const rules = rulesOf(domain, { batchingWindowMs: 1000, decisionDeadline: '1s', decisionDeadlineMs: 1000 });
  const f = coordinatorFakes(rules);
  const b = request(domain, 'deploy', 5);
  const c = request(domain, 'rollback', 5); // conflicts with b, equal authority: a tie
  const { after, late } = await t.withFakes(f.activities, async (tq) => {
    const h = await startCoordinator(tq, domain);
    await h.signal(requestSlotSignal, b);
    await h.signal(requestSlotSignal, c);
    const after = await until(h, (s) => final(s, b) !== undefined && final(s, c) !== undefined, 'settled the tie');
    const vote = { tieId: 'tie-1', token: fakeToken('sre') };
    const late = await h.executeUpdate(chooseWinnerUpdate, { args: [vote] }).catch((e: unknown) => e);
    await h.terminate('test done');
    return { after, late };
  });

  for (const r of [b, c]) {
    const reason = 'tie-break: no choice by sre-lead within 1s';
    expect(final(after, r)).toMatchObject({ status: 'rejected', reason, tieId: 'tie-1' });
  }
  expect(after.ties).toEqual([]);
  expect(after.queue).toEqual([]);
  expect(after.holder).toBeUndefined();
  const events = ['batch', 'tie', 'queued', 'queued', 'tie-expired', 'rejected', 'rejected'];
  expect(f.signed.map((e) => e.event)).toEqual(events);
  expect(late).toBeInstanceOf(WorkflowUpdateFailedError);
  expect((late as WorkflowUpdateFailedError).cause?.message).toBe(`tieId: no pending tie tie-1 in ${domain}`);
});
