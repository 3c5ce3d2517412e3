/** Bundle entry of the bench worker: the governed chain exactly as shipped, plus the baselines. */
export { governedChainWorkflow } from '../workflows';
export { plainChainWorkflow, plainWaitWorkflow, shapedChainWorkflow } from './baseline-workflows';
