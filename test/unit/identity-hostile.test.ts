import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode } from '../../contracts/errors';
import { Manifest } from '../../policies/manifest';
import {
  DEV_ATTESTER,
  DEV_ISSUER,
  GOVERNOR_AUDIENCE,
  devImageDigest,
  initKeys,
  issueAttestation,
  issueCredential,
  keyPaths,
  loadPublicJwks,
  verifyAttestation,
  verifyCredential,
} from '../../identity';
import { attackerKey, b64u, privateKeyOf, signEd25519, startCanary, type Canary } from '../harness/hostile-tokens';

// Hostile tokens are crafted by hand with node:crypto (test/harness/hostile-tokens.ts), so the test controls
// every header and claim byte.

const NOW = new Date('2030-01-01T00:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;

let home: string;
let manifest: Manifest;
let issuerJwk: crypto.JsonWebKey & { kid: string };
let attesterJwk: crypto.JsonWebKey & { kid: string };
const attacker = attackerKey();
const attackerPublicJwk = attacker.publicJwk;

// A server standing in for attacker-hosted keys: the verifier must never call it.
let canary: Canary;
let serverUrl: string;

function credentialClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: DEV_ISSUER,
    sub: 'svc',
    aud: GOVERNOR_AUDIENCE,
    iat: NOW_S,
    exp: NOW_S + 300,
    jti: 'j-1',
    ...overrides,
  };
}

function attestationClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: DEV_ATTESTER,
    sub: 'svc',
    iat: NOW_S,
    exp: NOW_S + 300,
    imageDigest: devImageDigest('svc'),
    trustZone: 'trusted',
    environment: 'dev',
    ...overrides,
  };
}

/** A credential signed with the real issuer key, with any header and claims. */
function issuerSigned(header: Record<string, unknown>, claims: Record<string, unknown> = credentialClaims()): string {
  return signEd25519({ alg: 'EdDSA', kid: issuerJwk.kid, typ: 'JWT', ...header }, claims, privateKeyOf(issuerJwk));
}

async function expectCredentialRejected(token: string, message: string, m: Manifest = manifest): Promise<void> {
  const err = await verifyCredential(token, m, { now: NOW, home }).then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  expect(err).toBeDefined();
  expect({ code: err!.code, message: err!.message }).toEqual({ code: ErrorCode.CredentialInvalid, message });
  if (typeof token === 'string' && token.length > 8) expect(err!.message).not.toContain(token);
}

async function expectAttestationRejected(token: string, message: string, expectedSubject = 'svc'): Promise<void> {
  const err = await verifyAttestation(token, manifest, { now: NOW, home, expectedSubject }).then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  expect(err).toBeDefined();
  expect({ code: err!.code, message: err!.message }).toEqual({ code: ErrorCode.AttestationInvalid, message });
  if (typeof token === 'string' && token.length > 8) expect(err!.message).not.toContain(token);
}

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-identity-hostile-'));
  await initKeys(home);
  manifest = Manifest.parse({
    version: 1,
    name: 'identity-hostile-test',
    trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/issuer.jwks.json' } }],
    trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' } }],
  });
  issuerJwk = JSON.parse(fs.readFileSync(keyPaths(home, 'issuer').privateKeyPath, 'utf8'));
  attesterJwk = JSON.parse(fs.readFileSync(keyPaths(home, 'attester').privateKeyPath, 'utf8'));

  canary = await startCanary({ keys: [{ ...attackerPublicJwk, kid: 'attacker', alg: 'EdDSA', use: 'sig' }] });
  serverUrl = canary.url;
});

afterAll(async () => {
  await canary.close();
  fs.rmSync(home, { recursive: true, force: true });
});

describe('hand-crafted tokens signed with the real issuer key', () => {
  test('the crafting helper itself produces an accepted credential (control)', async () => {
    await expect(verifyCredential(issuerSigned({}), manifest, { now: NOW, home })).resolves.toMatchObject({
      sub: 'svc',
    });
  });

  test('typ absent or JOSE is accepted (JWT-SVID); another typ is not', async () => {
    await expect(
      verifyCredential(issuerSigned({ typ: undefined }), manifest, { now: NOW, home }),
    ).resolves.toMatchObject({ sub: 'svc' });
    await expect(verifyCredential(issuerSigned({ typ: 'JOSE' }), manifest, { now: NOW, home })).resolves.toMatchObject({
      sub: 'svc',
    });
    await expectCredentialRejected(issuerSigned({ typ: 'at+jwt' }), 'credential type not accepted');
  });

  test('an aud array containing the governor is accepted and normalized', async () => {
    const token = issuerSigned({}, credentialClaims({ aud: ['other', GOVERNOR_AUDIENCE] }));
    await expect(verifyCredential(token, manifest, { now: NOW, home })).resolves.toMatchObject({
      aud: ['other', GOVERNOR_AUDIENCE],
    });
  });

  test.each(['iss', 'sub', 'aud', 'exp', 'iat'])('missing %s is rejected', async (claim) => {
    const claims = credentialClaims();
    delete claims[claim];
    await expectCredentialRejected(issuerSigned({}, claims), `credential missing required claim "${claim}"`);
  });

  test('jti is optional but must be a string when present', async () => {
    const claims = credentialClaims();
    delete claims.jti;
    await expect(verifyCredential(issuerSigned({}, claims), manifest, { now: NOW, home })).resolves.not.toHaveProperty(
      'jti',
    );
    await expectCredentialRejected(issuerSigned({}, credentialClaims({ jti: 7 })), 'credential claim "jti" is invalid');
  });

  test('claims of the wrong type are rejected', async () => {
    await expectCredentialRejected(
      issuerSigned({}, credentialClaims({ exp: String(NOW_S + 300) })),
      'credential claim "exp" is invalid',
    );
    await expectCredentialRejected(
      issuerSigned({}, credentialClaims({ sub: 42 })),
      'credential claim "sub" is invalid',
    );
    await expectCredentialRejected(issuerSigned({}, credentialClaims({ iss: 42 })), 'credential issuer not trusted');
  });

  test('nbf in the future is rejected', async () => {
    await expectCredentialRejected(issuerSigned({}, credentialClaims({ nbf: NOW_S + 60 })), 'credential not yet valid');
  });

  test('a tampered payload fails the signature check', async () => {
    const [h, , s] = issuerSigned({}).split('.');
    await expectCredentialRejected(
      `${h}.${b64u(credentialClaims({ sub: 'admin' }))}.${s}`,
      'credential signature invalid',
    );
  });
});

describe('forged credentials', () => {
  test('signed by another key under the issuer kid', async () => {
    const token = signEd25519(
      { alg: 'EdDSA', kid: issuerJwk.kid, typ: 'JWT' },
      credentialClaims(),
      attacker.privateKey,
    );
    await expectCredentialRejected(token, 'credential signature invalid');
  });

  test('signed by another key with no kid', async () => {
    const token = signEd25519({ alg: 'EdDSA', typ: 'JWT' }, credentialClaims(), attacker.privateKey);
    await expectCredentialRejected(token, 'credential signature invalid');
  });

  test('signed by another key with its own kid', async () => {
    const token = signEd25519({ alg: 'EdDSA', kid: 'attacker', typ: 'JWT' }, credentialClaims(), attacker.privateKey);
    await expectCredentialRejected(token, 'credential signing key not found');
  });

  test('signed by a trusted key of another role (the attester)', async () => {
    const token = signEd25519(
      { alg: 'EdDSA', kid: attesterJwk.kid, typ: 'JWT' },
      credentialClaims(),
      privateKeyOf(attesterJwk),
    );
    await expectCredentialRejected(token, 'credential signing key not found');
  });

  test('alg none (any spelling, with or without a signature) is rejected', async () => {
    const unsigned = `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(credentialClaims())}.`;
    await expectCredentialRejected(unsigned, 'credential is unsigned (alg none)');
    await expectCredentialRejected(
      `${b64u({ alg: 'None' })}.${b64u(credentialClaims())}.`,
      'credential is unsigned (alg none)',
    );
    await expectCredentialRejected(
      `${b64u({ alg: 'none' })}.${b64u(credentialClaims())}.c2ln`,
      'credential is unsigned (alg none)',
    );
  });

  test('HS256 keyed with the issuer public key (algorithm confusion) is rejected', async () => {
    const input = `${b64u({ alg: 'HS256', kid: issuerJwk.kid, typ: 'JWT' })}.${b64u(credentialClaims())}`;
    for (const secret of [
      Buffer.from(issuerJwk.x!, 'base64url'),
      Buffer.from(JSON.stringify(loadPublicJwks(home, 'issuer'))),
    ]) {
      const token = `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
      await expectCredentialRejected(token, 'credential algorithm not allowed');
    }
  });

  test('an algorithm outside the issuer allow-list is rejected before key lookup', async () => {
    const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const input = `${b64u({ alg: 'RS256', kid: issuerJwk.kid, typ: 'JWT' })}.${b64u(credentialClaims())}`;
    const token = `${input}.${crypto.sign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url')}`;
    await expectCredentialRejected(token, 'credential algorithm not allowed');
    const edOnly = Manifest.parse({
      ...manifest,
      trustedIssuers: [{ ...manifest.trustedIssuers[0]!, algorithms: ['ES256'] }],
    });
    await expectCredentialRejected(issuerSigned({}), 'credential algorithm not allowed', edOnly);
  });

  test('an allowed algorithm with no matching key type (ES256 vs an Ed25519 JWKS)', async () => {
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const input = `${b64u({ alg: 'ES256', kid: issuerJwk.kid, typ: 'JWT' })}.${b64u(credentialClaims())}`;
    const sig = crypto.sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
    await expectCredentialRejected(`${input}.${sig.toString('base64url')}`, 'credential signing key not found');
  });
});

describe('key-bearing headers are refused and never fetched', () => {
  beforeEach(() => {
    canary.reset();
  });

  test.each([
    ['jku', () => ({ jku: `${serverUrl}/jwks.json`, kid: 'attacker' })],
    ['x5u', () => ({ x5u: `${serverUrl}/cert.pem` })],
    ['jwk', () => ({ jwk: { ...attackerPublicJwk }, kid: undefined })],
    ['x5c', () => ({ x5c: ['MIIB'] })],
  ] as const)('%s', async (name, extra) => {
    // Signed by the attacker, with the header that would hand the verifier the attacker's key.
    const token = signEd25519({ alg: 'EdDSA', typ: 'JWT', ...extra() }, credentialClaims(), attacker.privateKey);
    await expectCredentialRejected(token, `credential header "${name}" is not accepted`);
    const att = signEd25519(
      { alg: 'EdDSA', typ: 'attestation+jwt', ...extra() },
      attestationClaims(),
      attacker.privateKey,
    );
    await expectAttestationRejected(att, `attestation header "${name}" is not accepted`);
    // Even with a valid signature from the real key, the header alone is enough to refuse.
    await expectCredentialRejected(issuerSigned(extra()), `credential header "${name}" is not accepted`);
    expect(canary.requests()).toBe(0);
  });

  test('the control server does answer when asked (so 0 requests above means never asked)', async () => {
    const res = await fetch(`${serverUrl}/jwks.json`);
    expect(res.status).toBe(200);
    expect(canary.requests()).toBe(1);
  });
});

describe('header guards', () => {
  test('crit is refused (we implement no extensions)', async () => {
    await expectCredentialRejected(
      issuerSigned({ crit: ['exp'], exp: NOW_S + 300 }),
      'credential has unsupported critical header parameters',
    );
    await expectCredentialRejected(
      issuerSigned({ crit: ['b64'], b64: false }),
      'credential has unsupported critical header parameters',
    );
  });

  test('a non-string kid or typ is malformed', async () => {
    await expectCredentialRejected(issuerSigned({ kid: 1 }), 'credential is malformed');
    await expectCredentialRejected(issuerSigned({ typ: ['JWT'] }), 'credential is malformed');
  });
});

describe('size and shape, checked before anything is trusted', () => {
  test('an oversized but otherwise valid credential is rejected on size alone', async () => {
    const token = issuerSigned({}, credentialClaims({ pad: 'x'.repeat(8192) }));
    await expectCredentialRejected(token, 'credential exceeds 8192 bytes');
    const small = Manifest.parse({ ...manifest, credential: { maxTokenBytes: 512 } });
    await expectCredentialRejected(
      issuerSigned({}, credentialClaims({ pad: 'x'.repeat(400) })),
      'credential exceeds 512 bytes',
      small,
    );
  });

  test('oversized garbage is rejected on size, not parsed', async () => {
    // Parsing it would report "malformed": the size reason proves the size check ran first.
    await expectCredentialRejected('{'.repeat(10_000_000), 'credential exceeds 8192 bytes');
  });

  test('size counts UTF-8 bytes, not characters', async () => {
    await expectCredentialRejected('é'.repeat(5000), 'credential exceeds 8192 bytes');
  });

  test('the size check applies to attestations too', async () => {
    await expectAttestationRejected('a'.repeat(8193), 'attestation exceeds 8192 bytes');
  });

  test.each([
    ['not a JWS', 'abc'],
    ['two segments', `${b64u({ alg: 'EdDSA' })}.${b64u(credentialClaims())}`],
    ['JWE (five segments)', 'a.b.c.d.e'],
    ['non-base64url characters', `${b64u({ alg: 'EdDSA' })}.${b64u(credentialClaims())}.sig+/=`],
    ['header not JSON', `bm90LWpzb24.${b64u(credentialClaims())}.c2ln`],
    ['header is an array', `${b64u(['EdDSA'])}.${b64u(credentialClaims())}.c2ln`],
    ['payload not JSON', `${b64u({ alg: 'EdDSA', kid: 'k' })}.bm90LWpzb24.c2ln`],
    ['empty signature', `${b64u({ alg: 'EdDSA' })}.${b64u(credentialClaims())}.`],
    ['missing alg', `${b64u({ typ: 'JWT' })}.${b64u(credentialClaims())}.c2ln`],
  ])('malformed: %s', async (_label, token) => {
    await expectCredentialRejected(token, 'credential is malformed');
  });

  test('missing or non-string input', async () => {
    await expectCredentialRejected('', 'credential is missing');
    await expectCredentialRejected(undefined as unknown as string, 'credential is missing');
    await expectCredentialRejected(42 as unknown as string, 'credential is missing');
  });

  test('an invalid evaluation time is refused', async () => {
    const token = issuerSigned({});
    await expect(verifyCredential(token, manifest, { now: new Date(Number.NaN), home })).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
      field: 'now',
    });
  });
});

describe('hostile attestations', () => {
  function attesterSigned(
    header: Record<string, unknown>,
    claims: Record<string, unknown> = attestationClaims(),
  ): string {
    return signEd25519(
      { alg: 'EdDSA', kid: attesterJwk.kid, typ: 'attestation+jwt', ...header },
      claims,
      privateKeyOf(attesterJwk),
    );
  }

  test('control: a hand-crafted attestation from the real attester is accepted', async () => {
    await expect(
      verifyAttestation(attesterSigned({}), manifest, { now: NOW, home, expectedSubject: 'svc' }),
    ).resolves.toMatchObject({
      trustZone: 'trusted',
    });
  });

  test('by an untrusted attester', async () => {
    const token = signEd25519(
      { alg: 'EdDSA', kid: 'attacker', typ: 'attestation+jwt' },
      attestationClaims({ iss: 'https://rogue-attester' }),
      attacker.privateKey,
    );
    await expectAttestationRejected(token, 'attestation issuer not trusted');
  });

  test('claiming the trusted attester but signed by another key', async () => {
    const sameKid = signEd25519(
      { alg: 'EdDSA', kid: attesterJwk.kid, typ: 'attestation+jwt' },
      attestationClaims(),
      attacker.privateKey,
    );
    await expectAttestationRejected(sameKid, 'attestation signature invalid');
    const issuerKey = signEd25519(
      { alg: 'EdDSA', kid: issuerJwk.kid, typ: 'attestation+jwt' },
      attestationClaims(),
      privateKeyOf(issuerJwk),
    );
    await expectAttestationRejected(issuerKey, 'attestation signing key not found');
  });

  test('alg none', async () => {
    await expectAttestationRejected(
      `${b64u({ alg: 'none', typ: 'attestation+jwt' })}.${b64u(attestationClaims())}.`,
      'attestation is unsigned (alg none)',
    );
  });

  test('typ must be attestation+jwt', async () => {
    await expectAttestationRejected(attesterSigned({ typ: undefined }), 'attestation type not accepted');
    await expectAttestationRejected(attesterSigned({ typ: 'JWT' }), 'attestation type not accepted');
  });

  test.each(['iss', 'sub', 'iat', 'imageDigest', 'trustZone', 'environment'])('missing %s', async (claim) => {
    const claims = attestationClaims();
    delete claims[claim];
    await expectAttestationRejected(attesterSigned({}, claims), `attestation missing required claim "${claim}"`);
  });

  test('exp is optional; staleness is then bounded by iat and maxAge alone', async () => {
    const fresh = attestationClaims({ iat: NOW_S - 60 });
    delete fresh.exp;
    const verified = await verifyAttestation(attesterSigned({}, fresh), manifest, {
      now: NOW,
      home,
      expectedSubject: 'svc',
    });
    expect(verified).not.toHaveProperty('exp');
    await expectAttestationRejected(attesterSigned({}, { ...fresh, iat: NOW_S - 3600 }), 'attestation is stale');
  });

  test('claims of the wrong shape', async () => {
    await expectAttestationRejected(
      attesterSigned({}, attestationClaims({ imageDigest: 'latest' })),
      'attestation claim "imageDigest" is invalid',
    );
    await expectAttestationRejected(
      attesterSigned({}, attestationClaims({ trustZone: '' })),
      'attestation claim "trustZone" is invalid',
    );
    await expectAttestationRejected(
      attesterSigned({}, attestationClaims({ environment: { prod: true } })),
      'attestation claim "environment" is invalid',
    );
    await expectAttestationRejected(
      attesterSigned({}, attestationClaims({ iat: 'yesterday' })),
      'attestation claim "iat" is invalid',
    );
  });

  test('for another subject', async () => {
    await expectAttestationRejected(
      attesterSigned({}),
      'attestation subject does not match the credential',
      'billing-agent',
    );
  });

  test('a real dev attestation with a tampered trust zone', async () => {
    const [h, , s] = (await issueAttestation({ home, sub: 'svc', trustZone: 'untrusted', now: NOW })).split('.');
    await expectAttestationRejected(
      `${h}.${b64u(attestationClaims({ trustZone: 'trusted' }))}.${s}`,
      'attestation signature invalid',
    );
  });

  test('a credential from the real issuer is never an attestation, even when the attester trusts the issuer key', async () => {
    const m = Manifest.parse({
      ...manifest,
      trustedAttesters: [{ issuer: DEV_ISSUER, jwks: { file: 'keys/issuer.jwks.json' } }],
    });
    const credential = await issueCredential({ home, sub: 'svc', now: NOW });
    await expect(verifyAttestation(credential, m, { now: NOW, home, expectedSubject: 'svc' })).rejects.toMatchObject({
      code: ErrorCode.AttestationInvalid,
      message: 'attestation type not accepted',
    });
  });
});
