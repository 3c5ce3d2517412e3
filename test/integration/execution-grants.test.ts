import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { GrantSigner } from '../../activities/grants';
import { createReplayer, fetchChainHistories, verifyChain, type HistoryJson, type Replayer } from '../../audit/verify';
import type { ServiceActivityInput } from '../../contracts/executor';
import { GRANT_HEADER, grantLifetimeMs, type MintGrantInput } from '../../contracts/grant';
import { loadPublicJwks } from '../../identity';
import { verifyGrant, verifyServiceActivityGrant } from '../../sdk/grant';
import { GRANT_REFUSED } from '../../examples/service/activities';
import { defaultBundleWith } from '../harness/bundles';
import type { ChainResult } from '../../contracts/state';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import type { RogueOutcome } from '../harness/rogue-workflows';
import { testAddress, uniqueQueue } from '../harness/temporal';

/**
 * Execution grants (DESIGN §13, issue 20 item 4), against the real dev server: every governed call to a
 * service carries a grant the service verifies (`requireGrants`: the example service as its worker runs
 * it), and an http step sends one in the `governor-grant` header. A workflow that is not the governor
 * and schedules the service's activity directly is refused, with no grant, an expired grant, a grant of
 * another step, another audience or another input; nothing it asks for reaches the service's ledger.
 */

let g: Governed;
let server: http.Server;
let hostPort = '';
/** Requests the local http endpoint received: path, idempotency key and grant header. */
const requests: { path: string; key: string | undefined; grant: string | undefined }[] = [];
let rogueConnection: NativeConnection;
let rogueWorker: Worker;
let rogueRun: Promise<void>;
let rogueQueue = '';
let replayer: Replayer;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const header = (name: string) =>
      typeof req.headers[name] === 'string' ? (req.headers[name] as string) : undefined;
    requests.push({ path: req.url ?? '', key: header('idempotency-key'), grant: header(GRANT_HEADER) });
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  hostPort = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const policiesDir = defaultBundleWith((m) => {
    const coordination = m.coordination as { domains: Record<string, unknown>[] };
    coordination.domains.push({
      name: 'chat-ops',
      resources: ['Channel::"ops"'],
      conflicts: [['notify', 'notify']],
      batchingWindow: '100ms',
      tieBreakerRole: 'sre-lead',
    });
    m.http = { allow: [{ origin: `http://${hostPort}`, timeout: '30s' }] };
  });
  g = await setupGoverned({ policiesDir, requireGrants: true });
  rogueQueue = uniqueQueue('rogue');
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../harness/rogue-workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
  rogueConnection = await NativeConnection.connect({ address: testAddress() });
  rogueWorker = await Worker.create({ connection: rogueConnection, taskQueue: rogueQueue, workflowBundle: { code } });
  rogueRun = rogueWorker.run();
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
}, 120_000);
afterAll(async () => {
  await replayer?.close();
  rogueWorker?.shutdown();
  await rogueRun;
  await rogueConnection?.close();
  await g?.stop();
  await new Promise((resolve) => server?.close(resolve));
});

/** The inputs of the service activities a chain's history scheduled, by step id. */
function serviceInputs(histories: HistoryJson[], activityType: string): Map<string, ServiceActivityInput> {
  const found = new Map<string, ServiceActivityInput>();
  for (const h of histories) {
    for (const event of h.events as Record<string, Record<string, unknown>>[]) {
      const attrs = event.activityTaskScheduledEventAttributes as
        { activityType?: { name?: string }; input?: { payloads?: { data?: string }[] } } | undefined;
      if (attrs?.activityType?.name !== activityType) continue;
      const input = JSON.parse(Buffer.from(attrs.input?.payloads?.[0]?.data ?? '', 'base64').toString('utf8'));
      found.set((input as ServiceActivityInput).stepId, input as ServiceActivityInput);
    }
  }
  return found;
}

/** The activity type of every local activity marker in the histories, in order. */
function localActivityTypes(histories: HistoryJson[]): string[] {
  return localActivityMarkers(histories).map((m) => m.type);
}

/** The grants the `authorize` local activities returned (their recorded results), in order. */
function recordedGrants(histories: HistoryJson[]): string[] {
  return localActivityMarkers(histories)
    .filter((m) => m.type === 'authorize' && typeof (m.result as { grant?: unknown })?.grant === 'string')
    .map((m) => (m.result as { grant: string }).grant);
}

/** Local activity markers: their activity type and decoded result. */
function localActivityMarkers(histories: HistoryJson[]): { type: string; result: unknown }[] {
  const decode = (p: { data?: string } | undefined): unknown =>
    JSON.parse(Buffer.from(p?.data ?? '', 'base64').toString('utf8') || 'null');
  const out: { type: string; result: unknown }[] = [];
  for (const h of histories) {
    for (const event of h.events as Record<string, Record<string, unknown>>[]) {
      const attrs = event.markerRecordedEventAttributes as
        { markerName?: string; details?: Record<string, { payloads?: { data?: string }[] }> } | undefined;
      if (attrs?.markerName !== 'core_local_activity') continue;
      const data = decode(attrs.details?.data?.payloads?.[0]) as { activity_type?: string } | null;
      out.push({ type: data?.activity_type ?? '', result: decode(attrs.details?.result?.payloads?.[0]) });
    }
  }
  return out;
}

/** Every receipt the histories record (in local activity markers and activity results), by hash. */
function recordedReceipts(histories: HistoryJson[]): Map<string, { kind: string; stepId?: string; seq: number }> {
  const found = new Map<string, { kind: string; stepId?: string; seq: number }>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (typeof v !== 'object' || v === null) return;
    const o = v as Record<string, unknown>;
    if (typeof o.hash === 'string' && typeof o.signature === 'string' && typeof o.kind === 'string')
      found.set(o.hash, {
        kind: o.kind,
        seq: o.seq as number,
        ...(typeof o.stepId === 'string' ? { stepId: o.stepId } : {}),
      });
    for (const [k, child] of Object.entries(o)) {
      if (k === 'data' && typeof child === 'string') {
        try {
          walk(JSON.parse(Buffer.from(child, 'base64').toString('utf8')));
        } catch {
          // not JSON: not a receipt
        }
      } else walk(child);
    }
  };
  histories.forEach((h) => walk(h.events));
  return found;
}

/** Runs the rogue workflow: it calls the service's `perform` on the service's queue with `input`. */
async function rogueCall(input: ServiceActivityInput): Promise<RogueOutcome> {
  return g.client.workflow.execute('rogueServiceCallWorkflow', {
    taskQueue: rogueQueue,
    workflowId: uniqueQueue('rogue-call'),
    args: [g.serviceQueue, 'perform', input],
  });
}

const resource = { type: 'Environment', id: 'staging' };
let granted: Map<string, ServiceActivityInput>;
let chainId = '';

test('a governed chain: each service call carries a grant for exactly its step, bound to the receipt that allowed it', async () => {
  const handle = await g.gc.start(
    {
      workload: WORKLOAD,
      owner: 'team-release',
      steps: [g.serviceStep('first', 'deploy', resource), g.serviceStep('second', 'deploy', resource)],
    },
    await g.creds(),
  );
  chainId = handle.workflowId;
  const result = (await handle.result()) as ChainResult;
  expect(result.status).toBe('Completed');
  expect(g.ledger.has(`${chainId}/first`)).toBe(true);
  expect(g.ledger.has(`${chainId}/second`)).toBe(true);

  const histories = await fetchChainHistories(g.client, chainId);
  granted = serviceInputs(histories, 'perform');
  expect([...granted.keys()].sort()).toEqual(['first', 'second']);
  const report = await verifyChain({ histories, chainId, home: g.home, replayer });
  expect(report.verdict).toBe('verified');
  const receipts = recordedReceipts(histories);
  const jwks = loadPublicJwks(g.home, 'grant');
  for (const [stepId, input] of granted) {
    const claims = await verifyServiceActivityGrant(input, jwks, g.serviceQueue);
    expect(claims).toMatchObject({ chain: chainId, step: stepId, idk: `${chainId}/${stepId}`, aud: g.serviceQueue });
    // The receipt that allowed it: the step's signed decision in the chain's verified receipts.
    expect(receipts.get(claims.receipt)).toMatchObject({ kind: 'decision', stepId });
    expect(claims.stepDigest).toMatch(/^[0-9a-f]{64}$/);
    // Every attempt of the service's retry policy at the step's (default, 60 s) timeout, plus a minute of queueing.
    expect(claims.exp - claims.iat).toBe(grantLifetimeMs(60_000) / 1000);
  }
  // Minted by `authorize` with each outright allow (patch remote-step-grant-and-output-folded): the history
  // holds no `mintGrant` local activity, and each decision's recorded result carries the grant the service got.
  const types = localActivityTypes(histories);
  expect(types.filter((t) => t === 'mintGrant')).toEqual([]);
  expect(types.filter((t) => t === 'authorize')).toHaveLength(2);
  const decided = recordedGrants(histories);
  expect(decided.sort()).toEqual([...granted.values()].map((i) => i.grant).sort());
});

test('a workflow that schedules the service activity directly without a grant is refused; nothing is written', async () => {
  const before = g.ledger.all().length;
  const outcome = await rogueCall({
    idempotencyKey: 'rogue-chain/deploy',
    chainId: 'rogue-chain',
    stepId: 'deploy',
    action: 'deploy',
    resource,
    input: {},
  });
  expect(outcome).toMatchObject({ ok: false, type: GRANT_REFUSED, message: 'no execution grant' });
  expect(g.ledger.has('rogue-chain/deploy')).toBe(false);
  expect(g.ledger.all().length).toBe(before);
});

test('a grant replayed for another step, with another input, or to another chain is refused; nothing is written', async () => {
  const first = granted.get('first')!;
  const before = g.ledger.all().length;
  // The grant of step `first` on a call for a step that never ran.
  const otherStep = await rogueCall({ ...first, stepId: 'third', idempotencyKey: `${chainId}/third` });
  expect(otherStep).toMatchObject({ ok: false, type: GRANT_REFUSED });
  expect(otherStep.ok === false && otherStep.message).toContain('another step');
  // The grant of `first`, its key, but another input.
  const otherInput = await rogueCall({ ...first, idempotencyKey: `${chainId}/first`, input: { version: 'evil' } });
  expect(otherInput.ok === false && otherInput.message).toContain('differs from what was granted');
  // Another chain.
  const otherChain = await rogueCall({ ...first, chainId: 'other', idempotencyKey: 'other/first' });
  expect(otherChain).toMatchObject({ ok: false, type: GRANT_REFUSED });
  expect(g.ledger.has(`${chainId}/third`)).toBe(false);
  expect(g.ledger.has('other/first')).toBe(false);
  expect(g.ledger.all().length).toBe(before);
  // The very same call again (within its lifetime) is the same effect: absorbed by the idempotency key.
  const same = await rogueCall(first);
  expect(same).toMatchObject({ ok: true, result: { duplicate: true } });
  expect(g.ledger.all().length).toBe(before);
});

test('an expired grant, one for another audience, or one signed by another key is refused; nothing is written', async () => {
  const call: ServiceActivityInput = {
    idempotencyKey: 'minted/deploy',
    chainId: 'minted',
    stepId: 'deploy',
    action: 'deploy',
    resource,
    input: {},
  };
  const mint = (signer: GrantSigner, over: Partial<MintGrantInput> = {}) =>
    signer.mint({
      ...call,
      stepDigest: 'a'.repeat(64),
      receipt: 'b'.repeat(64),
      audience: g.serviceQueue,
      ttlMs: 60_000,
      ...over,
    });
  const hourAgo = new GrantSigner(g.home, () => new Date(Date.now() - 3_600_000));
  const expired = await rogueCall({ ...call, grant: await mint(hourAgo) });
  expect(expired).toMatchObject({ ok: false, type: GRANT_REFUSED, message: 'execution grant refused: expired' });
  const now = new GrantSigner(g.home);
  const otherAudience = await rogueCall({ ...call, grant: await mint(now, { audience: 'another-service' }) });
  expect(otherAudience).toMatchObject({
    ok: false,
    type: GRANT_REFUSED,
    message: 'execution grant refused: claim aud invalid',
  });
  const { makeHome } = await import('../harness/temporal');
  const stranger = new GrantSigner(await makeHome());
  const foreign = await rogueCall({ ...call, grant: await mint(stranger) });
  expect(foreign).toMatchObject({ ok: false, type: GRANT_REFUSED });
  expect(g.ledger.has('minted/deploy')).toBe(false);
  // The control: the same signer, audience and lifetime the governor uses is accepted.
  const valid = await rogueCall({ ...call, grant: await mint(now) });
  expect(valid).toMatchObject({ ok: true, result: { duplicate: false } });
  expect(g.ledger.has('minted/deploy')).toBe(true);
});

test('http steps send the grant in the governor-grant header, for the host called (outright and after coordination)', async () => {
  const notify = (stepId: string, channel: string) => ({
    id: stepId,
    action: 'notify',
    resource: { type: 'Channel', id: channel },
    executor: { type: 'http', url: `http://${hostPort}/${stepId}`, method: 'POST' },
  });
  const handle = await g.gc.start(
    {
      workload: WORKLOAD,
      owner: 'team-release',
      steps: [notify('outright', 'releases'), notify('coordinated', 'ops')],
    },
    await g.creds(),
  );
  const id = handle.workflowId;
  const result = (await handle.result()) as ChainResult;
  expect(result.status).toBe('Completed');
  const histories = await fetchChainHistories(g.client, id);
  const report = await verifyChain({ histories, chainId: id, home: g.home, replayer });
  expect(report.verdict).toBe('verified');
  const receipts = recordedReceipts(histories);
  const jwks = loadPublicJwks(g.home, 'grant');
  for (const stepId of ['outright', 'coordinated']) {
    const seen = requests.filter((r) => r.path === `/${stepId}`);
    expect(seen).toHaveLength(1);
    const claims = await verifyGrant(seen[0]!.grant, jwks, { audience: hostPort, idempotencyKey: `${id}/${stepId}` });
    expect(claims).toMatchObject({ chain: id, step: stepId });
    // The receipt its execution links to: the step's allowing decision (outright), or what came after it.
    const allowedBy = receipts.get(claims.receipt);
    expect(allowedBy).toBeDefined();
    expect(allowedBy!.kind).not.toBe('execution');
    if (stepId === 'outright') expect(allowedBy).toMatchObject({ kind: 'decision', stepId });
  }
});
