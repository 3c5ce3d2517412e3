import fs from 'node:fs';
import { LineCounter, parseDocument, Parser } from 'yaml';
import { Chain, formatIssues } from '../contracts/chain';
import { ErrorCode, GovernorError } from '../contracts/errors';
import {
  findTooDeep,
  formatBytes,
  formatPath,
  MAX_CHAIN_FILE_BYTES,
  MAX_JSON_DEPTH,
  type LimitIssue,
} from '../contracts/limits';

/**
 * Reads a chain from a YAML or JSON file and validates it; errors name the file and the field.
 *
 * Bad input fails here, before anything is sent: a file over 2 MiB is refused before it is read;
 * nesting deeper than 64 levels is refused before anything recursive sees it (YAML: on the parser's
 * token tree, which is built without recursion; JSON: V8's parser is iterative, then an iterative
 * walk); YAML is read with the core schema only (no `!!binary`, `!!timestamp`, `!!js/function`,
 * custom `!tags`: every tag the core schema does not define is refused, naming it and its line),
 * duplicate keys are refused and aliases are bounded.
 */
export function loadChainFile(file: string): Chain {
  const isJson = file.endsWith('.json');
  let text: string;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new Error('not a file');
    if (stat.size > MAX_CHAIN_FILE_BYTES) {
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `${file}: the chain file is ${formatBytes(stat.size)}; the limit is ${formatBytes(MAX_CHAIN_FILE_BYTES)} (nothing was sent)`,
        'file',
      );
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof GovernorError) throw err;
    throw new GovernorError(ErrorCode.InvalidInput, `${file}: cannot read the chain file`, 'file');
  }
  const raw = isJson ? parseJson(text, file) : parseYaml(text, file);
  const deep = findTooDeep(raw, MAX_JSON_DEPTH);
  if (deep) throw depthError(file, deep);
  const parsed = Chain.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${file}: invalid chain\n${formatIssues(parsed.error)}`,
      first ? first.path.join('.') : undefined,
    );
  }
  return parsed.data;
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${file}: not valid JSON: ${(err as Error).message.split('\n')[0]}`,
      'file',
    );
  }
}

function parseYaml(text: string, file: string): unknown {
  const lines = new LineCounter();
  const at = (offset: number): string => {
    const pos = lines.linePos(offset);
    return `line ${pos.line}, column ${pos.col}`;
  };
  // Depth first, on the token tree (the composer that builds values recurses per level).
  const deep = yamlTooDeep(text, MAX_JSON_DEPTH);
  if (deep) {
    lines.addNewLine(0);
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 0x0a) lines.addNewLine(i + 1);
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${file}: ${formatPath(deep.path)} (${at(deep.offset)}): ${deep.message}`,
      formatPath(deep.path),
    );
  }
  const doc = parseDocument(text, {
    schema: 'core',
    customTags: [],
    // The YAML 1.1 tags (!!binary, !!set, !!omap, !!pairs, !!timestamp) are not the core schema's.
    resolveKnownTags: false,
    uniqueKeys: true,
    strict: true,
    prettyErrors: false,
    logLevel: 'silent',
    lineCounter: lines,
  });
  const first = doc.errors[0];
  if (first)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${file}: not valid YAML (${at(first.pos[0])}): ${first.message.split('\n')[0]}`,
      'file',
    );
  // A warning is a value YAML could not read as written (an unknown tag above all): refused, never guessed at.
  const warning = doc.warnings[0];
  if (warning) {
    const tag =
      warning.code === 'TAG_RESOLVE_FAILED'
        ? /Unresolved tag: (.*)$/.exec(warning.message.split('\n')[0]!)?.[1]
        : undefined;
    const message = tag
      ? `YAML tag ${shortTag(tag)} is not allowed: chain files use the YAML core schema (!!str, !!int, !!float, !!bool, !!null, !!map, !!seq)`
      : `not valid YAML: ${warning.message.split('\n')[0]}`;
    throw new GovernorError(ErrorCode.InvalidInput, `${file}: ${at(warning.pos[0])}: ${message}`, 'file');
  }
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    const why =
      err instanceof RangeError
        ? `nests deeper than ${MAX_JSON_DEPTH} levels through aliases`
        : (err as Error).message.split('\n')[0];
    throw new GovernorError(ErrorCode.InvalidInput, `${file}: not valid YAML: ${why}`, 'file');
  }
}

/** `tag:yaml.org,2002:js/function` → `!!js/function`; other tags as written, bounded. */
function shortTag(tag: string): string {
  const short = tag.startsWith('tag:yaml.org,2002:') ? `!!${tag.slice('tag:yaml.org,2002:'.length)}` : tag;
  return short.length > 64 ? `${short.slice(0, 61)}...` : short;
}

function depthError(file: string, issue: LimitIssue): GovernorError {
  const field = formatPath(issue.path);
  return new GovernorError(ErrorCode.InvalidInput, `${file}: ${field}: ${issue.message}`, field);
}

/** A node of yaml's concrete syntax tree, as far as the depth walk reads it. */
interface CstToken {
  type: string;
  offset: number;
  source?: string;
  start?: { source?: string } | { source?: string }[];
  value?: CstToken;
  items?: { key?: CstToken | null; value?: CstToken | null }[];
}

const CST_COLLECTIONS = ['block-map', 'block-seq', 'flow-collection'];

/**
 * The first collection in YAML `text` nested deeper than `maxDepth`, with its path and offset, from
 * the token tree (yaml's lexer and parser keep their own stacks: no recursion on nesting).
 */
function yamlTooDeep(text: string, maxDepth: number): (LimitIssue & { offset: number }) | undefined {
  interface Frame {
    token: CstToken;
    depth: number;
    path: (string | number)[];
  }
  for (const top of new Parser().parse(text) as Iterable<CstToken>) {
    if (top.type !== 'document' || !top.value) continue;
    const stack: Frame[] = [{ token: top.value, depth: 1, path: [] }];
    while (stack.length > 0) {
      const { token, depth, path } = stack.pop()!;
      if (!CST_COLLECTIONS.includes(token.type)) continue;
      if (depth > maxDepth)
        return {
          path,
          offset: token.offset,
          message: `nests deeper than ${maxDepth} levels (the limit for a chain document)`,
        };
      const starts = Array.isArray(token.start) ? token.start : token.start ? [token.start] : [];
      const isMap =
        token.type === 'block-map' || (token.type === 'flow-collection' && starts.some((s) => s.source === '{'));
      (token.items ?? []).forEach((item, i) => {
        const key = isMap ? keyName(item.key) : i;
        // Paths stay short: the walk stops at the first collection past maxDepth.
        const next = [...path, key];
        if (item.key && CST_COLLECTIONS.includes(item.key.type))
          stack.push({ token: item.key, depth: depth + 1, path: next });
        if (item.value) stack.push({ token: item.value, depth: depth + 1, path: next });
      });
    }
  }
  return undefined;
}

function keyName(key: CstToken | null | undefined): string {
  if (!key) return '?';
  if (typeof key.source === 'string') return key.source.replace(/^(['"])(.*)\1$/s, '$2').slice(0, 64);
  return '?';
}
