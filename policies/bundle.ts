import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import cedar from './cedar';
import type * as Cedar from '@cedar-policy/cedar-wasm/nodejs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { Annotation, POLICY_ID_PATTERN, readEscalation, type EscalationAnnotation } from './annotations';
import { canonicalJson, sha256Hex } from '../core/canonical';
import { Manifest } from './manifest';
import { PolicyTestFile, type PolicyTestCase } from './test-case';

/**
 * Policy bundle loader and checker. A bundle is a directory:
 *
 *   manifest.yaml        governance manifest (validated with the `Manifest` zod schema)
 *   schema.cedarschema   Cedar schema every policy is validated against (strict mode)
 *   *.cedar              policies; each needs a unique `@id("...")`
 *   tests/*.yaml|json    optional data-driven policy tests (see test-case.ts)
 *
 * Reading files is the only I/O; everything else (`analyseBundle`, `loadBundleFromFiles`) is pure.
 */

export const MANIFEST_FILE = 'manifest.yaml';
export const SCHEMA_FILE = 'schema.cedarschema';
export const TESTS_DIR = 'tests';
/** Versioned so a change to what the digest covers can never collide with an old digest. */
export const DIGEST_FORMAT = 'temporal-governor/policy-bundle@1';
const MAX_FILE_BYTES = 1024 * 1024;

/** One file of a bundle: path relative to the bundle root with `/` separators, text content. */
export interface BundleFile {
  readonly path: string;
  readonly content: string;
}

/** One policy of a loaded bundle. */
export interface BundlePolicy {
  /** The `@id` annotation; also the Cedar policy id the engine evaluates under. */
  readonly id: string;
  readonly file: string;
  /** 1-based line of the policy's first character (its first annotation) in `file`. */
  readonly line: number;
  readonly effect: 'permit' | 'forbid';
  /** The policy's source text exactly as written. */
  readonly text: string;
  readonly annotations: Readonly<Record<string, string>>;
  /** Present on escalatable `forbid`s only. */
  readonly escalation?: EscalationAnnotation;
}

/** A bundle's data-driven test file. */
export interface BundleTestFile {
  readonly file: string;
  readonly description?: string;
  readonly cases: readonly PolicyTestCase[];
}

/** A checked, immutable policy bundle, ready for `PolicyEngine.fromBundle`. */
export interface LoadedBundle {
  /** Where it came from (directory or a label); informational only, not part of the digest. */
  readonly source: string;
  /** SHA-256 (hex) of the canonical content: manifest, schema and policies (not tests). */
  readonly digest: string;
  readonly manifest: Manifest;
  readonly schema: string;
  /** In file-name order, then source order within a file. */
  readonly policies: readonly BundlePolicy[];
  readonly tests: readonly BundleTestFile[];
  /** The normalised files the digest covers, sorted by path (what a signer signs). */
  readonly files: readonly BundleFile[];
}

/** One problem found in a bundle. Messages never echo manifest values (they may hold key material). */
export interface BundleIssue {
  readonly severity: 'error' | 'warning';
  /** Path relative to the bundle root (or the bundle directory itself when it cannot be read). */
  readonly file: string;
  readonly line?: number;
  readonly column?: number;
  /** Dotted path of the offending field in a YAML/JSON file, e.g. `trustedIssuers.0.audience`. */
  readonly field?: string;
  readonly policyId?: string;
  readonly message: string;
}

/** Formats an issue as `file[:line[:column]]: [field: ]message`. */
export function formatIssue(issue: BundleIssue): string {
  const where = [issue.file, issue.line, issue.line !== undefined ? issue.column : undefined]
    .filter((p) => p !== undefined)
    .join(':');
  const warn = issue.severity === 'warning' ? 'warning: ' : '';
  return `${where}: ${warn}${issue.field !== undefined ? `${issue.field}: ` : ''}${issue.message}`;
}

/** Reads and checks the bundle in `dir`; throws a GovernorError listing every error when it is invalid. */
export function loadBundle(dir: string): LoadedBundle {
  const read = readBundleFiles(dir);
  if (read.issues.length > 0) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `cannot read policy bundle ${dir}:\n${read.issues.map(formatIssue).join('\n')}`,
    );
  }
  return loadBundleFromFiles(read.files, dir);
}

/** Checks an in-memory bundle and returns it; throws GovernorError (PolicyError) listing every error. */
export function loadBundleFromFiles(files: readonly BundleFile[], source = '<memory>'): LoadedBundle {
  const { bundle, issues } = analyseBundle(files, source);
  const errors = issues.filter((i) => i.severity === 'error');
  if (bundle === undefined || errors.length > 0) {
    throw new GovernorError(
      ErrorCode.PolicyError,
      `policy bundle ${source} is invalid:\n${errors.map(formatIssue).join('\n')}`,
    );
  }
  return bundle;
}

/** Every problem of the bundle in `dir` (errors and warnings); empty when it is valid. */
export function checkBundle(dir: string): BundleIssue[] {
  const read = readBundleFiles(dir);
  if (read.issues.some((i) => i.severity === 'error') && read.files.length === 0) return read.issues;
  return [...read.issues, ...analyseBundle(read.files, dir).issues];
}

/** Reads a bundle directory's files (the loader's only I/O). Unreadable or oversized files become issues. */
export function readBundleFiles(dir: string): { files: BundleFile[]; issues: BundleIssue[] } {
  const files: BundleFile[] = [];
  const issues: BundleIssue[] = [];
  const isDir = (p: string): boolean => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return false;
    }
  };
  if (!isDir(dir)) {
    return { files, issues: [{ severity: 'error', file: dir, message: 'not a readable directory' }] };
  }
  const readInto = (relative: string): void => {
    const full = join(dir, ...relative.split('/'));
    try {
      const stat = statSync(full);
      if (!stat.isFile()) return;
      if (stat.size > MAX_FILE_BYTES) {
        issues.push({ severity: 'error', file: relative, message: `larger than ${MAX_FILE_BYTES} bytes` });
        return;
      }
      files.push({ path: relative, content: readFileSync(full, 'utf8') });
    } catch (err) {
      issues.push({
        severity: 'error',
        file: relative,
        message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      });
    }
  };
  for (const name of readdirSync(dir).sort()) {
    if (name === MANIFEST_FILE || name === SCHEMA_FILE || name.endsWith('.cedar')) readInto(name);
  }
  const testsDir = join(dir, TESTS_DIR);
  if (isDir(testsDir)) {
    for (const name of readdirSync(testsDir).sort()) {
      if (/\.(ya?ml|json)$/.test(name)) readInto(`${TESTS_DIR}/${name}`);
    }
  }
  return { files, issues };
}

/** Line endings and BOM must not change the digest or the line numbers. */
function normaliseText(text: string): string {
  return text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
}

/** True for the files the digest (and a signature) covers: everything that can change a decision. */
function isDigestFile(path: string): boolean {
  return path === MANIFEST_FILE || path === SCHEMA_FILE || (!path.includes('/') && path.endsWith('.cedar'));
}

/**
 * SHA-256 (hex) of a bundle's canonical content: the digest-covered files (manifest, schema,
 * top-level `*.cedar`), normalised, sorted by path, as canonical JSON. Independent of the directory
 * it lives in, of file order on disk and of CRLF vs LF.
 */
export function bundleDigest(files: readonly BundleFile[]): string {
  const covered = files
    .filter((f) => isDigestFile(f.path))
    .map((f) => ({ path: f.path, content: normaliseText(f.content) }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return sha256Hex(canonicalJson({ format: DIGEST_FORMAT, files: covered }));
}

/** Checks a bundle's files (pure). Returns the bundle when there is no error, and every issue found. */
export function analyseBundle(
  rawFiles: readonly BundleFile[],
  source = '<memory>',
): { bundle?: LoadedBundle; issues: BundleIssue[] } {
  const issues: BundleIssue[] = [];
  const files = rawFiles
    .map((f) => ({ path: f.path, content: normaliseText(f.content) }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const byPath = new Map(files.map((f) => [f.path, f]));

  const manifestFile = byPath.get(MANIFEST_FILE);
  const manifest = manifestFile ? readManifest(manifestFile, issues) : undefined;
  if (!manifestFile) issues.push({ severity: 'error', file: MANIFEST_FILE, message: 'missing' });

  const schemaFile = byPath.get(SCHEMA_FILE);
  let schemaOk = false;
  if (!schemaFile) {
    issues.push({ severity: 'error', file: SCHEMA_FILE, message: 'missing' });
  } else {
    const parsed = cedar.checkParseSchema(schemaFile.content);
    if (parsed.type === 'failure') issues.push(...cedarIssues(schemaFile, 0, parsed.errors));
    else schemaOk = true;
  }

  const cedarFiles = files.filter((f) => !f.path.includes('/') && f.path.endsWith('.cedar'));
  if (cedarFiles.length === 0)
    issues.push({ severity: 'error', file: '*.cedar', message: 'the bundle has no policy files' });
  let policiesParsed = true;
  const parsedPolicies: ParsedPolicy[] = [];
  for (const file of cedarFiles) {
    const read = readPolicies(file, issues);
    if (read === undefined || !read.ok) policiesParsed = false;
    if (read !== undefined) parsedPolicies.push(...read.policies);
  }
  const policies = parsedPolicies.map((p) => p.policy);

  // Unique ids: the engine evaluates under them, and decisions and receipts cite them.
  let duplicates = false;
  const firstById = new Map<string, BundlePolicy>();
  for (const p of policies) {
    const first = firstById.get(p.id);
    if (first) {
      issues.push({
        severity: 'error',
        file: p.file,
        line: p.line,
        policyId: p.id,
        message: `duplicate @id "${p.id}" (first used at ${first.file}:${first.line})`,
      });
      duplicates = true;
    } else {
      firstById.set(p.id, p);
    }
  }

  if (manifest) {
    const known = new Set(Object.keys(manifest.approverRoles));
    for (const p of policies) {
      for (const role of p.escalation?.roles ?? []) {
        if (!known.has(role)) {
          issues.push({
            severity: 'error',
            file: p.file,
            line: p.line,
            policyId: p.id,
            message: `@escalate names role "${role}", which manifest.yaml approverRoles does not declare`,
          });
        }
      }
    }
  }

  // Validate whatever was read, so one bad policy does not hide the others' problems.
  if (schemaOk && schemaFile && !duplicates && policies.length > 0) {
    issues.push(...validatePolicies(schemaFile.content, parsedPolicies));
  }

  const tests: BundleTestFile[] = [];
  for (const file of files.filter((f) => f.path.startsWith(`${TESTS_DIR}/`))) {
    const read = readTestFile(file, issues);
    if (read) tests.push(read);
  }
  // Only meaningful when every policy was read: otherwise each test would echo the policy error.
  for (const t of policiesParsed && !duplicates ? tests : []) {
    t.cases.forEach((c, i) => {
      for (const id of c.expect.determiningPolicies ?? []) {
        if (!firstById.has(id)) {
          issues.push({
            severity: 'error',
            file: t.file,
            field: `cases.${i}.expect.determiningPolicies`,
            message: `unknown policy id "${id}"`,
          });
        }
      }
    });
  }

  if (issues.some((i) => i.severity === 'error') || !manifest || !schemaFile) return { issues };
  const covered = files.filter((f) => isDigestFile(f.path));
  return {
    bundle: {
      source,
      digest: bundleDigest(covered),
      manifest,
      schema: schemaFile.content,
      policies,
      tests,
      files: covered,
    },
    issues,
  };
}

/** The zod error map for bundle files: v3-style "Required" for missing fields; never echoes input. */
const requiredMessage = (iss: { code: string; input?: unknown }): string | undefined =>
  iss.code === 'invalid_type' && iss.input === undefined ? 'Required' : undefined;

function zodIssues(file: string, error: z.ZodError): BundleIssue[] {
  return error.issues.map((issue) => {
    const field = issue.path.map(String).join('.');
    return { severity: 'error' as const, file, ...(field ? { field } : {}), message: issue.message };
  });
}

/** Parses YAML without echoing source text (yaml's pretty errors quote the offending line). */
function parseYaml(file: BundleFile, issues: BundleIssue[]): { ok: true; value: unknown } | { ok: false } {
  const doc = parseDocument(file.content, { merge: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const err of doc.errors) {
      const pos = err.linePos?.[0];
      issues.push({
        severity: 'error',
        file: file.path,
        ...(pos ? { line: pos.line, column: pos.col } : {}),
        message: `YAML syntax error: ${yamlErrorSummary(err.message)} (${err.code})`,
      });
    }
    return { ok: false };
  }
  // Aliases are resolved only here: an unresolved alias or an alias bomb throws (a ReferenceError), not a
  // document error. An issue, never an exception; the message is ours (yaml's names the alias).
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount: 1000 }) as unknown };
  } catch (err) {
    const why =
      err instanceof ReferenceError && /alias count/i.test(err.message)
        ? 'too many aliases (resource exhaustion guard)'
        : err instanceof ReferenceError
          ? 'an alias names no earlier anchor'
          : 'it cannot be converted to data';
    issues.push({ severity: 'error', file: file.path, message: `YAML is not usable: ${why}` });
    return { ok: false };
  }
}

/**
 * The part of a yaml error message that describes the problem, without the source text yaml quotes after a
 * colon (`Unexpected scalar token in YAML stream: "<text>"`) or in quotes: a manifest may hold key material.
 */
function yamlErrorSummary(message: string): string {
  const first = message.split(' at line ')[0]!.split('\n')[0]!;
  return (
    first
      .replace(/:\s.*$/, '')
      .replace(/"[^"]*"?|'[^']*'?/g, '…')
      .trim() || 'invalid YAML'
  );
}

function readManifest(file: BundleFile, issues: BundleIssue[]): Manifest | undefined {
  const yaml = parseYaml(file, issues);
  if (!yaml.ok) return undefined;
  const parsed = Manifest.safeParse(yaml.value, { error: requiredMessage });
  if (!parsed.success) {
    issues.push(...zodIssues(file.path, parsed.error));
    return undefined;
  }
  return parsed.data;
}

function readTestFile(file: BundleFile, issues: BundleIssue[]): BundleTestFile | undefined {
  let value: unknown;
  if (file.path.endsWith('.json')) {
    try {
      value = JSON.parse(file.content);
    } catch {
      issues.push({ severity: 'error', file: file.path, message: 'invalid JSON' });
      return undefined;
    }
  } else {
    const yaml = parseYaml(file, issues);
    if (!yaml.ok) return undefined;
    value = yaml.value;
  }
  const parsed = PolicyTestFile.safeParse(value, { error: requiredMessage });
  if (!parsed.success) {
    issues.push(...zodIssues(file.path, parsed.error));
    return undefined;
  }
  return {
    file: file.path,
    ...(parsed.data.description !== undefined ? { description: parsed.data.description } : {}),
    cases: parsed.data.cases,
  };
}

/** 1-based line and column of a UTF-8 byte offset (Cedar reports byte offsets). */
function positionAt(text: string, byteOffset: number): { line: number; column: number } {
  const prefix = Buffer.from(text, 'utf8').subarray(0, Math.max(0, byteOffset)).toString('utf8');
  const lastNewline = prefix.lastIndexOf('\n');
  return { line: prefix.split('\n').length, column: prefix.length - lastNewline };
}

function describeCedarError(err: Cedar.DetailedError): string {
  return err.help ? `${err.message} (help: ${err.help})` : err.message;
}

/** Cedar errors as issues; `baseByte` is where the text the offsets refer to starts in the file. */
function cedarIssues(
  file: BundleFile,
  baseByte: number,
  errors: readonly Cedar.DetailedError[],
  policyId?: string,
): BundleIssue[] {
  return errors.map((err) => {
    const loc = err.sourceLocations?.[0];
    return {
      severity: 'error' as const,
      file: file.path,
      ...(loc ? positionAt(file.content, baseByte + loc.start) : {}),
      ...(policyId !== undefined ? { policyId } : {}),
      message: describeCedarError(err),
    };
  });
}

/** A parsed policy plus where it starts in its file (UTF-8 bytes), to map Cedar's per-policy offsets. */
interface ParsedPolicy {
  readonly policy: BundlePolicy;
  readonly file: BundleFile;
  readonly startByte: number;
}

/**
 * Parses one `.cedar` file into policies; `undefined` when it does not parse. `ok` is false when a
 * policy was left out (no or malformed @id), so id-dependent checks can be skipped.
 */
function readPolicies(file: BundleFile, issues: BundleIssue[]): { policies: ParsedPolicy[]; ok: boolean } | undefined {
  const parts = cedar.policySetTextToParts(file.content);
  if (parts.type === 'failure') {
    issues.push(...cedarIssues(file, 0, parts.errors));
    return undefined;
  }
  if (parts.policy_templates.length > 0) {
    issues.push({
      severity: 'error',
      file: file.path,
      message: 'policy templates are not supported; write static policies',
    });
    return undefined;
  }
  let ok = true;
  // Parts come back ordered by Cedar's internal ids; restore source order.
  const located = parts.policies
    .map((text) => ({ text, index: file.content.indexOf(text) }))
    .sort((a, b) => a.index - b.index);
  const policies: ParsedPolicy[] = [];
  for (const { text, index } of located) {
    const startByte = Buffer.byteLength(file.content.slice(0, Math.max(0, index)), 'utf8');
    const { line } = positionAt(file.content, startByte);
    const json = cedar.policyToJson(text);
    if (json.type === 'failure') {
      issues.push(...cedarIssues(file, startByte, json.errors));
      ok = false;
      continue;
    }
    // Cedar writes an annotation without a value (`@escalate`) as null: it means the empty string, as `@escalate("")`
    // (which then fails the annotation's own check, with a located error, instead of a TypeError).
    const annotations = Object.fromEntries(
      Object.entries((json.json.annotations ?? {}) as Record<string, string | null>).map(([k, v]) => [k, v ?? '']),
    );
    const id = annotations[Annotation.id];
    if (id === undefined) {
      issues.push({
        severity: 'error',
        file: file.path,
        line,
        message: 'policy has no @id("...") annotation; every policy needs a unique id',
      });
      ok = false;
      continue;
    }
    if (!POLICY_ID_PATTERN.test(id)) {
      issues.push({
        severity: 'error',
        file: file.path,
        line,
        policyId: id,
        message: '@id must be 1-128 characters: letters, digits, _ . : / - (starting with a letter or digit)',
      });
      ok = false;
      continue;
    }
    const { escalation, problems } = readEscalation(annotations);
    for (const problem of problems)
      issues.push({ severity: 'error', file: file.path, line, policyId: id, message: problem });
    if (escalation && json.json.effect !== 'forbid') {
      issues.push({
        severity: 'error',
        file: file.path,
        line,
        policyId: id,
        message: '@escalate is only allowed on forbid policies ("forbid unless approved")',
      });
    }
    const policy: BundlePolicy = {
      id,
      file: file.path,
      line,
      effect: json.json.effect,
      text,
      annotations: sortedRecord(annotations),
      ...(escalation && json.json.effect === 'forbid' ? { escalation } : {}),
    };
    policies.push({ policy, file, startByte });
  }
  return { policies, ok };
}

/** Strict validation against the schema, each error mapped to its policy's file and line. */
function validatePolicies(schema: string, policies: readonly ParsedPolicy[]): BundleIssue[] {
  const byId = new Map(policies.map((p) => [p.policy.id, p]));
  const answer = cedar.validate({
    schema,
    policies: { staticPolicies: Object.fromEntries(policies.map((p) => [p.policy.id, p.policy.text])) },
    validationSettings: { mode: 'strict' },
  });
  if (answer.type === 'failure') {
    return answer.errors.map((err) => ({
      severity: 'error' as const,
      file: SCHEMA_FILE,
      message: describeCedarError(err),
    }));
  }
  const out: BundleIssue[] = [];
  const seen = new Set<string>();
  const add = (severity: 'error' | 'warning', policyId: string, err: Cedar.DetailedError): void => {
    const parsed = byId.get(policyId);
    const loc = err.sourceLocations?.[0];
    const issue: BundleIssue = parsed
      ? {
          severity,
          file: parsed.file.path,
          policyId,
          ...(loc ? positionAt(parsed.file.content, parsed.startByte + loc.start) : { line: parsed.policy.line }),
          message: describeCedarError(err),
        }
      : { severity, file: SCHEMA_FILE, message: describeCedarError(err) };
    const key = formatIssue(issue);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(issue);
    }
  };
  for (const e of answer.validationErrors) add('error', e.policyId, e.error);
  for (const w of answer.validationWarnings) add('warning', w.policyId, w.error);
  for (const w of answer.otherWarnings)
    out.push({ severity: 'warning', file: SCHEMA_FILE, message: describeCedarError(w) });
  return out;
}

function sortedRecord(record: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(record).sort()) out[key] = record[key]!;
  return out;
}
