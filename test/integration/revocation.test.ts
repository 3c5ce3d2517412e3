import { eventually } from '../harness/eventually';
import { randomBytes } from 'node:crypto';
import { Context, CancelledFailure } from '@temporalio/activity';
import type { ServiceActivityInput } from '../../contracts/executor';
import { GovernorStatusKey } from '../../contracts/search-attributes';
import type { ChainResult } from '../../contracts/state';
import { setupGoverned, type Governed } from '../harness/governed';

// A service activity that blocks until cancelled, heartbeating so the cancellation reaches it.
const observed: { started: string[]; cancelled: string[] } = { started: [], cancelled: [] };
let g: Governed;
beforeAll(async () => {
  g = await setupGoverned({
    revocationCacheTtlMs: 0, // every decision reads the registry: no waiting for a cached list to expire
    extraActivities: () => ({
      async hang(input: ServiceActivityInput) {
        observed.started.push(input.idempotencyKey);
        const ctx = Context.current();
        try {
          for (;;) {
            ctx.heartbeat();
            await ctx.sleep(200);
          }
        } catch (err) {
          if (err instanceof CancelledFailure) observed.cancelled.push(input.idempotencyKey);
          throw err;
        }
      },
    }),
  });
});
afterAll(async () => {
  await g?.stop();
});

const hangingStep = (id: string) => ({
  id,
  action: 'deploy',
  resource: { type: 'Environment', id: 'staging' },
  executor: { type: 'activity', taskQueue: g.serviceQueue, activityType: 'hang', heartbeatTimeoutMs: 2000 },
});

describe('revocation on the real server', () => {
  it('revokes one chain: the step in flight is cancelled, later steps never run, status Revoked, receipt recorded', async () => {
    const chain = {
      workload: 'agent:release-bot',
      steps: [
        g.serviceStep('first', 'deploy', { type: 'Environment', id: 'dev' }),
        hangingStep('second'),
        g.serviceStep('third', 'notify', { type: 'Channel', id: 'ops' }),
      ],
    };
    const handle = await g.gc.start(chain, await g.creds());
    await eventually('the second step to start', () => observed.started.includes(`${handle.workflowId}/second`), {
      timeoutMs: 10_000,
    });
    await g.gc.revoke(handle.workflowId, { reason: 'incident INC-9', by: 'oncall' });
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Revoked');
    expect(result.reason).toBe('revoked by oncall: incident INC-9');
    expect(result.steps.map((s) => s.status)).toEqual(['completed', 'denied', 'skipped']);
    expect(g.ledger.has(`${handle.workflowId}/first`)).toBe(true);
    expect(g.ledger.has(`${handle.workflowId}/third`)).toBe(false);
    await eventually(
      'the in-flight activity to see its cancellation',
      () => observed.cancelled.includes(`${handle.workflowId}/second`),
      { timeoutMs: 10_000 },
    );
    expect((await handle.describe()).typedSearchAttributes.get(GovernorStatusKey)).toBe('Revoked');
    // decision+execution (first), decision (second), revocation, checkpoint
    expect(result.receiptHead.seq).toBe(5);
  });

  it('revokes a workload: its running chains stop at their next step and chains started later are denied', async () => {
    const workload = `agent:doomed-${randomBytes(4).toString('hex')}`;
    const waiting = await g.gc.start(
      { workload, steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })] },
      await g.creds(workload),
    );
    const hanging = await g.gc.start(
      { workload, steps: [hangingStep('work'), g.serviceStep('after', 'notify', { type: 'Channel', id: 'ops' })] },
      await g.creds(workload),
    );
    await g.waitFor(waiting.workflowId, (s) => s.status === 'AwaitingApproval');
    await eventually('the hanging step', () => observed.started.includes(`${hanging.workflowId}/work`), {
      timeoutMs: 10_000,
    });
    const bystander = await g.gc.start(
      { workload: 'agent:release-bot', steps: [hangingStep('work')] },
      await g.creds(),
    );
    await eventually('the bystander step', () => observed.started.includes(`${bystander.workflowId}/work`), {
      timeoutMs: 10_000,
    });

    // Visibility is eventually consistent: wait until both chains are listed as running for the workload.
    await eventually(
      'visibility',
      async () =>
        (await g.gc.list({ workload, status: 'Running' })).length +
          (await g.gc.list({ workload, status: 'AwaitingApproval' })).length ===
        2,
      { timeoutMs: 10_000 },
    );
    const r = await g.gc.revokeWorkload({ workload, reason: 'credential leak', by: 'security' });
    expect(r.revocations.revoked[workload]).toMatchObject({ workload, reason: 'credential leak', by: 'security' });
    expect(r.chains.sort()).toEqual([waiting.workflowId, hanging.workflowId].sort());
    expect(((await waiting.result()) as ChainResult).status).toBe('Revoked');
    const h = (await hanging.result()) as ChainResult;
    expect(h.status).toBe('Revoked');
    expect(g.ledger.has(`${hanging.workflowId}/after`)).toBe(false);
    // A chain started after the revocation is denied by authorize (the revocation list), whatever its token.
    const later = await g.run(
      { workload, steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' })] },
      await g.creds(workload),
    );
    expect(later.status).toBe('Denied');
    expect(later.reason).toContain(`workload ${workload} is revoked: credential leak`);
    expect(g.ledger.has(`${later.chainId}/deploy`)).toBe(false);
    // Other workloads are untouched.
    expect((await g.gc.status(bystander.workflowId)).status).toBe('Running');
    await g.gc.revoke(bystander.workflowId, { reason: 'test cleanup' });
    expect(((await bystander.result()) as ChainResult).status).toBe('Revoked');
  });
});
