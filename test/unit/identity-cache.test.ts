import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode } from '../../contracts/errors';
import { Manifest } from '../../policies/manifest';
import { initKeys, issueAttestation, issueCredential, verifyAttestation, verifyCredential } from '../../identity';

// The verified-token cache must never change a verdict: time checks run on every call, and a
// different trusted signer entry or a reloaded key set misses the cache.
const NOW = new Date('2030-01-01T00:00:00Z');
let home: string;
let manifest: Manifest;

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-cache-'));
  await initKeys(home);
  manifest = Manifest.parse({
    version: 1,
    name: 'cache-test',
    trustedIssuers: [
      {
        issuer: 'https://governor.local/dev-issuer',
        audience: 'temporal-governor',
        jwks: { file: 'keys/issuer.jwks.json' },
      },
    ],
    trustedAttesters: [
      { issuer: 'https://governor.local/dev-attester', jwks: { file: 'keys/attester.jwks.json' }, maxAge: '15m' },
    ],
  });
});

describe('verified-token cache', () => {
  it('still rejects a cached credential once it expires', async () => {
    const token = await issueCredential({ home, sub: 'svc', now: NOW, ttlSeconds: 60 });
    await expect(verifyCredential(token, manifest, { now: NOW, home })).resolves.toMatchObject({ sub: 'svc' });
    await expect(
      verifyCredential(token, manifest, { now: new Date(NOW.getTime() + 64_000), home }),
    ).resolves.toMatchObject({ sub: 'svc' });
    await expect(
      verifyCredential(token, manifest, { now: new Date(NOW.getTime() + 65_000), home }),
    ).rejects.toMatchObject({ code: ErrorCode.CredentialInvalid, message: 'credential expired' });
  });

  it('still rejects a cached attestation once it is older than its maximum age', async () => {
    const token = await issueAttestation({ home, sub: 'svc', now: NOW, ttlSeconds: 86_400 });
    await expect(verifyAttestation(token, manifest, { now: NOW, home, expectedSubject: 'svc' })).resolves.toMatchObject(
      { sub: 'svc' },
    );
    await expect(
      verifyAttestation(token, manifest, { now: new Date(NOW.getTime() + 16 * 60_000), home, expectedSubject: 'svc' }),
    ).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation is stale',
    });
  });

  it('does not carry a verification over to a manifest that no longer trusts the issuer', async () => {
    const token = await issueCredential({ home, sub: 'svc', now: NOW });
    await expect(verifyCredential(token, manifest, { now: NOW, home })).resolves.toMatchObject({ sub: 'svc' });
    const other = Manifest.parse({
      ...manifest,
      trustedIssuers: [
        { issuer: 'https://elsewhere', audience: 'temporal-governor', jwks: { file: 'keys/issuer.jwks.json' } },
      ],
    });
    await expect(verifyCredential(token, other, { now: NOW, home })).rejects.toMatchObject({
      message: 'credential issuer not trusted',
    });
    const otherAudience = Manifest.parse({
      ...manifest,
      trustedIssuers: [{ ...manifest.trustedIssuers[0]!, audience: 'someone-else' }],
    });
    await expect(verifyCredential(token, otherAudience, { now: NOW, home })).rejects.toMatchObject({
      message: 'credential audience mismatch',
    });
  });
});
