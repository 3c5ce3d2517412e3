import fs from 'node:fs';
import path from 'node:path';
import { CompactSign, type JSONWebKeySet } from 'jose';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import type { SigningKey } from '../identity';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { analyseBundle, formatIssue, type BundleFile, type LoadedBundle } from '../policies/bundle';
import { canonicalJson, sha256Hex } from '../core/canonical';
import {
  CheckName,
  verifyChain,
  type BundleLookup,
  type ChainHistories,
  type ChainRun,
  type HistoryJson,
  type Replayer,
  type VerifyCheck,
  type VerifyReport,
} from './verify';
import { verifySealJws } from './verify/jws';
import { decodeRun } from './verify/decode';
import { decodeHistories } from './verify/history-fetch';
import { checkAnchor } from './transparency';
import type { WorkflowBundleOption } from '@temporalio/worker';
import type { PayloadCodec } from '@temporalio/common';

/*
 * Offline proofs: `governor verify <chainId> --export <proof.json>` writes one, and
 * `governor verify --proof <proof.json>` checks it with no Temporal server.
 *
 * What makes every byte count:
 * - Receipts cover decisions (request + decision + step digest), vote verdicts, execution outcomes
 *   and the final status; replay covers the commands the workflow code issues; bindings tie receipts
 *   to the chain input and to what executors returned; decisions are re-evaluated from the bundles.
 * - Everything else in a history — timestamps, identities, task ids, search attributes, summaries,
 *   signals' raw payloads — is covered by the **seal**: the exporter signs the SHA-256 of the
 *   canonical JSON of the whole proof (every field but the seal) with the governor's receipt key
 *   (compact JWS, EdDSA, `typ: governor-proof+jws`). The verifier checks it against the *trusted*
 *   receipt key, which comes from outside the proof (its GOVERNOR_HOME or `--receipt-jwks`); the
 *   proof's own `receiptKeys` must equal trusted keys, so a proof re-signed with another key fails.
 * - The run list (`runs`, proof@2): every run of the chain's workflow id with the histories of those
 *   outside the chain's lineage (a reset's base, another execution), so the offline check sees a
 *   reset or a terminated run exactly as the live one does. A proof@1 has none: its `runs` check fails.
 * - Embedded bundles are re-hashed from their files (a swapped bundle no longer matches its digest)
 *   and must be in canonical form (only digest-covered files, normalised, sorted), and every
 *   embedded bundle must be one a decision names.
 *
 * Security: the seal says "the holder of the receipt key exported exactly this"; it does not make a
 * history true. A history altered inside Temporal before the export would be sealed too — what the
 * receipts, replay, bindings and re-evaluation cover is still caught, the rest is not. A proof holds
 * the chain's workflow input, including the workload's (short-lived) credential and attestation
 * tokens: share proofs like audit logs.
 */

/** Format tag of a proof file (versioned: a change to what a proof holds is a new version). @2 adds the run list. */
export const PROOF_FORMAT = 'temporal-governor/proof@2';
/** Proofs exported before run lists: still read, but they cannot exclude a reset, so their `runs` check fails. */
export const PROOF_FORMAT_V1 = 'temporal-governor/proof@1';
/** `typ` of the seal's JWS header (never a receipt's `governor-receipt+jws`). */
export const PROOF_SEAL_TYP = 'governor-proof+jws';
const DIGEST = /^[0-9a-f]{64}$/;
const MAX_PROOF_BYTES = 512 * 1024 * 1024;

/** A self-contained, sealed proof of one chain's lineage. */
export const Proof = z
  .strictObject({
    format: z.enum([PROOF_FORMAT, PROOF_FORMAT_V1]),
    chainId: z.string().min(1),
    /** When the proof was exported (ISO-8601 UTC). */
    exportedAt: z.iso.datetime(),
    /** Every run of the chain, first to last, in the stable proto3 JSON form (`historyToJson`). */
    histories: z.array(z.record(z.string(), z.unknown())).min(1),
    /**
     * Every run of the chain's workflow id (@2): a run of the chain names its place in `histories`
     * (`lineage`), any other run (a reset's base, a terminated run, another execution) carries its history.
     */
    runs: z
      .array(
        z.strictObject({
          runId: z.string().min(1),
          lineage: z.int().min(0).optional(),
          history: z.record(z.string(), z.unknown()).optional(),
        }),
      )
      .optional(),
    /** The bundle of every digest the recorded decisions name (that was available), by digest: its digest-covered files. */
    bundles: z.record(
      z.string().regex(DIGEST),
      z.array(z.strictObject({ path: z.string(), content: z.string() })).min(1),
    ),
    /** The receipt public keys of the exporting governor (must equal keys the verifier trusts). */
    receiptKeys: z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }),
    /**
     * The chain's final checkpoint anchored in the transparency log (contracts/transparency.ts
     * `ProofAnchor`: leaf, index, inclusion proof, signed tree head). Optional, and outside the seal: it
     * proves itself (tree head and checkpoint signatures, inclusion), so it can be added to a sealed proof.
     */
    anchor: z.unknown().optional(),
    /** Compact JWS over the SHA-256 (hex) of the canonical JSON of every other field (but `anchor`). */
    seal: z.string(),
  })
  .superRefine((proof, ctx) => {
    if (proof.format === PROOF_FORMAT && proof.runs === undefined)
      ctx.addIssue({ code: 'custom', path: ['runs'], message: `required in ${PROOF_FORMAT}` });
  });
export type Proof = z.infer<typeof Proof>;

/** SHA-256 (hex) of the canonical JSON of a proof without its seal (nor its anchor): what the seal signs. */
export function proofContentDigest(proof: Record<string, unknown>): string {
  const content = Object.fromEntries(Object.entries(proof).filter(([k]) => k !== 'seal' && k !== 'anchor'));
  return sha256Hex(canonicalJson(content));
}

/** Seals proof content with a signing key (the governor's receipt key). */
export async function sealProof(content: Omit<Proof, 'seal'>, signer: Pick<SigningKey, 'key' | 'kid'>): Promise<Proof> {
  const digest = proofContentDigest(content);
  const seal = await new CompactSign(new TextEncoder().encode(digest))
    .setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: PROOF_SEAL_TYP })
    .sign(signer.key);
  return { ...content, seal };
}

/**
 * Builds the sealed proof of a chain: its histories, the bundles its decisions name (those the
 * lookup has), the receipt public keys, sealed with the receipt private key.
 */
export async function buildProof(args: {
  chainId: string;
  /** The lineage (as `fetchChainHistories` returns it: its run list comes along unless `runs` is given). */
  histories: readonly HistoryJson[];
  /** Every run of the workflow id (default: the list attached to `histories`). */
  runs?: readonly ChainRun[];
  bundleDigests: readonly string[];
  bundles: BundleLookup;
  receiptKeys: JSONWebKeySet;
  signer: Pick<SigningKey, 'key' | 'kid'>;
  now?: Date;
}): Promise<Proof> {
  const runs = args.runs ?? (args.histories as ChainHistories).runs;
  if (!runs)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `chain ${args.chainId}: no run list to export (fetch the chain with fetchChainHistories)`,
      'runs',
    );
  const bundles: Record<string, BundleFile[]> = {};
  for (const digest of [...args.bundleDigests].sort()) {
    let bundle: LoadedBundle | undefined;
    try {
      bundle = args.bundles(digest);
    } catch {
      bundle = undefined; // not archived here: the offline verification reports it
    }
    if (bundle && bundle.digest === digest)
      bundles[digest] = bundle.files.map((f) => ({ path: f.path, content: f.content }));
  }
  return sealProof(
    {
      format: PROOF_FORMAT,
      chainId: args.chainId,
      exportedAt: (args.now ?? new Date()).toISOString(),
      histories: args.histories.map((h) => JSON.parse(JSON.stringify(h)) as Record<string, unknown>),
      runs: runs.map((r) => JSON.parse(JSON.stringify(r)) as ChainRun),
      bundles,
      receiptKeys: { keys: args.receiptKeys.keys.map((k) => ({ ...k }) as Record<string, unknown>) },
    },
    args.signer,
  );
}

/** Reads a proof file as JSON. Throws InvalidInput (field `--proof`) when it cannot be read or parsed. */
export function readProofFile(file: string): unknown {
  let text: string;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new Error('not a file');
    if (stat.size > MAX_PROOF_BYTES)
      throw new GovernorError(ErrorCode.InvalidInput, `--proof: larger than ${MAX_PROOF_BYTES} bytes`, '--proof');
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof GovernorError) throw err;
    throw new GovernorError(ErrorCode.InvalidInput, `--proof: cannot read ${file}`, '--proof');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new GovernorError(ErrorCode.InvalidInput, `--proof: ${file} is not JSON`, '--proof');
  }
}

/** Writes a proof atomically (temp file + rename). */
export function writeProofFile(file: string, proof: Proof): void {
  const target = path.resolve(file);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, `${JSON.stringify(proof, null, 2)}\n`, { mode: 0o644 });
    fs.renameSync(tmp, target);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Bundles loaded from proof files, by content hash (checking a bundle runs Cedar's validator: keep it once). */
const loadedFromFiles = new LRUCache<string, { bundle?: LoadedBundle; error?: string }>({ max: 256 });

function loadProofBundle(files: readonly BundleFile[]): { bundle?: LoadedBundle; error?: string } {
  const key = sha256Hex(canonicalJson(files));
  let loaded = loadedFromFiles.get(key);
  if (!loaded) {
    const { bundle, issues } = analyseBundle(files, '<proof>');
    const errors = issues.filter((i) => i.severity === 'error');
    loaded =
      bundle && errors.length === 0
        ? { bundle }
        : { error: errors.slice(0, 2).map(formatIssue).join('; ') || 'invalid' };
    loadedFromFiles.set(key, loaded);
  }
  return loaded;
}

/** What `verifyProof` needs besides the proof. */
export interface VerifyProofOptions {
  /** The receipt keys the verifier trusts (never taken from the proof). */
  trustedReceiptJwks: JSONWebKeySet;
  /** When given, the proof must be of this chain. */
  chainId?: string;
  replayer?: Replayer;
  workflowBundle?: WorkflowBundleOption;
  /** Payload codec of encrypted histories (a proof keeps histories as Temporal stored them). */
  codec?: PayloadCodec;
  /** The proof must carry a transparency log anchor (`anchor` check); without this, an anchor is checked when present. */
  requireAnchor?: boolean;
}

/** Name of the check of a proof's transparency log anchor. */
export const ANCHOR_CHECK = 'anchor';

/** The final receipt (seq, hash) the proof's last history's workflow result names, when it has one. */
async function finalReceiptOf(
  proof: Proof,
  codec: PayloadCodec | undefined,
): Promise<{ seq: number; hash: string } | undefined> {
  const [last] = await decodeHistories([proof.histories.at(-1)], codec, []);
  const closure = decodeRun(last, 0).closure;
  const result = closure?.type === 'completed' ? closure.result : undefined;
  const head =
    typeof result === 'object' && result !== null ? (result as { receiptHead?: unknown }).receiptHead : undefined;
  if (typeof head !== 'object' || head === null) return undefined;
  const { seq, hash } = head as { seq?: unknown; hash?: unknown };
  return typeof seq === 'number' && typeof hash === 'string' ? { seq, hash } : undefined;
}

/** The `anchor` check: the proof's anchor is the chain's final checkpoint, included in a signed tree head. */
async function checkProofAnchor(proof: Proof, options: VerifyProofOptions): Promise<VerifyCheck | undefined> {
  if (proof.anchor === undefined)
    return options.requireAnchor
      ? { name: ANCHOR_CHECK, ok: false, detail: 'the proof carries no transparency log anchor' }
      : undefined;
  const final = await finalReceiptOf(proof, options.codec);
  const problems = await checkAnchor(proof.anchor, options.trustedReceiptJwks, {
    chainId: proof.chainId,
    ...(final ? final : { hash: '(none)' }),
  });
  if (problems.length > 0) return { name: ANCHOR_CHECK, ok: false, detail: problems.join('; '), problems };
  const a = proof.anchor as { index: number; log: string; treeHead: { treeSize: number; rootHash: string } };
  return {
    name: ANCHOR_CHECK,
    ok: true,
    detail: `the final checkpoint is leaf ${a.index} of log ${a.log}, included in its signed tree head ${a.treeHead.treeSize} (root ${a.treeHead.rootHash.slice(0, 16)}…)`,
  };
}

/**
 * Verifies a proof offline: its shape, seal, receipt keys and bundles, then every check of
 * `verifyChain` on its histories with its bundles. Never throws for a bad proof (every problem is a
 * failed check); throws InvalidInput only for unusable trusted keys.
 */
export async function verifyProof(raw: unknown, options: VerifyProofOptions): Promise<VerifyReport> {
  const seal = await checkSeal(raw, options.trustedReceiptJwks);
  const parsed = Proof.safeParse(raw);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => i.path.join('.') || '(root)'))].slice(0, 3).join(', ');
    const checks = [{ name: CheckName.Proof, ok: false, detail: `not a ${PROOF_FORMAT} proof (${fields})` }, seal];
    return {
      chainId: null,
      verdict: 'failed',
      status: null,
      runs: 0,
      receipts: 0,
      decisions: 0,
      bundleDigests: [],
      checks,
      runList: [],
    };
  }
  const proof = parsed.data;
  const proofCheck: VerifyCheck =
    options.chainId !== undefined && options.chainId !== proof.chainId
      ? { name: CheckName.Proof, ok: false, detail: `a proof of chain ${proof.chainId}, not ${options.chainId}` }
      : {
          name: CheckName.Proof,
          ok: true,
          detail: `${PROOF_FORMAT} of chain ${proof.chainId}, exported ${proof.exportedAt}`,
        };

  const keyCheck = checkReceiptKeys(proof.receiptKeys.keys, options.trustedReceiptJwks);

  const problems: string[] = [];
  const verified = new Map<string, LoadedBundle>();
  for (const [digest, files] of Object.entries(proof.bundles)) {
    const { bundle, error } = loadProofBundle(files);
    if (!bundle) problems.push(`bundle ${digest.slice(0, 12)}…: invalid (${error})`);
    else if (bundle.digest !== digest)
      problems.push(
        `bundle ${digest.slice(0, 12)}…: its files hash to ${bundle.digest.slice(0, 12)}… (swapped or altered)`,
      );
    else if (canonicalJson(files) !== canonicalJson(bundle.files.map((f) => ({ path: f.path, content: f.content })))) {
      problems.push(
        `bundle ${digest.slice(0, 12)}…: files not in canonical form (digest-covered files only, normalised, sorted by path)`,
      );
    } else verified.set(digest, bundle);
  }

  const report = await verifyChain({
    histories: proof.histories,
    ...(proof.runs ? { runs: proof.runs } : {}),
    chainId: proof.chainId,
    trustedReceiptJwks: options.trustedReceiptJwks,
    bundles: (digest) => verified.get(digest),
    ...(options.replayer ? { replayer: options.replayer } : {}),
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : {}),
    ...(options.codec ? { codec: options.codec } : {}),
  });
  const referenced = new Set(report.bundleDigests);
  for (const digest of Object.keys(proof.bundles)) {
    if (!referenced.has(digest)) problems.push(`bundle ${digest.slice(0, 12)}…: no recorded decision names it`);
  }
  const bundlesCheck: VerifyCheck =
    problems.length === 0
      ? {
          name: CheckName.Bundles,
          ok: true,
          detail: `${verified.size} bundle(s), each re-hashed from its files to its digest`,
        }
      : {
          name: CheckName.Bundles,
          ok: false,
          detail: problems.slice(0, 3).join('; ') + (problems.length > 3 ? `; and ${problems.length - 3} more` : ''),
        };

  const anchorCheck = await checkProofAnchor(proof, options);
  const checks = [proofCheck, seal, keyCheck, bundlesCheck, ...report.checks, ...(anchorCheck ? [anchorCheck] : [])];
  return { ...report, verdict: checks.every((c) => c.ok) ? 'verified' : 'failed', checks };
}

async function checkSeal(raw: unknown, trusted: JSONWebKeySet): Promise<VerifyCheck> {
  if (
    typeof raw !== 'object' ||
    raw === null ||
    Array.isArray(raw) ||
    typeof (raw as { seal?: unknown }).seal !== 'string'
  ) {
    return { name: CheckName.Seal, ok: false, detail: 'the proof has no seal' };
  }
  const proof = raw as Record<string, unknown>;
  const verified = await verifySealJws(proof.seal as string, trusted, PROOF_SEAL_TYP);
  if (!verified.ok) return { name: CheckName.Seal, ok: false, detail: `the seal ${verified.problem}` };
  if (verified.payload !== proofContentDigest(proof))
    return { name: CheckName.Seal, ok: false, detail: 'the proof content differs from what was sealed' };
  return { name: CheckName.Seal, ok: true, detail: `the whole proof is sealed by trusted receipt key ${verified.kid}` };
}

function checkReceiptKeys(embedded: readonly Record<string, unknown>[], trusted: JSONWebKeySet): VerifyCheck {
  const trustedKeys = new Set((Array.isArray(trusted.keys) ? trusted.keys : []).map((k) => canonicalJson(k)));
  const foreign = embedded.filter((k) => !trustedKeys.has(canonicalJson(k)));
  if (foreign.length > 0) {
    const kids = foreign.map((k) => (typeof k.kid === 'string' ? k.kid : '(no kid)')).join(', ');
    return {
      name: CheckName.ReceiptKey,
      ok: false,
      detail: `the proof's receipt key(s) ${kids} are not the trusted receipt key(s)`,
    };
  }
  return {
    name: CheckName.ReceiptKey,
    ok: true,
    detail: `the proof's ${embedded.length} receipt key(s) are trusted keys`,
  };
}
