import path from 'node:path';
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import type { Logger as PinoLogger } from 'pino';
import { createActivities } from '../activities';
import { PolicyStore } from '../activities/policy-store';
import { DEFAULT_TASK_QUEUE } from '../contracts/status';
import { projectRoot } from './temporal-cli';

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
}

/** Path of the shipped default policy bundle (data files stay in the source tree, also when running from dist/). */
export function defaultPoliciesDir(): string {
  return path.join(projectRoot(), 'policies', 'default');
}

/** Creates the governor worker: workflows + activities on the governor task queue. */
export async function createGovernorWorker(options: GovernorWorkerOptions): Promise<{ worker: Worker; policies: PolicyStore }> {
  const policies = new PolicyStore();
  const dir = options.policiesDir ?? defaultPoliciesDir();
  const active = policies.activateDir(dir);
  options.logger?.info({ bundle: active.bundle.manifest.name, digest: active.bundle.digest, dir }, 'policy bundle active');
  const workflowOption = options.workflowBundle
    ? { workflowBundle: options.workflowBundle }
    : { workflowsPath: require.resolve('../workflows') };
  const worker = await Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue ?? DEFAULT_TASK_QUEUE,
    activities: createActivities({ policies, home: options.home, clock: options.clock }),
    ...workflowOption,
    ...(options.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: options.maxCachedWorkflows } : {}),
  });
  return { worker, policies };
}
