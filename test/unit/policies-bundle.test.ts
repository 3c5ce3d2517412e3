import { cpSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, isGovernorError } from '../../contracts/errors';
import {
  bundleDigest,
  checkBundle,
  formatIssue,
  loadBundle,
  loadBundleFromFiles,
  readBundleFiles,
  type BundleFile,
  type BundleIssue,
} from '../../policies/bundle';

const DEFAULT_DIR = join(__dirname, '../../policies/default');
const ERRORING_DIR = join(__dirname, '../fixtures/bundles/erroring');

const tmpDirs: string[] = [];
afterAll(() => tmpDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A fresh copy of the default bundle in a temp dir. */
function copyDefault(): string {
  const dir = mkdtempSync(join(tmpdir(), 'governor-bundle-'));
  tmpDirs.push(dir);
  cpSync(DEFAULT_DIR, dir, { recursive: true });
  return dir;
}

/** Replaces `from` (which must occur) in a bundle file; returns the 1-based line it was on. */
function edit(dir: string, file: string, from: string, to: string): number {
  const path = join(dir, file);
  const text = readFileSync(path, 'utf8');
  const at = text.indexOf(from);
  if (at < 0) throw new Error(`test setup: "${from}" not in ${file}`);
  writeFileSync(path, text.slice(0, at) + to + text.slice(at + from.length));
  return text.slice(0, at).split('\n').length;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

const errorsOf = (issues: BundleIssue[]) => issues.filter((i) => i.severity === 'error');

describe('loading the default bundle', () => {
  const bundle = loadBundle(DEFAULT_DIR);

  it('has no issues at all', () => {
    expect(checkBundle(DEFAULT_DIR)).toEqual([]);
    expect(checkBundle(ERRORING_DIR)).toEqual([]);
  });

  it('reads policies in file order with their @id, file, line and escalation', () => {
    expect(bundle.policies.map((p) => `${p.file}:${p.line} ${p.id}`)).toEqual([
      'baseline.cedar:6 baseline-untrusted-zone-forbid',
      'data.cedar:3 data-read-permit',
      'data.cedar:6 data-export-permit',
      'data.cedar:10 data-export-bulk-requires-steward',
      'databases.cedar:3 db-migrate-permit',
      'databases.cedar:6 db-migrate-requires-dba',
      'databases.cedar:16 db-migrate-prod-outside-window-requires-sre',
      'databases.cedar:31 db-drop-table-dev-permit',
      'databases.cedar:34 db-drop-table-prod-forbid',
      'deployments.cedar:3 deploy-environments-permit',
      'deployments.cedar:16 deploy-prod-requires-sre-approval',
      'files.cedar:9 fs-read-workspace-permit',
      'files.cedar:15 fs-write-workspace-permit',
      'files.cedar:21 fs-write-outside-workspace-forbid',
      'files.cedar:28 fs-move-outside-workspace-forbid',
      'files.cedar:39 fs-protected-write-requires-two',
      'notifications.cedar:3 notify-permit',
      'payments.cedar:3 payment-permit',
      'payments.cedar:6 payment-nonpositive-amount-forbid',
      'payments.cedar:11 payment-large-requires-finance',
      'payments.cedar:21 payment-over-limit-forbid',
    ]);
    const prod = bundle.policies.find((p) => p.id === 'deploy-prod-requires-sre-approval')!;
    expect(prod.effect).toBe('forbid');
    expect(prod.escalation).toEqual({ roles: ['sre-lead'], quorum: 2, deadline: '30m' });
    expect(prod.text.startsWith('@id("deploy-prod-requires-sre-approval")')).toBe(true);
    expect(bundle.policies.filter((p) => p.escalation).map((p) => p.id)).toEqual([
      'data-export-bulk-requires-steward',
      'db-migrate-requires-dba',
      'db-migrate-prod-outside-window-requires-sre',
      'deploy-prod-requires-sre-approval',
      'fs-protected-write-requires-two',
      'payment-large-requires-finance',
    ]);
  });

  it('parses the manifest with the trusted issuer, attester, roles and http allow-list', () => {
    const m = bundle.manifest;
    expect(m.trustedIssuers).toEqual([
      {
        issuer: 'https://governor.local/dev-issuer',
        audience: 'temporal-governor',
        jwks: { file: 'keys/issuer.jwks.json' },
        algorithms: ['EdDSA', 'ES256'],
      },
    ]);
    expect(m.trustedAttesters[0]).toMatchObject({
      issuer: 'https://governor.local/dev-attester',
      jwks: { file: 'keys/attester.jwks.json' },
      maxAge: '15m',
    });
    expect(Object.keys(m.approverRoles).sort()).toEqual([
      'data-steward',
      'dba',
      'finance-approver',
      'security-officer',
      'sre-lead',
    ]);
    expect(m.approvals).toEqual({ defaultQuorum: 1, defaultDeadline: '30m', breakGlassRole: 'security-officer' });
    expect(m.http.allow).toEqual([]);
  });

  it('covers manifest, schema and policies with the digest, and loads the test files separately', () => {
    expect(bundle.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(bundle.files.map((f) => f.path)).toEqual([
      'baseline.cedar',
      'data.cedar',
      'databases.cedar',
      'deployments.cedar',
      'files.cedar',
      'manifest.yaml',
      'notifications.cedar',
      'payments.cedar',
      'schema.cedarschema',
    ]);
    expect(bundle.tests.map((t) => t.file)).toEqual([
      'tests/data.yaml',
      'tests/databases.yaml',
      'tests/deployments.yaml',
      'tests/files.yaml',
      'tests/general.yaml',
      'tests/payments.yaml',
    ]);
    expect(bundle.tests.every((t) => t.cases.length > 0)).toBe(true);
  });
});

describe('bundle digest', () => {
  const original = loadBundle(DEFAULT_DIR).digest;

  it('is stable across loads, directories and file order', () => {
    expect(loadBundle(DEFAULT_DIR).digest).toBe(original);
    expect(loadBundle(copyDefault()).digest).toBe(original);
    const { files } = readBundleFiles(DEFAULT_DIR);
    expect(bundleDigest([...files].reverse())).toBe(original);
    expect(loadBundleFromFiles([...files].reverse()).digest).toBe(original);
  });

  it('ignores CRLF line endings and a BOM (and keeps line numbers right)', () => {
    const dir = copyDefault();
    for (const name of readdirSync(dir).filter((n) => /\.(cedar|cedarschema|yaml)$/.test(n))) {
      const path = join(dir, name);
      writeFileSync(path, `\uFEFF${readFileSync(path, 'utf8').replace(/\n/g, '\r\n')}`);
    }
    const crlf = loadBundle(dir);
    expect(crlf.digest).toBe(original);
    expect(crlf.policies.map((p) => p.line)).toEqual(loadBundle(DEFAULT_DIR).policies.map((p) => p.line));
  });

  it('changes when a policy, the schema or the manifest changes, or a policy file is renamed', () => {
    const policy = copyDefault();
    edit(policy, 'payments.cedar', 'context.amount > 10000', 'context.amount > 20000');
    const schema = copyDefault();
    edit(schema, 'schema.cedarschema', 'entity Channel;', 'entity Channel;\nentity Queue;');
    const manifest = copyDefault();
    edit(manifest, 'manifest.yaml', 'defaultQuorum: 1', 'defaultQuorum: 2');
    const renamed = copyDefault();
    renameSync(join(renamed, 'payments.cedar'), join(renamed, 'zz-payments.cedar'));
    const digests = [policy, schema, manifest, renamed].map((d) => loadBundle(d).digest);
    expect(new Set([original, ...digests]).size).toBe(5);
  });

  it('does not change when only tests or unrelated files change', () => {
    const dir = copyDefault();
    edit(dir, 'tests/payments.yaml', 'a small payment is allowed', 'a small payment goes through');
    writeFileSync(join(dir, 'README.md'), '# notes\n');
    expect(loadBundle(dir).digest).toBe(original);
  });
});

describe('checkBundle names the file, line or field of each problem', () => {
  it('reports a Cedar syntax error with file and line, and loadBundle refuses the bundle', () => {
    const dir = copyDefault();
    const line = edit(dir, 'deployments.cedar', 'resource == Environment::"prod")', 'resource = Environment::"prod")');
    const issues = errorsOf(checkBundle(dir));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({
      file: 'deployments.cedar',
      line,
      message: expect.stringMatching(/'=' is not a valid operator/),
    });
    const err = thrown(() => loadBundle(dir));
    expect(isGovernorError(err) && err.code).toBe(ErrorCode.PolicyError);
    expect((err as Error).message).toContain(`deployments.cedar:${line}:`);
  });

  it('reports a schema violation at the offending attribute, with the policy id', () => {
    const dir = copyDefault();
    const line = edit(dir, 'data.cedar', 'when { context.rowCount > 10000 }', 'when { context.rowcount > 10000 }');
    const issues = errorsOf(checkBundle(dir));
    expect(issues).toEqual([
      expect.objectContaining({
        file: 'data.cedar',
        line,
        column: 8,
        policyId: 'data-export-bulk-requires-steward',
        message: expect.stringMatching(
          /attribute `rowcount` in context for Action::"export_data" not found.*did you mean `rowCount`/,
        ),
      }),
    ]);
    expect(formatIssue(issues[0]!)).toMatch(new RegExp(`^data\\.cedar:${line}:8: for policy`));
  });

  it('reports an entity id the schema enum does not declare', () => {
    const dir = copyDefault();
    const line = edit(dir, 'deployments.cedar', 'resource == Environment::"prod")', 'resource == Environment::"prdo")');
    expect(errorsOf(checkBundle(dir))).toEqual([
      expect.objectContaining({
        file: 'deployments.cedar',
        line,
        message: expect.stringMatching(/"prdo"` is not declared/),
      }),
    ]);
  });

  it('reports a bad manifest field as `manifest.yaml: <path>: <message>`', () => {
    const dir = copyDefault();
    edit(dir, 'manifest.yaml', '    audience: temporal-governor\n', '');
    edit(dir, 'manifest.yaml', 'defaultDeadline: 30m', 'defaultDeadline: soon');
    edit(dir, 'manifest.yaml', 'approverRoles:', 'approvers: {}\napproverRoles:');
    const lines = errorsOf(checkBundle(dir)).map(formatIssue);
    expect(lines).toEqual(
      expect.arrayContaining([
        'manifest.yaml: trustedIssuers.0.audience: Required',
        'manifest.yaml: approvals.defaultDeadline: must be a duration such as 30s, 30m, 2h',
        'manifest.yaml: Unrecognized key: "approvers"',
      ]),
    );
    expect(lines).toHaveLength(3);
    const err = thrown(() => loadBundle(dir));
    expect(isGovernorError(err) && err.code).toBe(ErrorCode.PolicyError);
    expect((err as Error).message).toContain('manifest.yaml: trustedIssuers.0.audience: Required');
  });

  it('never echoes manifest values: neither in field errors nor in YAML syntax errors', () => {
    const secret = 'TOP-SECRET-d-4f9a8b7c';
    const fieldDir = copyDefault();
    edit(
      fieldDir,
      'manifest.yaml',
      'jwks: { file: keys/issuer.jwks.json }',
      `jwks: { file: keys/issuer.jwks.json, keys: [{ kty: OKP, d: "${secret}" }] }`,
    );
    edit(fieldDir, 'manifest.yaml', 'maxAge: 15m', `maxAge: "${secret}"`);
    const fieldIssues = checkBundle(fieldDir).map(formatIssue);
    expect(fieldIssues).toEqual([
      'manifest.yaml: trustedIssuers.0.jwks: exactly one of file, uri or keys is required',
      'manifest.yaml: trustedAttesters.0.maxAge: must be a duration such as 30s, 30m, 2h',
    ]);
    const syntaxDir = copyDefault();
    const line = edit(syntaxDir, 'manifest.yaml', 'credential:', `credential: "${secret}\n  extra: [`);
    const syntaxIssues = errorsOf(checkBundle(syntaxDir));
    expect(syntaxIssues.length).toBeGreaterThan(0);
    expect(syntaxIssues[0]).toMatchObject({
      file: 'manifest.yaml',
      message: expect.stringMatching(/^YAML syntax error: /),
    });
    expect(syntaxIssues[0]!.line).toBeGreaterThanOrEqual(line);
    for (const text of [
      ...fieldIssues,
      ...syntaxIssues.map(formatIssue),
      (thrown(() => loadBundle(syntaxDir)) as Error).message,
    ]) {
      expect(text).not.toContain(secret);
    }
  });

  it('requires a unique, well-formed @id on every policy', () => {
    const dir = copyDefault();
    const missing = edit(dir, 'notifications.cedar', '@id("notify-permit")\n', '');
    writeFileSync(
      join(dir, 'zz-extra.cedar'),
      '// duplicate\n@id("payment-permit")\npermit (principal, action == Action::"pay", resource);\n@id("bad id!")\npermit (principal, action == Action::"read", resource);\n',
    );
    expect(errorsOf(checkBundle(dir)).map(formatIssue)).toEqual([
      `notifications.cedar:${missing}: policy has no @id("...") annotation; every policy needs a unique id`,
      'zz-extra.cedar:4: @id must be 1-128 characters: letters, digits, _ . : / - (starting with a letter or digit)',
      'zz-extra.cedar:2: duplicate @id "payment-permit" (first used at payments.cedar:3)',
    ]);
  });

  it('checks escalation annotations: forbid only, declared roles, valid quorum and deadline', () => {
    const dir = copyDefault();
    edit(dir, 'notifications.cedar', '@id("notify-permit")', '@id("notify-permit") @escalate("sre-lead")');
    edit(dir, 'payments.cedar', '@escalate("finance-approver")', '@escalate("cfo")');
    edit(dir, 'deployments.cedar', '@quorum("2")', '@quorum("two")');
    edit(dir, 'databases.cedar', '@deadline("1h")', '@deadline("an hour")');
    edit(
      dir,
      'baseline.cedar',
      '@id("baseline-untrusted-zone-forbid")',
      '@id("baseline-untrusted-zone-forbid") @quorum("2")',
    );
    const messages = errorsOf(checkBundle(dir)).map((i) => `${i.file} ${i.policyId}: ${i.message}`);
    expect(messages).toEqual(
      expect.arrayContaining([
        'notifications.cedar notify-permit: @escalate is only allowed on forbid policies ("forbid unless approved")',
        'payments.cedar payment-large-requires-finance: @escalate names role "cfo", which manifest.yaml approverRoles does not declare',
        'deployments.cedar deploy-prod-requires-sre-approval: @quorum must be a whole number from 1 to 999',
        'databases.cedar db-migrate-requires-dba: @deadline must be a positive duration such as 30m, 2h or 1d',
        'baseline.cedar baseline-untrusted-zone-forbid: @quorum is only meaningful together with @escalate',
      ]),
    );
    expect(messages).toHaveLength(5);
  });

  it('rejects policy templates', () => {
    const dir = copyDefault();
    writeFileSync(join(dir, 'templates.cedar'), '@id("t") permit (principal == ?principal, action, resource);\n');
    expect(errorsOf(checkBundle(dir)).map(formatIssue)).toEqual([
      'templates.cedar: policy templates are not supported; write static policies',
    ]);
  });

  it('reports missing files and a schema syntax error with its line', () => {
    const dir = copyDefault();
    rmSync(join(dir, 'manifest.yaml'));
    const line = edit(dir, 'schema.cedarschema', 'entity Account;', 'entity Account');
    const issues = errorsOf(checkBundle(dir));
    expect(issues.map((i) => `${i.file}${i.line ? `:${i.line}` : ''}`)).toEqual([
      'manifest.yaml',
      `schema.cedarschema:${line + 2}`,
    ]);
    expect(issues[0]!.message).toBe('missing');

    const empty = mkdtempSync(join(tmpdir(), 'governor-empty-'));
    tmpDirs.push(empty);
    expect(errorsOf(checkBundle(empty)).map(formatIssue)).toEqual([
      'manifest.yaml: missing',
      'schema.cedarschema: missing',
      '*.cedar: the bundle has no policy files',
    ]);
  });

  it('checks the test files: shape, and that expected policy ids exist', () => {
    const dir = copyDefault();
    edit(dir, 'tests/payments.yaml', '    expect: { effect: allow, determiningPolicies: [payment-permit] }\n', '');
    edit(dir, 'tests/data.yaml', 'determiningPolicies: [data-read-permit]', 'determiningPolicies: [data-read-permitt]');
    expect(errorsOf(checkBundle(dir)).map(formatIssue)).toEqual([
      'tests/payments.yaml: cases.0.expect: Required',
      'tests/data.yaml: cases.0.expect.determiningPolicies: unknown policy id "data-read-permitt"',
    ]);
  });

  it('refuses a directory that does not exist with InvalidInput', () => {
    const missing = join(tmpdir(), 'governor-no-such-bundle-7f3a');
    expect(checkBundle(missing)).toEqual([{ severity: 'error', file: missing, message: 'not a readable directory' }]);
    const err = thrown(() => loadBundle(missing));
    expect(isGovernorError(err) && err.code).toBe(ErrorCode.InvalidInput);
  });

  it('loadBundleFromFiles is the same check without I/O', () => {
    const files: BundleFile[] = readBundleFiles(DEFAULT_DIR).files.map((f) =>
      f.path === 'notifications.cedar'
        ? { ...f, content: f.content.replace('resource is Channel', 'resource is Chanel') }
        : f,
    );
    const err = thrown(() => loadBundleFromFiles(files, 'mem'));
    expect(isGovernorError(err) && err.code).toBe(ErrorCode.PolicyError);
    expect((err as Error).message).toMatch(
      /^policy bundle mem is invalid:\nnotifications\.cedar:4:\d+: for policy `notify-permit`/,
    );
  });
});
