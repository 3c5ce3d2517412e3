import type { ChainResult } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

// Staging deploys coordinated in one domain (no approval needed there), with a short batching window.
const bundleDir = defaultBundleWith((m) => {
  m.coordination = {
    domains: [{ name: 'cluster:staging', resources: ['Environment::"staging"'], conflicts: [['deploy', 'deploy']], onConflict: 'reject', batchingWindow: '1s', tieBreakerRole: 'sre-lead', decisionDeadline: '30s' }],
    authority: { workloads: { [WORKLOAD]: 10, 'agent:intern': 1 }, default: 0 },
  };
});

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned({ policiesDir: bundleDir });
});
afterAll(async () => {
  await g?.stop();
});

const deploy = (workload: string, extra: Record<string, unknown> = {}) => ({ workload, steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' }, extra)] });

describe('chains coordinated on a shared resource (real server)', () => {
  it('lets the higher authority win a conflict, denies the other with the winner named, and links the verdicts into both receipt chains', async () => {
    const [bot, intern] = await Promise.all([g.gc.start(deploy(WORKLOAD), await g.creds()), g.gc.start(deploy('agent:intern'), await g.creds('agent:intern'))]);
    const [botResult, internResult] = (await Promise.all([bot.result(), intern.result()])) as [ChainResult, ChainResult];
    expect(botResult.status).toBe('Completed');
    expect(botResult.steps[0]!.coordination).toMatchObject({ domain: 'cluster:staging', status: 'released' });
    expect(g.ledger.has(`${bot.workflowId}/deploy`)).toBe(true);

    expect(internResult.status).toBe('Denied');
    expect(internResult.reason).toContain('coordination (cluster:staging)');
    expect(internResult.steps[0]!.coordination).toMatchObject({ status: 'rejected', conflictWith: `${bot.workflowId}/deploy` });
    expect(g.ledger.has(`${intern.workflowId}/deploy`)).toBe(false);
    // decision, coordination verdict, execution, checkpoint for the winner; decision, verdict, checkpoint for the loser
    expect(botResult.receiptHead.seq).toBe(4);
    expect(internResult.receiptHead.seq).toBe(3);
  });

  it('rejects a step planned against a stale resource version so its chain can re-plan', async () => {
    const first = await g.run(deploy(WORKLOAD));
    expect(first.status).toBe('Completed');
    const version = first.steps[0]!.coordination!.version!;
    const stale = await g.run(deploy(WORKLOAD, { coordination: { plannedVersion: Math.max(0, version - 1) } }));
    expect(stale.status).toBe('Denied');
    expect(stale.reason).toMatch(/stale: planned against version \d+, current \d+/);
    const fresh = await g.run(deploy(WORKLOAD, { coordination: { plannedVersion: version + 1 } }));
    expect(fresh.status).toBe('Completed');
  });
});
