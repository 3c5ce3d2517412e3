import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import {
  bundleWorkflowCode,
  type ActivityExecuteInput,
  type ActivityInboundCallsInterceptor,
  type ActivityInterceptorsFactory,
  type Next,
} from '@temporalio/worker';
import { issueApproval } from '../../identity';
import type { GovernedChainInput } from '../../contracts/chain';
import type { ServiceActivityInput } from '../../contracts/executor';
import { GovernorStatusKey, GovernorWorkloadKey } from '../../contracts/search-attributes';
import type { ChainResult, ChainState } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';
import { runVerifyCli } from '../harness/verify-cli';

/*
 * The workflow is the trust boundary (issue #13): inputs are started here with a raw client, exactly
 * as another SDK would, never through GovernorClient (which validates and defaults them first).
 */

// Activities the tests break on purpose, by activity type and a predicate on the input.
const faults: { type: string; when: (input: Record<string, unknown>) => boolean }[] = [];
const faulty: ActivityInterceptorsFactory = (ctx) => ({
  inbound: new (class implements ActivityInboundCallsInterceptor {
    async execute(
      input: ActivityExecuteInput,
      next: Next<ActivityInboundCallsInterceptor, 'execute'>,
    ): Promise<unknown> {
      const arg = (input.args[0] ?? {}) as Record<string, unknown>;
      if (faults.some((f) => f.type === ctx.info.activityType && f.when(arg))) {
        throw ApplicationFailure.nonRetryable(`injected ${ctx.info.activityType} failure`, 'TEST_FAULT');
      }
      return next(input);
    }
  })(),
});

// Staging deploys are coordinated (one domain, short batching window); the default bundle otherwise.
const bundleDir = defaultBundleWith((m) => {
  m.coordination = {
    domains: [
      {
        name: 'cluster:staging',
        resources: ['Environment::"staging"'],
        conflicts: [['deploy', 'deploy']],
        onConflict: 'reject',
        batchingWindow: '200ms',
        tieBreakerRole: 'sre-lead',
        decisionDeadline: '30s',
      },
    ],
    authority: { workloads: { [WORKLOAD]: 10 }, default: 0 },
  };
});

const gate: { open: () => void; opened: Promise<void> } = (() => {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
})();

let g: Governed;
let client: Client;
// A second worker whose bundle also holds a hostile workflow that continues as new into the chain.
let forgeQueue: string;
let forgeWorker: Awaited<ReturnType<typeof startGovernorWorker>>;

beforeAll(async () => {
  g = await setupGoverned({
    policiesDir: bundleDir,
    extraActivities: () => ({
      // Holds its coordination slot until the test opens the gate.
      async hold(input: ServiceActivityInput) {
        await gate.opened;
        return { held: input.idempotencyKey };
      },
    }),
  });
  client = g.client;
  // The fault injector sits on a worker of its own, so other tests' workers are untouched.
  forgeQueue = uniqueQueue('forge');
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../harness/forge-workflows'),
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
  forgeWorker = await startGovernorWorker({
    home: g.home,
    taskQueue: forgeQueue,
    policiesDir: bundleDir,
    workflowBundle: { code },
    maxCachedWorkflows: 100,
    activityInterceptors: [faulty],
  });
}, 120_000);
afterAll(async () => {
  await forgeWorker?.stop();
  await g?.stop();
});
afterEach(() => {
  faults.length = 0;
});

const noop = { type: 'noop' };
const staging = (id = 'deploy') => ({
  id,
  action: 'deploy',
  resource: { type: 'Environment', id: 'staging' },
  executor: noop,
});

/** Starts `governedChainWorkflow` with `input` as-is (no client-side validation or defaults). */
async function startRaw(input: unknown, options: { id?: string; taskQueue?: string; workflowType?: string } = {}) {
  const id =
    options.id ??
    (typeof (input as { chainId?: unknown })?.chainId === 'string'
      ? (input as { chainId: string }).chainId
      : `raw-${randomUUID()}`);
  return client.workflow.start(options.workflowType ?? 'governedChainWorkflow', {
    workflowId: id,
    taskQueue: options.taskQueue ?? g.taskQueue,
    args: [input],
  });
}

/** The failure a rejected run ends with (type and message), its status query and search attribute. */
/** Starts a chain with a payload of the caller's own bytes, as any SDK (or a hostile client) can send it. */
async function startPayload(id: string, encoding: string, data: string) {
  await client.workflowService.startWorkflowExecution({
    namespace: 'default',
    workflowId: id,
    workflowType: { name: 'governedChainWorkflow' },
    taskQueue: { name: g.taskQueue },
    input: { payloads: [{ metadata: { encoding: Buffer.from(encoding) }, data: Buffer.from(data) }] },
    requestId: randomUUID(),
  });
  return client.workflow.getHandle(id) as Awaited<ReturnType<typeof startRaw>>;
}

async function rejection(handle: Awaited<ReturnType<typeof startRaw>>) {
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
  const described = await handle.describe();
  const state = await handle.query<ChainState>('status');
  const history = await handle.fetchHistory();
  const activities = (history.events ?? []).filter(
    (e) =>
      e.activityTaskScheduledEventAttributes || e.markerRecordedEventAttributes?.markerName === 'core_local_activity',
  );
  return {
    type: cause.type,
    message: cause.message,
    nonRetryable: cause.nonRetryable,
    status: described.typedSearchAttributes.get(GovernorStatusKey),
    state,
    activities: activities.length,
    taskFailures: (history.events ?? []).filter((e) => e.workflowTaskFailedEventAttributes).length,
  };
}

/** `governor verify` passes for the chain (the failing checks are shown when it does not). */
async function expectVerified(chainId: string): Promise<void> {
  const verified = await runVerifyCli([chainId], { home: g.home, env: { TEMPORAL_ADDRESS: testAddress() } });
  const failing = ((verified.json.checks ?? []) as { name: string; ok: boolean; problems?: string[] }[]).filter(
    (c) => !c.ok,
  );
  expect({ code: verified.code, failing, error: verified.error ? String(verified.error) : undefined }).toEqual({
    code: 0,
    failing: [],
    error: undefined,
  });
}

async function validInput(chain: Record<string, unknown>, id = `chain-${randomUUID()}`): Promise<GovernedChainInput> {
  return { chainId: id, chain: chain as GovernedChainInput['chain'], ...(await g.creds()) };
}

describe('the workflow validates its own input (started as another SDK would)', () => {
  const cases: [string, (base: Record<string, unknown>) => unknown, string][] = [
    ['missing chain', (b) => ({ ...b, chain: undefined }), 'chain:'],
    [
      'a step without resource',
      (b) => ({ ...b, chain: { workload: WORKLOAD, steps: [{ id: 'a', action: 'deploy', executor: noop }] } }),
      'chain.steps[0].resource:',
    ],
    ['steps as a string', (b) => ({ ...b, chain: { workload: WORKLOAD, steps: 'deploy' } }), 'chain.steps:'],
    [
      'an unknown executor',
      (b) => ({ ...b, chain: { workload: WORKLOAD, steps: [{ ...staging(), executor: { type: 'ssh' } }] } }),
      'chain.steps[0].executor',
    ],
    [
      'duplicate step ids',
      (b) => ({ ...b, chain: { workload: WORKLOAD, steps: [staging('a'), staging('a')] } }),
      'chain.steps[1].id: duplicate step id',
    ],
    [
      'a numeric step id',
      (b) => ({ ...b, chain: { workload: WORKLOAD, steps: [{ ...staging(), id: 7 }] } }),
      'chain.steps[0].id:',
    ],
    ['an unknown field', (b) => ({ ...b, extra: true }), '(root): Unrecognized key'],
    [
      'timeoutMs as a duration string',
      (b) => ({
        ...b,
        chain: {
          workload: WORKLOAD,
          steps: [{ ...staging(), executor: { type: 'http', url: 'https://example.com/x', timeoutMs: '10s' } }],
        },
      }),
      'chain.steps[0].executor.timeoutMs:',
    ],
    [
      'an ftp url',
      (b) => ({
        ...b,
        chain: {
          workload: WORKLOAD,
          steps: [{ ...staging(), executor: { type: 'http', url: 'ftp://example.com/x' } }],
        },
      }),
      'chain.steps[0].executor.url:',
    ],
    [
      'a chainId that is not the workflow id',
      (b) => ({ ...b, chainId: 'someone-else' }),
      'chainId: is not this workflow',
    ],
  ];

  it.each(cases)(
    '%s: Rejected at once with GOVERNOR_INVALID_INPUT naming the field, nothing authorized',
    async (_name, mutate, field) => {
      const id = `bad-${randomUUID()}`;
      const base = await validInput({ workload: WORKLOAD, steps: [staging()] }, id);
      const handle = await startRaw(mutate(base as unknown as Record<string, unknown>), { id });
      const r = await rejection(handle);
      expect(r).toMatchObject({
        type: 'GOVERNOR_INVALID_INPUT',
        nonRetryable: true,
        status: 'Rejected',
        activities: 0,
        taskFailures: 0,
      });
      expect(r.message).toContain(field);
      expect(r.state).toMatchObject({ status: 'Rejected' });
      expect(r.state.reason).toContain(field);
    },
  );

  it('20,000-deep nesting (sent as raw JSON, as any SDK can): Rejected naming the path, no stack overflow', async () => {
    const id = `deep-${randomUUID()}`;
    const base = await validInput({ workload: WORKLOAD, steps: [{ ...staging(), input: { deep: '@DEEP@' } }] }, id);
    // JSON.stringify itself cannot build it: the document is spliced together as text.
    const json = JSON.stringify(base).replace('"@DEEP@"', `${'{"d":'.repeat(20_000)}1${'}'.repeat(20_000)}`);
    const r = await rejection(await startPayload(id, 'json/plain', json));
    expect(r).toMatchObject({ type: 'GOVERNOR_INVALID_INPUT', status: 'Rejected', activities: 0, taskFailures: 0 });
    expect(r.message).toContain('chain.steps[0].input.deep.d.d');
    expect(r.message).toContain('nests deeper than 64 levels');
  });

  it('a megabyte of 1e400 nested in a step input (raw JSON; JavaScript reads it as Infinity): Rejected at the first, naming its path', async () => {
    const id = `nonfinite-${randomUUID()}`;
    const base = await validInput({ workload: WORKLOAD, steps: [{ ...staging(), input: { v: '@MANY@' } }] }, id);
    // 2,900 copies of 1e400 under 57 levels each: zod's JSON union alone refuses each at every level it nests
    // (seconds of one workflow task); the walk before zod stops at the first, with its full path.
    const one = `${'{"a":'.repeat(57)}1e400${'}'.repeat(57)}`;
    const json = JSON.stringify(base).replace('"@MANY@"', `[${Array(2900).fill(one).join(',')}]`);
    expect(json.length).toBeGreaterThan(1_000_000);
    const r = await rejection(await startPayload(id, 'json/plain', json));
    expect(r).toMatchObject({ type: 'GOVERNOR_INVALID_INPUT', status: 'Rejected', activities: 0, taskFailures: 0 });
    // The path of the first copy in the field position (zod would name `chain.steps[0].input.v` and the place after it).
    expect(r.message).toMatch(
      /^[^;]*chain\.steps\[0\]\.input\.v\[0\]\.a\.a[^;]*: not a JSON value: it is a non-finite number/,
    );
    expect(r.message.split('; ')).toHaveLength(1);
  });

  it.each([
    ['JSON that does not parse (NaN)', 'json/plain', '{"chainId": NaN}', 'not valid JSON'],
    ['an unknown encoding', 'foo/bar', 'x', 'Unknown encoding: foo/bar'],
    ['a protobuf payload (another SDK)', 'json/protobuf', '{}', 'Unknown encoding: json/protobuf'],
  ])('a payload the worker cannot decode (%s) is Rejected, not retried forever', async (_name, encoding, data, why) => {
    const id = `undecodable-${randomUUID()}`;
    const r = await rejection(await startPayload(id, encoding, data));
    expect(r).toMatchObject({ type: 'GOVERNOR_INVALID_INPUT', status: 'Rejected', activities: 0, taskFailures: 0 });
    expect(r.message).toContain(`(root): the payload could not be decoded (${why})`);
    expect(r.message).not.toContain('NaN');
  });

  it('applies the schema defaults a Go service leaves out (context, input, timeoutMs, method) and sets GovernorWorkload itself', async () => {
    const chainId = `go-shaped-${randomUUID()}`;
    // No `input`, `context` or executor `timeoutMs`: exactly the shape of docs/other-sdks.md's Go example.
    const step = {
      id: 'deploy',
      action: 'deploy',
      resource: { type: 'Environment', id: 'dev' },
      executor: { type: 'activity', taskQueue: g.serviceQueue, activityType: 'perform' },
    };
    const handle = await startRaw(await validInput({ workload: WORKLOAD, steps: [step] }, chainId));
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(g.ledger.has(`${chainId}/deploy`)).toBe(true);
    expect((await handle.describe()).typedSearchAttributes.get(GovernorWorkloadKey)).toBe(WORKLOAD);
  });
});

describe('resume is honoured only from the governor’s own continue-as-new', () => {
  const prodDeploy = {
    workload: WORKLOAD,
    owner: 'team-release',
    steps: [
      { id: 'deploy', action: 'deploy', resource: { type: 'Environment', id: 'prod' }, executor: noop },
      { id: 'notify', action: 'notify', resource: { type: 'Channel', id: 'releases' }, executor: noop },
    ],
  };

  it('a first run carrying resume (the escalated step skipped, a bogus credential) is Rejected and runs nothing', async () => {
    const chainId = `resume-bypass-${randomUUID()}`;
    const handle = await startRaw({
      chainId,
      chain: prodDeploy,
      credential: 'not.a.credential',
      attestation: 'not.an.attestation',
      resume: { nextStep: 1, head: { seq: 0, hash: '0'.repeat(64) }, steps: [], completed: ['deploy'], runs: 2 },
    });
    const r = await rejection(handle);
    expect(r).toMatchObject({ type: 'GOVERNOR_INVALID_INPUT', status: 'Rejected', activities: 0 });
    expect(r.message).toContain('resume: set only by the governor');
  });

  it('a declared step with a compensation id (its key would dedupe the real compensation) is Rejected; the SDK refuses it', async () => {
    const steps = [
      { ...staging('a'), compensation: { action: 'rollback', resource: staging().resource, executor: noop } },
      staging('a.compensation'),
    ];
    const chainId = `reserved-id-${randomUUID()}`;
    const creds = await g.creds();
    const r = await rejection(await startRaw({ chainId, chain: { workload: WORKLOAD, steps }, ...creds }));
    expect(r).toMatchObject({ type: 'GOVERNOR_INVALID_INPUT', status: 'Rejected', activities: 0 });
    expect(r.message).toContain('chain.steps[1].id: must not end in ".compensation"');
    await expect(g.gc.start({ workload: WORKLOAD, steps }, creds)).rejects.toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      field: 'steps.1.id',
    });
  });

  it('a continued run with a forged or replayed checkpoint is Rejected; the governor’s own continue-as-new verifies', async () => {
    // A real chain that continues as new after each step: its second run carries a genuine checkpoint.
    const chainId = `can-${randomUUID()}`;
    const real = await startRaw(
      {
        ...(await validInput(
          {
            workload: WORKLOAD,
            steps: [staging('a'), { ...staging('b'), resource: { type: 'Environment', id: 'dev' } }],
          },
          chainId,
        )),
        options: { continueAsNewAfterSteps: 1 },
      },
      { taskQueue: forgeQueue },
    );
    expect(((await real.result()) as ChainResult).status).toBe('Completed');
    const history = await client.workflow.getHandle(chainId).fetchHistory();
    const carried = defaultPayloadConverter.fromPayload<GovernedChainInput>(
      history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!,
    );
    expect(carried.resume?.checkpoint?.kind).toBe('checkpoint');
    await expectVerified(chainId);

    const forge = async (id: string, resume: unknown) => {
      await startRaw(
        { ...carried, chainId: id, resume },
        { id, taskQueue: forgeQueue, workflowType: 'forgeResumeWorkflow' },
      );
      // The hostile run continued as new into governedChainWorkflow: follow the chain to its end.
      return rejection(client.workflow.getHandle(id) as Awaited<ReturnType<typeof startRaw>>);
    };
    // Same chain id re-used after the real chain closed, genuine checkpoint: bound to another first run.
    expect((await forge(chainId, carried.resume)).message).toContain(
      'resume.checkpoint: does not commit to this chain run',
    );
    // Another chain id with the genuine checkpoint.
    expect((await forge(`other-${randomUUID()}`, carried.resume)).message).toContain(
      'resume.checkpoint: belongs to another chain',
    );
    // No checkpoint at all, or a head that is not the signed one.
    const { checkpoint: _dropped, ...bare } = carried.resume!;
    expect((await forge(`bare-${randomUUID()}`, bare)).message).toContain('resume.checkpoint: missing');
    const forgedHead = await forge(chainId, {
      ...carried.resume,
      head: { seq: carried.resume!.head.seq, hash: 'f'.repeat(64) },
    });
    expect(forgedHead).toMatchObject({ type: 'GOVERNOR_INVALID_INPUT', status: 'Rejected' });
    expect(forgedHead.message).toContain('resume.head: does not match the signed checkpoint');
  }, 120_000);
});

describe('votes: truthful results and a verdict for every malformed vote', () => {
  const prod = () => ({
    workload: WORKLOAD,
    owner: 'team-release',
    steps: [{ id: 'deploy', action: 'deploy', resource: { type: 'Environment', id: 'prod' }, executor: noop }],
  });
  const vote = (chainId: string, digest: string, sub: string) =>
    issueApproval({
      home: g.home,
      sub,
      roles: ['sre-lead'],
      chainId,
      stepId: 'deploy',
      stepDigest: digest,
      decision: 'approve',
    });

  it('submitApproval reports approved after the vote that reached quorum; malformed signals leave rejected verdicts in status', async () => {
    const chainId = `votes-${randomUUID()}`;
    // A malformed vote before any step awaits approval: a stray verdict.
    const handle = await startRaw(await validInput(prod(), chainId));
    await handle.signal('approve', { token: 'nope' });
    const waiting = await g.waitFor(
      chainId,
      (s) =>
        s.status === 'AwaitingApproval' &&
        (s.strayVotes?.length ?? 0) + (s.steps[0]?.approval?.verdicts.length ?? 0) > 0,
    );
    const digest = waiting.steps[0]!.approval!.stepDigest;
    const early = [...(waiting.strayVotes ?? []), ...waiting.steps[0]!.approval!.verdicts];
    expect(early[0]).toMatchObject({ counted: false, via: 'approve-signal' });
    expect(early[0]!.reason).toContain('malformed vote: token:');

    // Malformed by signal while the step waits: a rejected verdict on the approval.
    await handle.signal('deny', { tokn: 'x' });
    const after = await g.waitFor(chainId, (s) => s.steps[0]!.approval!.verdicts.some((v) => v.via === 'deny-signal'));
    expect(after.steps[0]!.approval!.verdicts.find((v) => v.via === 'deny-signal')).toMatchObject({ counted: false });
    expect(after.steps[0]!.approval!.verdicts.find((v) => v.via === 'deny-signal')!.reason).toContain(
      'Unrecognized key',
    );

    // A signal whose payload cannot be decoded (what a junk `temporal workflow signal --input-meta` sends)
    // is a rejected verdict too, never a failed workflow task.
    await client.workflowService.signalWorkflowExecution({
      namespace: 'default',
      workflowExecution: { workflowId: chainId },
      signalName: 'approve',
      input: { payloads: [{ metadata: { encoding: Buffer.from('foo/bar') }, data: Buffer.from('x') }] },
      identity: 'trust-boundary-test',
      requestId: randomUUID(),
    });
    const junk = await g.waitFor(
      chainId,
      (s) =>
        s.steps[0]!.approval!.verdicts.filter((v) => v.via === 'approve-signal').length >= 1 &&
        s.steps[0]!.approval!.verdicts.length >= 2,
    );
    expect(junk.steps[0]!.approval!.verdicts.some((v) => !v.counted && v.reason.startsWith('malformed vote'))).toBe(
      true,
    );
    expect(((await handle.fetchHistory()).events ?? []).filter((e) => e.workflowTaskFailedEventAttributes).length).toBe(
      0,
    );

    // A malformed update is refused by the validator (never in history).
    await expect(g.gc.submitApproval(chainId, 'x')).rejects.toThrow();

    const first = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'alice'));
    expect(first.approval).toMatchObject({ outcome: 'pending', stillNeeded: 1 });
    const second = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'bob'));
    expect(second.verdict).toMatchObject({ counted: true, approver: 'bob' });
    expect(second.approval).toMatchObject({ outcome: 'approved', stillNeeded: 0 });
    expect(((await handle.result()) as ChainResult).status).toBe('Completed');
  });
});

describe('fail closed where a governor activity fails (real server, injected faults)', () => {
  /** Step a (staging deploy, compensated by a rollback), step b on `resource`. */
  const twoSteps = (b: Record<string, unknown>) => ({
    workload: WORKLOAD,
    steps: [
      {
        ...staging('a'),
        resource: { type: 'Environment', id: 'dev' },
        compensation: { action: 'rollback', executor: noop },
      },
      b,
    ],
  });

  async function run(chain: unknown) {
    const handle = await startRaw(await validInput(chain as Record<string, unknown>), { taskQueue: forgeQueue });
    const result = (await handle.result()) as ChainResult;
    const described = await handle.describe();
    return { handle, result, status: described.typedSearchAttributes.get(GovernorStatusKey) };
  }

  it('a requestSlot that fails ends the chain Denied, compensated and checkpointed', async () => {
    faults.push({ type: 'requestSlot', when: () => true });
    const { result, status, handle } = await run(twoSteps(staging('b')));
    expect(result.status).toBe('Denied');
    expect(result.reason).toContain('coordination could not be requested');
    expect(result.steps[0]).toMatchObject({ id: 'a', status: 'compensated' });
    expect(result.checkpoint).toEqual(expect.any(String));
    expect(status).toBe('Denied');
    await expectVerified(handle.workflowId);
  });

  it('an authorize that exhausts its retries ends the chain Denied, compensated and checkpointed', async () => {
    faults.push(
      { type: 'authorize', when: (i) => i.stepId === 'b' },
      { type: 'governStep', when: (i) => i.stepId === 'b' },
    );
    const { result, status } = await run(twoSteps({ ...staging('b'), resource: { type: 'Environment', id: 'dev' } }));
    expect(result.status).toBe('Denied');
    expect(result.reason).toContain('authorization could not complete');
    expect(result.steps[0]).toMatchObject({ id: 'a', status: 'compensated' });
    expect(result.checkpoint).toEqual(expect.any(String));
    expect(status).toBe('Denied');
  });

  it('a receipt that cannot be signed ends the chain Failed, compensated and checkpointed', async () => {
    // Step b runs on the service's own activity, so its execution receipt goes through recordReceipt.
    faults.push({ type: 'recordReceipt', when: (i) => i.kind === 'execution' && i.stepId === 'b' });
    const { result, status } = await run(twoSteps(g.serviceStep('b', 'deploy', { type: 'Environment', id: 'dev' })));
    expect(result.status).toBe('Failed');
    expect(result.reason).toContain('receipt could not be recorded');
    expect(result.steps[0]).toMatchObject({ id: 'a', status: 'compensated' });
    expect(result.checkpoint).toEqual(expect.any(String));
    expect(status).toBe('Failed');
  });

  it('a compensation on a coordinated resource asks the coordinator for a slot like any step', async () => {
    // Step a on the coordinated staging environment, step b denied by policy (drop_table in prod).
    const chain = {
      workload: WORKLOAD,
      steps: [
        { ...staging('a'), compensation: { action: 'rollback', executor: noop } },
        { id: 'b', action: 'drop_table', resource: { type: 'Database', id: 'prod' }, executor: noop },
      ],
    };
    const { result, handle } = await run(chain);
    expect(result.status).toBe('Denied');
    expect(result.steps[0]).toMatchObject({ id: 'a', status: 'compensated' });
    const history = await handle.fetchHistory();
    const slotAsks = (history.events ?? [])
      .map((e) => e.markerRecordedEventAttributes?.details?.data?.payloads?.[0])
      .filter((p) => p !== undefined)
      .map((p) => JSON.parse(Buffer.from(p!.data!).toString('utf8')) as { activity_type?: string })
      .filter((d) => d.activity_type === 'requestSlot');
    expect(slotAsks.length).toBe(2); // the step and its compensation
    expect(result.steps[0]!.coordination).toMatchObject({
      requestId: `${handle.workflowId}/a.compensation`,
      status: 'released',
    });
    await expectVerified(handle.workflowId);
  });
});

describe('slot verdicts are acted on only when the coordinator signed them', () => {
  it('a forged grant (bad signature) is ignored and the step waits for the real one; an unsigned verdict denies', async () => {
    // Chain A holds the staging slot until the gate opens; B and C queue behind it.
    const a = await startRaw(
      await validInput({
        workload: WORKLOAD,
        steps: [
          {
            ...g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' }),
            executor: { type: 'activity', taskQueue: g.serviceQueue, activityType: 'hold' },
          },
        ],
      }),
    );
    await g.waitFor(a.workflowId, (s) => s.steps[0]!.coordination?.status === 'granted');
    const b = await startRaw(
      await validInput({
        workload: WORKLOAD,
        steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' })],
      }),
    );
    const c = await startRaw(
      await validInput({
        workload: WORKLOAD,
        steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' })],
      }),
    );
    const queued = await g.waitFor(b.workflowId, (s) => s.steps[0]!.coordination?.status === 'queued');
    await g.waitFor(c.workflowId, (s) => s.steps[0]!.coordination?.status === 'queued');
    const requestId = queued.steps[0]!.coordination!.requestId;
    const forged = (chainId: string, rid: string, receipt?: Record<string, unknown>) => ({
      requestId: rid,
      chainId,
      stepId: 'deploy',
      domain: 'cluster:staging',
      status: 'granted',
      granted: true,
      reason: 'forged',
      version: 0,
      ...(receipt ? { receipt } : {}),
    });
    const bogusReceipt = {
      coordinatorId: 'coordinator',
      seq: 1,
      hash: 'a'.repeat(64),
      digest: 'b'.repeat(64),
      prevHash: '0'.repeat(64),
      signature: 'eyJhbGciOiJFZERTQSJ9.YQ.c2ln',
      event: 'granted',
    };
    await b.signal('slotVerdict', forged(b.workflowId, requestId, bogusReceipt));
    // The forged grant was judged (a verifySlotVerdict marker in B's history) and B is still queued, nothing ran.
    const judged = async (handle: typeof b) =>
      ((await handle.fetchHistory()).events ?? []).some((e) => {
        const p = e.markerRecordedEventAttributes?.details?.data?.payloads?.[0];
        return (
          p !== undefined &&
          (JSON.parse(Buffer.from(p.data!).toString('utf8')) as { activity_type?: string }).activity_type ===
            'verifySlotVerdict'
        );
      });
    for (let i = 0; i < 100 && !(await judged(b)); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await judged(b)).toBe(true);
    expect((await b.query<ChainState>('status')).steps[0]!.coordination?.status).toBe('queued');
    expect(g.ledger.has(`${b.workflowId}/deploy`)).toBe(false);

    // A verdict without any signed receipt: the chain fails closed (Denied), its request withdrawn.
    const cQueued = await c.query<ChainState>('status');
    await c.signal('slotVerdict', forged(c.workflowId, cQueued.steps[0]!.coordination!.requestId));
    const cResult = (await c.result()) as ChainResult;
    expect(cResult.status).toBe('Denied');
    expect(cResult.reason).toContain(
      "the slot verdict is not verified as the coordinator's (the verdict carries no signed coordination receipt)",
    );
    expect(g.ledger.has(`${c.workflowId}/deploy`)).toBe(false);

    // The real grant, after A releases: B runs exactly once and verifies.
    gate.open();
    expect(((await a.result()) as ChainResult).status).toBe('Completed');
    const bResult = (await b.result()) as ChainResult;
    expect(bResult.status).toBe('Completed');
    expect(g.ledger.has(`${b.workflowId}/deploy`)).toBe(true);
    await expectVerified(b.workflowId);
  }, 120_000);

  it('a verdict that cannot be checked (the check itself fails) denies the step instead of waiting past it', async () => {
    faults.push({ type: 'verifySlotVerdict', when: () => true });
    const handle = await startRaw(await validInput({ workload: WORKLOAD, steps: [staging('only')] }), {
      taskQueue: forgeQueue,
    });
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Denied');
    expect(result.reason).toContain('it could not be verified');
    expect(result.steps[0]).toMatchObject({ status: 'denied' });
  });
});
