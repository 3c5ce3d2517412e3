import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from 'jose';
import { ErrorCode } from '../../contracts/errors';
import { Manifest } from '../../policies/manifest';
import {
  DEV_ATTESTER,
  DEV_ISSUER,
  DEV_KEY_NAMES,
  GOVERNOR_AUDIENCE,
  devImageDigest,
  initKeys,
  issueAttestation,
  issueCredential,
  keyPaths,
  loadPrivateKey,
  loadPublicJwks,
  verifyAttestation,
  verifyCredential,
} from '../../identity';

// Frozen clock: every token is issued at NOW and verified at an explicit offset from it.
const NOW = new Date('2030-01-01T00:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;
const at = (seconds: number): Date => new Date(NOW.getTime() + seconds * 1000);

let home: string;
let manifest: Manifest;

function devManifest(overrides: Record<string, unknown> = {}): Manifest {
  return Manifest.parse({
    version: 1,
    name: 'identity-test',
    trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/issuer.jwks.json' } }],
    trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' } }],
    ...overrides,
  });
}

function tempHome(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'governor-identity-'));
}

beforeAll(async () => {
  home = tempHome();
  await initKeys(home);
  manifest = devManifest();
});

afterAll(() => {
  fs.rmSync(home, { recursive: true, force: true });
});

describe('keys', () => {
  test('initKeys creates the four Ed25519 pairs with 0600 private JWKs and public JWKS files', async () => {
    const dir = path.join(home, 'keys');
    expect((fs.statSync(dir).mode & 0o777).toString(8)).toBe('700');
    for (const name of DEV_KEY_NAMES) {
      const { privateKeyPath, jwksPath } = keyPaths(home, name);
      expect(privateKeyPath).toBe(path.join(dir, `${name}.private.jwk.json`));
      expect(jwksPath).toBe(path.join(dir, `${name}.jwks.json`));
      expect((fs.statSync(privateKeyPath).mode & 0o777).toString(8)).toBe('600');
      const priv = JSON.parse(fs.readFileSync(privateKeyPath, 'utf8'));
      expect(priv).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
      expect(typeof priv.d).toBe('string');
      const jwks = loadPublicJwks(home, name);
      expect(jwks.keys).toHaveLength(1);
      expect(jwks.keys[0]).toEqual({ kty: 'OKP', crv: 'Ed25519', x: priv.x, kid: priv.kid, alg: 'EdDSA', use: 'sig' });
      expect(await calculateJwkThumbprint(jwks.keys[0]!, 'sha256')).toBe(priv.kid);
    }
  });

  test('initKeys is idempotent; force replaces the keys', async () => {
    const h = tempHome();
    try {
      const first = await initKeys(h);
      expect(first.created).toEqual([...DEV_KEY_NAMES]);
      expect(first.dir).toBe(path.join(h, 'keys'));
      const again = await initKeys(h);
      expect(again.created).toEqual([]);
      expect(again.keys.map((k) => k.kid)).toEqual(first.keys.map((k) => k.kid));
      // A deleted public JWKS is restored from the kept private key.
      fs.rmSync(keyPaths(h, 'issuer').jwksPath);
      const restored = await initKeys(h);
      expect(restored.created).toEqual([]);
      expect(loadPublicJwks(h, 'issuer').keys[0]!.kid).toBe(first.keys[0]!.kid);
      const forced = await initKeys(h, { force: true });
      expect(forced.created).toEqual([...DEV_KEY_NAMES]);
      forced.keys.forEach((k, i) => expect(k.kid).not.toBe(first.keys[i]!.kid));
    } finally {
      fs.rmSync(h, { recursive: true, force: true });
    }
  });

  test('helpers are generic over the key name (a pair beyond DEV_KEY_NAMES)', async () => {
    const summary = await initKeys(home, { names: ['extra-signer'] });
    expect(summary.created).toEqual(['extra-signer']);
    const key = await loadPrivateKey(home, 'extra-signer');
    expect(key).toMatchObject({ name: 'extra-signer', alg: 'EdDSA', kid: summary.keys[0]!.kid });
    await expect(initKeys(home, { names: ['../escape'] })).rejects.toMatchObject({ code: ErrorCode.InvalidInput });
  });

  test('a missing key names the file and the command that creates it', async () => {
    const h = tempHome();
    try {
      const file = path.join(h, 'keys', 'receipt.private.jwk.json');
      await expect(loadPrivateKey(h, 'receipt')).rejects.toMatchObject({
        code: ErrorCode.KeysMissing,
        message:
          `key "receipt" not found: ${file} is missing; set GOVERNOR_HOME to the governor's home ` +
          '(the `.governor` directory the worker uses), or run `governor keys init` to create new keys there',
      });
      await expect(issueCredential({ home: h, sub: 'svc' })).rejects.toMatchObject({ code: ErrorCode.KeysMissing });
    } finally {
      fs.rmSync(h, { recursive: true, force: true });
    }
  });

  test('a tampered private key file is refused', async () => {
    const h = tempHome();
    try {
      await initKeys(h, { names: ['issuer'] });
      const { privateKeyPath } = keyPaths(h, 'issuer');
      const jwk = JSON.parse(fs.readFileSync(privateKeyPath, 'utf8'));
      fs.writeFileSync(privateKeyPath, JSON.stringify({ ...jwk, kid: 'chosen-by-someone' }));
      await expect(loadPrivateKey(h, 'issuer')).rejects.toMatchObject({
        code: ErrorCode.KeysMissing,
        message: expect.stringContaining('is not a valid Ed25519 key file'),
      });
    } finally {
      fs.rmSync(h, { recursive: true, force: true });
    }
  });
});

describe('issue', () => {
  test('credential: JWT-SVID claims, EdDSA, kid of the issuer key, typ JWT', async () => {
    const token = await issueCredential({ home, sub: 'billing-agent', now: NOW });
    const issuerKid = loadPublicJwks(home, 'issuer').keys[0]!.kid;
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', kid: issuerKid, typ: 'JWT' });
    const claims = decodeJwt(token);
    expect(claims).toEqual({
      iss: DEV_ISSUER,
      sub: 'billing-agent',
      aud: GOVERNOR_AUDIENCE,
      iat: NOW_S,
      exp: NOW_S + 900,
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    const other = decodeJwt(await issueCredential({ home, sub: 'billing-agent', now: NOW }));
    expect(other.jti).not.toBe(claims.jti);
  });

  test('credential: explicit audience, issuer, ttl and jti', async () => {
    const token = await issueCredential({
      home,
      sub: 's',
      audience: 'a',
      issuer: 'https://i',
      ttlSeconds: 60,
      jti: 'j-1',
      now: NOW,
    });
    expect(decodeJwt(token)).toEqual({ iss: 'https://i', sub: 's', aud: 'a', iat: NOW_S, exp: NOW_S + 60, jti: 'j-1' });
    await expect(issueCredential({ home, sub: '', now: NOW })).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
      field: 'sub',
    });
    await expect(issueCredential({ home, sub: 's', ttlSeconds: 0 })).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
      field: 'ttlSeconds',
    });
  });

  test('attestation: claims, dev defaults, typ attestation+jwt', async () => {
    const token = await issueAttestation({ home, sub: 'billing-agent', now: NOW });
    const attesterKid = loadPublicJwks(home, 'attester').keys[0]!.kid;
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', kid: attesterKid, typ: 'attestation+jwt' });
    expect(decodeJwt(token)).toEqual({
      iss: DEV_ATTESTER,
      sub: 'billing-agent',
      iat: NOW_S,
      exp: NOW_S + 900,
      imageDigest: devImageDigest('billing-agent'),
      trustZone: 'trusted',
      environment: 'dev',
    });
    expect(devImageDigest('billing-agent')).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(devImageDigest('billing-agent')).toBe(devImageDigest('billing-agent'));
    expect(devImageDigest('other')).not.toBe(devImageDigest('billing-agent'));
    await expect(issueAttestation({ home, sub: 's', imageDigest: 'latest' })).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
      field: 'imageDigest',
    });
  });
});

describe('verifyCredential', () => {
  test('accepts a valid credential and returns its claims', async () => {
    const token = await issueCredential({ home, sub: 'billing-agent', jti: 'j-42', now: NOW });
    await expect(verifyCredential(token, manifest, { now: at(10), home })).resolves.toEqual({
      iss: DEV_ISSUER,
      sub: 'billing-agent',
      aud: [GOVERNOR_AUDIENCE],
      iat: NOW_S,
      exp: NOW_S + 900,
      jti: 'j-42',
    });
  });

  test('expired beyond the 5 s tolerance is rejected; within it is accepted', async () => {
    const token = await issueCredential({ home, sub: 'svc', ttlSeconds: 60, now: NOW });
    // exp = NOW+60: valid while exp > now - 5 s.
    await expect(verifyCredential(token, manifest, { now: at(64), home })).resolves.toMatchObject({ sub: 'svc' });
    await expect(verifyCredential(token, manifest, { now: at(65), home })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential expired',
    });
    await expect(verifyCredential(token, manifest, { now: at(3600), home })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential expired',
    });
  });

  test('clock tolerance follows the manifest', async () => {
    const strict = devManifest({ credential: { clockToleranceSeconds: 0 } });
    const token = await issueCredential({ home, sub: 'svc', ttlSeconds: 60, now: NOW });
    await expect(verifyCredential(token, strict, { now: at(59), home })).resolves.toMatchObject({ sub: 'svc' });
    await expect(verifyCredential(token, strict, { now: at(60), home })).rejects.toMatchObject({
      message: 'credential expired',
    });
  });

  test('wrong audience is rejected', async () => {
    const token = await issueCredential({ home, sub: 'svc', audience: 'some-other-service', now: NOW });
    await expect(verifyCredential(token, manifest, { now: NOW, home })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential audience mismatch',
    });
  });

  test('an issuer that is not trusted is rejected, even with a trusted key', async () => {
    const token = await issueCredential({ home, sub: 'svc', issuer: 'https://evil.example', now: NOW });
    await expect(verifyCredential(token, manifest, { now: NOW, home })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential issuer not trusted',
    });
  });

  test('a credential issued in the future (beyond tolerance) is rejected', async () => {
    const token = await issueCredential({ home, sub: 'svc', now: at(60) });
    await expect(verifyCredential(token, manifest, { now: at(55), home })).resolves.toMatchObject({ sub: 'svc' });
    await expect(verifyCredential(token, manifest, { now: NOW, home })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential issued in the future',
    });
  });

  test('an attestation is not accepted as a credential', async () => {
    const m = devManifest({
      trustedIssuers: [
        { issuer: DEV_ATTESTER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/attester.jwks.json' } },
      ],
    });
    const token = await issueAttestation({ home, sub: 'svc', now: NOW });
    await expect(verifyCredential(token, m, { now: NOW, home })).rejects.toMatchObject({
      code: ErrorCode.CredentialInvalid,
      message: 'credential type not accepted',
    });
  });

  test('a missing JWKS file is KeysMissing (retryable), not a verdict on the token', async () => {
    const h = tempHome();
    try {
      await initKeys(h, { names: ['issuer'] });
      const token = await issueCredential({ home: h, sub: 'svc', now: NOW });
      fs.rmSync(keyPaths(h, 'issuer').jwksPath);
      await expect(verifyCredential(token, manifest, { now: NOW, home: h })).rejects.toMatchObject({
        code: ErrorCode.KeysMissing,
        message: `JWKS file ${path.join(h, 'keys', 'issuer.jwks.json')} is missing; run \`governor keys init\``,
      });
    } finally {
      fs.rmSync(h, { recursive: true, force: true });
    }
  });

  test('after `keys init --force` the JWKS file is re-read: new tokens pass, old ones fail', async () => {
    const h = tempHome();
    try {
      await initKeys(h, { names: ['issuer'] });
      const old = await issueCredential({ home: h, sub: 'svc', now: NOW });
      await expect(verifyCredential(old, manifest, { now: NOW, home: h })).resolves.toMatchObject({ sub: 'svc' });
      await initKeys(h, { names: ['issuer'], force: true });
      const fresh = await issueCredential({ home: h, sub: 'svc', now: NOW });
      await expect(verifyCredential(fresh, manifest, { now: NOW, home: h })).resolves.toMatchObject({ sub: 'svc' });
      await expect(verifyCredential(old, manifest, { now: NOW, home: h })).rejects.toMatchObject({
        code: ErrorCode.CredentialInvalid,
        message: 'credential signing key not found',
      });
    } finally {
      fs.rmSync(h, { recursive: true, force: true });
    }
  });

  test('inline keys and a uri JWKS (fetched once, then cached) are supported', async () => {
    const jwks = loadPublicJwks(home, 'issuer');
    const token = await issueCredential({ home, sub: 'svc', now: NOW });
    const inline = devManifest({
      trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { keys: jwks.keys } }],
    });
    await expect(verifyCredential(token, inline, { now: NOW, home })).resolves.toMatchObject({ sub: 'svc' });

    let requests = 0;
    const server = http.createServer((_req, res) => {
      requests += 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
      const remote = devManifest({
        trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { uri } }],
      });
      await expect(verifyCredential(token, remote, { now: NOW, home })).resolves.toMatchObject({ sub: 'svc' });
      await expect(verifyCredential(token, remote, { now: NOW, home })).resolves.toMatchObject({ sub: 'svc' });
      expect(requests).toBe(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('an unreachable uri JWKS is PolicyUnavailable (retryable)', async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve)); // nothing listens on `port` now
    const uri = `http://127.0.0.1:${port}/jwks.json?secret=1`;
    const remote = devManifest({
      trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { uri } }],
    });
    const token = await issueCredential({ home, sub: 'svc', now: NOW });
    await expect(verifyCredential(token, remote, { now: NOW, home })).rejects.toMatchObject({
      code: ErrorCode.PolicyUnavailable,
      message: `JWKS http://127.0.0.1:${port}/jwks.json could not be loaded`,
    });
  });
});

describe('verifyAttestation', () => {
  test('accepts a fresh attestation for the credential subject', async () => {
    const token = await issueAttestation({ home, sub: 'billing-agent', now: NOW });
    await expect(
      verifyAttestation(token, manifest, { now: at(60), home, expectedSubject: 'billing-agent' }),
    ).resolves.toEqual({
      iss: DEV_ATTESTER,
      sub: 'billing-agent',
      iat: NOW_S,
      exp: NOW_S + 900,
      imageDigest: devImageDigest('billing-agent'),
      trustZone: 'trusted',
      environment: 'dev',
    });
  });

  test('an attestation older than maxAge is stale', async () => {
    const token = await issueAttestation({ home, sub: 'svc', ttlSeconds: 7200, now: NOW });
    // Default maxAge 15m: exactly 15m old is still fresh, one second more is stale.
    await expect(
      verifyAttestation(token, manifest, { now: at(900), home, expectedSubject: 'svc' }),
    ).resolves.toMatchObject({ sub: 'svc' });
    await expect(
      verifyAttestation(token, manifest, { now: at(901), home, expectedSubject: 'svc' }),
    ).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation is stale',
    });
    const shortLived = devManifest({
      trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' }, maxAge: '30s' }],
    });
    await expect(
      verifyAttestation(token, shortLived, { now: at(31), home, expectedSubject: 'svc' }),
    ).rejects.toMatchObject({
      message: 'attestation is stale',
    });
  });

  test('an expired attestation is rejected', async () => {
    const token = await issueAttestation({ home, sub: 'svc', ttlSeconds: 60, now: NOW });
    await expect(
      verifyAttestation(token, manifest, { now: at(120), home, expectedSubject: 'svc' }),
    ).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation expired',
    });
  });

  test('an attestation for another subject is rejected', async () => {
    const token = await issueAttestation({ home, sub: 'other-agent', now: NOW });
    await expect(
      verifyAttestation(token, manifest, { now: NOW, home, expectedSubject: 'billing-agent' }),
    ).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation subject does not match the credential',
    });
  });

  test('an attestation issued in the future (beyond tolerance) is rejected', async () => {
    const token = await issueAttestation({ home, sub: 'svc', now: at(30) });
    await expect(verifyAttestation(token, manifest, { now: NOW, home, expectedSubject: 'svc' })).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation issued in the future',
    });
  });

  test('a credential is not accepted as an attestation', async () => {
    const token = await issueCredential({ home, sub: 'svc', issuer: DEV_ATTESTER, now: NOW });
    await expect(verifyAttestation(token, manifest, { now: NOW, home, expectedSubject: 'svc' })).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation type not accepted',
    });
  });

  test('expectedSubject is required', async () => {
    const token = await issueAttestation({ home, sub: 'svc', now: NOW });
    await expect(verifyAttestation(token, manifest, { now: NOW, home, expectedSubject: '' })).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
      field: 'expectedSubject',
    });
  });
});
