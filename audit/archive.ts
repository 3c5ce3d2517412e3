import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AwsClient } from 'aws4fetch';
import type { PayloadCodec } from '@temporalio/common';
import type { JSONWebKeySet } from 'jose';
import type { SigningKey } from '../identity';
import { archiveKeyOf, type ArchiveResult } from '../contracts/archive';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { canonicalJson } from '../core/canonical';
import { Activity } from '../core/history';
import { buildProof, type Proof } from './proof';
import { decodeRun } from './verify/decode';
import { decodeHistories, type ChainHistories, type ChainRun } from './verify/history-fetch';
import type { BundleLookup } from './verify';
import { isRecord } from './verify/util';

/*
 * The proof archive (DESIGN §13, README "Archived proofs"): when a chain or session closes, its sealed proof
 * (audit/proof.ts, the same file `governor verify --export` writes) is written to a directory (default
 * `<GOVERNOR_HOME>/archive`) or an S3-compatible bucket, so `governor verify --archive` can check the chain
 * after Temporal's retention has deleted its history.
 *
 * - One object per chain: `<prefix>/<chainId>.proof.json`. Chain ids are checked to be safe keys (no `/`,
 *   no `..`, no absolute paths) before any I/O.
 * - Idempotent: before building, the archive is read; an object holding a proof of the same chain with the
 *   same histories and run list is left as it is (`unchanged`). A different one is never overwritten: the
 *   export is refused (ArchiveConflict, not retried) and logged. Writes create only (a directory: a hard
 *   link of a complete temp file, which fails if the name exists; S3: `If-None-Match: *`).
 * - The proof's `exportedAt` is the chain's close time, keys are written in canonical order and Ed25519
 *   signatures are deterministic, so exporting the same closed chain again with the same keys gives the
 *   same bytes.
 * - `anchor` (optional, default none) is called with the sealed proof before it is written and returns the
 *   proof to write (the transparency log adds its inclusion proof and tree head there, and re-seals).
 *
 * Credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) are read from the environment and
 * never appear in a log line or error message.
 */

const MAX_ARCHIVED_BYTES = 512 * 1024 * 1024;

/** Called with the sealed proof before it is written; returns the (re-sealed) proof to write. */
export type ProofAnchor = (proof: Proof) => Promise<Proof>;

/** Where proofs are kept: create-only writes, reads by key. */
export interface ArchiveStore {
  /** The archive as logs and errors name it (a directory path or `s3://bucket/prefix`; never a credential). */
  readonly location: string;
  /** Where the object of `key` is, for messages. */
  where(key: string): string;
  /** The object's bytes, or undefined when there is none. */
  get(key: string): Promise<Buffer | undefined>;
  /** Creates the object unless one exists (then nothing is written). */
  putIfAbsent(key: string, bytes: Buffer): Promise<'written' | 'exists'>;
}

/** A directory archive: `<dir>/<key>`. */
export class DirectoryArchive implements ArchiveStore {
  readonly location: string;

  constructor(dir: string) {
    this.location = path.resolve(dir);
  }

  where(key: string): string {
    return this.file(key);
  }

  private file(key: string): string {
    const file = path.resolve(this.location, key);
    const rel = path.relative(this.location, file);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel))
      throw new GovernorError(ErrorCode.InvalidInput, `archive: key ${JSON.stringify(key)} leaves the archive`, 'key');
    return file;
  }

  async get(key: string): Promise<Buffer | undefined> {
    const file = this.file(key);
    let stat: fs.Stats;
    try {
      stat = await fs.promises.lstat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (!stat.isFile()) throw new Error(`archive: ${file} is not a regular file`);
    if (stat.size > MAX_ARCHIVED_BYTES) throw new Error(`archive: ${file} is larger than ${MAX_ARCHIVED_BYTES} bytes`);
    return await fs.promises.readFile(file);
  }

  async putIfAbsent(key: string, bytes: Buffer): Promise<'written' | 'exists'> {
    const file = this.file(key);
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = path.join(
      path.dirname(file),
      `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`,
    );
    try {
      await fs.promises.writeFile(tmp, bytes, { mode: 0o644, flag: 'wx' });
      const handle = await fs.promises.open(tmp, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      // link(2) fails when the name exists: the complete file appears under its name once, or not at all.
      await fs.promises.link(tmp, file);
      return 'written';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
      throw err;
    } finally {
      await fs.promises.rm(tmp, { force: true });
    }
  }
}

/** An S3-compatible bucket's settings. */
export interface S3ArchiveOptions {
  bucket: string;
  /** Key prefix without leading or trailing `/` ('' for none). */
  prefix: string;
  region: string;
  /** An S3-compatible endpoint (path-style URLs: `<endpoint>/<bucket>/<key>`); default AWS (`https://<bucket>.s3.<region>.amazonaws.com`). */
  endpoint?: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** How long one request may take (default 30 s). */
  timeoutMs?: number;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_SEGMENT = /^[A-Za-z0-9_.@:=+-]{1,128}$/;

/** An S3-compatible bucket, signed with SigV4 (aws4fetch). */
export class S3Archive implements ArchiveStore {
  readonly location: string;
  private readonly aws: AwsClient;
  private readonly base: string;

  constructor(private readonly options: S3ArchiveOptions) {
    if (!BUCKET.test(options.bucket))
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `archive: ${JSON.stringify(options.bucket)} is not a bucket name`,
        'bucket',
      );
    checkPrefix(options.prefix);
    this.location = `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ''}`;
    this.aws = new AwsClient({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      ...(options.sessionToken ? { sessionToken: options.sessionToken } : {}),
      service: 's3',
      region: options.region,
      retries: 2,
    });
    if (options.endpoint) {
      let url: URL;
      try {
        url = new URL(options.endpoint);
      } catch {
        throw new GovernorError(ErrorCode.InvalidInput, 'archive: the S3 endpoint is not a URL', 'endpoint');
      }
      if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.search)
        throw new GovernorError(
          ErrorCode.InvalidInput,
          'archive: the S3 endpoint must be an http(s) URL without credentials or query',
          'endpoint',
        );
      this.base = `${url.origin}${url.pathname.replace(/\/+$/, '')}/${options.bucket}`;
    } else {
      this.base = `https://${options.bucket}.s3.${options.region}.amazonaws.com`;
    }
  }

  where(key: string): string {
    return `${this.location}/${key}`;
  }

  private url(key: string): string {
    const full = this.options.prefix ? `${this.options.prefix}/${key}` : key;
    return `${this.base}/${full.split('/').map(encodeURIComponent).join('/')}`;
  }

  private async request(method: string, key: string, init: { body?: Buffer; headers?: Record<string, string> } = {}) {
    try {
      return await this.aws.fetch(this.url(key), {
        method,
        ...(init.body ? { body: init.body } : {}),
        headers: init.headers ?? {},
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      });
    } catch (err) {
      // The request failed before an answer (no credential is in these messages: they name the archive only).
      const why = (err as Error).name === 'TimeoutError' ? 'no answer in time' : 'request failed';
      throw new Error(`archive: ${method} ${this.where(key)}: ${why}`, { cause: err });
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    const res = await this.request('GET', key);
    if (res.status === 404) {
      await res.arrayBuffer().catch(() => undefined);
      return undefined;
    }
    if (res.status !== 200) {
      await res.arrayBuffer().catch(() => undefined);
      throw new Error(`archive: GET ${this.where(key)} answered HTTP ${res.status}`);
    }
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > MAX_ARCHIVED_BYTES)
      throw new Error(`archive: ${this.where(key)} is larger than ${MAX_ARCHIVED_BYTES} bytes`);
    return Buffer.from(await res.arrayBuffer());
  }

  async putIfAbsent(key: string, bytes: Buffer): Promise<'written' | 'exists'> {
    const res = await this.request('PUT', key, {
      body: bytes,
      // Create only (S3 conditional writes); a store that ignores it is still guarded by the read before.
      headers: { 'content-type': 'application/json', 'if-none-match': '*' },
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.status === 412 || res.status === 409) return 'exists';
    if (res.status < 200 || res.status >= 300)
      throw new Error(`archive: PUT ${this.where(key)} answered HTTP ${res.status}`);
    return 'written';
  }
}

function checkPrefix(prefix: string): void {
  if (prefix === '') return;
  const segments = prefix.split('/');
  if (segments.some((s) => !PREFIX_SEGMENT.test(s) || s === '.' || s === '..' || s.includes('..')))
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `archive: prefix ${JSON.stringify(prefix)}: segments of letters, digits, _ . @ : = + - only, no '..'`,
      'prefix',
    );
}

/**
 * The archive a location names: `s3://<bucket>[/<prefix>]` (endpoint from GOVERNOR_ARCHIVE_S3_ENDPOINT,
 * region from AWS_REGION or AWS_DEFAULT_REGION, default us-east-1; credentials AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), or a directory path.
 */
export function openArchive(location: string, env: NodeJS.ProcessEnv = process.env): ArchiveStore {
  if (!location.startsWith('s3://')) return new DirectoryArchive(location);
  const rest = location.slice('s3://'.length).replace(/\/+$/, '');
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1);
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `archive ${location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
      'AWS_ACCESS_KEY_ID',
    );
  return new S3Archive({
    bucket,
    prefix,
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    ...(env.GOVERNOR_ARCHIVE_S3_ENDPOINT ? { endpoint: env.GOVERNOR_ARCHIVE_S3_ENDPOINT } : {}),
    accessKeyId,
    secretAccessKey,
    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
  });
}

/** Values of GOVERNOR_ARCHIVE that turn archiving off. */
const OFF = new Set(['off', 'none', 'false', '0']);

/**
 * The worker's archive from its environment: GOVERNOR_ARCHIVE (a directory, `s3://bucket/prefix`, or `off`),
 * default `<home>/archive`. Undefined when off.
 */
export function archiveFromEnv(home: string, env: NodeJS.ProcessEnv = process.env): ArchiveStore | undefined {
  const spec = env.GOVERNOR_ARCHIVE?.trim();
  if (spec && OFF.has(spec.toLowerCase())) return undefined;
  return openArchive(spec || path.join(home, 'archive'), env);
}

/** The key of a chain's proof, or InvalidInput for a chain id that is not a safe object key. */
export function archiveKey(chainId: string): string {
  const key = archiveKeyOf(chainId);
  if (!key)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `archive: chain id ${JSON.stringify(String(chainId).slice(0, 200))} is not a safe object key (1-128 of A-Z a-z 0-9 _ . : @ -, no '..')`,
      'chainId',
    );
  return key;
}

/** Raised when the archive holds a different proof of the chain: never overwritten. */
export class ArchiveConflict extends Error {
  override readonly name = 'ArchiveConflict';
}

/**
 * What an export reads from the histories (the ones just fetched from Temporal, in the stable form), without
 * replaying them: the bundle digests the recorded decisions name (enforced and shadow), and the last run's
 * final checkpoint receipt.
 */
async function archiveFacts(
  histories: readonly unknown[],
  codec?: PayloadCodec,
): Promise<{ bundleDigests: string[]; checkpoint?: Record<string, unknown> }> {
  const decoded = await decodeHistories(histories, codec, []);
  const digests = new Set<string>();
  let checkpoint: Record<string, unknown> | undefined;
  for (const [i, h] of decoded.entries()) {
    const { entries } = decodeRun(h, i, { fromServer: true });
    for (const entry of entries) {
      if (entry.source !== Activity.authorize || !isRecord(entry.result)) continue;
      const decision = entry.result.decision;
      if (isRecord(decision) && typeof decision.bundleDigest === 'string') digests.add(decision.bundleDigest);
      const shadow = entry.result.shadow;
      if (isRecord(shadow) && typeof shadow.bundleDigest === 'string') digests.add(shadow.bundleDigest);
    }
    const receipt = entries.at(-1)?.result.receipt;
    checkpoint = i === decoded.length - 1 && isRecord(receipt) && receipt.kind === 'checkpoint' ? receipt : undefined;
  }
  return { bundleDigests: [...digests].sort(), ...(checkpoint ? { checkpoint } : {}) };
}

/** What makes two proofs of a chain the same evidence: chain id, histories and run list (not the export time, keys or seal). */
function evidence(proof: { chainId?: unknown; histories?: unknown; runs?: unknown }): string {
  return canonicalJson(
    JSON.parse(JSON.stringify({ chainId: proof.chainId, histories: proof.histories, runs: proof.runs ?? null })),
  );
}

/** When the chain closed: the time of the last event of its last run (undefined when unreadable). */
function closedAt(histories: readonly unknown[]): Date | undefined {
  const last = histories[histories.length - 1];
  const events = isRecord(last) && Array.isArray(last.events) ? last.events : [];
  const event = events[events.length - 1];
  const time = isRecord(event) ? event.eventTime : undefined;
  // proto3 JSON of a Timestamp as protobufjs writes it (`{ seconds, nanos }`), or an RFC 3339 string.
  const date =
    typeof time === 'string'
      ? new Date(time)
      : isRecord(time) && (typeof time.seconds === 'string' || typeof time.seconds === 'number')
        ? new Date(Number(time.seconds) * 1000 + Math.floor(Number(time.nanos ?? 0) / 1e6))
        : undefined;
  return date && !Number.isNaN(date.getTime()) ? date : undefined;
}

/** Compares what the archive holds with the evidence about to be archived: unchanged, or a conflict. */
function compareArchived(
  existing: Buffer,
  chainId: string,
  histories: readonly unknown[],
  runs: readonly ChainRun[],
  where: string,
): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(existing.toString('utf8'));
  } catch {
    throw new ArchiveConflict(`the archive holds something that is not a proof at ${where}: not overwritten`);
  }
  if (!isRecord(parsed) || evidence(parsed) !== evidence({ chainId, histories, runs }))
    throw new ArchiveConflict(
      `the archive already holds a different proof of chain ${chainId} at ${where}: not overwritten (the history changed since it was archived, or the archive was altered)`,
    );
}

/**
 * The bytes of an archived proof: indented JSON with keys in canonical order (the server lists map entries in
 * no fixed order; the seal covers the canonical JSON either way), so the same proof is always the same bytes.
 */
export function proofBytes(proof: Proof): Buffer {
  // One pass: every object's keys sorted as canonicalJson sorts them (the same bytes as indenting the parsed
  // canonical JSON, which took three passes over the histories).
  return Buffer.from(`${JSON.stringify(proof, sortedKeys, 2)}\n`);
}

/** JSON.stringify replacer: a plain object with its keys in canonical order (arrays and scalars as they are). */
function sortedKeys(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
  if (!isRecord(value)) return value;
  // No prototype: a "__proto__" key stays an own member (JSON.parse of the canonical JSON kept it too).
  const out = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(value).sort()) out[k] = value[k];
  return out;
}

/** What `exportProof` needs. */
export interface ExportProofInput {
  store: ArchiveStore;
  chainId: string;
  /** The closed chain's lineage with its run list (`fetchChainHistories`), as Temporal stores it (encrypted or not). */
  histories: ChainHistories;
  /** Decodes encrypted histories to find the bundle digests their decisions name. */
  codec?: PayloadCodec;
  bundles: BundleLookup;
  receiptKeys: JSONWebKeySet;
  signer: Pick<SigningKey, 'key' | 'kid'>;
  anchor?: ProofAnchor;
}

/** A chain's proof built and sealed but not written (`prepareProof`): `write` stores it once, anchored or not. */
export interface PreparedProof {
  outcome: 'ready';
  proof: Proof;
  /** The chain's final checkpoint receipt as its last history records it (none: the chain closed without one). */
  checkpoint?: Record<string, unknown>;
  write(proof: Proof): Promise<ArchiveResult>;
}

/**
 * Builds a closed chain's sealed proof for the archive, unless the archive already holds a proof of the same
 * histories (`unchanged`); ArchiveConflict when it holds a different one. The caller anchors it (or not) and
 * writes it with `write`, which never overwrites: a proof written meanwhile by another export is compared.
 */
export async function prepareProof(
  input: Omit<ExportProofInput, 'anchor'>,
): Promise<{ outcome: 'unchanged'; location: string } | PreparedProof> {
  const { store, chainId, histories } = input;
  const key = archiveKey(chainId);
  const where = store.where(key);
  const runs = histories.runs;
  if (!runs)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `chain ${chainId}: no run list (fetch it with fetchChainHistories)`,
      'runs',
    );
  const existing = await store.get(key);
  if (existing) {
    compareArchived(existing, chainId, histories, runs, where);
    return { outcome: 'unchanged', location: where };
  }
  const facts = await archiveFacts(histories, input.codec);
  const proof = await buildProof({
    chainId,
    histories,
    bundleDigests: facts.bundleDigests,
    bundles: input.bundles,
    receiptKeys: input.receiptKeys,
    signer: input.signer,
    ...(closedAt(histories) ? { now: closedAt(histories) } : {}),
  });
  const write = async (final: Proof): Promise<ArchiveResult> => {
    const written = await store.putIfAbsent(key, proofBytes(final));
    if (written === 'exists') {
      // Another export got there first: fine when it is the same evidence.
      const now = await store.get(key);
      if (!now) throw new Error(`archive: ${where} exists but cannot be read`);
      compareArchived(now, chainId, histories, runs, where);
      return { outcome: 'unchanged', location: where };
    }
    return { outcome: 'written', location: where };
  };
  return { outcome: 'ready', proof, write, ...(facts.checkpoint ? { checkpoint: facts.checkpoint } : {}) };
}

/**
 * Exports a closed chain's sealed proof to the archive, once: `unchanged` when the archive already holds a
 * proof of the same histories; ArchiveConflict (nothing written) when it holds a different one.
 */
export async function exportProof(input: ExportProofInput): Promise<ArchiveResult> {
  const prepared = await prepareProof(input);
  if (prepared.outcome === 'unchanged') return prepared;
  return prepared.write(input.anchor ? await input.anchor(prepared.proof) : prepared.proof);
}

/**
 * Reads a chain's archived proof as JSON (for `governor verify --archive`). InvalidInput (field `--archive`)
 * when the chain id is unsafe, the archive holds no proof of the chain, or it is not JSON.
 */
export async function readArchivedProof(
  store: ArchiveStore,
  chainId: string,
): Promise<{ raw: unknown; where: string }> {
  const key = archiveKey(chainId);
  const where = store.where(key);
  let bytes: Buffer | undefined;
  try {
    bytes = await store.get(key);
  } catch (err) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `--archive: cannot read ${where}: ${(err as Error).message}`,
      '--archive',
    );
  }
  if (!bytes)
    throw new GovernorError(
      ErrorCode.NotFound,
      `--archive: no archived proof of chain ${chainId} at ${where}`,
      '--archive',
    );
  try {
    return { raw: JSON.parse(bytes.toString('utf8')) as unknown, where };
  } catch {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `--archive: ${where} is not JSON (altered or truncated)`,
      '--archive',
    );
  }
}
