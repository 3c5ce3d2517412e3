import fs from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { NativeConnection } from '@temporalio/worker';
import { MCP_TOOL_CALL_ACTIVITY } from '../../contracts/executor';
import { parseGatewayConfig } from '../../gateway/config';
import { startGateway, type RunningGateway } from '../../gateway/run';
import { Upstreams } from '../../gateway/upstreams';
import { createGatewayWorker } from '../../gateway/worker';
import { governorSessionPort } from '../../gateway/session-port';
import { issueApproval } from '../../identity';
import { loadBundle } from '../../policies/bundle';
import { defaultPoliciesDir } from '../../workers/worker';
import { setupGoverned, type Governed } from '../harness/governed';
import { testAddress, uniqueQueue } from '../harness/temporal';
import { runVerifyCli } from '../harness/verify-cli';
import { fetchChainHistories } from '../../audit/verify';

/*
 * The MCP gateway end to end, no mocks of MCP: the REAL @modelcontextprotocol/server-filesystem as the
 * upstream on a temporary workspace, `governor mcp` (startGateway, Streamable HTTP) in front of it with
 * its own worker hosting the `mcp` executor, an MCP SDK Client as the agent, and a real governor on the
 * Temporal dev server enforcing the default bundle (policies/default/files.cedar).
 */

const ROOT = path.resolve(__dirname, '../..');
const FS_SERVER = path.join(ROOT, 'node_modules/.bin/mcp-server-filesystem');

let g: Governed;
let gateway: RunningGateway;
let gatewayConnection: NativeConnection;
let workspace: string;
let outside: string;
let taskQueue: string;

const textOf = (r: CallToolResult): string => (r.content[0] as { text: string }).text;
const governorMeta = (r: CallToolResult) => (r._meta as { governor: { sessionId: string; stepId: string } }).governor;

async function agent(
  workload = 'agent:coder',
  headers: Record<string, string> = {},
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const { credential, attestation } = await g.creds(workload);
  const transport = new StreamableHTTPClientTransport(new URL(gateway.url!), {
    requestInit: {
      headers: { authorization: `Bearer ${credential}`, 'x-governor-attestation': attestation, ...headers },
    },
  });
  const client = new Client({ name: 'scripted-agent', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

/** How often the gateway's worker ran `mcpToolCall` for a step (scheduled activities in the chain's history). */
async function toolCalls(chainId: string, stepId: string): Promise<number> {
  const history = await g.client.workflow.getHandle(chainId).fetchHistory();
  return (history.events ?? []).filter((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    if (a?.activityType?.name !== MCP_TOOL_CALL_ACTIVITY) return false;
    return Buffer.from(a.input?.payloads?.[0]?.data ?? [])
      .toString()
      .includes(`"stepId":"${stepId}"`);
  }).length;
}

/** The activity type of every local activity marker in a chain's histories, in order. */
async function localActivityTypes(chainId: string): Promise<string[]> {
  const types: string[] = [];
  for (const h of await fetchChainHistories(g.client, chainId)) {
    for (const event of h.events as Record<string, Record<string, unknown>>[]) {
      const attrs = event.markerRecordedEventAttributes as
        { markerName?: string; details?: Record<string, { payloads?: { data?: string }[] }> } | undefined;
      if (attrs?.markerName !== 'core_local_activity') continue;
      const data = Buffer.from(attrs.details?.data?.payloads?.[0]?.data ?? '', 'base64').toString('utf8');
      types.push((JSON.parse(data || 'null') as { activity_type?: string } | null)?.activity_type ?? '');
    }
  }
  return types;
}

describe('MCP gateway in front of the real filesystem server, governed on Temporal', () => {
  beforeAll(async () => {
    g = await setupGoverned({ revocationCacheTtlMs: 0 });
    // files.cedar's workspace: /tmp/agent-workspace-*/ (the test fails loudly elsewhere, never passes vacuously).
    workspace = fs.realpathSync(fs.mkdtempSync('/tmp/agent-workspace-'));
    outside = fs.realpathSync(fs.mkdtempSync('/tmp/elsewhere-'));
    fs.writeFileSync(path.join(workspace, 'notes.txt'), 'meeting at noon\n');
    fs.mkdirSync(path.join(workspace, 'protected'));
    fs.writeFileSync(path.join(workspace, 'protected', 'config.txt'), 'v1\n');
    taskQueue = uniqueQueue('mcp-gateway');
    gatewayConnection = await NativeConnection.connect({ address: testAddress() });
    gateway = await startGateway({
      // The upstream may touch both folders: the governor, not the upstream, keeps the agent inside.
      config: parseGatewayConfig({
        upstreams: { fs: { command: FS_SERVER, args: [workspace, outside] } },
        taskQueue,
        escalationWaitMs: 60_000,
      }),
      bundle: loadBundle(defaultPoliciesDir()),
      home: g.home,
      port: governorSessionPort(g.gc),
      connection: gatewayConnection,
      namespace: 'default',
      http: { port: 0 },
      progressIntervalMs: 200,
    });
  });

  afterAll(async () => {
    await gateway?.close('test over');
    await gatewayConnection?.close();
    await g?.stop();
    for (const d of [workspace, outside]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it('reads, is denied a write outside the workspace, overwrites a protected file after two approvals; one chain that verifies', async () => {
    const { client, transport } = await agent();

    // An allowed read_file returns the file.
    const read = (await client.callTool({
      name: 'read_file',
      arguments: { path: path.join(workspace, 'notes.txt') },
    })) as CallToolResult;
    expect(read.isError).toBeFalsy();
    expect(textOf(read)).toBe('meeting at noon\n');
    const { sessionId } = governorMeta(read);

    // A write outside the workspace is denied with the policy's reason, and nothing is written.
    const target = path.join(outside, 'exfiltrated.txt');
    const denied = (await client.callTool({
      name: 'write_file',
      arguments: { path: target, content: 'secrets' },
    })) as CallToolResult;
    expect(denied.isError).toBe(true);
    // The reason is the policy's @reason (the session may prefix it with the policy id).
    expect(textOf(denied)).toMatch(/^denied by the governor: .*agents may write only inside the agent workspace/);
    expect(textOf(denied)).toContain('(policies: fs-write-outside-workspace-forbid)');
    expect(fs.existsSync(target)).toBe(false);

    // Overwriting a file under the protected folder escalates; two data stewards approve while the
    // agent's call waits (with progress notifications); it then runs, once.
    const protectedFile = path.join(workspace, 'protected', 'config.txt');
    const progress: string[] = [];
    let approving: Promise<void> | undefined;
    const overwrite = client.callTool(
      { name: 'write_file', arguments: { path: protectedFile, content: 'v2\n' } },
      undefined,
      {
        timeout: 120_000,
        onprogress: (p) => {
          progress.push(p.message ?? '');
          approving ??= (async () => {
            const state = await g.gc.status(sessionId);
            const approval = state.steps.find((s) => s.status === 'awaiting-approval')!.approval!;
            expect(fs.readFileSync(protectedFile, 'utf8')).toBe('v1\n'); // not before the approvals
            for (const sub of ['stella', 'sam']) {
              const token = await issueApproval({
                home: g.home,
                sub,
                roles: ['data-steward'],
                chainId: sessionId,
                stepId: approval.stepId,
                stepDigest: approval.stepDigest,
                decision: 'approve',
              });
              await g.gc.submitApproval(sessionId, token);
            }
          })();
        },
      },
    );
    const written = (await overwrite) as CallToolResult;
    await approving;
    expect(progress[0]).toMatch(/^step \S+ of session \S+ awaits approval by data-steward$/);
    expect(written.isError).toBeFalsy();
    expect(fs.readFileSync(protectedFile, 'utf8')).toBe('v2\n');
    expect(await toolCalls(sessionId, governorMeta(written).stepId)).toBe(1);

    // Every call of the connection is a step of the one session chain; closing it signs the checkpoint.
    await transport.terminateSession();
    await client.close();
    // The HTTP transport closes the session once the DELETE has been answered (its onclose): wait for the
    // session's run to close (its result), then read its state.
    await g.gc.result(sessionId);
    const state = await g.gc.status(sessionId);
    expect(state.steps.map((s) => [s.action, s.status])).toEqual([
      ['fs.read', 'completed'],
      ['fs.write', 'denied'],
      ['fs.write', 'completed'],
    ]);
    const verified = await runVerifyCli([sessionId], { home: g.home, env: { TEMPORAL_ADDRESS: testAddress() } });
    expect(verified.error).toBeUndefined();
    expect(verified.code).toBe(0);
    // Patch remote-step-grant-and-output-folded: the outright read's grant came with its decision, and every
    // output digest with its execution receipt; only the approved overwrite minted its grant after the votes.
    const types = await localActivityTypes(sessionId);
    expect(types.filter((t) => t === 'sessionOutput')).toEqual([]);
    expect(types.filter((t) => t === 'mintGrant')).toEqual(['mintGrant']);
  });

  it('`governor mcp` on stdio (the built CLI, as an MCP client host starts it): credential from the environment', async () => {
    // Needs `npm run build` (bin/governor.js runs dist/).
    const { credential, attestation } = await g.creds('agent:stdio');
    const config = path.join(outside, 'gateway.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        upstreams: { fs: { command: FS_SERVER, args: [workspace] } },
        taskQueue: uniqueQueue('mcp-stdio'),
      }),
    );
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [path.join(ROOT, 'bin/governor.js'), 'mcp', '--config', config],
      env: {
        ...(process.env as Record<string, string>),
        TEMPORAL_ADDRESS: testAddress(),
        GOVERNOR_HOME: g.home,
        GOVERNOR_TASK_QUEUE: g.taskQueue,
        GOVERNOR_AGENT_CREDENTIAL: credential,
        GOVERNOR_AGENT_ATTESTATION: attestation,
      },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const client = new Client({ name: 'stdio-agent', version: '1.0.0' });
    await client.connect(transport);
    const read = (await client.callTool({
      name: 'read_file',
      arguments: { path: path.join(workspace, 'notes.txt') },
    })) as CallToolResult;
    expect(textOf(read)).toBe('meeting at noon\n');
    const { sessionId } = governorMeta(read);
    await client.close(); // the gateway closes the session on stdin's end
    const closed = await g.waitFor(sessionId, (s) => s.status === 'Completed');
    expect(closed.steps.map((s) => s.status)).toEqual(['completed']);
    expect(stderr).toContain('serving MCP on stdio');
    expect(stderr).not.toContain(credential);
  });

  it('a revoked session refuses the next call, and nothing runs', async () => {
    const { client } = await agent('agent:coder-2');
    const first = (await client.callTool({
      name: 'read_file',
      arguments: { path: path.join(workspace, 'notes.txt') },
    })) as CallToolResult;
    expect(first.isError).toBeFalsy();
    const { sessionId } = governorMeta(first);
    await g.gc.revoke(sessionId, { reason: 'agent misbehaved', by: 'sre' });
    const target = path.join(workspace, 'after-revocation.txt');
    const refused = (await client.callTool({
      name: 'write_file',
      arguments: { path: target, content: 'x' },
    })) as CallToolResult;
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/revoked/i);
    expect(fs.existsSync(target)).toBe(false);
    // Revoked stays revoked on this connection: the gateway does not open a new session behind it.
    const again = (await client.callTool({
      name: 'write_file',
      arguments: { path: target, content: 'x' },
    })) as CallToolResult;
    expect(again.isError).toBe(true);
    expect(textOf(again)).toMatch(/revoked/i);
    expect(fs.existsSync(target)).toBe(false);
    await client.close();
  });

  it('X-Governor-Agent-Id shares one session between connections of the same workload, never across workloads', async () => {
    const read = async (c: Client) =>
      governorMeta(
        (await c.callTool({
          name: 'read_file',
          arguments: { path: path.join(workspace, 'notes.txt') },
        })) as CallToolResult,
      ).sessionId;
    const a = await agent('agent:coder-3', { 'x-governor-agent-id': 'planner-1' });
    const b = await agent('agent:coder-3', { 'x-governor-agent-id': 'planner-1' });
    const other = await agent('agent:coder-3', { 'x-governor-agent-id': 'planner-2' });
    const squatter = await agent('agent:coder-4', { 'x-governor-agent-id': 'planner-1' });
    const malformed = await agent('agent:coder-3', { 'x-governor-agent-id': '../planner-1 x' });
    const shared = await read(a.client);
    expect(await read(b.client)).toBe(shared);
    expect(await read(other.client)).not.toBe(shared);
    expect(await read(squatter.client)).not.toBe(shared); // another workload never joins it
    expect(await read(malformed.client)).not.toBe(shared); // an invalid id is ignored: a session of its own
    const state = await g.gc.status(shared);
    expect(state.workload).toBe('agent:coder-3');
    expect(state.steps.map((s) => s.status)).toEqual(['completed', 'completed']);

    // One connection going away does not close the shared session: the other goes on in it.
    await a.transport.terminateSession();
    await a.client.close();
    expect(await read(b.client)).toBe(shared);
    expect((await g.gc.status(shared)).steps).toHaveLength(3);

    // Once the shared session has completed (closed here; an idle timeout alike), the next call says so
    // and the one after opens a new session, governed from its start.
    await g.gc.closeSession(shared, { reason: 'operator closed it' });
    const refused = (await b.client.callTool({
      name: 'read_file',
      arguments: { path: path.join(workspace, 'notes.txt') },
    })) as CallToolResult;
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/session has ended: Completed/);
    const next = await read(b.client);
    expect(next).not.toBe(shared);
    expect((await g.gc.status(next)).workload).toBe('agent:coder-3');
    for (const c of [b, other, squatter, malformed]) await c.client.close();
  });
});

/*
 * Runs now (no sessions needed): the `mcp` executor in a declared chain. The governor schedules
 * `mcpToolCall` on the gateway's queue, where the gateway's worker calls the REAL filesystem server once;
 * policy decides first (files.cedar), the outcome is recorded, and `governor verify` proves the chain.
 */
describe('the mcp executor in a declared chain (real filesystem server, real governor)', () => {
  let upstreams: Upstreams;
  let worker: Awaited<ReturnType<typeof createGatewayWorker>>;
  let running: Promise<void>;
  let connection: NativeConnection;
  let dir: string;
  let elsewhere: string;
  let queue: string;

  const mcpStep = (id: string, action: string, tool: string, file: string, input: Record<string, string> = {}) => ({
    id,
    action,
    resource: { type: 'File', id: file },
    context: { path: file },
    input: { path: file, ...input },
    executor: { type: 'mcp', taskQueue: queue, server: 'fs', tool, timeoutMs: 20_000 },
  });

  beforeAll(async () => {
    g = await setupGoverned();
    dir = fs.realpathSync(fs.mkdtempSync('/tmp/agent-workspace-'));
    elsewhere = fs.realpathSync(fs.mkdtempSync('/tmp/elsewhere-'));
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello\n');
    fs.mkdirSync(path.join(dir, 'protected'));
    fs.writeFileSync(path.join(dir, 'protected', 'config.txt'), 'v1\n');
    queue = uniqueQueue('mcp-gateway');
    upstreams = new Upstreams({
      upstreams: {
        fs: { command: FS_SERVER, args: [dir, elsewhere] },
        h: { command: process.execPath, args: [path.join(ROOT, 'test/fixtures/mcp/hostile-upstream.js')] },
      },
    });
    await upstreams.connectAll();
    connection = await NativeConnection.connect({ address: testAddress() });
    worker = await createGatewayWorker({
      connection,
      namespace: 'default',
      taskQueue: queue,
      upstreams,
      maxResultBytes: 1 << 20,
      toolTimeoutMs: 2_000,
    });
    running = worker.run();
  });

  afterAll(async () => {
    worker?.shutdown();
    await running;
    await upstreams?.close();
    await connection?.close();
    await g?.stop();
    for (const d of [dir, elsewhere]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it('an allowed read runs once on the gateway and records the tool result; the chain verifies', async () => {
    const file = path.join(dir, 'notes.txt');
    const handle = await g.gc.start(
      { workload: 'agent:coder', steps: [mcpStep('read', 'fs.read', 'read_file', file)] },
      await g.creds('agent:coder'),
    );
    const result = await handle.result();
    expect(result.status).toBe('Completed');
    expect(result.steps[0]!.outcome).toEqual({
      executor: 'mcp',
      idempotencyKey: `${handle.workflowId}/read`,
      result: { content: [{ type: 'text', text: 'hello\n' }], structuredContent: { content: 'hello\n' } },
    });
    expect(await toolCalls(handle.workflowId, 'read')).toBe(1);
    const verified = await runVerifyCli([handle.workflowId], {
      home: g.home,
      env: { TEMPORAL_ADDRESS: testAddress() },
    });
    expect(verified.error).toBeUndefined();
    expect(verified.code).toBe(0);
  });

  it('a write outside the workspace is denied with the reason, never scheduled, and not written', async () => {
    const target = path.join(elsewhere, 'out.txt');
    const handle = await g.gc.start(
      { workload: 'agent:coder', steps: [mcpStep('write', 'fs.write', 'write_file', target, { content: 'x' })] },
      await g.creds('agent:coder'),
    );
    const result = await handle.result();
    expect(result.status).toBe('Denied');
    expect(result.steps[0]!.decision).toMatchObject({
      effect: 'deny',
      reason:
        'denied by fs-write-outside-workspace-forbid (agents may write only inside the agent workspace (/srv/agent-workspace/ or /tmp/agent-workspace-*/))',
      determiningPolicies: ['fs-write-outside-workspace-forbid'],
    });
    expect(await toolCalls(handle.workflowId, 'write')).toBe(0);
    expect(fs.existsSync(target)).toBe(false);
  });

  it('overwriting a protected file escalates, runs once after two approvals, and the chain verifies', async () => {
    const file = path.join(dir, 'protected', 'config.txt');
    const handle = await g.gc.start(
      { workload: 'agent:coder', steps: [mcpStep('overwrite', 'fs.write', 'write_file', file, { content: 'v2\n' })] },
      await g.creds('agent:coder'),
    );
    const state = await g.waitFor(handle.workflowId, (s) => s.steps[0]?.status === 'awaiting-approval');
    const approval = state.steps[0]!.approval!;
    expect(approval).toMatchObject({ roles: ['data-steward'], quorum: 2 });
    expect(fs.readFileSync(file, 'utf8')).toBe('v1\n');
    for (const sub of ['stella', 'sam']) {
      const token = await issueApproval({
        home: g.home,
        sub,
        roles: ['data-steward'],
        chainId: handle.workflowId,
        stepId: 'overwrite',
        stepDigest: approval.stepDigest,
        decision: 'approve',
      });
      await g.gc.submitApproval(handle.workflowId, token);
    }
    const result = await handle.result();
    expect(result.status).toBe('Completed');
    expect(fs.readFileSync(file, 'utf8')).toBe('v2\n');
    expect(await toolCalls(handle.workflowId, 'overwrite')).toBe(1);
    const verified = await runVerifyCli([handle.workflowId], {
      home: g.home,
      env: { TEMPORAL_ADDRESS: testAddress() },
    });
    expect(verified.code).toBe(0);
  });

  it('an upstream that crashes mid-call fails its step with the reason, attempted once (never retried)', async () => {
    const file = path.join(dir, 'notes.txt');
    const step = {
      ...mcpStep('crash', 'fs.read', 'crash', file),
      executor: { ...mcpStep('x', 'x', 'crash', file).executor, server: 'h' },
    };
    const handle = await g.gc.start({ workload: 'agent:coder', steps: [step] }, await g.creds('agent:coder'));
    const result = await handle.result();
    expect(result.status).toBe('Failed');
    expect(result.steps[0]!.error).toMatch(/upstream h: tool crash failed: /);
    expect(await toolCalls(handle.workflowId, 'crash')).toBe(1);
  });

  it('a hanging upstream fails its step at the timeout, attempted once', async () => {
    const file = path.join(dir, 'notes.txt');
    const step = {
      ...mcpStep('hang', 'fs.read', 'hang', file),
      executor: { ...mcpStep('x', 'x', 'hang', file).executor, server: 'h' },
    };
    const handle = await g.gc.start({ workload: 'agent:coder', steps: [step] }, await g.creds('agent:coder'));
    const result = await handle.result();
    expect(result.status).toBe('Failed');
    expect(result.steps[0]!.error).toMatch(/upstream h: tool hang failed: .*timed out/i);
    expect(await toolCalls(handle.workflowId, 'hang')).toBe(1);
  });
});
