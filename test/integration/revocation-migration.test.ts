import { eventually } from '../harness/eventually';
import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import { randomUUID } from 'node:crypto';
import { Client, Connection, WithStartWorkflowOperation } from '@temporalio/client';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { issueAttestation, issueCredential } from '../../identity';
import { GovernorClient } from '../../sdk/client';
import {
  MIGRATE_REVOCATIONS_SIGNAL,
  REVOCATION_REGISTRY_TYPE,
  REVOCATION_STATE_MEMO,
  revocationLogName,
  revocationRegistryId,
  type RevocationListState,
  type SignedRevocation,
} from '../../contracts/revocation';
import { GENESIS_HASH } from '../../contracts/receipt';
import type { ChainResult } from '../../contracts/state';
import { controlQueueOf, makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';
import { revokeWorkloadUpdate } from '../../contracts/messages';

/**
 * Upgrading a deployment whose registry was started by the code before signed lists
 * (test/fixtures/legacy-registry): the legacy run replays with the current code, the upgraded
 * worker asks it to continue as new, and its next run signs the carried list — the revoked
 * workload stays denied throughout. A legacy list passed by a starter (not carried by our own
 * continue-as-new) is never trusted.
 */

let connection: Connection;
let client: Client;
let legacyCode: string;
beforeAll(async () => {
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
  ({ code: legacyCode } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../fixtures/legacy-registry/workflows'),
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  }));
}, 120_000);
afterAll(async () => {
  await connection?.close();
});

async function run(gc: GovernorClient, home: string, workload: string): Promise<ChainResult> {
  const handle = await gc.start(
    {
      workload,
      steps: [
        { id: 'announce', action: 'notify', resource: { type: 'Channel', id: 'ops' }, executor: { type: 'noop' } },
      ],
    },
    {
      credential: await issueCredential({ home, sub: workload }),
      attestation: await issueAttestation({ home, sub: workload }),
    },
  );
  return (await handle.result()) as ChainResult;
}

describe('a registry started before signed lists', () => {
  it('replays with the current code, migrates to a signed list, and its revocations stay in force', async () => {
    const home = await makeHome();
    const taskQueue = uniqueQueue('migration');
    const registry = revocationRegistryId(taskQueue);
    const gc = new GovernorClient(client, taskQueue, controlQueueOf(taskQueue));
    const a = `agent:old-${randomUUID().slice(0, 8)}`;

    // The old worker: the legacy registry records an unsigned list.
    const oldConnection = await NativeConnection.connect({ address: testAddress() });
    const oldWorker = await Worker.create({
      connection: oldConnection,
      taskQueue,
      workflowBundle: { code: legacyCode },
    });
    const oldRun = oldWorker.run();
    try {
      // As the CLI did then: an update-with-start of the task queue's own registry.
      const legacy = {
        revocations: await client.workflow.executeUpdateWithStart(revokeWorkloadUpdate, {
          args: [{ workload: a, reason: 'old leak', by: 'security' }],
          startWorkflowOperation: new WithStartWorkflowOperation(REVOCATION_REGISTRY_TYPE, {
            workflowId: registry,
            taskQueue,
            args: [],
            workflowIdConflictPolicy: 'USE_EXISTING',
          }),
        }),
      };
      expect(legacy.revocations).toEqual({
        revoked: { [a]: { workload: a, reason: 'old leak', by: 'security', seq: 1 } },
      });
    } finally {
      oldWorker.shutdown();
      await oldRun;
      await oldConnection.close();
    }
    const legacyRunId = (await client.workflow.getHandle(registry).describe()).runId;

    // The upgraded worker: the revoked workload is denied (while migrating, because the list is not
    // verified yet; then because it is revoked), and the legacy run continues as a signed registry.
    const worker = await startGovernorWorker({ home, taskQueue, revocationCacheTtlMs: 0 });
    try {
      const first = await run(gc, home, a);
      expect({ status: first.status, step: first.steps[0]!.status }).toEqual({ status: 'Denied', step: 'denied' });
      const migrated = await eventually(
        'the signed registry',
        async () => {
          const d = await client.workflow.getHandle(registry).describe();
          return (d.memo?.[REVOCATION_STATE_MEMO] as RevocationListState | undefined)?.state === 'ready'
            ? d
            : undefined;
        },
        { timeoutMs: 15_000 },
      );
      expect(migrated.runId).not.toBe(legacyRunId);
      const entry = (migrated.memo!.revoked as Record<string, SignedRevocation>)[a]!;
      expect(entry).toMatchObject({
        v: 1,
        registry: revocationLogName('default', registry),
        seq: 1,
        workload: a,
        reason: 'old leak',
        by: 'security',
        prevHash: GENESIS_HASH,
        signature: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
      });
      const second = await run(gc, home, a);
      expect(second.reason).toContain(`workload ${a} is revoked: old leak`);

      // The legacy run's history (its update, the migrate signal, its continue-as-new) replays with the current code.
      const legacyHistory = await client.workflow.getHandle(registry, legacyRunId).fetchHistory();
      const types = legacyHistory
        .events!.map(
          (e) =>
            e.workflowExecutionSignaledEventAttributes?.signalName ??
            (e.workflowExecutionContinuedAsNewEventAttributes ? 'continued-as-new' : undefined),
        )
        .filter(Boolean);
      expect(types).toEqual([MIGRATE_REVOCATIONS_SIGNAL, 'continued-as-new']);
      await expect(
        Worker.runReplayHistory(
          { workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } },
          legacyHistory,
          registry,
        ),
      ).resolves.toBeUndefined();

      // A starter cannot smuggle an unsigned legacy list in: only our own continue-as-new carries one.
      const x = `agent:smuggled-${randomUUID().slice(0, 8)}`;
      await client.workflow.getHandle(registry).terminate('make room for a smuggled legacy list');
      await client.workflow.start(REVOCATION_REGISTRY_TYPE, {
        workflowId: registry,
        taskQueue,
        args: [{ revoked: { [x]: { workload: x, reason: 'smuggled', seq: 1 } } }],
      });
      const smuggled = await run(gc, home, x);
      expect({ status: smuggled.status, step: smuggled.steps[0]!.status }).toEqual({
        status: 'Completed',
        step: 'completed',
      });
      expect((await run(gc, home, a)).reason).toContain(`workload ${a} is revoked: old leak`);
    } finally {
      await worker.stop();
    }
  });
});
