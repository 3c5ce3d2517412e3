/**
 * Bundle entry of the bench worker: the governor's workflows exactly as shipped (the chain, and the
 * revocation registry, coordinator and credential claims `createGovernorWorker` relies on), plus the baselines.
 */
export * from '../workflows';
export { plainChainWorkflow, plainUpdateWorkflow, plainWaitWorkflow, shapedChainWorkflow } from './baseline-workflows';
