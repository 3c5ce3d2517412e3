import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { PolicyStore } from '../activities/policy-store';
import { bundleDigest, readBundleFiles } from '../policies/bundle';
import { sha256Hex } from '../core/canonical';
import { readBundleSignature } from '../policies/signing';

/**
 * Live rollout: watches a bundle directory and activates a new bundle without a restart.
 *
 * Changes are noticed by `fs.watch` (debounced, so a multi-file copy is read once it settles) and by
 * polling (a backstop for file systems and directory swaps that `fs.watch` misses, e.g. a replaced
 * directory or a Kubernetes ConfigMap symlink flip). A candidate is read once, checked, signature-
 * checked when the store requires it, archived and only then activated; anything else is rejected
 * with a log line and the current bundle stays active. A rejected state is logged once, not on every poll.
 */

/** The slice of a logger the watcher needs (pino's `(object, message)` signature). */
export interface WatchLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Options of `watchPolicyBundle`. */
export interface PolicyWatchOptions {
  dir: string;
  store: PolicyStore;
  /** `active` (default) activates changes; `shadow` replaces the shadow candidate. */
  role?: 'active' | 'shadow';
  /** Quiet time after the last file event before the directory is read (default 300 ms). */
  debounceMs?: number;
  /** Poll interval (default 2000 ms); 0 disables polling (fs.watch only). */
  pollIntervalMs?: number;
  logger?: WatchLogger;
  /** Checked on every poll: when it returns true the watcher closes itself (e.g. the worker stopped). */
  shouldStop?: () => boolean;
  /**
   * `bundleFingerprint(dir)` taken before the current bundle was loaded from `dir`, so a change made
   * while it loaded is still picked up. Default: the fingerprint when the watcher starts.
   */
  since?: string;
}

/** What one check of the directory did. */
export type WatchOutcome =
  | { kind: 'unchanged' }
  | { kind: 'activated'; digest: string; previous?: string }
  | { kind: 'rejected'; reason: string };

/** A running watcher. */
export interface PolicyWatcher {
  /** Reads the directory now (serialised with other checks) and reports what happened. */
  check(): Promise<WatchOutcome>;
  close(): void;
  readonly closed: boolean;
}

/** Starts watching `dir`; the first check is not run here (the bundle was activated at start-up). */
export function watchPolicyBundle(options: PolicyWatchOptions): PolicyWatcher {
  const dir = path.resolve(options.dir);
  const role = options.role ?? 'active';
  const debounceMs = options.debounceMs ?? 300;
  const pollIntervalMs = options.pollIntervalMs ?? 2000;
  const log = options.logger;
  let closed = false;
  let debounce: NodeJS.Timeout | undefined;
  let poller: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  // The fingerprint of the last state acted on (activated or rejected): unchanged → nothing to do.
  let seen = options.since ?? bundleFingerprint(dir);
  let running: Promise<WatchOutcome> | undefined;
  let again = false;

  const currentDigest = (): string | undefined =>
    role === 'active' ? options.store.current()?.bundle.digest : options.store.shadow()?.bundle.digest;

  const checkOnce = async (): Promise<WatchOutcome> => {
    const print = bundleFingerprint(dir);
    if (print === seen) return { kind: 'unchanged' };
    seen = print;
    const previous = currentDigest();
    try {
      if (role === 'active') {
        const next = await options.store.activateFrom(dir);
        if (next.bundle.digest === previous) return { kind: 'unchanged' };
        log?.info(
          {
            dir,
            digest: next.bundle.digest,
            previous,
            bundle: next.bundle.manifest.name,
            signature: next.signature?.status,
          },
          'policy bundle activated (live rollout)',
        );
        return { kind: 'activated', digest: next.bundle.digest, ...(previous ? { previous } : {}) };
      }
      const next = options.store.setShadowDir(dir)!;
      if (next.bundle.digest === previous) return { kind: 'unchanged' };
      log?.info({ dir, digest: next.bundle.digest, previous }, 'shadow policy bundle replaced');
      return { kind: 'activated', digest: next.bundle.digest, ...(previous ? { previous } : {}) };
    } catch (err) {
      const reason = (err as Error).message;
      log?.error(
        { dir, active: previous, reason },
        `new ${role === 'active' ? 'policy' : 'shadow policy'} bundle rejected; the current one stays ${role}`,
      );
      return { kind: 'rejected', reason };
    }
  };

  const check = (): Promise<WatchOutcome> => {
    if (running) {
      again = true;
      return running;
    }
    running = checkOnce().finally(() => {
      running = undefined;
      if (again && !closed) {
        again = false;
        void check();
      }
    });
    return running;
  };

  const schedule = (): void => {
    if (closed) return;
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = undefined;
      void check();
    }, debounceMs);
    debounce.unref();
  };

  const close = (): void => {
    if (closed) return;
    closed = true;
    if (debounce) clearTimeout(debounce);
    if (poller) clearInterval(poller);
    watcher?.close();
  };

  try {
    watcher = watch(dir, { persistent: false }, () => schedule());
    watcher.on('error', (err) => {
      // The directory went away (or was swapped): polling carries on and notices the new one.
      log?.warn({ dir, reason: err.message }, 'policy bundle directory watch lost; relying on polling');
      watcher?.close();
      watcher = undefined;
    });
  } catch (err) {
    log?.warn({ dir, reason: (err as Error).message }, 'cannot watch the policy bundle directory; relying on polling');
  }
  if (pollIntervalMs > 0) {
    poller = setInterval(() => {
      if (options.shouldStop?.()) {
        close();
        return;
      }
      void check();
    }, pollIntervalMs);
    poller.unref();
  }

  return {
    check,
    close,
    get closed() {
      return closed;
    },
  };
}

/**
 * A cheap fingerprint of what could change the bundle: the digest of the covered files plus the
 * signature text. Read errors are part of the state (so a vanished directory is noticed once).
 */
export function bundleFingerprint(dir: string): string {
  const read = readBundleFiles(dir);
  let signature: string;
  try {
    signature = readBundleSignature(dir) ?? '';
  } catch (err) {
    signature = `error:${(err as Error).message}`;
  }
  const issues = read.issues.map((i) => `${i.file}:${i.message}`).join('\n');
  return sha256Hex(`${bundleDigest(read.files)}\n${signature}\n${issues}`);
}
