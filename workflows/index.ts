/**
 * Workflow entry point bundled for the worker. Deterministic code only.
 *
 * Each workflow type loads its own modules when it runs, not when this entry is loaded. The SDK
 * evaluates the bundle's modules again for every workflow execution (each run gets its own module
 * state), and most of that cost is building zod schemas: a chain would otherwise also build the
 * coordinator's, the transparency log's and the fleet registry's. The exported names are the workflow
 * types recorded in history and must not change.
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

type Fn = (...args: never[]) => unknown;
type Args<F extends Fn> = Parameters<F>;
type Result<F extends Fn> = ReturnType<F>;

export function governedChainWorkflow(
  ...a: Args<typeof Chain.governedChainWorkflow>
): Result<typeof Chain.governedChainWorkflow> {
  return (require('./governed-chain') as typeof Chain).governedChainWorkflow(...a);
}
export function governedSessionWorkflow(
  ...a: Args<typeof Session.governedSessionWorkflow>
): Result<typeof Session.governedSessionWorkflow> {
  return (require('./session') as typeof Session).governedSessionWorkflow(...a);
}
export function revocationRegistryWorkflow(
  ...a: Args<typeof Revocation.revocationRegistryWorkflow>
): Result<typeof Revocation.revocationRegistryWorkflow> {
  return (require('./revocation-registry') as typeof Revocation).revocationRegistryWorkflow(...a);
}
export function coordinatorWorkflow(
  ...a: Args<typeof Coordinator.coordinatorWorkflow>
): Result<typeof Coordinator.coordinatorWorkflow> {
  return (require('./coordinator') as typeof Coordinator).coordinatorWorkflow(...a);
}
export function credentialClaimWorkflow(
  ...a: Args<typeof CredentialClaim.credentialClaimWorkflow>
): Result<typeof CredentialClaim.credentialClaimWorkflow> {
  return (require('./credential-claim') as typeof CredentialClaim).credentialClaimWorkflow(...a);
}
export function governorNotifyWorkflow(
  ...a: Args<typeof Notify.governorNotifyWorkflow>
): Result<typeof Notify.governorNotifyWorkflow> {
  return (require('./notify') as typeof Notify).governorNotifyWorkflow(...a);
}
export function governorArchiveWorkflow(
  ...a: Args<typeof Archive.governorArchiveWorkflow>
): Result<typeof Archive.governorArchiveWorkflow> {
  return (require('./archive') as typeof Archive).governorArchiveWorkflow(...a);
}
export function governorArchiverWorkflow(
  ...a: Args<typeof Archive.governorArchiverWorkflow>
): Result<typeof Archive.governorArchiverWorkflow> {
  return (require('./archive') as typeof Archive).governorArchiverWorkflow(...a);
}
export function governorFleetWorkflow(
  ...a: Args<typeof Fleet.governorFleetWorkflow>
): Result<typeof Fleet.governorFleetWorkflow> {
  return (require('./fleet-registry') as typeof Fleet).governorFleetWorkflow(...a);
}
export function transparencyLogWorkflow(
  ...a: Args<typeof Transparency.transparencyLogWorkflow>
): Result<typeof Transparency.transparencyLogWorkflow> {
  return (require('./transparency-log') as typeof Transparency).transparencyLogWorkflow(...a);
}
