import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { MCP_TOOL_CALL_ACTIVITY } from '../../contracts/executor';
import { parseGatewayConfig } from '../../gateway/config';
import { mapToolCall, ruleFor } from '../../gateway/mapping';
import { neverAllowedActions } from '../../gateway/policy-notes';
import { secretFromEnv } from '../../gateway/run';
import { AgentSession, createGatewayServer, type GatewayOptions } from '../../gateway/server';
import { Upstreams } from '../../gateway/upstreams';
import { createMcpActivities } from '../../gateway/worker';
import { loadBundle } from '../../policies/bundle';
import { McpToolRule } from '../../policies/manifest';
import { defaultPoliciesDir } from '../../workers/worker';
import { FakeGovernor } from '../harness/mcp';

/*
 * The gateway's mapping and error paths, with the REAL @modelcontextprotocol/server-filesystem (and a
 * hostile upstream) behind it and an MCP SDK Client in front, over a fake SessionPort that stands in for
 * the governor: it records every proposal and answers with a scripted decision, running allowed calls
 * through the gateway's real `mcpToolCall` activity. (test/integration/mcp-gateway.test.ts runs the same
 * paths against a real governor on Temporal.)
 */

const ROOT = path.resolve(__dirname, '../..');
const FS_SERVER = path.join(ROOT, 'node_modules/.bin/mcp-server-filesystem');
const HOSTILE = path.join(ROOT, 'test/fixtures/mcp/hostile-upstream.js');
const bundle = loadBundle(defaultPoliciesDir());
const rules = bundle.manifest.mcp.tools;
const CREDENTIAL = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZ2VudDp0ZXN0In0.c2VjcmV0LWNyZWRlbnRpYWw';

let dir: string;
let outside: string;
let upstreams: Upstreams;
let hostile: Upstreams;
let countFile: string;
const logs: string[] = [];

beforeAll(async () => {
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'agent-workspace-')));
  outside = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'elsewhere-')));
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello from the workspace\n');
  countFile = path.join(outside, 'count.txt');
  upstreams = new Upstreams({ upstreams: { fs: { command: FS_SERVER, args: [dir, outside] } } });
  hostile = new Upstreams({
    upstreams: { h: { command: process.execPath, args: [HOSTILE], env: { COUNT_FILE: countFile } } },
  });
  await upstreams.connectAll();
  await hostile.connectAll();
});

afterAll(async () => {
  await upstreams.close();
  await hostile.close();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(outside, { recursive: true, force: true });
});

async function agentFor(
  governor: FakeGovernor,
  overrides: Partial<GatewayOptions> = {},
): Promise<{ client: Client; session: AgentSession }> {
  const options: GatewayOptions = {
    port: governor,
    catalog: upstreams,
    rules,
    neverAllowed: neverAllowedActions(bundle),
    taskQueue: 'gateway-queue',
    toolTimeoutMs: 10_000,
    escalationWaitMs: 10_000,
    progressIntervalMs: 50,
    log: (m, f) => logs.push(`${m} ${JSON.stringify(f ?? {})}`),
    ...overrides,
  };
  const session = new AgentSession(governor, { credential: CREDENTIAL, attestation: 'att', workload: 'agent:test' });
  const server = createGatewayServer(options, session);
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(a);
  const client = new Client({ name: 'agent', version: '1.0.0' });
  await client.connect(b);
  return { client, session };
}

const fsActivity = () =>
  createMcpActivities(upstreams, { maxResultBytes: 1024 * 1024, toolTimeoutMs: 10_000 })[MCP_TOOL_CALL_ACTIVITY]!;
const textOf = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;

describe('tools/list', () => {
  it('passes the upstream tools through unchanged, with a note where the governor always refuses', async () => {
    const { client } = await agentFor(new FakeGovernor(fsActivity()));
    const direct = await upstreams.listTools();
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(direct.map((t) => t.name));
    for (const t of tools) {
      const original = direct.find((d) => d.name === t.name)!.definition;
      expect(t.inputSchema).toEqual(original.inputSchema);
      if (ruleFor(rules, 'fs', t.name)) expect(t.description).toBe(original.description);
    }
    // The default bundle maps no rule for list_allowed_directories: every call is refused, and it says so.
    const unmapped = tools.find((t) => t.name === 'list_allowed_directories')!;
    expect(unmapped.description).toContain('[Temporal Governor: no mapping rule in the policy bundle');
  });

  it('notes a mapped tool whose action no permit names', async () => {
    const norules = { ...rules, read_file: McpToolRule.parse({ action: 'fs.delete', resource: 'File::"{path}"' }) };
    const { client } = await agentFor(new FakeGovernor(fsActivity()), { rules: norules });
    const { tools } = await client.listTools();
    expect(tools.find((t) => t.name === 'read_file')!.description).toContain('no policy ever permits action fs.delete');
    expect(tools.find((t) => t.name === 'write_file')!.description).not.toContain('Temporal Governor');
  });

  it('neverAllowedActions: sound on the default bundle (permitted actions are never flagged)', () => {
    const never = neverAllowedActions(bundle);
    for (const a of ['fs.read', 'fs.list', 'fs.write', 'fs.move', 'fs.mkdir', 'deploy', 'read', 'pay']) {
      expect(never(a)).toBe(false);
    }
    expect(never('fs.delete')).toBe(true);
    expect(never('drop_database')).toBe(true);
  });
});

describe('tools/call', () => {
  it('an allowed read_file is one proposed step (mcp executor) and returns the file', async () => {
    const governor = new FakeGovernor(fsActivity());
    const { client } = await agentFor(governor);
    const file = path.join(dir, 'notes.txt');
    const result = (await client.callTool({ name: 'read_file', arguments: { path: file } })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(textOf(result)).toBe('hello from the workspace\n');
    expect((result._meta as { governor: Record<string, unknown> }).governor).toMatchObject({
      sessionId: 'session-1',
      outcome: 'executed',
      receiptHash: 'h',
    });
    await client.callTool({ name: 'read_text_file', arguments: { path: file } });
    expect(governor.opened).toBe(1); // one session for the connection
    expect(governor.proposals).toHaveLength(2);
    const [first, second] = governor.proposals;
    expect(first!.credential).toBe(CREDENTIAL);
    expect(first!.step).toMatchObject({
      action: 'fs.read',
      resource: { type: 'File', id: file },
      context: { path: file },
      input: { path: file },
      executor: { type: 'mcp', taskQueue: 'gateway-queue', server: 'fs', tool: 'read_file' },
    });
    expect(first!.step.id).not.toBe(second!.step.id);
    // The credential came from the connection; it never reaches a log line or the tool arguments.
    expect(JSON.stringify(first!.step.input)).not.toContain(CREDENTIAL);
    expect(logs.join('\n')).not.toContain(CREDENTIAL);
  });

  it('a denied write comes back as a tool error with the reason and policies; nothing is written', async () => {
    const governor = new FakeGovernor(fsActivity(), () => 'deny');
    const { client } = await agentFor(governor);
    const target = path.join(outside, 'out.txt');
    const result = (await client.callTool({
      name: 'write_file',
      arguments: { path: target, content: 'x' },
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toBe(
      'denied by the governor: agents may write only inside the agent workspace (policies: fs-write-outside-workspace-forbid)',
    );
    expect(fs.existsSync(target)).toBe(false);
  });

  it.each([
    [{ content: 'x' }, 'argument path is missing'],
    [{ path: 42 }, 'argument path must be a string'],
    [{ path: '/tmp/agent-workspace-a/x"; permit' }, 'argument path holds a quote'],
    [{ path: '/tmp/agent-workspace-a/../../etc/passwd' }, 'argument path holds a . or .. path segment'],
    [{ path: '/tmp/agent-workspace-a//x' }, 'argument path holds an empty path segment'],
    [{ path: '/tmp/agent-workspace-a/x\n' }, 'argument path holds a quote, backslash, brace or control character'],
    [{ path: '' }, 'argument path must not be empty'],
  ])('arguments the mapping cannot place are refused, nothing proposed: %j', async (args, why) => {
    const governor = new FakeGovernor(fsActivity());
    const { client } = await agentFor(governor);
    const result = (await client.callTool({ name: 'write_file', arguments: args })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain(`tool write_file: ${why}`);
    expect(governor.opened).toBe(0);
    expect(governor.proposals).toHaveLength(0);
  });

  it('move_file places both paths (destination in context); an injected destination is refused', async () => {
    const governor = new FakeGovernor(fsActivity(), () => 'deny');
    const { client } = await agentFor(governor);
    const bad = (await client.callTool({
      name: 'move_file',
      arguments: { source: path.join(dir, 'notes.txt'), destination: `${dir}/../x` },
    })) as CallToolResult;
    expect(textOf(bad)).toContain('argument destination holds a . or .. path segment');
    await client.callTool({
      name: 'move_file',
      arguments: { source: path.join(dir, 'notes.txt'), destination: path.join(dir, 'protected', 'n.txt') },
    });
    expect(governor.proposals[0]!.step).toMatchObject({
      action: 'fs.move',
      resource: { type: 'File', id: path.join(dir, 'notes.txt') },
      context: { path: path.join(dir, 'notes.txt'), destination: path.join(dir, 'protected', 'n.txt') },
    });
  });

  it('an unknown tool is a protocol error naming it; a tool without a rule is refused unproposed', async () => {
    const governor = new FakeGovernor(fsActivity());
    const { client } = await agentFor(governor);
    await expect(client.callTool({ name: 'rm_rf', arguments: {} })).rejects.toThrow(McpError);
    await expect(client.callTool({ name: 'rm_rf', arguments: {} })).rejects.toThrow(/unknown tool: rm_rf/);
    const result = (await client.callTool({ name: 'list_allowed_directories', arguments: {} })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain('has no mapping rule');
    expect(governor.proposals).toHaveLength(0);
  });

  it('an escalation sends progress while it waits, then returns the outcome once approved (run once)', async () => {
    const governor = new FakeGovernor(fsActivity(), () => 'escalate');
    const { client } = await agentFor(governor);
    const target = path.join(dir, 'protected', 'config.txt');
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, 'v1');
    const progress: string[] = [];
    const call = client.callTool({ name: 'write_file', arguments: { path: target, content: 'v2' } }, undefined, {
      onprogress: (p) => {
        progress.push(p.message ?? '');
        if (progress.length === 3) void governor.approve('session-1', governor.proposals[0]!.step.id);
      },
    });
    const result = (await call) as CallToolResult;
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress[0]).toBe(
      `step ${governor.proposals[0]!.step.id} of session session-1 awaits approval by data-steward`,
    );
    expect(result.isError).toBeFalsy();
    expect(fs.readFileSync(target, 'utf8')).toBe('v2');
    expect(governor.proposals).toHaveLength(1);
  });

  it('an escalation not decided within escalationWaitMs returns "awaiting approval" with the step id; nothing ran', async () => {
    const governor = new FakeGovernor(fsActivity(), () => 'escalate');
    const { client } = await agentFor(governor, { escalationWaitMs: 200 });
    const target = path.join(dir, 'protected', 'later.txt');
    const result = (await client.callTool({
      name: 'write_file',
      arguments: { path: target, content: 'v' },
    })) as CallToolResult;
    const stepId = governor.proposals[0]!.step.id;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toBe(
      `awaiting approval by data-steward: step ${stepId} of session session-1 is recorded and runs once approved; it has not run yet`,
    );
    expect(fs.existsSync(target)).toBe(false);
  });

  it('a client that goes away mid-escalation stops the wait; the step stays recorded and runs once when approved', async () => {
    const governor = new FakeGovernor(fsActivity(), () => 'escalate');
    const { client } = await agentFor(governor, { escalationWaitMs: 60_000 });
    const target = path.join(dir, 'protected', 'left.txt');
    const abort = new AbortController();
    const call = client.callTool({ name: 'write_file', arguments: { path: target, content: 'late' } }, undefined, {
      signal: abort.signal,
      onprogress: () => abort.abort(),
    });
    await expect(call).rejects.toThrow(/abort/i);
    await client.close();
    expect(fs.existsSync(target)).toBe(false);
    const { step } = governor.proposals[0]!;
    await governor.approve('session-1', step.id); // approvers decide after the agent left
    expect(fs.readFileSync(target, 'utf8')).toBe('late');
    expect(governor.proposals).toHaveLength(1);
  });

  it('closing the session closes it once at the governor', async () => {
    const governor = new FakeGovernor(fsActivity());
    const { client, session } = await agentFor(governor);
    await client.callTool({ name: 'read_file', arguments: { path: path.join(dir, 'notes.txt') } });
    await session.close('done');
    await session.close('again');
    expect(governor.closed).toEqual(['session-1']);
  });
});

describe('the mcpToolCall executor against hostile upstreams', () => {
  const call = (tool: string, toolTimeoutMs = 10_000) =>
    createMcpActivities(hostile, { maxResultBytes: 1024, toolTimeoutMs })[MCP_TOOL_CALL_ACTIVITY]!({
      idempotencyKey: 'c/s',
      chainId: 'c',
      stepId: 's',
      action: 'x',
      resource: { type: 'File', id: '/x' },
      input: { path: 'p' },
      server: 'h',
      tool,
    });

  it("a tool's own error result is its result (the step executed)", async () => {
    await expect(call('fail')).resolves.toMatchObject({ isError: true, content: [{ text: 'upstream says no' }] });
  });

  it('a hanging upstream fails the call at the timeout with a clear error', async () => {
    await expect(call('hang', 300)).rejects.toThrow(/upstream h: tool hang failed: .*timed out/i);
  });

  it('an upstream that crashes mid-call fails the call; the next call reconnects and runs once', async () => {
    await expect(call('crash')).rejects.toThrow(/upstream h: tool crash failed/);
    const before = fs.existsSync(countFile) ? fs.readFileSync(countFile, 'utf8') : '';
    await expect(call('echo')).resolves.toMatchObject({ content: [{ text: 'echo p' }] });
    expect(fs.readFileSync(countFile, 'utf8')).toBe(`${before}p\n`);
  });

  it('an unknown upstream and an oversized result fail the call, naming why', async () => {
    const activity = createMcpActivities(hostile, { maxResultBytes: 1024, toolTimeoutMs: 1000 })[
      MCP_TOOL_CALL_ACTIVITY
    ]!;
    const input = {
      idempotencyKey: 'c/s',
      chainId: 'c',
      stepId: 's',
      action: 'x',
      resource: { type: 'File', id: '/x' },
    };
    await expect(activity({ ...input, input: { path: 'p' }, server: 'nope', tool: 'echo' })).rejects.toThrow(
      'this gateway has no upstream named nope',
    );
    await expect(activity({ ...input, input: { path: 'p'.repeat(2000) }, server: 'h', tool: 'echo' })).rejects.toThrow(
      /returned more than 1024 bytes/,
    );
  });
});

describe('configuration and credentials', () => {
  it('parses upstreams and defaults; refuses unknown keys and bad names, naming the field', () => {
    const config = parseGatewayConfig({ upstreams: { fs: { command: 'x' }, web: { url: 'https://example.com/mcp' } } });
    expect(config).toMatchObject({ escalationWaitMs: 120_000, taskQueue: 'governor-mcp', toolTimeoutMs: 60_000 });
    expect(() => parseGatewayConfig({ upstreams: { fs: { command: 'x' } }, escalationWait: 5 })).toThrow(
      /escalationWait/,
    );
    expect(() => parseGatewayConfig({ upstreams: { a__b: { command: 'x' } } })).toThrow(/upstreams/);
    expect(() => parseGatewayConfig({ upstreams: {} })).toThrow(/at least one upstream/);
  });

  it('rules: templates are checked when the manifest loads', () => {
    expect(() => McpToolRule.parse({ action: 'fs.read', resource: 'File::{path}' })).toThrow(/Type::/);
    expect(() =>
      McpToolRule.parse({ action: 'fs.read', resource: 'File::"{path}"', context: { p: '{pa th}' } }),
    ).toThrow(/braces only/);
    const rule = McpToolRule.parse({ action: 'fs.read', resource: 'File::"/root/{name}"' });
    expect(mapToolCall(rule, 't', { name: 'a.txt' })).toEqual({
      ok: true,
      action: 'fs.read',
      resource: { type: 'File', id: '/root/a.txt' },
      context: {},
    });
    expect(mapToolCall(rule, 't', ['a'])).toEqual({ ok: false, reason: 'tool t: arguments must be an object' });
  });

  it('secretFromEnv reads the variable or the file, never both, and never echoes a value', () => {
    const file = path.join(outside, 'cred.txt');
    fs.writeFileSync(file, 'from-file\n');
    expect(secretFromEnv('C', 'C_FILE', { C: 'direct' })).toBe('direct');
    expect(secretFromEnv('C', 'C_FILE', { C_FILE: file })).toBe('from-file');
    expect(() => secretFromEnv('C', 'C_FILE', { C: 'secret-value', C_FILE: file })).toThrow(
      'set C or C_FILE, not both',
    );
    expect(() => secretFromEnv('C', 'C_FILE', {})).toThrow(/C \(or C_FILE\) is required/);
    expect(() => secretFromEnv('C', 'C_FILE', { C_FILE: path.join(outside, 'missing') })).toThrow(
      'C_FILE: cannot read the file it names',
    );
  });
});
