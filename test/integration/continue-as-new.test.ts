import { createReplayer, fetchChainHistories, verifyChain, type HistoryJson, type Replayer } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

let g: Governed;
let replayer: Replayer;
beforeAll(async () => {
  g = await setupGoverned();
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});
afterAll(async () => {
  await replayer?.close();
  await g?.stop();
});

/** The decoded input a run of the chain started with. */
function runInput(history: HistoryJson): Record<string, unknown> {
  const events = history.events as {
    workflowExecutionStartedEventAttributes?: { input?: { payloads?: { data?: string }[] } };
  }[];
  const data = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data ?? '';
  return JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as Record<string, unknown>;
}

/** Local activities of one type a run recorded. */
function localActivities(history: HistoryJson, type: string): number {
  const events = history.events as {
    markerRecordedEventAttributes?: { markerName?: string; details?: { data?: { payloads?: { data?: string }[] } } };
  }[];
  return events.filter((e) => {
    const m = e.markerRecordedEventAttributes;
    if (m?.markerName !== 'core_local_activity') return false;
    const data = Buffer.from(m.details?.data?.payloads?.[0]?.data ?? '', 'base64').toString('utf8');
    return (JSON.parse(data) as { activity_type?: string }).activity_type === type;
  }).length;
}

const notify = (id: string) => ({
  id,
  action: 'notify',
  resource: { type: 'Channel', id: 'releases' },
  executor: { type: 'noop' as const },
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

  it('carries the step states packed, unpacks them unchanged, and signs the last checkpoint in the last step (lean runs)', async () => {
    const steps = Array.from({ length: 5 }, (_, i) => notify(`n${i + 1}`));
    const started = await g.gc.start(
      { workload: WORKLOAD, steps },
      { ...(await g.creds()), options: { continueAsNewAfterSteps: 2 } },
    );
    const r = (await started.result()) as ChainResult;
    expect(r.status).toBe('Completed');
    // Every state as a single run would show it: the decision and the built-in outcome of each step.
    expect(r.steps.map((s) => [s.id, s.status, s.decision?.effect, s.outcome])).toEqual(
      steps.map((s) => [
        s.id,
        'completed',
        'allow',
        { executor: 'noop', idempotencyKey: `${started.workflowId}/${s.id}` },
      ]),
    );
    expect(r.packedSteps).toBeUndefined(); // a short chain's result holds its states in full
    expect(r.receiptHead.seq).toBe(13); // 5 x (decision, execution), 2 continue-as-new checkpoints, the final one

    const histories = await fetchChainHistories(g.client, started.workflowId);
    expect(histories).toHaveLength(3);
    for (const h of histories.slice(1)) {
      const resume = runInput(h).resume as {
        steps: unknown[];
        packedSteps?: { decisions: unknown[]; steps: unknown[] };
      };
      expect(resume.steps).toEqual([]);
      expect(resume.packedSteps?.steps).toHaveLength(5);
      expect(resume.packedSteps?.decisions).toHaveLength(1);
    }
    // The run that finished signed its checkpoint in the last step's governStep: no recordReceipt after the loop.
    expect(localActivities(histories[2]!, 'recordReceipt')).toBe(0);
    const report = await verifyChain({ histories, chainId: started.workflowId, home: g.home, replayer });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report).toMatchObject({ verdict: 'verified', runs: 3, receipts: 13, status: 'Completed' });
  });

  it("returns a long chain's step states packed; the SDK client and verify read them unpacked", async () => {
    const steps = Array.from({ length: 101 }, (_, i) => notify(`n${i + 1}`));
    const started = await g.gc.start(
      { workload: WORKLOAD, steps },
      { ...(await g.creds()), options: { continueAsNewAfterSteps: 60 } },
    );
    const raw = (await started.result()) as ChainResult;
    expect(raw.status).toBe('Completed');
    expect(raw.steps).toEqual([]);
    expect(raw.packedSteps?.steps).toHaveLength(101);
    expect(raw.packedSteps?.decisions).toHaveLength(1);
    const r = await g.gc.result(started.workflowId);
    expect(r).not.toHaveProperty('packedSteps');
    expect(r.steps.map((s) => [s.id, s.status, s.decision?.effect, s.outcome?.idempotencyKey])).toEqual(
      steps.map((s) => [s.id, 'completed', 'allow', `${started.workflowId}/${s.id}`]),
    );
    const histories = await fetchChainHistories(g.client, started.workflowId);
    const report = await verifyChain({ histories, chainId: started.workflowId, home: g.home, replayer });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report).toMatchObject({ verdict: 'verified', runs: 2, receipts: 204, status: 'Completed' });

    // A result whose packed states were altered (a decision's digest) is refused.
    const altered = JSON.parse(JSON.stringify(histories)) as HistoryJson[];
    const events = altered[1]!.events as Record<string, Record<string, unknown>>[];
    const done = events[events.length - 1]!.workflowExecutionCompletedEventAttributes as {
      result: { payloads: { data: string }[] };
    };
    const result = JSON.parse(Buffer.from(done.result.payloads[0]!.data, 'base64').toString('utf8')) as ChainResult;
    result.packedSteps!.steps[7]!.i = 'f'.repeat(64);
    done.result.payloads[0]!.data = Buffer.from(JSON.stringify(result)).toString('base64');
    const refused = await verifyChain({ histories: altered, chainId: started.workflowId, home: g.home, replayer });
    expect(refused.verdict).not.toBe('verified');
  });
});
