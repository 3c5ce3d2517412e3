import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign } from 'jose';
import { PolicyStore } from '../../activities/policy-store';
import { initKeys, loadPrivateKey, loadPublicJwks } from '../../identity';
import { loadBundle } from '../../policies/bundle';
import { signBundleDir, signDigest, SIGNATURE_TYP, verifyDigestSignature } from '../../policies/signing';
import { copyBundle, DEFAULT_BUNDLE_DIR } from '../harness/policy';

/** Signature format 2 (version and issue time in the signed header) and the policy store's rollback protection. */

let home: string;
beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'governor-versions-'));
  await initKeys(home, { names: ['policy-signing'] });
});
const digest = loadBundle(DEFAULT_BUNDLE_DIR).digest;

function variant(name: string): string {
  const dir = copyBundle();
  writeFileSync(join(dir, `${name}.cedar`), `@id("${name}")\nforbid (principal, action, resource) when { false };\n`);
  return dir;
}

describe('versioned bundle signatures', () => {
  it('carry the version and issue time in the signed header; unversioned ones verify as before', async () => {
    const key = await loadPrivateKey(home, 'policy-signing');
    const trusted = loadPublicJwks(home, 'policy-signing');
    const v = await verifyDigestSignature(
      digest,
      await signDigest(digest, key, { version: 7, issuedAt: '2026-01-02T03:04:05.000Z' }),
      trusted,
    );
    expect(v).toMatchObject({ status: 'valid', version: 7, issuedAt: '2026-01-02T03:04:05.000Z' });
    const legacy = await verifyDigestSignature(digest, await signDigest(digest, key), trusted);
    expect(legacy.status).toBe('valid');
    expect(legacy.version).toBeUndefined();
  });

  it('a version changed after signing does not verify; a malformed version is refused', async () => {
    const key = await loadPrivateKey(home, 'policy-signing');
    const trusted = loadPublicJwks(home, 'policy-signing');
    const [, , sig] = (await signDigest(digest, key, { version: 2 })).split('.');
    const header = JSON.parse(
      Buffer.from((await signDigest(digest, key, { version: 2 })).split('.')[0]!, 'base64url').toString(),
    ) as Record<string, unknown>;
    const bumped = Buffer.from(JSON.stringify({ ...header, bundleVersion: 9 })).toString('base64url');
    expect((await verifyDigestSignature(digest, `${bumped}..${sig}`, trusted)).status).toBe('tampered');
    const bad = await new CompactSign(new TextEncoder().encode(digest))
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: SIGNATURE_TYP, bundleVersion: 1.5, issuedAt: 'now' })
      .sign(key.key);
    const [h, , s] = bad.split('.');
    expect((await verifyDigestSignature(digest, `${h}..${s}`, trusted)).status).toBe('malformed');
    await expect(signDigest(digest, key, { version: 0 })).rejects.toThrow(/version: must be an integer/);
  });

  it('the policy store refuses an older version than the highest it activated or was told of', async () => {
    const key = await loadPrivateKey(home, 'policy-signing');
    const [v1, v2, v3, old] = ['v1', 'v2', 'v3', 'old'].map(variant);
    await signBundleDir(v1!, key, { version: 1 });
    await signBundleDir(v2!, key, { version: 2 });
    await signBundleDir(v3!, key, { version: 3 });
    await signBundleDir(old!, key); // signed before versions
    const store = new PolicyStore({ home, requireSigned: true });
    await store.activateFrom(v2!);
    await expect(store.activateFrom(v1!)).rejects.toThrow(/rollback\): version 1 is older than version 2/);
    await expect(store.activateFrom(old!)).rejects.toThrow(/rollback\): its signature carries no version/);
    expect(store.current()?.bundle.digest).toBe(loadBundle(v2!).digest);
    await store.activateFrom(v2!); // the same bundle again is no rollback
    store.raiseVersionFloor(3, "the fleet's active bundle");
    await expect(store.activateFrom(v2!)).resolves.toBeDefined(); // same digest: kept
    await expect(store.activateFrom(v1!)).rejects.toThrow(/older than version 3 \(the fleet's active bundle\)/);
    await expect(store.activateFrom(v3!)).resolves.toMatchObject({ signature: { version: 3 } });
  });
});
