import { eventually } from '../harness/eventually';
import { randomUUID, generateKeyPairSync } from 'node:crypto';
import {
  Client,
  Connection,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { createActivities } from '../../activities';
import { issueAttestation, issueCredential } from '../../identity';
import { PolicyStore } from '../../activities/policy-store';
import { RevocationCache, RevocationStore } from '../../activities/revocations';
import { defaultPoliciesDir } from '../../workers/worker';
import { RevocationLogFile, signRevocationEntry } from '../../activities/revocation-log';
import { GovernorClient } from '../../sdk/client';
import { createReplayer, fetchChainHistories, formatReport, verifyChain, type Replayer } from '../../audit/verify';
import { revokeWorkloadUpdate } from '../../contracts/messages';
import { GENESIS_HASH } from '../../contracts/receipt';
import {
  REVOCATION_REGISTRY_TYPE,
  REVOCATION_STATE_MEMO,
  revocationLogName,
  namespaceRevocationRegistryId,
  type RevocationListState,
  type SignedRevocation,
} from '../../contracts/revocation';
import type { ChainResult } from '../../contracts/state';
import { controlQueueOf, makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/**
 * The revocation registry survives its own death (issue 14 item 2), on the real server: terminated,
 * reset, timed out, or deleted with every worker restarted, a revoked workload stays denied; while the
 * list is not known every decision denies, saying why; forged or unsigned entries never count; the
 * registry validates its own input; every decision names the list it saw, and `governor verify`
 * shows it and finds it signed into the decision's receipt.
 *
 * Chains here are one built-in `noop` step (any workload may `notify` a Channel), so "nothing ran"
 * is the step's status. Workers replay every task (no workflow cache) and read the registry on every
 * decision (revocation cache TTL 0).
 */

let connection: Connection;
let client: Client;
let replayer: Replayer;

interface Deployment {
  home: string;
  taskQueue: string;
  /** The registry's workflow id. */
  registry: string;
  /** Its log's name (what entries and decisions carry): `default/<registry>`. */
  log: string;
  gc: GovernorClient;
  stop(): Promise<void>;
}
const running: Deployment[] = [];

/** A governor worker (default bundle) on its own task queue, hence its own registry. */
async function deploy(o: { home?: string; taskQueue?: string } = {}): Promise<Deployment> {
  const home = o.home ?? (await makeHome());
  const taskQueue = o.taskQueue ?? uniqueQueue('revocations');
  const worker = await startGovernorWorker({ home, taskQueue, revocationCacheTtlMs: 0 });
  let stopped = false;
  const d: Deployment = {
    home,
    taskQueue,
    registry: namespaceRevocationRegistryId(controlQueueOf(taskQueue)),
    log: revocationLogName('default', namespaceRevocationRegistryId(controlQueueOf(taskQueue))),
    gc: new GovernorClient(client, taskQueue, controlQueueOf(taskQueue)),
    async stop() {
      if (stopped) return;
      stopped = true;
      await worker.stop();
    },
  };
  running.push(d);
  return d;
}

beforeAll(async () => {
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});
afterAll(async () => {
  for (const d of running) await d.stop();
  await replayer?.close();
  await connection?.close();
});

/** Runs a one-step chain (`notify` on a Channel, built-in noop) as `workload` and returns its result. */
async function run(d: Deployment, workload: string): Promise<ChainResult> {
  const handle = await d.gc.start(
    {
      workload,
      steps: [
        { id: 'announce', action: 'notify', resource: { type: 'Channel', id: 'ops' }, executor: { type: 'noop' } },
      ],
    },
    {
      credential: await issueCredential({ home: d.home, sub: workload }),
      attestation: await issueAttestation({ home: d.home, sub: workload }),
    },
  );
  return (await handle.result()) as ChainResult;
}

function expectDenied(r: ChainResult, reason: string): void {
  expect({ status: r.status, reason: r.reason, step: r.steps[0]!.status }).toEqual({
    status: 'Denied',
    reason: expect.stringContaining(reason),
    step: 'denied',
  });
}

function expectCompleted(r: ChainResult): void {
  expect({ status: r.status, reason: r.reason, step: r.steps[0]!.status }).toEqual({
    status: 'Completed',
    reason: undefined,
    step: 'completed',
  });
}

/** The registry's current run: its status and what its memo publishes. */
async function registryNow(
  d: Deployment,
): Promise<{ runId: string; status: string; state?: RevocationListState; revoked: Record<string, SignedRevocation> }> {
  const desc = await client.workflow.getHandle(d.registry).describe();
  return {
    runId: desc.runId,
    status: desc.status.name,
    state: desc.memo?.[REVOCATION_STATE_MEMO] as RevocationListState | undefined,
    revoked: (desc.memo?.revoked ?? {}) as Record<string, SignedRevocation>,
  };
}

const workload = (name: string): string => `agent:${name}-${randomUUID().slice(0, 8)}`;

describe('the revocation registry survives its own death', () => {
  it('terminated: the worker starts a new registry that recovers the list; a later revocation adds to it, never replaces it', async () => {
    const d = await deploy();
    const a = workload('a');
    const b = workload('b');
    const first = await d.gc.revokeWorkload({ workload: a, reason: 'credential leak', by: 'security' });
    expect(first.revocations).toMatchObject({
      seq: 1,
      revoked: { [a]: { workload: a, reason: 'credential leak', by: 'security', seq: 1, prevHash: GENESIS_HASH } },
    });
    expectDenied(await run(d, a), `workload ${a} is revoked: credential leak`);

    // The attack of issue 14: terminate the registry. The next decision finds it closed, starts a
    // new run (which recovers from the terminated run) and still denies the revoked workload.
    const attacked = await registryNow(d);
    await client.workflow.getHandle(d.registry).terminate('attack: wipe the revocation list');
    expectDenied(await run(d, a), `workload ${a} is revoked: credential leak`);
    const recovered = await registryNow(d);
    expect(recovered.runId).not.toBe(attacked.runId);
    expect(recovered.status).toBe('RUNNING');
    expect(recovered.revoked[a]).toEqual(first.revocations.revoked[a]);

    // Terminated again, then `governor revoke --workload b` (update-with-start with no arguments):
    // the new run starts from the previous list, so b is added to it instead of replacing it.
    await client.workflow.getHandle(d.registry).terminate('attack: wipe the revocation list again');
    const second = await d.gc.revokeWorkload({ workload: b, reason: 'second incident', by: 'security' });
    expect(Object.keys(second.revocations.revoked).sort()).toEqual([a, b].sort());
    expect(second.revocations).toMatchObject({
      seq: 2,
      revoked: { [b]: { seq: 2, prevHash: (first.revocations.revoked[a] as SignedRevocation).hash } },
    });
    expectDenied(await run(d, a), `workload ${a} is revoked: credential leak`);
    expectDenied(await run(d, b), `workload ${b} is revoked: second incident`);
    expectCompleted(await run(d, workload('bystander')));
  });

  it('reset to before the revocations (signals and updates not reapplied): the worker restores them and the revoked workloads stay denied', async () => {
    const d = await deploy();
    const a = workload('a');
    const b = workload('b');
    await d.gc.revokeWorkload({ workload: a, reason: 'leak a' });
    await d.gc.revokeWorkload({ workload: b, reason: 'leak b' });
    expectCompleted(await run(d, workload('bystander')));

    // Reset the registry to the workflow task right after its recovery: before both revocations.
    const before = await registryNow(d);
    const { events } = await client.workflow.getHandle(d.registry, before.runId).fetchHistory();
    const E = temporal.api.enums.v1.EventType;
    const recoverScheduled = events!.find(
      (e) =>
        e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED &&
        e.activityTaskScheduledEventAttributes?.activityType?.name === 'recoverRevocations',
    )!;
    const recoverDone = events!.find(
      (e) =>
        e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED &&
        Number(e.activityTaskCompletedEventAttributes!.scheduledEventId) === Number(recoverScheduled.eventId),
    )!;
    const resetPoint = events!.find(
      (e) => e.eventType === E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED && Number(e.eventId) > Number(recoverDone.eventId),
    )!;
    const signedLater = events!.filter(
      (e) =>
        e.eventType === E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED &&
        e.activityTaskScheduledEventAttributes?.activityType?.name === 'signRevocation',
    );
    expect(signedLater.map((e) => Number(e.eventId) > Number(resetPoint.eventId))).toEqual([true, true]);
    await client.workflowService.resetWorkflowExecution({
      namespace: 'default',
      workflowExecution: { workflowId: d.registry, runId: before.runId },
      reason: 'test: roll the revocation list back',
      workflowTaskFinishEventId: resetPoint.eventId,
      requestId: randomUUID(),
      resetReapplyType: temporal.api.enums.v1.ResetReapplyType.RESET_REAPPLY_TYPE_NONE,
      resetReapplyExcludeTypes: [
        temporal.api.enums.v1.ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
        temporal.api.enums.v1.ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
      ],
    });
    // The reset run really lost them: what it copied from the base run (up to the reset point) signs
    // no revocation, so it starts from the recovered, empty list. (The worker may repair it before a
    // query can observe the empty list, so the history, not a racing query, is the evidence.)
    const rolledBack = await eventually(
      'the reset run',
      async () => {
        const now = await registryNow(d);
        return now.runId !== before.runId && now.state?.state === 'ready' ? now : undefined;
      },
      { timeoutMs: 15_000 },
    );
    const resetEvents = (await client.workflow.getHandle(d.registry, rolledBack.runId).fetchHistory()).events!;
    const copied = resetEvents.filter((e) => Number(e.eventId) <= Number(resetPoint.eventId));
    expect(copied.length).toBeGreaterThan(0);
    expect(
      copied.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'signRevocation'),
    ).toEqual([]);
    expect(
      resetEvents.some(
        (e) =>
          e.workflowTaskFailedEventAttributes?.cause ===
          temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW,
      ),
    ).toBe(true);

    // This worker signed both entries (its log file and memory hold them): it denies while the
    // registry lacks them and tells the registry again, so the workload stays denied.
    expectDenied(await run(d, a), a);
    const restored = await eventually(
      'the restored revocations',
      async () => {
        const now = await registryNow(d);
        return now.revoked[a] && now.revoked[b] ? now : undefined;
      },
      { timeoutMs: 15_000 },
    );
    expect(restored.revoked[a]).toMatchObject({ reason: 'leak a' });
    expect(restored.revoked[b]).toMatchObject({ reason: 'leak b' });
    expectDenied(await run(d, b), `workload ${b} is revoked: leak b`);
    expectCompleted(await run(d, workload('bystander')));
  });

  it('timed out: a registry run that times out is followed by one that recovers the list', async () => {
    const d = await deploy();
    const a = workload('a');
    await d.gc.revokeWorkload({ workload: a, reason: 'leak' });
    await client.workflow.getHandle(d.registry).terminate('make room for a run that times out');
    // A registry run with a 3 s run timeout (as an operator or an attacker could start one).
    const short = await client.workflow.start(REVOCATION_REGISTRY_TYPE, {
      workflowId: d.registry,
      taskQueue: controlQueueOf(d.taskQueue),
      args: [],
      workflowRunTimeout: '3s',
    });
    await eventually(
      'the registry run to time out',
      async () => ((await short.describe()).status.name === 'TIMED_OUT' ? true : undefined),
      { timeoutMs: 15_000 },
    );
    expectDenied(await run(d, a), `workload ${a} is revoked: leak`);
    const now = await registryNow(d);
    expect(now.runId).not.toBe(short.firstExecutionRunId);
    expect(now.status).toBe('RUNNING');
  });

  it('deleted with all its runs (retention passed) and every worker restarted: the new registry recovers the list from the log file under GOVERNOR_HOME', async () => {
    const first = await deploy();
    const a = workload('a');
    const revoked = await first.gc.revokeWorkload({ workload: a, reason: 'leak' });
    expectDenied(await run(first, a), `workload ${a} is revoked: leak`);
    await first.stop();

    // Every run of the registry's id is deleted: no memo, no history, nothing carried.
    const runs: string[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${first.registry}'` })) runs.push(wf.runId);
    expect(runs.length).toBeGreaterThan(0);
    for (const runId of runs)
      await client.workflowService.deleteWorkflowExecution({
        namespace: 'default',
        workflowExecution: { workflowId: first.registry, runId },
      });
    await eventually(
      'the registry to be deleted',
      async () => {
        try {
          await client.workflow.getHandle(first.registry).describe();
          return undefined;
        } catch (err) {
          return err instanceof WorkflowNotFoundError ? true : undefined;
        }
      },
      { timeoutMs: 15_000 },
    );
    await eventually(
      'visibility to forget the registry',
      async () => {
        for await (const wf of client.workflow.list({ query: `WorkflowId = '${first.registry}'` }))
          return wf ? undefined : true;
        return true;
      },
      { timeoutMs: 15_000 },
    );

    // A new worker process (nothing in memory) with the same GOVERNOR_HOME and task queue.
    const file = new RevocationLogFile(first.home, first.log);
    expect(file.read()).toEqual([revoked.revocations.revoked[a]]);
    const second = await deploy({ home: first.home, taskQueue: first.taskQueue });
    expectDenied(await run(second, a), `workload ${a} is revoked: leak`);
    // The entry is the one signed before (recovered as it was, not re-signed).
    expect((await registryNow(second)).revoked[a]).toEqual(revoked.revocations.revoked[a]);
  });
});

describe('fail closed', () => {
  it('while another workflow holds the registry id, every decision denies saying why; forged entries in its memo or the log file are never accepted', async () => {
    const d = await deploy();
    const a = workload('a');
    const x = workload('forged-x');
    const y = workload('unsigned-y');
    const z = workload('forged-z');
    const genuine = await d.gc.revokeWorkload({ workload: a, reason: 'leak' });
    await client.workflow.getHandle(d.registry).terminate('attack');

    // The attacker's entries: signed with its own key (claiming the governor's key id), and unsigned.
    const pair = generateKeyPairSync('ed25519');
    const kid = (genuine.revocations.revoked[a] as SignedRevocation).signature.split('.')[0]!;
    const attacker = { key: pair.privateKey, kid: JSON.parse(Buffer.from(kid, 'base64url').toString()).kid as string };
    const forged = await signRevocationEntry(
      attacker,
      { registry: d.log, seq: 1, workload: x, reason: 'forged', prevHash: GENESIS_HASH },
      new Date(),
    );
    const unsigned = {
      ...(await signRevocationEntry(
        attacker,
        { registry: d.log, seq: 2, workload: y, reason: 'unsigned', prevHash: forged.hash },
        new Date(),
      )),
      signature: 'e30.e30.',
    };
    const squatterMemo = {
      revoked: { [x]: forged, [y]: unsigned },
      [REVOCATION_STATE_MEMO]: { v: 1, registry: d.log, state: 'ready', seq: 2, head: unsigned.hash },
    };

    // A squatter of the registry's own type, on a queue no governor polls, claiming a ready list.
    const squatter = await client.workflow.start(REVOCATION_REGISTRY_TYPE, {
      workflowId: d.registry,
      taskQueue: `nowhere-${randomUUID()}`,
      args: [],
      memo: squatterMemo,
    });
    const denied = await run(d, workload('bystander'));
    expectDenied(denied, 'revocation list unavailable: the revocation registry runs on another task queue');
    expect(denied.steps[0]!.decision).toMatchObject({
      effect: 'deny',
      reason: "revocation list unavailable: the revocation registry runs on another task queue than this worker's",
    });
    await squatter.terminate('end of the squatter');

    // A squatter of another type on the same id.
    const other = await client.workflow.start('notARevocationRegistry', {
      workflowId: d.registry,
      taskQueue: `nowhere-${randomUUID()}`,
      args: [],
    });
    expectDenied(
      await run(d, workload('bystander')),
      "revocation list unavailable: the revocation registry's id is held by a workflow of another type (notARevocationRegistry)",
    );
    await other.terminate('end of the squatter');

    // A forged line in this worker's log file too.
    const file = new RevocationLogFile(d.home, d.log);
    file.append([
      await signRevocationEntry(
        attacker,
        { registry: d.log, seq: 2, workload: z, reason: 'forged', prevHash: genuine.revocations.head! },
        new Date(),
      ),
    ]);

    // With the squatters gone the worker starts a registry again; it recovers from every earlier
    // run (the squatter's memo included) and the file, and keeps only what the receipt key signed.
    expectCompleted(await run(d, x));
    expectCompleted(await run(d, y));
    expectCompleted(await run(d, z));
    expectDenied(await run(d, a), `workload ${a} is revoked: leak`);
    const now = await registryNow(d);
    expect(Object.keys(now.revoked)).toEqual([a]);
    expect(now.state).toMatchObject({ state: 'ready', seq: 1, head: genuine.revocations.head });
  });

  it('an unreachable registry: the decision is a deny that says so, recorded with its receipt', async () => {
    const home = await makeHome();
    const policies = new PolicyStore({ home, requireSigned: false });
    await policies.activateFrom(defaultPoliciesDir());
    // The worker's own client, cut off from the server.
    const cut = await Connection.connect({ address: testAddress() });
    await cut.close();
    const activities = createActivities({
      policies,
      home,
      revocations: new RevocationCache(new RevocationStore(new Client({ connection: cut }), home), uniqueQueue('cut'), {
        readyWaitMs: 300,
      }),
    });
    const sub = workload('cut');
    const result = await activities.authorize({
      chainId: `chain-${randomUUID()}`,
      stepId: 'announce',
      kind: 'step',
      workload: sub,
      action: 'notify',
      resource: { type: 'Channel', id: 'ops' },
      context: {},
      credential: await issueCredential({ home, sub }),
      attestation: await issueAttestation({ home, sub }),
      prev: { seq: 0, hash: GENESIS_HASH },
    });
    expect(result.decision).toMatchObject({
      effect: 'deny',
      reason: expect.stringMatching(/^revocation list unavailable: the revocation registry is not reachable: /),
    });
    expect(result.revocations).toBeUndefined();
    expect(result.receipt).toMatchObject({ seq: 1, kind: 'decision' });
  });

  it('validates its own input: bad updates and a bad start argument end in GOVERNOR_INVALID_INPUT naming the field, and the list stays', async () => {
    const d = await deploy();
    const a = workload('a');
    await d.gc.revokeWorkload({ workload: a, reason: 'leak' });
    const handle = client.workflow.getHandle(d.registry);
    const refused = async (input: unknown): Promise<{ type?: string; message?: string }> => {
      const err = await handle.executeUpdate(revokeWorkloadUpdate, { args: [input as never] }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
      const cause = (err as WorkflowUpdateFailedError).cause as { type?: string; message?: string };
      return { type: cause.type, message: cause.message };
    };
    expect(await refused({ workload: '', reason: 'x' })).toEqual({
      type: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringMatching(/^invalid revocation: workload: /),
    });
    expect(await refused({ workload: 'agent:w' })).toEqual({
      type: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringMatching(/^invalid revocation: reason: /),
    });
    expect(await refused({ workload: 'agent:w', reason: 'r', signature: 'forged' })).toEqual({
      type: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringContaining('signature'),
    });
    expect(await refused({ workload: 'agent:w', reason: 'x'.repeat(501) })).toEqual({
      type: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringMatching(/^invalid revocation: reason: /),
    });
    expect(await refused('agent:w')).toEqual({
      type: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringMatching(/^invalid revocation: \(root\): /),
    });
    expect(Object.keys((await registryNow(d)).revoked)).toEqual([a]);

    // A run started with a malformed argument fails at once, naming the field (no task retry loop).
    await handle.terminate('make room for a bad start');
    const bad = await client.workflow.start(REVOCATION_REGISTRY_TYPE, {
      workflowId: d.registry,
      taskQueue: controlQueueOf(d.taskQueue),
      args: [{ v: 1, entries: 'not a list' }],
    });
    const failure = await bad.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((failure as WorkflowFailedError).cause).toMatchObject({
      type: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringMatching(/^invalid registry input: input\.entries: /),
    });
    // The next decision starts a registry that recovers the list.
    expectDenied(await run(d, a), `workload ${a} is revoked: leak`);
  });
});

describe('decisions name the revocation list they saw', () => {
  it('in the signed receipt: governor verify shows the list and fails when it is changed', async () => {
    const d = await deploy();
    const a = workload('a');
    await d.gc.revokeWorkload({ workload: a, reason: 'leak' });
    const list = await d.gc.revokeWorkload({ workload: workload('b'), reason: 'leak' });
    const named = `${d.log} seq 2 head ${list.revocations.head}`;

    const allowed = await run(d, workload('bystander'));
    expectCompleted(allowed);
    const histories = await fetchChainHistories(client, allowed.chainId);
    const report = await verifyChain({ histories, chainId: allowed.chainId, home: d.home, replayer });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.revocationLists).toEqual([named]);
    expect(formatReport(report).split('\n')).toContain(`revocation list(s) the decisions saw: ${named}`);

    const denied = await run(d, a);
    expectDenied(denied, `workload ${a} is revoked`);
    const deniedReport = await verifyChain({
      histories: await fetchChainHistories(client, denied.chainId),
      chainId: denied.chainId,
      home: d.home,
      replayer,
    });
    expect(deniedReport).toMatchObject({ verdict: 'verified', revocationLists: [named] });

    // The list a decision names is covered by its receipt: claiming another list breaks the receipt.
    const edited = JSON.parse(JSON.stringify(histories)) as unknown[];
    expect(editPayloads(edited, (value) => bumpRevocationSeq(value))).toBeGreaterThan(0);
    const tampered = await verifyChain({ histories: edited, chainId: allowed.chainId, home: d.home, replayer });
    expect(tampered.verdict).toBe('failed');
    expect(tampered.checks.find((c) => c.name === 'receipts')).toMatchObject({
      ok: false,
      detail: expect.stringContaining('digest does not match what history recorded'),
    });
  });
});

const JSON_PLAIN = Buffer.from('json/plain').toString('base64');

/** Applies `edit` to every JSON payload in a history's stable JSON form (re-encoded when it returns true); returns how many changed. */
function editPayloads(node: unknown, edit: (value: unknown) => boolean): number {
  if (Array.isArray(node)) return node.reduce((n: number, x) => n + editPayloads(x, edit), 0);
  if (typeof node !== 'object' || node === null) return 0;
  const p = node as { data?: unknown; metadata?: { encoding?: unknown } };
  if (typeof p.data === 'string' && p.metadata?.encoding === JSON_PLAIN) {
    const value: unknown = JSON.parse(Buffer.from(p.data, 'base64').toString('utf8'));
    if (!edit(value)) return 0;
    p.data = Buffer.from(JSON.stringify(value)).toString('base64');
    return 1;
  }
  return Object.values(node).reduce((n: number, v) => n + editPayloads(v, edit), 0);
}

/** Adds one to the `seq` of every `revocations` list reference inside `value`; true when there was one. */
function bumpRevocationSeq(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  let changed = false;
  const ref = (value as { revocations?: { seq?: unknown } }).revocations;
  if (ref && typeof ref.seq === 'number') {
    ref.seq += 1;
    changed = true;
  }
  for (const v of Object.values(value)) changed = bumpRevocationSeq(v) || changed;
  return changed;
}
