import path from 'node:path';
import {
  NativeConnection,
  Worker,
  type ActivityInterceptorsFactory,
  type WorkflowBundleOption,
} from '@temporalio/worker';
import type { Logger as PinoLogger } from 'pino';
import { createActivities, type HttpExecutorOptions } from '../activities';
import { PolicyStore } from '../activities/policy-store';
import { createNotifyActivities } from '../activities/notify';
import { createTransparencyActivities } from '../activities/transparency';
import { RevocationCache, RevocationStore } from '../activities/revocations';
import { CredentialClaims } from '../activities/credential-claims';
import { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { DEFAULT_TASK_QUEUE } from '../contracts/status';
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
): Promise<{ worker: Worker; policies: PolicyStore; watchers: PolicyWatcher[] }> {
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
  const revocations = new RevocationCache(new RevocationStore(client, options.home), taskQueue, {
    ...(options.revocationCacheTtlMs !== undefined ? { ttlMs: options.revocationCacheTtlMs } : {}),
  });
  const worker = await Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue,
    activities: {
      ...options.extraActivities,
      // Webhook notifications (notifications.webhooks): secrets read here, from this worker's environment or files.
      ...createNotifyActivities({ policies, home: options.home }),
      // The transparency log's leaf store (GOVERNOR_HOME/transparency) and tree heads, signed with the receipt key.
      ...createTransparencyActivities({ home: options.home, ...(options.clock ? { clock: options.clock } : {}) }),
      ...createActivities({
        policies,
        home: options.home,
        clock: options.clock,
        ...(options.http ? { http: options.http } : {}),
        ...(options.observer ? { observer: options.observer } : {}),
        revocations,
        credentialClaims: new CredentialClaims(client, taskQueue, () =>
          (options.clock ? options.clock() : new Date()).getTime(),
        ),
      }),
    },
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
  // The registry's first task is queued before this worker polls, ahead of any burst of chains.
  await revocations.warm();
  const watchers: PolicyWatcher[] = [];
  if (watch) {
    // The watchers close themselves once the worker has stopped (checked on every poll).
    const shouldStop = (): boolean => ['STOPPED', 'FAILED'].includes(worker.getState());
    const common = { store: policies, shouldStop, ...(options.logger ? { logger: options.logger } : {}), ...watch };
    watchers.push(watchPolicyBundle({ ...common, dir, role: 'active', since }));
    if (shadowDir) watchers.push(watchPolicyBundle({ ...common, dir: shadowDir, role: 'shadow', since: shadowSince }));
  }
  return { worker, policies, watchers };
}
