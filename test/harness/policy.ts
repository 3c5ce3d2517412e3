import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerPolicyCommands } from '../../cli/commands/policy';
import { ErrorCode, isGovernorError } from '../../contracts/errors';

/** The shipped default bundle. */
export const DEFAULT_BUNDLE_DIR = join(__dirname, '..', '..', 'policies', 'default');

/** A fresh copy of the default bundle (or `from`) in a temp dir. */
export function copyBundle(from: string = DEFAULT_BUNDLE_DIR, prefix = 'governor-policy-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cpSync(from, dir, { recursive: true });
  return dir;
}

/** Replaces `from` (which must occur) in a bundle file; returns the 1-based line it was on. */
export function editBundleFile(dir: string, file: string, from: string, to: string): number {
  const path = join(dir, file);
  const text = readFileSync(path, 'utf8');
  const at = text.indexOf(from);
  if (at < 0) throw new Error(`test setup: "${from}" not in ${file}`);
  writeFileSync(path, text.slice(0, at) + to + text.slice(at + from.length));
  return text.slice(0, at).split('\n').length;
}

/** The manifest of generated test bundles (property tests): no real issuer or attester is ever contacted. */
export const GENERATED_MANIFEST = `
version: 1
name: generated
trustedIssuers: [{ issuer: https://issuer.test, audience: test, jwks: { file: keys/issuer.jwks.json } }]
trustedAttesters: [{ issuer: https://attester.test, jwks: { file: keys/attester.jwks.json } }]
approverRoles: { sre-lead: {}, dba: {}, finance-approver: {} }
approvals: { defaultQuorum: 1, defaultDeadline: 30m }
`;

/** A policy that freezes deployments to staging (not escalatable): added to a bundle to flip decisions. */
export const STAGING_FREEZE_POLICY = `
@id("deploy-staging-freeze")
@reason("release freeze: no deployments to staging")
forbid (principal, action == Action::"deploy", resource == Environment::"staging");
`;

/** Adds the staging freeze to the bundle in `dir` (as its own policy file). */
export function addStagingFreeze(dir: string): void {
  writeFileSync(join(dir, 'freeze.cedar'), STAGING_FREEZE_POLICY);
}

/** One in-process run of `governor policy …`. */
export interface PolicyCliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the `policy` commands in-process through commander exactly as cli/cli.ts wires them: a
 * top-level `--json`, and errors mapped to exit codes as its `main` does (3 for an unreachable
 * Temporal, 1 otherwise).
 */
export async function policyCli(args: string[], home: string): Promise<PolicyCliRun> {
  const program = new Command('governor')
    .option('--json')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  const out: string[] = [];
  let code = 0;
  registerPolicyCommands(program, {
    out: () => {
      const json = Boolean(program.opts().json);
      return {
        json,
        print: (human: string, data?: unknown) => out.push(json ? JSON.stringify(data ?? { message: human }) : human),
      };
    },
    setExit: (c) => {
      code = c;
    },
    home: () => home,
  });
  try {
    await program.parseAsync(['node', 'governor', ...args]);
    return { code, stdout: out.join('\n'), stderr: '' };
  } catch (err) {
    if (err instanceof CommanderError)
      return { code: err.exitCode === 0 ? 0 : 1, stdout: out.join('\n'), stderr: err.message };
    const unreachable = isGovernorError(err) && err.code === ErrorCode.TemporalUnreachable;
    return { code: unreachable ? 3 : 1, stdout: out.join('\n'), stderr: (err as Error).message };
  }
}
