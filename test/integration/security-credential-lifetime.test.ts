import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError } from '@temporalio/client';
import { credentialClaimId } from '../../activities/credential-claims';
import { DEV_ISSUER, issueAttestation } from '../../identity';
import type { ChainResult } from '../../contracts/state';
import { setupGoverned, type Governed } from '../harness/governed';
import { claimsFor, devPrivateJwk, privateKeyOf, signEd25519 } from '../harness/hostile-tokens';

/**
 * Bounded credential lifetimes on the real server (issue 14 item 3): a credential signed by the
 * trusted issuer but valid for ten years, until exp = 1e15, without `iat` or issued in the future is
 * denied with the reason before anything runs, and no replay-claim workflow is started for it; an
 * accepted credential's claim workflow is scheduled no later than the manifest's maxLifetime (24h).
 */

const HOUR_MS = 3_600_000;
const MAX_LIFETIME_MS = 24 * HOUR_MS;
let g: Governed;
beforeAll(async () => {
  g = await setupGoverned();
});
afterAll(async () => {
  await g?.stop();
});

/** A credential for `sub` signed with the dev issuer's real key, with claim overrides (`undefined` deletes one). */
function credential(sub: string, jti: string, overrides: Record<string, unknown>): string {
  const jwk = devPrivateJwk(g.home, 'issuer');
  const nowS = Math.floor(Date.now() / 1000);
  return signEd25519(
    { alg: 'EdDSA', kid: jwk.kid, typ: 'JWT' },
    claimsFor('credential', nowS, sub, { jti, ...overrides }),
    privateKeyOf(jwk),
  );
}

/** Runs a one-step chain (`notify`, built-in noop) with `token` as its credential. */
async function run(sub: string, token: string): Promise<ChainResult> {
  const handle = await g.gc.start(
    {
      workload: sub,
      steps: [
        { id: 'announce', action: 'notify', resource: { type: 'Channel', id: 'ops' }, executor: { type: 'noop' } },
      ],
    },
    { credential: token, attestation: await issueAttestation({ home: g.home, sub }) },
  );
  return (await handle.result()) as ChainResult;
}

async function claimExists(jti: string): Promise<boolean> {
  try {
    await g.client.workflow.getHandle(credentialClaimId(DEV_ISSUER, jti)).describe();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

describe('credential lifetime on the real server', () => {
  const nowS = () => Math.floor(Date.now() / 1000);
  const cases: [string, () => Record<string, unknown>, string][] = [
    [
      'valid for ten years',
      () => ({ exp: nowS() + 10 * 365 * 86_400 }),
      'credential lifetime (exp - iat) exceeds credential.maxLifetime (24h)',
    ],
    ['exp = 1e15', () => ({ exp: 1e15 }), 'credential lifetime (exp - iat) exceeds credential.maxLifetime (24h)'],
    ['without iat', () => ({ iat: undefined }), 'credential missing required claim "iat"'],
    [
      'issued two minutes in the future',
      () => ({ iat: nowS() + 120, exp: nowS() + 3600 }),
      'credential issued in the future',
    ],
  ];
  it.each(cases)(
    'a credential %s is denied with the reason, nothing runs, and no claim workflow is started',
    async (_name, overrides, reason) => {
      const sub = `agent:lifetime-${randomUUID().slice(0, 8)}`;
      const jti = randomUUID();
      const r = await run(sub, credential(sub, jti, overrides()));
      expect({ status: r.status, step: r.steps[0]!.status, reason: r.steps[0]!.decision?.reason }).toEqual({
        status: 'Denied',
        step: 'denied',
        reason,
      });
      expect(await claimExists(jti)).toBe(false);
    },
  );

  it("an accepted credential's claim workflow is scheduled within the lifetime bound, with a bounded run", async () => {
    const sub = `agent:lifetime-${randomUUID().slice(0, 8)}`;
    const jti = randomUUID();
    const iat = nowS();
    // The longest credential the default manifest accepts: exactly 24 hours.
    const r = await run(sub, credential(sub, jti, { iat, exp: iat + MAX_LIFETIME_MS / 1000 }));
    expect(r.status).toBe('Completed');
    const claim = await g.client.workflow.getHandle(credentialClaimId(DEV_ISSUER, jti)).describe();
    expect(claim.type).toBe('credentialClaimWorkflow');
    expect(claim.memo).toEqual({ chainId: r.chainId, firstRunId: expect.any(String) });
    // Its first task is delayed until the credential has expired (plus skew and a margin), never later
    // than the bound: 24 h + twice the 5 s skew + a 10 s margin after it was started.
    const delayMs = claim.executionTime!.getTime() - claim.startTime.getTime();
    expect(delayMs).toBeGreaterThanOrEqual(iat * 1000 + MAX_LIFETIME_MS - claim.startTime.getTime());
    expect(delayMs).toBeLessThanOrEqual(MAX_LIFETIME_MS + 2 * 5000 + 10_000);
    // And the run itself cannot stay open more than an hour past that.
    const expires = claim.raw.workflowExtendedInfo?.executionExpirationTime;
    expect(expires).toBeTruthy();
    const expiresMs = Number(expires!.seconds) * 1000 + Math.floor((expires!.nanos ?? 0) / 1e6);
    expect(expiresMs - claim.startTime.getTime()).toBeLessThanOrEqual(delayMs + HOUR_MS + 1000);
  });
});
