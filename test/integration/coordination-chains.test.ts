import { spawn } from 'node:child_process';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { ServiceActivityInput } from '../../contracts/executor';
import type { ChainResult } from '../../contracts/state';
import { CoordinationClient } from '../../sdk/coordination';
import { testAddress } from '../harness/temporal';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

// Staging deploys coordinated in one domain (no approval needed there), with a short batching window.
const bundleDir = defaultBundleWith((m) => {
  m.coordination = {
    domains: [
      {
        name: 'cluster:staging',
        resources: ['Environment::"staging"'],
        conflicts: [['deploy', 'deploy']],
        onConflict: 'reject',
        batchingWindow: '1s',
        tieBreakerRole: 'sre-lead',
        decisionDeadline: '30s',
      },
    ],
    authority: { workloads: { [WORKLOAD]: 10, 'agent:intern': 1 }, default: 0 },
  };
});

// A service activity that holds its slot until the test releases it.
const gate: { open?: () => void; started: string[] } = { started: [] };
let g: Governed;
beforeAll(async () => {
  g = await setupGoverned({
    policiesDir: bundleDir,
    extraActivities: () => ({
      async hold(input: ServiceActivityInput) {
        gate.started.push(input.idempotencyKey);
        const released = new Promise<void>((r) => (gate.open = r));
        while (
          !(await Promise.race([
            released.then(() => true),
            Context.current()
              .sleep(200)
              .then(() => false),
          ]))
        )
          Context.current().heartbeat();
        return { held: input.idempotencyKey };
      },
    }),
  });
});
afterAll(async () => {
  await g?.stop();
});

const deploy = (workload: string, extra: Record<string, unknown> = {}) => ({
  workload,
  steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' }, extra)],
});

describe('chains coordinated on a shared resource (real server)', () => {
  it('lets the higher authority win a conflict, denies the other with the winner named, and links the verdicts into both receipt chains', async () => {
    const [bot, intern] = await Promise.all([
      g.gc.start(deploy(WORKLOAD), await g.creds()),
      g.gc.start(deploy('agent:intern'), await g.creds('agent:intern')),
    ]);
    const [botResult, internResult] = (await Promise.all([bot.result(), intern.result()])) as [
      ChainResult,
      ChainResult,
    ];
    expect(botResult.status).toBe('Completed');
    expect(botResult.steps[0]!.coordination).toMatchObject({ domain: 'cluster:staging', status: 'released' });
    expect(g.ledger.has(`${bot.workflowId}/deploy`)).toBe(true);

    expect(internResult.status).toBe('Denied');
    expect(internResult.reason).toContain('coordination (cluster:staging)');
    expect(internResult.steps[0]!.coordination).toMatchObject({
      status: 'rejected',
      conflictWith: `${bot.workflowId}/deploy`,
    });
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

  it('shows a queued chain its place in the queue, and a chain revoked while queued leaves the queue', async () => {
    const holding = {
      workload: WORKLOAD,
      steps: [
        {
          id: 'deploy',
          action: 'deploy',
          resource: { type: 'Environment', id: 'staging' },
          executor: { type: 'activity', taskQueue: g.serviceQueue, activityType: 'hold', heartbeatTimeoutMs: 2000 },
        },
      ],
    };
    const holder = await g.gc.start(holding, await g.creds());
    for (let i = 0; i < 100 && !gate.started.includes(`${holder.workflowId}/deploy`); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(gate.started).toContain(`${holder.workflowId}/deploy`);

    const queued = await g.gc.start(
      { workload: 'agent:intern', steps: [g.serviceStep('notify', 'deploy', { type: 'Environment', id: 'staging' })] },
      await g.creds('agent:intern'),
    );
    await g.waitFor(queued.workflowId, (s) => s.steps[0]!.coordination?.position === 1);
    const coordination = new CoordinationClient(g.client, g.taskQueue);
    expect((await coordination.state('cluster:staging')).queue.map((q) => q.requestId)).toEqual([
      `${queued.workflowId}/notify`,
    ]);

    // `governor status` shows the place in the queue.
    const status = await new Promise<string>((resolve) => {
      const child = spawn(
        process.execPath,
        [path.join(__dirname, '..', '..', 'bin', 'governor.js'), 'status', queued.workflowId],
        { env: { ...process.env, TEMPORAL_ADDRESS: testAddress() } },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', () => resolve(out));
    });
    expect(status).toContain('coordination cluster:staging: queued, place 1 in the queue');

    // What a person sees in the UI: the current details of the chain and of the coordinator.
    const details = async (workflowId: string): Promise<string> =>
      (await g.client.workflow.getHandle(workflowId).query<{ currentDetails: string }>('__temporal_workflow_metadata'))
        .currentDetails ?? '';
    expect(await details(queued.workflowId)).toContain('queued in cluster:staging, place 1');
    expect(await details(holder.workflowId)).toContain('**deploy** on `Environment::"staging"`: executing');
    expect(await details(coordination.coordinatorId('cluster:staging'))).toContain(`${queued.workflowId}/notify`);

    await g.gc.revoke(queued.workflowId, { reason: 'no longer needed' });
    expect(((await queued.result()) as ChainResult).status).toBe('Revoked');
    let queue: string[] = ['?'];
    for (let i = 0; i < 50 && queue.length > 0; i++) {
      queue = (await coordination.state('cluster:staging')).queue.map((q) => q.requestId);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(queue).toEqual([]);
    expect(g.ledger.has(`${queued.workflowId}/notify`)).toBe(false);

    gate.open!();
    expect(((await holder.result()) as ChainResult).status).toBe('Completed');
  });
});
