import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { DEV_ISSUER, GOVERNOR_AUDIENCE, keyPaths } from '../../identity';
import { credentialClaimId } from '../../activities/credential-claims';
import { fetchChainHistories, verifyChain } from '../../audit/verify';
import { CREDENTIAL_CLAIM_WORKFLOW_TYPE } from '../../contracts/credential-claim';
import type { ChainResult } from '../../contracts/state';
import { WORKFLOW_TYPE } from '../../contracts/status';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * A replayed credential `jti` against the real server (issue #8, hostile tokens). Under the default
 * `credential.jtiReplay: bind-to-chain`, a credential belongs to the first chain that presents it:
 * every step of that chain (and its compensations) may use it; any other chain, on any governor
 * deployment of the namespace, is denied before anything runs. A credential without a `jti` is denied.
 */

let g: Governed;
/** A second governor deployment (own task queue, own worker, cold cache) in the same namespace, same keys (one GOVERNOR_HOME). */
let other: Governed;
/** A deployment whose bundle allows reuse (`jtiReplay: allow`). */
let reuse: Governed;

beforeAll(async () => {
  g = await setupGoverned();
  other = await setupGoverned({ home: g.home });
  reuse = await setupGoverned({
    home: g.home,
    policiesDir: defaultBundleWith((m) => ((m.credential as Record<string, unknown>).jtiReplay = 'allow')),
  });
});
afterAll(async () => {
  await Promise.all([g?.stop(), other?.stop(), reuse?.stop()]);
});

const staging = { type: 'Environment', id: 'staging' };
const chainOf = (d: Governed, n = 2) => ({
  workload: WORKLOAD,
  steps: Array.from({ length: n }, (_, i) => d.serviceStep(`s${i + 1}`, 'deploy', staging)),
});
const executedFor = (d: Governed, chainId: string) =>
  d.ledger.all().filter((e) => e.idempotencyKey.startsWith(`${chainId}/`));

/** A credential signed by the dev issuer with exactly `claims` (header `typ: JWT`, `alg: EdDSA`). */
function signedCredential(home: string, claims: Record<string, unknown>): string {
  const jwk = JSON.parse(fs.readFileSync(keyPaths(home, 'issuer').privateKeyPath, 'utf8')) as crypto.JsonWebKey & {
    kid: string;
  };
  const b64u = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64u({ alg: 'EdDSA', kid: jwk.kid, typ: 'JWT' })}.${b64u(claims)}`;
  return `${input}.${crypto.sign(null, Buffer.from(input), crypto.createPrivateKey({ key: jwk, format: 'jwk' })).toString('base64url')}`;
}

describe('replayed credential jti (real server)', () => {
  it('binds a credential to its first chain: its steps run, another chain presenting it is denied and runs nothing', async () => {
    const creds = await g.creds();
    const first = await g.run(chainOf(g, 3), creds);
    expect(first.status).toBe('Completed');
    expect(executedFor(g, first.chainId)).toHaveLength(3);

    const replay = await g.run(chainOf(g), creds);
    expect(replay.status).toBe('Denied');
    expect(replay.steps[0]).toMatchObject({
      status: 'denied',
      decision: { effect: 'deny', reason: 'credential replayed: its jti is already bound to another chain' },
    });
    // The reason does not disclose which chain owns the credential.
    expect(JSON.stringify(replay)).not.toContain(first.chainId);
    expect(executedFor(g, replay.chainId)).toHaveLength(0);

    // The binding is a claim workflow named after the credential, holding the first chain's id.
    const claims = JSON.parse(Buffer.from(creds.credential.split('.')[1]!, 'base64url').toString('utf8')) as {
      iss: string;
      jti: string;
    };
    const description = await g.client.workflow.getHandle(credentialClaimId(claims.iss, claims.jti)).describe();
    expect(description.type).toBe(CREDENTIAL_CLAIM_WORKFLOW_TYPE);
    expect(description.memo?.chainId).toBe(first.chainId);

    // Both chains' lineage verifies: the replay deny is a recorded decision like any other.
    for (const chainId of [first.chainId, replay.chainId]) {
      const report = await verifyChain({
        histories: await fetchChainHistories(g.client, chainId),
        chainId,
        home: g.home,
      });
      expect(report.checks.filter((c) => !c.ok && c.name !== 'replay')).toEqual([]);
    }
  });

  it('is namespace-wide: another governor deployment with a cold cache refuses the same credential', async () => {
    const creds = await g.creds();
    const first = await g.run(chainOf(g, 1), creds);
    expect(first.status).toBe('Completed');
    const replay = await other.run(chainOf(other, 1), creds);
    expect(replay.status).toBe('Denied');
    expect(replay.reason).toContain('credential replayed');
    expect(executedFor(other, replay.chainId)).toHaveLength(0);
  });

  it('refuses the replay while the first chain is still running, which keeps waiting for its approval', async () => {
    const creds = await g.creds();
    const handle = await g.gc.start(
      {
        workload: WORKLOAD,
        steps: [
          g.serviceStep('wait', 'deploy', { type: 'Environment', id: 'prod' }),
          g.serviceStep('after', 'deploy', staging),
        ],
      },
      creds,
    );
    await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    const replay = await g.run(chainOf(g, 1), creds);
    expect(replay.status).toBe('Denied');
    expect(replay.reason).toContain('credential replayed');
    const state = await g.gc.status(handle.workflowId);
    expect(state.status).toBe('AwaitingApproval');
    await g.gc.revoke(handle.workflowId, { reason: 'test over' });
  });

  it('denies a credential without a jti (nothing to bind)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const credential = signedCredential(g.home, {
      iss: DEV_ISSUER,
      sub: WORKLOAD,
      aud: GOVERNOR_AUDIENCE,
      iat: now,
      exp: now + 300,
    });
    const { attestation } = await g.creds();
    const r = await g.run(chainOf(g, 1), { credential, attestation });
    expect(r.status).toBe('Denied');
    expect(r.reason).toContain('credential has no jti');
    expect(executedFor(g, r.chainId)).toHaveLength(0);
  });

  it('with jtiReplay: allow, the same credential may serve several chains', async () => {
    const creds = await reuse.creds();
    const a = await reuse.run(chainOf(reuse, 1), creds);
    const b = await reuse.run(chainOf(reuse, 1), creds);
    expect([a.status, b.status]).toEqual(['Completed', 'Completed']);
    expect(executedFor(reuse, b.chainId)).toHaveLength(1);
  });

  it('does not let a reused chain id inherit the credential (same workflow id, new first run)', async () => {
    const creds = await g.creds();
    const first = await g.run(chainOf(g, 1), creds);
    expect(first.status).toBe('Completed');
    // The client refuses to reuse a chain id at all…
    await expect(g.gc.start(chainOf(g, 1), { ...creds, chainId: first.chainId })).rejects.toThrow(
      `chainId: chain ${first.chainId} already exists`,
    );
    // …and a submitter that bypasses it (Temporal's default reuse policy allows a closed id) is still denied.
    const handle = await g.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: g.taskQueue,
      workflowId: first.chainId,
      args: [{ chainId: first.chainId, chain: chainOf(g, 1), ...creds }],
    });
    const again = (await handle.result()) as ChainResult;
    expect(again.status).toBe('Denied');
    expect(again.reason).toContain('credential replayed');
    expect(g.ledger.all().filter((e) => e.idempotencyKey === `${first.chainId}/s1`)).toHaveLength(1);
  });

  it('refuses a chain whose input names another chain id than its workflow id (no spoofed binding)', async () => {
    const creds = await g.creds();
    const owner = await g.run(chainOf(g, 1), creds);
    expect(owner.status).toBe('Completed');
    const spoofId = `spoof-${owner.chainId}`;
    const handle = await g.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: g.taskQueue,
      workflowId: spoofId,
      args: [{ chainId: owner.chainId, chain: chainOf(g, 1), ...creds }],
    });
    await expect(handle.result()).rejects.toMatchObject({
      cause: { type: 'GOVERNOR_INVALID_INPUT', message: expect.stringContaining("is not this workflow's id") },
    });
    expect(g.ledger.all().filter((e) => e.idempotencyKey.startsWith(`${owner.chainId}/`))).toHaveLength(1);
  });
});
