import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { loadBundle, type LoadedBundle } from './bundle';
import { SIGNATURE_FILE } from './signing';

/**
 * The bundle archive: every bundle a worker ever activated, kept by digest under
 * `<GOVERNOR_HOME>/bundles/<digest>/` (the digest-covered files, plus `bundle.sig` when it was
 * signed), so a recorded decision can be re-evaluated against exactly the bundle that made it.
 *
 * An archived bundle is re-checked when it is loaded: a directory whose content no longer hashes to
 * its name is refused. Workers on several hosts should share the archive directory (or ship the
 * same bundles) so any of them can re-evaluate any decision.
 */

/** The archive root: `<home>/bundles`. */
export function bundleArchiveDir(home: string): string {
  return join(home, 'bundles');
}

const DIGEST = /^[0-9a-f]{64}$/;

function assertDigest(digest: string): void {
  // The digest becomes a path segment: exactly 64 lowercase hex characters, nothing else.
  if (typeof digest !== 'string' || !DIGEST.test(digest)) {
    throw new GovernorError(ErrorCode.InvalidInput, 'digest: must be 64 lowercase hex characters', 'digest');
  }
}

/**
 * Archives a bundle under its digest (idempotent: an existing archive entry is kept). Written to a
 * temp directory and renamed, so a reader never sees a half-written bundle. Returns the directory.
 */
export function archiveBundle(home: string, bundle: LoadedBundle, signature?: string): string {
  assertDigest(bundle.digest);
  const root = bundleArchiveDir(home);
  const target = join(root, bundle.digest);
  if (existsSync(target)) {
    // Archived unsigned earlier and signed since: keep the signature too (it signs the same digest).
    const sig = join(target, SIGNATURE_FILE);
    if (signature !== undefined && !existsSync(sig)) writeFileSync(sig, signature, { mode: 0o644 });
    return target;
  }
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const tmp = join(root, `.tmp-${bundle.digest.slice(0, 12)}-${randomBytes(6).toString('hex')}`);
  try {
    for (const file of bundle.files) {
      const path = join(tmp, ...file.path.split('/'));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, file.content, { mode: 0o644 });
    }
    if (signature !== undefined) writeFileSync(join(tmp, SIGNATURE_FILE), signature, { mode: 0o644 });
    try {
      renameSync(tmp, target);
    } catch (err) {
      // Another worker sharing the home archived the same digest first: same content by construction.
      const code = (err as NodeJS.ErrnoException).code;
      if (!((code === 'ENOTEMPTY' || code === 'EEXIST') && existsSync(target))) throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return target;
}

/**
 * Loads the archived bundle with this digest. Throws NotFound when it was never archived here, and
 * PolicyError when the archived files no longer hash to the digest (corrupted or edited).
 */
export function loadArchivedBundle(home: string, digest: string): LoadedBundle {
  assertDigest(digest);
  const dir = join(bundleArchiveDir(home), digest);
  if (!existsSync(dir)) {
    throw new GovernorError(
      ErrorCode.NotFound,
      `policy bundle ${digest} is not in the archive ${bundleArchiveDir(home)}`,
      'digest',
    );
  }
  const bundle = loadBundle(dir);
  if (bundle.digest !== digest) {
    throw new GovernorError(
      ErrorCode.PolicyError,
      `archived policy bundle ${digest} is corrupted: its content hashes to ${bundle.digest}`,
      'digest',
    );
  }
  return bundle;
}

/** Digests of every archived bundle, sorted. */
export function archivedDigests(home: string): string[] {
  const root = bundleArchiveDir(home);
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((name) => DIGEST.test(name))
    .sort();
}
