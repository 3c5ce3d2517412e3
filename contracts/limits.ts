/**
 * Size and depth limits of what a chain submitter sends, and checkers for them. Safe to load in the
 * workflow sandbox (no Node built-ins, no recursion, no clock): the client checks before anything is
 * sent, and the same checkers can run inside the workflow and in zod schemas.
 *
 * Why these numbers: Temporal refuses a payload over 2 MiB (its default blob size error limit) and
 * warns from 512 KiB, and a refused start fails late and names no field. A chain's whole workflow
 * input gets 1 MiB, half the hard limit, so the credential, attestation and run options always fit;
 * tokens get 16 KiB (as in `contracts/chain.ts` and `contracts/approval.ts`); JSON nests at most 64
 * levels, far more than a chain needs and far less than what overflows a recursive parser or
 * validator (zod's `z.json()`, `JSON.stringify`, YAML composition).
 */

/** Largest whole workflow input of a chain (`GovernedChainInput` as UTF-8 JSON): 1 MiB. */
export const MAX_WORKFLOW_INPUT_BYTES = 1024 * 1024;
/** Largest chain file `governor run` reads (YAML carries indentation and comments JSON does not): 2 MiB. */
export const MAX_CHAIN_FILE_BYTES = 2 * 1024 * 1024;
/** Longest credential, attestation or approval token: 16 KiB of characters. */
export const MAX_TOKEN_CHARS = 16_384;
/** Deepest nesting of a chain document, counted from its root (each object or array is one level). */
export const MAX_JSON_DEPTH = 64;

/** A limit that was exceeded: the field (dotted path, never the value) and a message naming the limit. */
export interface LimitIssue {
  /** Path of the offending field from the checked root (`steps.0.input.a`). */
  path: (string | number)[];
  message: string;
}

/** How many path segments an issue prints before eliding (a 20,000-deep path is not a message). */
const MAX_PATH_SHOWN = 12;

/** Dotted form of a path, elided in the middle when long: `steps.0.input.a.a.…(19,990 more).a`. */
export function formatPath(path: readonly (string | number)[], prefix = ''): string {
  const parts = [prefix, ...path.map(String)].filter((p) => p !== '');
  if (parts.length <= MAX_PATH_SHOWN) return parts.join('.') || '(root)';
  const head = parts.slice(0, MAX_PATH_SHOWN - 2);
  const tail = parts.slice(-2);
  return [...head, `…(${(parts.length - head.length - tail.length).toLocaleString('en-US')} more)`, ...tail].join('.');
}

/**
 * The first place where `value` nests deeper than `maxDepth` levels (an object or array is a level;
 * the root container is level 1), found without recursion; undefined when it does not. Works on any
 * JS value (cycles are cut by the depth bound). With `leafProblem`, also the first member that is not a
 * container and that it names a problem of (e.g. `nonFiniteNumber`), in the same single walk.
 */
export function findTooDeep(
  value: unknown,
  maxDepth: number = MAX_JSON_DEPTH,
  leafProblem?: (leaf: unknown) => string | undefined,
): LimitIssue | undefined {
  if (!isContainer(value)) return undefined;
  // Depth-first with an explicit stack; each frame remembers its parent and key to rebuild the path.
  interface Frame {
    value: object;
    depth: number;
    parent: Frame | undefined;
    key: string | number | undefined;
  }
  const stack: Frame[] = [{ value, depth: 1, parent: undefined, key: undefined }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    if (frame.depth > maxDepth) {
      const path: (string | number)[] = [];
      for (let f: Frame | undefined = frame; f?.parent; f = f.parent) path.push(f.key!);
      path.reverse();
      return { path, message: `nests deeper than ${maxDepth} levels (the limit for a chain document)` };
    }
    const entries: [string | number, unknown][] = Array.isArray(frame.value)
      ? frame.value.map((v, i) => [i, v] as [number, unknown])
      : Object.entries(frame.value);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, child] = entries[i]!;
      if (isContainer(child)) stack.push({ value: child, depth: frame.depth + 1, parent: frame, key });
      else if (leafProblem !== undefined) {
        const problem = leafProblem(child);
        if (problem === undefined) continue;
        const path: (string | number)[] = [key];
        for (let f: Frame | undefined = frame; f?.parent; f = f.parent) path.push(f.key!);
        return { path: path.reverse(), message: problem };
      }
    }
  }
  return undefined;
}

/**
 * A number JSON cannot hold. JSON text such as `1e400` (valid, and sent by other SDKs as it is) decodes to Infinity;
 * checked in one walk before zod, whose union refuses each one at every level it nests (seconds for a hostile
 * megabyte of them), with the same words as `JsonValue`'s refusal.
 */
export function nonFiniteNumber(leaf: unknown): string | undefined {
  return typeof leaf === 'number' && !Number.isFinite(leaf)
    ? 'not a JSON value: it is a non-finite number (JSON has strings, finite numbers, booleans, null, arrays and plain objects)'
    : undefined;
}

/**
 * The deepest bracket nesting of JSON text, checked before parsing: the offset (0-based) and depth
 * where `maxDepth` is first exceeded, or undefined. Brackets inside strings are skipped.
 */
export function jsonTextTooDeep(
  text: string,
  maxDepth: number = MAX_JSON_DEPTH,
): { offset: number; depth: number } | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return { offset: i, depth };
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return undefined;
}

/** UTF-8 length of a string in bytes (without TextEncoder or Buffer; lone surrogates count 3, as when encoded). */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** `1,048,576 bytes (1 MiB)`-style rendering of a byte count. */
export function formatBytes(bytes: number): string {
  const units: [number, string][] = [
    [1024 * 1024, 'MiB'],
    [1024, 'KiB'],
  ];
  const exact = units.find(([size]) => bytes >= size && bytes % size === 0);
  const approx = units.find(([size]) => bytes >= size);
  const human = exact
    ? `${bytes / exact[0]} ${exact[1]}`
    : approx
      ? `${(bytes / approx[0]).toFixed(1)} ${approx[1]}`
      : undefined;
  return `${bytes.toLocaleString('en-US')} bytes${human ? ` (${human})` : ''}`;
}

/**
 * The size of `value` as UTF-8 JSON when it exceeds `maxBytes`, with the field that accounts for
 * most of it; undefined when it fits. Check depth first (`findTooDeep`): `JSON.stringify` recurses.
 * A value that is not JSON (a cycle, a BigInt) is not measured here: the schema refuses it.
 */
export function findTooLarge(value: unknown, maxBytes: number, what: string): LimitIssue | undefined {
  const size = jsonBytes(value);
  if (size === undefined || size <= maxBytes) return undefined;
  const path = largestField(value, size);
  const where =
    path.length > 0 ? `; most of it is ${formatPath(path)} (${formatBytes(jsonBytes(valueAt(value, path)) ?? 0)})` : '';
  return { path, message: `${what} is ${formatBytes(size)} as JSON; the limit is ${formatBytes(maxBytes)}${where}` };
}

/** A string longer than `maxChars`: a message naming the limit (never the value). */
export function tokenTooLong(token: unknown, maxChars: number = MAX_TOKEN_CHARS): string | undefined {
  if (typeof token !== 'string') return 'must be a string (a compact JWS)';
  if (token.length > maxChars)
    return `is ${token.length.toLocaleString('en-US')} characters; the limit is ${maxChars.toLocaleString('en-US')} (16 KiB)`;
  return undefined;
}

function jsonBytes(value: unknown): number | undefined {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? undefined : utf8Length(text);
  } catch {
    return undefined;
  }
}

/** Walks down to the child holding more than half of its parent's size, while there is one. */
function largestField(value: unknown, size: number): (string | number)[] {
  const path: (string | number)[] = [];
  let current = value;
  let currentSize = size;
  for (let depth = 0; depth < MAX_JSON_DEPTH && isContainer(current); depth++) {
    const entries: [string | number, unknown][] = Array.isArray(current)
      ? current.map((v, i) => [i, v] as [number, unknown])
      : Object.entries(current);
    let best: [string | number, unknown, number] | undefined;
    for (const [key, child] of entries) {
      const bytes = jsonBytes(child) ?? 0;
      if (!best || bytes > best[2]) best = [key, child, bytes];
    }
    if (!best || best[2] * 2 < currentSize) break;
    path.push(best[0]);
    current = best[1];
    currentSize = best[2];
  }
  return path;
}

function valueAt(value: unknown, path: readonly (string | number)[]): unknown {
  let current = value;
  for (const key of path) current = (current as Record<string | number, unknown>)[key];
  return current;
}

function isContainer(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}
