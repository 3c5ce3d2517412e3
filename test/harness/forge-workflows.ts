import { makeContinueAsNewFunc } from '@temporalio/workflow';
import type { GovernedChainInput } from '../../contracts/chain';
import type { governedChainWorkflow } from '../../workflows';

// The governor's workflows plus a hostile one, bundled only by the trust-boundary test.
export * from '../../workflows';

/**
 * An attacker's workflow that starts with a chain's id and continues as new into
 * `governedChainWorkflow` with whatever input it was given: a `resume` the governor never wrote.
 */
export async function forgeResumeWorkflow(forged: GovernedChainInput): Promise<void> {
  await makeContinueAsNewFunc<typeof governedChainWorkflow>({ workflowType: 'governedChainWorkflow' })(forged);
}
