import fs from 'node:fs';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { DefaultLogger, Runtime, type WorkflowBundleOption } from '@temporalio/worker';
import type { Command } from 'commander';
import type { JSONWebKeySet } from 'jose';
import { loadPrivateKey, loadPublicJwks } from '../../identity';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { loadArchivedBundle } from '../../policies/bundle-archive';
import { loadCodec } from '../../runtime/codec';
import { connectClient, loadTemporalSettings } from '../../runtime/connection';
import { buildProof, readProofFile, verifyProof, writeProofFile, type Proof } from '../../audit/proof';
import { anchorProof, withAnchor } from '../../audit/transparency-log';
import type { HistoryJson } from '../../audit/verify/history-fetch';
import { transparencyLogIdFor, type ProofAnchor } from '../../contracts/transparency';
import { openArchive, readArchivedProof } from '../../audit/archive';
import {
  createReplayer,
  fetchChainHistories,
  formatReport,
  verifyChain,
  type BundleLookup,
  type VerifyReport,
} from '../../audit/verify';

/**
 * `governor verify`. Exit codes (DESIGN §6): 0 verified · 2 verification failed · 1 bad input (no
 * chain id or proof, unreadable proof or key file, unknown chain) · 3 Temporal unreachable (live
 * verification only: `--proof` never connects).
 */

/** What the CLI passes to `registerVerifyCommands`. */
export interface VerifyCommandContext {
  out: () => { json: boolean; print(human: string, data?: unknown): void };
  setExit: (code: number) => void;
  /** GOVERNOR_HOME (receipt keys, bundle archive). */
  home: () => string;
  /** Workflow code to replay with (tests pass a prebuilt bundle); default: bundled from `workflows/`. */
  workflowBundle?: WorkflowBundleOption;
  /** The codec key file (`--codec-keys` / GOVERNOR_CODEC_KEYS) of encrypted histories, if any. */
  codecKeys?: () => string | undefined;
}

const Exit = { Ok: 0, Failed: 2 } as const;

interface VerifyOpts {
  export?: string;
  proof?: string;
  archive?: string;
  receiptJwks?: string;
  requireAnchor?: boolean;
}

/** Adds `governor verify` to the program. */
export function registerVerifyCommands(program: Command, ctx: VerifyCommandContext): void {
  program
    .command('verify [chainId]')
    .description(
      "prove a chain's lineage: replay its history with the current workflow code, check every receipt (hash links, " +
        'signatures, checkpoint) and re-evaluate every recorded decision; exit 0 verified, 2 not',
    )
    .option(
      '--export <file>',
      'also write a self-contained proof sealed with the receipt key (histories, bundles, receipt keys)',
    )
    .option('--proof <file>', 'verify an exported proof offline, without a Temporal server')
    .option(
      '--archive <dir|s3://bucket/prefix>',
      "verify the chain's archived proof offline (after Temporal's retention deleted its history); S3: " +
        'GOVERNOR_ARCHIVE_S3_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY',
    )
    .option('--receipt-jwks <file>', 'trusted receipt public keys (default <GOVERNOR_HOME>/keys/receipt.jwks.json)')
    .option('--require-anchor', 'with --proof or --archive: the proof must carry a valid transparency log anchor')
    .action(async (chainId: string | undefined, opts: VerifyOpts) => {
      const o = ctx.out();
      if (!chainId && !opts.proof)
        throw new GovernorError(ErrorCode.InvalidInput, 'chainId: give a chain id, or --proof <file>', 'chainId');
      if (opts.proof && opts.export)
        throw new GovernorError(
          ErrorCode.InvalidInput,
          '--export: cannot export from a proof; export from the chain',
          '--export',
        );
      if (opts.archive !== undefined && (opts.proof || opts.export || !chainId))
        throw new GovernorError(
          ErrorCode.InvalidInput,
          '--archive: give the chain id, and neither --proof nor --export',
          '--archive',
        );
      const home = ctx.home();
      const trusted = readTrustedReceiptKeys(home, opts.receiptJwks);
      const keyFile = ctx.codecKeys?.();
      // Histories are fetched and exported as Temporal stores them (encrypted); the codec decodes them for the checks.
      const codec = keyFile ? loadCodec(keyFile).codec : undefined;
      quietReplayLogs();
      const replayer = createReplayer(ctx.workflowBundle ? { workflowBundle: ctx.workflowBundle } : {});
      try {
        let report: VerifyReport;
        let exported: string | undefined;
        let archived: string | undefined;
        let notAnchored: string | undefined;
        if (opts.archive !== undefined) {
          // The archived proof is checked exactly like an exported one; the chain id must match its key's.
          const { raw, where } = await readArchivedProof(openArchive(opts.archive), chainId!);
          archived = where;
          report = await verifyProof(raw, {
            trustedReceiptJwks: trusted,
            replayer,
            chainId: chainId!,
            ...(codec ? { codec } : {}),
            ...(opts.requireAnchor ? { requireAnchor: true } : {}),
          });
        } else if (opts.proof) {
          const raw = readProofFile(path.resolve(opts.proof));
          report = await verifyProof(raw, {
            trustedReceiptJwks: trusted,
            replayer,
            ...(chainId ? { chainId } : {}),
            ...(codec ? { codec } : {}),
            ...(opts.requireAnchor ? { requireAnchor: true } : {}),
          });
        } else {
          const id = chainId!;
          // The seal needs the receipt private key: refuse before any work when it is missing.
          const signer = opts.export ? await loadPrivateKey(home, 'receipt') : undefined;
          const settings = loadTemporalSettings();
          const connection = await connectClient(settings);
          const client = new Client({ connection, namespace: settings.namespace });
          try {
            const histories = await fetchChainHistories(client, id);
            const bundles = archiveLookup(home);
            report = await verifyChain({
              histories,
              chainId: id,
              trustedReceiptJwks: trusted,
              bundles,
              replayer,
              ...(codec ? { codec } : {}),
            });
            if (opts.export && signer) {
              let proof = await buildProof({
                chainId: id,
                histories,
                bundleDigests: report.bundleDigests,
                bundles,
                receiptKeys: loadPublicJwks(home, 'receipt'),
                signer,
              });
              // Anchored in the chain's queue's transparency log (appended now if the archiver has not yet).
              const anchored = await anchorForExport(client, proof, histories);
              if ('anchor' in anchored) proof = withAnchor(proof, anchored.anchor);
              else notAnchored = anchored.reason;
              exported = path.resolve(opts.export);
              writeProofFile(exported, proof);
            }
          } finally {
            await connection.close();
          }
        }
        const lines = [
          ...(archived
            ? [
                `archived proof ${archived}${report.verdict === 'verified' ? '' : ': does NOT verify (altered, or not the proof this governor sealed)'}`,
              ]
            : []),
          formatReport(report),
        ];
        if (exported)
          lines.push(
            `proof written to ${exported}${report.verdict === 'verified' ? '' : ' (it records a chain that did not verify)'}${notAnchored ? ` without a transparency log anchor: ${notAnchored}` : ', anchored in the transparency log'}`,
          );
        o.print(lines.join('\n'), {
          ok: report.verdict === 'verified',
          ...report,
          ...(exported ? { proof: exported, anchored: notAnchored === undefined } : {}),
          ...(notAnchored ? { notAnchored } : {}),
          ...(archived ? { archived } : {}),
        });
        ctx.setExit(report.verdict === 'verified' ? Exit.Ok : Exit.Failed);
      } finally {
        await replayer.close();
      }
    });
}

/**
 * The anchor of an exported proof: the chain's checkpoint appended to (or found in) the transparency log of the
 * task queue it ran on, or why there is none (the chain has not closed with a checkpoint, the log refused, or no
 * worker answered within 30 s). Never fails the export: a proof without an anchor says so.
 */
async function anchorForExport(
  client: Client,
  proof: Proof,
  histories: readonly HistoryJson[],
): Promise<{ anchor: ProofAnchor } | { reason: string }> {
  const started = (
    histories.at(-1)?.events as
      { workflowExecutionStartedEventAttributes?: { taskQueue?: { name?: string } } }[] | undefined
  )?.[0];
  const taskQueue = started?.workflowExecutionStartedEventAttributes?.taskQueue?.name;
  if (!taskQueue) return { reason: "the chain's task queue is not in its history" };
  try {
    const target = { taskQueue, logId: transparencyLogIdFor(taskQueue), timeoutMs: 30_000 };
    return { anchor: await anchorProof(client, proof, target) };
  } catch (err) {
    let e = err as { message?: string; cause?: unknown } | undefined;
    while (e?.cause) e = e.cause as typeof e;
    return { reason: e?.message ?? String(err) };
  }
}

/** The bundle archive of `home` as a lookup (a missing or corrupted entry throws, naming why). */
function archiveLookup(home: string): BundleLookup {
  return (digest) => loadArchivedBundle(home, digest);
}

/** The trusted receipt keys: `--receipt-jwks`, else the home's receipt JWKS. Never from a proof. */
function readTrustedReceiptKeys(home: string, file: string | undefined): JSONWebKeySet {
  if (!file) return loadPublicJwks(home, 'receipt');
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(path.resolve(file), 'utf8'));
  } catch {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `--receipt-jwks: cannot read a JSON file at ${file}`,
      '--receipt-jwks',
    );
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0 || keys.some((k) => typeof k !== 'object' || k === null)) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      '--receipt-jwks: not a JWKS ({"keys": [...]}) with at least one key',
      '--receipt-jwks',
    );
  }
  return parsed as JSONWebKeySet;
}

/** The replay worker logs its lifecycle at INFO and failed replays at WARN; `verify` prints one report. */
function quietReplayLogs(): void {
  try {
    // Core reports a nondeterministic replay as a failing workflow task at WARN; the report says it once.
    Runtime.install({
      logger: new DefaultLogger('WARN'),
      telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
    });
  } catch {
    // A runtime is already installed (tests, or another command's logger): keep it.
  }
}
