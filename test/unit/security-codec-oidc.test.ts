import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { oidcOptions } from '../../cli/commands/codec';
import { AesGcmPayloadCodec, parseKeyRing, payloadFromJson, payloadToJson } from '../../runtime/codec';
import { startCodecServer, type CodecServer } from '../../workers/codec-server';

/**
 * The codec server and Temporal UI users: with "Pass the user access token" the UI sends each
 * signed-in user's OIDC access token. Only a token that verifies against the identity provider's
 * keys, for this audience, unexpired, and carrying the required role decodes payloads; everything
 * else is a 401 (the UI then shows payloads encrypted).
 */

const ISSUER = 'https://idp.example.test';
const AUDIENCE = 'temporal-ui';
const SECRET = `canary-${randomBytes(8).toString('hex')}`;
const TOKEN = randomBytes(24).toString('base64url');
const codec = new AesGcmPayloadCodec(parseKeyRing({ primary: 'k1', keys: { k1: randomBytes(32).toString('base64') } }));

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let idp: Awaited<ReturnType<typeof generateKeyPair>>;
let stranger: Awaited<ReturnType<typeof generateKeyPair>>;
let publicJwk: JWK;
let server: CodecServer;
let encrypted: unknown;

beforeAll(async () => {
  idp = await generateKeyPair('EdDSA', { extractable: true });
  stranger = await generateKeyPair('EdDSA', { extractable: true });
  publicJwk = { ...(await exportJWK(idp.publicKey)), kid: 'idp-1', alg: 'EdDSA', use: 'sig' };
  server = await startCodecServer({
    codec,
    token: TOKEN,
    port: 0,
    oidc: {
      issuer: ISSUER,
      audience: AUDIENCE,
      jwks: { keys: [publicJwk] },
      role: { claim: 'groups', value: 'governor-auditors' },
    },
  });
  const [enc] = await codec.encode([defaultPayloadConverter.toPayload({ secret: SECRET })!]);
  encrypted = payloadToJson(enc!);
});
afterAll(async () => {
  await server?.close();
});

async function userToken(
  claims: Record<string, unknown> = {},
  options: { key?: Key; header?: Record<string, unknown>; exp?: number | string } = {},
): Promise<string> {
  return new SignJWT({ sub: 'alice', groups: ['governor-auditors', 'staff'], ...claims })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'idp-1', ...options.header })
    .setIssuer(typeof claims.iss === 'string' ? claims.iss : ISSUER)
    .setAudience(typeof claims.aud === 'string' ? claims.aud : AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(options.exp ?? '5m')
    .sign(options.key ?? idp.privateKey);
}

const decode = (authorization?: string) =>
  fetch(`${server.url}/default/decode`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(authorization ? { Authorization: authorization } : {}) },
    body: JSON.stringify({ payloads: [encrypted] }),
  });

describe('codec server: Temporal UI users (OIDC access tokens)', () => {
  it('decodes for a user whose token verifies and carries the role', async () => {
    const res = await decode(`Bearer ${await userToken()}`);
    expect(res.status).toBe(200);
    const out = (await res.json()) as { payloads: unknown[] };
    expect(defaultPayloadConverter.fromPayload(payloadFromJson(out.payloads[0]))).toEqual({ secret: SECRET });
    // A role given as a single string counts too; the server's own token still works.
    expect((await decode(`Bearer ${await userToken({ groups: 'governor-auditors' })}`)).status).toBe(200);
    expect((await decode(`Bearer ${TOKEN}`)).status).toBe(200);
  });

  it.each([
    ['no credentials', async () => undefined],
    ['a user without the role', async () => `Bearer ${await userToken({ groups: ['staff'] })}`],
    ['another issuer', async () => `Bearer ${await userToken({ iss: 'https://evil.example.test' })}`],
    ['another audience', async () => `Bearer ${await userToken({ aud: 'other-app' })}`],
    ['an expired token', async () => `Bearer ${await userToken({}, { exp: Math.floor(Date.now() / 1000) - 60 })}`],
    ['a token signed by an unknown key', async () => `Bearer ${await userToken({}, { key: stranger.privateKey })}`],
    [
      'alg none',
      async () =>
        `Bearer ${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, sub: 'x', groups: ['governor-auditors'], exp: 9_999_999_999 })).toString('base64url')}.`,
    ],
    ['a jku header', async () => `Bearer ${await userToken({}, { header: { jku: 'http://127.0.0.1:1/jwks' } })}`],
    ['a token in the wrong scheme', async () => `Basic ${await userToken()}`],
  ])('answers 401 to %s, echoing nothing', async (_name, header) => {
    const presented = await header();
    const res = await decode(presented);
    expect(res.status).toBe(401);
    const text = await res.text();
    expect(text).not.toContain(SECRET);
    if (presented) expect(text).not.toContain(presented.split(' ')[1]!.slice(0, 24));
  });

  it('reads --oidc-* options: all four or none, errors name the option', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oidc-'));
    const jwks = path.join(dir, 'jwks.json');
    fs.writeFileSync(jwks, JSON.stringify({ keys: [publicJwk] }));
    expect(oidcOptions({})).toBeUndefined();
    expect(
      oidcOptions({ oidcIssuer: ISSUER, oidcAudience: AUDIENCE, oidcJwks: jwks, oidcRole: 'groups=governor-auditors' }),
    ).toMatchObject({
      issuer: ISSUER,
      audience: AUDIENCE,
      role: { claim: 'groups', value: 'governor-auditors' },
    });
    expect(() => oidcOptions({ oidcIssuer: ISSUER })).toThrow(/^--oidc-audience: required with --oidc-issuer/);
    expect(() =>
      oidcOptions({ oidcIssuer: ISSUER, oidcAudience: AUDIENCE, oidcJwks: jwks, oidcRole: 'groups' }),
    ).toThrow(/^--oidc-role: expected <claim>=<value>/);
    expect(() =>
      oidcOptions({
        oidcIssuer: ISSUER,
        oidcAudience: AUDIENCE,
        oidcJwks: path.join(dir, 'missing.json'),
        oidcRole: 'groups=a',
      }),
    ).toThrow(/^--oidc-jwks: cannot read/);
    const privateJwks = path.join(dir, 'private.json');
    fs.writeFileSync(privateJwks, JSON.stringify({ keys: [{ ...publicJwk, d: 'secret' }] }));
    expect(() =>
      oidcOptions({ oidcIssuer: ISSUER, oidcAudience: AUDIENCE, oidcJwks: privateJwks, oidcRole: 'groups=a' }),
    ).toThrow(/^--oidc-jwks: must be a JWKS .* of public keys/);
  });

  it('refuses HMAC or none as accepted algorithms', async () => {
    await expect(
      startCodecServer({
        codec,
        token: TOKEN,
        port: 0,
        oidc: {
          issuer: ISSUER,
          audience: AUDIENCE,
          jwks: { keys: [publicJwk] },
          role: { claim: 'groups', value: 'x' },
          algorithms: ['HS256'],
        },
      }),
    ).rejects.toThrow(/oidc.algorithms: HS256 is not accepted/);
  });
});
