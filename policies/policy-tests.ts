import type { Decision } from '../contracts/decision';
import type { LoadedBundle } from './bundle';
import { DecisionPath, PolicyEngine } from './engine';
import type { ExpectedDecision } from './test-case';

/** The outcome of one data-driven policy test case. */
export interface PolicyTestResult {
  readonly file: string;
  readonly name: string;
  readonly passed: boolean;
  /** One line per mismatch between the expectation and the decision; empty when passed. */
  readonly failures: readonly string[];
  readonly decision: Decision;
  /** The decision function's path that produced the decision. */
  readonly path: DecisionPath;
}

/**
 * What the cases exercised: how often each decision path was taken and each policy was determining.
 * `uncoveredPolicies` and `uncoveredPaths` list what no case reached; paths the bundle cannot take
 * (escalation paths without escalatable forbids, `forbid` without a non-escalatable forbid, the
 * practically unreachable escalation-evaluation-error) are not required.
 */
export interface PolicyTestCoverage {
  readonly paths: Readonly<Record<DecisionPath, number>>;
  readonly policies: Readonly<Record<string, number>>;
  readonly uncoveredPolicies: readonly string[];
  readonly uncoveredPaths: readonly DecisionPath[];
}

/** What `governor policy test` reports. */
export interface PolicyTestReport {
  readonly passed: number;
  readonly failed: number;
  readonly results: readonly PolicyTestResult[];
  readonly coverage: PolicyTestCoverage;
}

/** Runs every test case of the bundle (its `tests/` files) against its own policies. Pure. */
export function runPolicyTests(
  bundle: LoadedBundle,
  engine: PolicyEngine = PolicyEngine.fromBundle(bundle),
): PolicyTestReport {
  const results: PolicyTestResult[] = [];
  for (const file of bundle.tests) {
    for (const testCase of file.cases) {
      const { decision, path } = engine.trace(testCase.request);
      const failures = compareDecision(decision, testCase.expect);
      results.push({ file: file.file, name: testCase.name, passed: failures.length === 0, failures, decision, path });
    }
  }
  const passed = results.filter((r) => r.passed).length;
  return { passed, failed: results.length - passed, results, coverage: coverageOf(bundle, results) };
}

/** Which paths and policies the results reached, and what they missed. */
function coverageOf(bundle: LoadedBundle, results: readonly PolicyTestResult[]): PolicyTestCoverage {
  const paths = Object.fromEntries(Object.values(DecisionPath).map((p) => [p, 0])) as Record<DecisionPath, number>;
  const policies: Record<string, number> = Object.fromEntries(bundle.policies.map((p) => [p.id, 0]));
  for (const r of results) {
    paths[r.path] += 1;
    for (const id of new Set(r.decision.determiningPolicies)) if (id in policies) policies[id]! += 1;
  }
  const hasPermit = bundle.policies.some((p) => p.effect === 'permit');
  const hasHardForbid = bundle.policies.some((p) => p.effect === 'forbid' && !p.escalation);
  const hasEscalation = bundle.policies.some((p) => p.effect === 'forbid' && p.escalation);
  const required: DecisionPath[] = [
    DecisionPath.InvalidRequest,
    DecisionPath.EvaluationError,
    DecisionPath.DefaultDeny,
    ...(hasPermit ? [DecisionPath.Allow] : []),
    ...(hasHardForbid ? [DecisionPath.Forbid] : []),
    ...(hasEscalation && hasPermit ? [DecisionPath.Escalate, DecisionPath.ApprovalCannotHelp] : []),
  ];
  return {
    paths,
    policies,
    uncoveredPolicies: bundle.policies.filter((p) => policies[p.id] === 0).map((p) => p.id),
    uncoveredPaths: required.filter((p) => paths[p] === 0),
  };
}

/** Mismatches between a decision and what a test case expects (empty: it matches). */
export function compareDecision(decision: Decision, expect: ExpectedDecision): string[] {
  const failures: string[] = [];
  const sameSet = (a: readonly string[], b: readonly string[]): boolean =>
    JSON.stringify([...new Set(a)].sort()) === JSON.stringify([...new Set(b)].sort());
  const list = (a: readonly string[]): string => `[${[...a].sort().join(', ')}]`;

  if (decision.effect !== expect.effect) {
    const why = decision.reason ? ` (${decision.reason})` : '';
    failures.push(`effect: expected ${expect.effect}, got ${decision.effect}${why}`);
  }
  if (expect.determiningPolicies && !sameSet(decision.determiningPolicies, expect.determiningPolicies)) {
    failures.push(
      `determiningPolicies: expected ${list(expect.determiningPolicies)}, got ${list(decision.determiningPolicies)}`,
    );
  }
  if (expect.errors !== undefined && decision.errors.length > 0 !== expect.errors) {
    failures.push(
      expect.errors
        ? 'errors: expected evaluation errors, got none'
        : `errors: expected none, got ${decision.errors.join('; ')}`,
    );
  }
  if (expect.escalation) {
    const got = decision.escalation;
    if (!got) {
      failures.push('escalation: expected requirements, got none');
    } else {
      if (!sameSet(got.roles, expect.escalation.roles))
        failures.push(`escalation.roles: expected ${list(expect.escalation.roles)}, got ${list(got.roles)}`);
      if (got.quorum !== expect.escalation.quorum)
        failures.push(`escalation.quorum: expected ${expect.escalation.quorum}, got ${got.quorum}`);
      if (got.deadline !== expect.escalation.deadline)
        failures.push(`escalation.deadline: expected ${expect.escalation.deadline}, got ${got.deadline}`);
    }
  }
  if (expect.reasonContains !== undefined && !(decision.reason ?? '').includes(expect.reasonContains)) {
    failures.push(`reason: expected it to contain "${expect.reasonContains}", got "${decision.reason ?? ''}"`);
  }
  return failures;
}
