import fs from 'node:fs';
import path from 'node:path';
import { Client, Connection, WorkflowUpdateFailedError } from '@temporalio/client';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { loadPrivateKeyObject, loadPublicJwks } from '../../identity';
import { noopChain } from '../../bench/chains';
import type { ChainResult } from '../../contracts/state';
import { createHash } from 'node:crypto';
import { TRANSPARENCY_LOG_TYPE, type AppendOutcome, type ProofAnchor } from '../../contracts/transparency';
import { canonicalJson } from '../../core/canonical';
import { receiptBody } from '../../core/receipts';
import { decodeRun } from '../../audit/verify/decode';
import { fetchChainHistories } from '../../audit/verify';
import { anchorCheckpoint, logStatus, publishTreeHead, readLog } from '../../audit/transparency-log';
import {
  checkAnchor,
  checkTreeHeads,
  checkpointLeafHash,
  sha256,
  signTreeHead,
  verifyTreeHead,
} from '../../audit/transparency';
import { leafHash, rootOf } from '../../core/merkle';
import { GovernorClient } from '../../sdk/client';
import { setupGoverned, type Governed } from '../harness/governed';
import { testAddress, uniqueQueue } from '../harness/temporal';

/**
 * The transparency log (issue 20 item 3) on the real dev server: 1,000 real (1-step no-op) chains
 * anchored concurrently through the log workflow, each anchor checked (inclusion in a signed head), the
 * log's history size measured, and targeted tampering: a removed leaf, a reordered leaf, a forked tree
 * head, a chain deleted after anchoring; and forged appends from a raw client refused.
 */

jest.setTimeout(300_000);

// 1,000 chains (issue 20 item 3); GOVERNOR_TLOG_CHAINS=<n> for a quicker run while working on the log.
const N = Number(process.env.GOVERNOR_TLOG_CHAINS ?? 1000);
const CUT = Math.floor(N / 2);
let g: Governed;
let logId: string;
const results: ChainResult[] = [];
const anchors: ProofAnchor[] = [];
let firstHead: ProofAnchor['treeHead'];

async function pool<T>(n: number, width: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < n; i = next++) out[i] = await job(i);
    }),
  );
  return out;
}

const storeFile = (): string =>
  path.join(g.home, 'transparency', 'default', `${logId.replace(/[^A-Za-z0-9._-]/g, '_')}.leaves.jsonl`);

beforeAll(async () => {
  // No proof archive: this file anchors through its own log id, and 1,000 archive exports would only load the
  // machine (the archive has its own tests).
  g = await setupGoverned({ archive: false });
  logId = `governor-transparency-log-${uniqueQueue('t')}`;
});
afterAll(async () => {
  await g?.stop();
});

test(`${N} chains close and are anchored through the log workflow; every anchor verifies`, async () => {
  // The revocation registry recovers its list first (until then decisions deny, fail closed): wait for an allow.
  for (let i = 0; i < 60 && (await g.run(noopChain(1))).status !== 'Completed'; i++)
    await new Promise((res) => setTimeout(res, 1000));
  const t0 = Date.now();
  results.push(...(await pool(N, 16, async () => g.run(noopChain(1)))));
  expect(results.filter((r) => r.status !== 'Completed').map((r) => `${r.status}: ${r.reason ?? ''}`)).toEqual([]);
  expect(results.every((r) => typeof r.checkpoint === 'string')).toBe(true);
  const t1 = Date.now();
  // The first anchor starts the log (update-with-start); the rest arrive concurrently and are batched.
  anchors.push(
    await anchorCheckpoint(
      g.client,
      { chainId: results[0]!.chainId },
      { taskQueue: g.taskQueue, logId, input: { v: 1, continueAsNewAfter: N + 100 } },
    ),
  );
  firstHead = anchors[0]!.treeHead;
  anchors.push(
    ...(await pool(N - 1, 100, (i) =>
      anchorCheckpoint(
        g.client,
        // (8 at a time reach the workflow, under Temporal's in-flight update limit; the rest wait in the client)
        { chainId: results[i + 1]!.chainId, checkpoint: results[i + 1]!.checkpoint! },
        { taskQueue: g.taskQueue, logId },
      ),
    )),
  );
  const t2 = Date.now();
  process.stdout.write(`transparency log: ${N} chains ran in ${t1 - t0} ms, anchored in ${t2 - t1} ms\n`);
  const jwks = loadPublicJwks(g.home, 'receipt');
  expect(new Set(anchors.map((a) => a.index)).size).toBe(N);
  for (const [i, a] of anchors.entries()) {
    const r = results[i]!;
    expect(a.leaf.chainId).toBe(r.chainId);
    expect(
      await checkAnchor(a, jwks, { chainId: r.chainId, hash: r.receiptHead.hash, seq: r.receiptHead.seq }),
    ).toEqual([]);
  }
  // Anchoring again is idempotent: the same leaf, no new one.
  const again = await anchorCheckpoint(g.client, { chainId: results[5]!.chainId }, { taskQueue: g.taskQueue, logId });
  expect(again.index).toBe(anchors[5]!.index);
  const status = await logStatus(g.client, logId);
  expect(status.treeSize).toBe(N);
  expect(await verifyTreeHead(status.head!, jwks)).toBe(true);
  // Every head the log signed is consistent with every later one (here: the first and the last).
  const proof = await readLog(g.client, { consistency: { from: firstHead.treeSize, to: status.treeSize } }, logId);
  expect(await checkTreeHeads(firstHead, status.head!, proof.consistency!.proof, jwks)).toBeUndefined();
  // The leaves the log serves rebuild the signed root.
  const leaves = (await readLog(g.client, { leaves: { from: 0, count: N } }, logId)).leaves!;
  expect(leaves.every((l) => checkpointLeafHash(l.leaf) === l.leafHash)).toBe(true);
  const hashes = leaves.map((l) => new Uint8Array(Buffer.from(l.leafHash, 'hex')));
  expect(Buffer.from(rootOf(sha256, hashes)).toString('hex')).toBe(status.rootHash);

  // History of the log for N leaves, measured over every run: the log continues as new after
  // `continueAsNewAfter` appends (above N here) or when Temporal suggests it (4,096 events or 4 MiB).
  const runs: { events: number; bytes: number; activities: number }[] = [];
  for (let runId: string | undefined = (await g.client.workflow.getHandle(logId).describe()).runId; runId;) {
    const history = await g.client.workflow.getHandle(logId, runId).fetchHistory();
    runs.unshift({
      events: history.events?.length ?? 0,
      bytes: temporal.api.history.v1.History.encode(history).finish().length,
      activities: history.events?.filter((e) => e.activityTaskScheduledEventAttributes).length ?? 0,
    });
    runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  const sum = (k: 'events' | 'bytes' | 'activities'): number => runs.reduce((t, r) => t + r[k], 0);
  process.stdout.write(
    `transparency log history for ${N} leaves: ${runs.length} run(s), ${sum('events')} events, ${sum('bytes')} bytes, ` +
      `${sum('activities')} activities; per run: ${runs.map((r) => `${r.events} events/${r.bytes} bytes`).join(', ')}\n`,
  );
  // Every run under half Temporal's hard limits per run (51,200 events, 50 MB).
  for (const r of runs) {
    expect(r.bytes).toBeLessThan(25 * 1024 * 1024);
    expect(r.events).toBeLessThan(25_600);
  }
}, 900_000);

test('an inclusion proof for any chain, against the current signed head, verifies', async () => {
  const jwks = loadPublicJwks(g.home, 'receipt');
  const status = await logStatus(g.client, logId);
  const r = await readLog(g.client, { inclusion: { chainId: results[N - 3]!.chainId } }, logId);
  const anchor: ProofAnchor = {
    log: logId,
    index: r.inclusion!.index,
    leaf: r.inclusion!.leaf,
    inclusion: r.inclusion!.proof,
    treeHead: status.head!,
  };
  expect(
    await checkAnchor(anchor, jwks, { chainId: results[N - 3]!.chainId, hash: results[N - 3]!.receiptHead.hash }),
  ).toEqual([]);
  // The same proof does not show another chain's checkpoint.
  expect(
    (
      await checkAnchor(anchor, jwks, { chainId: results[N - 2]!.chainId, hash: results[N - 2]!.receiptHead.hash })
    ).join(' '),
  ).toMatch(/not 'chain|rewritten/);
});

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
    // The innermost cause: the log's refusal (an activity's failure arrives wrapped in the update's).
    let cause = (err as WorkflowUpdateFailedError).cause as
      { message: string; type?: string; cause?: unknown } | undefined;
    while (cause?.cause) cause = cause.cause as typeof cause;
    return `${cause?.type ?? ''}: ${cause?.message ?? (err as Error).message}`;
  }
  throw new Error('the append was accepted');
}

test('a raw client cannot append a forged leaf', async () => {
  const connection = await Connection.connect({ address: testAddress() });
  const raw = new Client({ connection });
  const log = raw.workflow.getHandle(logId);
  const before = (await logStatus(g.client, logId)).treeSize;
  try {
    // A leaf instead of a chain: the validator refuses it before it is even recorded.
    const leaf = anchors[0]!.leaf;
    expect(await refusal(log.executeUpdate('appendCheckpoint', { args: [{ ...leaf }] }))).toMatch(
      /GOVERNOR_INVALID_INPUT: invalid append/,
    );
    // A chain that does not exist.
    expect(await refusal(log.executeUpdate('appendCheckpoint', { args: [{ chainId: 'no-such-chain' }] }))).toMatch(
      /GOVERNOR_ANCHOR_REFUSED: chain no-such-chain: no such workflow/,
    );
    // A real chain, with another chain's checkpoint claimed.
    expect(
      await refusal(
        log.executeUpdate('appendCheckpoint', {
          args: [{ chainId: results[1]!.chainId, checkpoint: results[2]!.checkpoint }],
        }),
      ),
    ).toMatch(/did not close with the checkpoint given/);
    // A chain that has not closed (no worker polls its queue).
    const idle = await new GovernorClient(g.client, uniqueQueue('idle')).start(noopChain(1), await g.creds());
    expect(await refusal(log.executeUpdate('appendCheckpoint', { args: [{ chainId: idle.workflowId }] }))).toMatch(
      /has not closed with a checkpoint \(its workflow is RUNNING\)/,
    );
    await idle.terminate('test done');
    // A workflow of the chain's type completed by a rogue worker, its result a real checkpoint copied.
    const rogueQueue = uniqueQueue('rogue');
    const { code } = await bundleWorkflowCode({
      workflowsPath: require.resolve('../harness/forged-checkpoint-workflows'),
      logger: { info() {}, warn() {}, error() {}, debug() {}, trace() {}, log() {} },
    });
    const rogueConnection = await NativeConnection.connect({ address: testAddress() });
    const rogue = await Worker.create({ connection: rogueConnection, taskQueue: rogueQueue, workflowBundle: { code } });
    const forgedId = `forged-${uniqueQueue('c')}`;
    await rogue.runUntil(async () => {
      const real = results[3]!;
      await raw.workflow.execute('governedChainWorkflow', {
        taskQueue: rogueQueue,
        workflowId: forgedId,
        args: [{ forged: { ...real, chainId: forgedId } }],
      });
    });
    await rogueConnection.close();
    expect(await refusal(log.executeUpdate('appendCheckpoint', { args: [{ chainId: forgedId }] }))).toMatch(
      /its last receipt is not a checkpoint/,
    );
    // Nothing was appended.
    expect((await logStatus(g.client, logId)).treeSize).toBe(before);
  } finally {
    await connection.close();
  }
});

/** A chain's final checkpoint receipt, as its history records it (what the archiver sends with a batch). */
async function checkpointReceiptOf(chainId: string): Promise<{ runId: string; receipt: Record<string, unknown> }> {
  const [history] = await fetchChainHistories(g.client, chainId);
  const run = decodeRun(history, 0);
  const receipt = run.entries.at(-1)?.result.receipt as Record<string, unknown>;
  expect(receipt.kind).toBe('checkpoint');
  return { runId: (await g.client.workflow.getHandle(chainId).describe()).runId, receipt };
}

test("a raw client's batch (appendCheckpoints): each entry judged alone, from the run's own close event; malformed receipts refused", async () => {
  const connection = await Connection.connect({ address: testAddress() });
  const raw = new Client({ connection });
  const log = raw.workflow.getHandle(logId);
  const before = (await logStatus(g.client, logId)).treeSize;
  try {
    const a = await checkpointReceiptOf(results[6]!.chainId);
    const b = await checkpointReceiptOf(results[7]!.chainId);
    const outcomes = (await log.executeUpdate('appendCheckpoints', {
      args: [
        {
          v: 1,
          entries: [
            // The real receipt of an anchored chain: its anchor again (idempotent), read from the close event only.
            { chainId: results[6]!.chainId, runId: a.runId, receipt: a.receipt },
            // Another chain's real receipt: it names that chain.
            { chainId: results[8]!.chainId, receipt: b.receipt },
            // The receipt altered to name this chain: its hash no longer matches its content.
            { chainId: results[8]!.chainId, receipt: { ...b.receipt, chainId: results[8]!.chainId } },
            // The receipt altered with its hash recomputed: the governor's signature no longer covers it.
            {
              chainId: results[8]!.chainId,
              receipt: {
                ...b.receipt,
                chainId: results[8]!.chainId,
                hash: createHash('sha256')
                  .update(canonicalJson(receiptBody({ ...b.receipt, chainId: results[8]!.chainId } as never)))
                  .digest('hex'),
              },
            },
            // No such chain.
            { chainId: 'no-such-chain', receipt: a.receipt },
            // The right run named with the wrong chain's run id.
            { chainId: results[8]!.chainId, runId: a.runId, receipt: a.receipt },
          ],
        },
      ],
    })) as AppendOutcome[];
    expect(outcomes).toHaveLength(6);
    const first = outcomes[0]!;
    expect('anchor' in first && first.anchor.leaf.chainId).toBe(results[6]!.chainId);
    if ('anchor' in first)
      expect(
        await checkAnchor(first.anchor, loadPublicJwks(g.home, 'receipt'), {
          chainId: results[6]!.chainId,
          hash: results[6]!.receiptHead.hash,
        }),
      ).toEqual([]);
    const reasons = outcomes.slice(1).map((o) => ('error' in o ? `${o.error.type}: ${o.error.message}` : 'anchored'));
    expect(reasons[0]).toMatch(/GOVERNOR_ANCHOR_REFUSED: .*its checkpoint names chain/);
    expect(reasons[1]).toMatch(/GOVERNOR_ANCHOR_REFUSED: .*its checkpoint receipt's hash does not match its content/);
    expect(reasons[2]).toMatch(/GOVERNOR_ANCHOR_REFUSED: .*(signature is not valid|does not name its last checkpoint)/);
    expect(reasons[3]).toMatch(/GOVERNOR_ANCHOR_REFUSED: chain no-such-chain: no such workflow/);
    expect(reasons[4]).toMatch(/GOVERNOR_ANCHOR_REFUSED: .*no such workflow run/);
    // Malformed batches are refused whole by the validator, naming the field, and change nothing.
    const tooMany = Array.from({ length: 101 }, () => ({ chainId: results[6]!.chainId }));
    expect(await refusal(log.executeUpdate('appendCheckpoints', { args: [{ v: 1, entries: tooMany }] }))).toMatch(
      /GOVERNOR_INVALID_INPUT: invalid append batch: .*entries/,
    );
    expect(await refusal(log.executeUpdate('appendCheckpoints', { args: [{ v: 1, entries: [] }] }))).toMatch(
      /GOVERNOR_INVALID_INPUT: invalid append batch: .*entries/,
    );
    // A receipt is checked field by field before anything reads it (a hostile one must not fail the batch).
    const refusedBatch = (entries: unknown[]): Promise<string> =>
      refusal(log.executeUpdate('appendCheckpoints', { args: [{ v: 1, entries }] }));
    const c6 = results[6]!.chainId;
    expect(await refusedBatch([{ chainId: c6, receipt: { ...a.receipt, chainId: { toString: 0 } } }])).toMatch(
      /GOVERNOR_INVALID_INPUT: invalid append batch: .*receipt\.chainId/,
    );
    expect(await refusedBatch([{ chainId: c6, receipt: { ...a.receipt, padding: 'x' } }])).toMatch(
      /GOVERNOR_INVALID_INPUT: invalid append batch: .*receipt.*padding/,
    );
    expect(await refusedBatch([{ chainId: c6, receipt: { ...a.receipt, digest: { '0': [[[1]]] } } }])).toMatch(
      /GOVERNOR_INVALID_INPUT: invalid append batch: .*receipt\.digest/,
    );
    expect(await refusedBatch([{ chainId: c6, receipt: a.receipt, checkpoint: results[6]!.checkpoint }])).toMatch(
      /GOVERNOR_INVALID_INPUT: invalid append batch: .*a receipt or a checkpoint, not both/,
    );
    const heavy = Array.from({ length: 100 }, (_, k) => ({
      chainId: `${k}-${'c'.repeat(900)}`,
      checkpoint: 'x'.repeat(3000),
    }));
    expect(await refusedBatch(heavy)).toMatch(/GOVERNOR_INVALID_INPUT: invalid append batch: .*at most 256 KiB/);
    expect((await logStatus(g.client, logId)).treeSize).toBe(before);
  } finally {
    await connection.close();
  }
});

test('a chain deleted after anchoring: its leaf is still in the log, and it names a chain that is gone', async () => {
  const victim = results[7]!;
  await g.client.workflowService.deleteWorkflowExecution({
    namespace: 'default',
    workflowExecution: { workflowId: victim.chainId },
  });
  const r = await readLog(g.client, { inclusion: { chainId: victim.chainId } }, logId);
  expect(r.inclusion!.leaf.hash).toBe(victim.receiptHead.hash);
  // Anchoring it now is refused: the history is gone, the log keeps what it had.
  await expect(
    (async () => {
      for (;;) {
        try {
          await g.client.workflow.getHandle(victim.chainId).describe();
          await new Promise((res) => setTimeout(res, 200));
        } catch {
          return;
        }
      }
    })(),
  ).resolves.toBeUndefined();
  expect(
    await refusal(anchorCheckpoint(g.client, { chainId: victim.chainId }, { taskQueue: g.taskQueue, logId })),
  ).toMatch(/no such workflow/);
});

describe('tampering with the leaf store is detected', () => {
  let original = '';
  beforeEach(() => {
    original = fs.readFileSync(storeFile(), 'utf8');
  });
  afterEach(() => {
    fs.writeFileSync(storeFile(), original);
  });

  test('a removed leaf', async () => {
    const lines = original.trimEnd().split('\n');
    fs.writeFileSync(storeFile(), [...lines.slice(0, CUT), ...lines.slice(CUT + 1)].join('\n') + '\n');
    expect(await refusal(readLog(g.client, { inclusion: { index: 10 } }, logId))).toMatch(
      new RegExp(
        `GOVERNOR_LOG_DIVERGED: .*line ${CUT + 1} holds leaf ${CUT + 1}, not ${CUT}: leaves were removed or reordered`,
      ),
    );
    // Renumbered so every line looks in place: the root no longer matches the signed one.
    const renumbered = [...lines.slice(0, CUT), ...lines.slice(CUT + 1)].map((l, i) =>
      JSON.stringify({ ...JSON.parse(l), index: i }),
    );
    fs.writeFileSync(storeFile(), renumbered.join('\n') + '\n');
    expect(await refusal(readLog(g.client, { inclusion: { index: 10 } }, logId))).toMatch(
      /GOVERNOR_LOG_DIVERGED: the leaf store .* holds \d+ leaves, the log \d+: leaves were removed/,
    );
  });

  test('a reordered leaf', async () => {
    const lines = original
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { index: number });
    [lines[10], lines[11]] = [
      { ...lines[11]!, index: 10 },
      { ...lines[10]!, index: 11 },
    ];
    fs.writeFileSync(storeFile(), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    expect(await refusal(publishTreeHead(g.client, logId))).toMatch(
      /GOVERNOR_LOG_DIVERGED: the leaf store's first \d+ leaves hash to root .*: leaves were removed, reordered or altered/,
    );
    // Appends are refused too: nothing is added to a tree other than the signed one.
    expect(
      await refusal(anchorCheckpoint(g.client, { chainId: results[9]!.chainId }, { taskQueue: g.taskQueue, logId })),
    ).toMatch(/GOVERNOR_LOG_DIVERGED/);
  });

  test('a forked tree head (same size, another root, signed with the receipt key) fails consistency', async () => {
    const jwks = loadPublicJwks(g.home, 'receipt');
    const status = await logStatus(g.client, logId);
    const leaves = (await readLog(g.client, { leaves: { from: 0, count: N } }, logId)).leaves!;
    const hashes = leaves.map((l) => new Uint8Array(Buffer.from(l.leafHash, 'hex')));
    // The operator rewrote leaf 4 (another checkpoint) and signed a head over the rewritten tree.
    const forked: Uint8Array[] = [...hashes];
    forked[4] = leafHash(sha256, new TextEncoder().encode('a rewritten checkpoint'));
    const signer = await loadPrivateKeyObject(g.home, 'receipt');
    const fork = await signTreeHead(signer, {
      treeSize: forked.length,
      rootHash: Buffer.from(rootOf(sha256, forked)).toString('hex'),
      timestamp: Date.now(),
    });
    expect(await verifyTreeHead(fork, jwks)).toBe(true); // a valid signature: only consistency tells
    expect(await checkTreeHeads(status.head!, fork, [], jwks)).toMatch(/not consistent: the log forked/);
    // Against the first head, with the log's own consistency proof: the fork does not extend it either.
    const proof = await readLog(g.client, { consistency: { from: firstHead.treeSize, to: fork.treeSize } }, logId);
    expect(await checkTreeHeads(status.head!, status.head!, [], jwks)).toBeUndefined();
    expect(await checkTreeHeads(firstHead, fork, proof.consistency!.proof, jwks)).toMatch(/the log forked/);
  });
});

test('the log workflow type is the one the worker registers', () => {
  expect(TRANSPARENCY_LOG_TYPE).toBe('transparencyLogWorkflow');
});
