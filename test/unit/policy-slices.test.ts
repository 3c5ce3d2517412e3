import fc from 'fast-check';
import type { AuthzRequest } from '../../contracts/decision';
import { loadBundle, loadBundleFromFiles, type BundleFile } from '../../policies/bundle';
import { actionsNamedBy, PolicyEngine } from '../../policies/engine';
import { DEFAULT_BUNDLE_DIR, GENERATED_MANIFEST } from '../harness/policy';

/**
 * The engine evaluates only the slice of the policy set an action's scope can match (`PolicySlice` in
 * policies/engine.ts). These tests hold it to the whole set: the same trace (decision and path) for
 * every request, over the default bundle and over generated bundles with every kind of action scope.
 */

/** A request to a generated bundle (schema below: a Long `n` in the context). */
function generatedRequest(action: string, n: number): AuthzRequest {
  return {
    principal: { type: 'Workload', id: 'w' },
    action,
    resource: { type: 'Thing', id: 't' },
    context: { n },
    now: '2025-01-15T10:00:00.000Z',
  };
}

describe('actionsNamedBy', () => {
  const scope = (s: string) => actionsNamedBy(`permit (principal, ${s}, resource);`);

  test('names the actions of == and in, single or list', () => {
    expect(scope('action == Action::"pay"')).toEqual(new Set(['pay']));
    expect(scope('action in Action::"pay"')).toEqual(new Set(['pay']));
    expect(scope('action in [Action::"fs.read", Action::"fs.list"]')).toEqual(new Set(['fs.read', 'fs.list']));
    expect(scope('action in []')).toEqual(new Set());
  });

  test('puts a policy in every slice when its scope names no action of type Action, or cannot be read', () => {
    expect(scope('action')).toBeUndefined();
    expect(scope('action == Ops::Action::"pay"')).toBeUndefined();
    expect(scope('action in [Action::"pay", Ops::Action::"pay"]')).toBeUndefined();
    expect(actionsNamedBy('permit (principal, action == Action::"pay", resource')).toBeUndefined();
    expect(actionsNamedBy('')).toBeUndefined();
  });
});

describe('sliced evaluation decides what the whole set decides', () => {
  test('default bundle: every test case, re-aimed at every action a policy names and at unnamed ones', () => {
    const bundle = loadBundle(DEFAULT_BUNDLE_DIR);
    const sliced = PolicyEngine.fromBundle(bundle);
    const whole = PolicyEngine.fromBundle(bundle, { slice: false });
    const named = new Set(bundle.policies.flatMap((p) => [...(actionsNamedBy(p.text) ?? [])]));
    expect(named.size).toBeGreaterThan(5);
    expect(sliced.slicedActions).toBe(named.size); // within the budget: every named action has its slice
    const actions = [...named, 'not-in-any-policy', 'Deploy', '__proto__', 'constructor', 'deploy '];
    const requests = bundle.tests.flatMap((f) => f.cases.map((c) => c.request as AuthzRequest));
    expect(requests.length).toBeGreaterThan(20);
    const effects = new Set<string>();
    for (const request of requests)
      for (const action of [request.action, ...actions]) {
        const r = { ...request, action };
        const expected = whole.trace(r);
        expect(sliced.trace(r)).toEqual(expected);
        effects.add(`${expected.decision.effect}/${expected.path}`);
      }
    // The comparison covered allows, forbids, escalations and the default deny, not one path only.
    expect([...effects].sort()).toEqual(
      expect.arrayContaining(['allow/allow', 'deny/default-deny', 'deny/forbid', 'escalate/escalate']),
    );
  });

  const SCHEMA = `
entity Workload;
entity Thing;
action "a", "b", "c" appliesTo {
  principal: [Workload],
  resource: [Thing],
  context: { now: __cedar::datetime, nowEpochSeconds: Long, n: Long }
};
`;
  const scopes = [
    'action',
    'action == Action::"a"',
    'action == Action::"c"',
    'action in Action::"b"',
    'action in [Action::"a", Action::"b"]',
    'action in [Action::"b", Action::"c"]',
  ];
  const policy = fc.record({
    effect: fc.constantFrom('permit', 'forbid'),
    scope: fc.constantFrom(...scopes),
    k: fc.integer({ min: -2, max: 2 }),
    erroring: fc.integer({ min: 0, max: 9 }).map((x) => x < 2),
    escalate: fc.boolean(),
  });

  test.each([
    [20, 20],
    [300, 0], // under the action cap, over the text budget: 300 slices would each repeat the long list
    [600, 0], // over the action cap
  ])('a policy naming %i actions: %i of them sliced, the same decisions', (n, expected) => {
    const names = Array.from({ length: n }, (_, i) => `a${i}`);
    const files: BundleFile[] = [
      { path: 'manifest.yaml', content: GENERATED_MANIFEST },
      {
        path: 'schema.cedarschema',
        content: SCHEMA.replace('action "a", "b", "c"', `action ${names.map((a) => JSON.stringify(a)).join(', ')}`),
      },
      {
        path: 'policies.cedar',
        content: [
          `@id("many") permit (principal, action in [${names.map((a) => `Action::"${a}"`).join(', ')}], resource) when { context.n > 0 };`,
          '@id("cap") forbid (principal, action, resource) when { context.n > 2 };',
          '@id("one") @escalate("sre-lead") forbid (principal, action == Action::"a1", resource) when { context.n > 1 };',
        ].join('\n'),
      },
    ];
    const bundle = loadBundleFromFiles(files, 'generated');
    const sliced = PolicyEngine.fromBundle(bundle);
    const whole = PolicyEngine.fromBundle(bundle, { slice: false });
    expect(sliced.slicedActions).toBe(expected);
    expect(whole.slicedActions).toBe(0);
    for (const action of ['a0', 'a1', names[n - 1]!, 'zz'])
      for (const n of [0, 1, 2, 3]) {
        expect(sliced.trace(generatedRequest(action, n))).toEqual(whole.trace(generatedRequest(action, n)));
      }
  });

  test('generated bundles: every scope kind, escalatable forbids, erroring policies', () => {
    fc.assert(
      fc.property(
        fc.array(policy, { minLength: 1, maxLength: 8 }),
        fc.constantFrom('a', 'b', 'c', 'd'),
        fc.integer({ min: -3, max: 3 }),
        (specs, action, n) => {
          const text = specs
            .map((p, i) => {
              const escalate = p.effect === 'forbid' && p.escalate ? '@escalate("sre-lead") ' : '';
              const condition = p.erroring ? 'context.n * 4611686018427387905 > 0' : `context.n > ${p.k}`;
              return `@id("p${i}") ${escalate}\n${p.effect} (principal, ${p.scope}, resource) when { ${condition} };`;
            })
            .join('\n');
          const files: BundleFile[] = [
            { path: 'manifest.yaml', content: GENERATED_MANIFEST },
            { path: 'schema.cedarschema', content: SCHEMA },
            { path: 'policies.cedar', content: text },
          ];
          const bundle = loadBundleFromFiles(files, 'generated');
          const request = generatedRequest(action, n);
          expect(PolicyEngine.fromBundle(bundle).trace(request)).toEqual(
            PolicyEngine.fromBundle(bundle, { slice: false }).trace(request),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
