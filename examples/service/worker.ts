import path from 'node:path';
import { NativeConnection, Worker } from '@temporalio/worker';
import { loadTemporalSettings } from '../../runtime/connection';
import { createJwksResolver } from '../../identity/jwks';
import type { JWTVerifyGetKey } from 'jose';
import { createServiceActivities } from './activities';
import { Ledger } from './ledger';

/**
 * An example service worker: `node dist/examples/service/worker.js` runs the service's activities on
 * task queue `example-service` and records what it executed in .governor/example-ledger.jsonl. It runs
 * only governed calls: each must carry an execution grant signed by a key of the governor's grant JWKS
 * (`GOVERNOR_GRANT_JWKS`, default `<GOVERNOR_HOME>/keys/grant.jwks.json`, re-read when a new key id
 * appears) for this task queue.
 */
async function main(): Promise<void> {
  const settings = loadTemporalSettings();
  const connection = await NativeConnection.connect(settings.connectionOptions);
  const ledger = new Ledger(path.resolve(process.env.EXAMPLE_LEDGER ?? '.governor/example-ledger.jsonl'));
  const taskQueue = process.env.EXAMPLE_TASK_QUEUE ?? 'example-service';
  const keys = createJwksResolver({ file: process.env.GOVERNOR_GRANT_JWKS ?? 'keys/grant.jwks.json' });
  const worker = await Worker.create({
    connection,
    namespace: settings.namespace,
    taskQueue,
    activities: createServiceActivities(ledger, {
      grants: { keys: keys as unknown as JWTVerifyGetKey, audience: taskQueue },
    }),
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
