import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { MCP_TOOL_CALL_ACTIVITY } from '../../contracts/executor';
import { parseGatewayConfig } from '../../gateway/config';
import { createHttpGateway, type HttpGateway } from '../../gateway/http';
import { identifier } from '../../gateway/run';
import { governorSessionPort } from '../../gateway/session-port';
import { initKeys, issueCredential } from '../../identity';
import type { GovernorClient } from '../../sdk/client';
import { neverAllowedActions } from '../../gateway/policy-notes';
import { Upstreams } from '../../gateway/upstreams';
import { createMcpActivities } from '../../gateway/worker';
import { loadBundle } from '../../policies/bundle';
import { defaultPoliciesDir } from '../../workers/worker';
import { FakeGovernor } from '../harness/mcp';

/*
 * The gateway's Streamable HTTP endpoint against hostile requests (no or bad bearer, no attestation,
 * oversized and malformed bodies, foreign sessions), and a real MCP SDK Client over HTTP. Credentials
 * are checked by a stand-in `identify` (the real one verifies with the bundle's issuers: gateway/run.ts).
 */

const ROOT = path.resolve(__dirname, '../..');
const bundle = loadBundle(defaultPoliciesDir());
const TOKENS: Record<string, string> = {
  'cred.agent.a': 'agent:a',
  'cred.agent.b': 'agent:b',
  'cred.agent.a2': 'agent:a',
};
const LIMIT = 4096;

let dir: string;
let upstreams: Upstreams;
let governor: FakeGovernor;
let gateway: HttpGateway;
let url: string;
const logs: string[] = [];

beforeAll(async () => {
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'agent-workspace-')));
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'over http\n');
  upstreams = new Upstreams({
    upstreams: { fs: { command: path.join(ROOT, 'node_modules/.bin/mcp-server-filesystem'), args: [dir] } },
  });
  await upstreams.connectAll();
  const run = createMcpActivities(upstreams, { maxResultBytes: 1 << 20, toolTimeoutMs: 10_000 })[
    MCP_TOOL_CALL_ACTIVITY
  ]!;
  governor = new FakeGovernor(run);
  gateway = createHttpGateway({
    port: governor,
    catalog: upstreams,
    rules: bundle.manifest.mcp.tools,
    neverAllowed: neverAllowedActions(bundle),
    taskQueue: 'gateway-queue',
    toolTimeoutMs: 10_000,
    escalationWaitMs: 1000,
    maxBodyBytes: LIMIT,
    log: (m, f) => logs.push(`${m} ${JSON.stringify(f ?? {})}`),
    identify: async (credential, attestation) => {
      const workload = TOKENS[credential];
      if (!workload) throw new Error('signature does not verify');
      return { credential, attestation, workload };
    },
  });
  await new Promise<void>((resolve) => gateway.server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(gateway.server.address() as AddressInfo).port}/mcp`;
});

afterAll(async () => {
  await gateway.close('test over');
  await upstreams.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
const ACCEPT = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
const auth = (token = 'cred.agent.a') => ({ authorization: `Bearer ${token}`, 'x-governor-attestation': 'att.jwt.x' });

/** A JSON-RPC reply as the tests read it. */
interface Reply {
  error: { code: number; message: string };
}

async function post(
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; json: Reply; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', headers: { ...ACCEPT, ...headers }, body });
  const text = await res.text();
  let json: Reply;
  try {
    json = JSON.parse(text) as Reply;
  } catch {
    json = { error: { code: 0, message: `not JSON: ${text.slice(0, 80)}` } };
  }
  return { status: res.status, json, headers: res.headers };
}

describe('Streamable HTTP: hostile requests', () => {
  it('no bearer → 401 with WWW-Authenticate', async () => {
    const r = await post(JSON.stringify(INIT), {});
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect(r.json.error.message).toBe('an Authorization: Bearer <credential> header is required');
  });

  it('a bearer that does not verify → 401, the token not echoed', async () => {
    const r = await post(JSON.stringify(INIT), auth('forged.token.value'));
    expect(r.status).toBe(401);
    expect(r.json.error.message).toBe('credential refused: signature does not verify');
    expect(JSON.stringify(r.json)).not.toContain('forged.token.value');
  });

  it('a malformed Authorization header or a missing attestation → 401', async () => {
    expect((await post(JSON.stringify(INIT), { authorization: 'Basic abc' })).status).toBe(401);
    const r = await post(JSON.stringify(INIT), { authorization: 'Bearer cred.agent.a' });
    expect(r.status).toBe(401);
    expect(r.json.error.message).toBe('an x-governor-attestation header is required');
  });

  it('an oversized body → 413, declared or streamed', async () => {
    const big = JSON.stringify({ ...INIT, pad: 'x'.repeat(LIMIT) });
    const r = await post(big, auth());
    expect(r.status).toBe(413);
    expect(r.json.error.message).toBe(`request body larger than ${LIMIT} bytes`);
    const streamed = await fetch(url, {
      method: 'POST',
      headers: { ...ACCEPT, ...auth() },
      body: new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode(big));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
  });

  it('bad JSON → 400 parse error; JSON that is not an initialize without a session → 400', async () => {
    const bad = await post('{"jsonrpc": "2.0", ', auth());
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe(-32700);
    const notInit = await post(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }), auth());
    expect(notInit.status).toBe(400);
    expect(notInit.json.error.message).toMatch(/send an initialize request first/);
  });

  it('an unknown session → 404; bad JSON-RPC in a session → 400; another workload on a session → 403', async () => {
    expect((await post(JSON.stringify(INIT), { ...auth(), 'mcp-session-id': 'no-such-session' })).status).toBe(404);
    const init = await post(JSON.stringify(INIT), auth());
    expect(init.status).toBe(200);
    const session = init.headers.get('mcp-session-id')!;
    expect(session).toBeTruthy();
    const garbage = await post(JSON.stringify({ hello: 'world' }), { ...auth(), 'mcp-session-id': session });
    expect(garbage.status).toBe(400);
    const foreign = await post(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }), {
      ...auth('cred.agent.b'),
      'mcp-session-id': session,
      'mcp-protocol-version': '2025-06-18',
    });
    expect(foreign.status).toBe(403);
    expect(foreign.json.error.message).toBe('this MCP session belongs to another workload');
  });
});

describe('Streamable HTTP: a real MCP client', () => {
  it('lists and calls tools with its bearer; each call is proposed with the credential of that request', async () => {
    const headers = auth();
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(transport);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('read_file');
    const before = governor.proposals.length;
    const result = (await client.callTool({
      name: 'read_file',
      arguments: { path: path.join(dir, 'notes.txt') },
    })) as CallToolResult;
    expect(result.content).toEqual([{ type: 'text', text: 'over http\n' }]);
    expect(governor.proposals.slice(before).map((p) => p.credential)).toEqual(['cred.agent.a']);
    const sessionsBefore = governor.closed.length;
    await transport.terminateSession(); // DELETE: the connection's governed session closes
    await client.close();
    expect(governor.closed.length).toBe(sessionsBefore + 1);
    expect(logs.join('\n')).not.toContain('cred.agent.a');
  });
});

describe('identifier: the real credential check of the HTTP endpoint', () => {
  it("verifies with the bundle's trusted issuers; the session workload is the credential's sub", async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-home-'));
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-home-'));
    try {
      await initKeys(home);
      await initKeys(other);
      const config = parseGatewayConfig({ upstreams: { fs: { command: 'x' } } });
      const identify = identifier(bundle, config, home);
      const credential = await issueCredential({ home, sub: 'agent:coder' });
      await expect(identify(credential, 'att')).resolves.toEqual({
        credential,
        attestation: 'att',
        workload: 'agent:coder',
      });
      // Signed by a key the bundle does not trust (another home's issuer key): refused, token not echoed.
      const foreign = await issueCredential({ home: other, sub: 'agent:coder' });
      const refused = await identify(foreign, 'att').then(
        () => 'accepted',
        (err: Error) => err.message,
      );
      expect(refused).not.toBe('accepted');
      expect(refused).not.toContain(foreign);
      await expect(identify('not-a-jwt', 'att')).rejects.toThrow();
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});

describe('governorSessionPort', () => {
  it('refuses a client without the session operations, naming them', () => {
    expect(() => governorSessionPort({} as GovernorClient)).toThrow(
      'this governor SDK has no agent sessions (missing openSession, proposeStep, awaitStep, closeSession); the MCP gateway needs them',
    );
  });

  it('delegates each operation to the client, bound to it', async () => {
    const calls: unknown[][] = [];
    const client = {
      tag: 'gc',
      async openSession(this: { tag: string }, input: unknown) {
        calls.push([this.tag, 'open', input]);
        return { sessionId: 's1' };
      },
      async proposeStep(this: { tag: string }, id: string, p: unknown) {
        calls.push([this.tag, 'propose', id, p]);
        return { outcome: 'failed', stepId: 'x', reason: 'r' };
      },
      async awaitStep(this: { tag: string }, id: string, step: string, o: unknown) {
        calls.push([this.tag, 'await', id, step, o]);
        return { outcome: 'failed', stepId: step, reason: 'r' };
      },
      async closeSession(this: { tag: string }, id: string, o: unknown) {
        calls.push([this.tag, 'close', id, o]);
        return {};
      },
    };
    const port = governorSessionPort(client as unknown as GovernorClient);
    const open = { workload: 'w', credential: 'c', attestation: 'a' };
    await expect(port.openSession(open)).resolves.toEqual({ sessionId: 's1' });
    await port.awaitStep('s1', 'st', { credential: 'c' });
    await port.closeSession('s1', { reason: 'done' });
    expect(calls).toEqual([
      ['gc', 'open', open],
      ['gc', 'await', 's1', 'st', { credential: 'c' }],
      ['gc', 'close', 's1', { reason: 'done' }],
    ]);
  });
});
