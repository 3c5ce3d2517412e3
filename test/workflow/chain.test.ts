import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import type { GovernorAuthorizeInput, GovernorAuthorizeResult, VerifyApprovalInput } from '../../activities';
import type { VoteVerdict } from '../../contracts/approval';
import type { GovernedChainInput } from '../../contracts/chain';
import type { Decision } from '../../contracts/decision';
import { refreshCredentialUpdate, statusQuery, submitApprovalUpdate } from '../../contracts/messages';
import { GovernorPendingRolesKey } from '../../contracts/search-attributes';
import type { ChainState } from '../../contracts/state';
import { ChainStatus, WORKFLOW_TYPE } from '../../contracts/status';
import type { governedChainWorkflow } from '../../workflows/governed-chain';
import { FakeReceipts, authorized, decision, fakeToken } from './fakes';
import { eventually, startWorkflowTestEnv, type Fakes, type WorkflowTestEnv } from './env';

/*
 * governedChainWorkflow's deadlines with fake activities: the approval deadline, the escalation ladder
 * and the credential grace period. Each chain has one noop step; `decide` plays the policy.
 */

let t: WorkflowTestEnv;
beforeAll(async () => {
  t = await startWorkflowTestEnv({ maxCachedWorkflows: 0 }); // every workflow task replays from history
}, 120_000);
afterAll(async () => {
  await t?.teardown();
});

type Policy = (input: GovernorAuthorizeInput) => { d: Decision; extra?: Partial<GovernorAuthorizeResult> };

/** Fake governor activities for one chain, and what the chain asked of them. */
function chainFakes(policy: Policy, voters: Record<string, { approver: string; roles: string[] }> = {}) {
  const receipts = new FakeReceipts();
  const authorizations: GovernorAuthorizeInput[] = [];
  const votes: VerifyApprovalInput[] = [];
  const executed: string[] = [];
  const decide = (input: GovernorAuthorizeInput): GovernorAuthorizeResult => {
    authorizations.push(input);
    const { d, extra } = policy(input);
    return authorized(receipts.make(input.chainId, input.stepId, 'decision', d), d, extra);
  };
  const activities: Fakes = {
    async governStep({ idempotencyKey: _key, ...input }) {
      return { authorized: decide(input) }; // never runs the step itself: the workflow then executes it
    },
    async authorize(input) {
      return decide(input);
    },
    async verifyApproval(input) {
      // Counted when the voter holds a role the workflow says is eligible now (the real check is the same).
      votes.push(input);
      const { seq, via, eligibleRoles } = input;
      const voter = voters[input.token];
      const roles = voter?.roles.filter((r) => eligibleRoles.includes(r)) ?? [];
      const verdict: VoteVerdict =
        voter && roles.length > 0
          ? { seq, via, counted: true, reason: 'approved', approver: voter.approver, roles, decision: 'approve' }
          : { seq, via, counted: false, reason: `not one of ${eligibleRoles.join(', ')}` };
      return { verdict, receipt: receipts.make(input.chainId, input.stepId, 'approval', verdict) };
    },
    async execute(input) {
      executed.push(input.stepId);
      const outcome = { executor: 'noop' as const, idempotencyKey: input.idempotencyKey };
      const receipt = receipts.make(input.chainId, input.stepId, input.receipt.kind, outcome);
      return { outcome, receipt, payload: outcome };
    },
    async recordReceipt(input) {
      const payload = input.payload ?? null;
      return { receipt: receipts.make(input.chainId, input.stepId, input.kind, payload), payload };
    },
  };
  return { activities, receipts, authorizations, votes, executed };
}

type ChainHandle = WorkflowHandle<typeof governedChainWorkflow>;

/** Starts a chain of one noop step, `deploy` on `Environment::"prod"`. */
function startChain(taskQueue: string, credential = 'credential-v1'): Promise<ChainHandle> {
  const chainId = `chain-${randomUUID()}`;
  const resource = { type: 'Environment', id: 'prod' };
  const deploy = { id: 'deploy', action: 'deploy', resource, input: {}, context: {} };
  const input: GovernedChainInput = {
    chainId,
    chain: { workload: 'agent:deployer', steps: [{ ...deploy, executor: { type: 'noop' } }] },
    credential,
    attestation: 'attestation-v1',
  };
  return t.env.client.workflow.start<typeof governedChainWorkflow>(WORKFLOW_TYPE, {
    taskQueue,
    workflowId: chainId,
    args: [input],
  });
}

/** What `authorize` says when only the credential's expiry failed: a deny to wait out for `gracePeriod` ms. */
const expiredCredential = (gracePeriod: number): ReturnType<Policy> => ({
  d: decision('deny', { reason: 'credential expired' }),
  extra: { credentialExpired: true, gracePeriod },
});

const status =
  (h: ChainHandle): (() => Promise<ChainState>) =>
  () =>
    h.query(statusQuery);

it('denies an escalated step when no quorum arrives by the approval deadline', async () => {
  const escalation = { roles: ['lead'], quorum: 1, deadline: '1s', policies: ['prod-needs-lead'] };
  const f = chainFakes(() => ({ d: decision('escalate', { escalation, reason: 'prod needs a lead' }) }));
  const result = await t.withFakes(f.activities, async (tq) => (await startChain(tq)).result());

  expect(result.status).toBe(ChainStatus.Denied);
  expect(result.reason).toBe('step deploy: no quorum of 1 by the approval deadline (1s)');
  const approval = { outcome: 'expired', approvedBy: [], stillNeeded: 1 };
  expect(result.steps[0]).toMatchObject({ status: 'denied', approval });
  expect(f.executed).toEqual([]);
  expect(f.votes).toEqual([]);
  expect(f.receipts.recorded.at(-1)).toMatchObject({ kind: 'checkpoint', payload: { status: ChainStatus.Denied } });
});

it('widens the eligible roles along the escalation ladder, and a vote of the widened role approves', async () => {
  const escalation = { roles: ['lead'], quorum: 1, deadline: '60s', policies: ['prod-needs-lead'] };
  const ladder = [{ afterMs: 1000, roles: ['director'] }];
  const escalate = { d: decision('escalate', { escalation }), extra: { approvalRules: { ladder } } };
  const f = chainFakes((input) => (input.approvals?.length ? { d: decision('allow') } : escalate), {
    [fakeToken('dana')]: { approver: 'dana', roles: ['director'] },
  });
  const { answer, result, pendingRoles } = await t.withFakes(f.activities, async (tq) => {
    const h = await startChain(tq);
    const widened = (s: ChainState): boolean => s.steps[0]?.approval?.eligibleRoles.includes('director') === true;
    await eventually(status(h), widened, 'widened to director');
    const answer = await h.executeUpdate(submitApprovalUpdate, { args: [{ token: fakeToken('dana') }] });
    const result = await h.result();
    // Every change of the pending roles is a search attribute upsert in history, in order.
    const pendingRoles = ((await h.fetchHistory()).events ?? []).flatMap((e) => {
      const fields = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields;
      const field = fields?.[GovernorPendingRolesKey.name];
      return field?.data ? [JSON.parse(Buffer.from(field.data).toString('utf8')) as string[]] : [];
    });
    return { answer, result, pendingRoles };
  });

  expect(pendingRoles.slice(0, 2)).toEqual([['lead'], ['lead', 'director']]);
  expect(f.votes.map((v) => v.eligibleRoles)).toEqual([['lead', 'director']]);
  expect(answer.verdict).toMatchObject({ counted: true, approver: 'dana', roles: ['director'], decision: 'approve' });
  expect(result.status).toBe(ChainStatus.Completed);
  expect(result.steps[0]).toMatchObject({
    status: 'completed',
    approval: {
      outcome: 'approved',
      roles: ['lead'],
      eligibleRoles: ['lead', 'director'],
      approvedBy: [{ approver: 'dana', roles: ['director'] }],
    },
  });
  // Policy had the last word: re-authorized with the counted vote, then executed once.
  expect(f.authorizations.at(-1)?.approvals).toEqual([{ approver: 'dana', roles: ['director'] }]);
  expect(f.executed).toEqual(['deploy']);
});

it('waits for a refreshed credential within the grace period, then authorizes with it and runs the step', async () => {
  const expired = expiredCredential(60_000);
  const f = chainFakes((input) => (input.credential === 'credential-v2' ? { d: decision('allow') } : expired));
  const { waiting, result } = await t.withFakes(f.activities, async (tq) => {
    const h = await startChain(tq, 'credential-v1');
    const waiting = await eventually(status(h), (s) => s.status === ChainStatus.AwaitingCredential, 'awaited one');
    await h.executeUpdate(refreshCredentialUpdate, { args: [{ credential: 'credential-v2' }] });
    return { waiting, result: await h.result() };
  });

  expect(waiting.steps[0]?.status).toBe('awaiting-credential');
  expect(waiting.pending).toBe('a refreshed credential (refreshCredential) within 60000 ms');
  expect(f.authorizations.map((a) => a.credential)).toEqual(['credential-v1', 'credential-v2']);
  expect(result.status).toBe(ChainStatus.Completed);
  expect(result.steps[0]).toMatchObject({ status: 'completed', decision: { effect: 'allow' } });
  expect(f.executed).toEqual(['deploy']);
});

it('denies the step when no refreshed credential arrives within the grace period', async () => {
  const expired = expiredCredential(500);
  const f = chainFakes(() => expired);
  const result = await t.withFakes(f.activities, async (tq) => (await startChain(tq)).result());

  expect(result.status).toBe(ChainStatus.Denied);
  expect(result.reason).toBe('step deploy: credential expired and no refresh arrived within 500 ms');
  expect(result.steps[0]).toMatchObject({ status: 'denied', decision: { effect: 'deny' } });
  expect(f.authorizations.map((a) => a.credential)).toEqual(['credential-v1']);
  expect(f.executed).toEqual([]);
});
