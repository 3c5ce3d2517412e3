import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, GovernorError } from '../contracts/errors';

/**
 * The pinned Temporal CLI. v1.5.1 is the newest release the Go module proxy can build: v1.6.0+
 * replace `github.com/temporalio/cli/cliext` with a local directory, and the proxy serves no version
 * of that nested module, so no wrapper module can satisfy it (checked 2026-11-28 against v1.9.1).
 */
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal';
export const TEMPORAL_CLI_VERSION = 'v1.5.1';

/** Project root (two levels up from this file, in both `workers/` and `dist/workers/`). */
export function projectRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}

/** The git-ignored folder the pinned CLI is built into (`GOVERNOR_TOOLS_DIR` overrides `.tools/`). */
export function pinnedCliDir(root = projectRoot()): string {
  return path.join(process.env.GOVERNOR_TOOLS_DIR ?? path.join(root, '.tools'), `temporal-${TEMPORAL_CLI_VERSION}`);
}

function onPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, binary);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface ResolveOptions {
  /** Build the pinned version when no binary is found (default true). */
  build?: boolean;
  /** Progress messages (the build takes a few minutes on first use). */
  onProgress?: (message: string) => void;
}

/**
 * Finds the `temporal` binary: `TEMPORAL_CLI_PATH`, then `temporal` on PATH, then the pinned build
 * under `.tools/`, building it with the local Go toolchain when it is missing.
 */
export function resolveTemporalCli(options: ResolveOptions = {}): string {
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    if (!fs.existsSync(fromEnv)) {
      throw new GovernorError(
        ErrorCode.ToolchainMissing,
        `TEMPORAL_CLI_PATH names ${fromEnv}, which does not exist`,
        'TEMPORAL_CLI_PATH',
      );
    }
    return fromEnv;
  }
  const found = onPath('temporal');
  if (found) return found;

  const dir = pinnedCliDir();
  const pinned = path.join(dir, 'temporal');
  if (fs.existsSync(pinned)) return pinned;
  if (options.build === false) {
    throw new GovernorError(ErrorCode.ToolchainMissing, `no temporal binary at ${pinned}`, 'TEMPORAL_CLI_PATH');
  }
  return buildPinnedCli(dir, options.onProgress);
}

/** Builds the pinned CLI into `dir` with `go install` (CGO off: its SQLite driver is pure Go). */
export function buildPinnedCli(dir: string, onProgress?: (message: string) => void): string {
  const go = onPath('go');
  if (!go) {
    throw new GovernorError(
      ErrorCode.ToolchainMissing,
      'no Temporal CLI found (TEMPORAL_CLI_PATH unset, `temporal` not on PATH, no pinned build in .tools/) ' +
        'and no Go toolchain to build one: install Go >= 1.25 or set TEMPORAL_CLI_PATH',
      'go',
    );
  }
  fs.mkdirSync(dir, { recursive: true });
  const staging = path.join(dir, 'staging');
  onProgress?.(`building Temporal CLI ${TEMPORAL_CLI_VERSION} with ${go} (first run only, a few minutes)…`);
  const result = spawnSync(go, ['install', `${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION}`], {
    // Build output is progress, like onProgress: on stderr, so a caller's stdout (bench --json) stays its own.
    stdio: ['ignore', 2, 'inherit'],
    env: { ...process.env, GOBIN: staging, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' },
  });
  const built = path.join(staging, 'temporal');
  if (result.status !== 0 || !fs.existsSync(built)) {
    throw new GovernorError(
      ErrorCode.ToolchainMissing,
      `building the Temporal CLI failed (go install exit ${result.status ?? result.signal}); see the output above`,
      'go',
    );
  }
  const target = path.join(dir, 'temporal');
  fs.renameSync(built, target); // atomic: a half-built binary is never picked up
  fs.rmSync(staging, { recursive: true, force: true });
  onProgress?.(`Temporal CLI ${TEMPORAL_CLI_VERSION} built at ${target}`);
  return target;
}
