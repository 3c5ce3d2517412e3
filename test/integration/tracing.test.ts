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
import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import { eventually } from '../harness/eventually';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/*
 * Traces (DESIGN §12, issue 19) with the OTel SDK's in-memory exporter: a client with Temporal's
 * OpenTelemetry interceptor starts a chain; the governor worker (workflow interceptors bundled, the
 * workflow span sink, activity interceptors) and the example service worker (activity interceptors)
 * continue its trace. The span tree is one trace from the client's StartWorkflow down to the service's
 * activity, with the governor's decision/step/vote spans carrying workload, action, resource, effect,
 * determining policies and bundle digest, and no token or input value in any attribute.
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

  it('one trace from the client through the workflow to the service activity; no token or input in any attribute', async () => {
    const { code } = await bundleWorkflowCode({
      payloadConverterPath: PAYLOAD_CONVERTER_PATH,
      workflowsPath: require.resolve('../../workflows'),
      workflowInterceptorModules: [TRACING_WORKFLOW_INTERCEPTORS],
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
    });
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
});
