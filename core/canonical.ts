import { createHash } from 'node:crypto';

/**
 * Canonical JSON: object keys sorted (by UTF-16 code unit, like `Array.prototype.sort`), no
 * whitespace, `undefined` members dropped. The same value always serialises to the same bytes, so
 * digests over it are stable across processes and machines.
 * Throws on values JSON cannot represent (non-finite numbers, bigint, functions, cycles).
 */
export function canonicalJson(value: unknown): string {
  return serialise(value, new Set());
}

function serialise(value: unknown, stack: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
      return JSON.stringify(value);
    case 'object': {
      if (stack.has(value)) throw new TypeError('canonicalJson: cyclic value');
      stack.add(value);
      try {
        if (Array.isArray(value)) {
          // Like JSON.stringify: holes and undefined array members become null.
          return `[${value.map((v) => (v === undefined ? 'null' : serialise(v, stack))).join(',')}]`;
        }
        const entries = Object.keys(value)
          .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${serialise((value as Record<string, unknown>)[k], stack)}`);
        return `{${entries.join(',')}}`;
      } finally {
        stack.delete(value);
      }
    }
    default:
      throw new TypeError(`canonicalJson: cannot serialise a ${typeof value}`);
  }
}

/** SHA-256 of the UTF-8 encoding of `text`, lower-case hex. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
