import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GrantSigner } from '../activities/grants';
import { checkInclusion, sha256 } from '../audit/transparency';
import type { ServiceActivityInput } from '../contracts/executor';
import { CompactRange, inclusionProof, leafHash, rootOf } from '../core/merkle';
import { initKeys, loadPublicJwks } from '../identity';
import { verifyServiceActivityGrant } from '../sdk/grant';
import { closedLoop, nowMs, ratio, round, summarize, type Summary } from './stats';
import { temporal } from '@temporalio/proto';
import { anchorCheckpoint, anchorProof, withAnchor } from '../audit/transparency-log';
import { buildProof, verifyProof } from '../audit/proof';
import { createReplayer, fetchChainHistories, verifyChain } from '../audit/verify';
import { loadArchivedBundle } from '../policies/bundle-archive';
import { loadPrivateKey } from '../identity';
import { ChainRunner, noopChain } from './chains';
import type { BenchCluster } from './cluster';

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

/** In-process figures: grant mint/verify, an in-memory log append, an inclusion check. */
export async function benchEvidenceInProcess(iterations: number) {
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
    return {
      iterations,
      grantMint,
      grantVerify,
      logAppendInMemory: { ...logAppend, treeSize: leaves.length },
      inclusionVerify: { ...inclusionVerify, treeSize: leaves.length, proofHashes: proofs[0]!.length },
    };
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const at = process.argv.indexOf('--iterations');
  const iterations = at > 0 ? Number(process.argv[at + 1]) : 2000;
  const results = await benchEvidenceInProcess(iterations);
  const { grantMint, grantVerify, inclusionVerify } = results;
  const logAppend = results.logAppendInMemory;
  {
    if (json) process.stdout.write(`${JSON.stringify(results)}\n`);
    else {
      process.stdout.write(
        [
          `grant mint      p50 ${grantMint.p50Micros} µs  p99 ${grantMint.p99Micros} µs (per service step, one local activity)`,
          `grant verify    p50 ${grantVerify.p50Micros} µs  p99 ${grantVerify.p99Micros} µs (per call, in the service)`,
          `log append      p50 ${logAppend.p50Micros} µs  p99 ${logAppend.p99Micros} µs (per checkpoint, in memory, ${logAppend.treeSize} leaves)`,
          `inclusion check p50 ${inclusionVerify.p50Micros} µs  p99 ${inclusionVerify.p99Micros} µs (per chain verified)`,
          '',
        ].join('\n'),
      );
    }
  }
}

if (require.main === module)
  main().catch((err: unknown) => {
    process.stderr.write(`bench evidence: ${(err as Error).message}\n`);
    process.exit(1);
  });

/**
 * Through a real server and worker (the `evidence` phase of `npm run bench`): `chains` one-step chains run,
 * each anchored through the log workflow one after another (the latency of one append: update, batch
 * activity reading the chain's history, store write, signed head) and then all again concurrently into a
 * second log (per chain, amortised by batching); then `governor verify --proof` of one chain's proof with
 * and without its anchor, interleaved, `verifyRuns` times each.
 */
export async function benchEvidenceLog(
  cluster: BenchCluster,
  taskQueue: string,
  chains: number,
  verifyRuns: number,
  progress: (m: string) => void,
) {
  const runner = new ChainRunner(cluster.client, cluster.home, taskQueue);
  progress(`evidence: running ${chains} one-step chains`);
  const ids: string[] = [];
  for (let i = 0; i < chains; i++) ids.push((await runner.run('governed', noopChain(1))).handle.workflowId);
  const target = { taskQueue, logId: `governor-transparency-log-bench-${Date.now()}` };
  await anchorCheckpoint(cluster.client, { chainId: ids[0]! }, target); // starts the log
  progress(`evidence: anchoring ${chains} checkpoints one at a time`);
  const one: number[] = [];
  for (const chainId of ids.slice(1)) {
    const t = nowMs();
    await anchorCheckpoint(cluster.client, { chainId }, target);
    one.push(nowMs() - t);
  }
  progress(`evidence: anchoring ${chains} checkpoints concurrently into a fresh log`);
  const batched = { taskQueue, logId: `${target.logId}-concurrent` };
  await anchorCheckpoint(cluster.client, { chainId: ids[0]! }, batched);
  const t0 = nowMs();
  await closedLoop(ids.length - 1, 50, async (i) => {
    await anchorCheckpoint(cluster.client, { chainId: ids[i + 1]! }, batched);
  });
  const concurrentMs = nowMs() - t0;
  const history = await cluster.client.workflow.getHandle(batched.logId).fetchHistory();

  progress(`evidence: verify --proof with and without the anchor, ${verifyRuns} runs each`);
  const chainId = ids.at(-1)!;
  const histories = await fetchChainHistories(cluster.client, chainId);
  const signer = await loadPrivateKey(cluster.home, 'receipt');
  const receiptKeys = loadPublicJwks(cluster.home, 'receipt');
  const report = await verifyChain({ histories, chainId, trustedReceiptJwks: receiptKeys });
  const proof = await buildProof({
    chainId,
    histories,
    bundleDigests: report.bundleDigests,
    bundles: (d) => loadArchivedBundle(cluster.home, d),
    receiptKeys,
    signer,
  });
  const anchored = withAnchor(proof, await anchorProof(cluster.client, proof, target));
  const replayer = createReplayer({ workflowBundle: { codePath: cluster.bundlePath } });
  const ms = { plain: [] as number[], anchored: [] as number[] };
  try {
    for (let i = 0; i < verifyRuns + 2; i++) {
      for (const kind of i % 2 === 0 ? (['plain', 'anchored'] as const) : (['anchored', 'plain'] as const)) {
        const t = nowMs();
        const r = await verifyProof(kind === 'plain' ? proof : anchored, {
          trustedReceiptJwks: receiptKeys,
          replayer,
          ...(kind === 'anchored' ? { requireAnchor: true } : {}),
        });
        if (r.verdict !== 'verified') throw new Error(`verify --proof (${kind}) did not verify`);
        if (i >= 2) ms[kind].push(nowMs() - t); // two warm-up rounds
      }
    }
  } finally {
    await replayer.close();
  }
  const p50 = (xs: number[]): number => summarize(xs).p50;
  return {
    chains,
    appendOneAtATimeMs: { p50: round(p50(one)), p99: round(summarize(one).p99) },
    appendConcurrentPerChainMs: round(concurrentMs / (ids.length - 1)),
    appendConcurrentTotalMs: round(concurrentMs),
    logHistory: {
      leaves: ids.length,
      events: history.events?.length ?? 0,
      bytes: temporal.api.history.v1.History.encode(history).finish().length,
    },
    verifyProofMs: { withoutAnchor: round(p50(ms.plain)), withAnchor: round(p50(ms.anchored)) },
    verifyAnchorRatio: ratio(p50(ms.anchored), p50(ms.plain)),
    note: 'verify --proof of a one-step chain (replay, receipts, checkpoint, bindings, decisions re-evaluated) with and without its anchor check (tree head and checkpoint signatures, inclusion), interleaved, p50',
  };
}
