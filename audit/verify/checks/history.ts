import { canonicalJson } from '../../../core/canonical';
import type { DecodedRun } from '../decode';
import type { Problems } from '../report';

/**
 * The runs form one chain: each of the chain id, each continuing the one before it (continue-as-new,
 * or a reset's new run id), with the same first run and chain, and resume state after the first.
 */
export function checkRunLinks(runs: DecodedRun[], chainId: string | null, history: Problems): void {
  runs.forEach((run, i) => {
    if (run.input && chainId !== null && run.input.chainId !== chainId)
      history.add(`run ${i + 1}: chain ${run.input.chainId}, not ${chainId}`);
    if (run.workflowId !== undefined && chainId !== null && run.workflowId !== chainId)
      history.add(`run ${i + 1}: workflow ${run.workflowId}, not ${chainId}`);
    if (i === 0) {
      if (run.continuedFrom) history.add('run 1 continues an earlier run that is missing');
      if (run.input?.resume) history.add('run 1 resumes a chain (earlier runs are missing)');
      return;
    }
    const prev = runs[i - 1]!;
    if (prev.closure?.type !== 'continued-as-new')
      history.add(`run ${i}: does not continue as new, yet run ${i + 1} follows it`);
    else if (!run.runId || prev.closure.newRunId !== run.runId)
      history.add(`run ${i + 1}: is not the run that run ${i} continued as`);
    // A run that was itself made by a reset continues as new under the id the reset gave it.
    if (!run.continuedFrom || (run.continuedFrom !== prev.runId && run.continuedFrom !== prev.resetAs))
      history.add(`run ${i + 1}: does not continue run ${i}`);
    if (run.firstRunId !== runs[0]!.firstRunId) history.add(`run ${i + 1}: belongs to another first run`);
    if (!run.input?.resume) history.add(`run ${i + 1}: carries no resume state`);
    if (run.input && prev.input && canonicalJson(run.input.chain) !== canonicalJson(prev.input.chain))
      history.add(`run ${i + 1}: carries another chain than run ${i}`);
  });
  const last = runs[runs.length - 1];
  if (last?.closure?.type === 'continued-as-new')
    history.add(`run ${runs.length} continued as new, but the next run is missing`);
}
