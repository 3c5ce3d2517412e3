import fs from 'node:fs';
import path from 'node:path';
import { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { SignedTreeHeadSchema, TRANSPARENCY_LOG_ID } from '../../contracts/transparency';
import { loadPublicJwks } from '../../identity';
import { connectClient, loadTemporalSettings } from '../../runtime/connection';
import {
  checkTreeHeads,
  checkpointLeafHash,
  sha256,
  verifyTreeHead,
  type SignedTreeHead,
} from '../../audit/transparency';
import { logStatus, publishTreeHead, readLog } from '../../audit/transparency-log';
import { readCheckpointLeaf } from '../../activities/transparency';
import { rootOf } from '../../core/merkle';
import { Exit, type CommandContext } from '../context';

/*
 * `governor log status|head|consistency|proof|audit`: the transparency log (README "Transparency log").
 * `consistency` checks that a later signed tree head extends an earlier one (a fork fails); `audit` reads
 * every leaf, rebuilds the signed root and checks that each anchored chain still closes with its checkpoint
 * (a chain deleted or rewritten after anchoring is named).
 */

const FAILED = 2;

interface LogOpts {
  log?: string;
}

function readHead(file: string): SignedTreeHead {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(path.resolve(file), 'utf8'));
  } catch {
    throw new GovernorError(ErrorCode.InvalidInput, `cannot read a JSON tree head at ${file}`, 'treeHead');
  }
  // A head file may be the head itself or `governor log head --json` output ({ head }).
  const candidate = (raw as { head?: unknown } | null)?.head ?? raw;
  const parsed = SignedTreeHeadSchema.safeParse(candidate);
  if (!parsed.success)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${file} is not a signed tree head (treeSize, rootHash, timestamp, signature)`,
      'treeHead',
    );
  return parsed.data;
}

async function withClient<T>(ctx: CommandContext, fn: (client: Client) => Promise<T>): Promise<T> {
  const settings = loadTemporalSettings();
  const connection = await connectClient(settings);
  const dataConverter = ctx.dataConverter();
  try {
    return await fn(
      new Client({ connection, namespace: settings.namespace, ...(dataConverter ? { dataConverter } : {}) }),
    );
  } finally {
    await connection.close();
  }
}

export function registerTransparencyCommands(program: Command, ctx: CommandContext): void {
  const { out, setExit } = ctx;
  const log = program
    .command('log')
    .description('the transparency log of chain checkpoints: status, signed tree heads, consistency, audit');
  const logOption = (c: Command) => c.option('--log <workflowId>', 'the log workflow id', TRANSPARENCY_LOG_ID);

  logOption(log.command('status').description("the log's size, root and latest signed tree head")).action(
    async (opts: LogOpts) => {
      const s = await withClient(ctx, (c) => logStatus(c, opts.log));
      out().print(
        [
          `log ${s.log}: ${s.treeSize} leaves, root ${s.rootHash}${s.ready ? '' : ' (opening its store)'}`,
          s.head
            ? `latest signed head: size ${s.head.treeSize}, ${new Date(s.head.timestamp).toISOString()}`
            : 'no signed head yet',
          `pending appends: ${s.pending}; appended by this run: ${s.appendedThisRun}`,
          ...(s.lastError ? [`last error: ${s.lastError}`] : []),
        ].join('\n'),
        s,
      );
      setExit(s.lastError ? FAILED : Exit.Ok);
    },
  );

  logOption(
    log
      .command('head')
      .description('print the latest signed tree head (JSON; keep it to check consistency later)')
      .option('--fresh', 'sign a fresh head now')
      .option('--out <file>', 'also write it to a file'),
  ).action(async (opts: LogOpts & { fresh?: boolean; out?: string }) => {
    const head = await withClient(ctx, async (c) =>
      opts.fresh ? publishTreeHead(c, opts.log) : (await logStatus(c, opts.log)).head,
    );
    if (!head) throw new GovernorError(ErrorCode.NotFound, 'the log has signed no tree head yet', 'log');
    if (opts.out) fs.writeFileSync(path.resolve(opts.out), `${JSON.stringify(head, null, 2)}\n`);
    out().print(JSON.stringify(head, null, 2), { head });
  });

  logOption(
    log
      .command('consistency <older> <newer>')
      .description(
        'check two signed tree heads (files): both signed by a trusted receipt key, and the newer one extends the older (exit 2: a fork)',
      )
      .option('--proof <file>', 'the consistency proof (JSON array of hex hashes); default: asked from the log')
      .option('--receipt-jwks <file>', 'trusted receipt public keys (default <GOVERNOR_HOME>/keys/receipt.jwks.json)'),
  ).action(async (older: string, newer: string, opts: LogOpts & { proof?: string; receiptJwks?: string }) => {
    const a = readHead(older);
    const b = readHead(newer);
    const jwks = opts.receiptJwks
      ? (JSON.parse(fs.readFileSync(path.resolve(opts.receiptJwks), 'utf8')) as Parameters<typeof verifyTreeHead>[1])
      : loadPublicJwks(ctx.home(), 'receipt');
    let proof: string[] = [];
    if (opts.proof) proof = JSON.parse(fs.readFileSync(path.resolve(opts.proof), 'utf8')) as string[];
    else if (a.treeSize < b.treeSize && a.treeSize > 0)
      proof = await withClient(ctx, async (c) => {
        const r = await readLog(c, { consistency: { from: a.treeSize, to: b.treeSize } }, opts.log);
        return r.consistency!.proof;
      });
    const problem = await checkTreeHeads(a, b, proof, jwks);
    if (problem) {
      out().error(`NOT CONSISTENT: ${problem}`, { ok: false, problem });
      setExit(FAILED);
      return;
    }
    out().print(`consistent: head ${b.treeSize} extends head ${a.treeSize} (both signed by a trusted receipt key)`, {
      ok: true,
    });
  });

  logOption(
    log
      .command('proof <chainId>')
      .description("the chain's anchor: its leaf, inclusion proof and the current signed tree head (JSON)"),
  ).action(async (chainId: string, opts: LogOpts) => {
    const anchor = await withClient(ctx, async (c) => {
      const status = await logStatus(c, opts.log);
      const r = await readLog(c, { inclusion: { chainId, treeSize: status.head?.treeSize } }, opts.log);
      return {
        log: status.log,
        index: r.inclusion!.index,
        leaf: r.inclusion!.leaf,
        inclusion: r.inclusion!.proof,
        treeHead: status.head,
      };
    });
    out().print(JSON.stringify(anchor, null, 2), anchor);
  });

  logOption(
    log
      .command('audit')
      .description(
        'read every leaf, rebuild the signed root, and check each anchored chain still closes with its checkpoint (exit 2: a problem)',
      ),
  ).action(async (opts: LogOpts) => {
    const jwks = loadPublicJwks(ctx.home(), 'receipt');
    const problems: string[] = [];
    let checked = 0;
    const status = await withClient(ctx, async (c) => {
      const s = await logStatus(c, opts.log);
      if (!s.head) return s;
      if (!(await verifyTreeHead(s.head, jwks))) problems.push('the latest tree head is not signed by a trusted key');
      const hashes: Uint8Array[] = [];
      for (let from = 0; from < s.head.treeSize; from += 1000) {
        const r = await readLog(c, { leaves: { from, count: Math.min(1000, s.head.treeSize - from) } }, opts.log);
        for (const l of r.leaves ?? []) {
          if (checkpointLeafHash(l.leaf) !== l.leafHash) problems.push(`leaf ${l.index}: its hash does not match it`);
          hashes.push(new Uint8Array(Buffer.from(l.leafHash, 'hex')));
          const now = await readCheckpointLeaf(c, { chainId: l.leaf.chainId }, jwks);
          checked++;
          if ('reason' in now)
            problems.push(
              `leaf ${l.index}: chain ${l.leaf.chainId} was anchored, and now ${now.reason.replace(`chain ${l.leaf.chainId}: `, '')} (deleted after anchoring, or past retention: its archived proof must verify)`,
            );
          else if (now.leaf.hash !== l.leaf.hash || now.leaf.runId !== l.leaf.runId)
            problems.push(
              `leaf ${l.index}: chain ${l.leaf.chainId} now closes with another checkpoint (run ${now.leaf.runId}, receipt ${now.leaf.seq}) than the one anchored (run ${l.leaf.runId}, receipt ${l.leaf.seq}): rewritten after anchoring`,
            );
        }
      }
      const root = Buffer.from(rootOf(sha256, hashes)).toString('hex');
      if (root !== s.head.rootHash)
        problems.push(
          `the leaves hash to root ${root.slice(0, 16)}…, the signed head says ${s.head.rootHash.slice(0, 16)}…`,
        );
      return s;
    });
    const ok = problems.length === 0;
    out().print(
      [
        `log ${status.log}: ${status.head?.treeSize ?? 0} leaves, ${checked} chain(s) checked against Temporal`,
        ...problems.map((p) => `FAIL  ${p}`),
        ok ? 'audit ok' : `AUDIT FAILED: ${problems.length} problem(s)`,
      ].join('\n'),
      { ok, problems, treeSize: status.head?.treeSize ?? 0, checked },
    );
    setExit(ok ? Exit.Ok : FAILED);
  });
}
