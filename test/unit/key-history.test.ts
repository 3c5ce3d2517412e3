import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { outsideWindow, ROTATION_GRACE_MS } from '../../audit/verify/checks/receipts';
import { initKeys, loadPrivateKeyObject, loadPublicJwks, rotateKey } from '../../identity';

/** Key history (issue 20 item 1): rotation keeps retired public keys with their window; `--force` will not drop them. */

const homes: string[] = [];
const home = async (): Promise<string> => {
  const h = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-keys-'));
  homes.push(h);
  await initKeys(h);
  return h;
};
afterAll(() => homes.forEach((h) => fs.rmSync(h, { recursive: true, force: true })));

test('rotate publishes the new key first with nbf, keeps the old one with retired, and replaces the private key', async () => {
  const h = await home();
  const first = loadPublicJwks(h, 'receipt').keys[0]!.kid!;
  const at = new Date('2026-11-30T00:00:00Z');
  const r1 = await rotateKey(h, 'receipt', at);
  const r2 = await rotateKey(h, 'receipt', new Date(at.getTime() + 60_000));
  expect(r1.retiredKid).toBe(first);
  expect(r2.retiredKid).toBe(r1.kid);
  const keys = loadPublicJwks(h, 'receipt').keys as Record<string, unknown>[];
  expect(keys.map((k) => k.kid)).toEqual([r2.kid, r1.kid, first]);
  expect(keys[0]).toMatchObject({ nbf: at.getTime() / 1000 + 60 });
  expect(keys[0]!.retired).toBeUndefined();
  expect(keys[1]).toMatchObject({ nbf: at.getTime() / 1000, retired: at.getTime() / 1000 + 60 });
  expect(keys[2]).toMatchObject({ retired: at.getTime() / 1000 });
  expect(keys[2]!.nbf).toBeUndefined();
  expect((await loadPrivateKeyObject(h, 'receipt')).kid).toBe(r2.kid);
  // A plain `keys init` keeps the history as it is.
  await initKeys(h);
  expect((loadPublicJwks(h, 'receipt').keys as Record<string, unknown>[]).map((k) => k.kid)).toEqual([
    r2.kid,
    r1.kid,
    first,
  ]);
});

test('keys init --force refuses to drop a key that signed something or a key history; fresh keys it replaces', async () => {
  const fresh = await home();
  await expect(initKeys(fresh, { force: true })).resolves.toBeDefined();
  const used = await home();
  await loadPrivateKeyObject(used, 'receipt'); // a worker loaded it to sign receipts
  await expect(initKeys(used, { force: true, names: ['receipt'] })).rejects.toThrow(
    /would drop receipt key\(s\) .* use `governor keys rotate receipt`/,
  );
  // Keys that sign no evidence (an issuer) are still replaced as before.
  await loadPrivateKeyObject(used, 'issuer');
  await expect(initKeys(used, { force: true, names: ['issuer'] })).resolves.toBeDefined();
  const rotated = await home();
  await rotateKey(rotated, 'policy-signing');
  await expect(initKeys(rotated, { force: true, names: ['policy-signing'] })).rejects.toThrow(/keys rotate policy/);
});

test('a signature counts only inside its key window (with the rotation grace)', () => {
  const nbf = 1_000_000;
  const retired = 2_000_000;
  expect(outsideWindow(undefined, undefined)).toBeUndefined();
  expect(outsideWindow({}, 5)).toBeUndefined();
  expect(outsideWindow({ nbf, retired }, nbf * 1000)).toBeUndefined();
  expect(outsideWindow({ nbf, retired }, retired * 1000 + ROTATION_GRACE_MS)).toBeUndefined();
  expect(outsideWindow({ nbf, retired }, retired * 1000 + ROTATION_GRACE_MS + 1)).toMatch(/after it was retired/);
  expect(outsideWindow({ nbf }, nbf * 1000 - ROTATION_GRACE_MS - 1)).toMatch(/before it was introduced/);
  expect(outsideWindow({ retired }, undefined)).toMatch(/without a time/);
});
