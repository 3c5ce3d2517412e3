import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { anchorCheckpoints } from '../../audit/transparency-log';
import { appendedQuery, cannedAnchor } from '../harness/pre-batch-log-workflows';
import { testAddress, uniqueQueue } from '../harness/temporal';

/**
 * A rolling upgrade: the archiver (anchorCheckpoints) sends its batch update to a log whose worker predates it.
 * It must fall back to one `appendCheckpoint` per entry, without the receipt that older input refuses, and
 * give each entry its own outcome (anchor or refusal), in the batch's order.
 */

let connection: NativeConnection;
let clientConnection: Connection;
let client: Client;
let worker: Worker;
let running: Promise<void>;
const taskQueue = uniqueQueue('pre-batch-log');

beforeAll(async () => {
  connection = await NativeConnection.connect({ address: testAddress() });
  clientConnection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection: clientConnection });
  worker = await Worker.create({
    connection,
    taskQueue,
    workflowsPath: require.resolve('../harness/pre-batch-log-workflows'),
  });
  running = worker.run();
});
afterAll(async () => {
  worker?.shutdown();
  await running;
  await clientConnection?.close();
  await connection?.close();
});

it('a log without the batch update anchors each entry alone, without its receipt, each with its own outcome', async () => {
  const logId = `pre-batch-log-${Date.now()}`;
  const receipt = {
    seq: 3,
    chainId: 'with-receipt',
    kind: 'checkpoint' as const,
    digest: 'a'.repeat(64),
    prevHash: 'b'.repeat(64),
    hash: 'c'.repeat(64),
    signature: 'x.y.z',
  };
  const runId = '01a22d6b-a4e4-71c5-9151-8691b5ae69bb';
  const outcomes = await anchorCheckpoints(
    client,
    [{ chainId: 'with-receipt', receipt }, { chainId: 'refused' }, { chainId: 'with-run', runId }],
    { taskQueue, logId, timeoutMs: 60_000 },
  );
  expect(outcomes).toEqual([
    { anchor: cannedAnchor('with-receipt') },
    { error: { message: 'chain refused has not closed with a checkpoint', type: 'GOVERNOR_ANCHOR_REFUSED' } },
    { anchor: cannedAnchor('with-run') },
  ]);
  // Each entry reached the old log alone, as its input takes it: no receipt, the run id kept.
  const appended = await client.workflow.getHandle(logId).query(appendedQuery);
  expect([...appended].sort((x, y) => x.chainId.localeCompare(y.chainId))).toEqual([
    { chainId: 'refused' },
    { chainId: 'with-receipt' },
    { chainId: 'with-run', runId },
  ]);
});
