import fs from 'node:fs';
import { Context } from '@temporalio/activity';
import { DefaultLogger, NativeConnection, Runtime, Worker, type ActivityInterceptorsFactory } from '@temporalio/worker';
import type { ServiceActivityInput } from '../../contracts/executor';
import { createServiceActivities } from '../../examples/service/activities';
import { Ledger, type LedgerEntry } from '../../examples/service/ledger';
import { createGovernorWorker } from '../../workers/worker';
import type { CrashMarker, CrashPoint } from './worker-process';

/*
 * Test-only child process (started by worker-process.ts): the governor worker AND the example
 * service worker with its file-backed ledger, in one process.
 *
 * Why one process: a real deployment loses the service's in-flight activity when its host dies, and
 * the crash points inside the step's execution ("the ledger recorded the effect, the activity has
 * not returned", "the activity returned, its completion is not reported") only exist in the process
 * that runs the service activity. With both workers here, one SIGKILL takes down the governor's
 * workflow task, its local activities (authorize, recordReceipt) and the service activity at once,
 * and the restarted process must recover all of them from Temporal's history and the ledger file
 * alone (the in-memory ledger index is rebuilt from the file, as after any crash).
 *
 * CRASH_AT / CRASH_STEP / CRASH_MARKER choose the point (see CRASH_POINTS); the child claims the
 * marker file (exclusive create) before it kills itself, so the restarted child never crashes again.
 *
 * A service step whose input names `holdUntilFile` appends its attempt to `<holdUntilFile>.entered`
 * and waits (before acting) until that file exists: the server-restart test uses it to keep a step
 * mid-execution while the server goes down.
 */

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const crashAt = process.env.CRASH_AT as CrashPoint | undefined;
const crashStep = process.env.CRASH_STEP;
const markerFile = process.env.CRASH_MARKER;

/** Kills this process with SIGKILL at `point` the first time it is reached (any process), else returns. */
function crashIf(point: CrashPoint, chainId: string, stepId: string | undefined): void {
  if (point !== crashAt || !crashStep || stepId !== crashStep || !markerFile) return;
  const marker: CrashMarker = { point, chainId, stepId: crashStep, pid: process.pid, at: new Date().toISOString() };
  try {
    fs.writeFileSync(markerFile, JSON.stringify(marker), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return; // crashed here once already
    throw err;
  }
  process.kill(process.pid, 'SIGKILL');
}

/** The governor's local activities: authorize (before / after its function) and recordReceipt of an execution. */
const governorCrashes: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const type = ctx.info.activityType;
      const arg = (input.args[0] ?? {}) as { chainId?: string; stepId?: string; kind?: string };
      const chainId = arg.chainId ?? '';
      if (type === 'authorize' && arg.kind === 'step') crashIf('before-authorize', chainId, arg.stepId);
      if (type === 'recordReceipt' && arg.kind === 'execution') crashIf('before-receipt', chainId, arg.stepId);
      const result = await next(input);
      if (type === 'authorize' && arg.kind === 'step') crashIf('after-authorize', chainId, arg.stepId);
      return result;
    },
  },
});

/** The service activity: delivered but not run, and returned but not reported. */
const serviceCrashes: ActivityInterceptorsFactory = () => ({
  inbound: {
    async execute(input, next) {
      const arg = input.args[0] as ServiceActivityInput | undefined;
      crashIf('before-execute', arg?.chainId ?? '', arg?.stepId);
      const result = await next(input);
      crashIf('after-execute', arg?.chainId ?? '', arg?.stepId);
      return result;
    },
  },
});

/** The example Ledger, killed right after it appended (and fsynced) the crash step's effect. */
class CrashingLedger extends Ledger {
  override executeOnce(entry: LedgerEntry): { entry: LedgerEntry; duplicate: boolean } {
    const done = super.executeOnce(entry);
    const slash = entry.idempotencyKey.lastIndexOf('/');
    if (!done.duplicate)
      crashIf('during-execute', entry.idempotencyKey.slice(0, slash), entry.idempotencyKey.slice(slash + 1));
    return done;
  }
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') });
  const { worker } = await createGovernorWorker({
    connection,
    namespace: 'default',
    taskQueue: env('GOVERNOR_TASK_QUEUE'),
    home: env('GOVERNOR_HOME'),
    ...(process.env.GOVERNOR_POLICIES ? { policiesDir: process.env.GOVERNOR_POLICIES } : {}),
    workflowBundle: { codePath: env('GOVERNOR_WORKFLOW_BUNDLE') },
    activityInterceptors: [governorCrashes],
  });
  const ledger = new CrashingLedger(env('EXAMPLE_LEDGER'));
  const base = createServiceActivities(ledger);
  const service = await Worker.create({
    connection,
    namespace: 'default',
    taskQueue: env('SERVICE_TASK_QUEUE'),
    activities: {
      ...base,
      async perform(input: ServiceActivityInput) {
        const hold = input.input.holdUntilFile;
        if (typeof hold === 'string') {
          fs.writeFileSync(`${hold}.entered`, `${Context.current().info.attempt}\n`, { flag: 'a' }); // one line per attempt
          while (!fs.existsSync(hold)) await Context.current().sleep(100);
        }
        return base.perform(input);
      },
    },
    interceptors: { activity: [serviceCrashes] },
  });
  const running = Promise.all([worker.run(), service.run()]);
  process.stdout.write(`ready ${process.pid}\n`);
  const stop = (): void => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    if (service.getState() === 'RUNNING') service.shutdown();
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
      process.stderr.write(`crash-worker: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
