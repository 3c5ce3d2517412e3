/**
 * Workflow entry point of the control task queue (`GOVERNOR_CONTROL_TASK_QUEUE`): the namespace-wide
 * registries only. Deterministic code only.
 */
export { revocationRegistryWorkflow } from './revocation-registry';
export { governorFleetWorkflow } from './fleet-registry';
