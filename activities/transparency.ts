import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { temporal } from '@temporalio/proto';
import type { JSONWebKeySet } from 'jose';
import { canonicalJson, sha256Hex } from '../core/canonical';
import { consistencyProof, inclusionProof, rootOf } from '../core/merkle';
import { receiptBody } from '../core/receipts';
import { ErrorCode } from '../contracts/errors';
import { SESSION_WORKFLOW_TYPE } from '../contracts/session';
import { WORKFLOW_TYPE } from '../contracts/status';
import {
  LOG_DIVERGED,
  ReadLogInput,
  type AppendCheckpointInput,
  type CheckpointLeaf,
  type ReadLogResult,
  type SignedTreeHeadShape,
} from '../contracts/transparency';
import { keyPaths, loadPrivateKeyObject, loadPublicJwks } from '../identity';
import { checkpointLeafHash, sha256, signTreeHead, type SignedTreeHead } from '../audit/transparency';
import { decodeHistories, historyToJson } from '../audit/verify/history-fetch';
import { decodeRun } from '../audit/verify/decode';
import { verifySealJws } from '../audit/verify/jws';
import { Grpc, grpcCodeOf, isUnavailable } from '../runtime/error-causes';

/*
 * The transparency log's activities (DESIGN §13, issue 20 item 3). The log workflow
 * (workflows/transparency-log.ts) holds only the tree's size, root and latest signed head; the leaves
 * live here, in an append-only file store under GOVERNOR_HOME (`transparency/<namespace>/<log>.leaves.jsonl`,
 * one JSON line per leaf, and `.heads.jsonl`, every head signed). Every call names the size and root the
 * workflow holds, and the store must hold exactly that tree as its prefix: a leaf removed, reordered or
 * altered in the file, or a worker whose store is another host's, is refused (`GOVERNOR_LOG_DIVERGED`), so
 * nothing is ever appended to or proved from a tree other than the one the signed heads name.
 *
 * The trust boundary: a caller names a chain, never a leaf. `transparencyAppend` reads the chain's final
 * run from Temporal, requires it to be a governed chain or session that completed, finds its last receipt
 * in the history, recomputes that receipt's hash, checks its signature with the receipt key, and requires
 * it to be this chain's checkpoint that the workflow result names. Only then is the leaf built from it.
 */

/** The receipt `typ` of checkpoints. */
const RECEIPT_TYP = 'governor-receipt+jws';
const HEX64 = /^[0-9a-f]{64}$/;
const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Chains one batch reads from Temporal at a time. */
const READ_CONCURRENCY = 16;

/** One leaf as the store keeps it. */
export interface StoredLeaf {
  index: number;
  leaf: CheckpointLeaf;
  /** RFC 6962 leaf hash (hex) of the leaf's canonical JSON. */
  hash: string;
}

/** Why a store cannot serve the tree the workflow names. */
export class LogDiverged extends Error {}

/** What identifies one state of the leaf file (inode, size, modification time). */
function stampOf(stat: fs.Stats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
}

/** The file name of a log (its workflow id, made safe). */
function fileBase(log: string): string {
  return log.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** The append-only leaf store of one log (one namespace, one log workflow id). */
export class TransparencyStore {
  readonly leavesFile: string;
  readonly headsFile: string;
  private cache?: { stamp: string; leaves: StoredLeaf[]; hashes: Uint8Array[] };

  constructor(home: string, namespace: string, log: string) {
    const dir = path.join(home, 'transparency', fileBase(namespace));
    this.leavesFile = path.join(dir, `${fileBase(log)}.leaves.jsonl`);
    this.headsFile = path.join(dir, `${fileBase(log)}.heads.jsonl`);
  }

  /** Every leaf, checked line by line (index in order, hash recomputed); throws LogDiverged on a bad line. */
  load(): { leaves: StoredLeaf[]; hashes: Uint8Array[] } {
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(this.leavesFile);
    } catch {
      stat = undefined;
    }
    const stamp = stat ? stampOf(stat) : 'none';
    if (this.cache?.stamp === stamp) return this.cache;
    const leaves: StoredLeaf[] = [];
    const text = stat ? fs.readFileSync(this.leavesFile, 'utf8') : '';
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    lines.forEach((line, i) => {
      let parsed: StoredLeaf;
      try {
        parsed = JSON.parse(line) as StoredLeaf;
      } catch {
        throw new LogDiverged(`${this.leavesFile} line ${i + 1} is not JSON (the store was altered)`);
      }
      if (parsed.index !== i)
        throw new LogDiverged(
          `${this.leavesFile} line ${i + 1} holds leaf ${String(parsed.index)}, not ${i}: leaves were removed or reordered`,
        );
      if (typeof parsed.hash !== 'string' || checkpointLeafHash(parsed.leaf) !== parsed.hash)
        throw new LogDiverged(
          `${this.leavesFile} leaf ${i}: its hash does not match its content (the leaf was altered)`,
        );
      leaves.push(parsed);
    });
    const hashes = leaves.map((l) => new Uint8Array(Buffer.from(l.hash, 'hex')));
    this.cache = { stamp, leaves, hashes };
    return this.cache;
  }

  /** Root (hex) of the first `size` leaves. */
  rootAt(hashes: readonly Uint8Array[], size: number): string {
    return Buffer.from(rootOf(sha256, hashes, 0, size)).toString('hex');
  }

  /**
   * The leaves, after checking that their first `size` form the tree with `rootHash` (what the workflow
   * holds). Leaves beyond `size` are ones an earlier attempt appended before its result was lost.
   */
  checked(size: number, rootHash: string): { leaves: StoredLeaf[]; hashes: Uint8Array[] } {
    const state = this.load();
    if (state.leaves.length < size)
      throw new LogDiverged(
        `the leaf store ${this.leavesFile} holds ${state.leaves.length} leaves, the log ${size}: leaves were removed, or this worker's store is not the log's (run the log's activities where its store is, or share ${path.dirname(this.leavesFile)})`,
      );
    const root = this.rootAt(state.hashes, size);
    if (root !== rootHash)
      throw new LogDiverged(
        `the leaf store's first ${size} leaves hash to root ${root.slice(0, 16)}…, the log's signed root is ${rootHash.slice(0, 16)}…: leaves were removed, reordered or altered`,
      );
    return state;
  }

  /**
   * Appends leaves (one write, flushed to disk): the next `load` reuses what it read (no re-read and re-hash of
   * every leaf per batch) when the file was exactly what it read before this write and grew by this write
   * alone; anything else (another writer, an edit) is read and checked again from the file.
   */
  append(leaves: readonly StoredLeaf[]): void {
    if (leaves.length === 0) return;
    fs.mkdirSync(path.dirname(this.leavesFile), { recursive: true, mode: 0o700 });
    const text = leaves.map((l) => `${JSON.stringify(l)}\n`).join('');
    const known = this.cache;
    this.cache = undefined;
    const fd = fs.openSync(this.leavesFile, 'a', 0o600);
    try {
      const before = fs.fstatSync(fd);
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
      const after = fs.fstatSync(fd);
      if (
        known !== undefined &&
        known.stamp === stampOf(before) &&
        after.size === before.size + Buffer.byteLength(text) &&
        leaves.every((l, i) => l.index === known.leaves.length + i && checkpointLeafHash(l.leaf) === l.hash)
      )
        this.cache = {
          stamp: stampOf(after),
          leaves: [...known.leaves, ...leaves],
          hashes: [...known.hashes, ...leaves.map((l) => new Uint8Array(Buffer.from(l.hash, 'hex')))],
        };
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Records a signed head (every head the log published, in order). */
  appendHead(head: SignedTreeHead): void {
    fs.mkdirSync(path.dirname(this.headsFile), { recursive: true, mode: 0o700 });
    fs.appendFileSync(this.headsFile, `${JSON.stringify(head)}\n`, { mode: 0o600 });
  }

  /** The last head recorded (undefined before the first). */
  lastHead(): SignedTreeHead | undefined {
    let text: string;
    try {
      text = fs.readFileSync(this.headsFile, 'utf8');
    } catch {
      return undefined;
    }
    const line = text.trimEnd().split('\n').at(-1);
    return line ? (JSON.parse(line) as SignedTreeHead) : undefined;
  }
}

/** What `transparencyAppend` returns for each requested checkpoint, in order. */
export type AppendResult =
  { ok: true; index: number; leaf: CheckpointLeaf; inclusion: string[] } | { ok: false; reason: string };

/** Input of the log's store activities: the log and the tree the workflow holds. */
export interface LogTree {
  log: string;
  size: number;
  rootHash: string;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The payload codec of the activity's client (encrypted histories), chained when there are several. */
function codecOf(client: Client): PayloadCodec | undefined {
  const codecs = client.options.loadedDataConverter.payloadCodecs;
  if (codecs.length === 0) return undefined;
  return {
    encode: async (p) => {
      for (const c of codecs) p = await c.encode(p);
      return p;
    },
    decode: async (p) => {
      for (const c of [...codecs].reverse()) p = await c.decode(p);
      return p;
    },
  };
}

/** Why Temporal could not give a chain's run (the entry's reason), or undefined: Temporal unreachable (retried). */
function lookupRefusal(err: unknown, entry: AppendCheckpointInput): string | undefined {
  const { chainId } = entry;
  const name = (err as Error).name;
  const code = grpcCodeOf(err);
  if (code === Grpc.InvalidArgument)
    return `chain ${chainId}: Temporal refused the request (${(err as Error).message})`;
  if (name === 'WorkflowNotFoundError' || code === Grpc.NotFound || /not found/i.test((err as Error).message))
    return `chain ${chainId}: no such workflow${entry.runId ? ` run ${entry.runId}` : ''}`;
  return undefined;
}

/**
 * The leaf of a chain that closed with a signed checkpoint, read from Temporal, or why there is none.
 * Never trusts the caller: the checkpoint comes from the chain's own history, checked with the receipt key.
 *
 * - Without `entry.receipt`, the run's whole history is read: its type, how it closed, its last receipt.
 * - With it (the archiver, which has just decoded the history), only the run's description and its close event
 *   are read. The receipt the caller gives is used only when its hash, which the governor's signature covers,
 *   is the hash the run's own result names, so a caller cannot choose what is appended.
 */
export async function readCheckpointLeaf(
  client: Client,
  entry: AppendCheckpointInput,
  jwks: JSONWebKeySet,
): Promise<{ leaf: CheckpointLeaf } | { reason: string }> {
  const { chainId } = entry;
  // Temporal's run ids are UUIDs: anything else is refused here, for this entry only (the server would answer
  // INVALID_ARGUMENT, which must not fail the whole batch).
  if (entry.runId !== undefined && !RUN_ID.test(entry.runId))
    return { reason: `chain ${chainId}: run id ${JSON.stringify(entry.runId.slice(0, 64))} is not a run id` };
  let described;
  try {
    described = await client.workflow.getHandle(chainId, entry.runId).describe();
  } catch (err) {
    const reason = lookupRefusal(err, entry);
    if (reason) return { reason };
    throw err; // Temporal unreachable: the activity retries
  }
  if (described.type !== WORKFLOW_TYPE && described.type !== SESSION_WORKFLOW_TYPE)
    return { reason: `workflow ${chainId} is a ${described.type}, not a governed chain` };
  if (described.status.name !== 'COMPLETED')
    return { reason: `chain ${chainId} has not closed with a checkpoint (its workflow is ${described.status.name})` };
  const runId = described.runId;
  if (entry.receipt !== undefined) {
    let result: unknown;
    try {
      const { history } = await client.workflowService.getWorkflowExecutionHistory({
        namespace: client.options.namespace,
        execution: { workflowId: chainId, runId },
        historyEventFilterType: temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
      });
      const closed = history?.events?.[0]?.workflowExecutionCompletedEventAttributes;
      if (!closed) return { reason: `chain ${chainId} has not closed with a checkpoint (no completion event)` };
      result = await decodeFromPayloadsAtIndex(client.options.loadedDataConverter, 0, closed.result?.payloads);
    } catch (err) {
      const reason = lookupRefusal(err, entry);
      if (reason) return { reason };
      throw err; // unavailable: retried; anything else: refused for this entry (readCheckpointLeaves)
    }
    return checkpointLeaf(entry, runId, entry.receipt, result, jwks);
  }
  let raw;
  try {
    raw = historyToJson(await client.workflow.getHandle(chainId, runId).fetchHistory());
  } catch (err) {
    const reason = lookupRefusal(err, entry);
    if (reason) return { reason };
    throw err;
  }
  const problems: string[] = [];
  const [decoded] = await decodeHistories([raw], codecOf(client), problems);
  if (problems.length > 0) return { reason: `chain ${chainId}: ${problems[0]}` };
  const run = decodeRun(decoded, 0, { fromServer: true });
  const result = run.closure?.type === 'completed' ? run.closure.result : undefined;
  const last = run.entries.at(-1);
  const receipt = last && isRecord(last.result.receipt) ? last.result.receipt : undefined;
  return checkpointLeaf(entry, runId, receipt, result, jwks);
}

/**
 * `readCheckpointLeaf` for one entry of a batch: an error that is not Temporal (or a codec server) being unavailable
 * refuses this entry alone (a hostile entry must not fail the whole batch); unavailability throws, and the
 * activity is retried.
 */
async function readCheckpointLeafOrRefusal(
  client: Client,
  entry: AppendCheckpointInput,
  jwks: JSONWebKeySet,
): Promise<{ leaf: CheckpointLeaf } | { reason: string }> {
  try {
    return await readCheckpointLeaf(client, entry, jwks);
  } catch (err) {
    if (isUnavailable(err)) throw err;
    const message = String((err as { message?: unknown } | null)?.message ?? 'unreadable').replace(/\s+/g, ' ');
    return { reason: `chain ${String(entry.chainId)}: cannot be read (${message.slice(0, 300)})` };
  }
}

/** The leaf, when `receipt` is a checkpoint of the chain signed with the receipt key that its `result` names. */
async function checkpointLeaf(
  entry: AppendCheckpointInput,
  runId: string,
  receipt: Record<string, unknown> | undefined,
  result: unknown,
  jwks: JSONWebKeySet,
): Promise<{ leaf: CheckpointLeaf } | { reason: string }> {
  const { chainId } = entry;
  if (!isRecord(result)) return { reason: `chain ${chainId}: its workflow result is missing` };
  if (!receipt || receipt.kind !== 'checkpoint')
    return { reason: `chain ${chainId}: its last receipt is not a checkpoint` };
  if (receipt.chainId !== chainId || result.chainId !== chainId)
    return { reason: `chain ${chainId}: its checkpoint names chain ${String(receipt.chainId)}` };
  const { seq, hash, signature } = receipt;
  if (typeof seq !== 'number' || typeof hash !== 'string' || !HEX64.test(hash) || typeof signature !== 'string')
    return { reason: `chain ${chainId}: its checkpoint receipt is malformed` };
  let body;
  try {
    body = receiptBody(receipt as unknown as Parameters<typeof receiptBody>[0]);
  } catch {
    return { reason: `chain ${chainId}: its checkpoint receipt is malformed` };
  }
  if (sha256Hex(canonicalJson(body)) !== hash)
    return { reason: `chain ${chainId}: its checkpoint receipt's hash does not match its content` };
  const verified = await verifySealJws(signature, jwks, RECEIPT_TYP);
  if (!verified.ok || verified.payload !== hash)
    return { reason: `chain ${chainId}: its checkpoint's signature is not valid with the receipt key` };
  const head = result.receiptHead;
  if (result.checkpoint !== signature || !isRecord(head) || head.hash !== hash || head.seq !== seq)
    return { reason: `chain ${chainId}: its workflow result does not name its last checkpoint` };
  if (entry.checkpoint !== undefined && entry.checkpoint !== signature)
    return { reason: `chain ${chainId} did not close with the checkpoint given` };
  return { leaf: { v: 1, chainId, runId, seq, hash, checkpoint: signature } };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function diverged(err: unknown): never {
  if (err instanceof LogDiverged) throw ApplicationFailure.nonRetryable(err.message, LOG_DIVERGED);
  throw err;
}

/** The log's activities (registered on the governor worker). Names are recorded in history: never rename them. */
export function createTransparencyActivities(deps: { home: string; clock?: () => Date }) {
  const clock = deps.clock ?? (() => new Date());
  const stores = new Map<string, TransparencyStore>();
  const storeOf = (log: string): TransparencyStore => {
    const namespace = Context.current().info.workflowNamespace ?? 'default';
    const key = `${namespace}\n${log}`;
    let s = stores.get(key);
    if (!s) stores.set(key, (s = new TransparencyStore(deps.home, namespace, log)));
    return s;
  };
  let signer: { stamp: string; key: ReturnType<typeof loadPrivateKeyObject> } | undefined;
  const receiptSigner = (): ReturnType<typeof loadPrivateKeyObject> => {
    // A rotated receipt key (`governor keys rotate receipt`) signs the next head.
    const file = keyPaths(deps.home, 'receipt').privateKeyPath;
    let stamp = '';
    try {
      const s = fs.statSync(file);
      stamp = `${s.ino}:${s.mtimeMs}:${s.size}`;
    } catch {
      stamp = '';
    }
    if (!signer || signer.stamp !== stamp) signer = { stamp, key: loadPrivateKeyObject(deps.home, 'receipt') };
    const pending = signer.key;
    pending.catch(() => (signer = undefined));
    return pending;
  };
  const sign = async (store: TransparencyStore, treeSize: number, rootHash: string): Promise<SignedTreeHead> => {
    const head = await signTreeHead(await receiptSigner(), { treeSize, rootHash, timestamp: clock().getTime() });
    store.appendHead(head);
    return head;
  };

  return {
    /** The store's tree when a log run starts (`carried`: the tree the previous run held, which it must extend). */
    async transparencyOpen(input: {
      log: string;
      carried?: { size: number; rootHash: string };
    }): Promise<{ size: number; rootHash: string; head: SignedTreeHeadShape | null }> {
      const store = storeOf(input.log);
      try {
        const { hashes } = input.carried ? store.checked(input.carried.size, input.carried.rootHash) : store.load();
        const size = hashes.length;
        const rootHash = store.rootAt(hashes, size);
        const last = store.lastHead();
        return { size, rootHash, head: last && last.treeSize === size && last.rootHash === rootHash ? last : null };
      } catch (err) {
        return diverged(err);
      }
    },

    /**
     * Appends the leaves of the chains asked for (each checked against Temporal: see `readCheckpointLeaf`)
     * to the tree the workflow holds, signs the new head, and returns each leaf's index and audit path
     * to that head. A checkpoint already in the log is not appended again (its index is returned).
     */
    async transparencyAppend(
      input: LogTree & { entries: AppendCheckpointInput[] },
    ): Promise<{ head: SignedTreeHeadShape; results: AppendResult[] }> {
      const store = storeOf(input.log);
      const client = Context.current().client;
      const jwks = loadPublicJwks(deps.home, 'receipt');
      let state;
      try {
        state = store.checked(input.size, input.rootHash);
      } catch (err) {
        return diverged(err);
      }
      const known = new Map(state.leaves.map((l) => [l.hash, l.index]));
      let size = state.leaves.length;
      const fresh: StoredLeaf[] = [];
      const placed: ({ index: number; leaf: CheckpointLeaf } | { reason: string })[] = [];
      // Read concurrently (each a describe, and a history fetch or a close event), placed in order.
      const reads = new Array<Awaited<ReturnType<typeof readCheckpointLeaf>>>(input.entries.length);
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(READ_CONCURRENCY, input.entries.length) }, async () => {
          for (let i = next++; i < input.entries.length; i = next++)
            reads[i] = await readCheckpointLeafOrRefusal(client, input.entries[i]!, jwks);
        }),
      );
      for (const read of reads) {
        if ('reason' in read) {
          placed.push(read);
          continue;
        }
        const hash = checkpointLeafHash(read.leaf);
        let index = known.get(hash);
        if (index === undefined) {
          index = size++;
          known.set(hash, index);
          fresh.push({ index, leaf: read.leaf, hash });
        }
        placed.push({ index, leaf: read.leaf });
      }
      store.append(fresh);
      const hashes = [...state.hashes, ...fresh.map((l) => new Uint8Array(Buffer.from(l.hash, 'hex')))];
      const head = await sign(store, hashes.length, store.rootAt(hashes, hashes.length));
      const results: AppendResult[] = placed.map((p) =>
        'reason' in p
          ? { ok: false, reason: p.reason }
          : { ok: true, index: p.index, leaf: p.leaf, inclusion: inclusionProof(sha256, hashes, p.index).map(hex) },
      );
      return { head, results };
    },

    /** Signs a fresh head of the tree the workflow holds (interval and on demand). */
    async transparencySignHead(input: LogTree): Promise<SignedTreeHeadShape> {
      const store = storeOf(input.log);
      try {
        store.checked(input.size, input.rootHash);
      } catch (err) {
        return diverged(err);
      }
      return sign(store, input.size, input.rootHash);
    },

    /** Inclusion/consistency proofs and leaves, against the tree the workflow holds. */
    async transparencyRead(input: LogTree & { read: ReadLogInput }): Promise<ReadLogResult> {
      const parsed = ReadLogInput.safeParse(input.read);
      if (!parsed.success) throw ApplicationFailure.nonRetryable('invalid log read', ErrorCode.InvalidInput);
      const store = storeOf(input.log);
      let state;
      try {
        state = store.checked(input.size, input.rootHash);
      } catch (err) {
        return diverged(err);
      }
      const leaves = state.leaves.slice(0, input.size);
      const hashes = state.hashes.slice(0, input.size);
      const out: ReadLogResult = { treeSize: input.size, rootHash: input.rootHash };
      const read = parsed.data;
      const refuse = (message: string): never => {
        throw ApplicationFailure.nonRetryable(message, ErrorCode.InvalidInput);
      };
      if ('inclusion' in read) {
        const q = read.inclusion;
        const size = q.treeSize ?? input.size;
        if (size > input.size) refuse(`the log has ${input.size} leaves, not ${size}`);
        let index = q.index;
        if (index === undefined && q.chainId !== undefined) {
          for (let i = size - 1; i >= 0 && index === undefined; i--)
            if (leaves[i]!.leaf.chainId === q.chainId) index = i;
          if (index === undefined) refuse(`chain ${q.chainId} is not in the first ${size} leaves of the log`);
        }
        if (index === undefined || index >= size) refuse(`no leaf ${String(index)} in a tree of ${size}`);
        const i = index!;
        out.inclusion = {
          index: i,
          leaf: leaves[i]!.leaf,
          leafHash: leaves[i]!.hash,
          proof: inclusionProof(sha256, hashes.slice(0, size), i).map(hex),
        };
        out.treeSize = size;
        out.rootHash = store.rootAt(hashes, size);
      } else if ('consistency' in read) {
        const to = read.consistency.to ?? input.size;
        const from = read.consistency.from;
        if (to > input.size || from > to)
          refuse(`no consistency proof from ${from} to ${to} (the log has ${input.size})`);
        out.consistency = { from, to, proof: consistencyProof(sha256, hashes.slice(0, to), from).map(hex) };
        out.treeSize = to;
        out.rootHash = store.rootAt(hashes, to);
      } else {
        const { from, count } = read.leaves;
        out.leaves = leaves.slice(from, from + count).map((l) => ({ index: l.index, leaf: l.leaf, leafHash: l.hash }));
      }
      return out;
    },
  };
}

/** The log's activity interface (type only: the workflow proxies it). */
export type TransparencyActivities = ReturnType<typeof createTransparencyActivities>;
