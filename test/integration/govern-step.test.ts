import {
  GOVERN_STEP_PATCH,
  LEAN_CHAIN_PATCH,
  ONE_MARKER_CHAIN_PATCH,
  PATCHES_AT_START,
  VALIDATED_INPUT_PATCH,
} from '../../contracts/patches';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createReplayer,
  fetchChainHistories,
  verifyChain,
  type HistoryJson,
  type Replayer,
  type VerifyReport,
} from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * `governStep`: a step with a built-in executor is decided and, when policy allows it outright, run
 * in one activity (one workflow task and one activity per step, like the same step without
 * governance). Whatever is not allowed outright (deny, escalation, a coordinated resource, an
 * executor error) continues exactly as after `authorize`; `governor verify` accepts these histories
 * and refuses one that claims a coordinated resource is not.
 */

// Channel::"ops" is coordinated (its own domain, short batching window); Channel::"releases" is not.
// The local HTTP endpoint is allow-listed by its exact origin (address and port) once it listens.
const bundleWith = (origin: string): string =>
  defaultBundleWith((m) => {
    const coordination = m.coordination as { domains: Record<string, unknown>[] };
    coordination.domains.push({
      name: 'chat-ops',
      resources: ['Channel::"ops"'],
      conflicts: [['notify', 'notify']],
      batchingWindow: '100ms',
      tieBreakerRole: 'sre-lead',
    });
    m.http = { allow: [{ origin, timeout: '30s' }] };
  });

let g: Governed;
let replayer: Replayer;
let server: http.Server;
let hostPort = '';
/** Requests the local HTTP endpoint received: path and Idempotency-Key. */
const requests: { path: string; key: string | undefined }[] = [];
let slowRelease: { promise: Promise<void>; release: () => void };
function resetSlow(): void {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => (release = resolve));
  slowRelease = { promise, release };
}
resetSlow();
/** Paths that answer 500 to their first request. */
const failFirst = new Set<string>(['/flaky']);

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const path = req.url ?? '';
    const key = req.headers['idempotency-key'];
    requests.push({ path, key: typeof key === 'string' ? key : undefined });
    req.resume();
    if (failFirst.delete(path)) {
      res.writeHead(500).end('try again');
      return;
    }
    if (path === '/reject') {
      res.writeHead(400).end('bad request');
      return;
    }
    if (path === '/slow') {
      // Answers once the test releases it (a step still in flight when the chain is revoked).
      void slowRelease.promise.then(() =>
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  hostPort = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  g = await setupGoverned({ policiesDir: bundleWith(`http://${hostPort}`) });
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});
afterAll(async () => {
  await replayer?.close();
  await g?.stop();
  await new Promise((resolve) => server?.close(resolve));
});

const notify = (id: string, channel: string, executor: Record<string, unknown> = { type: 'noop' }) => ({
  id,
  action: 'notify',
  resource: { type: 'Channel', id: channel },
  executor,
});

interface Shape {
  governSteps: number;
  authorizeMarkers: number;
  requestSlotMarkers: number;
  executes: number;
  patchMarkers: number;
  impliedPatchMarkers: number;
}

/** Counts what the chain's history recorded per kind of command. */
function shapeOf(history: HistoryJson): Shape {
  const shape: Shape = {
    governSteps: 0,
    authorizeMarkers: 0,
    requestSlotMarkers: 0,
    executes: 0,
    patchMarkers: 0,
    impliedPatchMarkers: 0,
  };
  for (const event of history.events as Record<string, Record<string, unknown>>[]) {
    const scheduled = event.activityTaskScheduledEventAttributes as { activityType?: { name?: string } } | undefined;
    if (scheduled?.activityType?.name === 'governStep') shape.governSteps++;
    if (scheduled?.activityType?.name === 'execute') shape.executes++;
    const marker = event.markerRecordedEventAttributes as
      | {
          markerName?: string;
          details?: { data?: { payloads?: { data?: string }[] }; 'patch-data'?: { payloads?: { data?: string }[] } };
        }
      | undefined;
    // Patch markers: one per run (PATCHES_AT_START, under which governStep runs; it implies the one-marker,
    // governStep, validated-input and lean patches, which new runs no longer record).
    const patch =
      marker?.markerName === 'core_patch'
        ? Buffer.from(marker.details?.['patch-data']?.payloads?.[0]?.data ?? '', 'base64').toString('utf8')
        : undefined;
    if (patch?.includes(PATCHES_AT_START)) shape.patchMarkers++;
    if (
      patch !== undefined &&
      [VALIDATED_INPUT_PATCH, LEAN_CHAIN_PATCH, GOVERN_STEP_PATCH, ONE_MARKER_CHAIN_PATCH].some((id) =>
        patch.includes(id),
      )
    )
      shape.impliedPatchMarkers++;
    if (marker?.markerName === 'core_local_activity') {
      const data = JSON.parse(
        Buffer.from(marker.details?.data?.payloads?.[0]?.data ?? '', 'base64').toString('utf8'),
      ) as { activity_type?: string };
      if (data.activity_type === 'authorize') shape.authorizeMarkers++;
      if (data.activity_type === 'requestSlot') shape.requestSlotMarkers++;
    }
  }
  return shape;
}

async function verified(chainId: string, histories?: HistoryJson[]): Promise<VerifyReport> {
  return verifyChain({
    histories: histories ?? (await fetchChainHistories(g.client, chainId)),
    chainId,
    home: g.home,
    replayer,
  });
}

function expectVerified(report: VerifyReport): void {
  expect(report.checks.filter((c) => !c.ok)).toEqual([]);
  expect(report.verdict).toBe('verified');
}

describe('governStep: decision and built-in execution in one activity', () => {
  it('runs allowed built-in steps with one activity each and no separate authorize or slot request', async () => {
    const r = await g.run({
      workload: WORKLOAD,
      steps: [notify('a', 'releases'), notify('b', 'releases'), notify('c', 'releases')],
    });
    expect(r.status).toBe('Completed');
    expect(r.steps.map((s) => [s.id, s.status, s.decision?.effect])).toEqual([
      ['a', 'completed', 'allow'],
      ['b', 'completed', 'allow'],
      ['c', 'completed', 'allow'],
    ]);
    const [history] = await fetchChainHistories(g.client, r.chainId);
    expect(shapeOf(history!)).toEqual({
      governSteps: 3,
      authorizeMarkers: 0,
      requestSlotMarkers: 0,
      executes: 0,
      patchMarkers: 1,
      impliedPatchMarkers: 0,
    });
    const report = await verified(r.chainId);
    expectVerified(report);
    // decision + execution per step, then the checkpoint
    expect(report).toMatchObject({ receipts: 7, decisions: 3 });
  });

  it("signs the chain's final checkpoint in the last step's governStep, and verify reads it only after an execution", async () => {
    const r = await g.run({ workload: WORKLOAD, steps: [notify('a', 'releases'), notify('b', 'releases')] });
    expect(r.status).toBe('Completed');
    const histories = await fetchChainHistories(g.client, r.chainId);
    const events = histories[0]!.events as Record<string, Record<string, unknown>>[];
    const payloads = (h: Record<string, Record<string, unknown>>[]) =>
      h
        .map(
          (e) =>
            (e.activityTaskCompletedEventAttributes as { result?: { payloads?: { data?: string }[] } } | undefined)
              ?.result?.payloads?.[0],
        )
        .filter((p): p is { data?: string } => p !== undefined);
    const decode = (p: { data?: string }) =>
      JSON.parse(Buffer.from(p.data ?? '', 'base64').toString('utf8')) as Record<string, unknown>;
    const results = payloads(events).map(decode) as {
      executed?: { receipt: { seq: number; hash: string } };
      checkpoint?: { receipt: { kind: string; seq: number; prevHash: string; signature: string }; payload: unknown };
    }[];
    // Only the last step's governStep holds a checkpoint, right after its execution receipt.
    expect(results.map((d) => d.checkpoint?.receipt.kind)).toEqual([undefined, 'checkpoint']);
    const { checkpoint, executed } = results[1]!;
    expect(checkpoint!.receipt.prevHash).toBe(executed!.receipt.hash);
    expect(checkpoint!.receipt.seq).toBe(executed!.receipt.seq + 1);
    expect(checkpoint!.payload).toEqual({ status: 'Completed', reason: null, steps: 2 });
    expect(checkpoint!.receipt.signature).toBe(r.checkpoint);
    expect(r.receiptHead).toEqual({
      seq: checkpoint!.receipt.seq,
      hash: (checkpoint!.receipt as { hash?: string }).hash,
    });
    // No recordReceipt local activity after the loop, and the lean path's one patch marker (PATCHES_AT_START).
    const markers = events
      .map(
        (e) =>
          e.markerRecordedEventAttributes as
            { markerName?: string; details?: Record<string, { payloads?: { data?: string }[] }> } | undefined,
      )
      .filter((m) => m !== undefined);
    const text = (m: (typeof markers)[number]) =>
      Buffer.from(
        m!.details?.data?.payloads?.[0]?.data ?? m!.details?.['patch-data']?.payloads?.[0]?.data ?? '',
        'base64',
      ).toString('utf8');
    expect(markers.filter((m) => m!.markerName === 'core_local_activity' && text(m).includes('recordReceipt'))).toEqual(
      [],
    );
    const patches = markers.filter((m) => m!.markerName === 'core_patch').map(text);
    expect(patches.filter((t) => t.includes(PATCHES_AT_START))).toHaveLength(1);
    expect(patches.filter((t) => !t.includes(PATCHES_AT_START))).toEqual([]);
    const report = await verified(r.chainId, histories);
    expectVerified(report);
    expect(report).toMatchObject({ receipts: 5, decisions: 2, status: 'Completed' });

    // The same history with the last step's execution taken out of its result: refused.
    const altered = JSON.parse(JSON.stringify(histories)) as HistoryJson[];
    const last = payloads(altered[0]!.events as Record<string, Record<string, unknown>>[])[1]!;
    const value = decode(last);
    delete value.executed;
    last.data = Buffer.from(JSON.stringify(value)).toString('base64');
    const refused = await verified(r.chainId, altered);
    expect(refused.verdict).not.toBe('verified');
    expect(refused.checks.flatMap((c) => c.problems ?? []).join('\n')).toContain(
      'governStep result holds a checkpoint without an execution before it',
    );
  });

  it('records a deny decided by governStep and runs nothing', async () => {
    const r = await g.run({
      workload: WORKLOAD,
      steps: [
        {
          id: 'drop',
          action: 'drop_table',
          resource: { type: 'Database', id: 'prod-main' },
          executor: { type: 'noop' },
        },
      ],
    });
    expect(r.status).toBe('Denied');
    expect(r.steps[0]).toMatchObject({ status: 'denied', decision: { effect: 'deny' } });
    const [history] = await fetchChainHistories(g.client, r.chainId);
    expect(shapeOf(history!)).toMatchObject({ governSteps: 1, authorizeMarkers: 0, executes: 0 });
    expectVerified(await verified(r.chainId));
  });

  it('asks the coordinator first when the resource is coordinated, then executes separately', async () => {
    const r = await g.run({ workload: WORKLOAD, steps: [notify('page', 'ops')] });
    expect(r.status).toBe('Completed');
    expect(r.steps[0]?.coordination).toMatchObject({ domain: 'chat-ops', status: 'released' });
    const histories = await fetchChainHistories(g.client, r.chainId);
    expect(shapeOf(histories[0]!)).toMatchObject({
      governSteps: 1,
      authorizeMarkers: 0,
      requestSlotMarkers: 1,
      executes: 1,
    });
    expectVerified(await verified(r.chainId, histories));

    // A history altered to say the resource is not coordinated (so the slot could be skipped) is refused.
    const altered = JSON.parse(JSON.stringify(histories)) as HistoryJson[];
    let flipped = 0;
    for (const event of altered[0]!.events as Record<string, Record<string, unknown>>[]) {
      const completed = event.activityTaskCompletedEventAttributes as
        { result?: { payloads?: { data?: string }[] } } | undefined;
      const payload = completed?.result?.payloads?.[0];
      if (!payload?.data) continue;
      const value = JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8')) as {
        authorized?: { coordinated?: boolean };
      };
      if (value.authorized?.coordinated !== true) continue;
      value.authorized.coordinated = false;
      payload.data = Buffer.from(JSON.stringify(value)).toString('base64');
      flipped++;
    }
    expect(flipped).toBe(1);
    const report = await verified(r.chainId, altered);
    expect(report.verdict).not.toBe('verified');
    const decisions = report.checks.find((c) => c.name === 'decisions');
    expect(decisions?.ok).toBe(false);
    expect((decisions?.problems ?? []).join('\n')).toContain(
      'says its resource is not coordinated, but the bundle puts it in domain chat-ops',
    );
  });

  it('runs the step through execute (same idempotency key) when the executor fails inside governStep', async () => {
    const r = await g.run({
      workload: WORKLOAD,
      steps: [
        notify('hook', 'releases', { type: 'http', method: 'POST', url: `http://${hostPort}/flaky`, timeoutMs: 5000 }),
      ],
    });
    expect(r.status).toBe('Completed');
    const calls = requests.filter((q) => q.path === '/flaky');
    // First call (inside governStep) got a 500; the second (the execute activity) succeeded.
    expect(calls).toEqual([
      { path: '/flaky', key: `${r.chainId}/hook` },
      { path: '/flaky', key: `${r.chainId}/hook` },
    ]);
    const [history] = await fetchChainHistories(g.client, r.chainId);
    expect(shapeOf(history!)).toMatchObject({ governSteps: 1, authorizeMarkers: 0, executes: 1 });
    const report = await verified(r.chainId);
    expectVerified(report);
    expect(report).toMatchObject({ receipts: 3, decisions: 1 });
  });

  it('fails the step on a final executor error (a 4xx answer) without sending it twice', async () => {
    const r = await g.run({
      workload: WORKLOAD,
      steps: [
        notify('hook', 'releases', { type: 'http', method: 'POST', url: `http://${hostPort}/reject`, timeoutMs: 5000 }),
      ],
    });
    expect(r.status).toBe('Failed');
    expect(r.steps[0]).toMatchObject({ status: 'failed', error: expect.stringContaining('answered 400') });
    expect(requests.filter((q) => q.path === '/reject')).toEqual([{ path: '/reject', key: `${r.chainId}/hook` }]);
    const [history] = await fetchChainHistories(g.client, r.chainId);
    expect(shapeOf(history!)).toMatchObject({ governSteps: 1, authorizeMarkers: 0, executes: 0 });
    const report = await verified(r.chainId);
    expectVerified(report);
    // decision, failed execution, checkpoint
    expect(report).toMatchObject({ receipts: 3, decisions: 1, status: 'Failed' });
  });

  it('lets a built-in step in flight finish and be recorded when the chain is revoked, then compensates it and stops', async () => {
    resetSlow();
    const steps = [
      {
        ...notify('hook', 'releases', {
          type: 'http',
          method: 'POST',
          url: `http://${hostPort}/slow`,
          timeoutMs: 20_000,
        }),
        compensation: { action: 'notify', resource: { type: 'Channel', id: 'releases' }, executor: { type: 'noop' } },
      },
      notify('after', 'releases'),
    ];
    const handle = await g.gc.start({ workload: WORKLOAD, steps }, await g.creds());
    const chainId = handle.workflowId;
    // The request is in flight inside governStep…
    for (let i = 0; i < 200 && !requests.some((q) => q.path === '/slow' && q.key === `${chainId}/hook`); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(requests.filter((q) => q.path === '/slow')).toHaveLength(1);
    // …the chain is revoked, and the workflow has processed the revocation before the request answers.
    await g.gc.revoke(chainId, { reason: 'incident 42', by: 'oncall' });
    const signalled = async (): Promise<boolean> => {
      const events = (await handle.fetchHistory()).events ?? [];
      const at = events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'revoke');
      return at >= 0 && events.slice(at).some((e) => e.workflowTaskCompletedEventAttributes);
    };
    for (let i = 0; i < 200 && !(await signalled()); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await signalled()).toBe(true);
    slowRelease.release();

    const r = (await handle.result()) as ChainResult;
    expect(r.status).toBe('Revoked');
    // The effect that happened is recorded and undone; the next step never ran.
    expect(r.steps.map((s) => [s.id, s.status])).toEqual([
      ['hook', 'compensated'],
      ['after', 'skipped'],
    ]);
    expect(requests.filter((q) => q.path === '/slow')).toHaveLength(1);
    const report = await verified(chainId);
    expectVerified(report);
    // decision + execution of the step, the revocation, compensation decision + execution, checkpoint; no orphaned receipts
    expect(report).toMatchObject({ status: 'Revoked', receipts: 6 });
    expect(report.checks.find((c) => c.name === 'receipts')?.detail).not.toContain('not part of the chain');
  });
});
