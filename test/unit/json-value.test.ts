import { z } from 'zod';
import { formatIssues, GovernedChainInput, JsonValue, notJsonMessage } from '../../contracts/chain';

/**
 * Free JSON in a chain (a step's `input`, an http executor's `body`): what is not JSON is refused with
 * the field, the place inside the value and what it is, never the value. A service in another language
 * can send `1e400`, valid JSON text that JavaScript reads as Infinity (test/interop/go sends one).
 */

const SECRET = 'sk-live-do-not-echo';
const chainInput = (input: unknown) => ({
  chainId: 'c-1',
  credential: 'a.b.c',
  attestation: 'a.b.c',
  chain: {
    workload: 'agent:release-bot',
    steps: [{ id: 's1', action: 'notify', resource: { type: 'Channel', id: 'x' }, executor: { type: 'noop' }, input }],
  },
});
const refusal = (input: unknown): string => {
  const parsed = GovernedChainInput.safeParse(chainInput(input));
  expect(parsed.success).toBe(false);
  return formatIssues(parsed.error!);
};

describe('JsonValue', () => {
  it.each([
    [
      'a non-finite number',
      { v: { a: { b: Infinity } } },
      'chain.steps.0.input.v: not a JSON value: a.b is a non-finite number',
    ],
    [
      'NaN in an array',
      { v: [SECRET, [Number.NaN]] },
      'chain.steps.0.input.v: not a JSON value: 1.0 is a non-finite number',
    ],
    ['undefined in an array', { v: [1, undefined] }, 'chain.steps.0.input.v: not a JSON value: 1 is undefined'],
    ['a function', { v: { f: () => SECRET } }, 'chain.steps.0.input.v: not a JSON value: f is a function'],
    ['a bigint', { v: 10n }, 'chain.steps.0.input.v: not a JSON value: it is a bigint'],
    ['a symbol', { v: { x: [{ y: Symbol(SECRET) }] } }, 'chain.steps.0.input.v: not a JSON value: x.0.y is a symbol'],
    [
      'a Date',
      { v: { when: new Date(0) } },
      'chain.steps.0.input.v: not a JSON value: when is an object that is not a plain object',
    ],
    [
      'a Map',
      { v: new Map([[SECRET, 1]]) },
      'chain.steps.0.input.v: not a JSON value: it is an object that is not a plain object',
    ],
  ])('%s: the field, the place inside it and the kind; never the value', (_what, input, expected) => {
    const text = refusal(input);
    expect(text).toContain(expected);
    expect(text).toContain('(JSON has strings, finite numbers, booleans, null, arrays and plain objects)');
    expect(text).not.toContain(SECRET);
  });

  it('JSON values, -0 and objects without a prototype included, are accepted unchanged', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { k: 1 });
    const value = { s: 'x', n: -0, big: 1e308, b: false, z: null, a: [[], {}], bare };
    const parsed = GovernedChainInput.safeParse(chainInput(value));
    expect(parsed.success).toBe(true);
    expect(parsed.data!.chain.steps[0]!.input).toEqual(value);
  });

  it('the place of a failure comes from the nested issues, not from walking the value: each member is read once', () => {
    // 40 levels, each with a sibling member whose getter counts its reads; the bad number sits at the bottom.
    let reads = 0;
    let value: unknown = { bad: Infinity };
    for (let i = 0; i < 40; i++) {
      const level: Record<string, unknown> = { a: value };
      Object.defineProperty(level, 'sibling', {
        enumerable: true,
        get: () => {
          reads++;
          return [1, 2, 3];
        },
      });
      value = level;
    }
    const text = refusal({ v: value });
    expect(text).toContain(
      `chain.steps.0.input.v: not a JSON value: ${'a.'.repeat(9)}a.…(29 more).a.bad is a non-finite number`,
    );
    // zod reads each member once to validate it; a message that walked the value would read them again at every level.
    expect(reads).toBe(40);
  });

  it('a place that holds JSON (what the union refused is elsewhere) gets the message without a place', () => {
    expect(notJsonMessage({ ok: [1] })).toBe(
      'not a JSON value (JSON has strings, finite numbers, booleans, null, arrays and plain objects)',
    );
    expect(notJsonMessage({ ok: [1, undefined] }, ['ok', 1])).toBe(
      'not a JSON value: ok.1 is undefined (JSON has strings, finite numbers, booleans, null, arrays and plain objects)',
    );
  });

  it('has the JSON Schema of zod’s own z.json() (the published chain-input schema does not change)', () => {
    expect(z.toJSONSchema(JsonValue)).toEqual(z.toJSONSchema(z.json()));
  });
});
