import type { z } from 'zod';

/**
 * Formatting of validation issues for errors that cross the Temporal boundary. Sandbox-safe.
 * Paths read like code (`chain.steps[0].resource`); values are never echoed, only field paths and
 * zod's messages (which name expected types and unknown keys, never the rejected value).
 */

/** Most nesting any governed JSON value may have (inputs, contexts, http bodies). */
export const MAX_JSON_DEPTH = 64;

/** `chain.steps[0].resource` for the path `['chain', 'steps', 0, 'resource']` (`(root)` when empty). */
export function formatIssuePath(path: readonly PropertyKey[], prefix = ''): string {
  let out = prefix;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(root)' : out;
}

/** One line per issue, `<path>: <message>`, joined by `; ` (at most `limit` issues, then a count). */
export function invalidInputMessage(error: { issues: readonly z.core.$ZodIssue[] }, prefix = '', limit = 10): string {
  const lines = error.issues.slice(0, limit).map((issue) => `${formatIssuePath(issue.path, prefix)}: ${issue.message}`);
  if (error.issues.length > limit) lines.push(`… and ${error.issues.length - limit} more`);
  return lines.join('; ');
}

/**
 * The path of the first value nested deeper than `max` levels, found without recursion (so a
 * hostile 20,000-level document cannot overflow the stack), or undefined.
 */
export function tooDeepPath(value: unknown, max = MAX_JSON_DEPTH): PropertyKey[] | undefined {
  const stack: { v: unknown; path: PropertyKey[] }[] = [{ v: value, path: [] }];
  while (stack.length > 0) {
    const { v, path } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (path.length >= max) return path;
    if (Array.isArray(v)) v.forEach((x, i) => stack.push({ v: x, path: [...path, i] }));
    else for (const k of Object.keys(v)) stack.push({ v: (v as Record<string, unknown>)[k], path: [...path, k] });
  }
  return undefined;
}
