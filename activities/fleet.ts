import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import type { JSONWebKeySet } from 'jose';
import {
  FLEET_MEMO,
  fleetRegistryId,
  FLEET_REGISTRY_TYPE,
  FleetActivation,
  GOVERNOR_CONTROL_TASK_QUEUE,
  FleetMemo,
  fleetHeartbeatSignal,
  type RecoverFleetInput,
  type RecoverFleetResult,
  type VerifyFleetActivationInput,
  type VerifyFleetActivationResult,
  type WorkerHeartbeat,
} from '../contracts/fleet';
import { SignatureStatus, verifyDigestSignature } from '../policies/signing';
import type { ActiveBundle, PolicyStore } from './policy-store';

/*
 * The worker's side of the fleet (DESIGN §11, contracts/fleet.ts): the activities of the fleet registry
 * (verify an activation, recover the active bundle of a new run), the periodic heartbeat, and the check
 * every decision makes: a worker whose bundle is not the fleet's declared active bundle refuses to decide.
 */

/**
 * Checks a fleet statement (a bundle digest and its `bundle.sig`) against the trusted policy-signing
 * keys: valid, from a trusted key, over exactly this digest, and versioned (signature format 2).
 */
export async function verifyFleetStatement(
  trusted: JSONWebKeySet | undefined,
  input: VerifyFleetActivationInput,
): Promise<VerifyFleetActivationResult> {
  if (!trusted) return { ok: false, reason: 'no trusted policy-signing keys are configured to verify it' };
  const check = await verifyDigestSignature(input.digest, input.signature, trusted);
  if (check.status !== SignatureStatus.Valid)
    return { ok: false, reason: `bundle ${input.digest} is not validly signed (${check.status}: ${check.message})` };
  if (check.version === undefined || check.issuedAt === undefined)
    return {
      ok: false,
      reason: `bundle ${input.digest} is signed without a version: sign it with \`governor policy sign --bundle-version <n>\``,
    };
  return {
    ok: true,
    digest: input.digest,
    version: check.version,
    issuedAt: check.issuedAt,
    kid: check.kid!,
    verifiedAt: new Date().toISOString(),
  };
}

/** The fleet registry's activities (run by whichever governor worker hosts the registry). */
export function createFleetActivities(deps: { policies: PolicyStore }) {
  const trusted = (): JSONWebKeySet | undefined => {
    try {
      return deps.policies.trustedKeys();
    } catch {
      return undefined;
    }
  };
  return {
    /** Verifies an activation's signature with this worker's trusted policy-signing keys (never throws for a bad one). */
    async verifyFleetActivation(input: VerifyFleetActivationInput): Promise<VerifyFleetActivationResult> {
      return verifyFleetStatement(trusted(), input);
    },

    /**
     * The active bundle a new registry run starts from: the newest validly signed statement among what
     * its previous run carried and the memo of every earlier run of the registry (at most 50, newest
     * first). Throws when a run cannot be read (the activity retries; the registry stays `recovering`).
     */
    async recoverFleet(input: RecoverFleetInput): Promise<RecoverFleetResult> {
      const client = Context.current().client;
      const candidates: unknown[] = input.carried ? [input.carried] : [];
      const query = `WorkflowId = '${input.workflowId.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
      const runs: { runId: string; start: number }[] = [];
      for await (const wf of client.workflow.list({ query })) {
        if (wf.runId !== input.runId) runs.push({ runId: wf.runId, start: wf.startTime.getTime() });
        if (runs.length >= 500) break;
      }
      runs.sort((a, b) => b.start - a.start);
      for (const run of runs.slice(0, 50)) {
        const memo = (await client.workflow.getHandle(input.workflowId, run.runId).describe()).memo ?? {};
        const published = FleetMemo.safeParse(memo[FLEET_MEMO]);
        if (published.success && published.data.active) candidates.push(published.data.active);
      }
      const keys = trusted();
      let best: FleetActivation | undefined;
      let rejected = 0;
      for (const raw of candidates) {
        const statement = FleetActivation.safeParse(raw);
        if (!statement.success) {
          rejected++;
          continue;
        }
        const v = await verifyFleetStatement(keys, statement.data);
        // The version and issue time are taken from the verified signature, never from the record.
        if (!v.ok || v.version !== statement.data.version || v.issuedAt !== statement.data.issuedAt) {
          rejected++;
          continue;
        }
        if (!best || statement.data.version > best.version) best = statement.data;
      }
      return { ...(best ? { active: best } : {}), rejected };
    },
  };
}

/** Outcome of the fleet check of a decision. */
export type FleetVerdict = { ok: true; active?: FleetActivation } | { ok: false; reason: string };

/** Options of a fleet member. */
export interface FleetMemberOptions {
  /** How often the worker reports to the registry (default 5000 ms). */
  heartbeatIntervalMs?: number;
  /** How long the declared active bundle read from the registry is reused (default 2000 ms). */
  ttlMs?: number;
  /** How long a decision waits for a recovering registry before it is denied (default 5 s). */
  recoveryWaitMs?: number;
  /** The build the worker runs (default GOVERNOR_BUILD_ID, else the package version). */
  buildId?: string;
  /** Task queue the registry runs on when this worker starts it (default `GOVERNOR_CONTROL_TASK_QUEUE`). */
  controlTaskQueue?: string;
}

type Read =
  { ok: true; active?: FleetActivation; recovering?: boolean } | { ok: false; reason: string; recovering?: true };

/**
 * One governor worker as a member of its namespace's fleet: it reports its identity and the bundle it
 * enforces (heartbeat signal-with-start, from the worker process, never from a workflow), and checks each
 * decision against the fleet's declared active bundle, read from the registry's memo
 * (DescribeWorkflowExecution: a server call that never waits for a worker) and verified here with this
 * worker's own trusted policy-signing keys.
 *
 * Fail closed: once a fleet has declared an active bundle, a worker that cannot read or verify it
 * refuses to decide. A registry that was never started, or never declared one, changes nothing.
 */
export class FleetMember {
  readonly identity: Omit<WorkerHeartbeat, 'digest' | 'version' | 'bundleName' | 'signature' | 'sentAt'>;
  private cached?: { at: number; read: Read };
  private inflight?: Promise<Read>;
  /** The newest declaration this worker verified: never forgotten, never rolled back. */
  private known?: FleetActivation;
  private verified = new Map<string, boolean>();
  private lastStart = 0;
  private timer?: NodeJS.Timeout;
  private readonly ttlMs: number;
  private readonly recoveryWaitMs: number;
  private readonly controlTaskQueue: string;
  /** The fleet registry's workflow id (`fleetRegistryId` of the control task queue). */
  readonly registryId: string;
  readonly heartbeatIntervalMs: number;

  constructor(
    readonly client: Client,
    readonly policies: PolicyStore,
    readonly taskQueue: string,
    options: FleetMemberOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 2000;
    this.recoveryWaitMs = options.recoveryWaitMs ?? 5000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 5000;
    this.controlTaskQueue = options.controlTaskQueue ?? GOVERNOR_CONTROL_TASK_QUEUE;
    this.registryId = fleetRegistryId(this.controlTaskQueue);
    const host = os.hostname().slice(0, 100) || 'unknown';
    this.identity = {
      workerId: `${host}:${process.pid}:${taskQueue.slice(0, 60)}:${randomBytes(3).toString('hex')}`,
      host,
      pid: process.pid,
      taskQueue,
      buildId: (options.buildId ?? process.env.GOVERNOR_BUILD_ID ?? packageVersion()).slice(0, 200) || 'unknown',
      startedAt: new Date().toISOString(),
    };
  }

  /** The report this worker sends now. */
  heartbeat(): WorkerHeartbeat {
    const active = this.policies.current();
    return {
      ...this.identity,
      sentAt: new Date().toISOString(),
      ...(active
        ? {
            digest: active.bundle.digest,
            bundleName: active.bundle.manifest.name.slice(0, 200),
            ...(active.signature?.version !== undefined ? { version: active.signature.version } : {}),
            ...(active.signature ? { signature: active.signature.status } : {}),
          }
        : {}),
    };
  }

  /** Sends one heartbeat (starting the registry on this worker's task queue when none runs). */
  async report(): Promise<void> {
    await this.client.workflow.signalWithStart(FLEET_REGISTRY_TYPE, {
      workflowId: this.registryId,
      taskQueue: this.controlTaskQueue,
      args: [],
      signal: fleetHeartbeatSignal,
      signalArgs: [this.heartbeat()],
      staticSummary: 'Governor fleet registry',
    });
  }

  /** Reports now and every `heartbeatIntervalMs` until `shouldStop` says so (errors are retried at the next beat). */
  start(shouldStop: () => boolean, onError?: (err: unknown) => void): Promise<void> {
    const beat = async (): Promise<void> => {
      if (shouldStop()) return this.stop();
      await this.report().catch((err: unknown) => onError?.(err));
    };
    this.timer = setInterval(() => void beat(), this.heartbeatIntervalMs);
    this.timer.unref();
    return beat();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Forgets the cached declaration (tests; the next check reads the registry). */
  invalidate(): void {
    this.cached = undefined;
  }

  /**
   * Whether `active` (the bundle a decision is about to use) may decide: yes when no fleet declared an
   * active bundle or it is this very digest; otherwise the reason to deny, naming both digests. Never throws.
   */
  async check(active: ActiveBundle | undefined): Promise<FleetVerdict> {
    const read = await this.read();
    if (!read.ok) return read;
    const declared = read.active;
    if (!declared) return { ok: true };
    if (!active) return { ok: false, reason: 'no valid policy bundle is loaded' };
    if (active.bundle.digest !== declared.digest) {
      const mine = active.signature?.version !== undefined ? `version ${active.signature.version}` : 'unversioned';
      return {
        ok: false,
        reason:
          `policy bundle divergence: this worker enforces bundle ${active.bundle.digest} (${mine}) but the fleet's active bundle is ` +
          `${declared.digest} (version ${declared.version}${declared.by ? `, activated by ${declared.by}` : ''} at ${declared.at}); ` +
          'it refuses to decide until it loads the active bundle',
      };
    }
    return { ok: true, active: declared };
  }

  private async read(): Promise<Read> {
    if (this.cached && Date.now() - this.cached.at < this.ttlMs) return this.cached.read;
    this.inflight ??= this.readSettled()
      .then((read) => {
        this.cached = { at: Date.now(), read };
        return read;
      })
      // Denied (fail closed), but not cached: the next decision reads again rather than reusing an error.
      .catch((err: unknown): Read =>
        this.unknown(`cannot be read (${oneLine((err as Error)?.message ?? String(err))})`),
      )
      .finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /**
   * Reads the registry; while a new registry run is still recovering its active bundle (right after the
   * first worker of a fleet starts it, or after it was terminated), or while the server cannot answer
   * (a restarting database briefly says "namespace not found"), reads again for up to `recoveryWaitMs`
   * before the answer stands (a deny: fail closed), so decisions are not refused for a few seconds'
   * recovery.
   */
  private async readSettled(): Promise<Read> {
    const deadline = Date.now() + this.recoveryWaitMs;
    for (;;) {
      try {
        const read = await this.readOnce();
        if (read.ok || !read.recovering || Date.now() >= deadline) return read;
      } catch (err) {
        if (Date.now() >= deadline) throw err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The registry could not say: deny (fail closed). */
  private unknown(why: string): Read {
    return { ok: false, reason: `the fleet's active policy bundle is unknown: the fleet registry ${why}` };
  }

  private async readOnce(): Promise<Read> {
    let description;
    try {
      description = await this.client.workflow.getHandle(this.registryId).describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        this.startRegistry();
        // Never started: no fleet was ever declared (unless this worker saw one: then it is missing).
        return this.known ? this.unknown('is missing (it is started again and recovers)') : { ok: true };
      }
      throw err;
    }
    if (description.type !== FLEET_REGISTRY_TYPE)
      return this.unknown(`id is held by a workflow of another type (${description.type})`);
    // A closed run (terminated, failed) still tells what it had declared; a new run is started and recovers it.
    if (description.status.name !== 'RUNNING') this.startRegistry();
    const raw = (description.memo ?? {})[FLEET_MEMO];
    if (raw === undefined) {
      // A run that has not run its first task yet: the newest declaration this worker knows, if any.
      return this.known ? this.checked(this.known) : { ok: true };
    }
    const memo = FleetMemo.safeParse(raw);
    if (!memo.success) return this.unknown('publishes a malformed state');
    if (!memo.data.active) {
      if (this.known) return this.checked(this.known); // recovering (or rolled back): keep the newest known
      return memo.data.state === 'ready'
        ? { ok: true }
        : { ...this.unknown('is recovering its active bundle'), recovering: true as const };
    }
    return this.checked(memo.data.active);
  }

  /** Verifies a declaration with this worker's keys, refuses one older than the newest it saw, remembers it. */
  private async checked(statement: FleetActivation): Promise<Read> {
    if (this.known && statement.version < this.known.version) {
      return this.unknown(
        `declares version ${statement.version}, older than version ${this.known.version} this worker saw declared (rollback refused)`,
      );
    }
    const key = `${statement.digest}|${statement.version}|${statement.issuedAt}|${statement.signature}`;
    let valid = this.verified.get(key);
    if (valid === undefined) {
      let trusted: JSONWebKeySet | undefined;
      try {
        trusted = this.policies.trustedKeys();
      } catch {
        trusted = undefined;
      }
      const v = await verifyFleetStatement(trusted, statement);
      valid = v.ok && v.version === statement.version && v.issuedAt === statement.issuedAt;
      if (!v.ok) {
        if (this.verified.size > 100) this.verified.clear();
        this.verified.set(key, false);
        return this.unknown(`declares an active bundle this worker cannot verify: ${v.reason}`);
      }
      this.verified.set(key, valid);
    }
    if (!valid) return this.unknown('declares an active bundle whose version does not match its signature');
    this.known = statement;
    this.policies.raiseVersionFloor(statement.version, `the fleet's active bundle ${statement.digest}`);
    return { ok: true, active: statement };
  }

  private startRegistry(): void {
    if (Date.now() - this.lastStart < 1000) return;
    this.lastStart = Date.now();
    void this.report().catch(() => undefined);
  }
}

function packageVersion(): string {
  // From the source tree (`activities/`) or the build (`dist/activities/`).
  for (const file of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(__dirname, file), 'utf8')) as { name?: string; version?: string };
      if (pkg.version) return `${pkg.name ?? 'governor'}@${pkg.version}`;
    } catch {
      // next
    }
  }
  return 'unknown';
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}
