import type { DecodedRun } from '../decode';
import type { Replayer } from '../replayer';
import { CheckName, Problems, type VerifyCheck } from '../report';

/** The `replay` check: every run replays with the current workflow code (no nondeterminism, no failure). */
export async function checkReplay(runs: DecodedRun[], workflowId: string, replayer: Replayer): Promise<VerifyCheck> {
  const problems = new Problems();
  for (const run of runs) {
    if (!run.json || !run.replayable) {
      problems.add(`run ${run.index + 1}: not replayed (the history is malformed)`);
      continue;
    }
    const outcome = await replayer.replay(run.json, workflowId, run.canonical);
    if (!outcome.ok) problems.add(`run ${run.index + 1}: ${outcome.error}`);
  }
  if (runs.length === 0) problems.add('nothing to replay');
  return problems.check(
    CheckName.Replay,
    `${runs.length} run(s) replayed with the current workflow code: no nondeterminism`,
  );
}
