import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { admitRequests, sealSlotRequest, signCoordination } from '../../activities/coordination';
import { initKeys, loadPrivateKey, loadPublicJwks } from '../../identity';
import { PolicyStore } from '../../activities/policy-store';
import type { SlotAsk } from '../../contracts/coordination';
import { Manifest } from '../../policies/manifest';

const NOW = new Date('2026-01-01T00:00:00Z');
let home: string;
beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-coord-'));
  await initKeys(home);
});

const manifest = Manifest.parse({
  version: 1,
  name: 't',
  trustedIssuers: [{ issuer: 'i', audience: 'a', jwks: { keys: [] } }],
  trustedAttesters: [{ issuer: 'i', jwks: { keys: [] } }],
  coordination: {
    domains: [
      {
        name: 'cluster:prod-eu',
        resources: ['Environment::"prod"'],
        conflicts: [['deploy', 'rollback']],
        tieBreakerRole: 'sre-lead',
        batchingWindow: '2s',
      },
    ],
    authority: { workloads: { 'agent:release-bot': 10 } },
  },
});
const ask = (extra: Partial<SlotAsk> = {}): SlotAsk => ({
  chainId: 'c1',
  stepId: 'deploy',
  workload: 'agent:release-bot',
  action: 'deploy',
  resource: { type: 'Environment', id: 'prod' },
  ...extra,
});

// Flip a character in the middle of the signature: the last base64url character of an Ed25519
// signature carries padding bits, so changing it can leave the decoded bytes (and the signature) intact.
function tamper(jws: string): string {
  const i = jws.length - 10;
  return jws.slice(0, i) + (jws[i] === 'A' ? 'B' : 'A') + jws.slice(i + 1);
}

describe('sealing a slot request', () => {
  it('resolves domain and authority from the manifest, digests the content and seals it to the domain', async () => {
    const signer = await loadPrivateKey(home, 'receipt');
    const r = (await sealSlotRequest(manifest, ask({ plannedVersion: 3 }), signer))!;
    expect(r).toMatchObject({
      domain: 'cluster:prod-eu',
      resource: 'Environment::"prod"',
      authority: 10,
      priority: 0,
      plannedVersion: 3,
      requestDigest: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect((await sealSlotRequest(manifest, ask({ workload: 'agent:other' }), signer))!.authority).toBe(0);
    // Approver roles raise a request's authority to the highest rank among them (never lower it).
    const ranked = {
      coordination: {
        ...manifest.coordination,
        authority: { ...manifest.coordination.authority, roles: { 'sre-lead': 50, intern: -5 } },
      },
    };
    const approved = (await sealSlotRequest(
      ranked,
      ask({ workload: 'agent:other', approverRoles: ['sre-lead', 'intern'] }),
      signer,
    ))!;
    expect(approved).toMatchObject({ authority: 50, approverRoles: ['intern', 'sre-lead'] });
    expect((await sealSlotRequest(ranked, ask({ approverRoles: ['intern'] }), signer))!.authority).toBe(10);
    const jwks = loadPublicJwks(home, 'receipt');
    const admitted = await admitRequests(
      ranked,
      'digest',
      { domain: 'cluster:prod-eu', requests: [approved] },
      { now: NOW, receiptJwks: jwks },
    );
    expect(admitted.admissions[0]).toMatchObject({ ok: true, authority: 50 });
    // Claiming roles the seal does not cover is refused.
    const inflated = await admitRequests(
      ranked,
      'digest',
      {
        domain: 'cluster:prod-eu',
        requests: [{ ...(await sealSlotRequest(ranked, ask(), signer))!, approverRoles: ['sre-lead'] }],
      },
      { now: NOW, receiptJwks: jwks },
    );
    expect(inflated.admissions[0]).toMatchObject({ ok: false });
    expect(
      await sealSlotRequest(manifest, ask({ resource: { type: 'Environment', id: 'staging' } }), signer),
    ).toBeUndefined();
    await expect(sealSlotRequest(manifest, ask({ chainId: 'bad id!' }), signer)).rejects.toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringContaining('chainId'),
    });
    await expect(sealSlotRequest(manifest, ask(), signer, { domain: 'nope' })).rejects.toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      field: 'domain',
    });
  });

  it('admits only well-formed requests sealed by this governor for this domain, with the current authority', async () => {
    const signer = await loadPrivateKey(home, 'receipt');
    const good = (await sealSlotRequest(manifest, ask(), signer))!;
    const jwks = loadPublicJwks(home, 'receipt');
    const otherDomain = { ...good, domain: 'cluster:us' };
    const junk = { chainId: 'x', stepId: 'y' } as never;
    const result = await admitRequests(
      manifest,
      'digest',
      { domain: 'cluster:prod-eu', requests: [good, otherDomain, junk, { ...good, seal: tamper(good.seal) }] },
      { now: NOW, receiptJwks: jwks },
    );
    expect(result.rules).toMatchObject({
      name: 'cluster:prod-eu',
      batchingWindowMs: 2000,
      decisionDeadlineMs: 900_000,
      holdTimeoutMs: 3_600_000,
      onConflict: 'reject',
    });
    expect(result.admissions.map((a) => [a.ok, a.reason ?? a.authority])).toEqual([
      [true, 10],
      [false, 'request is for domain cluster:us, not cluster:prod-eu'],
      [false, 'malformed slot request'],
      [false, 'request is not sealed by this governor'],
    ]);
    const gone = await admitRequests(
      { coordination: { ...manifest.coordination, domains: [] } },
      'digest',
      { domain: 'cluster:prod-eu', requests: [good] },
      { now: NOW, receiptJwks: jwks },
    );
    expect(gone.rules).toBeUndefined();
    expect(gone.admissions[0]).toMatchObject({
      ok: false,
      reason: 'coordination domain cluster:prod-eu is not configured in the active policy bundle',
    });
  });

  it('signs coordination receipts as one hash chain', async () => {
    const { receipts } = await signCoordination(await loadPrivateKey(home, 'receipt'), {
      coordinatorId: 'governor-coordinator:q/d',
      prev: { seq: 4, hash: 'h'.repeat(64) },
      entries: [
        { stepId: 'batch-1', payload: { a: 1 } },
        { stepId: 'c1/deploy', payload: { b: 2 } },
      ],
    });
    expect(receipts.map((r) => [r.seq, r.stepId, r.kind])).toEqual([
      [5, 'batch-1', 'decision'],
      [6, 'c1/deploy', 'decision'],
    ]);
    expect(receipts[0]!.prevHash).toBe('h'.repeat(64));
    expect(receipts[1]!.prevHash).toBe(receipts[0]!.hash);
  });
});

describe('the requestSlot activity', () => {
  it('says a step outside every domain is not coordinated (no Temporal call)', async () => {
    const policies = new PolicyStore({});
    policies.activateDir(path.join(__dirname, '..', '..', 'policies', 'default'));
    const activities = createActivities({ policies, home });
    const env = new MockActivityEnvironment();
    await expect(
      env.run(activities.requestSlot, ask({ resource: { type: 'Environment', id: 'staging' } })),
    ).resolves.toEqual({ coordinated: false });
    await expect(env.run(activities.requestSlot, ask({ stepId: '' }))).rejects.toMatchObject({
      type: 'GOVERNOR_INVALID_INPUT',
    });
  });
});
