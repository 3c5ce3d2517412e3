import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GrantSigner } from '../activities/grants';
import { checkInclusion, sha256 } from '../audit/transparency';
import type { ServiceActivityInput } from '../contracts/executor';
import { CompactRange, inclusionProof, leafHash, rootOf } from '../core/merkle';
import { initKeys, loadPublicJwks } from '../identity';
import { verifyServiceActivityGrant } from '../sdk/grant';
import { round, summarize, type Summary } from './stats';

/*
 * Evidence costs (issue 20 item 5), in process: minting an execution grant (what the `mintGrant` local
 * activity does per service step) and verifying it (what a service does per call), appending a chain
 * checkpoint to the Merkle log, and checking an inclusion proof (what `verify` adds per chain).
 * `node dist/bench/evidence.js [--json] [--iterations N]`; with `--json` only the JSON is printed.
 */

/** Microsecond figures of one operation. */
interface Micro {
  p50Micros: number;
  p99Micros: number;
  meanMicros: number;
}

const micro = (s: Summary): Micro => ({ p50Micros: round(s.p50), p99Micros: round(s.p99), meanMicros: round(s.mean) });

async function timeEach(n: number, job: (i: number) => Promise<unknown> | unknown): Promise<Micro> {
  for (let i = 0; i < Math.min(200, n); i++) await job(i); // warm up
  const sample: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await job(i);
    sample.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return micro(summarize(sample));
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const at = process.argv.indexOf('--iterations');
  const iterations = at > 0 ? Number(process.argv[at + 1]) : 2000;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-bench-evidence-'));
  try {
    await initKeys(home, { names: ['grant'] });
    const signer = new GrantSigner(home);
    const jwks = loadPublicJwks(home, 'grant');
    const call = (i: number): ServiceActivityInput => ({
      idempotencyKey: `bench-${i}/deploy`,
      chainId: `bench-${i}`,
      stepId: 'deploy',
      action: 'deploy',
      resource: { type: 'Environment', id: 'staging' },
      input: { version: '1.4.2' },
    });
    const mint = (i: number) =>
      signer.mint({ ...call(i), stepDigest: 'a'.repeat(64), receipt: 'b'.repeat(64), audience: 'svc', ttlMs: 240_000 });
    const grants = await Promise.all(Array.from({ length: iterations }, (_, i) => mint(i)));
    const grantMint = await timeEach(iterations, mint);
    const grantVerify = await timeEach(iterations, (i) =>
      verifyServiceActivityGrant({ ...call(i), grant: grants[i]! }, jwks, 'svc'),
    );

    const leaves = Array.from({ length: 10_000 }, (_, i) =>
      leafHash(sha256, new TextEncoder().encode(`checkpoint ${i}`)),
    );
    const range = new CompactRange(sha256);
    const logAppend = await timeEach(leaves.length, (i) => {
      range.append(leaves[i]!);
      return range.root();
    });
    const root = Buffer.from(rootOf(sha256, leaves)).toString('hex');
    const head = { treeSize: leaves.length, rootHash: root, timestamp: 0 };
    const proofs = Array.from({ length: 1000 }, (_, i) =>
      inclusionProof(sha256, leaves, i * 10).map((p) => Buffer.from(p).toString('hex')),
    );
    const inclusionVerify = await timeEach(1000, (i) => {
      if (!checkInclusion(Buffer.from(leaves[i * 10]!).toString('hex'), i * 10, head, proofs[i]!))
        throw new Error('inclusion proof failed');
    });
    const results = {
      iterations,
      grantMint,
      grantVerify,
      logAppend: { ...logAppend, treeSize: leaves.length },
      inclusionVerify: { ...inclusionVerify, treeSize: leaves.length, proofHashes: proofs[0]!.length },
    };
    if (json) process.stdout.write(`${JSON.stringify(results)}\n`);
    else {
      process.stdout.write(
        [
          `grant mint      p50 ${grantMint.p50Micros} µs  p99 ${grantMint.p99Micros} µs (per service step, one local activity)`,
          `grant verify    p50 ${grantVerify.p50Micros} µs  p99 ${grantVerify.p99Micros} µs (per call, in the service)`,
          `log append      p50 ${logAppend.p50Micros} µs  p99 ${logAppend.p99Micros} µs (per checkpoint, ${leaves.length} leaves)`,
          `inclusion check p50 ${inclusionVerify.p50Micros} µs  p99 ${inclusionVerify.p99Micros} µs (per chain verified)`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench evidence: ${(err as Error).message}\n`);
  process.exit(1);
});
