import { proofBytes } from '../../audit/archive';
import { canonicalJson } from '../../core/canonical';

// proofBytes writes an archived proof in one pass; it must be the same bytes as the canonical JSON indented
// (what the archive wrote before, and what `evidence` compares).
const reference = (p: unknown): string => `${JSON.stringify(JSON.parse(canonicalJson(p)), null, 2)}\n`;

describe('proofBytes', () => {
  test('is the canonical JSON, indented: keys sorted at every depth, integer-like keys, undefined and unicode', () => {
    const cases: unknown[] = [
      { b: 1, a: { '2': 'x', '10': [1, { z: null, y: undefined, '1': 2 }], b: 'é\u2028' }, c: [undefined, 3.5e-7, -0] },
      {
        seal: 's',
        histories: [
          { events: [{ eventId: '1', x: { payloads: [{ metadata: { encoding: 'anNvbg==' }, data: 'e30=' }] } }] },
        ],
        chainId: 'c',
      },
    ];
    cases.push(JSON.parse('{"seal":"s","x":{"__proto__":{"a":1},"b":2}}'));
    for (const c of cases) expect(proofBytes(c as never).toString()).toBe(reference(c));
    expect(proofBytes(cases[2] as never).toString()).toContain('"__proto__"');
  });
  test('refuses what canonical JSON refuses', () => {
    expect(() => proofBytes({ a: Number.NaN } as never)).toThrow(/non-finite/);
  });
});
