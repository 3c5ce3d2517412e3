import path from 'node:path';
import {
  bundleWorkflowCode,
  NativeConnection,
  Worker,
  type ActivityInterceptorsFactory,
  type WorkflowBundleOption,
} from '@temporalio/worker';
import type { Logger as PinoLogger } from 'pino';
import { createActivities, type HttpExecutorOptions } from '../activities';
import { PolicyStore } from '../activities/policy-store';
import { createNotifyActivities } from '../activities/notify';
import { createArchiveActivities } from '../activities/archive';
import { archiveFromEnv, type ArchiveStore, type ProofAnchor } from '../audit/archive';
import { createTransparencyActivities } from '../activities/transparency';
import { RevocationCache, RevocationStore } from '../activities/revocations';
import { CredentialClaims } from '../activities/credential-claims';
import { FleetMember, type FleetMemberOptions } from '../activities/fleet';
import { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { DEFAULT_TASK_QUEUE } from '../contracts/status';
import {
  ARCHIVER_POSITION_MEMO,
  ARCHIVER_TASK_QUEUE,
  ARCHIVER_WORKFLOW,
  archiverWorkflowId,
  type ArchiverInput,
} from '../contracts/archive';
import { checkKeyRef, describeKeyRef, keyRefFromEnv, type KeyRef } from '../identity/key-ref';
import { controlTaskQueueFromEnv } from '../contracts/fleet';
import { bundleFingerprint, watchPolicyBundle, type PolicyWatcher } from './policy-watch';
import { projectRoot } from './temporal-cli';
import type { ActivityObserver } from '../runtime/observer';
import type { WorkerTracing } from '../runtime/tracing';

/** Options of the governor worker. */
export interface GovernorWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
  /** Policy bundle folder (default: the shipped `policies/default`). */
  policiesDir?: string;
  /** GOVERNOR_HOME (keys, JWKS). */
  home: string;
  /**
   * The receipt key by reference (identity/key-ref.ts): a key file (mode 0600) or a `governor signer`
   * socket. Default: `GOVERNOR_RECEIPT_KEY_FILE` / `GOVERNOR_RECEIPT_SIGNER`, else `<home>/keys`. The worker
   * refuses to start when the reference cannot sign (unreadable, too open, unpublished, no answer).
   */
  receiptKey?: KeyRef;
  logger?: PinoLogger;
  /** A prebuilt workflow bundle (tests build it once); default: bundle from source. */
  workflowBundle?: WorkflowBundleOption;
  /** 0 forces every workflow task to replay from history (tests). */
  maxCachedWorkflows?: number;
  clock?: () => Date;
  /**
   * Refuse to start (and, when watching, refuse to roll out) any bundle that is not signed by a
   * trusted policy-signing key: unsigned, tampered and untrusted bundles are errors.
   */
  requireSignedPolicy?: boolean;
  /** JWKS file of the trusted policy-signing keys (default `<home>/keys/policy-signing.jwks.json`). */
  policyTrustJwks?: string;
  /** Shadow mode: a candidate bundle evaluated beside the active one on every decision, never enforced. */
  shadowPoliciesDir?: string;
  /**
   * Live rollout: watch `policiesDir` (and `shadowPoliciesDir`) and activate changes without a restart
   * (`true`: defaults of 300 ms debounce, 2 s polling). Default off.
   */
  watchPolicies?: boolean | { debounceMs?: number; pollIntervalMs?: number };
  /**
   * Data converter of the worker and of its own client (revocation registry memo), e.g. payload
   * encryption from `runtime/codec.ts`. A prebuilt `workflowBundle` must have been bundled with the
   * same `failureConverterPath`. Default: Temporal's (no encryption).
   */
  dataConverter?: DataConverter;
  /** Further activities on the governor task queue (benchmark baselines); governor names win. */
  extraActivities?: Record<string, (...args: never[]) => Promise<unknown>>;
  /**
   * How long `authorize` reuses a verified revocation list (default 1000 ms: a workload revocation
   * reaches chains started within that time late; 0 reads the registry on every decision).
   */
  revocationCacheTtlMs?: number;
  /** Interceptors of this worker's activities, local ones included (the crash tests kill the worker inside one). */
  activityInterceptors?: ActivityInterceptorsFactory[];
  /**
   * The http executor: `protectedAddresses` are the Temporal endpoints this worker knows (frontend,
   * its HTTP API, Web UI), never callable even when allow-listed; pass at least the frontend address.
   */
  http?: HttpExecutorOptions;
  /** Metrics and decision log of the activities (runtime/operations.ts `Operations.observer`). */
  observer?: ActivityObserver;
  /**
   * OpenTelemetry (runtime/tracing.ts `startTracing().worker`): workflow and activity interceptors and the
   * workflow span sink. A prebuilt `workflowBundle` must have been bundled with `TRACING_WORKFLOW_INTERCEPTORS`.
   */
  tracing?: WorkerTracing;
  /**
   * The proof archive closed chains' sealed proofs are exported to (README "Archived proofs"): a store,
   * `false` (off), or default: from GOVERNOR_ARCHIVE (a directory, `s3://bucket/prefix`, `off`), else
   * `<home>/archive`.
   */
  archive?: ArchiveStore | false;
  /**
   * How archived proofs are anchored: default, in the transparency log of this task queue
   * (`transparencyLogIdFor`, run by this queue's workers, leaf store under `home`); `false` (or
   * GOVERNOR_ARCHIVE_ANCHOR=off): archived without an anchor; or another anchor function.
   */
  archiveAnchor?: ProofAnchor | false;
  /** The archiver's wait between sweeps (default 1 s, backing off to 10 s while idle). */
  archiveSweepIdleMs?: number;
  /**
   * Fleet membership (DESIGN §11): heartbeats to the namespace's fleet registry and the check that this
   * worker's bundle is the fleet's declared active one (else every decision is a deny). Default on;
   * `false` turns both off (in-process benchmarks).
   */
  fleet?: false | FleetMemberOptions;
  /**
   * Task queue of the namespace-wide registries (fleet, revocations), which this worker also polls with a
   * second, small worker (default GOVERNOR_CONTROL_TASK_QUEUE, else `governor-control`). Every governor
   * worker of a fleet must use the same; workers with another control queue are another fleet (own
   * registries, e.g. tests with their own keys in one namespace).
   */
  controlTaskQueue?: string;
}

/** Path of the shipped default policy bundle (data files stay in the source tree, also when running from dist/). */
export function defaultPoliciesDir(): string {
  return path.join(projectRoot(), 'policies', 'default');
}

/**
 * `payloadConverterPath` of the governor's workers, workflow bundles and replayers: undecodable payloads
 * reach the workflow's validation instead of failing its task forever (`runtime/payload-converter.ts`).
 */
export const PAYLOAD_CONVERTER_PATH = require.resolve('../runtime/payload-converter');

/** Creates the governor worker: workflows + activities on the governor task queue. */
export async function createGovernorWorker(
  options: GovernorWorkerOptions,
): Promise<{ worker: Worker; policies: PolicyStore; watchers: PolicyWatcher[]; fleet?: FleetMember }> {
  const receiptKey = options.receiptKey ?? keyRefFromEnv('receipt');
  if (receiptKey) {
    const { kid } = await checkKeyRef(options.home, 'receipt', receiptKey);
    options.logger?.info({ key: describeKeyRef('receipt', receiptKey), kid }, 'receipt key by reference');
  }
  const policies = new PolicyStore({
    home: options.home,
    requireSigned: options.requireSignedPolicy === true,
    ...(options.policyTrustJwks !== undefined ? { trustedKeysFile: path.resolve(options.policyTrustJwks) } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const dir = path.resolve(options.policiesDir ?? defaultPoliciesDir());
  const watch =
    options.watchPolicies === undefined || options.watchPolicies === false
      ? undefined
      : options.watchPolicies === true
        ? {}
        : options.watchPolicies;
  // Fingerprints taken before loading, so a change made while the bundle loads is still rolled out.
  const since = watch ? bundleFingerprint(dir) : undefined;
  // Refuses to start on an invalid bundle, or (requireSignedPolicy) an unsigned, tampered or untrusted one.
  const active = await policies.activateFrom(dir);
  options.logger?.info(
    {
      bundle: active.bundle.manifest.name,
      digest: active.bundle.digest,
      dir,
      signature: active.signature?.status ?? 'not checked',
    },
    'policy bundle active',
  );
  const shadowDir = options.shadowPoliciesDir !== undefined ? path.resolve(options.shadowPoliciesDir) : undefined;
  const shadowSince = watch && shadowDir ? bundleFingerprint(shadowDir) : undefined;
  if (shadowDir) {
    const shadow = policies.setShadowDir(shadowDir);
    options.logger?.info(
      { bundle: shadow.bundle.manifest.name, digest: shadow.bundle.digest, dir: shadowDir },
      'shadow policy bundle evaluated beside the active one (never enforced)',
    );
  }
  const workflowOption = options.workflowBundle
    ? { workflowBundle: options.workflowBundle }
    : { workflowsPath: require.resolve('../workflows') };
  const taskQueue = options.taskQueue ?? DEFAULT_TASK_QUEUE;
  // The worker's own client (revocation list, credential claims) decodes memos with the worker's converter.
  const client = new Client({
    connection: options.connection,
    namespace: options.namespace,
    ...(options.dataConverter ? { dataConverter: options.dataConverter } : {}),
  });
  const controlQueue = options.controlTaskQueue ?? controlTaskQueueFromEnv(process.env);
  // Namespace-wide: one list for every task queue (this queue's earlier list is carried over).
  const revocations = new RevocationCache(new RevocationStore(client, options.home), controlQueue, {
    ...(options.revocationCacheTtlMs !== undefined ? { ttlMs: options.revocationCacheTtlMs } : {}),
    legacyTaskQueue: taskQueue,
  });
  // Refuses to start on a bad archive configuration (an unusable S3 location, credentials missing).
  const archive = options.archive === false ? undefined : (options.archive ?? archiveFromEnv(options.home));
  options.logger?.info({ archive: archive?.location ?? 'off' }, 'proof archive');
  const fleet =
    options.fleet === false
      ? undefined
      : new FleetMember(client, policies, taskQueue, { controlTaskQueue: controlQueue, ...options.fleet });
  const governorActivities = createActivities({
    policies,
    home: options.home,
    ...(receiptKey ? { receiptKey } : {}),
    clock: options.clock,
    ...(options.http ? { http: options.http } : {}),
    ...(options.observer ? { observer: options.observer } : {}),
    revocations,
    ...(fleet ? { fleet } : {}),
    credentialClaims: new CredentialClaims(client, taskQueue, () =>
      (options.clock ? options.clock() : new Date()).getTime(),
    ),
  });
  const activities = {
    ...options.extraActivities,
    // Webhook notifications (notifications.webhooks): secrets read here, from this worker's environment or files.
    ...createNotifyActivities({ policies, home: options.home }),
    // The transparency log's leaf store (GOVERNOR_HOME/transparency) and tree heads, signed with the receipt key.
    ...createTransparencyActivities({ home: options.home, ...(options.clock ? { clock: options.clock } : {}) }),
    // Sealed proofs of closed chains, exported to the proof archive (detached archive workflow).
    ...createArchiveActivities({
      home: options.home,
      store: archive,
      ...(receiptKey ? { receiptKey } : {}),
      ...(options.dataConverter?.payloadCodecs ? { codecs: options.dataConverter.payloadCodecs } : {}),
      ...(options.archiveAnchor !== undefined
        ? { anchor: options.archiveAnchor }
        : process.env.GOVERNOR_ARCHIVE_ANCHOR === 'off'
          ? { anchor: false as const }
          : {}),
    }),
    ...governorActivities,
  };
  const worker = await Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue,
    activities,
    ...workflowOption,
    dataConverter: { ...options.dataConverter, payloadConverterPath: PAYLOAD_CONVERTER_PATH },
    ...(options.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: options.maxCachedWorkflows } : {}),
    ...(options.activityInterceptors?.length || options.tracing
      ? {
          interceptors: {
            activity: [...(options.tracing?.activity ?? []), ...(options.activityInterceptors ?? [])],
            ...(options.tracing && !options.workflowBundle ? { workflowModules: options.tracing.workflowModules } : {}),
          },
        }
      : {}),
    ...(options.tracing ? { sinks: options.tracing.sinks } : {}),
  });
  // The control task queue's worker (namespace-wide registries), run and stopped with the main one.
  if (controlQueue !== taskQueue) {
    const control = await Worker.create({
      connection: options.connection,
      namespace: options.namespace,
      taskQueue: controlQueue,
      activities: governorActivities,
      workflowBundle:
        options.workflowBundle ??
        (await bundleWorkflowCode({
          workflowsPath: require.resolve('../workflows/control'),
          payloadConverterPath: PAYLOAD_CONVERTER_PATH,
          ...(options.dataConverter?.failureConverterPath
            ? { failureConverterPath: options.dataConverter.failureConverterPath }
            : {}),
        })),
      dataConverter: { ...options.dataConverter, payloadConverterPath: PAYLOAD_CONVERTER_PATH },
      maxConcurrentWorkflowTaskExecutions: 4,
      maxConcurrentActivityTaskExecutions: 8,
      ...(options.tracing ? { sinks: options.tracing.sinks } : {}),
    });
    runAlongside(worker, control);
  }
  // The registry's first task is queued before this worker polls, ahead of any burst of chains.
  await revocations.warm();
  // The first heartbeat (which starts the fleet registry when none runs) before this worker polls.
  await fleet?.start(
    () => ['STOPPED', 'FAILED'].includes(worker.getState()),
    (err) => options.logger?.warn({ err: (err as Error)?.message }, 'fleet heartbeat failed'),
  );
  // The queue's archiver (one per task queue, whichever worker starts it first) exports closed chains' proofs.
  if (archive) await startArchiver(client, taskQueue, options);
  const watchers: PolicyWatcher[] = [];
  if (watch) {
    // The watchers close themselves once the worker has stopped (checked on every poll).
    const shouldStop = (): boolean => ['STOPPED', 'FAILED'].includes(worker.getState());
    const common = { store: policies, shouldStop, ...(options.logger ? { logger: options.logger } : {}), ...watch };
    watchers.push(watchPolicyBundle({ ...common, dir, role: 'active', since }));
    if (shadowDir) watchers.push(watchPolicyBundle({ ...common, dir: shadowDir, role: 'shadow', since: shadowSince }));
  }
  return { worker, policies, watchers, ...(fleet ? { fleet } : {}) };
}

/** The archiver's wait after a sweep that found work (its idle wait, 1 s by default, applies otherwise). */
const ARCHIVER_BUSY_MS = 250;

/**
 * Starts the task queue's archiver unless it runs (workflows/archive.ts). A failure to start is logged, not
 * fatal: chains do not depend on it, and the next worker start tries again.
 */
async function startArchiver(client: Client, taskQueue: string, options: GovernorWorkerOptions): Promise<void> {
  const workflowId = archiverWorkflowId(taskQueue);
  const log = options.logger;
  if (!ARCHIVER_TASK_QUEUE.test(taskQueue)) {
    log?.error({ taskQueue }, 'proof archiver not started: the task queue name cannot be used in a visibility query');
    return;
  }
  try {
    // A new archiver resumes where the last one of this queue stopped (terminated, failed): no chain is skipped.
    let since: string | undefined;
    for await (const w of client.workflow.list({
      query: `WorkflowId = '${workflowId}' AND ExecutionStatus != 'Running'`,
    })) {
      const p = w.type === ARCHIVER_WORKFLOW ? w.memo?.[ARCHIVER_POSITION_MEMO] : undefined;
      if (typeof p === 'string' && !Number.isNaN(Date.parse(p)) && (!since || Date.parse(p) > Date.parse(since)))
        since = p;
    }
    if (since && Date.parse(since) > Date.now()) since = new Date().toISOString();
    const input: ArchiverInput = {
      taskQueue,
      ...(since ? { since } : {}),
      ...(options.archiveSweepIdleMs !== undefined ? { idleMs: options.archiveSweepIdleMs } : {}),
      busyMs: ARCHIVER_BUSY_MS,
    };
    const handle = await client.workflow.start(ARCHIVER_WORKFLOW, {
      workflowId,
      taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      staticSummary: `export the proofs of ${taskQueue}'s closed chains to the archive`,
    });
    // The id held by something else (a squatter): say so loudly, proofs of this queue are not archived.
    const d = await handle.describe();
    if (d.type !== ARCHIVER_WORKFLOW || d.taskQueue !== taskQueue)
      log?.error(
        { workflowId, type: d.type, taskQueue: d.taskQueue },
        "proof archiver id held by another workflow: this queue's proofs are not archived until it is gone",
      );
  } catch (err) {
    log?.warn({ workflowId, err: (err as Error)?.message }, 'proof archiver not started');
  }
}

/**
 * Makes `main.run()` also run `companion`, and stop it when `main` stops (whatever stopped it); `main.run()`
 * resolves (or rejects) once both have stopped. A companion that fails stops the main worker too.
 */
function runAlongside(main: Worker, companion: Worker): void {
  const run = main.run.bind(main);
  main.run = async (): Promise<void> => {
    const other = companion.run().catch((err: unknown) => {
      if (main.getState() === 'RUNNING') main.shutdown();
      throw err;
    });
    try {
      await run();
    } finally {
      if (companion.getState() === 'RUNNING') companion.shutdown();
      await other.catch(() => undefined);
    }
    await other;
  };
}
