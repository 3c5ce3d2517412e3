import { issueApproval } from '../../identity';
import type { ChainResult, ChainState } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import {
  attackerKey,
  forgeHostile,
  hostileRows,
  startCanary,
  type Canary,
  type ForgeContext,
  type HostileVariant,
  type TokenKind,
} from '../harness/hostile-tokens';

/**
 * Hostile credentials, attestations and approval votes against the real server (issue #8 item 2):
 * every forged token must end its chain Denied (a vote: rejected, the step not approved) with the
 * specific reason recorded, nothing executed, nothing fetched from the URLs the tokens name.
 * The unit-level detail of each rejection lives in test/unit/identity-hostile.test.ts; this file
 * proves the whole path (workflow → authorize / verifyApproval activity → receipts → status) holds.
 */

// A 1 s credential grace period so the expired-credential chain is denied promptly.
const bundleDir = defaultBundleWith((m) => {
  m.credential = { gracePeriod: '1s' };
});

let g: Governed;
let canary: Canary;
const attacker = attackerKey();
/** Every hostile token that was not refused (must stay empty), and how many were tried. */
const accepted: string[] = [];
let tried = 0;

beforeAll(async () => {
  g = await setupGoverned({ policiesDir: bundleDir });
  canary = await startCanary({ keys: [{ ...attacker.publicJwk, kid: 'attacker', alg: 'EdDSA', use: 'sig' }] });
});
afterAll(async () => {
  await g?.stop();
  await canary?.close();
});

function forge(variant: HostileVariant, kind: TokenKind, extra: Partial<ForgeContext> = {}): string {
  tried += 1;
  return forgeHostile(variant, {
    home: g.home,
    kind,
    nowS: Math.floor(Date.now() / 1000),
    sub: WORKLOAD,
    canaryUrl: canary.url,
    attacker,
    ...extra,
  });
}

/** An allowed one-step chain: only a bad token can stop it. */
const deployStaging = () => ({
  workload: WORKLOAD,
  steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' })],
});
/** A bulk export: escalates to one `data-steward` (quorum 1), so a single accepted vote would execute it. */
const bulkExport = () => ({
  workload: WORKLOAD,
  owner: 'team-data',
  steps: [
    g.serviceStep('export', 'export_data', { type: 'Dataset', id: 'customers' }, { context: { rowCount: 250_000 } }),
  ],
});

const executedFor = (chainId: string) => g.ledger.all().filter((e) => e.idempotencyKey.startsWith(`${chainId}/`));

/** Runs `chain` with the given tokens and checks it was denied at its first step for `reason`, with nothing executed. */
async function expectDenied(
  tokens: { credential: string; attestation: string },
  hostile: string,
  reason: RegExp,
): Promise<void> {
  const handle = await g.gc.start(deployStaging(), tokens);
  const result = (await handle.result()) as ChainResult;
  if (result.status !== 'Denied') accepted.push(handle.workflowId);
  expect(result.status).toBe('Denied');
  expect(result.reason).toMatch(reason);
  const step = result.steps[0]!;
  expect(step.status).toBe('denied');
  expect(step.decision).toMatchObject({ effect: 'deny', determiningPolicies: [] });
  expect(step.decision!.errors.join('\n')).toMatch(reason);
  // The status query tells an operator the same.
  const state: ChainState = await g.gc.status(handle.workflowId);
  expect(state.status).toBe('Denied');
  expect(state.reason).toMatch(reason);
  expect(state.steps[0]!.decision!.errors.join('\n')).toMatch(reason);
  expect(executedFor(handle.workflowId)).toEqual([]);
  // The token is never echoed in what the chain reports.
  for (const text of [JSON.stringify(result), JSON.stringify(state)])
    expect(text).not.toContain(hostile.split('.')[1]!);
}

describe('controls: the same path accepts genuine tokens (so a denial below means a refusal)', () => {
  it('a chain with a genuine credential and attestation completes and executes', async () => {
    const handle = await g.gc.start(deployStaging(), await g.creds());
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(executedFor(handle.workflowId)).toHaveLength(1);
  });

  it('a genuine data-steward vote is counted and the escalated step executes', async () => {
    const handle = await g.gc.start(bulkExport(), await g.creds());
    const state = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    const genuine = await issueApproval({
      home: g.home,
      sub: 'stella',
      roles: ['data-steward'],
      chainId: handle.workflowId,
      stepId: 'export',
      stepDigest: state.steps[0]!.approval!.stepDigest,
      decision: 'approve',
    });
    const r = await g.gc.submitApproval(handle.workflowId, genuine);
    expect(r.verdict).toMatchObject({ counted: true, approver: 'stella' });
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(executedFor(handle.workflowId)).toHaveLength(1);
  });
});

describe('hostile credentials on the real server', () => {
  it.each(hostileRows('credential'))('%s: the chain is denied, nothing runs', async (variant, reason) => {
    const attestation = (await g.creds()).attestation;
    const credential = forge(variant, 'credential');
    await expectDenied({ credential, attestation }, credential, new RegExp(`credential ${reason.source}`));
  });
});

describe('hostile attestations on the real server', () => {
  it.each(hostileRows('attestation'))('%s: the chain is denied, nothing runs', async (variant, reason) => {
    const credential = (await g.creds()).credential;
    const attestation = forge(variant, 'attestation');
    await expectDenied({ credential, attestation }, attestation, new RegExp(`attestation ${reason.source}`));
  });
});

describe('hostile approval votes on an escalated step', () => {
  it.each(hostileRows('approval'))(
    '%s: the vote is rejected with its reason, the step is not approved',
    async (variant, reason) => {
      const handle = await g.gc.start(bulkExport(), await g.creds());
      const chainId = handle.workflowId;
      const waiting = await g.waitFor(chainId, (s) => s.status === 'AwaitingApproval');
      const stepDigest = waiting.steps[0]!.approval!.stepDigest;
      const token = forge(variant, 'approval', {
        sub: 'stella',
        vote: { chainId, stepId: 'export', stepDigest, roles: ['data-steward'] },
      });

      if (variant === 'wrong typ') {
        // Refused by the update's validator before history: the caller gets the reason, nothing is recorded.
        await expect(g.gc.submitApproval(chainId, token)).rejects.toMatchObject({
          code: 'GOVERNOR_INVALID_INPUT',
          field: 'token',
          message: expect.stringContaining('token: not an approval vote: its header has typ "jwt"'),
        });
        expect((await g.gc.status(chainId)).steps[0]!.approval).toMatchObject({ verdicts: [], stillNeeded: 1 });
        // The Temporal UI path (a signal) cannot be validated: the verifier records the same refusal.
        await g.gc.signalVote(chainId, token, 'approve');
        const after = await g.waitFor(chainId, (s) => (s.steps[0]!.approval?.verdicts.length ?? 0) > 0);
        expect(after.steps[0]!.approval!.verdicts).toEqual([
          expect.objectContaining({ counted: false, reason: expect.stringMatching(/^approval type not accepted/) }),
        ]);
        await g.gc.revoke(chainId, { reason: 'hostile-token test done' });
        expect(((await handle.result()) as ChainResult).status).toBe('Revoked');
        expect(executedFor(chainId)).toEqual([]);
        return;
      }
      const { verdict, approval } = await g.gc.submitApproval(chainId, token);
      if (verdict.counted) accepted.push(chainId);
      expect(verdict).toMatchObject({
        counted: false,
        reason: expect.stringMatching(new RegExp(`^approval ${reason.source}`)),
      });
      expect(approval).toMatchObject({ outcome: 'pending', approvedBy: [], stillNeeded: 1 });
      expect(JSON.stringify(verdict)).not.toContain(token.split('.')[1]!);

      // Still waiting, the verdict recorded, nothing executed; then stop the chain.
      const state = await g.gc.status(chainId);
      expect(state.status).toBe('AwaitingApproval');
      expect(state.steps[0]!.approval!.verdicts).toEqual([
        expect.objectContaining({ counted: false, reason: verdict.reason }),
      ]);
      await g.gc.revoke(chainId, { reason: 'hostile-token test done' });
      const result = (await handle.result()) as ChainResult;
      expect(result.status).toBe('Revoked');
      expect(result.steps[0]!.approval!.outcome).not.toMatch(/approved|break-glass/);
      expect(executedFor(chainId)).toEqual([]);
    },
  );
});

describe('overall', () => {
  it('accepted none of the hostile tokens and never fetched a key from a URL a token named', async () => {
    const rows = hostileRows('credential').length + hostileRows('attestation').length + hostileRows('approval').length;
    expect(tried).toBe(rows);
    expect(accepted).toEqual([]);
    expect(canary.requests()).toBe(0);
    // The canary does count when asked, so 0 above means never asked.
    expect((await fetch(`${canary.url}/jwks.json`)).status).toBe(200);
    expect(canary.requests()).toBe(1);
  });
});
