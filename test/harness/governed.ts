import { Client, Connection } from '@temporalio/client';
import { eventually } from './eventually';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import type { HttpExecutorOptions } from '../../activities';
import { issueAttestation, issueCredential, loadPublicJwks } from '../../identity';
import type { ChainResult, ChainState } from '../../contracts/state';
import { GovernorClient } from '../../sdk/client';
import { createServiceActivities } from '../../examples/service/activities';
import { Ledger } from '../../examples/service/ledger';
import { controlQueueOf, makeHome, startGovernorWorker, testAddress, uniqueQueue } from './temporal';

export const WORKLOAD = 'agent:release-bot';

/** A governor worker plus the example service worker (with its ledger) on the shared test server. */
export interface Governed {
  home: string;
  taskQueue: string;
  serviceQueue: string;
  client: Client;
  gc: GovernorClient;
  ledger: Ledger;
  governor: Awaited<ReturnType<typeof startGovernorWorker>>;
  /** A step executed by the example service's `perform` activity on its own task queue. */
  serviceStep(
    id: string,
    action: string,
    resource: { type: string; id: string },
    extra?: Record<string, unknown>,
  ): Record<string, unknown>;
  /** A fresh credential + attestation for `sub`. */
  creds(
    sub?: string,
    options?: { now?: Date; ttlSeconds?: number },
  ): Promise<{ credential: string; attestation: string }>;
  /** Starts a chain as `sub` and waits for its result. */
  run(chain: unknown, c?: { credential: string; attestation: string }): Promise<ChainResult>;
  /** Polls the chain until `predicate` holds for its state (or ~10 s pass). */
  waitFor(chainId: string, predicate: (s: ChainState) => boolean): Promise<ChainState>;
  stop(): Promise<void>;
}

/** Starts a governor worker on `policiesDir` and an example service worker, each on a unique queue. */
export async function setupGoverned(
  options: {
    policiesDir?: string;
    extraActivities?: (ledger: Ledger) => Record<string, (...args: never[]) => Promise<unknown>>;
    /** Used by the client, the governor worker and the service worker alike (payload encryption). */
    dataConverter?: DataConverter;
    /** Workflow code of the governor worker (default: the bundle global-setup built). */
    workflowBundle?: WorkflowBundleOption;
    /** A shared GOVERNOR_HOME (same keys) lets several deployments accept the same tokens. */
    home?: string;
    /** http executor options of the governor worker (protected endpoints besides the test server's frontend, a resolver). */
    http?: HttpExecutorOptions;
    /** The worker's revocation cache TTL (0: every decision reads the registry, so a test need not wait). */
    revocationCacheTtlMs?: number;
    /** The example service refuses calls without a valid execution grant (sdk/grant.ts), as the example worker does. */
    requireGrants?: boolean;
    /** The governor worker's proof archive (default: the worker's, `<home>/archive`); `false`: off. */
    archive?: false;
  } = {},
): Promise<Governed> {
  const home = options.home ?? (await makeHome());
  const taskQueue = uniqueQueue('governor');
  const serviceQueue = uniqueQueue('service');
  const connection = await Connection.connect({ address: testAddress() });
  const dc = options.dataConverter ? { dataConverter: options.dataConverter } : {};
  const client = new Client({ connection, ...dc });
  const gc = new GovernorClient(client, taskQueue, controlQueueOf(taskQueue));
  // A workflow cache here: with maxCachedWorkflows 0 the SDK (1.24) evicts a run when a signal (a
  // vote, a slot verdict) arrives during a local activity, and the task only resumes after its 10 s
  // timeout. Replay from history is covered by test/integration/chain.test.ts (cache 0) and the
  // replay regression suite.
  const governor = await startGovernorWorker({
    home,
    taskQueue,
    policiesDir: options.policiesDir,
    maxCachedWorkflows: 100,
    ...dc,
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : {}),
    ...(options.http ? { http: options.http } : {}),
    ...(options.revocationCacheTtlMs !== undefined ? { revocationCacheTtlMs: options.revocationCacheTtlMs } : {}),
    ...(options.archive === false ? { archive: false as const } : {}),
  });
  const ledger = new Ledger();
  const serviceConnection = await NativeConnection.connect({ address: testAddress() });
  const serviceWorker = await Worker.create({
    connection: serviceConnection,
    taskQueue: serviceQueue,
    ...dc,
    activities: {
      ...createServiceActivities(
        ledger,
        options.requireGrants ? { grants: { keys: loadPublicJwks(home, 'grant'), audience: serviceQueue } } : {},
      ),
      ...(options.extraActivities?.(ledger) ?? {}),
    },
  });
  const serviceRun = serviceWorker.run();

  const creds: Governed['creds'] = async (sub = WORKLOAD, o = {}) => ({
    credential: await issueCredential({ home, sub, now: o.now, ttlSeconds: o.ttlSeconds }),
    attestation: await issueAttestation({ home, sub }),
  });
  return {
    home,
    taskQueue,
    serviceQueue,
    client,
    gc,
    ledger,
    governor,
    serviceStep: (id, action, resource, extra = {}) => ({
      id,
      action,
      resource,
      executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
      ...extra,
    }),
    creds,
    async run(chain, c) {
      const handle = await gc.start(chain, c ?? (await creds()));
      return (await handle.result()) as ChainResult;
    },
    async waitFor(chainId, predicate) {
      // The first workflow task may not have run yet: a failing status query counts as "not yet".
      let last: ChainState | undefined;
      try {
        return await eventually(
          `chain ${chainId} to reach the expected state`,
          async () => {
            last = await gc.status(chainId);
            return predicate(last) ? last : undefined;
          },
          { timeoutMs: 30_000 },
        );
      } catch (err) {
        throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last?.status)}`);
      }
    },
    async stop() {
      serviceWorker.shutdown();
      await serviceRun;
      await serviceConnection.close();
      await governor.stop();
      await connection.close();
    },
  };
}
