import fs from 'node:fs';
import { createReplayer, fetchChainHistories, verifyChain, type Replayer } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { initKeys, issueApproval, loadPublicJwks, rotateKey } from '../../identity';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * Key history (DESIGN §13, issue 20 item 1) on the real dev server: the receipt key and the approver key
 * rotate in the middle of a running chain (waiting for approval). Receipts signed before and after the
 * rotation verify with the JWKS that keeps the retired key and its window; a JWKS that says the old key
 * was retired before the chain ran, or one without it (what `keys init --force` would have written), does
 * not; a vote signed with the retired approver key is refused, one with the new key counts; `keys init
 * --force` refuses to drop the keys.
 */

let g: Governed;
let replayer: Replayer;
beforeAll(async () => {
  g = await setupGoverned();
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
}, 120_000);
afterAll(async () => {
  await replayer?.close();
  await g?.stop();
});

const vote = (chainId: string, stepDigest: string, sub: string) =>
  issueApproval({ home: g.home, sub, roles: ['sre-lead'], chainId, stepId: 'deploy', stepDigest, decision: 'approve' });

test('receipt and approver keys rotate mid-chain; the chain verifies across the rotation; a retired key outside its window does not', async () => {
  const handle = await g.gc.start(
    {
      workload: WORKLOAD,
      owner: 'team-release',
      steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
    },
    await g.creds(),
  );
  const chainId = handle.workflowId;
  const state = await g.waitFor(chainId, (s) => s.status === 'AwaitingApproval');
  const digest = state.steps[0]!.approval!.stepDigest;
  const alice = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'alice'));
  expect(alice.verdict).toMatchObject({ counted: true });

  const receiptBefore = loadPublicJwks(g.home, 'receipt').keys[0]!.kid!;
  const receipt = await rotateKey(g.home, 'receipt');
  const approver = await rotateKey(g.home, 'approver');
  expect(receipt.retiredKid).toBe(receiptBefore);
  // The worker notices a new receipt key file within a second.
  await new Promise((resolve) => setTimeout(resolve, 1_100));

  // A vote signed with the retired approver key after the rotation is refused (kept in a copy made before).
  const stale = await g.gc.submitApproval(chainId, await issueApprovalWithOldKey(chainId, digest));
  expect(stale.verdict).toMatchObject({ counted: false });
  const bob = await g.gc.submitApproval(chainId, await vote(chainId, digest, 'bob'));
  expect(bob.verdict).toMatchObject({ counted: true, approver: 'bob' });
  const result = (await handle.result()) as ChainResult;
  expect(result.status).toBe('Completed');

  const histories = await fetchChainHistories(g.client, chainId);
  const report = await verifyChain({ histories, chainId, home: g.home, replayer });
  expect(report.checks.filter((c) => !c.ok)).toEqual([]);
  expect(report.verdict).toBe('verified');
  const receiptsCheck = report.checks.find((c) => c.name === 'receipts')!;
  // Signed by both keys: the old one before the rotation, the new one after.
  expect(receiptsCheck.detail).toContain(receipt.retiredKid);
  expect(receiptsCheck.detail).toContain(receipt.kid);

  // The same JWKS, but saying the old key was retired an hour before the chain ran: its receipts fail.
  const jwks = loadPublicJwks(g.home, 'receipt');
  const backdated = {
    keys: jwks.keys.map((k) =>
      k.kid === receipt.retiredKid ? { ...k, retired: Math.floor(Date.now() / 1000) - 3600 } : k,
    ),
  };
  const late = await verifyChain({ histories, chainId, home: g.home, replayer, trustedReceiptJwks: backdated });
  expect(late.verdict).toBe('failed');
  expect(JSON.stringify(late.checks)).toContain(`signed by key ${receipt.retiredKid} after it was retired`);
  // Without the old key (a replaced key file, no history), the receipts before the rotation fail.
  const dropped = { keys: jwks.keys.filter((k) => k.kid !== receipt.retiredKid) };
  const lost = await verifyChain({ histories, chainId, home: g.home, replayer, trustedReceiptJwks: dropped });
  expect(lost.verdict).toBe('failed');

  // `keys init --force` refuses to drop the keys that signed these receipts and votes.
  await expect(initKeys(g.home, { force: true, names: ['receipt'] })).rejects.toThrow(/keys rotate receipt/);
  await expect(initKeys(g.home, { force: true, names: ['approver'] })).rejects.toThrow(/keys rotate approver/);
  // A plain `keys init` keeps the history.
  await initKeys(g.home);
  expect(loadPublicJwks(g.home, 'receipt').keys.map((k) => k.kid)).toEqual([receipt.kid, receipt.retiredKid]);
  expect(approver.retiredKid).not.toBe(approver.kid);
});

/** A vote signed with the approver key as it was before the rotation (a copy of the retired private key). */
let oldApproverHome: string | undefined;
async function issueApprovalWithOldKey(chainId: string, stepDigest: string): Promise<string> {
  return issueApproval({
    home: oldApproverHome!,
    sub: 'carol',
    roles: ['sre-lead'],
    chainId,
    stepId: 'deploy',
    stepDigest,
    decision: 'approve',
  });
}
beforeAll(() => {
  // Runs after setupGoverned: keep a copy of the approver key as it is before the test rotates it.
  oldApproverHome = fs.mkdtempSync(`${g.home}-old-`);
  fs.mkdirSync(`${oldApproverHome}/keys`);
  for (const f of ['approver.private.jwk.json', 'approver.jwks.json'])
    fs.copyFileSync(`${g.home}/keys/${f}`, `${oldApproverHome}/keys/${f}`);
});
