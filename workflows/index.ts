/**
 * Workflow entry point bundled for the worker. Deterministic code only.
 *
 * Each workflow type loads its own modules when it runs, not when this entry is loaded. The SDK
 * evaluates the bundle's modules again for every workflow execution (each run gets its own module
 * state), and most of that cost is building zod schemas: a chain would otherwise also build the
 * coordinator's, the transparency log's and the fleet registry's. The exported names are the workflow
 * types recorded in history and must not change; each export is a function of that name (the client
 * takes a workflow's type from its function's name).
 *
 * The SDK reads a workflow's definition options (`setWorkflowOptions`: versioning behaviour, failure
 * exception types) from the exported function before it runs, so they would have to be set on these
 * exports, not in the workflow's own module. No governor workflow sets any.
 */
import type * as Chain from './governed-chain';
import type * as Session from './session';
import type * as Revocation from './revocation-registry';
import type * as Coordinator from './coordinator';
import type * as CredentialClaim from './credential-claim';
import type * as Notify from './notify';
import type * as Archive from './archive';
import type * as Fleet from './fleet-registry';
import type * as Transparency from './transparency-log';

type WorkflowFn = (...args: never[]) => Promise<unknown>;

/** `name` of the module `load` returns, loaded on the first call (webpack bundles the literal `require`). */
function whenRun<M extends Record<K, WorkflowFn>, K extends string>(load: () => M, name: K): M[K] {
  const run = (...args: Parameters<M[K]>): ReturnType<M[K]> => load()[name](...args) as ReturnType<M[K]>;
  return Object.defineProperty(run, 'name', { value: name }) as unknown as M[K];
}

export const governedChainWorkflow = whenRun(
  () => require('./governed-chain') as typeof Chain,
  'governedChainWorkflow',
);
export const governedSessionWorkflow = whenRun(() => require('./session') as typeof Session, 'governedSessionWorkflow');
export const revocationRegistryWorkflow = whenRun(
  () => require('./revocation-registry') as typeof Revocation,
  'revocationRegistryWorkflow',
);
export const coordinatorWorkflow = whenRun(() => require('./coordinator') as typeof Coordinator, 'coordinatorWorkflow');
export const credentialClaimWorkflow = whenRun(
  () => require('./credential-claim') as typeof CredentialClaim,
  'credentialClaimWorkflow',
);
export const governorNotifyWorkflow = whenRun(() => require('./notify') as typeof Notify, 'governorNotifyWorkflow');
export const governorArchiveWorkflow = whenRun(() => require('./archive') as typeof Archive, 'governorArchiveWorkflow');
export const governorArchiverWorkflow = whenRun(
  () => require('./archive') as typeof Archive,
  'governorArchiverWorkflow',
);
export const governorFleetWorkflow = whenRun(
  () => require('./fleet-registry') as typeof Fleet,
  'governorFleetWorkflow',
);
export const transparencyLogWorkflow = whenRun(
  () => require('./transparency-log') as typeof Transparency,
  'transparencyLogWorkflow',
);
