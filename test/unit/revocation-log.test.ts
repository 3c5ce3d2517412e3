import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CompactSign } from 'jose';
import { initKeys, loadPrivateKey, loadPublicJwks } from '../../identity';
import {
  RevocationLogFile,
  RevocationVerifier,
  logHead,
  mergeRevocations,
  revocationHash,
  signRevocationEntry,
  verifyRevocationLog,
} from '../../activities/revocation-log';
import { GENESIS_HASH } from '../../contracts/receipt';
import { REVOCATION_TYP, type SignedRevocation } from '../../contracts/revocation';
import type { ReceiptSigner } from '../../core/receipts';

/**
 * The signed, append-only revocation log: only entries signed with the governor's receipt key, for
 * this registry, whose hash is their body's, are ever accepted; a log is one unbroken hash chain;
 * merging copies never loses a revocation; the local log file is append-only and tolerant of torn lines.
 */

const REGISTRY = 'governor-revocations:unit';
const AT = new Date('2030-01-01T00:00:00.000Z');

let home: string;
let signer: ReceiptSigner;
let verifier: RevocationVerifier;
let attacker: ReceiptSigner;

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-revlog-'));
  await initKeys(home);
  signer = await loadPrivateKey(home, 'receipt');
  verifier = new RevocationVerifier(() => loadPublicJwks(home, 'receipt'));
  const pair = crypto.generateKeyPairSync('ed25519');
  // The attacker even reuses the governor's key id: only the key decides.
  attacker = { key: pair.privateKey, kid: signer.kid };
});
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

/** A log of `workloads`, in order, signed with `by` (default the receipt key). */
async function logOf(
  workloads: string[],
  by: ReceiptSigner = signer,
  registry = REGISTRY,
): Promise<SignedRevocation[]> {
  const out: SignedRevocation[] = [];
  for (const workload of workloads) {
    const { seq, head } = logHead(out);
    out.push(
      await signRevocationEntry(
        by,
        { registry, seq: seq + 1, workload, reason: `revoked ${workload}`, by: 'security', prevHash: head },
        AT,
      ),
    );
  }
  return out;
}

/** Re-signs `entry` after `change`, with the hash recomputed (a forger who holds some key). */
async function resigned(
  entry: SignedRevocation,
  change: Partial<SignedRevocation>,
  by: ReceiptSigner,
): Promise<SignedRevocation> {
  const body = { ...entry, ...change };
  const hash = revocationHash(body);
  const signature = await new CompactSign(new TextEncoder().encode(hash))
    .setProtectedHeader({ alg: 'EdDSA', kid: by.kid, typ: REVOCATION_TYP })
    .sign(by.key);
  return { ...body, hash, signature };
}

describe('entries', () => {
  test('a signed entry verifies; its JWS is EdDSA, typ governor-revocation+jws, over its hash', async () => {
    const [e] = await logOf(['agent:a']);
    expect(e).toMatchObject({
      v: 1,
      registry: REGISTRY,
      seq: 1,
      workload: 'agent:a',
      reason: 'revoked agent:a',
      by: 'security',
      at: AT.toISOString(),
      prevHash: GENESIS_HASH,
    });
    expect(e!.hash).toBe(revocationHash(e!));
    await expect(verifier.check(e, REGISTRY)).resolves.toEqual({ ok: true, entry: e });
  });

  test('forged, unsigned, tampered and foreign entries are never accepted', async () => {
    const [e] = await logOf(['agent:a']);
    const genuine = e!;
    const cases: [string, unknown, string][] = [
      [
        'signed by another key (same kid)',
        await resigned(genuine, { workload: 'agent:victim' }, attacker),
        'is not signed by the governor receipt key',
      ],
      [
        'unsigned (empty signature segment)',
        { ...genuine, signature: `${genuine.signature.split('.')[0]}.${genuine.signature.split('.')[1]}.` },
        'is not signed (no canonical compact JWS)',
      ],
      ['no signature at all', { ...genuine, signature: 'unsigned' }, 'is not signed (no canonical compact JWS)'],
      [
        'alg none',
        {
          ...genuine,
          signature: `${Buffer.from(JSON.stringify({ alg: 'none', typ: REVOCATION_TYP })).toString('base64url')}.${Buffer.from(genuine.hash).toString('base64url')}.`,
        },
        'is not signed (no canonical compact JWS)',
      ],
      ['body changed, hash kept', { ...genuine, workload: 'agent:victim' }, 'does not hash to its hash'],
      [
        'body changed, hash recomputed, old signature',
        { ...genuine, workload: 'agent:victim', hash: revocationHash({ ...genuine, workload: 'agent:victim' }) },
        'has a signature over another hash',
      ],
      [
        'signed by the governor for another registry',
        (await logOf(['agent:a'], signer, 'governor-revocations:other'))[0],
        'belongs to another registry',
      ],
      ['an unknown field', { ...genuine, note: 'x' }, 'is not a revocation entry'],
      ['not an object', 'agent:a', 'is not a revocation entry'],
    ];
    for (const [name, entry, problem] of cases) {
      await expect(verifier.check(entry, REGISTRY).then((r) => [name, r])).resolves.toEqual([
        name,
        { ok: false, problem },
      ]);
    }
    // A receipt signature (the governor's key, over a hash, but typed as a receipt) cannot pass for a revocation's.
    const asReceipt = {
      ...genuine,
      signature: await new CompactSign(new TextEncoder().encode(genuine.hash))
        .setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: 'governor-receipt+jws' })
        .sign(signer.key),
    };
    await expect(verifier.check(asReceipt, REGISTRY)).resolves.toEqual({
      ok: false,
      problem: 'is signed as something else than a revocation',
    });
  });

  test('keys that cannot be loaded are not a verdict: the check throws (callers fail closed)', async () => {
    const [e] = await logOf(['agent:a']);
    const blind = new RevocationVerifier(() => loadPublicJwks(path.join(home, 'missing'), 'receipt'));
    await expect(blind.check(e, REGISTRY)).rejects.toMatchObject({ code: 'GOVERNOR_KEYS_MISSING' });
  });
});

describe('a log', () => {
  test('verifies as one unbroken chain (any order in, seq order out)', async () => {
    const log = await logOf(['agent:a', 'agent:b', 'agent:c']);
    const r = await verifyRevocationLog([log[2], log[0], log[1]], REGISTRY, verifier);
    expect(r).toEqual({ ok: true, log });
    expect(logHead(log)).toEqual({ seq: 3, head: log[2]!.hash });
    expect(logHead([])).toEqual({ seq: 0, head: GENESIS_HASH });
  });

  test('a gap, a broken link, a repeated workload or one forged entry fails the whole list', async () => {
    const log = await logOf(['agent:a', 'agent:b', 'agent:c']);
    await expect(verifyRevocationLog([log[0], log[2]], REGISTRY, verifier)).resolves.toEqual({
      ok: false,
      problem: 'entry 2 is missing',
    });
    const relinked = await resigned(log[1]!, { prevHash: 'f'.repeat(64) }, signer);
    await expect(verifyRevocationLog([log[0], relinked], REGISTRY, verifier)).resolves.toEqual({
      ok: false,
      problem: 'entry 2 does not link to entry 1',
    });
    const twice = await resigned(log[1]!, { workload: 'agent:a' }, signer);
    await expect(verifyRevocationLog([log[0], twice], REGISTRY, verifier)).resolves.toEqual({
      ok: false,
      problem: 'entry 2 revokes a workload twice',
    });
    const forged = await resigned(log[2]!, {}, attacker);
    await expect(verifyRevocationLog([...log.slice(0, 2), forged], REGISTRY, verifier)).resolves.toEqual({
      ok: false,
      problem: 'an entry is not signed by the governor receipt key',
    });
  });
});

describe('merging copies', () => {
  test('keeps the longest chain and signs nothing new when every copy is a prefix of it', async () => {
    const log = await logOf(['agent:a', 'agent:b', 'agent:c']);
    expect(mergeRevocations([...log.slice(0, 1), ...log, ...log.slice(0, 2)])).toEqual({ chain: log, missing: [] });
    expect(mergeRevocations([])).toEqual({ chain: [], missing: [] });
  });

  test('after a fork (a reset run appended other entries) the longer branch wins and the other branch’s revocations are restored, none lost', async () => {
    const base = await logOf(['agent:a', 'agent:b']);
    // The reset run went back to entry 1 and appended c, d, e: longer than the lost branch a, b.
    const fork: SignedRevocation[] = [base[0]!];
    for (const workload of ['agent:c', 'agent:d', 'agent:e']) {
      const { seq, head } = logHead(fork);
      fork.push(
        await signRevocationEntry(
          signer,
          { registry: REGISTRY, seq: seq + 1, workload, reason: `revoked ${workload}`, prevHash: head },
          AT,
        ),
      );
    }
    const merged = mergeRevocations([...base, ...fork]);
    expect(merged.chain).toEqual(fork);
    expect(merged.missing).toEqual([{ workload: 'agent:b', reason: 'revoked agent:b', by: 'security' }]);
  });

  test('entries that do not start at genesis are restored as revocations, not trusted as a chain', async () => {
    const log = await logOf(['agent:a', 'agent:b', 'agent:c']);
    const merged = mergeRevocations(log.slice(1));
    expect(merged.chain).toEqual([]);
    expect(merged.missing.map((m) => m.workload)).toEqual(['agent:b', 'agent:c']);
  });
});

describe('the local log file', () => {
  test('appends only new entries, survives a torn line, and lives under <home>/revocations with mode 0600', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-revfile-'));
    try {
      const file = new RevocationLogFile(dir, 'governor-revocations:queue/with odd chars');
      expect(path.dirname(file.file)).toBe(path.join(dir, 'revocations'));
      expect(path.basename(file.file)).toMatch(/^governor-revocations_queue_with_odd_chars-[0-9a-f]{12}\.jsonl$/);
      expect(file.read()).toEqual([]);
      const log = await logOf(['agent:a', 'agent:b']);
      file.append(log.slice(0, 1));
      file.append(log);
      fs.appendFileSync(file.file, '{"torn": ');
      const again = new RevocationLogFile(dir, 'governor-revocations:queue/with odd chars');
      expect(again.read()).toEqual(log);
      // An entry appended after the torn line is kept on a line of its own.
      const [c] = await logOf(['agent:c']);
      again.append([c!]);
      expect(new RevocationLogFile(dir, 'governor-revocations:queue/with odd chars').read()).toEqual([...log, c]);
      expect((fs.statSync(file.file).mode & 0o777).toString(8)).toBe('600');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
