import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createServiceActivities } from '../../examples/service/activities';
import { Ledger } from '../../examples/service/ledger';
import { createGovernorWorker } from '../../workers/worker';

/*
 * Test-only child process of the cluster suite: ROLE=governor runs one governor worker (a member of
 * the fleet, on the prebuilt workflow bundle), ROLE=service runs the example service with its
 * file-backed ledger. They are separate processes, as deployed: killing a governor worker never takes
 * the service (and its ledger index) down with it.
 */

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') });
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  let worker: Worker;
  if (env('ROLE') === 'service') {
    worker = await Worker.create({
      connection,
      namespace,
      taskQueue: env('SERVICE_TASK_QUEUE'),
      activities: createServiceActivities(new Ledger(env('EXAMPLE_LEDGER'))),
      maxConcurrentActivityTaskExecutions: 200,
    });
  } else {
    ({ worker } = await createGovernorWorker({
      connection,
      namespace,
      taskQueue: env('GOVERNOR_TASK_QUEUE'),
      home: env('GOVERNOR_HOME'),
      ...(process.env.GOVERNOR_POLICIES ? { policiesDir: process.env.GOVERNOR_POLICIES } : {}),
      workflowBundle: { codePath: env('GOVERNOR_WORKFLOW_BUNDLE') },
    }));
  }
  const running = worker.run();
  process.stdout.write(`ready ${process.pid}\n`);
  const stop = (): void => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await running;
  await connection.close();
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`cluster-worker: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
