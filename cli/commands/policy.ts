import path from 'node:path';
import { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { loadPrivateKey, keyPaths } from '../../identity';
import {
  analyseBundle,
  checkBundle,
  formatIssue,
  readBundleFiles,
  type BundleIssue,
  type LoadedBundle,
} from '../../policies/bundle';
import { explainDecision } from '../../policies/explain';
import { runPolicyTests } from '../../policies/policy-tests';
import {
  readBundleSignature,
  readTrustedKeys,
  checkBundleVersion,
  signBundleDir,
  SignatureStatus,
  verifyDigestSignature,
  type SignatureCheck,
} from '../../policies/signing';
import { loadCodec } from '../../runtime/codec';
import { connectClient, loadTemporalSettings } from '../../runtime/connection';
import { diffRecordedDecisions } from '../../audit/policy-diff';

/**
 * `governor policy check|test|sign|diff`. Exit codes (DESIGN §6):
 *
 *   check  0 no errors (warnings allowed) · 1 any error (bad input: the bundle)
 *   test   0 every case passed · 1 the bundle itself is invalid · 2 a case failed (a failed check,
 *          like a failed verification), or `--require-coverage` and a policy or path is uncovered
 *   sign   0 signed · 1 invalid bundle or missing key
 *   diff   0 the diff ran (flips are listed, not errors) · 2 with `--fail-on-flip` and a flip ·
 *          1 invalid candidate · 3 Temporal unreachable
 */

/** What the CLI passes to `registerPolicyCommands`. */
export interface PolicyCommandContext {
  out: () => { json: boolean; print(human: string, data?: unknown): void };
  setExit: (code: number) => void;
  /** GOVERNOR_HOME (keys). */
  home: () => string;
  /** The codec key file (`--codec-keys` / GOVERNOR_CODEC_KEYS) of encrypted histories, if any. */
  codecKeys?: () => string | undefined;
}

const Exit = { Ok: 0, BadInput: 1, Failed: 2 } as const;

/** Adds the `policy` command group to the program. */
export function registerPolicyCommands(program: Command, ctx: PolicyCommandContext): void {
  const policy = program
    .command('policy')
    .description('policy bundles: check, test, sign, diff against recorded decisions');

  policy
    .command('check <dir>')
    .description(
      'parse and validate the Cedar policies against the schema and the manifest against its schema; exit 1 on any error',
    )
    .option('--require-signed', 'also require a valid signature from a trusted policy-signing key')
    .option(
      '--trusted-jwks <file>',
      'trusted policy-signing JWKS (default <GOVERNOR_HOME>/keys/policy-signing.jwks.json)',
    )
    .action(async (dir: string, opts: { requireSigned?: boolean; trustedJwks?: string }) => {
      const o = ctx.out();
      const bundleDir = path.resolve(dir);
      const issues: BundleIssue[] = checkBundle(bundleDir);
      const errors = issues.filter((i) => i.severity === 'error');
      let digest: string | undefined;
      let signature: SignatureCheck | undefined;
      if (errors.length === 0) {
        const { bundle } = analyseBundle(readBundleFiles(bundleDir).files, bundleDir);
        digest = bundle?.digest;
        if (digest) {
          const found = await checkSignature(bundleDir, digest, ctx.home(), opts);
          signature = found.check;
          if (found.issue) issues.push(found.issue);
        }
      }
      const ok = !issues.some((i) => i.severity === 'error');
      const lines = issues.map(formatIssue);
      if (ok) lines.push(`ok: ${bundleDir} (digest ${digest}${signature ? `, signature ${signature.status}` : ''})`);
      else lines.push(`${issues.filter((i) => i.severity === 'error').length} error(s) in ${bundleDir}`);
      o.print(lines.join('\n'), {
        ok,
        dir: bundleDir,
        ...(digest ? { digest } : {}),
        ...(signature ? { signature } : {}),
        issues,
      });
      ctx.setExit(ok ? Exit.Ok : Exit.BadInput);
    });

  policy
    .command('test <dir>')
    .description("run the bundle's data-driven test cases (tests/*.yaml|json); exit 2 when a case fails")
    .option('--require-coverage', 'also fail (exit 2) when a policy or decision path is not exercised by any case')
    .action((dir: string, opts: { requireCoverage?: boolean }) => {
      const o = ctx.out();
      const bundle = loadForCommand(path.resolve(dir), o, ctx);
      if (!bundle) return;
      const report = runPolicyTests(bundle);
      const total = report.passed + report.failed;
      const uncovered = report.coverage.uncoveredPolicies.length + report.coverage.uncoveredPaths.length;
      const ok = report.failed === 0 && (!opts.requireCoverage || uncovered === 0);
      const lines: string[] = [];
      for (const r of report.results) {
        if (r.passed) continue;
        lines.push(
          `FAIL ${r.file}: ${r.name}`,
          ...r.failures.map((f) => `  ${f}`),
          ...explainDecision(r.decision).map((l) => `  | ${l}`),
        );
      }
      if (report.coverage.uncoveredPolicies.length > 0)
        lines.push(`not exercised by any case: policies ${report.coverage.uncoveredPolicies.join(', ')}`);
      if (report.coverage.uncoveredPaths.length > 0)
        lines.push(`not exercised by any case: decision paths ${report.coverage.uncoveredPaths.join(', ')}`);
      if (total === 0) lines.push('warning: the bundle has no test cases');
      lines.push(`${report.passed} passed, ${report.failed} failed (${total} cases, bundle ${bundle.digest})`);
      o.print(lines.join('\n'), {
        ok,
        digest: bundle.digest,
        passed: report.passed,
        failed: report.failed,
        results: report.results.map((r) => ({
          file: r.file,
          name: r.name,
          passed: r.passed,
          failures: r.failures,
          effect: r.decision.effect,
          path: r.path,
        })),
        coverage: report.coverage,
      });
      ctx.setExit(ok ? Exit.Ok : Exit.Failed);
    });

  policy
    .command('sign <dir>')
    .description(
      'sign the bundle digest with the policy-signing key of GOVERNOR_HOME; writes <dir>/bundle.sig (detached JWS)',
    )
    .option('--key <name>', 'key pair under <GOVERNOR_HOME>/keys', 'policy-signing')
    .option(
      '--bundle-version <n>',
      'release number signed with the digest (with the issue time): a fleet refuses any version older than its active one',
    )
    .action(async (dir: string, opts: { key: string; bundleVersion?: string }) => {
      const o = ctx.out();
      const bundleDir = path.resolve(dir);
      const version =
        opts.bundleVersion !== undefined
          ? checkBundleVersion(/^\d+$/.test(opts.bundleVersion) ? Number(opts.bundleVersion) : NaN, 'bundleVersion')
          : undefined;
      if (!loadForCommand(bundleDir, o, ctx)) return;
      const key = await loadPrivateKey(ctx.home(), opts.key);
      const signed = await signBundleDir(bundleDir, key, version !== undefined ? { version } : undefined);
      o.print(
        `signed ${bundleDir}: digest ${signed.digest}${version !== undefined ? `, version ${version}` : ''}, key ${signed.kid} → ${signed.file}`,
        {
          ok: true,
          digest: signed.digest,
          ...(version !== undefined ? { version } : {}),
          kid: signed.kid,
          file: signed.file,
        },
      );
      ctx.setExit(Exit.Ok);
    });

  policy
    .command('diff <candidate>')
    .description(
      're-evaluate the decisions recorded in past chains against a candidate bundle; list the ones that would flip',
    )
    .option(
      '--chain <id>',
      'only this chain (repeatable); reads its history directly',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--workload <sub>', 'only chains of this workload')
    .option('--query <visibility>', 'extra visibility query, e.g. "StartTime > \'2025-01-01T00:00:00Z\'"')
    .option('--limit <n>', 'at most n chains from visibility', '200')
    .option('--fail-on-flip', 'exit 2 when any decision would flip')
    .action(
      async (
        candidate: string,
        opts: { chain: string[]; workload?: string; query?: string; limit: string; failOnFlip?: boolean },
      ) => {
        const o = ctx.out();
        const limit = Number(opts.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 100_000)
          throw new GovernorError(
            ErrorCode.InvalidInput,
            '--limit: must be a whole number between 1 and 100000',
            '--limit',
          );
        const bundle = loadForCommand(path.resolve(candidate), o, ctx);
        if (!bundle) return;
        const settings = loadTemporalSettings();
        const connection = await connectClient(settings);
        try {
          const keyFile = ctx.codecKeys?.();
          const client = new Client({
            connection,
            namespace: settings.namespace,
            ...(keyFile ? { dataConverter: loadCodec(keyFile).dataConverter } : {}),
          });
          const report = await diffRecordedDecisions(client, bundle, {
            ...(opts.chain.length > 0 ? { chains: opts.chain } : {}),
            ...(opts.workload ? { workload: opts.workload } : {}),
            ...(opts.query ? { query: opts.query } : {}),
            limit,
          });
          const lines = report.flipped.map(
            (f) =>
              `${f.chainId} ${f.stepId}: ${f.recorded.effect} → ${f.candidate.effect}` +
              ` [${f.candidate.determiningPolicies.join(', ') || 'no determining policy'}]${f.candidate.reason ? ` ${f.candidate.reason}` : ''}`,
          );
          lines.push(
            `${report.flipped.length} of ${report.reEvaluated} re-evaluated decisions would flip (${report.chains} chains, ${report.skipped} decisions made before policy ran; candidate ${report.candidateDigest})`,
          );
          o.print(lines.join('\n'), { ok: true, ...report });
          ctx.setExit(opts.failOnFlip && report.flipped.length > 0 ? Exit.Failed : Exit.Ok);
        } finally {
          await connection.close();
        }
      },
    );
}

/** Loads a bundle for a command; on any error prints the issues (naming file, line, field) and sets exit 1. */
function loadForCommand(
  dir: string,
  o: ReturnType<PolicyCommandContext['out']>,
  ctx: PolicyCommandContext,
): LoadedBundle | undefined {
  const read = readBundleFiles(dir);
  const analysed = read.issues.length > 0 ? { issues: read.issues } : analyseBundle(read.files, dir);
  const errors = analysed.issues.filter((i) => i.severity === 'error');
  if (analysed.bundle && errors.length === 0) return analysed.bundle;
  o.print([...errors.map(formatIssue), `${errors.length} error(s) in ${dir}`].join('\n'), {
    ok: false,
    dir,
    issues: errors,
  });
  ctx.setExit(Exit.BadInput);
  return undefined;
}

/**
 * The signature status of a bundle for `check`: an issue when required and not valid (error), or
 * when present but not valid (warning). Unsigned and not required: nothing to report.
 */
async function checkSignature(
  dir: string,
  digest: string,
  home: string,
  opts: { requireSigned?: boolean; trustedJwks?: string },
): Promise<{ check?: SignatureCheck; issue?: BundleIssue }> {
  let text: string | undefined;
  try {
    text = readBundleSignature(dir);
  } catch (err) {
    return { issue: { severity: 'error', file: 'bundle.sig', message: (err as Error).message } };
  }
  if (text === undefined && !opts.requireSigned) return {};
  const severity = opts.requireSigned ? 'error' : 'warning';
  const file = opts.trustedJwks ? path.resolve(opts.trustedJwks) : keyPaths(home, 'policy-signing').jwksPath;
  let trusted;
  try {
    trusted = readTrustedKeys(file);
  } catch (err) {
    return { issue: { severity, file: 'bundle.sig', field: '--trusted-jwks', message: (err as Error).message } };
  }
  const check = await verifyDigestSignature(digest, text, trusted);
  if (check.status === SignatureStatus.Valid) return { check };
  return { check, issue: { severity, file: 'bundle.sig', message: `${check.status}: ${check.message}` } };
}
