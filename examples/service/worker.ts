import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { loadTemporalSettings } from '../../runtime/connection';
import { createServiceActivities } from './activities';
import { Ledger } from './ledger';

/**
 * An example service worker: `node dist/examples/service/worker.js` runs the service's activities on
 * task queue `example-service` and records what it executed in .governor/example-ledger.jsonl.
 */
async function main(): Promise<void> {
  const settings = loadTemporalSettings();
  const connection = await NativeConnection.connect(settings.connectionOptions);
  const ledger = new Ledger(path.resolve(process.env.EXAMPLE_LEDGER ?? '.governor/example-ledger.jsonl'));
  const worker = await Worker.create({
    connection,
    namespace: settings.namespace,
    taskQueue: process.env.EXAMPLE_TASK_QUEUE ?? 'example-service',
    activities: createServiceActivities(ledger),
  });
  process.once('SIGINT', () => worker.shutdown());
  process.once('SIGTERM', () => worker.shutdown());
  await worker.run();
  await connection.close();
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`example service: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
