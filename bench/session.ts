import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { WorkflowHandle } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { Step } from '../contracts/chain';
import { parseGatewayConfig } from '../gateway/config';
import { startGateway } from '../gateway/run';
import { governorSessionPort } from '../gateway/session-port';
import { issueAttestation, issueCredential } from '../identity';
import { loadBundle } from '../policies/bundle';
import { GovernorClient } from '../sdk/client';
import { defaultPoliciesDir } from '../workers/worker';
import { projectRoot } from '../workers/temporal-cli';
import { credentials, WORKLOAD } from './chains';
import type { BenchCluster, WorkerChild } from './cluster';
import { nowMs, ratio, round, rounded, summarize, type Summary } from './stats';

/*
 * The `session` phase (issue 16 item 5): what an agent session and the MCP gateway cost per step, each
 * against its baseline measured in the same run, interleaved.
 *
 * 1. `proposeStep` (GovernorClient, a Temporal update on `governedSessionWorkflow`) of an allowed no-op
 *    step, against a Temporal update on a plain workflow (`plainUpdateWorkflow`, bench/baseline-workflows.ts)
 *    whose handler runs the baselines' no-op activity and returns its result. Both workflows run on the
 *    bench's governor worker; both are open before the timed updates.
 * 2. `tools/call` of `read_file` through `governor mcp` (startGateway in this process, Streamable HTTP, its
 *    own worker hosting the `mcp` executor) in front of the real @modelcontextprotocol/server-filesystem,
 *    against an MCP SDK Client calling the same tool of the same server program on the same directory
 *    directly over stdio.
 */

/** The upstream the gateway fronts: the real filesystem server from node_modules. */
const FS_SERVER = path.join(projectRoot(), 'node_modules', '.bin', 'mcp-server-filesystem');
/** The agent of the gateway part (policies/default/files.cedar permits any workload to read the workspace). */
const MCP_AGENT = 'agent:bench-mcp';
/** Proposals per session (and updates per plain workflow) before both are replaced, so histories stay alike. */
const STEPS_PER_SESSION = 50;

export interface SessionParams {
  /** Timed proposals (and plain updates). */
  proposals: number;
  /** Timed tool calls through the gateway (and direct calls). */
  toolCalls: number;
  warmup: number;
}

export interface SessionResults {
  proposeStep: {
    rounds: number;
    sessions: number;
    /** `GovernorClient.proposeStep` → `executed`, ms. */
    governed: { latencyMs: Summary };
    /** `executeUpdate('benchStep')` on `plainUpdateWorkflow`, ms. */
    plain: { latencyMs: Summary };
    p50Ratio: number;
    p99Ratio: number;
    target: string;
    /** Diagnostic: what each step costs in history, from the last session and plain workflow. */
    historyPerStep: { governed: HistoryShape; plain: HistoryShape };
  };
  gateway: {
    calls: number;
    tool: string;
    /** MCP SDK Client → gateway (Streamable HTTP) → proposeStep → `mcp` executor → upstream, ms. */
    viaGateway: { latencyMs: Summary };
    /** MCP SDK Client → upstream (stdio), ms. */
    direct: { latencyMs: Summary };
    /** viaGateway minus direct, at each percentile. */
    addedMs: { p50: number; p99: number };
    target: string;
    /** Diagnostic: what each tool call costs in the agent session's history. */
    historyPerCall: HistoryShape;
  };
  /** 1-minute load average at the start and at the end of the phase. */
  loadAverage: { start: number; end: number };
  note: string;
}

/** Events per accepted update in a workflow's current run, and the activities and local activities they hold. */
export interface HistoryShape {
  updates: number;
  events: number;
  activities: Record<string, number>;
  localActivities: number;
}

async function historyShape(client: BenchCluster['client'], workflowId: string): Promise<HistoryShape> {
  const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const updates = events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length;
  const per = (n: number): number => round(n / Math.max(updates, 1));
  const activities: Record<string, number> = {};
  let localActivities = 0;
  for (const e of events) {
    const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
    if (name) activities[name] = (activities[name] ?? 0) + 1;
    if (e.markerRecordedEventAttributes?.markerName === 'core_local_activity') localActivities++;
  }
  return {
    updates,
    events: per(events.length),
    activities: Object.fromEntries(Object.entries(activities).map(([k, v]) => [k, per(v)])),
    localActivities: per(localActivities),
  };
}

const load = (): number => Math.round(os.loadavg()[0]! * 100) / 100;

/** An allowed no-op step (`deploy` to `Environment::"staging"`, as in the other phases). */
function noopStep(id: string): Step {
  return {
    id,
    action: 'deploy',
    resource: { type: 'Environment', id: 'staging' },
    input: {},
    context: {},
    executor: { type: 'noop' },
  };
}

export async function benchSession(
  cluster: BenchCluster,
  worker: WorkerChild,
  p: SessionParams,
  progress: (m: string) => void,
): Promise<SessionResults> {
  const loadStart = load();
  const proposeStep = await proposals(cluster, worker, p, progress);
  const gateway = await toolCalls(cluster, worker, p, progress);
  return {
    proposeStep,
    gateway,
    loadAverage: { start: loadStart, end: load() },
    note:
      `proposeStep: sequential, interleaved with the plain update (order alternating); a fresh session and plain workflow every ${STEPS_PER_SESSION} steps, ` +
      "each one's first step untimed (it also claims the credential's jti). " +
      'Gateway: one MCP connection (one agent session) through the gateway, one direct stdio connection to a second instance of the same server on the same directory; calls alternate. ' +
      'The gateway, its worker and the load generator share this process; the governor worker is the bench worker.',
  };
}

async function proposals(
  cluster: BenchCluster,
  worker: WorkerChild,
  p: SessionParams,
  progress: (m: string) => void,
): Promise<SessionResults['proposeStep']> {
  const gc = new GovernorClient(cluster.client, worker.taskQueue);
  interface Pair {
    sessionId: string;
    credential: string;
    plain: WorkflowHandle;
    next: number;
  }
  const opened: Pair[] = [];
  const open = async (): Promise<Pair> => {
    const c = await credentials(cluster.home);
    const { sessionId } = await gc.openSession({ workload: WORKLOAD, summary: 'bench: session phase', ...c });
    const plainId = `bench-update-${randomUUID()}`;
    const plain = await cluster.client.workflow.start('plainUpdateWorkflow', {
      taskQueue: worker.taskQueue,
      workflowId: plainId,
      args: [{ chainId: plainId }],
    });
    const pair: Pair = { sessionId, credential: c.credential, plain, next: 1 };
    // Untimed first step of each: the session's claims the credential's jti.
    await governed(pair);
    await plainStep(pair);
    pair.next++;
    opened.push(pair);
    return pair;
  };
  const governed = async (pair: Pair): Promise<number> => {
    const t0 = nowMs();
    const outcome = await gc.proposeStep(pair.sessionId, {
      step: noopStep(`p${pair.next}`),
      credential: pair.credential,
    });
    const ms = nowMs() - t0;
    if (outcome.outcome !== 'executed')
      throw new Error(`session: proposal p${pair.next} ended ${outcome.outcome}, not executed`);
    return ms;
  };
  const plainStep = async (pair: Pair): Promise<number> => {
    const t0 = nowMs();
    const result = await pair.plain.executeUpdate<{ idempotencyKey?: string }, [{ stepId: string }]>('benchStep', {
      args: [{ stepId: `p${pair.next}` }],
    });
    const ms = nowMs() - t0;
    if (result?.idempotencyKey !== `${pair.plain.workflowId}/p${pair.next}`)
      throw new Error(`session: the plain update returned ${JSON.stringify(result)}`);
    return ms;
  };

  const g: number[] = [];
  const b: number[] = [];
  let historyPerStep: SessionResults['proposeStep']['historyPerStep'] | undefined;
  try {
    let pair = await open();
    progress(`session: warm-up ${p.warmup} proposals and plain updates`);
    for (let i = 0; i < p.warmup; i++) {
      await governed(pair);
      await plainStep(pair);
      pair.next++;
    }
    progress(`session: ${p.proposals} proposeStep round trips and ${p.proposals} plain updates, interleaved`);
    for (let i = 0; i < p.proposals; i++) {
      if (pair.next > STEPS_PER_SESSION) pair = await open();
      if (i % 2 === 0) {
        g.push(await governed(pair));
        b.push(await plainStep(pair));
      } else {
        b.push(await plainStep(pair));
        g.push(await governed(pair));
      }
      pair.next++;
    }
    historyPerStep = {
      governed: await historyShape(cluster.client, pair.sessionId),
      plain: await historyShape(cluster.client, pair.plain.workflowId),
    };
  } finally {
    for (const pair of opened) {
      await gc.closeSession(pair.sessionId, { reason: 'bench done' }).catch(() => undefined);
      await pair.plain.signal('benchRelease').catch(() => undefined);
    }
  }
  const gs = summarize(g);
  const bs = summarize(b);
  return {
    rounds: p.proposals,
    sessions: opened.length,
    governed: { latencyMs: rounded(gs) },
    plain: { latencyMs: rounded(bs) },
    p50Ratio: ratio(gs.p50, bs.p50),
    p99Ratio: ratio(gs.p99, bs.p99),
    target: '≤ 1.5× at p50',
    historyPerStep,
  };
}

async function toolCalls(
  cluster: BenchCluster,
  worker: WorkerChild,
  p: SessionParams,
  progress: (m: string) => void,
): Promise<SessionResults['gateway']> {
  if (!fs.existsSync(FS_SERVER))
    throw new Error(`${FS_SERVER} is missing (dev dependency @modelcontextprotocol/server-filesystem)`);
  // files.cedar's workspace: /tmp/agent-workspace-*/ (a read elsewhere would be denied and fail the phase).
  const workspace = fs.realpathSync(fs.mkdtempSync('/tmp/agent-workspace-'));
  const file = path.join(workspace, 'notes.txt');
  const content = 'meeting at noon\n'.repeat(64); // 1 KiB
  fs.writeFileSync(file, content);
  const args = { path: file };
  const check = (how: string, r: CallToolResult): void => {
    const text = (r.content[0] as { text?: string } | undefined)?.text;
    if (r.isError || text !== content)
      throw new Error(
        `session: read_file ${how} returned ${r.isError ? 'an error' : 'other content'}: ${String(text).slice(0, 200)}`,
      );
  };

  const connection = await NativeConnection.connect({ address: cluster.server.address });
  let gateway: Awaited<ReturnType<typeof startGateway>> | undefined;
  let agent: McpClient | undefined;
  let agentTransport: StreamableHTTPClientTransport | undefined;
  let direct: McpClient | undefined;
  try {
    progress('session: starting the MCP gateway (Streamable HTTP) in front of mcp-server-filesystem');
    gateway = await startGateway({
      config: parseGatewayConfig({
        upstreams: { fs: { command: FS_SERVER, args: [workspace] } },
        taskQueue: `bench-mcp-${randomUUID()}`,
      }),
      bundle: loadBundle(defaultPoliciesDir()),
      home: cluster.home,
      port: governorSessionPort(new GovernorClient(cluster.client, worker.taskQueue)),
      connection,
      namespace: 'default',
      http: { port: 0 },
    });
    const credential = await issueCredential({ home: cluster.home, sub: MCP_AGENT, ttlSeconds: 3600 });
    const attestation = await issueAttestation({ home: cluster.home, sub: MCP_AGENT });
    agentTransport = new StreamableHTTPClientTransport(new URL(gateway.url!), {
      requestInit: { headers: { authorization: `Bearer ${credential}`, 'x-governor-attestation': attestation } },
    });
    agent = new McpClient({ name: 'bench-agent', version: '1.0.0' });
    await agent.connect(agentTransport);

    const directTransport = new StdioClientTransport({ command: FS_SERVER, args: [workspace], stderr: 'pipe' });
    // Whatever the server prints goes to stderr, never to stdout (`--json`).
    directTransport.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
    direct = new McpClient({ name: 'bench-direct', version: '1.0.0' });
    await direct.connect(directTransport);

    let sessionId: string | undefined;
    const viaGateway = async (): Promise<number> => {
      const t0 = nowMs();
      const r = (await agent!.callTool({ name: 'read_file', arguments: args })) as CallToolResult;
      const ms = nowMs() - t0;
      check('through the gateway', r);
      sessionId ??= (r._meta as { governor?: { sessionId?: string } } | undefined)?.governor?.sessionId;
      return ms;
    };
    const directly = async (): Promise<number> => {
      const t0 = nowMs();
      const r = (await direct!.callTool({ name: 'read_file', arguments: args })) as CallToolResult;
      const ms = nowMs() - t0;
      check('directly', r);
      return ms;
    };

    // The first call through the gateway opens the agent's session (and claims the credential's jti).
    progress(`session: warm-up ${p.warmup + 1} tool calls each way`);
    for (let i = 0; i <= p.warmup; i++) {
      await viaGateway();
      await directly();
    }
    progress(`session: ${p.toolCalls} read_file calls through the gateway and ${p.toolCalls} direct, interleaved`);
    const g: number[] = [];
    const d: number[] = [];
    for (let i = 0; i < p.toolCalls; i++) {
      if (i % 2 === 0) {
        g.push(await viaGateway());
        d.push(await directly());
      } else {
        d.push(await directly());
        g.push(await viaGateway());
      }
    }
    const gs = summarize(g);
    const ds = summarize(d);
    return {
      calls: p.toolCalls,
      tool: 'read_file of a 1 KiB file in /tmp/agent-workspace-*/ (allowed by fs-read-workspace-permit)',
      viaGateway: { latencyMs: rounded(gs) },
      direct: { latencyMs: rounded(ds) },
      addedMs: { p50: round(gs.p50 - ds.p50), p99: round(gs.p99 - ds.p99) },
      target: '≤ 15 ms added at p50',
      historyPerCall: sessionId
        ? await historyShape(cluster.client, sessionId)
        : { updates: 0, events: NaN, activities: {}, localActivities: NaN },
    };
  } finally {
    await agentTransport?.terminateSession().catch(() => undefined);
    await agent?.close().catch(() => undefined);
    await direct?.close().catch(() => undefined);
    await gateway?.close('bench done').catch(() => undefined);
    await connection.close().catch(() => undefined);
    fs.rmSync(workspace, { recursive: true, force: true });
  }
}
