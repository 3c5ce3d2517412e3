import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { ErrorCode } from '../../contracts/errors';
import { Manifest } from '../../policies/manifest';
import { loadBundle } from '../../policies/bundle';
import {
  APPROVAL_AUDIENCE,
  APPROVAL_TYP,
  DEV_APPROVER,
  DEV_ATTESTER,
  DEV_ISSUER,
  DEV_KEY_NAMES,
  GOVERNOR_AUDIENCE,
  initKeys,
  issueApproval,
  issueAttestation,
  issueCredential,
  keyPaths,
  loadPublicJwks,
  verifyApproval,
  verifyAttestation,
  verifyCredential,
  type IssueApprovalOptions,
} from '../../identity';

// Frozen clock: every token is issued at NOW and verified at an explicit offset from it. Hostile tokens are
// crafted by hand with node:crypto so the test controls every header and claim byte.
const NOW = new Date('2030-01-01T00:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;
const at = (seconds: number): Date => new Date(NOW.getTime() + seconds * 1000);
const STEP_DIGEST = 'a'.repeat(64);

let home: string;
let otherHome: string;
let manifest: Manifest;
let approverJwk: crypto.JsonWebKey & { kid: string };
let issuerJwk: crypto.JsonWebKey & { kid: string };
const attacker = crypto.generateKeyPairSync('ed25519');

// Attacker-hosted keys: the verifier must never call this server.
let requests = 0;
let server: http.Server;
let serverUrl: string;

const b64u = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

function signEd25519(header: Record<string, unknown>, claims: Record<string, unknown>, key: crypto.KeyObject): string {
  const input = `${b64u(header)}.${b64u(claims)}`;
  return `${input}.${crypto.sign(null, Buffer.from(input), key).toString('base64url')}`;
}

const privateKeyOf = (jwk: crypto.JsonWebKey): crypto.KeyObject => crypto.createPrivateKey({ key: jwk, format: 'jwk' });

function approvalClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: DEV_APPROVER,
    sub: 'alice',
    aud: APPROVAL_AUDIENCE,
    iat: NOW_S,
    exp: NOW_S + 900,
    jti: 'vote-1',
    roles: ['sre-lead'],
    chainId: 'chain-1',
    stepId: 'step-1',
    stepDigest: STEP_DIGEST,
    decision: 'approve',
    ...overrides,
  };
}

/** A vote signed with the real approver key, with any header and claims. */
function approverSigned(
  header: Record<string, unknown> = {},
  claims: Record<string, unknown> = approvalClaims(),
): string {
  return signEd25519(
    { alg: 'EdDSA', kid: approverJwk.kid, typ: APPROVAL_TYP, ...header },
    claims,
    privateKeyOf(approverJwk),
  );
}

function vote(overrides: Partial<IssueApprovalOptions> = {}): Promise<string> {
  return issueApproval({
    home,
    sub: 'alice',
    roles: ['sre-lead'],
    chainId: 'chain-1',
    stepId: 'step-1',
    stepDigest: STEP_DIGEST,
    decision: 'approve',
    jti: 'vote-1',
    now: NOW,
    ...overrides,
  });
}

function devManifest(overrides: Record<string, unknown> = {}): Manifest {
  return Manifest.parse({
    version: 1,
    name: 'identity-approval-test',
    trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/issuer.jwks.json' } }],
    trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' } }],
    trustedApprovers: [{ issuer: DEV_APPROVER, jwks: { file: 'keys/approver.jwks.json' } }],
    ...overrides,
  });
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  expect(err).toBeDefined();
  return { code: err!.code, message: err!.message };
}

async function expectApprovalRejected(
  token: string,
  message: string,
  m: Manifest = manifest,
  now: Date = NOW,
): Promise<void> {
  const err = await rejection(verifyApproval(token, m, { now, home }));
  expect(err).toEqual({ code: ErrorCode.ApprovalInvalid, message });
  if (typeof token === 'string' && token.length > 8) expect(err.message).not.toContain(token);
}

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-approval-'));
  otherHome = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-approval-other-'));
  await initKeys(home);
  await initKeys(otherHome, { names: ['approver'] });
  manifest = devManifest();
  approverJwk = JSON.parse(fs.readFileSync(keyPaths(home, 'approver').privateKeyPath, 'utf8'));
  issuerJwk = JSON.parse(fs.readFileSync(keyPaths(home, 'issuer').privateKeyPath, 'utf8'));

  server = http.createServer((_req, res) => {
    requests += 1;
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        keys: [{ ...attacker.publicKey.export({ format: 'jwk' }), kid: 'attacker', alg: 'EdDSA', use: 'sig' }],
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(otherHome, { recursive: true, force: true });
});

describe('set-up', () => {
  test('keys init creates the approver pair', () => {
    expect(DEV_KEY_NAMES).toContain('approver');
    expect(fs.existsSync(keyPaths(home, 'approver').privateKeyPath)).toBe(true);
    expect(loadPublicJwks(home, 'approver').keys[0]!.kid).toBe(approverJwk.kid);
  });

  test('manifest: trustedApprovers default to none; an approver audience defaults to the approval audience', () => {
    const bare = Manifest.parse({
      version: 1,
      name: 'bare',
      trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/issuer.jwks.json' } }],
      trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' } }],
    });
    expect(bare.trustedApprovers).toEqual([]);
    expect(manifest.trustedApprovers).toEqual([
      {
        issuer: DEV_APPROVER,
        audience: APPROVAL_AUDIENCE,
        jwks: { file: 'keys/approver.jwks.json' },
        algorithms: ['EdDSA', 'ES256'],
      },
    ]);
    expect(() =>
      devManifest({ trustedApprovers: [{ issuer: DEV_APPROVER, jwks: { file: 'k' }, extra: 1 }] }),
    ).toThrow();
  });

  test('manifest: the approvals ladder is optional and strict', () => {
    expect(manifest.approvals.ladder).toBeUndefined();
    const laddered = devManifest({ approvals: { ladder: [{ after: '20m', roles: ['security-officer'] }] } });
    expect(laddered.approvals.ladder).toEqual([{ after: '20m', roles: ['security-officer'] }]);
    expect(() => devManifest({ approvals: { ladder: [{ after: 'soon', roles: ['x'] }] } })).toThrow();
    expect(() => devManifest({ approvals: { ladder: [{ after: '20m', roles: [] }] } })).toThrow();
  });

  test('the default bundle trusts the dev approver', () => {
    const { manifest: m } = loadBundle(path.join(__dirname, '../../policies/default'));
    expect(m.trustedApprovers).toEqual([
      {
        issuer: DEV_APPROVER,
        audience: APPROVAL_AUDIENCE,
        jwks: { file: 'keys/approver.jwks.json' },
        algorithms: ['EdDSA', 'ES256'],
      },
    ]);
  });
});

describe('issueApproval', () => {
  test('header typ approval+jwt, EdDSA, approver kid; claims as given, default ttl 900 s', async () => {
    const token = await vote({ reason: 'looks fine', justification: 'ticket OPS-1' });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', kid: approverJwk.kid, typ: 'approval+jwt' });
    expect(decodeJwt(token)).toEqual(approvalClaims({ reason: 'looks fine', justification: 'ticket OPS-1' }));
  });

  test('random jti by default; explicit issuer, audience and ttl', async () => {
    const claims = decodeJwt(await vote({ jti: undefined, issuer: 'https://other', audience: 'x', ttlSeconds: 60 }));
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(claims).toMatchObject({ iss: 'https://other', aud: 'x', exp: NOW_S + 60 });
  });

  test.each<[string, Partial<IssueApprovalOptions>]>([
    ['roles', { roles: [] }],
    ['roles', { roles: [''] }],
    ['roles', { roles: ['r'.repeat(65)] }],
    ['roles', { roles: Array.from({ length: 33 }, (_, i) => `r${i}`) }],
    ['decision', { decision: 'maybe' as 'approve' }],
    ['chainId', { chainId: '' }],
    ['reason', { reason: 'x'.repeat(1001) }],
    ['ttlSeconds', { ttlSeconds: 0 }],
  ])('refuses a bad %s', async (field, overrides) => {
    await expect(vote(overrides)).rejects.toMatchObject({ code: ErrorCode.InvalidInput, field });
  });
});

describe('verifyApproval accepts', () => {
  test('a valid approve vote, snapshotting its claims', async () => {
    const token = await vote({ roles: ['sre-lead', 'dba'], reason: 'ok' });
    await expect(verifyApproval(token, manifest, { now: at(60), home })).resolves.toEqual({
      iss: DEV_APPROVER,
      sub: 'alice',
      roles: ['sre-lead', 'dba'],
      chainId: 'chain-1',
      stepId: 'step-1',
      stepDigest: STEP_DIGEST,
      decision: 'approve',
      reason: 'ok',
      jti: 'vote-1',
      iat: NOW_S,
      exp: NOW_S + 900,
    });
  });

  test('a valid deny vote with a justification', async () => {
    const token = await vote({
      sub: 'bob',
      decision: 'deny',
      justification: 'outside the change window',
      jti: 'vote-2',
    });
    await expect(verifyApproval(token, manifest, { now: NOW, home })).resolves.toEqual({
      iss: DEV_APPROVER,
      sub: 'bob',
      roles: ['sre-lead'],
      chainId: 'chain-1',
      stepId: 'step-1',
      stepDigest: STEP_DIGEST,
      decision: 'deny',
      justification: 'outside the change window',
      jti: 'vote-2',
      iat: NOW_S,
      exp: NOW_S + 900,
    });
  });

  test('a vote from the approval inbox carries the IdP issuer and subject (claim idp)', async () => {
    const idp = { iss: 'https://idp.example.com', sub: 'alice@example.com' };
    await expect(
      verifyApproval(approverSigned({}, approvalClaims({ idp })), manifest, { now: NOW, home }),
    ).resolves.toMatchObject({ sub: 'alice', idp });
    // Claims stay open (extra members are ignored), but only iss and sub are kept.
    await expect(
      verifyApproval(approverSigned({}, approvalClaims({ idp: { ...idp, amr: ['pwd'] } })), manifest, {
        now: NOW,
        home,
      }),
    ).resolves.toMatchObject({ idp: { iss: idp.iss, sub: idp.sub } });
    expect(
      (
        await verifyApproval(approverSigned({}, approvalClaims({ idp: { ...idp, amr: ['pwd'] } })), manifest, {
          now: NOW,
          home,
        })
      ).idp,
    ).toEqual(idp);
    for (const bad of ['https://idp.example.com', { iss: 'x' }, { iss: 'x', sub: 7 }, { iss: '', sub: 'y' }])
      await expectApprovalRejected(approverSigned({}, approvalClaims({ idp: bad })), 'approval claim "idp" is invalid');
  });

  test('the hand-crafting helper produces an accepted vote (control)', async () => {
    await expect(verifyApproval(approverSigned(), manifest, { now: NOW, home })).resolves.toMatchObject({
      sub: 'alice',
    });
  });

  test('the snapshot is a copy: mutating it cannot reach another verification', async () => {
    const token = await vote();
    const first = await verifyApproval(token, manifest, { now: NOW, home });
    first.roles.push('security-officer');
    await expect(verifyApproval(token, manifest, { now: NOW, home })).resolves.toMatchObject({ roles: ['sre-lead'] });
  });
});

describe('verifyApproval rejects', () => {
  test('an expired vote (beyond the clock tolerance; within it is accepted)', async () => {
    const token = await vote({ ttlSeconds: 60 });
    await expect(verifyApproval(token, manifest, { now: at(64), home })).resolves.toMatchObject({ sub: 'alice' });
    await expectApprovalRejected(token, 'approval expired', manifest, at(65));
  });

  test('a vote issued in the future', async () => {
    await expectApprovalRejected(
      approverSigned({}, approvalClaims({ iat: NOW_S + 60 })),
      'approval issued in the future',
    );
  });

  test('a vote forged with another home’s approver key', async () => {
    const forged = await vote({ home: otherHome });
    await expectApprovalRejected(forged, 'approval signing key not found');
    // Same, but claiming the trusted kid.
    const [, payload, signature] = forged.split('.');
    const relabelled = `${b64u({ alg: 'EdDSA', kid: approverJwk.kid, typ: APPROVAL_TYP })}.${payload}.${signature}`;
    await expectApprovalRejected(relabelled, 'approval signature invalid');
  });

  test('a tampered payload', async () => {
    const [h, , s] = (await vote({ decision: 'deny' })).split('.');
    await expectApprovalRejected(
      `${h}.${b64u(approvalClaims({ decision: 'approve' }))}.${s}`,
      'approval signature invalid',
    );
  });

  test('an issuer that is not a trusted approver, even signed with the trusted key', async () => {
    await expectApprovalRejected(await vote({ issuer: 'https://evil.example' }), 'approval issuer not trusted');
    // The workload issuer is trusted for credentials, not for votes.
    await expectApprovalRejected(await vote({ issuer: DEV_ISSUER }), 'approval issuer not trusted');
  });

  test('a wrong audience (including the credential audience)', async () => {
    await expectApprovalRejected(await vote({ audience: 'someone-else' }), 'approval audience mismatch');
    await expectApprovalRejected(await vote({ audience: GOVERNOR_AUDIENCE }), 'approval audience mismatch');
  });

  test('any vote when no trusted approvers are configured (fail closed)', async () => {
    const none = devManifest({ trustedApprovers: [] });
    await expectApprovalRejected(await vote(), 'approval issuer not trusted', none);
    await expectApprovalRejected(await vote({ decision: 'deny' }), 'approval issuer not trusted', none);
  });

  test('a vote signed by the workload-issuer key (a trusted key of another role)', async () => {
    const token = signEd25519(
      { alg: 'EdDSA', kid: issuerJwk.kid, typ: APPROVAL_TYP },
      approvalClaims(),
      privateKeyOf(issuerJwk),
    );
    await expectApprovalRejected(token, 'approval signing key not found');
  });
});

describe('token kinds never pass for one another', () => {
  test('a credential is not accepted as an approval', async () => {
    const credential = await issueCredential({
      home,
      sub: 'alice',
      audience: APPROVAL_AUDIENCE,
      issuer: DEV_APPROVER,
      now: NOW,
    });
    await expectApprovalRejected(credential, 'approval type not accepted');
    await expectApprovalRejected(await issueCredential({ home, sub: 'alice', now: NOW }), 'approval type not accepted');
  });

  test('an attestation is not accepted as an approval', async () => {
    await expectApprovalRejected(
      await issueAttestation({ home, sub: 'alice', now: NOW }),
      'approval type not accepted',
    );
  });

  test('a vote with the approver key but typ JWT or absent is not accepted', async () => {
    await expectApprovalRejected(approverSigned({ typ: 'JWT' }), 'approval type not accepted');
    await expectApprovalRejected(approverSigned({ typ: undefined }), 'approval type not accepted');
    await expectApprovalRejected(approverSigned({ typ: 'attestation+jwt' }), 'approval type not accepted');
  });

  test('an approval is not accepted as a credential', async () => {
    const token = await vote();
    const err = await rejection(verifyCredential(token, manifest, { now: NOW, home }));
    expect(err).toEqual({ code: ErrorCode.CredentialInvalid, message: 'credential type not accepted' });
    // Even when the manifest trusts the approver as a credential issuer.
    const confused = devManifest({
      trustedIssuers: [
        { issuer: DEV_APPROVER, audience: APPROVAL_AUDIENCE, jwks: { file: 'keys/approver.jwks.json' } },
      ],
    });
    expect(await rejection(verifyCredential(token, confused, { now: NOW, home }))).toEqual({
      code: ErrorCode.CredentialInvalid,
      message: 'credential type not accepted',
    });
  });

  test('an approval is not accepted as an attestation', async () => {
    const err = await rejection(
      verifyAttestation(await vote(), manifest, { now: NOW, home, expectedSubject: 'alice' }),
    );
    expect(err).toEqual({ code: ErrorCode.AttestationInvalid, message: 'attestation type not accepted' });
  });
});

describe('hostile headers', () => {
  test('alg none, any spelling, with or without a signature', async () => {
    await expectApprovalRejected(
      `${b64u({ alg: 'none', typ: APPROVAL_TYP })}.${b64u(approvalClaims())}.`,
      'approval is unsigned (alg none)',
    );
    await expectApprovalRejected(
      `${b64u({ alg: 'NONE', typ: APPROVAL_TYP })}.${b64u(approvalClaims())}.c2ln`,
      'approval is unsigned (alg none)',
    );
  });

  test('HS256 keyed with the approver public key (algorithm confusion)', async () => {
    const input = `${b64u({ alg: 'HS256', kid: approverJwk.kid, typ: APPROVAL_TYP })}.${b64u(approvalClaims())}`;
    for (const secret of [
      Buffer.from(approverJwk.x!, 'base64url'),
      Buffer.from(JSON.stringify(loadPublicJwks(home, 'approver'))),
    ]) {
      const token = `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
      await expectApprovalRejected(token, 'approval algorithm not allowed');
    }
  });

  test('an algorithm outside the approver allow-list', async () => {
    const edOnly = devManifest({
      trustedApprovers: [{ issuer: DEV_APPROVER, jwks: { file: 'keys/approver.jwks.json' }, algorithms: ['ES256'] }],
    });
    await expectApprovalRejected(await vote(), 'approval algorithm not allowed', edOnly);
  });

  test.each(['jku', 'x5u'])('%s pointing at attacker keys is refused without a fetch', async (name) => {
    const before = requests;
    const token = signEd25519(
      { alg: 'EdDSA', kid: 'attacker', typ: APPROVAL_TYP, [name]: `${serverUrl}/jwks` },
      approvalClaims(),
      attacker.privateKey,
    );
    await expectApprovalRejected(token, `approval header "${name}" is not accepted`);
    expect(requests).toBe(before);
  });

  test('an embedded jwk or x5c is refused', async () => {
    const jwk = { ...attacker.publicKey.export({ format: 'jwk' }), kid: 'attacker' };
    await expectApprovalRejected(
      signEd25519({ alg: 'EdDSA', typ: APPROVAL_TYP, jwk }, approvalClaims(), attacker.privateKey),
      'approval header "jwk" is not accepted',
    );
    await expectApprovalRejected(approverSigned({ x5c: ['MIIB'] }), 'approval header "x5c" is not accepted');
  });

  test('crit is refused', async () => {
    await expectApprovalRejected(
      approverSigned({ crit: ['exp'] }),
      'approval has unsupported critical header parameters',
    );
  });

  test('an oversized token is refused before decoding', async () => {
    const big = approverSigned({}, approvalClaims({ reason: 'x'.repeat(9000) }));
    await expectApprovalRejected(big, 'approval exceeds 8192 bytes');
    await expectApprovalRejected(`${'A'.repeat(9000)}.not-even-json`, 'approval exceeds 8192 bytes');
  });

  test('malformed and missing tokens', async () => {
    await expectApprovalRejected('not-a-jwt', 'approval is malformed');
    await expectApprovalRejected(`${b64u({ alg: 'EdDSA', typ: APPROVAL_TYP })}.e30.`, 'approval is malformed');
    await expectApprovalRejected('', 'approval is missing');
    await expectApprovalRejected(undefined as unknown as string, 'approval is missing');
  });
});

describe('claims', () => {
  test.each(['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'roles', 'chainId', 'stepId', 'stepDigest', 'decision'])(
    'missing %s is rejected',
    async (claim) => {
      const claims = approvalClaims();
      delete claims[claim];
      await expectApprovalRejected(approverSigned({}, claims), `approval missing required claim "${claim}"`);
    },
  );

  test.each<[string, unknown]>([
    ['a string', 'sre-lead'],
    ['empty', []],
    ['33 roles', Array.from({ length: 33 }, (_, i) => `r${i}`)],
    ['an empty role', ['sre-lead', '']],
    ['a 65-character role', ['r'.repeat(65)]],
    ['a number', [7]],
    ['an object', { 0: 'sre-lead', length: 1 }],
    ['null', null],
  ])('roles that are %s are rejected', async (_label, roles) => {
    await expectApprovalRejected(approverSigned({}, approvalClaims({ roles })), 'approval claim "roles" is invalid');
  });

  test('32 roles of 64 characters are accepted', async () => {
    const roles = Array.from({ length: 32 }, (_, i) => `${i}`.padStart(64, 'r'));
    await expect(
      verifyApproval(approverSigned({}, approvalClaims({ roles })), manifest, { now: NOW, home }),
    ).resolves.toMatchObject({ roles });
  });

  test.each<unknown>(['APPROVE', 'maybe', '', true, 1, null, ['approve']])(
    'decision %p is rejected',
    async (decision) => {
      await expectApprovalRejected(
        approverSigned({}, approvalClaims({ decision })),
        'approval claim "decision" is invalid',
      );
    },
  );

  test.each<[string, unknown]>([
    ['sub', 42],
    ['sub', ''],
    ['jti', 7],
    ['jti', ''],
    ['chainId', ''],
    ['chainId', { id: 'chain-1' }],
    ['stepId', 1],
    ['stepDigest', null],
    ['reason', 'x'.repeat(1001)],
    ['reason', 5],
    ['justification', ['why']],
  ])('claim %s = %p is rejected', async (claim, value) => {
    await expectApprovalRejected(
      approverSigned({}, approvalClaims({ [claim]: value })),
      `approval claim "${claim}" is invalid`,
    );
  });

  test('exp of the wrong type is rejected', async () => {
    await expectApprovalRejected(
      approverSigned({}, approvalClaims({ exp: String(NOW_S + 300) })),
      'approval claim "exp" is invalid',
    );
  });

  test('nbf in the future is rejected', async () => {
    await expectApprovalRejected(approverSigned({}, approvalClaims({ nbf: NOW_S + 60 })), 'approval not yet valid');
  });

  test('an empty reason and 1000-character notes are accepted', async () => {
    const token = approverSigned({}, approvalClaims({ reason: '', justification: 'j'.repeat(1000) }));
    await expect(verifyApproval(token, manifest, { now: NOW, home })).resolves.toMatchObject({
      reason: '',
      justification: 'j'.repeat(1000),
    });
  });

  test('now must be a valid Date', async () => {
    await expect(verifyApproval(await vote(), manifest, { now: new Date(NaN), home })).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
    });
  });
});
