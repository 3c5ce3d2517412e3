import fc from 'fast-check';
import { canonicalJson, canonicalJsonExact } from '../../core/canonical';

// canonicalJson takes a fast path (the engine's JSON.stringify with sorted keys) and falls back to the exact
// serialiser where the engine would differ. Every digest and signature of the protocol is over these bytes, so
// both must agree on every value: generated JSON, and the values where the fast path must step aside.
describe('canonicalJson', () => {
  test('equals the exact serialiser on generated JSON values (integer-like keys, unicode, nesting)', () => {
    const key = fc.oneof(
      fc.string(),
      fc.constantFrom('0', '1', '2', '10', '01', '4294967294', '4294967295', '-1', '', '__proto__', 'constructor'),
    );
    const json = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.constant(null),
        fc.boolean(),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.integer(),
        fc.string({ unit: 'binary' }),
        fc.array(tie('value'), { maxLength: 5 }),
        fc.dictionary(key, tie('value'), { maxKeys: 6 }),
      ),
    })).value;
    fc.assert(
      fc.property(json, (v) => {
        expect(canonicalJson(v)).toBe(canonicalJsonExact(v));
      }),
      { numRuns: 2_000 },
    );
  });

  test('keeps a "__proto__" member (JSON.parse makes it an own member; the digest must cover it)', () => {
    const v = JSON.parse('{"__proto__":{"a":1},"b":1}') as unknown;
    expect(canonicalJson(v)).toBe('{"__proto__":{"a":1},"b":1}');
    expect(canonicalJsonExact(v)).toBe('{"__proto__":{"a":1},"b":1}');
  });

  test('writes the holes of a sparse array as null, on both paths', () => {
    // eslint-disable-next-line no-sparse-arrays
    const sparse = [, 1];
    expect(canonicalJson(sparse)).toBe('[null,1]');
    expect(canonicalJsonExact(sparse)).toBe('[null,1]');
  });

  test('sorts keys, drops undefined members, writes undefined array members as null', () => {
    expect(canonicalJson({ b: 1, a: [undefined, { d: undefined, c: 'x' }] })).toBe('{"a":[null,{"c":"x"}],"b":1}');
    expect(canonicalJson({ '10': 1, '2': 2, a: 3 })).toBe('{"10":1,"2":2,"a":3}');
  });

  test('ignores toJSON as the exact serialiser does (a Date is an object without keys)', () => {
    const v = { when: new Date(0), buf: Buffer.from('ab'), nested: [{ toJSON: undefined, x: 1 }] };
    expect(canonicalJson(v)).toBe(canonicalJsonExact(v));
    expect(canonicalJson({ when: new Date(0) })).toBe('{"when":{}}');
  });

  test('refuses what it cannot represent, with the same errors', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = { back: cyclic };
    for (const bad of [{ n: Number.NaN }, [Infinity], { f: () => 1 }, { b: 1n }, cyclic, undefined, [Symbol('s')]]) {
      let exact: unknown;
      try {
        canonicalJsonExact(bad);
      } catch (err) {
        exact = err;
      }
      expect(exact).toBeInstanceOf(TypeError);
      expect(() => canonicalJson(bad)).toThrow((exact as Error).message);
    }
  });
});
