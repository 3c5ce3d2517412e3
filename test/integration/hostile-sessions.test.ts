import fs from 'node:fs';
import path from 'node:path';
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { parseGatewayConfig } from '../../gateway/config';
import { startGateway, type RunningGateway } from '../../gateway/run';
import { governorSessionPort } from '../../gateway/session-port';
import { loadBundle } from '../../policies/bundle';
import { defaultPoliciesDir } from '../../workers/worker';
import { testAddress, uniqueQueue } from '../harness/temporal';
import { issueApproval } from '../../identity';
import { ErrorCode } from '../../contracts/errors';
import { SESSION_WORKFLOW_TYPE } from '../../contracts/session';
import { sessionTestBundle } from '../harness/session-bundle';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/*
 * Agent sessions attacked from outside (issue 16): a plain Temporal client sends raw updates, signals and
 * starts to `governedSessionWorkflow`, as another SDK or a hostile agent would. The workflow is the trust
 * boundary: every refusal names the field, and nothing is governed or executed by a refused message.
 */

let g: Governed;
beforeAll(async () => {
  const policiesDir = sessionTestBundle();
  g = await setupGoverned({ policiesDir });
}, 60_000);
afterAll(async () => {
  await g?.stop();
});

const doc = (id: string) => ({ type: 'Doc', id });
const step = (id: string, action: string, resource: string, extra: Record<string, unknown> = {}) =>
  g.serviceStep(id, action, doc(resource), extra);

let n = 0;
/** Starts a session with a plain Temporal client (what another SDK sends). */
async function openRaw(
  steps: unknown[] = [],
  c?: { credential: string; attestation: string },
): Promise<{ sessionId: string; credential: string; attestation: string }> {
  const creds = c ?? (await g.creds());
  const sessionId = `hostile-${process.pid}-${++n}-${Date.now()}`;
  await g.client.workflow.start(SESSION_WORKFLOW_TYPE, {
    taskQueue: g.taskQueue,
    workflowId: sessionId,
    args: [{ chainId: sessionId, chain: { workload: WORKLOAD, owner: 'team-agents', steps }, ...creds }],
  });
  return { sessionId, ...creds };
}

const h = (id: string) => g.client.workflow.getHandle(id);
const propose = (id: string, arg: unknown) => h(id).executeUpdate('proposeStep', { args: [arg] });
const awaitStep = (id: string, arg: unknown) => h(id).executeUpdate('awaitStep', { args: [arg] });
const close = (id: string, arg: unknown = {}) => h(id).executeUpdate('closeSession', { args: [arg] });

/** The message and type of the failure a raw update (or a workflow result) rejects with. */
async function refused(p: Promise<unknown>): Promise<{ message: string; type?: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError || err instanceof WorkflowFailedError) {
      const cause = err.cause as { message: string; type?: string };
      return { message: cause.message, type: cause.type };
    }
    throw err;
  }
  throw new Error('expected a refusal');
}

const ledgerKeys = (sessionId: string) => g.ledger.all().filter((e) => e.idempotencyKey.startsWith(`${sessionId}/`));

describe('agent sessions under raw, hostile messages', () => {
  it('refuses an expired credential and a garbage attestation before anything is governed', async () => {
    const { sessionId, credential } = await openRaw();
    expect(await propose(sessionId, { step: step('ok', 'doc.read', 'notes'), credential })).toMatchObject({
      outcome: 'executed',
    });
    const before = await g.gc.status(sessionId);
    const expired = await g.creds(WORKLOAD, { now: new Date(Date.now() - 3_600_000), ttlSeconds: 60 });
    const r1 = await refused(
      propose(sessionId, { step: step('e1', 'doc.read', 'notes'), credential: expired.credential }),
    );
    expect(r1).toMatchObject({ type: ErrorCode.InvalidInput, message: expect.stringMatching(/^credential: /) });
    const r2 = await refused(
      propose(sessionId, { step: step('e2', 'doc.read', 'notes'), credential, attestation: 'a.b.c' }),
    );
    expect(r2.message).toMatch(/^attestation: /);
    // An attestation of another workload (signed by the governor's key) does not belong to this session.
    const other = await g.creds('agent:someone-else');
    const r3 = await refused(
      propose(sessionId, { step: step('e3', 'doc.read', 'notes'), credential, attestation: other.attestation }),
    );
    expect(r3.message).toMatch(/^attestation: /);
    const after = await g.gc.status(sessionId);
    expect(after.steps).toEqual(before.steps);
    expect(after.receiptHead).toEqual(before.receiptHead);
    // The refused ids are free again: the agent may retry them with valid tokens.
    expect(await propose(sessionId, { step: step('e1', 'doc.read', 'notes'), credential })).toMatchObject({
      outcome: 'executed',
      stepId: 'e1',
    });
    expect(ledgerKeys(sessionId).map((e) => e.idempotencyKey)).toEqual([`${sessionId}/ok`, `${sessionId}/e1`]);
    await close(sessionId);
  });

  it('a credential already bound to another chain executes nothing in the session', async () => {
    const c = await g.creds();
    const chain = await g.run({ workload: WORKLOAD, steps: [step('c1', 'doc.read', 'notes')] }, c);
    expect(chain.status).toBe('Completed');
    const { sessionId } = await openRaw();
    let outcome: unknown;
    try {
      outcome = await propose(sessionId, { step: step('b1', 'doc.read', 'notes'), credential: c.credential });
    } catch (err) {
      outcome = (err as WorkflowUpdateFailedError).cause?.message;
    }
    // Refused or denied, never executed.
    expect(JSON.stringify(outcome)).not.toMatch(/"outcome":"executed"/);
    expect(ledgerKeys(sessionId)).toHaveLength(0);
    await close(sessionId);
  });

  it('refuses a proposed step id that is the governed id of a compensation (idempotency keys would collide)', async () => {
    const declared = step('d1', 'doc.write', 'draft', {
      compensation: {
        action: 'doc.delete',
        executor: { type: 'activity', taskQueue: g.serviceQueue, activityType: 'perform' },
      },
    });
    const { sessionId, credential } = await openRaw([declared]);
    expect(await awaitStep(sessionId, { stepId: 'd1', credential })).toMatchObject({ outcome: 'executed' });
    const before = await g.gc.status(sessionId);
    const r = await refused(propose(sessionId, { step: step('d1.compensation', 'doc.read', 'notes'), credential }));
    expect(r).toMatchObject({ type: ErrorCode.InvalidInput, message: expect.stringMatching(/^step\.id: /) });
    // Even an id that compensates nothing yet is refused: a later step could carry that compensation.
    const r2 = await refused(propose(sessionId, { step: step('x.compensation', 'doc.read', 'notes'), credential }));
    expect(r2.message).toMatch(/^step\.id: /);
    expect((await g.gc.status(sessionId)).steps).toEqual(before.steps);
    // Revoked: d1's compensation runs under its own idempotency key, exactly once.
    await g.gc.revoke(sessionId, { reason: 'stop', by: 'sec' });
    expect(await g.gc.result(sessionId)).toMatchObject({ status: 'Revoked' });
    expect(ledgerKeys(sessionId).map((e) => e.idempotencyKey)).toEqual([
      `${sessionId}/d1`,
      `${sessionId}/d1.compensation`,
    ]);
    expect(g.ledger.all().filter((e) => e.idempotencyKey === `${sessionId}/d1.compensation`)[0]).toMatchObject({
      action: 'doc.delete',
    });
  });

  it('refuses a session opened with a declared step whose id is a compensation id', async () => {
    const c = await g.creds();
    const sessionId = `hostile-comp-${process.pid}-${Date.now()}`;
    const handle = await g.client.workflow.start(SESSION_WORKFLOW_TYPE, {
      taskQueue: g.taskQueue,
      workflowId: sessionId,
      args: [
        { chainId: sessionId, chain: { workload: WORKLOAD, steps: [step('a.compensation', 'doc.read', 'n')] }, ...c },
      ],
    });
    const r = await refused(handle.result());
    expect(r.message).toMatch(/^invalid workflow input: chain\.steps\[0\]\.id: /);
    expect(ledgerKeys(sessionId)).toHaveLength(0);
  });

  it('reserved context keys cannot spoof approvals or time: the protected write still escalates', async () => {
    const { sessionId, credential } = await openRaw();
    const spoof = step('w1', 'doc.write', 'protected', {
      context: { approvals: { byRole: { 'sre-lead': 2 }, count: 2 }, now: '2000-01-01T00:00:00Z', nowEpochSeconds: 1 },
    });
    const first = await propose(sessionId, { step: spoof, credential });
    expect(first).toMatchObject({ outcome: 'awaiting-approval', stepId: 'w1', pendingRoles: ['sre-lead'] });
    // A vote signed as the workload (its credential, not an approval token) counts for nothing.
    await h(sessionId).signal('approve', { token: credential } as never);
    await h(sessionId).signal('deny', { token: credential } as never);
    await h(sessionId).signal('approve', credential as never);
    const state = await g.gc.status(sessionId);
    expect(state.status).toBe('AwaitingApproval');
    expect(state.steps[0]!.approval!.approvedBy).toEqual([]);
    expect(ledgerKeys(sessionId)).toHaveLength(0);
    // An approval token for another session's step does not count either.
    const foreign = await issueApproval({
      home: g.home,
      sub: 'alice',
      roles: ['sre-lead'],
      chainId: 'some-other-session',
      stepId: 'w1',
      stepDigest: state.steps[0]!.approval!.stepDigest,
      decision: 'approve',
    });
    const verdict = (await h(sessionId).executeUpdate('submitApproval', { args: [{ token: foreign }] })) as {
      verdict: { counted: boolean; reason: string };
    };
    expect(verdict.verdict).toMatchObject({ counted: false });
    const later = await g.gc.status(sessionId);
    expect(later.status).toBe('AwaitingApproval');
    expect(later.steps[0]!.approval!.approvedBy).toEqual([]);
    // The workload's pasted credential and the foreign vote are all recorded as not counted.
    expect(later.steps[0]!.approval!.verdicts.map((v) => v.counted)).toEqual([false, false, false, false]);
    await g.gc.revoke(sessionId, { reason: 'done', by: 'test' });
    expect(await g.gc.result(sessionId)).toMatchObject({ status: 'Revoked' });
    expect(ledgerKeys(sessionId)).toHaveLength(0);
  });

  it('two concurrent proposals with the same id: exactly one is governed', async () => {
    const { sessionId, credential } = await openRaw();
    const results = await Promise.allSettled([
      propose(sessionId, { step: step('same', 'doc.read', 'a'), credential }),
      propose(sessionId, { step: step('same', 'doc.read', 'b'), credential }),
      propose(sessionId, { step: step('same', 'doc.read', 'c'), credential }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((x) => x.status === 'rejected'))
      expect(((r as PromiseRejectedResult).reason as WorkflowUpdateFailedError).cause?.message).toMatch(
        /^step\.id: duplicate step id/,
      );
    const result = (await close(sessionId)) as { steps: { id: string }[] };
    expect(result.steps.map((s) => s.id)).toEqual(['same']);
    expect(ledgerKeys(sessionId)).toHaveLength(1);
  });

  it('awaitStep: unknown step, another workload’s credential, a garbage credential are refused naming the field', async () => {
    const { sessionId, credential } = await openRaw();
    await propose(sessionId, { step: step('r1', 'doc.read', 'notes'), credential });
    expect((await refused(awaitStep(sessionId, { stepId: 'never', credential }))).message).toMatch(/^stepId: no such/);
    const other = await g.creds('agent:someone-else');
    expect((await refused(awaitStep(sessionId, { stepId: 'r1', credential: other.credential }))).message).toMatch(
      /^credential: /,
    );
    expect((await refused(awaitStep(sessionId, { stepId: 'r1', credential: 'x' }))).message).toMatch(/^credential: /);
    // Forged: right subject, wrong signature: the validator lets it through, verification refuses it.
    const [hd, , sig] = credential.split('.');
    const body = Buffer.from(JSON.stringify({ sub: WORKLOAD, exp: 9e9 })).toString('base64url');
    expect((await refused(awaitStep(sessionId, { stepId: 'r1', credential: `${hd}.${body}.${sig}` }))).message).toMatch(
      /^credential: /,
    );
    // A step of another session is not a step of this one.
    const second = await openRaw();
    expect(
      (await refused(awaitStep(second.sessionId, { stepId: 'r1', credential: second.credential }))).message,
    ).toMatch(/^stepId: no such/);
    expect(await awaitStep(sessionId, { stepId: 'r1', credential })).toMatchObject({ outcome: 'executed' });
    await close(sessionId);
    await close(second.sessionId);
  });

  it('closeSession twice: the second cannot reopen or change the result; then proposals are refused', async () => {
    const { sessionId, credential } = await openRaw();
    await propose(sessionId, { step: step('r1', 'doc.read', 'notes'), credential });
    const a = (await close(sessionId, { reason: 'one' })) as { status: string; reason: string };
    expect(a).toMatchObject({ status: 'Completed', reason: 'closed: one' });
    expect(await g.gc.result(sessionId)).toEqual(a);
    // After the run completed the update cannot be delivered at all.
    await expect(close(sessionId)).rejects.toThrow();
    await expect(propose(sessionId, { step: step('r2', 'doc.read', 'notes'), credential })).rejects.toThrow();
    expect(await g.gc.result(sessionId)).toEqual(a);
    expect(ledgerKeys(sessionId)).toHaveLength(1);
    expect((await refused(close((await openRaw()).sessionId, { reason: 'x'.repeat(501) }))).message).toMatch(/reason/);
  });

  it('refuses deeply nested and huge inputs, and control or unicode characters in ids, naming the field', async () => {
    const { sessionId, credential } = await openRaw();
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 200; i++) deep = { d: deep };
    const cases: [unknown, RegExp][] = [
      [{ step: step('n1', 'doc.read', 'x', { input: deep }), credential }, /^step\.input/],
      [{ step: step('n2', 'doc.read', 'x', { context: deep }), credential }, /^step\.context/],
      [{ step: step('n3', 'doc.read', 'x', { input: { a: 'x'.repeat(400_000) } }), credential }, /step\.input/],
      [{ step: step('bad\u0000id', 'doc.read', 'x'), credential }, /^step\.id: /],
      [{ step: step('bad\nid', 'doc.read', 'x'), credential }, /^step\.id: /],
      [{ step: step('r\u00e9ad', 'doc.read', 'x'), credential }, /^step\.id: /],
      [{ step: step('../../etc', 'doc.read', 'x'), credential }, /^step\.id: /],
      [{ step: step('ok', 'doc.read\u202e', 'x'), credential }, /^step\.action: /],
      [{ step: step('ok', 'doc.read', 'x'), credential: 'x'.repeat(20_000) }, /^credential: /],
    ];
    for (const [arg, field] of cases) {
      const r = await refused(propose(sessionId, arg));
      expect(r).toMatchObject({ type: ErrorCode.InvalidInput });
      expect(r.message).toMatch(field);
    }
    const result = (await close(sessionId)) as { steps: unknown[] };
    expect(result.steps).toEqual([]);
    expect(ledgerKeys(sessionId)).toHaveLength(0);
  });
});

describe('governedSessionWorkflow started raw with hostile input', () => {
  const start = async (workflowId: string, arg: unknown) => {
    const handle = await g.client.workflow.start(SESSION_WORKFLOW_TYPE, {
      taskQueue: g.taskQueue,
      workflowId,
      args: [arg],
    });
    return refused(handle.result());
  };

  it('a forged resume is refused at once: Rejected, nothing governed', async () => {
    const c = await g.creds();
    const id = `hostile-resume-${process.pid}-${Date.now()}`;
    const r = await start(id, {
      chainId: id,
      chain: { workload: WORKLOAD, steps: [] },
      ...c,
      resume: {
        nextStep: 1,
        head: { seq: 9, hash: 'f'.repeat(64) },
        steps: [],
        completed: ['w1'],
        runs: 2,
        governed: [step('w1', 'doc.write', 'protected')],
        summary: { steps: 0, actions: {} },
        outcomes: {},
      },
    });
    expect(r.message).toMatch(/^invalid workflow input: resume: /);
    const state = await g.gc.status(id);
    expect(state).toMatchObject({ status: 'Rejected', steps: [] });
    expect(ledgerKeys(id)).toHaveLength(0);
  });

  it('a session whose workflow id is not its chainId, malformed steps, or another workload’s credential are refused', async () => {
    const c = await g.creds();
    const id = `hostile-id-${process.pid}-${Date.now()}`;
    expect((await start(id, { chainId: `${id}-other`, chain: { workload: WORKLOAD }, ...c })).message).toMatch(
      /^invalid workflow input: chainId: /,
    );
    expect(
      (await start(`${id}-2`, { chainId: `${id}-2`, chain: { workload: WORKLOAD, steps: [{ id: 'x' }] }, ...c }))
        .message,
    ).toMatch(/^invalid workflow input: chain\.steps\[0\]\.action: /);
    expect(
      (
        await start(`${id}-3`, {
          chainId: `${id}-3`,
          chain: { workload: WORKLOAD, steps: [step('a', 'doc.read', 'x'), step('a', 'doc.read', 'y')] },
          ...c,
        })
      ).message,
    ).toMatch(/duplicate step id/);
    // Opening a session for a workload with another workload's credential: the declared step is denied
    // (the opening credential is verified by authorize), nothing executes.
    const other = await g.creds('agent:someone-else');
    const handle = await g.client.workflow.start(SESSION_WORKFLOW_TYPE, {
      taskQueue: g.taskQueue,
      workflowId: `${id}-4`,
      args: [{ chainId: `${id}-4`, chain: { workload: WORKLOAD, steps: [step('a', 'doc.read', 'x')] }, ...other }],
    });
    const outcome = await handle
      .executeUpdate('awaitStep', { args: [{ stepId: 'a', credential: c.credential }] })
      .catch((err: WorkflowUpdateFailedError) => err.cause?.message);
    expect(JSON.stringify(outcome)).not.toMatch(/"outcome":"executed"/);
    expect(ledgerKeys(`${id}-4`)).toHaveLength(0);
    await handle.executeUpdate('closeSession', { args: [{}] });
  });
});

/*
 * The MCP gateway attacked from outside: raw HTTP requests to its Streamable HTTP endpoint, and tool
 * arguments that try to walk out of the workspace, in front of the REAL filesystem server and the
 * default bundle (files.cedar), on a real governor.
 */
describe('MCP gateway under hostile requests and arguments', () => {
  const FS_SERVER = path.resolve(__dirname, '../../node_modules/.bin/mcp-server-filesystem');
  let gm: Governed;
  let gateway: RunningGateway;
  let connection: NativeConnection;
  let workspace: string;
  let outside: string;
  const textOf = (r: CallToolResult): string => (r.content[0] as { text: string }).text;

  beforeAll(async () => {
    gm = await setupGoverned({ revocationCacheTtlMs: 0 });
    workspace = fs.realpathSync(fs.mkdtempSync('/tmp/agent-workspace-'));
    outside = fs.realpathSync(fs.mkdtempSync('/tmp/elsewhere-'));
    fs.writeFileSync(path.join(workspace, 'notes.txt'), 'hello\n');
    fs.mkdirSync(path.join(workspace, 'protected'));
    fs.writeFileSync(path.join(workspace, 'protected', 'config.txt'), 'v1\n');
    connection = await NativeConnection.connect({ address: testAddress() });
    gateway = await startGateway({
      config: parseGatewayConfig({
        upstreams: { fs: { command: FS_SERVER, args: [workspace, outside] } },
        taskQueue: uniqueQueue('mcp-hostile'),
        escalationWaitMs: 0,
        maxBodyBytes: 4096,
      }),
      bundle: loadBundle(defaultPoliciesDir()),
      home: gm.home,
      port: governorSessionPort(gm.gc),
      connection,
      namespace: 'default',
      http: { port: 0 },
    });
  }, 60_000);
  afterAll(async () => {
    await gateway?.close('test over');
    await connection?.close();
    await gm?.stop();
    for (const d of [workspace, outside]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  async function agent(workload = 'agent:coder') {
    const { credential, attestation } = await gm.creds(workload);
    const transport = new StreamableHTTPClientTransport(new URL(gateway.url!), {
      requestInit: { headers: { authorization: `Bearer ${credential}`, 'x-governor-attestation': attestation } },
    });
    const client = new McpClient({ name: 'hostile-agent', version: '1.0.0' });
    await client.connect(transport);
    return { client, transport, credential, attestation };
  }

  const initialize = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  };
  const post = (headers: Record<string, string>, body: string) =>
    fetch(gateway.url!, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body,
    });

  it('raw HTTP: no or bad Authorization, no attestation, another workload on a session, unknown session, oversized and bad bodies', async () => {
    const { credential, attestation } = await gm.creds('agent:coder');
    const auth = { authorization: `Bearer ${credential}`, 'x-governor-attestation': attestation };
    const none = await post({}, JSON.stringify(initialize));
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer /);
    const garbage = await post({ ...auth, authorization: 'Bearer not.a.jwt' }, JSON.stringify(initialize));
    expect(garbage.status).toBe(401);
    expect(await garbage.text()).not.toContain('not.a.jwt');
    const noAttestation = await post({ authorization: auth.authorization }, JSON.stringify(initialize));
    expect(noAttestation.status).toBe(401);
    expect(((await noAttestation.json()) as { error: { message: string } }).error.message).toMatch(
      /x-governor-attestation/,
    );
    // The credential in a query string or a Basic header is not a bearer credential.
    expect((await post({ ...auth, authorization: `Basic ${credential}` }, JSON.stringify(initialize))).status).toBe(
      401,
    );

    // A session opened by agent:coder, then used with agent:other's (valid) credential: 403.
    const { client, transport } = await agent('agent:coder');
    const sid = transport.sessionId!;
    expect(sid).toEqual(expect.any(String));
    const other = await gm.creds('agent:other');
    const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} });
    const foreign = await post(
      {
        authorization: `Bearer ${other.credential}`,
        'x-governor-attestation': other.attestation,
        'mcp-session-id': sid,
      },
      list,
    );
    expect(foreign.status).toBe(403);
    const call = JSON.stringify({
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: { name: 'read_file', arguments: { path: path.join(workspace, 'notes.txt') } },
    });
    expect(
      (
        await post(
          {
            authorization: `Bearer ${other.credential}`,
            'x-governor-attestation': other.attestation,
            'mcp-session-id': sid,
          },
          call,
        )
      ).status,
    ).toBe(403);
    expect((await post({ ...auth, 'mcp-session-id': 'no-such-session' }, list)).status).toBe(404);
    // A request without a session that is not an initialize: refused, nothing opened.
    expect((await post(auth, call)).status).toBe(400);
    const big = await post(
      { ...auth, 'mcp-session-id': sid },
      JSON.stringify({ ...initialize, pad: 'x'.repeat(10_000) }),
    );
    expect(big.status).toBe(413);
    const notJson = await post({ ...auth, 'mcp-session-id': sid }, '{"jsonrpc":');
    expect(notJson.status).toBe(400);
    expect((await fetch(new URL('/other', gateway.url!), { method: 'POST', headers: auth })).status).toBe(404);
    // The connection still works for its own workload.
    const read = (await client.callTool({
      name: 'read_file',
      arguments: { path: path.join(workspace, 'notes.txt') },
    })) as CallToolResult;
    expect(textOf(read)).toBe('hello\n');
    await transport.terminateSession();
    await client.close();
  });

  it('tool arguments that try to leave the workspace are refused or denied; nothing is written outside', async () => {
    const { client, transport } = await agent();
    const write = async (p: string) =>
      (await client.callTool({ name: 'write_file', arguments: { path: p, content: 'pwned' } })) as CallToolResult;
    const refusedBeforeProposal: [string, RegExp][] = [
      [`${workspace}/../${path.basename(outside)}/a.txt`, /argument path holds a \. or \.\. path segment/],
      [`${workspace}/./a.txt`, /argument path holds a \. or \.\. path segment/],
      [`${workspace}//a.txt`, /empty path segment/],
      [`${workspace}\\..\\a.txt`, /backslash/],
      ['C:\\Windows\\system32\\a.txt', /backslash/],
      [`${workspace}/a\u0000.txt`, /control character/],
      [`${workspace}/a\n.txt`, /control character/],
      [`${workspace}/a".txt`, /quote/],
      [`${workspace}/${'a'.repeat(300)}`, /longer than 256 characters/],
      ['', /must not be empty/],
    ];
    for (const [p, why] of refusedBeforeProposal) {
      const r = await write(p);
      expect(r.isError).toBe(true);
      expect(textOf(r)).toMatch(why);
      expect(textOf(r)).toMatch(/the call was not proposed/);
    }
    const deniedByPolicy = [
      path.join(outside, 'a.txt'),
      'a.txt',
      '~/a.txt',
      `/tmp/agent-workspace-${path.basename(outside)}`,
      '/etc/passwd',
    ];
    for (const p of deniedByPolicy) {
      const r = await write(p);
      expect(r.isError).toBe(true);
      expect(textOf(r)).toMatch(/^denied by the governor: .*\(policies: fs-write-outside-workspace-forbid\)/);
    }
    // Non-string and missing arguments are refused by name.
    for (const args of [{ path: 42, content: 'x' }, { content: 'x' }, { path: [workspace] }]) {
      const r = (await client.callTool({ name: 'write_file', arguments: args })) as CallToolResult;
      expect(r.isError).toBe(true);
      expect(textOf(r)).toMatch(/argument path (must be a string|is missing)/);
    }
    // Percent-encoding is not decoded by anyone: `%2e%2e` is a literal name inside the workspace.
    const encoded = await write(`${workspace}/%2e%2e/a.txt`);
    expect(textOf(encoded)).not.toMatch(/^denied/);
    // A tool that is not exposed, and one without a mapping rule.
    await expect(client.callTool({ name: 'no_such_tool', arguments: {} })).rejects.toThrow(/unknown tool/);
    expect(fs.readdirSync(outside)).toEqual([]);
    await transport.terminateSession();
    await client.close();
  });

  it('moving the protected folder itself out, or a folder in as it, escalates; nothing moves before approval', async () => {
    // Each in its own session: a session governs one step at a time, so a step awaiting approval holds
    // the session's next proposals until it is decided.
    const cases = [
      { source: path.join(workspace, 'protected'), destination: path.join(workspace, 'open') },
      { source: path.join(workspace, 'staging'), destination: path.join(workspace, 'x', 'protected') },
    ];
    fs.mkdirSync(path.join(workspace, 'staging'));
    for (const args of cases) {
      const { client, transport } = await agent();
      const r = (await client.callTool({ name: 'move_file', arguments: args })) as CallToolResult;
      expect(r.isError).toBe(true);
      expect(textOf(r)).toMatch(/^awaiting approval by data-steward/);
      const { sessionId } = (r._meta as { governor: { sessionId: string } }).governor;
      // Revoked (a close would wait for the pending approval): the escalated move never runs.
      await gm.gc.revoke(sessionId, { reason: 'test over', by: 'test' });
      expect(await gm.gc.result(sessionId)).toMatchObject({ status: 'Revoked' });
      await transport.terminateSession();
      await client.close();
    }
    expect(fs.existsSync(path.join(workspace, 'protected', 'config.txt'))).toBe(true);
    expect(fs.existsSync(path.join(workspace, 'open'))).toBe(false);
    expect(fs.existsSync(path.join(workspace, 'staging'))).toBe(true);
  });
});
