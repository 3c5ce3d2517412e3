import { join } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { AuthzRequest, Decision } from '../../contracts/decision';
import { loadBundle, loadBundleFromFiles, type LoadedBundle } from '../../policies/bundle';
import { approvalsContext, requestContext } from '../../policies/context';
import { canonicalJson, PolicyEngine, sha256Hex } from '../../policies/engine';
import { compareDecision, runPolicyTests } from '../../policies/policy-tests';

const DEFAULT_DIR = join(__dirname, '../../policies/default');
const ERRORING_DIR = join(__dirname, '../fixtures/bundles/erroring');

const defaultBundle = loadBundle(DEFAULT_DIR);
const defaultEngine = PolicyEngine.fromBundle(defaultBundle);
const erroringBundle = loadBundle(ERRORING_DIR);
const erroringEngine = PolicyEngine.fromBundle(erroringBundle);

const trusted = { imageDigest: 'sha256:abc', trustZone: 'trusted', environment: 'dev' };
const OFF_WINDOW = '2025-01-15T14:00:00.000Z';
const IN_WINDOW = '2025-01-15T03:30:00.000Z';

function request(overrides: Partial<AuthzRequest> = {}): AuthzRequest {
  return {
    principal: { type: 'Workload', id: 'agent:release-bot' },
    action: 'deploy',
    resource: { type: 'Environment', id: 'prod' },
    context: { attestation: trusted },
    now: '2025-01-15T10:00:00.000Z',
    ...overrides,
  };
}

const cases = (bundle: LoadedBundle) =>
  bundle.tests.flatMap((file) => file.cases.map((c) => [`${file.file}: ${c.name}`, c] as const));

describe('default bundle test cases (data-driven)', () => {
  it('has cases for every effect', () => {
    const effects = new Set(cases(defaultBundle).map(([, c]) => c.expect.effect));
    expect([...effects].sort()).toEqual(['allow', 'deny', 'escalate']);
  });

  it.each(cases(defaultBundle))('%s', (_name, testCase) => {
    const decision = defaultEngine.decide(testCase.request);
    expect(compareDecision(decision, testCase.expect)).toEqual([]);
    expect(Decision.safeParse(decision).success).toBe(true);
    expect(decision.bundleDigest).toBe(defaultBundle.digest);
    expect(decision.evaluatedAt).toBe(testCase.request.now);
    if (decision.effect !== 'escalate') expect(decision.escalation).toBeUndefined();
    if (decision.effect === 'allow') expect(decision.reason).toBeUndefined();
    else expect(decision.reason).toMatch(/\S/);
  });

  it('runPolicyTests reports every case passed', () => {
    const report = runPolicyTests(defaultBundle, defaultEngine);
    expect(report.failed).toBe(0);
    expect(report.passed).toBe(cases(defaultBundle).length);
    expect(report.results.every((r) => r.failures.length === 0)).toBe(true);
  });

  it('runPolicyTests reports a mismatch with a readable failure', () => {
    const [, testCase] = cases(defaultBundle).find(([, c]) => c.expect.effect === 'escalate')!;
    const failures = compareDecision(defaultEngine.decide(testCase.request), {
      effect: 'allow',
      determiningPolicies: ['nope'],
      escalation: { roles: ['dba'], quorum: 9, deadline: '1d' },
      errors: true,
    });
    expect(failures).toEqual([
      expect.stringMatching(/^effect: expected allow, got escalate \(needs approval/),
      expect.stringMatching(/^determiningPolicies: expected \[nope\], got \[/),
      'errors: expected evaluation errors, got none',
      expect.stringMatching(/^escalation.roles: expected \[dba\]/),
      expect.stringMatching(/^escalation.quorum: expected 9/),
      expect.stringMatching(/^escalation.deadline: expected 1d/),
    ]);
  });
});

describe('the release-bot scenario the examples rely on', () => {
  it('allows deploy to staging, escalates prod to two sre-leads, denies drop_table on prod', () => {
    expect(defaultEngine.decide(request({ resource: { type: 'Environment', id: 'staging' } })).effect).toBe('allow');
    const prod = defaultEngine.decide(request());
    expect(prod.effect).toBe('escalate');
    expect(prod.escalation).toEqual({
      roles: ['sre-lead'],
      quorum: 2,
      deadline: '30m',
      policies: ['deploy-prod-requires-sre-approval'],
    });
    expect(prod.annotations['deploy-prod-requires-sre-approval']).toMatchObject({
      escalate: 'sre-lead',
      quorum: '2',
      deadline: '30m',
    });
    const drop = defaultEngine.decide(request({ action: 'drop_table', resource: { type: 'Database', id: 'prod' } }));
    expect(drop.effect).toBe('deny');
    expect(drop.determiningPolicies).toEqual(['db-drop-table-prod-forbid']);
  });

  it('allows prod deploy once two distinct sre-leads approved (context built with the helpers)', () => {
    const roles = Object.keys(defaultBundle.manifest.approverRoles);
    const one = approvalsContext(
      [
        { approver: 'alice', roles: ['sre-lead'] },
        { approver: 'alice', roles: ['sre-lead'] },
      ],
      roles,
    );
    expect(one.count).toBe(1);
    expect(defaultEngine.decide(request({ context: requestContext({}, trusted, one) })).effect).toBe('escalate');
    const two = approvalsContext(
      [
        { approver: 'alice', roles: ['sre-lead'] },
        { approver: 'bob', roles: ['sre-lead', 'dba'] },
      ],
      roles,
    );
    expect(two).toEqual({
      count: 2,
      approvers: ['alice', 'bob'],
      roles: ['dba', 'sre-lead'],
      byRole: { 'data-steward': 0, dba: 1, 'finance-approver': 0, 'security-officer': 0, 'sre-lead': 2 },
    });
    expect(defaultEngine.decide(request({ context: requestContext({}, trusted, two) })).effect).toBe('allow');
  });

  it('requestContext ignores attestation and approvals a step tries to set itself', () => {
    const forged = {
      attestation: { ...trusted, trustZone: 'trusted' },
      approvals: { count: 9 },
      now: 'x',
      ticket: 'OPS-1',
    };
    const context = requestContext(forged, { ...trusted, trustZone: 'sandbox' });
    expect(context).toEqual({ ticket: 'OPS-1', attestation: { ...trusted, trustZone: 'sandbox' } });
    expect(defaultEngine.decide(request({ context, resource: { type: 'Environment', id: 'staging' } })).effect).toBe(
      'deny',
    );
  });
});

describe('determinism', () => {
  it('gives byte-identical decisions for the same request, across engines and loads', () => {
    const otherEngine = PolicyEngine.fromBundle(loadBundle(DEFAULT_DIR));
    for (const [, testCase] of cases(defaultBundle)) {
      const first = JSON.stringify(defaultEngine.decide(testCase.request));
      expect(JSON.stringify(defaultEngine.decide(testCase.request))).toBe(first);
      expect(JSON.stringify(otherEngine.decide(structuredClone(testCase.request)))).toBe(first);
    }
  });

  it('is independent of key order in the request (canonical input digest)', () => {
    const a = request({ context: { attestation: trusted, version: '1.2.3' } });
    const b: AuthzRequest = {
      now: a.now,
      context: {
        version: '1.2.3',
        attestation: { environment: 'dev', trustZone: 'trusted', imageDigest: 'sha256:abc' },
      },
      resource: { id: 'prod', type: 'Environment' },
      action: 'deploy',
      principal: { id: 'agent:release-bot', type: 'Workload' },
    };
    expect(JSON.stringify(defaultEngine.decide(b))).toBe(JSON.stringify(defaultEngine.decide(a)));
  });

  it('records the digest of the exact input and the time passed in', () => {
    const req = request();
    const decision = defaultEngine.decide(req);
    expect(decision.inputDigest).toBe(sha256Hex(canonicalJson(req)));
    expect(decision.inputDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(decision.evaluatedAt).toBe(req.now);
    const later = defaultEngine.decide(request({ now: '2025-01-15T10:00:01.000Z' }));
    expect(later.inputDigest).not.toBe(decision.inputDigest);
    expect(later.evaluatedAt).toBe('2025-01-15T10:00:01.000Z');
  });

  it('preparses once per engine and never re-parses per decision', () => {
    jest.isolateModules(() => {
      // A fresh module registry, so the spies sit under the engine's own import of cedar.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const wasm = require('@cedar-policy/cedar-wasm/nodejs') as typeof cedar;
      const preparse = jest.spyOn(wasm, 'preparsePolicySet');
      const stateful = jest.spyOn(wasm, 'statefulIsAuthorized');
      const stateless = jest.spyOn(wasm, 'isAuthorized');
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const fresh = require('../../policies/engine') as typeof import('../../policies/engine');
      const engine = fresh.PolicyEngine.fromBundle(defaultBundle);
      // The whole set, then each action's slice (with and, when it has escalatable forbids, without them)
      // and the slice of unnamed actions.
      const scopes = defaultBundle.policies.map((p) => ({ p, actions: fresh.actionsNamedBy(p.text) }));
      const named = new Set(scopes.flatMap((s) => [...(s.actions ?? [])]));
      const sliceSets = [...named, undefined].map((action) => {
        const slice = scopes.filter((s) => !s.actions || (action !== undefined && s.actions.has(action)));
        return slice.some((s) => s.p.effect === 'forbid' && s.p.escalation) ? 2 : 1;
      });
      const sets = 1 + sliceSets.reduce((a, b) => a + b, 0);
      expect(named.size).toBeGreaterThan(5);
      expect(preparse).toHaveBeenCalledTimes(sets);
      for (let i = 0; i < 5; i++) engine.decide(request());
      expect(preparse).toHaveBeenCalledTimes(sets);
      expect(stateful).toHaveBeenCalledTimes(10); // escalate: two evaluations each
      expect(stateless).not.toHaveBeenCalled();
    });
  });
});

describe('fail closed', () => {
  it('denies when a forbid errors although Cedar alone would allow', () => {
    const req: AuthzRequest = {
      principal: { type: 'Workload', id: 'svc:reader' },
      action: 'read',
      resource: { type: 'Document', id: 'report' },
      context: { size: 10_000_000 },
      now: '2025-01-15T10:00:00.000Z',
    };
    // The premise: plain Cedar skips the erroring forbids and allows.
    const plain = cedar.isAuthorized({
      principal: { type: 'Workload', id: 'svc:reader' },
      action: { type: 'Action', id: 'read' },
      resource: { type: 'Document', id: 'report' },
      context: { size: 10_000_000 },
      policies: { staticPolicies: Object.fromEntries(erroringBundle.policies.map((p) => [p.id, p.text])) },
      entities: [],
    });
    expect(plain.type === 'success' && plain.response.decision).toBe('allow');

    const decision = erroringEngine.decide(req);
    expect(decision.effect).toBe('deny');
    expect(decision.escalation).toBeUndefined();
    expect(decision.determiningPolicies).toEqual(['read-huge-forbid', 'read-large-needs-review']);
    expect(decision.errors).toEqual([
      expect.stringMatching(/^read-huge-forbid: integer overflow/),
      expect.stringMatching(/^read-large-needs-review: integer overflow/),
    ]);
    expect(decision.reason).toBe('policy evaluation failed in read-huge-forbid, read-large-needs-review: fail closed');
  });

  it.each(cases(erroringBundle))('erroring fixture: %s', (_name, testCase) => {
    expect(compareDecision(erroringEngine.decide(testCase.request), testCase.expect)).toEqual([]);
  });

  it('denies a context Cedar cannot represent (null, fractions) instead of throwing', () => {
    const contexts: AuthzRequest['context'][] = [
      { attestation: trusted, version: null },
      { attestation: trusted, ratio: 0.5 },
    ];
    for (const context of contexts) {
      const decision = defaultEngine.decide(request({ resource: { type: 'Environment', id: 'staging' }, context }));
      expect(decision.effect).toBe('deny');
      expect(decision.errors).toEqual([expect.stringMatching(/^cedar: /)]);
      expect(decision.reason).toBe('policy evaluation failed: fail closed');
    }
  });

  it('denies a request that does not match the contract, naming the field', () => {
    const bad = { ...request(), principal: { type: 'User', id: 'mallory' } } as unknown as AuthzRequest;
    const decision = defaultEngine.decide(bad);
    expect(decision.effect).toBe('deny');
    expect(decision.errors).toEqual([expect.stringMatching(/^request\.principal\.type: /)]);
    expect(decision.inputDigest).toBe(sha256Hex(canonicalJson(bad)));
    expect(Decision.safeParse(decision).success).toBe(true);
  });

  it.each(['2025-01-15', '2025-01-15T10:00:00+02:00', '2025-02-30T10:00:00Z', '2025-01-15T10:00:00.1234Z', ''])(
    'denies an evaluation time that is not strict ISO-8601 UTC: %p',
    (now) => {
      const decision = defaultEngine.decide(request({ now, resource: { type: 'Environment', id: 'staging' } }));
      expect(decision.effect).toBe('deny');
      expect(decision.errors).toEqual([expect.stringMatching(/^request\.now: /)]);
      expect(decision.evaluatedAt).toBe(now);
    },
  );
});

describe('time', () => {
  it('uses request.now, not a now the caller put in the context', () => {
    const migrate = (now: string, context: AuthzRequest['context']) =>
      defaultEngine.decide(request({ action: 'migrate', resource: { type: 'Database', id: 'prod' }, now, context }));
    expect(migrate(OFF_WINDOW, { attestation: trusted, now: IN_WINDOW }).escalation?.roles).toEqual([
      'dba',
      'sre-lead',
    ]);
    expect(migrate(IN_WINDOW, { attestation: trusted, now: OFF_WINDOW, nowEpochSeconds: 0 }).escalation?.roles).toEqual(
      ['dba'],
    );
  });

  it('exposes the time as a datetime (now) and as epoch seconds (nowEpochSeconds)', () => {
    const bundle = syntheticBundle(`
      @id("act-permit") permit (principal, action == Action::"act", resource);
      @id("before-launch-forbid") forbid (principal, action, resource) when { context.nowEpochSeconds < 1736935200 };
      @id("before-2025-forbid") forbid (principal, action, resource) when { context.now < datetime("2025-01-01T00:00:00Z") };
    `);
    const engine = PolicyEngine.fromBundle(bundle);
    const at = (now: string) => engine.decide(actRequest({}, now));
    expect(at('2025-01-15T10:00:00.000Z').effect).toBe('allow');
    expect(at('2025-01-15T09:59:59.999Z').determiningPolicies).toEqual(['before-launch-forbid']);
    expect(at('2024-12-31T23:59:59Z').determiningPolicies).toEqual(['before-2025-forbid', 'before-launch-forbid']);
  });
});

describe('escalation', () => {
  const engine = PolicyEngine.fromBundle(
    syntheticBundle(`
      @id("act-permit") permit (principal, action == Action::"act", resource);
      @id("esc-x") @escalate("alpha") @quorum("3") @deadline("2h")
      forbid (principal, action, resource) when { context.flags.x };
      @id("esc-y") @escalate("beta, alpha")
      forbid (principal, action, resource) when { context.flags.y };
      @id("esc-z") @escalate("gamma") @quorum("1") @deadline("10m")
      forbid (principal, action, resource) when { context.flags.z };
      @id("hard-forbid") forbid (principal, action, resource) when { context.flags.hard };
    `),
  );
  const decide = (flags: Partial<Record<'x' | 'y' | 'z' | 'hard', boolean>>) =>
    engine.decide(actRequest({ flags: { x: false, y: false, z: false, hard: false, ...flags } }));

  it('uses the annotations of a single escalatable forbid', () => {
    expect(decide({ x: true }).escalation).toEqual({
      roles: ['alpha'],
      quorum: 3,
      deadline: '2h',
      policies: ['esc-x'],
    });
  });

  it('falls back to the manifest defaults for quorum and deadline', () => {
    expect(decide({ y: true }).escalation).toEqual({
      roles: ['alpha', 'beta'],
      quorum: 2,
      deadline: '45m',
      policies: ['esc-y'],
    });
  });

  it('merges: roles = union, quorum = max, deadline = min', () => {
    const decision = decide({ x: true, y: true, z: true });
    expect(decision.effect).toBe('escalate');
    expect(decision.determiningPolicies).toEqual(['esc-x', 'esc-y', 'esc-z']);
    expect(decision.escalation).toEqual({
      roles: ['alpha', 'beta', 'gamma'],
      quorum: 3,
      deadline: '10m',
      policies: ['esc-x', 'esc-y', 'esc-z'],
    });
    expect(Object.keys(decision.annotations)).toEqual(['esc-x', 'esc-y', 'esc-z']);
    expect(decide({ y: true, z: true }).escalation).toMatchObject({ quorum: 2, deadline: '10m' });
  });

  it('denies when any determining forbid is not escalatable', () => {
    const decision = decide({ x: true, hard: true });
    expect(decision.effect).toBe('deny');
    expect(decision.determiningPolicies).toEqual(['esc-x', 'hard-forbid']);
    expect(decision.escalation).toBeUndefined();
    expect(decision.reason).toBe('denied by hard-forbid');
  });

  it('denies when nothing would permit the request even without the escalatable forbids', () => {
    const decision = defaultEngine.decide(
      request({
        action: 'export_data',
        resource: { type: 'Database', id: 'prod' },
        context: { attestation: trusted, rowCount: 50_000 },
      }),
    );
    expect(decision.effect).toBe('deny');
    expect(decision.determiningPolicies).toEqual(['data-export-bulk-requires-steward']);
    expect(decision.reason).toMatch(/^approval cannot help: no policy permits export_data on Database::"prod"/);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every depth, keeps array order, drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1, { z: true, y: null }], c: 'x' }, u: undefined })).toBe(
      '{"a":{"c":"x","d":[3,1,{"y":null,"z":true}]},"b":1}',
    );
    expect(canonicalJson('é"\n')).toBe(JSON.stringify('é"\n'));
  });

  it('refuses values JSON cannot represent', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/cyclic/);
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(/non-finite/);
    expect(() => canonicalJson({ n: 1n })).toThrow(/bigint/);
  });

  it('sha256Hex matches a known vector', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

/** A small in-memory bundle: action `act` on `Thing`, boolean flags in the context. */
function syntheticBundle(policies: string): LoadedBundle {
  return loadBundleFromFiles([
    {
      path: 'manifest.yaml',
      content: [
        'version: 1',
        'name: synthetic',
        'trustedIssuers: [{ issuer: "https://i.example", audience: aud, jwks: { file: i.json } }]',
        'trustedAttesters: [{ issuer: "https://a.example", jwks: { file: a.json } }]',
        'approverRoles: { alpha: {}, beta: {}, gamma: {} }',
        'approvals: { defaultQuorum: 2, defaultDeadline: 45m }',
      ].join('\n'),
    },
    {
      path: 'schema.cedarschema',
      content: `entity Workload; entity Thing;
        action act appliesTo { principal: [Workload], resource: [Thing], context: {
          now: __cedar::datetime, nowEpochSeconds: Long,
          flags: { x: Bool, y: Bool, z: Bool, hard: Bool } } };`,
    },
    { path: 'policies.cedar', content: policies },
  ]);
}

function actRequest(context: AuthzRequest['context'], now = '2025-01-15T10:00:00.000Z'): AuthzRequest {
  return {
    principal: { type: 'Workload', id: 'w' },
    action: 'act',
    resource: { type: 'Thing', id: 't' },
    context,
    now,
  };
}
