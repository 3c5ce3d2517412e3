import { createHash } from 'node:crypto';

/**
 * Canonical JSON: object keys sorted (by UTF-16 code unit, like `Array.prototype.sort`), no
 * whitespace, `undefined` members dropped. The same value always serialises to the same bytes, so
 * digests over it are stable across processes and machines.
 * Throws on values JSON cannot represent (non-finite numbers, bigint, functions, cycles).
 */
export function canonicalJson(value: unknown): string {
  // Fast path: the engine's JSON.stringify, each object's keys sorted by the replacer. It cannot keep the order
  // of integer-like keys ("2" before "10" is the engine's order, "10" before "2" the canonical one), nor see a
  // value's original before `toJSON` replaced it: on either, and on a cycle (a stack overflow), the exact
  // serialiser below runs instead. Same bytes as `serialise` for every other value (unit-tested, with
  // generated values).
  try {
    return JSON.stringify(value, sortingReplacer) ?? serialise(value, new Set());
  } catch (err) {
    if (err === SLOW_PATH || err instanceof RangeError) return serialise(value, new Set());
    throw err;
  }
}

const SLOW_PATH = Symbol('canonicalJson: the exact serialiser');

/** `JSON.stringify` replacer of the fast path: sorted copies of plain objects, refusals as `serialise` refuses. */
function sortingReplacer(this: unknown, key: string, value: unknown): unknown {
  // A value `toJSON` replaced (a Date, a Buffer): the exact serialiser ignores toJSON.
  if ((this as Record<string, unknown>)[key] !== value) throw SLOW_PATH;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
      return value;
    case 'object': {
      if (value === null) return value;
      if (Array.isArray(value)) return value;
      const keys = Object.keys(value);
      // No prototype: a "__proto__" key is then an own member, as the exact serialiser writes it (on `{}` the
      // assignment would set the prototype and drop the member).
      const out = Object.create(null) as Record<string, unknown>;
      for (const k of keys.sort()) {
        const c = k.charCodeAt(0);
        if (c >= 48 && c <= 57 && ARRAY_INDEX.test(k) && Number(k) < 4_294_967_295) throw SLOW_PATH;
        out[k] = (value as Record<string, unknown>)[k];
      }
      return out;
    }
    case 'undefined':
      return value;
    default:
      throw new TypeError(`canonicalJson: cannot serialise a ${typeof value}`);
  }
}

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/** The exact serialiser alone (the reference the fast path is tested against). */
export function canonicalJsonExact(value: unknown): string {
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
          return `[${Array.from(value, (v) => (v === undefined ? 'null' : serialise(v, stack))).join(',')}]`;
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
