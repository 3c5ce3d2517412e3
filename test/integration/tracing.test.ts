import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Client, Connection } from '@temporalio/client';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { createServiceActivities } from '../../examples/service/activities';
import { Ledger } from '../../examples/service/ledger';
import { issueApproval, issueAttestation, issueCredential } from '../../identity';
import {
  startTracing,
  tracingActivityInterceptors,
  tracingClientInterceptors,
  TRACING_WORKFLOW_INTERCEPTORS,
  type Tracing,
} from '../../runtime/tracing';
import { GovernorClient } from '../../sdk/client';
import { parseGatewayConfig } from '../../gateway/config';
import { startGateway } from '../../gateway/run';
import { governorSessionPort } from '../../gateway/session-port';
import { loadBundle } from '../../policies/bundle';
import { defaultPoliciesDir, PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import { eventually } from '../harness/eventually';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/*
 * Traces (DESIGN §12, issue 19) with the OTel SDK's in-memory exporter: a client with Temporal's
 * OpenTelemetry interceptor starts a chain; the governor worker (workflow interceptors bundled, the
 * workflow span sink, activity interceptors) and the example service worker (activity interceptors)
 * continue its trace. The span tree is one trace from the client's StartWorkflow down to the service's
 * activity, with the governor's decision/step/vote spans carrying workload, action, resource, effect,
 * determining policies and bundle digest, and no token or input value in any attribute. Also: a
 * tools/call through the real MCP gateway (real filesystem server upstream) is one trace from the
 * gateway's span down to its step's decision and the executor's activity; and `governor run` with OTEL_*
 * set exports the StartWorkflow span that parents the chain's run.
 */

const WORKLOAD = 'agent:release-bot';
const SECRET_INPUT = 'input-value-that-must-not-leak-7f3a';

describe('OpenTelemetry traces of a governed chain', () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;

  beforeAll(() => {
    tracing = startTracing({ processor: new SimpleSpanProcessor(exporter), serviceName: 'governor-test' });
  });
  afterAll(async () => {
    await tracing.shutdown();
  });

  let bundled: Promise<string> | undefined;
  const tracedBundle = (): Promise<string> =>
    (bundled ??= bundleWorkflowCode({
      payloadConverterPath: PAYLOAD_CONVERTER_PATH,
      workflowsPath: require.resolve('../../workflows'),
      workflowInterceptorModules: [TRACING_WORKFLOW_INTERCEPTORS],
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
    }).then((b) => b.code));

  it('one trace from the client through the workflow to the service activity; no token or input in any attribute', async () => {
    const code = await tracedBundle();
    const home = await makeHome();
    const taskQueue = uniqueQueue('traced');
    const serviceQueue = uniqueQueue('traced-service');
    const governor = await startGovernorWorker({
      home,
      taskQueue,
      workflowBundle: { code },
      maxCachedWorkflows: 100,
      tracing: tracing.worker,
    });
    const serviceConnection = await NativeConnection.connect({ address: testAddress() });
    const service = await Worker.create({
      connection: serviceConnection,
      taskQueue: serviceQueue,
      activities: createServiceActivities(new Ledger()),
      interceptors: { activity: tracingActivityInterceptors() },
    });
    const serviceRun = service.run();
    const connection = await Connection.connect({ address: testAddress() });
    try {
      const client = new Client({ connection, interceptors: tracingClientInterceptors() });
      const gc = new GovernorClient(client, taskQueue);
      const creds = async () => ({
        credential: await issueCredential({ home, sub: WORKLOAD }),
        attestation: await issueAttestation({ home, sub: WORKLOAD }),
      });
      const tokens: string[] = [];
      const c1 = await creds();
      tokens.push(c1.credential, c1.attestation);
      const chain = {
        workload: WORKLOAD,
        owner: 'team-release',
        steps: [
          {
            id: 'deploy',
            action: 'deploy',
            resource: { type: 'Environment', id: 'staging' },
            input: { service: 'web', note: SECRET_INPUT },
            executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
          },
          {
            id: 'announce',
            action: 'notify',
            resource: { type: 'Channel', id: 'releases' },
            input: { text: SECRET_INPUT },
            executor: { type: 'noop' },
          },
        ],
      };
      const handle = await gc.start(chain, c1);
      expect(await handle.result()).toMatchObject({ status: 'Completed' });

      // An escalated chain and one approval vote (from the owner: rejected, separation of duties).
      const c2 = await creds();
      tokens.push(c2.credential, c2.attestation);
      const prod = await gc.start(
        { ...chain, steps: [{ ...chain.steps[0]!, resource: { type: 'Environment', id: 'prod' } }] },
        c2,
      );
      const state = await eventually('the prod chain to wait for approval', async () => {
        const s = await gc.status(prod.workflowId).catch(() => undefined);
        return s?.status === 'AwaitingApproval' ? s : undefined;
      });
      const vote = await issueApproval({
        home,
        sub: 'team-release',
        roles: ['sre-lead'],
        chainId: prod.workflowId,
        stepId: 'deploy',
        stepDigest: state.steps[0]!.approval!.stepDigest,
        decision: 'approve',
      });
      tokens.push(vote);
      const submitted = await gc.submitApproval(prod.workflowId, vote);
      expect(submitted.verdict).toMatchObject({ counted: false });
      await client.workflow.getHandle(prod.workflowId).terminate('test over');

      const spans = await eventually('the service activity span and the vote span', () => {
        const all = exporter.getFinishedSpans();
        return all.some((s) => s.name === 'RunActivity:perform') && all.some((s) => s.name === 'governor.approval_vote')
          ? all
          : undefined;
      });
      const attr = (s: ReadableSpan, k: string) => s.attributes[k];
      const inTrace = (traceId: string) => spans.filter((s) => s.spanContext().traceId === traceId);

      // The first chain: one trace, rooted at the client's StartWorkflow span.
      const start = spans.find(
        (s) =>
          s.name === 'StartWorkflow:governedChainWorkflow' &&
          s.parentSpanId === undefined &&
          inTrace(s.spanContext().traceId).some((x) => attr(x, 'governor.chain_id') === handle.workflowId),
      );
      expect(start).toBeDefined();
      const trace1 = inTrace(start!.spanContext().traceId);
      const names = new Set(trace1.map((s) => s.name));
      expect(names).toContain('RunWorkflow:governedChainWorkflow');
      expect(names).toContain('RunActivity:perform'); // the service's activity, on another worker
      expect(names).toContain('governor.decision');
      // Every span of the trace hangs off another span of it (one tree).
      const ids = new Set(trace1.map((s) => s.spanContext().spanId));
      for (const s of trace1) if (s !== start) expect(ids.has(s.parentSpanId!)).toBe(true);
      const decisions = trace1.filter((s) => s.name === 'governor.decision');
      expect(decisions.map((s) => attr(s, 'governor.step_id')).sort()).toEqual(['announce', 'deploy']);
      for (const d of decisions) {
        expect(attr(d, 'governor.effect')).toBe('allow');
        expect(attr(d, 'governor.workload')).toBe(WORKLOAD);
        expect(attr(d, 'governor.chain_id')).toBe(handle.workflowId);
        expect(typeof attr(d, 'governor.bundle_digest')).toBe('string');
        expect((attr(d, 'governor.determining_policies') as string[]).length).toBeGreaterThan(0);
      }
      expect(decisions.find((d) => attr(d, 'governor.step_id') === 'deploy')!.attributes['governor.resource']).toBe(
        'Environment::staging',
      );
      // The noop step ran inside governStep: its step span holds its decision and its execution.
      const step = trace1.find((s) => s.name === 'governor.step' && attr(s, 'governor.step_id') === 'announce');
      expect(step).toBeDefined();
      const execution = trace1.find(
        (s) => s.name === 'governor.execution' && attr(s, 'governor.step_id') === 'announce',
      );
      expect(execution?.parentSpanId).toBe(step!.spanContext().spanId);

      // The escalated chain: its decision says escalate; the vote span says rejected, by category.
      const escalate = spans.find(
        (s) => s.name === 'governor.decision' && attr(s, 'governor.chain_id') === prod.workflowId,
      );
      expect(attr(escalate!, 'governor.effect')).toBe('escalate');
      const voteSpan = spans.find((s) => s.name === 'governor.approval_vote')!;
      expect(voteSpan.attributes).toMatchObject({
        'governor.vote_counted': false,
        'governor.vote_rejected': 'separation_of_duties',
      });

      // No token or input value in any attribute of any span (the SDK's own included).
      const values = JSON.stringify(spans.map((s) => s.attributes));
      for (const t of tokens) expect(values).not.toContain(t);
      expect(values).not.toMatch(/eyJ[\w-]+\.eyJ/);
      expect(values).not.toContain(SECRET_INPUT);
    } finally {
      service.shutdown();
      await serviceRun;
      await serviceConnection.close();
      await governor.stop();
      await connection.close();
    }
  }, 240_000);
  it('a tools/call through the MCP gateway (real filesystem server) is one trace down to its step; no token, argument or file content in any attribute', async () => {
    const code = await tracedBundle();
    const home = await makeHome();
    const taskQueue = uniqueQueue('traced-mcp');
    const gatewayQueue = uniqueQueue('traced-mcp-gateway');
    const governor = await startGovernorWorker({
      home,
      taskQueue,
      workflowBundle: { code },
      maxCachedWorkflows: 100,
      tracing: tracing.worker,
    });
    // files.cedar's workspace: /tmp/agent-workspace-*/.
    const workspace = fs.realpathSync(fs.mkdtempSync('/tmp/agent-workspace-'));
    const FILE_CONTENT = 'file-content-that-must-not-leak-91c2';
    const file = path.join(workspace, 'notes.txt');
    fs.writeFileSync(file, `${FILE_CONTENT}\n`);
    const connection = await Connection.connect({ address: testAddress() });
    const gatewayConnection = await NativeConnection.connect({ address: testAddress() });
    const client = new Client({ connection, interceptors: tracingClientInterceptors() });
    const gateway = await startGateway({
      config: parseGatewayConfig({
        upstreams: {
          fs: { command: path.resolve(__dirname, '../../node_modules/.bin/mcp-server-filesystem'), args: [workspace] },
        },
        taskQueue: gatewayQueue,
      }),
      bundle: loadBundle(defaultPoliciesDir()),
      home,
      port: governorSessionPort(new GovernorClient(client, taskQueue)),
      connection: gatewayConnection,
      namespace: 'default',
      http: { port: 0 },
      tracing: true,
    });
    const agent = new McpClient({ name: 'traced-agent', version: '1.0.0' });
    try {
      const workload = 'agent:coder';
      const credential = await issueCredential({ home, sub: workload });
      const attestation = await issueAttestation({ home, sub: workload });
      const transport = new StreamableHTTPClientTransport(new URL(gateway.url!), {
        requestInit: { headers: { authorization: `Bearer ${credential}`, 'x-governor-attestation': attestation } },
      });
      await agent.connect(transport);
      const read = (await agent.callTool({ name: 'read_file', arguments: { path: file } })) as CallToolResult;
      expect(read.isError).toBeFalsy();
      expect((read.content[0] as { text: string }).text).toContain(FILE_CONTENT);
      const { sessionId, stepId } = (read._meta as { governor: { sessionId: string; stepId: string } }).governor;

      const attr = (s: ReadableSpan, k: string) => s.attributes[k];
      const spans = await eventually('the tool call span and the mcpToolCall activity span', () => {
        const all = exporter.getFinishedSpans();
        const call = all.find((s) => s.name === 'governor.tool_call' && attr(s, 'governor.session_id') === sessionId);
        return call &&
          all.some(
            (s) => s.name === 'RunActivity:mcpToolCall' && s.spanContext().traceId === call.spanContext().traceId,
          )
          ? all
          : undefined;
      });
      const call = spans.find((s) => s.name === 'governor.tool_call' && attr(s, 'governor.session_id') === sessionId)!;
      // The gateway's span is the root of the trace (the agent sent no trace context).
      expect(call.parentSpanId).toBeUndefined();
      expect(call.attributes).toMatchObject({
        'mcp.tool': 'read_file',
        'governor.step_id': stepId,
        'governor.action': 'fs.read',
        'governor.outcome': 'executed',
      });
      const inTrace = spans.filter((s) => s.spanContext().traceId === call.spanContext().traceId);
      const names = inTrace.map((s) => s.name);
      // The proposal's update, then the step's decision and the executor's activity on the gateway worker.
      expect(names).toContain('StartWorkflowUpdate:proposeStep');
      expect(names).toContain('HandleUpdate:proposeStep');
      expect(names).toContain('RunActivity:mcpToolCall');
      const decision = inTrace.find((s) => s.name === 'governor.decision' && attr(s, 'governor.step_id') === stepId);
      expect(decision).toBeDefined();
      expect(decision!.attributes).toMatchObject({
        'governor.chain_id': sessionId,
        'governor.workload': workload,
        'governor.action': 'fs.read',
        'governor.effect': 'allow',
      });
      expect(typeof attr(decision!, 'governor.bundle_digest')).toBe('string');
      // One tree: every span of the trace hangs off another span of it.
      const ids = new Set(inTrace.map((s) => s.spanContext().spanId));
      for (const s of inTrace) if (s !== call) expect(ids.has(s.parentSpanId!)).toBe(true);

      // No token, argument value or file content in any attribute of any span.
      const values = JSON.stringify(spans.map((s) => s.attributes));
      expect(values).not.toContain(credential);
      expect(values).not.toContain(attestation);
      expect(values).not.toMatch(/eyJ[\w-]+\.eyJ/);
      expect(values).not.toContain(FILE_CONTENT);
    } finally {
      await agent.close().catch(() => undefined);
      await gateway.close('test over');
      await gatewayConnection.close();
      await governor.stop();
      await connection.close();
      fs.rmSync(workspace, { recursive: true, force: true });
    }
  }, 240_000);
  it('`governor run` with OTEL_* set starts the trace: its StartWorkflow span (sent over OTLP/HTTP) is the parent of the chain run', async () => {
    const code = await tracedBundle();
    const home = await makeHome();
    const taskQueue = uniqueQueue('traced-cli');
    const governor = await startGovernorWorker({
      home,
      taskQueue,
      workflowBundle: { code },
      maxCachedWorkflows: 100,
      tracing: tracing.worker,
    });
    // A collector: records the OTLP/HTTP (JSON) bodies the CLI posts.
    const bodies: string[] = [];
    const collector = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    try {
      const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`;
      const root = path.resolve(__dirname, '../..');
      const child = spawn(
        process.execPath,
        [
          path.join(root, 'bin/governor.js'),
          'run',
          path.join(root, 'examples/chains/deploy-staging.yaml'),
          '--as',
          'agent:release-bot',
          '--wait',
          '--json',
        ],
        {
          env: {
            ...process.env,
            GOVERNOR_HOME: home,
            TEMPORAL_ADDRESS: testAddress(),
            GOVERNOR_TASK_QUEUE: taskQueue,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: endpoint,
          },
        },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exit = await new Promise<number | null>((r) => child.on('close', r));
      expect({ exit, out: exit === 0 ? '' : out }).toEqual({ exit: 0, out: '' });
      const { chainId } = JSON.parse(out.trim().split('\n').pop()!) as { chainId: string };

      // The chain's run on the worker, and its trace.
      const attr = (s: ReadableSpan, k: string) => s.attributes[k];
      const decision = await eventually('the chain decision span', () =>
        exporter
          .getFinishedSpans()
          .find((s) => s.name === 'governor.decision' && attr(s, 'governor.chain_id') === chainId),
      );
      const traceId = decision.spanContext().traceId;
      const run = exporter
        .getFinishedSpans()
        .find((s) => s.name === 'RunWorkflow:governedChainWorkflow' && s.spanContext().traceId === traceId);
      expect(run).toBeDefined();
      // The CLI exported its StartWorkflow span before exiting: same trace, and the run's parent.
      interface OtlpSpan {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        attributes?: unknown[];
      }
      const exported: OtlpSpan[] = bodies.flatMap((b) =>
        (JSON.parse(b) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }).resourceSpans.flatMap((r) =>
          r.scopeSpans.flatMap((sc) => sc.spans),
        ),
      );
      const start = exported.find((s) => s.name === 'StartWorkflow:governedChainWorkflow');
      expect(start).toBeDefined();
      expect(start!.traceId).toBe(traceId);
      expect(run!.parentSpanId).toBe(start!.spanId);
      expect(bodies.join('')).not.toMatch(/eyJ[\w-]+\.eyJ/); // no token in what the CLI exported
    } finally {
      collector.close();
      await governor.stop();
    }
  }, 240_000);
});
