/** Workflow entry point bundled for the worker. Deterministic code only. */
export { governedChainWorkflow } from './governed-chain';
export { governedSessionWorkflow } from './session';
export { revocationRegistryWorkflow } from './revocation-registry';
export { coordinatorWorkflow } from './coordinator';
export { credentialClaimWorkflow } from './credential-claim';
export { governorNotifyWorkflow } from './notify';
export { governorArchiveWorkflow, governorArchiverWorkflow } from './archive';
export { governorFleetWorkflow } from './fleet-registry';
export { transparencyLogWorkflow } from './transparency-log';
