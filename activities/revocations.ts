import { Client, WithStartWorkflowOperation, WorkflowNotFoundError } from '@temporalio/client';
import { revokeWorkloadUpdate } from '../contracts/messages';
import {
  MIGRATE_REVOCATIONS_SIGNAL,
  namespaceRevocationRegistryId,
  REVOCATION_REGISTRY_TYPE,
  REVOCATION_STATE_MEMO,
  RevocationListState,
  revocationLogName,
  revocationRegistryId,
  type RecoverRevocationsInput,
  type RecoverRevocationsResult,
  type RevocationListRef,
  type RevokeWorkloadInput,
  type SignedRevocation,
  type SignRevocationInput,
} from '../contracts/revocation';
import { loadPublicJwks } from '../identity';
import {
  RevocationLogFile,
  RevocationVerifier,
  logHead,
  mergeRevocations,
  verifyRevocationLog,
} from './revocation-log';

/**
 * The worker's side of the revocation registry: the trusted keys its entries are checked with, the
 * durable local copy of each registry's log, and recovery of a new registry run from every copy.
 */
export class RevocationStore {
  readonly verifier: RevocationVerifier;
  private readonly files = new Map<string, RevocationLogFile>();

  constructor(
    readonly client: Client,
    readonly home: string,
  ) {
    this.verifier = new RevocationVerifier(() => loadPublicJwks(home, 'receipt'));
  }

  /** The local log file of `registry` (`<home>/revocations/…jsonl`). */
  file(registry: string): RevocationLogFile {
    let f = this.files.get(registry);
    if (!f) {
      f = new RevocationLogFile(this.home, registry);
      this.files.set(registry, f);
    }
    return f;
  }

  /**
   * Rebuilds a registry's log for a new run, from every copy there is: the log carried across
   * continue-as-new, the memo of each earlier run of the registry's workflow id (terminated, timed
   * out, reset, failed or continued), and this worker's local log file. Only entries that verify
   * with the receipt keys count. The longest hash chain is kept; revocations found only elsewhere
   * (another branch after a reset, a legacy list) are signed anew at its end, so no source's
   * revocation is ever lost. Throws when a source cannot be read (the activity retries; the registry
   * stays `recovering` and `authorize` denies meanwhile).
   */
  async recover(
    input: RecoverRevocationsInput,
    sign: (next: SignRevocationInput) => Promise<SignedRevocation>,
  ): Promise<RecoverRevocationsResult> {
    const { registry, workflowId } = input;
    const sources: string[] = [];
    const candidates: { source: string; raw: unknown }[] = [];
    for (const raw of input.carried ?? []) candidates.push({ source: 'carried', raw });
    if (input.carried?.length) sources.push('carried');
    for (const runId of await this.previousRuns(workflowId, input.runId)) {
      const memo = (await this.client.workflow.getHandle(workflowId, runId).describe()).memo ?? {};
      const revoked = memo.revoked;
      if (typeof revoked !== 'object' || revoked === null) continue;
      const entries = Object.values(revoked as Record<string, unknown>);
      if (entries.length === 0) continue;
      sources.push(`run ${runId}`);
      for (const raw of entries) candidates.push({ source: runId, raw });
    }
    const fileEntries = this.file(registry).read();
    if (fileEntries.length > 0) sources.push('file');
    for (const raw of fileEntries) candidates.push({ source: 'file', raw });

    const verified: SignedRevocation[] = [];
    let rejected = 0;
    for (const c of candidates) {
      const r = await this.verifier.check(c.raw, registry);
      if (r.ok) verified.push(r.entry);
      else rejected++;
    }
    const { chain, missing } = mergeRevocations(verified);
    const revoked = new Set(chain.map((e) => e.workload));
    const toSign: RevokeWorkloadInput[] = [];
    for (const r of [...(input.legacy ?? []), ...missing]) {
      if (revoked.has(r.workload)) continue;
      revoked.add(r.workload);
      toSign.push(r);
    }
    const entries = [...chain];
    for (const r of toSign) {
      const { seq, head } = logHead(entries);
      entries.push(
        await sign({
          registry,
          seq: seq + 1,
          workload: r.workload,
          reason: r.reason,
          ...(r.by !== undefined ? { by: r.by } : {}),
          prevHash: head,
        }),
      );
    }
    this.file(registry).append(entries);
    return { entries, rejected, restored: toSign.length, sources };
  }

  /** Run ids of the registry's workflow id other than `current`, newest first (at most 50). */
  private async previousRuns(workflowId: string, current: string): Promise<string[]> {
    const runs: { runId: string; start: number }[] = [];
    const query = `WorkflowId = '${workflowId.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    for await (const wf of this.client.workflow.list({ query })) {
      if (wf.runId !== current) runs.push({ runId: wf.runId, start: wf.startTime.getTime() });
      if (runs.length >= 500) break;
    }
    return runs
      .sort((a, b) => b.start - a.start)
      .slice(0, 50)
      .map((r) => r.runId);
  }
}

/** What `authorize` learns from the registry: the verified list, or why there is none (then it denies). */
export type RevocationSnapshot =
  | { ok: true; revoked: Record<string, SignedRevocation>; ref: RevocationListRef }
  | { ok: false; reason: string; registry: string };

/** Options of the revocation cache. */
export interface RevocationCacheOptions {
  /** How long a verified list is reused (default 1000 ms; 0: read the registry on every decision). */
  ttlMs?: number;
  /** How long a decision waits for a registry that is starting or recovering before it denies (default 3000 ms). */
  readyWaitMs?: number;
  /** Clock (tests). */
  now?: () => number;
  /**
   * The worker's own task queue: the revocations of its per-queue registry (`governor-revocations:<queue>`,
   * before the namespace-wide one) are carried over into the namespace-wide registry.
   */
  legacyTaskQueue?: string;
}

type Read =
  { ok: true; snapshot: Extract<RevocationSnapshot, { ok: true }> } | { ok: false; reason: string; transient: boolean };

/**
 * Reads the revocation registry for `authorize`: its memo, through DescribeWorkflowExecution (a
 * server call that never waits for a worker), verified entry by entry with the receipt keys and
 * checked as one hash chain whose head the registry published. A verified list is reused for
 * `ttlMs`; a revocation reaches new chains within that time (running chains are also signalled
 * directly by `governor revoke`).
 *
 * Fail closed: when the list is not known — the registry is not running (it is started again, and
 * recovers its list), still recovering, unreachable, held by another workflow, or its list does not
 * verify — the snapshot says why and `authorize` denies. Every entry read is also appended to this
 * worker's local log file; if the registry ever lacks a revocation that file holds (a reset rolled it
 * back), the registry is told again and decisions deny until it has it.
 */
export class RevocationCache {
  /** The registry's workflow id. */
  readonly workflowId: string;
  /** The registry's log name (`<namespace>/<workflow id>`), which its entries carry. */
  readonly registry: string;
  private cached?: { at: number; snapshot: Extract<RevocationSnapshot, { ok: true }> };
  private inflight?: Promise<RevocationSnapshot>;
  private known?: Map<string, SignedRevocation>;
  private lastStart = 0;
  private restoring = false;
  private migrating?: string;
  private readonly ttlMs: number;
  private readonly readyWaitMs: number;
  private readonly now: () => number;

  private readonly legacy?: { workflowId: string; registry: string };

  /**
   * `taskQueue` is the queue the registry runs on: the control task queue (`GOVERNOR_CONTROL_TASK_QUEUE`),
   * polled by every governor worker; the registry is the namespace-wide one, so a revocation issued once
   * applies to the workers of every task queue.
   */
  constructor(
    readonly store: RevocationStore,
    private readonly taskQueue: string,
    options: RevocationCacheOptions = {},
  ) {
    this.workflowId = namespaceRevocationRegistryId(taskQueue);
    this.registry = revocationLogName(store.client.options.namespace, this.workflowId);
    if (options.legacyTaskQueue !== undefined) {
      const workflowId = revocationRegistryId(options.legacyTaskQueue);
      this.legacy = { workflowId, registry: revocationLogName(store.client.options.namespace, workflowId) };
    }
    this.ttlMs = options.ttlMs ?? 1000;
    this.readyWaitMs = options.readyWaitMs ?? 3000;
    this.now = options.now ?? Date.now;
  }

  /** The verified list, or why it is not known. Never throws. */
  async snapshot(): Promise<RevocationSnapshot> {
    if (this.cached && this.now() - this.cached.at < this.ttlMs) return this.cached.snapshot;
    this.inflight ??= this.read().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /**
   * Starts the registry when none runs, so it has recovered its list before the first decision asks:
   * called when a worker is created, before it polls. Without it, a burst of chains on a fresh
   * deployment queues the registry's first workflow task behind theirs, and their decisions deny
   * (list unavailable) until it has run.
   */
  async warm(): Promise<void> {
    await this.start();
  }

  /** Forgets the cached list (tests, and `governor revoke` in the same process). */
  invalidate(): void {
    this.cached = undefined;
  }

  private async read(): Promise<RevocationSnapshot> {
    const deadline = Date.now() + this.readyWaitMs;
    for (;;) {
      let r: Read;
      try {
        r = await this.readOnce();
      } catch (err) {
        r = {
          ok: false,
          reason: `the revocation registry cannot be read: ${oneLine((err as Error)?.message ?? String(err))}`,
          transient: true,
        };
      }
      if (r.ok) {
        this.cached = { at: this.now(), snapshot: r.snapshot };
        return r.snapshot;
      }
      if (!r.transient || Date.now() >= deadline) return { ok: false, reason: r.reason, registry: this.registry };
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  private async readOnce(): Promise<Read> {
    const handle = this.store.client.workflow.getHandle(this.workflowId);
    let description;
    try {
      description = await handle.describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        await this.start();
        return {
          ok: false,
          reason: 'the revocation registry is not running (a new registry run was started; it recovers the list)',
          transient: true,
        };
      }
      return {
        ok: false,
        reason: `the revocation registry is not reachable: ${oneLine((err as Error)?.message ?? String(err))}`,
        transient: true,
      };
    }
    // A closed run (whoever started it) is replaced by a registry run, which recovers the list.
    if (description.status.name !== 'RUNNING') {
      await this.start();
      return {
        ok: false,
        reason: `the revocation registry is not running (${description.status.name}; a new registry run was started; it recovers the list)`,
        transient: true,
      };
    }
    // A running squatter is never trusted nor removed here: decisions deny until an operator acts.
    if (description.type !== REVOCATION_REGISTRY_TYPE)
      return {
        ok: false,
        reason: `the revocation registry's id is held by a workflow of another type (${description.type})`,
        transient: false,
      };
    if (description.taskQueue !== this.taskQueue)
      return {
        ok: false,
        reason: "the revocation registry runs on another task queue than this worker's",
        transient: false,
      };
    const memo = description.memo ?? {};
    const state = RevocationListState.safeParse(memo[REVOCATION_STATE_MEMO]);
    if (!state.success) {
      if (memo.revoked !== undefined && this.migrating !== description.runId) {
        // A registry from before signed lists: ask it to continue as new (its next run signs the list).
        this.migrating = description.runId;
        await handle.signal(MIGRATE_REVOCATIONS_SIGNAL).catch(() => undefined);
      }
      return { ok: false, reason: 'the revocation registry has published no signed list yet', transient: true };
    }
    if (state.data.registry !== this.registry)
      return { ok: false, reason: 'the revocation registry publishes the list of another registry', transient: false };
    if (state.data.state !== 'ready')
      return { ok: false, reason: 'the revocation registry is recovering its list', transient: true };

    const revoked = memo.revoked;
    if (typeof revoked !== 'object' || revoked === null || Array.isArray(revoked))
      return { ok: false, reason: 'the revocation list is malformed', transient: false };
    const entries = Object.entries(revoked as Record<string, unknown>);
    const checked = await verifyRevocationLog(
      entries.map(([, e]) => e),
      this.registry,
      this.store.verifier,
    );
    if (!checked.ok)
      return { ok: false, reason: `the revocation list does not verify: ${checked.problem}`, transient: false };
    const { log } = checked;
    const { seq, head } = logHead(log);
    if (seq !== state.data.seq || head !== state.data.head)
      return {
        ok: false,
        reason: 'the revocation list does not match the head its registry published',
        transient: false,
      };
    const byWorkload: Record<string, SignedRevocation> = {};
    for (const e of log) byWorkload[e.workload] = e;
    if (entries.some(([k, e]) => byWorkload[k] !== undefined && (e as { workload?: unknown }).workload !== k))
      return { ok: false, reason: 'the revocation list files an entry under another workload', transient: false };

    // Everything this worker ever saw must still be in the list (revocations are never removed).
    const known = await this.knownEntries();
    const fresh = log.filter((e) => !known.has(e.hash));
    fresh.forEach((e) => known.set(e.hash, e));
    this.store.file(this.registry).append(fresh);
    const missing = new Map<string, SignedRevocation>();
    for (const e of known.values()) if (!byWorkload[e.workload] && !missing.has(e.workload)) missing.set(e.workload, e);
    if (missing.size > 0) {
      this.restore([...missing.values()]);
      return {
        ok: false,
        reason: `the revocation registry lacks ${missing.size} revocation(s) this worker holds (its list was reset or rolled back); restoring them`,
        transient: true,
      };
    }
    return { ok: true, snapshot: { ok: true, revoked: byWorkload, ref: { registry: this.registry, seq, head } } };
  }

  /**
   * Verified entries of this worker's local log file (read once), then every entry seen since. The first
   * time, also the revocations of this worker's per-queue registry (its local file and its workflow's
   * memo): the namespace-wide registry must hold them too, and decisions deny until it does (they are
   * revoked there again, like any revocation the registry lacks).
   */
  private async knownEntries(): Promise<Map<string, SignedRevocation>> {
    if (!this.known) {
      const known = new Map<string, SignedRevocation>();
      for (const raw of this.store.file(this.registry).read()) {
        const r = await this.store.verifier.check(raw, this.registry);
        if (r.ok) known.set(r.entry.hash, r.entry);
      }
      if (this.legacy) for (const e of await this.legacyEntries(this.legacy)) known.set(e.hash, e);
      this.known = known;
    }
    return this.known;
  }

  /**
   * The verified entries of a per-queue registry (its local log file and its workflow's memo). A running
   * one that still keeps an unsigned list (from before signed lists) is asked to migrate (its next run
   * signs the list it carries) and this throws until it has: decisions deny meanwhile. Throws too when its
   * workflow cannot be read or is recovering.
   */
  private async legacyEntries(legacy: { workflowId: string; registry: string }): Promise<SignedRevocation[]> {
    const raws: unknown[] = [...this.store.file(legacy.registry).read()];
    try {
      const handle = this.store.client.workflow.getHandle(legacy.workflowId);
      const d = await handle.describe();
      const memo = d.memo ?? {};
      const revoked = memo.revoked;
      const state = RevocationListState.safeParse(memo[REVOCATION_STATE_MEMO]);
      const listed = typeof revoked === 'object' && revoked !== null ? Object.values(revoked) : [];
      if (d.status.name === 'RUNNING' && d.type === REVOCATION_REGISTRY_TYPE) {
        // No signed state yet: a registry from before signed lists (asked to migrate), or a run (a
        // continue-as-new among them) whose first task has not published it yet. Either way, not yet.
        if (!state.success) {
          if (this.migrating !== d.runId) {
            this.migrating = d.runId;
            await handle.signal(MIGRATE_REVOCATIONS_SIGNAL).catch(() => undefined);
          }
          throw new Error(`the per-queue revocation registry ${legacy.workflowId} has not published a signed list yet`);
        }
        if (state.success && state.data.state !== 'ready')
          throw new Error(`the per-queue revocation registry ${legacy.workflowId} is recovering its list`);
      }
      raws.push(...listed);
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
    const entries: SignedRevocation[] = [];
    for (const raw of raws) {
      const r = await this.store.verifier.check(raw, legacy.registry);
      if (r.ok) entries.push(r.entry);
    }
    return entries;
  }

  /** Starts a registry run (no-op when one is running); at most once a second. Its first act is recovery. */
  private async start(): Promise<void> {
    if (Date.now() - this.lastStart < 1000) return;
    this.lastStart = Date.now();
    await this.store.client.workflow
      .start(REVOCATION_REGISTRY_TYPE, {
        workflowId: this.workflowId,
        taskQueue: this.taskQueue,
        args: [],
        workflowIdConflictPolicy: 'USE_EXISTING',
        staticSummary: 'Governor revocation registry',
      })
      .catch(() => undefined);
  }

  /** Revokes again, in the background, what the registry lost (same reason and author); one restore at a time. */
  private restore(entries: SignedRevocation[]): void {
    if (this.restoring) return;
    this.restoring = true;
    void (async () => {
      try {
        for (const e of entries) {
          const input: RevokeWorkloadInput = {
            workload: e.workload,
            reason: e.reason,
            ...(e.by !== undefined ? { by: e.by } : {}),
          };
          const startWorkflowOperation = new WithStartWorkflowOperation(REVOCATION_REGISTRY_TYPE, {
            workflowId: this.workflowId,
            taskQueue: this.taskQueue,
            args: [],
            workflowIdConflictPolicy: 'USE_EXISTING',
            staticSummary: 'Governor revocation registry',
          });
          await this.store.client.workflow.executeUpdateWithStart(revokeWorkloadUpdate, {
            args: [input],
            startWorkflowOperation,
          });
        }
      } catch {
        // The next read finds what is still missing and tries again.
      } finally {
        this.restoring = false;
      }
    })();
  }
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}
