import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  DEV_ATTESTER,
  DEV_ISSUER,
  GOVERNOR_AUDIENCE,
  initKeys,
  verifyApproval,
  verifyAttestation,
  verifyCredential,
} from '../../identity';
import { ErrorCode } from '../../contracts/errors';
import { Manifest } from '../../policies/manifest';
import {
  claimsFor,
  devPrivateJwk,
  privateKeyOf,
  signEd25519,
  KIND_SIGNER,
  type TokenKind,
} from '../harness/hostile-tokens';

/**
 * Bounded credential lifetimes (issue 14 item 3), with a frozen clock: `exp - iat` at most the
 * manifest's `credential.maxLifetime` (default 24h), `iat` required and never ahead of the clock by
 * more than the clock skew (`credential.clockToleranceSeconds`), for every kind of token that has it.
 */

const NOW = new Date('2030-01-01T00:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;
const HOUR = 3600;
const YEAR = 365 * 24 * HOUR;

let home: string;
let manifest: Manifest;

function manifestWith(credential: Record<string, unknown> = {}): Manifest {
  return Manifest.parse({
    version: 1,
    name: 'lifetime-test',
    trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/issuer.jwks.json' } }],
    trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' } }],
    trustedApprovers: [{ issuer: 'https://governor.local/dev-approver', jwks: { file: 'keys/approver.jwks.json' } }],
    credential,
  });
}

/** A token of `kind` signed with the real dev key of its signer, with claim overrides (`undefined` deletes). */
function signed(kind: TokenKind, overrides: Record<string, unknown>): string {
  const { key, typ } = KIND_SIGNER[kind];
  const jwk = devPrivateJwk(home, key);
  return signEd25519({ alg: 'EdDSA', kid: jwk.kid, typ }, claimsFor(kind, NOW_S, 'svc', overrides), privateKeyOf(jwk));
}

const credential = (overrides: Record<string, unknown>, m: Manifest = manifest) =>
  verifyCredential(signed('credential', overrides), m, { now: NOW, home });

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-lifetime-'));
  await initKeys(home);
  manifest = manifestWith();
});
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe('the manifest', () => {
  test('defaults: maxLifetime 24h, clock skew 5 s', () => {
    expect(manifest.credential).toMatchObject({ maxLifetime: '24h', clockToleranceSeconds: 5 });
  });

  test('maxLifetime must be a duration between 1m and 30d; the error names the field', () => {
    for (const bad of ['10y', '0s', '59s', '31d', 'forever', 86_400]) {
      const r = Manifest.safeParse({ ...manifestWith(), credential: { maxLifetime: bad } });
      expect(r.success).toBe(false);
      expect(r.error!.issues[0]!.path).toEqual(['credential', 'maxLifetime']);
    }
    expect(manifestWith({ maxLifetime: '1m' }).credential.maxLifetime).toBe('1m');
    expect(manifestWith({ maxLifetime: '30d' }).credential.maxLifetime).toBe('30d');
  });
});

describe('credential lifetime', () => {
  const lifetimeReason = 'credential lifetime (exp - iat) exceeds credential.maxLifetime (24h)';

  test('a credential valid for ten years is denied with the reason', async () => {
    await expect(credential({ exp: NOW_S + 10 * YEAR })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: lifetimeReason,
    });
  });

  test('exp = 1e15 is denied with the reason', async () => {
    await expect(credential({ exp: 1e15 })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: lifetimeReason,
    });
  });

  test('an old iat cannot stretch the lifetime: iat a year back, exp an hour ahead', async () => {
    await expect(credential({ iat: NOW_S - YEAR, exp: NOW_S + HOUR })).rejects.toMatchObject({
      message: lifetimeReason,
    });
  });

  test('a credential without iat is denied', async () => {
    await expect(credential({ iat: undefined })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential missing required claim "iat"',
    });
  });

  test('iat in the future beyond the skew is denied; within the skew it passes', async () => {
    await expect(credential({ iat: NOW_S + 6, exp: NOW_S + HOUR })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential issued in the future',
    });
    await expect(credential({ iat: NOW_S + 5, exp: NOW_S + HOUR })).resolves.toMatchObject({
      iat: NOW_S + 5,
      exp: NOW_S + HOUR,
    });
    const strict = manifestWith({ clockToleranceSeconds: 0 });
    await expect(credential({ iat: NOW_S + 1, exp: NOW_S + HOUR }, strict)).rejects.toMatchObject({
      message: 'credential issued in the future',
    });
  });

  test('exp not after iat is denied', async () => {
    await expect(credential({ iat: NOW_S, exp: NOW_S })).rejects.toMatchObject({ code: ErrorCode.CredentialInvalid });
    await expect(credential({ iat: NOW_S - 10, exp: NOW_S - 20 })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
    });
  });

  test('exactly maxLifetime passes, one second more is denied; the manifest sets the bound', async () => {
    await expect(credential({ exp: NOW_S + 24 * HOUR })).resolves.toMatchObject({ exp: NOW_S + 24 * HOUR });
    await expect(credential({ exp: NOW_S + 24 * HOUR + 1 })).rejects.toMatchObject({ message: lifetimeReason });
    const short = manifestWith({ maxLifetime: '1h' });
    await expect(credential({ exp: NOW_S + HOUR }, short)).resolves.toMatchObject({ exp: NOW_S + HOUR });
    await expect(credential({ exp: NOW_S + HOUR + 1 }, short)).rejects.toMatchObject({
      message: 'credential lifetime (exp - iat) exceeds credential.maxLifetime (1h)',
    });
  });

  test('expired beyond the skew is denied, within it passes', async () => {
    await expect(credential({ iat: NOW_S - HOUR, exp: NOW_S - 6 })).rejects.toMatchObject({
      message: 'credential expired',
    });
    await expect(credential({ iat: NOW_S - HOUR, exp: NOW_S - 4 })).resolves.toMatchObject({ exp: NOW_S - 4 });
  });
});

describe('the same clock skew for attestations and approval votes', () => {
  test('an attestation or a vote issued beyond the skew in the future is refused; within it, accepted', async () => {
    const attestation = (iat: number) =>
      verifyAttestation(signed('attestation', { iat, exp: iat + 300 }), manifest, {
        now: NOW,
        home,
        expectedSubject: 'svc',
      });
    await expect(attestation(NOW_S + 6)).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation issued in the future',
    });
    await expect(attestation(NOW_S + 5)).resolves.toMatchObject({ iat: NOW_S + 5 });
    const vote = (iat: number) =>
      verifyApproval(signed('approval', { iat, exp: iat + 300 }), manifest, { now: NOW, home });
    await expect(vote(NOW_S + 6)).rejects.toMatchObject({
      code: ErrorCode.ApprovalInvalid,
      message: 'approval issued in the future',
    });
    await expect(vote(NOW_S + 5)).resolves.toMatchObject({ iat: NOW_S + 5 });
  });

  test('an attestation or a vote expired beyond the skew is refused', async () => {
    await expect(
      verifyAttestation(signed('attestation', { iat: NOW_S - 60, exp: NOW_S - 6 }), manifest, {
        now: NOW,
        home,
        expectedSubject: 'svc',
      }),
    ).rejects.toMatchObject({ message: 'attestation expired' });
    await expect(
      verifyApproval(signed('approval', { iat: NOW_S - 60, exp: NOW_S - 6 }), manifest, { now: NOW, home }),
    ).rejects.toMatchObject({ message: 'approval expired' });
  });
});
