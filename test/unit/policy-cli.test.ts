import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initKeys, loadPrivateKey } from '../../identity';
import { loadBundle } from '../../policies/bundle';
import { signBundleDir, SIGNATURE_FILE } from '../../policies/signing';
import { copyBundle, editBundleFile, policyCli, type PolicyCliRun } from '../harness/policy';

/**
 * The `governor policy` commands, run in-process through commander exactly as cli/cli.ts wires
 * them (a top-level `--json`, errors mapped to exit codes as `main` does).
 */

let home: string;
beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'governor-cli-home-'));
  await initKeys(home);
});

type Run = PolicyCliRun;

const governor = (args: string[], options: { home?: string } = {}): Promise<Run> =>
  policyCli(args, options.home ?? home);

const json = (r: Run) => JSON.parse(r.stdout) as Record<string, unknown>;

describe('governor policy check', () => {
  it('passes the default bundle with exit 0 and reports its digest', async () => {
    const dir = copyBundle();
    const r = await governor(['policy', 'check', dir, '--json']);
    expect(r.code).toBe(0);
    expect(json(r)).toEqual({ ok: true, dir, digest: loadBundle(dir).digest, issues: [] });
    const human = await governor(['policy', 'check', dir]);
    expect(human).toMatchObject({
      code: 0,
      stdout: expect.stringContaining(`ok: ${dir} (digest ${loadBundle(dir).digest}`),
    });
  });

  it('names file and line of a Cedar syntax error, exit 1', async () => {
    const dir = copyBundle();
    const line = editBundleFile(
      dir,
      'deployments.cedar',
      'resource == Environment::"prod")',
      'resource = Environment::"prod")',
    );
    const r = await governor(['policy', 'check', dir, '--json']);
    expect(r.code).toBe(1);
    const body = json(r) as { ok: boolean; issues: { file: string; line?: number; severity: string }[] };
    expect(body.ok).toBe(false);
    expect(body.issues).toContainEqual(expect.objectContaining({ severity: 'error', file: 'deployments.cedar', line }));
    const human = await governor(['policy', 'check', dir]);
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(new RegExp(`^deployments\\.cedar:${line}:\\d+: `, 'm'));
  });

  it('names file, line and policy of a schema violation (Cedar validator)', async () => {
    const dir = copyBundle();
    const line = editBundleFile(
      dir,
      'data.cedar',
      'when { context.rowCount > 10000 }',
      'when { context.rowcount > 10000 }',
    );
    const r = await governor(['policy', 'check', dir, '--json']);
    expect(r.code).toBe(1);
    expect((json(r) as { issues: unknown[] }).issues).toContainEqual(
      expect.objectContaining({
        file: 'data.cedar',
        line,
        policyId: 'data-export-bulk-requires-steward',
        message: expect.stringContaining('rowcount'),
      }),
    );
  });

  it('names the manifest field (zod), and the schema file and line', async () => {
    const dir = copyBundle();
    editBundleFile(dir, 'manifest.yaml', '    audience: temporal-governor\n', '');
    const schemaLine = editBundleFile(dir, 'schema.cedarschema', 'entity Account;', 'entity Account');
    const r = await governor(['policy', 'check', dir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('manifest.yaml: trustedIssuers.0.audience: Required');
    // Cedar reports the missing `;` at the next token, a line or two further down.
    const reported = Number(/^schema\.cedarschema:(\d+):/m.exec(r.stdout)?.[1]);
    expect(reported).toBeGreaterThanOrEqual(schemaLine);
    expect(reported).toBeLessThanOrEqual(schemaLine + 3);
  });

  it('refuses a directory that does not exist, exit 1', async () => {
    const r = await governor(['policy', 'check', join(tmpdir(), 'no-such-bundle-dir'), '--json']);
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({ ok: false, issues: [{ message: 'not a readable directory' }] });
  });

  it('checks the signature: required and missing or tampered → exit 1; present but tampered → warning', async () => {
    const dir = copyBundle();
    const unsigned = await governor(['policy', 'check', dir, '--require-signed', '--json']);
    expect(unsigned.code).toBe(1);
    expect(json(unsigned)).toMatchObject({
      ok: false,
      signature: { status: 'unsigned' },
      issues: [{ severity: 'error', file: SIGNATURE_FILE, message: expect.stringContaining('unsigned') }],
    });

    await signBundleDir(dir, await loadPrivateKey(home, 'policy-signing'));
    const signed = await governor(['policy', 'check', dir, '--require-signed', '--json']);
    expect(signed.code).toBe(0);
    expect(json(signed)).toMatchObject({ ok: true, signature: { status: 'valid' }, issues: [] });

    editBundleFile(dir, 'payments.cedar', 'context.amount > 10000', 'context.amount > 90000');
    const warned = await governor(['policy', 'check', dir, '--json']);
    expect(warned.code).toBe(0);
    expect(json(warned)).toMatchObject({
      ok: true,
      signature: { status: 'tampered' },
      issues: [{ severity: 'warning', file: SIGNATURE_FILE }],
    });
    const refused = await governor(['policy', 'check', dir, '--require-signed']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain('bundle.sig: tampered:');
  });

  it('uses a configured trusted JWKS file: a bundle signed by another key is untrusted', async () => {
    const otherHome = mkdtempSync(join(tmpdir(), 'governor-cli-other-'));
    await initKeys(otherHome, { names: ['policy-signing'] });
    const dir = copyBundle();
    await signBundleDir(dir, await loadPrivateKey(otherHome, 'policy-signing'));
    const r = await governor(['policy', 'check', dir, '--require-signed', '--json']);
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({ signature: { status: 'untrusted' } });
    const ok = await governor([
      'policy',
      'check',
      dir,
      '--require-signed',
      '--trusted-jwks',
      join(otherHome, 'keys', 'policy-signing.jwks.json'),
      '--json',
    ]);
    expect(ok.code).toBe(0);
  });
});

describe('governor policy test', () => {
  it('runs every case of the default bundle: all pass, every policy and decision path covered', async () => {
    const dir = copyBundle();
    const total = loadBundle(dir).tests.reduce((n, t) => n + t.cases.length, 0);
    expect(total).toBeGreaterThanOrEqual(39);
    const r = await governor(['policy', 'test', dir, '--json', '--require-coverage']);
    expect(r.code).toBe(0);
    const body = json(r) as {
      ok: boolean;
      passed: number;
      failed: number;
      coverage: { uncoveredPolicies: string[]; uncoveredPaths: string[]; paths: Record<string, number> };
    };
    expect(body).toMatchObject({ ok: true, passed: total, failed: 0 });
    expect(body.coverage.uncoveredPolicies).toEqual([]);
    expect(body.coverage.uncoveredPaths).toEqual([]);
    for (const path of [
      'invalid-request',
      'evaluation-error',
      'allow',
      'default-deny',
      'forbid',
      'escalate',
      'approval-cannot-help',
    ]) {
      expect(body.coverage.paths[path]).toBeGreaterThan(0);
    }
    const human = await governor(['policy', 'test', dir]);
    expect(human.stdout).toContain(`${total} passed, 0 failed`);
  });

  it('exits 2 on a failing case and explains the decision it got', async () => {
    const dir = copyBundle();
    editBundleFile(
      dir,
      'tests/payments.yaml',
      'expect: { effect: allow, determiningPolicies: [payment-permit] }',
      'expect: { effect: deny }',
    );
    const r = await governor(['policy', 'test', dir, '--json']);
    expect(r.code).toBe(2);
    const body = json(r) as {
      ok: boolean;
      passed: number;
      failed: number;
      results: { passed: boolean; name: string; failures: string[] }[];
    };
    expect(body.ok).toBe(false);
    expect(body.failed).toBe(1);
    expect(body.results.filter((x) => !x.passed)).toEqual([
      expect.objectContaining({ name: 'a small payment is allowed', failures: ['effect: expected deny, got allow'] }),
    ]);
    const human = await governor(['policy', 'test', dir]);
    expect(human.code).toBe(2);
    expect(human.stdout).toContain('FAIL tests/payments.yaml: a small payment is allowed');
    expect(human.stdout).toContain('  | allow');
    expect(human.stdout).toContain('  |   policy payment-permit');
  });

  it('exits 1 (bad input) when the bundle itself is invalid, naming the file', async () => {
    const dir = copyBundle();
    editBundleFile(
      dir,
      'tests/data.yaml',
      'determiningPolicies: [data-read-permit]',
      'determiningPolicies: [data-read-permitt]',
    );
    const r = await governor(['policy', 'test', dir, '--json']);
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({
      ok: false,
      issues: [
        expect.objectContaining({
          file: 'tests/data.yaml',
          field: expect.stringMatching(/^cases\.\d+\.expect\.determiningPolicies$/),
        }),
      ],
    });
  });

  it('with --require-coverage, exits 2 when a policy is exercised by no case', async () => {
    const dir = copyBundle();
    writeFileSync(
      join(dir, 'extra.cedar'),
      '@id("notify-pager-permit")\npermit (principal is Workload, action == Action::"notify", resource == Channel::"pager");\n',
    );
    const lenient = await governor(['policy', 'test', dir, '--json']);
    expect(lenient.code).toBe(0);
    const strict = await governor(['policy', 'test', dir, '--require-coverage']);
    expect(strict.code).toBe(2);
    expect(strict.stdout).toContain('not exercised by any case: policies notify-pager-permit');
  });
});

describe('governor policy sign', () => {
  it('writes bundle.sig with the policy-signing key of GOVERNOR_HOME; check --require-signed then passes', async () => {
    const dir = copyBundle();
    const r = await governor(['policy', 'sign', dir, '--json']);
    expect(r.code).toBe(0);
    const body = json(r) as { digest: string; kid: string; file: string };
    expect(body).toMatchObject({
      ok: true,
      digest: loadBundle(dir).digest,
      kid: (await loadPrivateKey(home, 'policy-signing')).kid,
      file: join(dir, SIGNATURE_FILE),
    });
    expect(readFileSync(body.file, 'utf8')).toMatch(/^[\w-]+\.\.[\w-]+\n$/);
    expect((await governor(['policy', 'check', dir, '--require-signed'])).code).toBe(0);
  });

  it('refuses an invalid bundle (exit 1, naming the file) and writes no signature', async () => {
    const dir = copyBundle();
    editBundleFile(dir, 'manifest.yaml', 'defaultDeadline: 30m', 'defaultDeadline: soon');
    const r = await governor(['policy', 'sign', dir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('manifest.yaml: approvals.defaultDeadline:');
    expect(existsSync(join(dir, SIGNATURE_FILE))).toBe(false);
  });

  it('exits 1 naming the key file when GOVERNOR_HOME has no policy-signing key', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'governor-cli-nokeys-'));
    const r = await governor(['policy', 'sign', copyBundle()], { home: empty });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('policy-signing.private.jwk.json is missing');
  });
});

describe('governor policy diff (input checks; the diff itself runs against the real server in test/integration)', () => {
  it('exits 1 on an invalid candidate before contacting Temporal', async () => {
    const dir = copyBundle();
    editBundleFile(dir, 'payments.cedar', '@id("payment-permit")', '');
    const r = await governor(['policy', 'diff', dir, '--json']);
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({ ok: false, issues: [expect.objectContaining({ file: 'payments.cedar' })] });
  });

  it('exits 1 on a bad --limit and 3 when Temporal cannot be reached', async () => {
    expect((await governor(['policy', 'diff', copyBundle(), '--limit', 'lots'])).code).toBe(1);
    const saved = process.env.TEMPORAL_ADDRESS;
    process.env.TEMPORAL_ADDRESS = '127.0.0.1:1';
    try {
      const r = await governor(['policy', 'diff', copyBundle()]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('cannot reach Temporal at 127.0.0.1:1');
    } finally {
      if (saved === undefined) delete process.env.TEMPORAL_ADDRESS;
      else process.env.TEMPORAL_ADDRESS = saved;
    }
  });
});
