import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CompactSign, compactVerify, createLocalJWKSet } from 'jose';
import { makeReceipt } from '../../core/receipts';
import { initKeys, loadPrivateKey, loadPrivateKeyObject, loadPublicJwks } from '../../identity';
import { GENESIS_HASH } from '../../contracts/receipt';

/*
 * Receipts are signed synchronously with node:crypto (no WebCrypto job per receipt). Ed25519 is
 * deterministic, so the compact JWS must be byte for byte what jose's CompactSign makes with the same
 * key (same protected header, same payload), and verify with the published receipt key.
 */

let dir: string;
let home: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-receipt-signing-'));
  home = path.join(dir, 'home');
  await initKeys(home, { names: ['receipt'] });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('makeReceipt signatures', () => {
  it('are exactly the JWS jose signs, and verify with the receipt JWKS', async () => {
    const signer = await loadPrivateKey(home, 'receipt');
    const jwks = createLocalJWKSet(loadPublicJwks(home, 'receipt'));
    let prev = { seq: 0, hash: GENESIS_HASH };
    for (const [kind, payload] of [
      ['decision', { effect: 'allow' }],
      ['execution', { status: 'completed' }],
      ['checkpoint', { status: 'Completed', reason: null, steps: 2 }],
    ] as const) {
      const receipt = await makeReceipt(signer, {
        chainId: 'chain-1',
        ...(kind === 'checkpoint' ? {} : { stepId: 's1' }),
        kind,
        payload,
        prev,
      });
      const jose = await new CompactSign(new TextEncoder().encode(receipt.hash))
        .setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: 'governor-receipt+jws' })
        .sign(signer.key);
      expect(receipt.signature).toBe(jose);
      const verified = await compactVerify(receipt.signature, jwks, { algorithms: ['EdDSA'] });
      expect(new TextDecoder().decode(verified.payload)).toBe(receipt.hash);
      expect(verified.protectedHeader).toEqual({ alg: 'EdDSA', kid: signer.kid, typ: 'governor-receipt+jws' });
      prev = { seq: receipt.seq, hash: receipt.hash };
    }
  });

  it('sign the same with the key as a node KeyObject', async () => {
    const signer = await loadPrivateKey(home, 'receipt');
    const args = {
      chainId: 'chain-1',
      stepId: 's1',
      kind: 'decision' as const,
      payload: { n: 1 },
      prev: { seq: 0, hash: GENESIS_HASH },
    };
    const fromCryptoKey = await makeReceipt(signer, args);
    const fromKeyObject = await makeReceipt(await loadPrivateKeyObject(home, 'receipt'), args);
    expect(fromKeyObject).toEqual(fromCryptoKey);
  });
});
