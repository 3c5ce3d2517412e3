import fc from 'fast-check';
import type { AuthzRequest, Decision } from '../../contracts/decision';
import { loadBundle, loadBundleFromFiles, type BundleFile } from '../../policies/bundle';
import { canonicalJson, DecisionPath, PolicyEngine } from '../../policies/engine';
import { durationMs } from '../../policies/manifest';
import { DEFAULT_BUNDLE_DIR, GENERATED_MANIFEST } from '../harness/policy';

/**
 * Property tests of the decision function (DESIGN §3) against a reference model, over generated
 * bundles: one action, a Long `n` in the context, permits and forbids with thresholds on `n`, some
 * forbids escalatable, some policies that error (Long overflow) for |n| ≥ 2.
 */

const SCHEMA = `
entity Workload;
entity Thing;
action "act" appliesTo {
  principal: [Workload],
  resource: [Thing],
  context: { now: __cedar::datetime, nowEpochSeconds: Long, n: Long }
};
`;
const MANIFEST = GENERATED_MANIFEST;

interface PolicySpec {
  effect: 'permit' | 'forbid';
  op: '>' | '<' | '==';
  k: number;
  /** Errors (Long overflow) when |n| >= 2; otherwise true iff n == 1. */
  erroring: boolean;
  escalate?: { roles: string[]; quorum?: number; deadline?: string };
}

const policySpec: fc.Arbitrary<PolicySpec> = fc
  .record({
    effect: fc.constantFrom('permit' as const, 'forbid' as const),
    op: fc.constantFrom('>' as const, '<' as const, '==' as const),
    k: fc.integer({ min: -3, max: 3 }),
    erroring: fc.integer({ min: 0, max: 9 }).map((x) => x < 2),
    escalate: fc.option(
      fc.record(
        {
          roles: fc.uniqueArray(fc.constantFrom('sre-lead', 'dba', 'finance-approver'), { minLength: 1, maxLength: 2 }),
          quorum: fc.integer({ min: 1, max: 3 }),
          deadline: fc.constantFrom('15m', '30m', '1h', '2h'),
        },
        { requiredKeys: ['roles'] },
      ),
      { nil: undefined },
    ),
  })
  .map((p) => (p.effect === 'permit' ? { ...p, escalate: undefined } : p));

const bundleSpec = fc.array(policySpec, { minLength: 1, maxLength: 7 });
const nArb = fc.integer({ min: -3, max: 3 });

function policyText(p: PolicySpec, id: string): string {
  const annotations = [`@id("${id}")`];
  if (p.escalate) {
    annotations.push(`@escalate("${p.escalate.roles.join(', ')}")`);
    if (p.escalate.quorum !== undefined) annotations.push(`@quorum("${p.escalate.quorum}")`);
    if (p.escalate.deadline !== undefined) annotations.push(`@deadline("${p.escalate.deadline}")`);
  }
  const condition = p.erroring ? 'context.n * 4611686018427387905 > 0' : `context.n ${p.op} ${p.k}`;
  return `${annotations.join(' ')}\n${p.effect} (principal, action == Action::"act", resource) when { ${condition} };\n`;
}

function build(
  specs: readonly PolicySpec[],
  order?: readonly number[],
  duplicate: readonly number[] = [],
): { engine: PolicyEngine; ids: string[] } {
  const indices = order ?? specs.map((_, i) => i);
  const texts = indices.map((i) => policyText(specs[i]!, `p${i}`));
  for (const i of duplicate) texts.push(policyText(specs[i]!, `p${i}-dup`));
  const files: BundleFile[] = [
    { path: 'manifest.yaml', content: MANIFEST },
    { path: 'schema.cedarschema', content: SCHEMA },
    { path: 'policies.cedar', content: texts.join('\n') },
  ];
  return { engine: PolicyEngine.fromBundle(loadBundleFromFiles(files, 'generated')), ids: indices.map((i) => `p${i}`) };
}

function request(n: number): AuthzRequest {
  return {
    principal: { type: 'Workload', id: 'w' },
    action: 'act',
    resource: { type: 'Thing', id: 't' },
    context: { n },
    now: '2025-01-15T10:00:00.000Z',
  };
}

/** The reference model of the decision function. */
function model(
  specs: readonly PolicySpec[],
  n: number,
): {
  effect: Decision['effect'];
  determining: string[];
  escalation?: { roles: string[]; quorum: number; deadline: string };
} {
  const applies = (p: PolicySpec): boolean | 'error' => {
    if (p.erroring) return Math.abs(n) >= 2 ? 'error' : n === 1;
    return p.op === '>' ? n > p.k : p.op === '<' ? n < p.k : n === p.k;
  };
  const results = specs.map((p, i) => ({ p, id: `p${i}`, r: applies(p) }));
  const erroring = results
    .filter((x) => x.r === 'error')
    .map((x) => x.id)
    .sort();
  if (erroring.length > 0) return { effect: 'deny', determining: erroring };
  const permits = results
    .filter((x) => x.r === true && x.p.effect === 'permit')
    .map((x) => x.id)
    .sort();
  const forbids = results.filter((x) => x.r === true && x.p.effect === 'forbid');
  if (forbids.length === 0)
    return permits.length > 0 ? { effect: 'allow', determining: permits } : { effect: 'deny', determining: [] };
  const blocking = forbids.map((x) => x.id).sort();
  if (!forbids.every((x) => x.p.escalate) || permits.length === 0) return { effect: 'deny', determining: blocking };
  const roles = [...new Set(forbids.flatMap((x) => x.p.escalate!.roles))].sort();
  const quorum = Math.max(...forbids.map((x) => x.p.escalate!.quorum ?? 1));
  const deadline = forbids
    .map((x) => x.p.escalate!.deadline ?? '30m')
    .sort((a, b) => durationMs(a) - durationMs(b))[0]!;
  return { effect: 'escalate', determining: blocking, escalation: { roles, quorum, deadline } };
}

const RUNS = { numRuns: 150 };

describe('the decision function matches its reference model', () => {
  it('effect, determining policies and merged escalation requirements', () => {
    fc.assert(
      fc.property(bundleSpec, nArb, (specs, n) => {
        const d = build(specs).engine.decide(request(n));
        const m = model(specs, n);
        expect(d.effect).toBe(m.effect);
        expect(d.determiningPolicies).toEqual(m.determining);
        if (m.escalation) expect(d.escalation).toEqual({ ...m.escalation, policies: m.determining });
        else expect(d.escalation).toBeUndefined();
      }),
      RUNS,
    );
  });
});

describe('named properties (DESIGN §3)', () => {
  it('same request and bundle → byte-identical decision, across engines', () => {
    fc.assert(
      fc.property(bundleSpec, nArb, (specs, n) => {
        const a = build(specs).engine;
        const b = build(specs).engine;
        const first = canonicalJson(a.decide(request(n)));
        expect(canonicalJson(a.decide(request(n)))).toBe(first);
        expect(JSON.stringify(b.decide(request(n)))).toBe(JSON.stringify(a.decide(request(n))));
      }),
      { numRuns: 60 },
    );
  });

  it('the order and duplication of policies do not change decisions', () => {
    const arb = bundleSpec.chain((specs) =>
      fc.tuple(
        fc.constant(specs),
        fc.shuffledSubarray(
          specs.map((_, i) => i),
          { minLength: specs.length, maxLength: specs.length },
        ),
        fc.subarray(specs.map((_, i) => i)),
        nArb,
      ),
    );
    fc.assert(
      fc.property(arb, ([specs, order, dups, n]) => {
        const plain = build(specs).engine.decide(request(n));
        const shuffled = build(specs, order, dups).engine.decide(request(n));
        expect(shuffled.effect).toBe(plain.effect);
        const undup = (ids: readonly string[]) => [...new Set(ids.map((id) => id.replace(/-dup$/, '')))].sort();
        expect(undup(shuffled.determiningPolicies)).toEqual(undup(plain.determiningPolicies));
        const req = (d: Decision) =>
          d.escalation
            ? { roles: d.escalation.roles, quorum: d.escalation.quorum, deadline: d.escalation.deadline }
            : undefined;
        expect(req(shuffled)).toEqual(req(plain));
      }),
      { numRuns: 100 },
    );
  });

  it('default deny: when nothing permits the decision is deny; with nothing applying, it names no policy', () => {
    let nothingApplied = 0;
    fc.assert(
      fc.property(
        bundleSpec.map((s) => s.map((p) => ({ ...p, effect: 'forbid' as const }))),
        nArb,
        (specs, n) => {
          const { decision, path } = build(specs).engine.trace(request(n));
          expect(decision.effect).toBe('deny');
          expect([
            DecisionPath.DefaultDeny,
            DecisionPath.Forbid,
            DecisionPath.ApprovalCannotHelp,
            DecisionPath.EvaluationError,
          ]).toContain(path);
          if (model(specs, n).determining.length === 0) {
            nothingApplied += 1;
            expect(path).toBe(DecisionPath.DefaultDeny);
            expect(decision.determiningPolicies).toEqual([]);
            expect(decision.errors).toEqual([]);
          }
        },
      ),
      { numRuns: 80 },
    );
    expect(nothingApplied).toBeGreaterThan(0);
    // And an action no policy of the shipped bundle mentions.
    const engine = PolicyEngine.fromBundle(loadBundle(DEFAULT_BUNDLE_DIR));
    fc.assert(
      fc.property(
        fc
          .stringMatching(/^[a-z][a-z_]{2,12}$/)
          .filter(
            (a) => !['read', 'export_data', 'migrate', 'drop_table', 'deploy', 'rollback', 'notify', 'pay'].includes(a),
          ),
        (action) => {
          const d = engine.decide({
            principal: { type: 'Workload', id: 'agent:x' },
            action,
            resource: { type: 'Thing', id: 'y' },
            context: { attestation: { imageDigest: 'sha256:0', trustZone: 'trusted', environment: 'dev' } },
            now: '2025-01-15T10:00:00.000Z',
          });
          expect(d).toMatchObject({ effect: 'deny', determiningPolicies: [], errors: [] });
        },
      ),
      { numRuns: 50 },
    );
  });

  it('forbid beats permit: an applying non-escalatable forbid denies whatever permits apply', () => {
    fc.assert(
      fc.property(bundleSpec, nArb, (specs, n) => {
        const hard: PolicySpec = { effect: 'forbid', op: '>', k: -100, erroring: false };
        const allPermit: PolicySpec = { effect: 'permit', op: '>', k: -100, erroring: false };
        const d = build([...specs, allPermit, hard]).engine.decide(request(n));
        expect(d.effect).toBe('deny');
        if (d.errors.length === 0) expect(d.determiningPolicies).toContain(`p${specs.length + 1}`);
      }),
      { numRuns: 80 },
    );
  });

  it('any evaluation error → deny, whatever else applies', () => {
    fc.assert(
      fc.property(bundleSpec, fc.constantFrom(-3, -2, 2, 3), (specs, n) => {
        const erroring: PolicySpec = { effect: 'permit', op: '>', k: 0, erroring: true };
        const d = build([...specs, erroring]).engine.decide(request(n));
        expect(d.effect).toBe('deny');
        expect(d.errors.length).toBeGreaterThan(0);
        expect(d.determiningPolicies).toContain(`p${specs.length}`);
      }),
      { numRuns: 80 },
    );
  });

  it('escalate only when every determining policy is an escalatable forbid (and the rest allows)', () => {
    let escalated = 0;
    fc.assert(
      fc.property(bundleSpec, nArb, (specs, n) => {
        const { engine } = build(specs);
        const d = engine.decide(request(n));
        if (d.effect !== 'escalate') return;
        escalated += 1;
        for (const id of d.determiningPolicies) {
          const spec = specs[Number(id.slice(1))]!;
          expect(spec.effect).toBe('forbid');
          expect(spec.escalate).toBeDefined();
        }
        // Without the escalatable forbids the request would be allowed.
        const rest = specs.filter((s) => !(s.effect === 'forbid' && s.escalate));
        expect(model(rest, n).effect).toBe('allow');
      }),
      RUNS,
    );
    expect(escalated).toBeGreaterThan(0);
  });
});
