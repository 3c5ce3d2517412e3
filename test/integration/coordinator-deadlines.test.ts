import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { issueApproval } from '../../identity';
import {
  COORDINATOR_WORKFLOW_TYPE,
  chooseWinnerSignal,
  chooseWinnerUpdate,
  type CoordinatorState,
} from '../../contracts/coordination';
import { ErrorCode } from '../../contracts/errors';
import { ask, final, idOf, startCoordinatorHarness, type CoordinatorHarness } from '../harness/coordinator';

/*
 * Issue 13, coordinator part, on the real dev server (the pinned Temporal CLI): deadlines survive
 * continue-as-new, and the coordinator refuses invalid input inside the workflow.
 *
 * Real time, not the time-skipping test server: `TestWorkflowEnvironment.createTimeSkipping()`
 * downloads the Java test server at run time, and this project's machines and CI reach no download
 * host. The deadlines are therefore short (seconds), and what the tests prove does not rest on
 * wall-clock measurements taken by the test but on the recorded histories: the timer each run
 * started (its `startToFireTimeout`) against the grant time the coordinator recorded, and the
 * server's event times, which timers never precede.
 */

const HOLD_MS = 6000;
const TIE_MS = 5000;
const base = { resources: ['Cluster::*'], conflicts: [['deploy', 'rollback']], tieBreakerRole: 'sre-lead' };

let h: CoordinatorHarness;
beforeAll(async () => {
  h = await startCoordinatorHarness(
    [
      { ...base, name: 'hold', batchingWindow: '0s', holdTimeout: `${HOLD_MS / 1000}s` },
      { ...base, name: 'tie', batchingWindow: '300ms', decisionDeadline: `${TIE_MS / 1000}s` },
      { ...base, name: 'tie-vote', batchingWindow: '300ms', decisionDeadline: '60s' },
      { ...base, name: 'validator', batchingWindow: '300ms' },
    ],
    { 'agent:release-bot': 10, 'agent:peer-a': 5, 'agent:peer-b': 5 },
  );
});
afterAll(async () => {
  await h?.stop();
});

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number =>
  Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
type Event = temporal.api.history.v1.IHistoryEvent;
const events = (history: temporal.api.history.v1.IHistory): Event[] => history.events ?? [];
const timersStarted = (history: temporal.api.history.v1.IHistory): { id: string; durationMs: number; at: number }[] =>
  events(history)
    .filter((e) => e.timerStartedEventAttributes)
    .map((e) => ({
      id: e.timerStartedEventAttributes!.timerId!,
      durationMs: ms(e.timerStartedEventAttributes!.startToFireTimeout),
      at: ms(e.eventTime),
    }));
const timerFired = (history: temporal.api.history.v1.IHistory, id: string): number | undefined => {
  const e = events(history).find((x) => x.timerFiredEventAttributes?.timerId === id);
  return e ? ms(e.eventTime) : undefined;
};
const typeOf = (e: Event): string => temporal.api.enums.v1.EventType[e.eventType ?? 0] ?? String(e.eventType);
/** The governor time the run's first admission (at its start, before any message) reported, from its local activity marker. */
const admittedAt = (history: temporal.api.history.v1.IHistory): number => {
  for (const e of events(history)) {
    const data = e.markerRecordedEventAttributes?.details?.result?.payloads?.[0]?.data;
    if (!data) continue;
    const result = JSON.parse(Buffer.from(data).toString()) as { now?: string; admissions?: unknown };
    if (result.now !== undefined && result.admissions !== undefined) return Date.parse(result.now);
  }
  throw new Error('no admission recorded in this run');
};

/**
 * Checks, from the recorded runs, that a deadline at `dueAt` (governor time) set in run 1 was kept:
 * each later run slept exactly what remained when it started (`dueAt` minus the time its first
 * admission reported), never the full `fullMs`; and the run that acted on it did so at or after
 * `dueAt`: its timer fired then, or it began past `dueAt` and acted at once. Returns that run's index.
 */
function expectDeadlineKept(
  runs: { history: temporal.api.history.v1.IHistory }[],
  dueAt: number,
  fullMs: number,
): number {
  let acted = -1;
  for (let i = 1; i < runs.length && acted < 0; i++) {
    const { history } = runs[i]!;
    const timers = timersStarted(history);
    expect(timers.length).toBeLessThanOrEqual(1);
    if (timers.length === 0) {
      expect(admittedAt(history)).toBeGreaterThanOrEqual(dueAt);
      acted = i;
      continue;
    }
    const [t] = timers;
    expect(t!.durationMs).toBeLessThan(fullMs);
    expect(t!.durationMs).toBe(dueAt - admittedAt(history));
    const fired = timerFired(history, t!.id);
    if (fired !== undefined) {
      expect(fired).toBeGreaterThanOrEqual(dueAt);
      acted = i;
    }
  }
  expect(acted).toBeGreaterThan(0);
  return acted;
}

/** A message the coordinator handles and ignores (a release of a request holding no slot): lets it continue as new. */
const noop = (domain: string): Promise<void> =>
  h.cc.release(domain, { chainId: `nobody-${randomUUID().slice(0, 8)}`, stepId: 's', completed: false });

/**
 * Sends no-op messages, one per run (each makes a coordinator started with `continueAsNewAfterEvents: 1`
 * continue as new), until `done` holds; returns every state seen.
 */
async function rollOver(
  domain: string,
  done: (s: CoordinatorState) => boolean,
  what: string,
): Promise<CoordinatorState[]> {
  const seen: CoordinatorState[] = [];
  for (let i = 0; i < 40; i++) {
    const before = (await h.cc.state(domain)).runs;
    await noop(domain);
    const s = await h.waitState(domain, (x) => x.runs > before || done(x), `continued as new after run ${before}`);
    seen.push(s);
    if (done(s)) return seen;
  }
  throw new Error(`${domain}: never ${what}`);
}

describe('deadlines across continue-as-new', () => {
  it('times out a holder that never releases at grant time + hold timeout, however many runs roll over meanwhile', async () => {
    const run = randomUUID().slice(0, 8);
    await h.cc.start('hold', { continueAsNewAfterEvents: 1 });
    const a = await h.seal('hold', ask(`hold-${run}-a`, 'agent:release-bot', 'deploy'));
    await h.cc.send(a);
    const granted = await h.waitState('hold', (s) => s.holder?.requestId === idOf(a), 'granted the request');
    const grantedAt = Date.parse(granted.holder!.grantedAt!);
    expect(Number.isFinite(grantedAt)).toBe(true);

    // Messages keep arriving faster than the hold timeout: before the fix every new run restarted the
    // full timeout, so this loop never saw the slot reclaimed.
    const reclaimed = (s: CoordinatorState): boolean => final(s, idOf(a))?.status === 'rejected';
    const seen = await rollOver('hold', reclaimed, 'reclaimed the slot');
    for (const s of seen.filter((x) => x.holder))
      expect(s.holder).toMatchObject({
        requestId: idOf(a),
        grantedAt: granted.holder!.grantedAt,
        grant: granted.holder!.grant,
      });
    const last = seen[seen.length - 1]!;
    expect(final(last, idOf(a))).toMatchObject({
      status: 'rejected',
      granted: false,
      reason: 'slot reclaimed: held longer than the hold timeout',
    });
    expect(last.holder).toBeUndefined();

    const runs = await h.runs(h.cc.coordinatorId('hold'));
    // Run 1 granted and started the full hold timeout; every later run slept only what remained.
    expect(timersStarted(runs[0]!.history).map((t) => t.durationMs)).toEqual([HOLD_MS]);
    const reclaimRun = expectDeadlineKept(runs, grantedAt + HOLD_MS, HOLD_MS);
    expect(reclaimRun).toBeGreaterThanOrEqual(3); // the holder was carried through at least three continue-as-new
  }, 120_000);

  it('carries an open tie with its deadline: continue-as-new does not wait for it, and it expires on schedule', async () => {
    const run = randomUUID().slice(0, 8);
    await h.cc.start('tie', { continueAsNewAfterEvents: 1 });
    const b = await h.seal('tie', ask(`tie-${run}-b`, 'agent:peer-a', 'deploy'));
    const c = await h.seal('tie', ask(`tie-${run}-c`, 'agent:peer-b', 'rollback'));
    await h.cc.send(b);
    await h.cc.send(c);
    const opened = await h.waitState('tie', (s) => s.ties[0]?.digest !== undefined, 'opened a tie');
    const tie = opened.ties[0]!;
    const deadlineAt = Date.parse(tie.deadlineAt!);
    expect(tie).toMatchObject({ tieId: 'tie-1', deadline: `${TIE_MS / 1000}s` });
    expect([...tie.contenders].sort()).toEqual([idOf(b), idOf(c)].sort());

    const expired = (s: CoordinatorState): boolean =>
      final(s, idOf(b)) !== undefined && final(s, idOf(c)) !== undefined;
    const seen = await rollOver('tie', expired, 'expired the tie');
    for (const s of seen.filter((x) => x.ties.length > 0)) expect(s.ties).toEqual([tie]); // carried unchanged: digest, deadline
    const last = seen[seen.length - 1]!;
    for (const r of [b, c])
      expect(final(last, idOf(r))).toMatchObject({
        status: 'rejected',
        tieId: 'tie-1',
        reason: `tie-break: no choice by sre-lead within ${TIE_MS / 1000}s`,
      });
    expect(last.ties).toEqual([]);
    expect(last.queue).toEqual([]);

    const runs = await h.runs(h.cc.coordinatorId('tie'));
    // Run 1: the batching window, then the tie's full deadline; every later run slept only what remained.
    expect(timersStarted(runs[0]!.history).map((t) => t.durationMs)).toEqual([300, TIE_MS]);
    const expiryRun = expectDeadlineKept(runs, deadlineAt, TIE_MS);
    expect(expiryRun).toBeGreaterThanOrEqual(2); // the tie outlived at least two runs
  }, 120_000);

  it('settles a tie carried into a later run: its digest and conflict rules came along', async () => {
    const run = randomUUID().slice(0, 8);
    await h.cc.start('tie-vote', { continueAsNewAfterEvents: 1 });
    const b = await h.seal('tie-vote', ask(`tv-${run}-b`, 'agent:peer-a', 'deploy'));
    const c = await h.seal('tie-vote', ask(`tv-${run}-c`, 'agent:peer-b', 'rollback'));
    await h.cc.send(b);
    await h.cc.send(c);
    const opened = await h.waitState('tie-vote', (s) => s.ties[0]?.digest !== undefined, 'opened a tie');
    const later = (await rollOver('tie-vote', (s) => s.runs >= opened.runs + 2, 'continued as new twice')).pop()!;
    expect(later.ties).toEqual(opened.ties);

    const token = await issueApproval({
      home: h.home,
      sub: 'sally',
      roles: ['sre-lead'],
      chainId: c.chainId,
      stepId: c.stepId,
      stepDigest: opened.ties[0]!.digest!,
      decision: 'approve',
    });
    expect(await h.cc.chooseWinner('tie-vote', opened.ties[0]!.tieId, token)).toMatchObject({
      counted: true,
      approver: 'sally',
      winner: idOf(c),
    });
    const settled = await h.waitState('tie-vote', (s) => s.holder?.requestId === idOf(c), 'granted the chosen winner');
    expect(final(settled, idOf(b))).toMatchObject({
      status: 'rejected',
      conflictWith: idOf(c),
      reason: `lost tie-break tie-1 to ${idOf(c)} (chosen by sally)`,
    });
    expect(settled.ties).toEqual([]);
  }, 120_000);
});

describe('input validated inside the workflow', () => {
  const startRaw = async (args: unknown[]) => {
    const handle = await h.client.workflow.start(COORDINATOR_WORKFLOW_TYPE, {
      workflowId: `bad-coordinator-${randomUUID()}`,
      taskQueue: h.taskQueue,
      args,
    });
    const failure = await handle.result().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const cause = (failure as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    const history = await handle.fetchHistory();
    return { cause: cause as ApplicationFailure, history };
  };
  const validCarry = {
    head: { seq: 0, hash: '0'.repeat(64) },
    inbox: [],
    queue: [],
    versions: {},
    recent: [],
    decided: [],
    counters: { batch: 0, order: 0, tie: 0, grant: 0 },
    runs: 2,
  };

  it.each([
    ['no input at all', [], '(root): Invalid input: expected object, received undefined'],
    ['no domain', [{}], 'domain: Invalid input: expected string, received undefined'],
    [
      'a domain that is no identifier',
      [{ domain: 'a/b' }],
      'domain: must be 1-128 characters: letters, digits, _ . : @ -',
    ],
    [
      'a numeric option given as a string',
      [{ domain: 'x', options: { continueAsNewAfterEvents: '10' } }],
      'options.continueAsNewAfterEvents: Invalid input: expected number, received string',
    ],
    ['an unknown field', [{ domain: 'x', resume: {} }], '(root): Unrecognized key: "resume"'],
    [
      'a queue entry whose request id is a number, deep in the carry',
      [{ domain: 'x', carry: { ...validCarry, queue: [{ requestId: 7 }] } }],
      'carry.queue[0].requestId: Invalid input: expected string, received number',
    ],
    [
      'a well-formed carry on a first run (only continue-as-new may carry state)',
      [{ domain: 'x', carry: validCarry }],
      'carry: only a coordinator continuing as new may carry state into its next run',
    ],
  ])(
    'ends the run at once with a non-retryable GOVERNOR_INVALID_INPUT naming the field: %s',
    async (_what, args, message) => {
      const { cause, history } = await startRaw(args);
      expect(cause.type).toBe(ErrorCode.InvalidInput);
      expect(cause.nonRetryable).toBe(true);
      expect(cause.message.startsWith(message)).toBe(true);
      // One workflow task, no retry loop: the run failed in its first task.
      const types = events(history).map(typeOf);
      expect(types.filter((t) => t.includes('WORKFLOW_TASK_FAILED'))).toEqual([]);
      expect(types.filter((t) => t.includes('WORKFLOW_TASK_COMPLETED'))).toHaveLength(1);
      expect(types[types.length - 1]).toContain('WORKFLOW_EXECUTION_FAILED');
      expect(events(history).some((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity')).toBe(
        false,
      ); // nothing admitted or signed
    },
  );

  it('names every invalid field of a carry, joined by "; "', async () => {
    const { cause } = await startRaw([
      {
        domain: 'x',
        carry: {
          ...validCarry,
          head: { seq: -1, hash: 'h' },
          counters: { batch: 0, order: 0, tie: 0 },
          holder: { requestId: 'c/s' },
        },
      },
    ]);
    expect(cause.type).toBe(ErrorCode.InvalidInput);
    const parts = cause.message.split('; ');
    expect(parts).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^carry\.head\.seq: /),
        expect.stringMatching(/^carry\.counters\.grant: /),
        expect.stringMatching(/^carry\.holder\.request: /),
      ]),
    );
  });

  it('rejects an invalid tie-break vote in the update validator, before it reaches history; ignores a malformed vote signal', async () => {
    const run = randomUUID().slice(0, 8);
    const b = await h.seal('validator', ask(`val-${run}-b`, 'agent:peer-a', 'deploy'));
    await h.cc.send(b);
    await h.waitState('validator', (s) => s.holder?.requestId === idOf(b), 'granted');
    const handle = h.cc.handle('validator');

    const refusal = await handle
      .executeUpdate(chooseWinnerUpdate, { args: [{ tieId: '', token: 'not-a-jws' } as never] })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(refusal).toBeInstanceOf(WorkflowUpdateFailedError);
    const cause = (refusal as WorkflowUpdateFailedError).cause as ApplicationFailure;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect(cause.type).toBe(ErrorCode.InvalidInput);
    expect(cause.message).toBe(
      'tieId: Too small: expected string to have >=1 characters; token: Too small: expected string to have >=16 characters; token: must be a compact JWS (header.payload.signature)',
    );
    // A well-formed vote for a tie that is not pending: refused too, naming the field.
    const token = await issueApproval({
      home: h.home,
      sub: 'sally',
      roles: ['sre-lead'],
      chainId: b.chainId,
      stepId: b.stepId,
      stepDigest: 'f'.repeat(64),
      decision: 'approve',
    });
    await expect(h.cc.chooseWinner('validator', 'tie-9', token)).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
      message: 'tieId: no pending tie tie-9 in validator',
    });
    await handle.signal(chooseWinnerSignal, { tieId: 'tie-9', token: 'x' } as never); // malformed: logged and ignored

    await noop('validator');
    const s = await h.waitState('validator', (x) => x.holder?.requestId === idOf(b), 'still running');
    expect(s.recent.filter((v) => v.requestId === idOf(b)).map((v) => v.status)).toEqual(['queued', 'granted']); // no vote changed anything
    const types = events(await handle.fetchHistory()).map(typeOf);
    expect(types.filter((t) => t.includes('UPDATE'))).toEqual([]); // rejected updates never reach history
    expect(types.filter((t) => t.includes('WORKFLOW_TASK_FAILED'))).toEqual([]);
  });

  it('replays every coordinator history of this suite with the current workflow code', async () => {
    const ids: string[] = [];
    for await (const wf of h.client.workflow.list({
      query: `WorkflowType = '${COORDINATOR_WORKFLOW_TYPE}' AND TaskQueue = '${h.taskQueue}'`,
    }))
      ids.push(`${wf.workflowId} ${wf.runId}`);
    expect(ids.length).toBeGreaterThanOrEqual(15);
    for (const entry of ids) {
      const [workflowId, runId] = entry.split(' ') as [string, string];
      const history = await h.client.workflow.getHandle(workflowId, runId).fetchHistory();
      await expect(
        Worker.runReplayHistory(
          { workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } },
          history,
          workflowId,
        ),
      ).resolves.toBeUndefined();
    }
  }, 180_000);
});
