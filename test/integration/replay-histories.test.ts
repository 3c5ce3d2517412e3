import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { issueApproval } from '../../identity';
import type { ChainResult } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { chainIdOfSavedJson, historyFromSavedJson } from '../harness/history';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * Runs one chain of every outcome on the real server, saves each history and replays it with the
 * current workflow code. With RECORD_HISTORIES=1 (`npm run record-histories`) the histories are
 * written to test/replay/histories/ — the regression suite test/unit/replay.test.ts replays them.
 */
const target =
  process.env.RECORD_HISTORIES === '1'
    ? path.join(__dirname, '..', 'replay', 'histories')
    : fs.mkdtempSync(path.join(os.tmpdir(), 'governor-histories-'));
const bundleDir = defaultBundleWith(
  (m) => {
    m.coordination = {
      domains: [
        {
          name: 'cluster:dev',
          resources: ['Environment::"dev"'],
          conflicts: [['deploy', 'deploy']],
          batchingWindow: '200ms',
          tieBreakerRole: 'sre-lead',
        },
      ],
    };
  },
  { 'payments.cedar': (t) => t.replace(/@deadline\("[^"]+"\)/g, '@deadline("2s")') },
);

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned({ policiesDir: bundleDir });
});
afterAll(async () => {
  await g?.stop();
});

async function save(name: string, workflowId: string, runId?: string): Promise<string> {
  const history = await g.client.workflow.getHandle(workflowId, runId).fetchHistory();
  const file = path.join(target, `${name}.json`);
  // protobufjs' toJSON (via JSON.stringify) gives the proto3 JSON that Worker.runReplayHistory accepts.
  fs.writeFileSync(file, `${JSON.stringify(history)}\n`);
  return file;
}

const step = (
  id: string,
  action: string,
  resource: { type: string; id: string },
  extra: Record<string, unknown> = {},
) => g.serviceStep(id, action, resource, extra);

describe('histories of every outcome replay with the current workflow code', () => {
  const saved: string[] = [];

  it('records completed, denied, approved, deadline, revoked, coordinated and continued-as-new chains', async () => {
    const completed = await g.run({
      workload: WORKLOAD,
      steps: [
        step('deploy', 'deploy', { type: 'Environment', id: 'staging' }),
        step('announce', 'notify', { type: 'Channel', id: 'releases' }),
      ],
    });
    expect(completed.status).toBe('Completed');
    saved.push(await save('completed', completed.chainId));

    const denied = await g.run({
      workload: WORKLOAD,
      steps: [step('drop', 'drop_table', { type: 'Database', id: 'prod' })],
    });
    expect(denied.status).toBe('Denied');
    saved.push(await save('denied', denied.chainId));

    const escalated = await g.gc.start(
      {
        workload: WORKLOAD,
        owner: 'team-release',
        steps: [step('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
      },
      await g.creds(),
    );
    const waiting = await g.waitFor(escalated.workflowId, (s) => s.status === 'AwaitingApproval');
    const digest = waiting.steps[0]!.approval!.stepDigest;
    for (const sub of ['alice', 'carol']) {
      await g.gc.submitApproval(
        escalated.workflowId,
        await issueApproval({
          home: g.home,
          sub,
          roles: ['sre-lead'],
          chainId: escalated.workflowId,
          stepId: 'deploy',
          stepDigest: digest,
          decision: 'approve',
        }),
      );
    }
    expect(((await escalated.result()) as ChainResult).status).toBe('Completed');
    saved.push(await save('escalated-approved', escalated.workflowId));

    const deadline = await g.run({
      workload: WORKLOAD,
      steps: [step('pay', 'pay', { type: 'Account', id: 'acme' }, { context: { amount: 50_000, currency: 'EUR' } })],
    });
    expect(deadline.status).toBe('Denied');
    saved.push(await save('approval-deadline', deadline.chainId));

    const revoking = await g.gc.start(
      { workload: WORKLOAD, steps: [step('deploy', 'deploy', { type: 'Environment', id: 'prod' })] },
      await g.creds(),
    );
    await g.waitFor(revoking.workflowId, (s) => s.status === 'AwaitingApproval');
    await g.gc.revoke(revoking.workflowId, { reason: 'recorded for replay', by: 'test' });
    expect(((await revoking.result()) as ChainResult).status).toBe('Revoked');
    saved.push(await save('revoked', revoking.workflowId));

    const coordinated = await g.run({
      workload: WORKLOAD,
      steps: [step('deploy', 'deploy', { type: 'Environment', id: 'dev' })],
    });
    expect(coordinated.status).toBe('Completed');
    expect(coordinated.steps[0]!.coordination).toMatchObject({ domain: 'cluster:dev', status: 'released' });
    saved.push(await save('coordinated', coordinated.chainId));

    const long = await g.gc.start(
      {
        workload: WORKLOAD,
        steps: [1, 2, 3].map((i) => step(`s${i}`, 'deploy', { type: 'Environment', id: 'staging' })),
      },
      { ...(await g.creds()), options: { continueAsNewAfterSteps: 2 } },
    );
    expect(((await long.result()) as ChainResult).status).toBe('Completed');
    saved.push(await save('continued-as-new-first-run', long.workflowId, long.firstExecutionRunId));
    saved.push(await save('continued-as-new-last-run', long.workflowId));
  });

  it('replays every recorded history without nondeterminism', async () => {
    expect(saved).toHaveLength(8);
    for (const file of saved) {
      const json: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
      await expect(
        Worker.runReplayHistory(
          { workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } },
          historyFromSavedJson(json),
          chainIdOfSavedJson(json),
        ),
      ).resolves.toBeUndefined();
    }
  });
});
