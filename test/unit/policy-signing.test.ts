import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign } from 'jose';
import { initKeys, loadPrivateKey, loadPublicJwks } from '../../identity';
import { ErrorCode } from '../../contracts/errors';
import { loadBundle } from '../../policies/bundle';
import { archiveBundle, archivedDigests, bundleArchiveDir, loadArchivedBundle } from '../../policies/bundle-archive';
import {
  loadSignedBundle,
  readTrustedKeys,
  signBundleDir,
  signDigest,
  SIGNATURE_FILE,
  SIGNATURE_TYP,
  verifyDigestSignature,
} from '../../policies/signing';
import { copyBundle, DEFAULT_BUNDLE_DIR, editBundleFile } from '../harness/policy';

let home: string;
let otherHome: string;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'governor-sign-home-'));
  otherHome = mkdtempSync(join(tmpdir(), 'governor-sign-other-'));
  await initKeys(home, { names: ['policy-signing'] });
  await initKeys(otherHome, { names: ['policy-signing'] });
});

const trusted = () => loadPublicJwks(home, 'policy-signing');
const key = () => loadPrivateKey(home, 'policy-signing');

describe('detached bundle signatures (RFC 7515 appendix F)', () => {
  const digest = loadBundle(DEFAULT_BUNDLE_DIR).digest;

  it('signs the digest as a detached compact JWS that verifies against the trusted JWKS', async () => {
    const k = await key();
    const jws = await signDigest(digest, k);
    const [header, payload, signature] = jws.split('.');
    expect(payload).toBe('');
    expect(signature).toMatch(/^[\w-]{86}$/);
    expect(JSON.parse(Buffer.from(header!, 'base64url').toString())).toEqual({
      alg: 'EdDSA',
      kid: k.kid,
      typ: SIGNATURE_TYP,
    });
    await expect(verifyDigestSignature(digest, jws, trusted())).resolves.toEqual({
      status: 'valid',
      digest,
      kid: k.kid,
      message: `signed by trusted key "${k.kid}"`,
    });
  });

  it('reports a signature over another digest as tampered', async () => {
    const jws = await signDigest(digest, await key());
    const other = 'f'.repeat(64);
    await expect(verifyDigestSignature(other, jws, trusted())).resolves.toMatchObject({
      status: 'tampered',
      digest: other,
    });
  });

  it('reports a signature by a key outside the trusted JWKS as untrusted, naming its kid', async () => {
    const foreign = await loadPrivateKey(otherHome, 'policy-signing');
    const check = await verifyDigestSignature(digest, await signDigest(digest, foreign), trusted());
    expect(check).toMatchObject({ status: 'untrusted', kid: foreign.kid });
    expect(check.message).toContain(foreign.kid);
  });

  it('reports a missing signature as unsigned', async () => {
    await expect(verifyDigestSignature(digest, undefined, trusted())).resolves.toMatchObject({
      status: 'unsigned',
      message: 'the bundle has no bundle.sig',
    });
  });

  it.each([
    ['garbage', async () => 'not a jws'],
    [
      'an attached (non-detached) JWS',
      async () =>
        new CompactSign(new TextEncoder().encode(digest))
          .setProtectedHeader({ alg: 'EdDSA', kid: (await key()).kid, typ: SIGNATURE_TYP })
          .sign((await key()).key),
    ],
    ['another typ', async () => detached({ typ: 'JWT' })],
    [
      'a jku header (keys must come from the trusted JWKS)',
      async () => detached({ typ: SIGNATURE_TYP, jku: 'https://evil.example/jwks' }),
    ],
    ['an embedded jwk', async () => detached({ typ: SIGNATURE_TYP, jwk: { kty: 'OKP', crv: 'Ed25519', x: 'AAAA' } })],
    ['no kid', async () => detached({ typ: SIGNATURE_TYP }, false)],
  ])('refuses %s as malformed', async (_name, make) => {
    await expect(verifyDigestSignature(digest, await make(), trusted())).resolves.toMatchObject({
      status: 'malformed',
    });
  });

  /** A detached JWS with a chosen header, signed by the trusted key. */
  async function detached(extra: Record<string, unknown>, withKid = true): Promise<string> {
    const k = await key();
    const jws = await new CompactSign(new TextEncoder().encode(digest))
      .setProtectedHeader({ alg: 'EdDSA', ...(withKid ? { kid: k.kid } : {}), ...extra } as never)
      .sign(k.key);
    const [h, , s] = jws.split('.');
    return `${h}..${s}`;
  }

  it('refuses to sign something that is not a digest', async () => {
    await expect(signDigest('../etc/passwd', await key())).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
      field: 'digest',
    });
  });
});

describe('signing and loading a bundle directory', () => {
  it('writes bundle.sig, which is not covered by the digest, and loads as valid', async () => {
    const dir = copyBundle();
    const before = loadBundle(dir).digest;
    const signed = await signBundleDir(dir, await key());
    expect(signed.file).toBe(join(dir, SIGNATURE_FILE));
    expect(readFileSync(signed.file, 'utf8').trim()).toBe(signed.signature);
    expect(loadBundle(dir).digest).toBe(before);
    const loaded = await loadSignedBundle(dir, { trusted: trusted(), requireSigned: true });
    expect(loaded.check).toMatchObject({ status: 'valid', digest: before });
    expect(loaded.signature?.trim()).toBe(signed.signature);
  });

  it('refuses a bundle edited after signing (tampered), unsigned or signed by an untrusted key when signatures are required', async () => {
    const tampered = copyBundle();
    await signBundleDir(tampered, await key());
    editBundleFile(tampered, 'payments.cedar', 'context.amount > 10000', 'context.amount > 90000');
    await expect(loadSignedBundle(tampered, { trusted: trusted(), requireSigned: true })).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      field: SIGNATURE_FILE,
      message: expect.stringContaining('refused (tampered)'),
    });

    const unsigned = copyBundle();
    await expect(loadSignedBundle(unsigned, { trusted: trusted(), requireSigned: true })).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      message: expect.stringContaining('refused (unsigned)'),
    });

    const untrusted = copyBundle();
    await signBundleDir(untrusted, await loadPrivateKey(otherHome, 'policy-signing'));
    await expect(loadSignedBundle(untrusted, { trusted: trusted(), requireSigned: true })).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      message: expect.stringContaining('refused (untrusted)'),
    });

    // Not required: loaded, and the check says what is wrong.
    await expect(loadSignedBundle(tampered, { trusted: trusted() })).resolves.toMatchObject({
      check: { status: 'tampered' },
    });
  });

  it('a signature copied from another bundle does not transfer', async () => {
    const a = copyBundle();
    const b = copyBundle();
    editBundleFile(b, 'deployments.cedar', '@quorum("2")', '@quorum("1")');
    await signBundleDir(a, await key());
    writeFileSync(join(b, SIGNATURE_FILE), readFileSync(join(a, SIGNATURE_FILE)));
    await expect(loadSignedBundle(b, { trusted: trusted() })).resolves.toMatchObject({ check: { status: 'tampered' } });
  });

  it('requires trusted keys when signatures are required', async () => {
    await expect(loadSignedBundle(copyBundle(), { requireSigned: true })).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      field: 'policyTrustJwks',
    });
  });

  it('refuses to sign an invalid bundle, writing nothing', async () => {
    const dir = copyBundle();
    editBundleFile(dir, 'deployments.cedar', 'resource == Environment::"prod")', 'resource = Environment::"prod")');
    await expect(signBundleDir(dir, await key())).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      message: expect.stringContaining('deployments.cedar:'),
    });
    expect(existsSync(join(dir, SIGNATURE_FILE))).toBe(false);
  });
});

describe('trusted key files', () => {
  it('reads a public JWKS and refuses a missing file, a non-JWKS and private key material', () => {
    const dir = mkdtempSync(join(tmpdir(), 'governor-trust-'));
    expect(readTrustedKeys(join(home, 'keys', 'policy-signing.jwks.json')).keys).toHaveLength(1);
    expect(() => readTrustedKeys(join(dir, 'absent.json'))).toThrow(
      expect.objectContaining({ code: ErrorCode.KeysMissing, message: expect.stringContaining('absent.json') }),
    );
    writeFileSync(join(dir, 'empty.json'), '{"keys":[]}');
    expect(() => readTrustedKeys(join(dir, 'empty.json'))).toThrow(
      expect.objectContaining({ code: ErrorCode.KeysMissing, field: 'policyTrustJwks.keys' }),
    );
    writeFileSync(
      join(dir, 'private.json'),
      JSON.stringify({
        keys: [JSON.parse(readFileSync(join(home, 'keys', 'policy-signing.private.jwk.json'), 'utf8'))],
      }),
    );
    expect(() => readTrustedKeys(join(dir, 'private.json'))).toThrow(
      expect.objectContaining({ message: expect.stringContaining('public keys only') }),
    );
    // The error never echoes the key material.
    let message = '';
    try {
      readTrustedKeys(join(dir, 'private.json'));
    } catch (err) {
      message = (err as Error).message;
    }
    const d = (JSON.parse(readFileSync(join(home, 'keys', 'policy-signing.private.jwk.json'), 'utf8')) as { d: string })
      .d;
    expect(message).toContain('private.json');
    expect(message).not.toContain(d);
  });
});

describe('bundle archive', () => {
  it('keeps a bundle by digest (with its signature) and loads it back', async () => {
    const archiveHome = mkdtempSync(join(tmpdir(), 'governor-archive-'));
    const dir = copyBundle();
    const { signature } = await signBundleDir(dir, await key());
    const bundle = loadBundle(dir);
    const target = archiveBundle(archiveHome, bundle, signature);
    expect(target).toBe(join(bundleArchiveDir(archiveHome), bundle.digest));
    expect(existsSync(join(target, SIGNATURE_FILE))).toBe(true);
    expect(archiveBundle(archiveHome, bundle)).toBe(target); // idempotent
    expect(archivedDigests(archiveHome)).toEqual([bundle.digest]);
    // The source can change or vanish: the archive still has the bundle that made old decisions.
    rmSync(dir, { recursive: true, force: true });
    const back = loadArchivedBundle(archiveHome, bundle.digest);
    expect(back.digest).toBe(bundle.digest);
    expect(back.policies.map((p) => p.id)).toEqual(bundle.policies.map((p) => p.id));
  });

  it('refuses an archived bundle whose files no longer hash to its digest, an unknown digest and a non-digest', () => {
    const archiveHome = mkdtempSync(join(tmpdir(), 'governor-archive-'));
    const bundle = loadBundle(DEFAULT_BUNDLE_DIR);
    const target = archiveBundle(archiveHome, bundle);
    editBundleFile(target, 'payments.cedar', 'context.amount > 10000', 'context.amount > 90000');
    expect(() => loadArchivedBundle(archiveHome, bundle.digest)).toThrow(
      expect.objectContaining({ code: ErrorCode.PolicyError, message: expect.stringContaining('corrupted') }),
    );
    expect(() => loadArchivedBundle(archiveHome, 'a'.repeat(64))).toThrow(
      expect.objectContaining({ code: ErrorCode.NotFound }),
    );
    expect(() => loadArchivedBundle(archiveHome, '../../etc')).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidInput, field: 'digest' }),
    );
    renameSync(target, `${target}-moved`);
    expect(archivedDigests(archiveHome)).toEqual([]);
  });
});
