import fs from 'node:fs';
import { lookup } from 'node:dns/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { HttpResolver } from '../../activities';
import { createReplayer, fetchChainHistories, verifyChain, type Replayer } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { makeHome, testAddress } from '../harness/temporal';

/**
 * The http executor is not a confused deputy (issue #14): a chain allowed to `notify` cannot make the
 * governor call anything the manifest does not name exactly. Real Temporal dev server, real loopback
 * listeners:
 *
 * - canary A (127.0.0.1, and ::1 when the host has it) is NOT allow-listed: every hostile spelling of
 *   its address, a name that resolves to it, and a name that re-binds to it between the decision and
 *   the connect, must leave it with zero requests, and end the chain Denied with the reason;
 * - target B (127.0.0.1:B) is allow-listed exactly, with secret headers by reference: chain headers
 *   that carry credentials or transport control, and a method the entry does not allow, are denied
 *   before anything is sent (B's count does not move); a plain call gets through with the secrets;
 * - "UI" U stands in for the Temporal Web UI (the worker is told its address): allow-listed, still never
 *   called; the real test server's frontend is allow-listed too, and refused.
 */

const SECRET_FILE_VALUE = 'file-secret-3f9a1c7e5b';
const SECRET_ENV_VALUE = 'env-secret-8d2e4b6a0c';

interface Hit {
  method: string | undefined;
  url: string | undefined;
  headers: http.IncomingHttpHeaders;
}

/** A loopback listener that records every request it receives (on each address given). */
async function listener(
  hosts: string[],
  handler?: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<{ port: number; hits: Hit[]; servers: http.Server[] }> {
  const hits: Hit[] = [];
  const servers: http.Server[] = [];
  let port = 0;
  for (const host of hosts) {
    const server = http.createServer((req, res) => {
      hits.push({ method: req.method, url: req.url, headers: req.headers });
      req.resume();
      if (handler) handler(req, res);
      else res.writeHead(200, { 'content-type': 'text/plain' }).end('canary');
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
    } catch (err) {
      if (port === 0) throw err;
      continue; // no ::1 on this host: the IPv4 listener alone is the canary
    }
    port = (server.address() as AddressInfo).port;
    servers.push(server);
  }
  return { port, hits, servers };
}

let g: Governed;
let replayer: Replayer;
let canary: Awaited<ReturnType<typeof listener>>;
let target: Awaited<ReturnType<typeof listener>>;
let ui: Awaited<ReturnType<typeof listener>>;
let A = 0;
let B = 0;
const chains: string[] = [];
const rebindLookups = new Map<string, number>();

/** Answers a public address for a re-binding name the first time, loopback afterwards; real DNS otherwise. */
const resolve: HttpResolver = async (host) => {
  if (host.startsWith('rebind')) {
    const n = (rebindLookups.get(host) ?? 0) + 1;
    rebindLookups.set(host, n);
    return n === 1 ? ['93.184.215.14'] : ['127.0.0.1'];
  }
  return (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
};

beforeAll(async () => {
  canary = await listener(['127.0.0.1', '::1']);
  A = canary.port;
  ui = await listener(['127.0.0.1']);
  target = await listener(['127.0.0.1'], (req, res) => {
    if (req.url === '/redirect') res.writeHead(302, { location: `http://127.0.0.1:${A}/landed` }).end();
    else if (req.url === '/big')
      res
        .writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(256 * 1024) })
        .end(Buffer.alloc(256 * 1024, 1));
    else if (req.url === '/big-chunked') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < 64; i++) res.write(Buffer.alloc(4096, 2));
      res.end();
    } else if (req.url === '/slow') {
      // Never answers: the executor's time bound ends the call (connections closed in afterAll).
    } else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  B = target.port;

  const bundleDir = defaultBundleWith((m) => {
    (m.http as Record<string, unknown>) = {
      allow: [
        {
          origin: `http://127.0.0.1:${B}`,
          methods: ['POST', 'PUT'],
          maxResponseBytes: 64 * 1024,
          headers: {
            Authorization: { secretRef: { file: 'secrets/hook-token' } },
            'X-Api-Key': { secretRef: { env: 'HOOK_API_KEY' } },
            'X-Source': { value: 'governor' },
          },
        },
        // A name pinned to an exact loopback address and port: no DNS, connects to that address only.
        { origin: `http://pinned.test:${B}`, addresses: ['127.0.0.1'] },
        // Names that resolve (or re-bind) to canary A: allow-listed by name, refused by address.
        { origin: `http://localhost:${A}` },
        { origin: `http://rebind.test:${A}` },
        { origin: `http://rebind-coordinated.test:${A}` },
        // Temporal's own endpoints, allow-listed by mistake: never callable.
        { origin: `http://${testAddress()}` },
        { origin: `http://127.0.0.1:${ui.port}` },
      ],
    };
    // Channel::"ops" is coordinated: its steps are decided, then executed by the separate execute activity.
    const coordination = m.coordination as { domains: Record<string, unknown>[] };
    coordination.domains.push({
      name: 'chat-ops',
      resources: ['Channel::"ops"'],
      conflicts: [['notify', 'notify']],
      batchingWindow: '100ms',
      tieBreakerRole: 'sre-lead',
    });
  });
  const home = await makeHome();
  fs.mkdirSync(path.join(home, 'secrets'), { recursive: true });
  fs.writeFileSync(path.join(home, 'secrets', 'hook-token'), `Bearer ${SECRET_FILE_VALUE}\n`, { mode: 0o600 });
  g = await setupGoverned({
    policiesDir: bundleDir,
    home,
    // The worker knows where "its" Web UI is, as `governor up` tells it.
    http: { protectedAddresses: [`localhost:${ui.port}`], resolve, env: { HOOK_API_KEY: SECRET_ENV_VALUE } },
  });
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});

afterAll(async () => {
  await replayer?.close();
  await g?.stop();
  for (const s of [...(canary?.servers ?? []), ...(target?.servers ?? []), ...(ui?.servers ?? [])]) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const notify = (executor: Record<string, unknown>, channel = 'releases') => ({
  workload: WORKLOAD,
  steps: [
    {
      id: 'notify',
      action: 'notify',
      resource: { type: 'Channel', id: channel },
      input: { text: 'hello' },
      executor: { type: 'http', timeoutMs: 3000, ...executor },
    },
  ],
});

async function run(chain: unknown): Promise<ChainResult> {
  const r = await g.run(chain);
  chains.push(r.chainId);
  return r;
}

/** A history as JSON with every payload's base64 `data` decoded next to it (payloads are JSON; no encryption here). */
function readable(histories: unknown): string {
  const json = JSON.stringify(histories);
  const decoded = [...json.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) =>
    Buffer.from(m[1]!, 'base64').toString('utf8'),
  );
  return `${json}\n${decoded.join('\n')}`;
}

/** The chain ended Denied on its http step, with a recorded deny decision whose reason says what was refused. */
function expectDenied(r: ChainResult, why: string): void {
  expect(r.status).toBe('Denied');
  expect(r.steps[0]).toMatchObject({ status: 'denied', decision: { effect: 'deny' } });
  expect(r.steps[0]!.decision!.reason).toBe(`http target refused: ${why}`);
  expect(r.reason).toBe(`step notify: http target refused: ${why}`);
  expect(r.steps[0]!.outcome).toBeUndefined();
}

describe('hostile http targets: denied before anything is sent, canary untouched', () => {
  it.each([
    ['LOCALHOST', () => `http://LOCALHOST:${A}/x`, () => 'localhost resolves to'],
    ['localhost with a trailing dot', () => `http://localhost.:${A}/x`, () => 'localhost resolves to'],
    [
      'localhost (allow-listed by name, resolves to loopback)',
      () => `http://localhost:${A}/x`,
      () => 'localhost resolves to',
    ],
    [
      'decimal 2130706433',
      () => `http://2130706433:${A}/x`,
      () => `http://127.0.0.1:${A} is not in the manifest's http.allow`,
    ],
    [
      'hex 0x7f000001',
      () => `http://0x7f000001:${A}/x`,
      () => `http://127.0.0.1:${A} is not in the manifest's http.allow`,
    ],
    [
      'octal 0177.0.0.1',
      () => `http://0177.0.0.1:${A}/x`,
      () => `http://127.0.0.1:${A} is not in the manifest's http.allow`,
    ],
    ['short 127.1', () => `http://127.1:${A}/x`, () => `http://127.0.0.1:${A} is not in the manifest's http.allow`],
    [
      'plain 127.0.0.1',
      () => `http://127.0.0.1:${A}/x`,
      () => `http://127.0.0.1:${A} is not in the manifest's http.allow`,
    ],
    ['[::1]', () => `http://[::1]:${A}/x`, () => `http://[::1]:${A} is not in the manifest's http.allow`],
    [
      '[::ffff:127.0.0.1]',
      () => `http://[::ffff:127.0.0.1]:${A}/x`,
      () => `http://[::ffff:7f00:1]:${A} is not in the manifest's http.allow`,
    ],
    [
      'credentials in the URL',
      () => `http://user:pw@127.0.0.1:${B}/x`,
      () => 'the URL carries credentials (user:password@); credentials come only from the manifest',
    ],
    [
      'another port of an allowed address',
      () => `http://127.0.0.1:${B + 1 === A ? B + 2 : B + 1}/x`,
      () => "is not in the manifest's http.allow",
    ],
  ])('%s', async (_, url, why) => {
    const r = await run(notify({ url: url() }));
    expect(r.status).toBe('Denied');
    expect(r.steps[0]!.decision).toMatchObject({ effect: 'deny', reason: expect.stringContaining(why()) });
    expect(r.steps[0]!.decision!.reason).toMatch(/^http target refused: /);
    if (why() === 'localhost resolves to')
      expect(r.steps[0]!.decision!.reason).toMatch(
        /localhost resolves to (127\.0\.0\.1|::1) \(loopback\): only an http\.allow entry that names that exact address and its port may reach it$/,
      );
    expect(canary.hits).toEqual([]);
  });

  it('a name that re-binds to loopback between the decision and the connect: checked again, denied, nothing sent', async () => {
    const r = await run(notify({ url: `http://rebind.test:${A}/hook` }));
    // The decision's pre-flight saw a public address; the connect-time resolution saw loopback.
    expect(rebindLookups.get('rebind.test')).toBe(2);
    expectDenied(
      r,
      'rebind.test resolves to 127.0.0.1 (loopback): only an http.allow entry that names that exact address and its port may reach it',
    );
    expect(canary.hits).toEqual([]);
    // The deny is the step's one decision receipt: the chain verifies.
    const report = await verifyChain({
      histories: await fetchChainHistories(g.client, r.chainId),
      chainId: r.chainId,
      home: g.home,
      replayer,
    });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe('verified');
  });

  it('re-binding on the execute path (a coordinated step): refused at connect time, nothing sent', async () => {
    const r = await run(notify({ url: `http://rebind-coordinated.test:${A}/hook` }, 'ops'));
    expect(rebindLookups.get('rebind-coordinated.test')).toBe(2);
    // The decision (allow) was recorded before the slot was granted; the execute activity refuses the
    // call before sending it: the step is denied with the reason (its execution receipt records the refusal).
    expect(r.status).toBe('Denied');
    expect(r.steps[0]).toMatchObject({
      status: 'denied',
      error: expect.stringContaining('http target refused: rebind-coordinated.test resolves to 127.0.0.1 (loopback)'),
    });
    const report = await verifyChain({
      histories: await fetchChainHistories(g.client, r.chainId),
      chainId: r.chainId,
      home: g.home,
      replayer,
    });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(canary.hits).toEqual([]);
  });

  it('the Temporal frontend, even when allow-listed', async () => {
    const r = await run(
      notify({ url: `http://${testAddress()}/api/v1/namespaces/default/workflows/victim/terminate` }),
    );
    expectDenied(r, `${testAddress()} is a Temporal endpoint of this worker (${testAddress()}): never callable`);
  });

  it('the Temporal Web UI, even when allow-listed (the attack of issue #14)', async () => {
    const r = await run(
      notify({
        url: `http://127.0.0.1:${ui.port}/api/v1/namespaces/default/workflows/victim/terminate`,
        headers: { 'X-CSRF-Token': 'stolen' },
      }),
    );
    expectDenied(
      r,
      `127.0.0.1:${ui.port} is a Temporal endpoint of this worker (localhost:${ui.port}): never callable`,
    );
    expect(ui.hits).toEqual([]);
  });

  it('an escalated step is refused at once, without waiting for approval', async () => {
    const chain = {
      workload: WORKLOAD,
      steps: [
        {
          id: 'notify',
          action: 'deploy',
          resource: { type: 'Environment', id: 'prod' },
          executor: { type: 'http', url: `http://2130706433:${A}/deploy` },
        },
      ],
    };
    const r = await run(chain);
    expectDenied(r, `http://127.0.0.1:${A} is not in the manifest's http.allow`);
    expect(r.steps[0]!.approval).toBeUndefined();
    expect(canary.hits).toEqual([]);
  });
});

describe('an exactly allow-listed target: only what the entry allows is sent', () => {
  it.each([
    [
      'Cookie',
      { Cookie: '_csrf=stolen' },
      "header Cookie from the chain is refused: credentials for a target come only from the manifest (an http.allow entry's headers, by secretRef), never from the chain",
    ],
    [
      'Authorization',
      { Authorization: 'Bearer chain-token' },
      "header Authorization from the chain is refused: credentials for a target come only from the manifest (an http.allow entry's headers, by secretRef), never from the chain",
    ],
    [
      'Proxy-Authorization',
      { 'Proxy-Authorization': 'Basic eA==' },
      "header Proxy-Authorization from the chain is refused: credentials for a target come only from the manifest (an http.allow entry's headers, by secretRef), never from the chain",
    ],
    [
      'Host',
      { Host: 'internal.example' },
      'header Host from the chain is refused: it is a hop-by-hop or transport header the executor sets itself',
    ],
    [
      'Transfer-Encoding',
      { 'Transfer-Encoding': 'chunked' },
      'header Transfer-Encoding from the chain is refused: it is a hop-by-hop or transport header the executor sets itself',
    ],
    [
      'Connection',
      { Connection: 'upgrade' },
      'header Connection from the chain is refused: it is a hop-by-hop or transport header the executor sets itself',
    ],
    [
      'X-Api-Key (set by the entry)',
      { 'x-api-key': 'chain-key' },
      "header x-api-key from the chain is refused: the manifest's http.allow entry sets it",
    ],
  ])('refuses the chain header %s', async (_, headers, why) => {
    const before = target.hits.length;
    const r = await run(notify({ url: `http://127.0.0.1:${B}/hook`, headers }));
    expectDenied(r, why);
    expect(target.hits).toHaveLength(before);
    expect(canary.hits).toEqual([]);
  });

  it('refuses a method the entry does not allow', async () => {
    const before = target.hits.length;
    const r = await run(notify({ url: `http://127.0.0.1:${B}/hook`, method: 'DELETE' }));
    expectDenied(r, `method DELETE is not allowed for http://127.0.0.1:${B} (http.allow.0.methods: POST, PUT)`);
    expect(target.hits).toHaveLength(before);
  });

  it('does not follow a redirect to loopback: the step fails, the canary is untouched', async () => {
    const r = await run(notify({ url: `http://127.0.0.1:${B}/redirect` }));
    expect(r.status).toBe('Failed');
    expect(r.steps[0]).toMatchObject({
      status: 'failed',
      decision: { effect: 'allow' },
      error: `http POST http://127.0.0.1:${B} answered 302: redirects are not followed`,
    });
    expect(target.hits.filter((h) => h.url === '/redirect')).toHaveLength(1);
    expect(canary.hits).toEqual([]);
  });

  it('bounds the response size (declared, and streamed without a length)', async () => {
    const declared = await run(notify({ url: `http://127.0.0.1:${B}/big` }));
    expect(declared.status).toBe('Failed');
    expect(declared.steps[0]!.error).toBe(
      `http POST http://127.0.0.1:${B}: response of 262144 bytes exceeds 65536 (http.allow.0.maxResponseBytes)`,
    );
    const streamed = await run(notify({ url: `http://127.0.0.1:${B}/big-chunked` }));
    expect(streamed.status).toBe('Failed');
    expect(streamed.steps[0]!.error).toBe(
      `http POST http://127.0.0.1:${B}: response exceeds 65536 bytes (http.allow.0.maxResponseBytes)`,
    );
    expect(canary.hits).toEqual([]);
  });

  it('bounds the time of a call that never answers', async () => {
    const r = await run(notify({ url: `http://127.0.0.1:${B}/slow`, timeoutMs: 300 }));
    expect(r.status).toBe('Failed');
    expect(r.steps[0]!.error).toContain(`http POST http://127.0.0.1:${B}: no complete answer within 300 ms`);
    expect(canary.hits).toEqual([]);
  });

  it('a name pinned to an exact address (entry addresses) is reached there without DNS, with its own Host', async () => {
    const before = target.hits.length;
    const r = await run(notify({ url: `http://PINNED.test.:${B}/pinned` }));
    expect(r.status).toBe('Completed');
    const hits = target.hits.slice(before);
    expect(hits.map((h) => [h.url, h.headers.host, h.headers.authorization])).toEqual([
      ['/pinned', `pinned.test:${B}`, undefined],
    ]);
    expect(canary.hits).toEqual([]);
  });

  it('positive control: the exactly allow-listed loopback origin is reached, with the secrets the manifest references', async () => {
    const before = target.hits.length;
    const r = await run(notify({ url: `http://127.0.0.1:${B}/hook?x=1`, headers: { 'X-Trace': 'abc' } }));
    expect(r.status).toBe('Completed');
    expect(r.steps[0]!.outcome).toMatchObject({
      executor: 'http',
      httpStatus: 200,
      idempotencyKey: `${r.chainId}/notify`,
    });
    const hits = target.hits.slice(before);
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ method: 'POST', url: '/hook?x=1' });
    expect(hits[0]!.headers).toMatchObject({
      host: `127.0.0.1:${B}`,
      authorization: `Bearer ${SECRET_FILE_VALUE}`,
      'x-api-key': SECRET_ENV_VALUE,
      'x-source': 'governor',
      'x-trace': 'abc',
      'idempotency-key': `${r.chainId}/notify`,
      'content-type': 'application/json',
    });
    expect(hits[0]!.headers.cookie).toBeUndefined();

    // The secrets are in no history and no status (of this chain or any other of the suite).
    for (const chainId of chains) {
      const text = readable(await fetchChainHistories(g.client, chainId)) + JSON.stringify(await g.gc.status(chainId));
      // The decoded history holds the chain (so the search below can find what it holds)…
      expect(text).toContain(`${chainId}`);
      expect(text).toContain('"executor":{"type":"http"');
      // …and no secret.
      expect(text).not.toContain(SECRET_FILE_VALUE);
      expect(text).not.toContain(SECRET_ENV_VALUE);
    }
    expect(readable(await fetchChainHistories(g.client, r.chainId))).toContain('"X-Trace":"abc"');
    const report = await verifyChain({
      histories: await fetchChainHistories(g.client, r.chainId),
      chainId: r.chainId,
      home: g.home,
      replayer,
    });
    expect(report.verdict).toBe('verified');
    expect(canary.hits).toEqual([]);
  });
});
