import type { ChainResult } from '../../contracts/state';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned();
});
afterAll(async () => {
  await g?.stop();
});

describe('long chains continue as new', () => {
  it('carries the receipt head, step states and completed steps across runs, executing each step once', async () => {
    const steps = Array.from({ length: 5 }, (_, i) =>
      g.serviceStep(
        `s${i + 1}`,
        'deploy',
        { type: 'Environment', id: 'staging' },
        { compensation: { action: 'rollback', executor: { type: 'noop' } } },
      ),
    );
    const started = await g.gc.start(
      { workload: WORKLOAD, steps },
      { ...(await g.creds()), options: { continueAsNewAfterSteps: 2 } },
    );
    const can = (await started.result()) as ChainResult;
    expect(can.status).toBe('Completed');
    expect(can.steps.map((s) => s.status)).toEqual(['completed', 'completed', 'completed', 'completed', 'completed']);
    // 5 decisions + 5 executions + a checkpoint per continue-as-new (2) + the final checkpoint,
    // one unbroken chain across three runs
    expect(can.receiptHead.seq).toBe(13);
    for (let i = 1; i <= 5; i++)
      expect(g.ledger.all().filter((e) => e.idempotencyKey === `${started.workflowId}/s${i}`)).toHaveLength(1);

    // Three runs: the first two continued as new.
    const runs: string[] = [];
    for await (const wf of g.client.workflow.list({ query: `WorkflowId = '${started.workflowId}'` }))
      runs.push(wf.status.name);
    expect(runs.sort()).toEqual(['COMPLETED', 'CONTINUED_AS_NEW', 'CONTINUED_AS_NEW']);
  });
});
