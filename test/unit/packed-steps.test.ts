import type { Step } from '../../contracts/chain';
import { PackedSteps, StepState } from '../../contracts/state';
import { chainResultSteps, packSteps, packedStepsProblem, unpackSteps } from '../../core/packed-steps';

/*
 * Continue-as-new carries the step states packed (core/packed-steps.ts): lossless (the next run
 * unpacks exactly the states the last one had), and small enough that a 1,000-step chain's input stays
 * far under the SDK's 512 KB payload warning. A long chain's result packs them too, without the chain
 * at hand (self-contained), and stays under the warning as well.
 */

const CHAIN = 'bench-governed-6f1c0d2e-0000-4000-8000-000000000000';
const step = (id: string, executor: Step['executor'] = { type: 'noop' }): Step => ({
  id,
  action: 'deploy',
  resource: { type: 'Environment', id: 'staging' },
  input: {},
  context: {},
  executor,
});
const allow = (n: number) => ({
  effect: 'allow' as const,
  determiningPolicies: ['deploy-environments-permit'],
  annotations: {
    'deploy-environments-permit': {
      id: 'deploy-environments-permit',
      reason: 'trusted workloads may deploy to and roll back the known environments',
    },
  },
  errors: [],
  bundleDigest: 'b'.repeat(64),
  inputDigest: n.toString(16).padStart(64, '0'),
  evaluatedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
});
const completed = (s: Step, n: number): StepState => ({
  id: s.id,
  action: s.action,
  resource: 'Environment::"staging"',
  status: 'completed',
  decision: allow(n),
  outcome: { executor: s.executor.type, idempotencyKey: `${CHAIN}/${s.id}` },
});
/** Through JSON, as continue-as-new carries it. */
const wire = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('packed step states', () => {
  it('unpack to exactly the states packed, whatever they hold', () => {
    const steps = [
      step('a'),
      step('b', { type: 'http', method: 'POST', url: 'https://example.com/x', timeoutMs: 5000 }),
      step('c', { type: 'activity', activityType: 'deploy', taskQueue: 'svc', timeoutMs: 1000 }),
      step('d'),
      step('e'),
      step('f'),
    ];
    const states: StepState[] = [
      completed(steps[0]!, 1),
      {
        ...completed(steps[1]!, 2),
        outcome: { executor: 'http', idempotencyKey: `${CHAIN}/b`, httpStatus: 201, result: { status: 201 } },
      },
      {
        ...completed(steps[2]!, 3),
        outcome: { executor: 'activity', idempotencyKey: `${CHAIN}/c`, result: { deployed: true, version: 7 } },
      },
      {
        id: 'd',
        action: 'deploy',
        resource: 'Environment::"staging"',
        status: 'compensated',
        decision: {
          ...allow(4),
          effect: 'escalate',
          reason: 'needs approval',
          escalation: { roles: ['sre-lead'], quorum: 2, deadline: '30m', policies: ['prod-approval'] },
        },
        approval: {
          stepId: 'd',
          stepDigest: 'c'.repeat(64),
          roles: ['sre-lead'],
          eligibleRoles: ['sre-lead'],
          quorum: 2,
          deadline: '30m',
          approvedBy: [],
          stillNeeded: 2,
          verdicts: [],
          outcome: 'break-glass',
        },
        breakGlass: { approver: 'alice', justification: 'incident 42' },
        coordination: { domain: 'prod', requestId: 'r-1', status: 'released', reason: undefined, order: 3 },
        compensation: { decision: allow(5), outcome: { executor: 'noop', idempotencyKey: `${CHAIN}/d.compensation` } },
      },
      {
        id: 'e',
        action: 'deploy',
        resource: 'Environment::"staging"',
        status: 'denied',
        decision: { ...allow(6), effect: 'deny', reason: 'denied by policy' },
        error: 'denied by policy',
      },
      { id: 'f', action: 'deploy', resource: 'Environment::"staging"', status: 'skipped' },
    ];
    for (const s of states) expect(StepState.safeParse(wire(s)).success).toBe(true);
    const packed = packSteps(CHAIN, steps, states);
    expect(packed).toBeDefined();
    const carried = PackedSteps.parse(wire(packed));
    expect(packedStepsProblem(steps, carried)).toBeUndefined();
    expect(unpackSteps(CHAIN, steps, carried)).toEqual(wire(states));
    // The default outcome of a built-in executor is left out; any other outcome is kept as is.
    expect(carried.steps.map((e) => e.o)).toEqual([1, undefined, undefined, undefined, undefined, undefined]);
  });

  it('keep each distinct decision once', () => {
    const steps = Array.from({ length: 50 }, (_, i) => step(`s${i + 1}`));
    const packed = packSteps(
      CHAIN,
      steps,
      steps.map((s, i) => completed(s, i)),
    )!;
    expect(packed.decisions).toHaveLength(1);
    expect(unpackSteps(CHAIN, steps, wire(packed))).toEqual(steps.map((s, i) => completed(s, i)));
  });

  it('carry a state that is not the chain step it stands for in full', () => {
    const steps = [step('a')];
    const odd: StepState = { ...completed(steps[0]!, 1), resource: 'Environment::"prod"' };
    const packed = packSteps(CHAIN, steps, [odd])!;
    expect(unpackSteps(CHAIN, steps, wire(packed))).toEqual([odd]);
    expect(packSteps(CHAIN, steps, [])).toBeUndefined();
  });

  it('refuse a packed form that does not fit the chain', () => {
    const steps = [step('a'), step('b')];
    const packed = packSteps(
      CHAIN,
      steps,
      steps.map((s, i) => completed(s, i)),
    )!;
    expect(packedStepsProblem(steps.slice(0, 1), packed)).toMatch(/2 step\(s\), the chain has 1/);
    expect(packedStepsProblem(steps, { ...packed, steps: [packed.steps[0]!, { ...packed.steps[1]!, d: 5 }] })).toMatch(
      /steps\.1: names no decision/,
    );
    expect(packedStepsProblem(steps, { ...packed, steps: [packed.steps[0]!, { s: 'completed', d: 0 }] })).toMatch(
      /steps\.1: names no decision/,
    );
  });

  it('keep a 1,000-step chain far under the 512 KB payload warning', () => {
    const steps = Array.from({ length: 1000 }, (_, i) => step(`s${i + 1}`));
    const states = steps.map((s, i) => completed(s, i));
    const full = JSON.stringify(states).length;
    const packed = JSON.stringify(packSteps(CHAIN, steps, states)).length;
    expect(full).toBeGreaterThan(500_000);
    expect(packed).toBeLessThan(140_000);
  });

  it('pack a result without the chain at hand: self-contained, lossless, read back by chainResultSteps', () => {
    const steps = [step('a'), step('b'), step('c')];
    const states: StepState[] = [
      completed(steps[0]!, 1),
      {
        ...completed(steps[1]!, 2),
        outcome: { executor: 'activity', idempotencyKey: `${CHAIN}/b`, result: { ok: 1 } },
      },
      { id: 'c', action: 'deploy', resource: 'Environment::"staging"', status: 'skipped' },
    ];
    const packed = packSteps(CHAIN, undefined, states)!;
    expect(packed.steps.every((e) => e.o === undefined && typeof e.x?.id === 'string')).toBe(true);
    const carried = PackedSteps.parse(wire(packed));
    expect(packedStepsProblem(undefined, carried)).toBeUndefined();
    expect(unpackSteps(CHAIN, undefined, carried)).toEqual(wire(states));
    expect(chainResultSteps({ chainId: CHAIN, steps: [], packedSteps: wire(packed) })).toEqual(wire(states));
    // A result in full is read as is; a packed one beside steps, or one that does not parse, is refused.
    expect(chainResultSteps({ chainId: CHAIN, steps: wire(states) })).toEqual(wire(states));
    expect(chainResultSteps({ chainId: CHAIN, steps: wire(states), packedSteps: wire(packed) })).toBeUndefined();
    expect(
      chainResultSteps({
        chainId: CHAIN,
        steps: [],
        packedSteps: { decisions: [], steps: [{ s: 'completed', d: 0, i: 'x', t: 'y' }] },
      }),
    ).toBeUndefined();
    // Without the chain, a packed step must name its step, and cannot stand for a built-in outcome.
    expect(packedStepsProblem(undefined, { decisions: [], steps: [{ s: 'pending' }] })).toMatch(/steps\.0/);
    expect(
      packedStepsProblem(undefined, {
        decisions: [],
        steps: [{ s: 'completed', o: 1, x: { id: 'a', action: 'deploy', resource: 'r' } }],
      }),
    ).toMatch(/steps\.0/);
  });

  it("keep a 1,000-step chain's result under the 512 KB payload warning", () => {
    const steps = Array.from({ length: 1000 }, (_, i) => step(`s${i + 1}`));
    const states = steps.map((s, i) => completed(s, i));
    const receiptHead = { seq: 2001, hash: 'f'.repeat(64) };
    const full = JSON.stringify({
      chainId: CHAIN,
      status: 'Completed',
      steps: states,
      receiptHead,
      checkpoint: 'x'.repeat(300),
    });
    const packedSteps = packSteps(CHAIN, undefined, states)!;
    const packed = JSON.stringify({
      chainId: CHAIN,
      status: 'Completed',
      steps: [],
      packedSteps,
      receiptHead,
      checkpoint: 'x'.repeat(300),
    });
    expect(full.length).toBeGreaterThan(512 * 1024);
    expect(packed.length).toBeLessThan(400 * 1024);
    expect(chainResultSteps(JSON.parse(packed) as Record<string, unknown>)).toEqual(wire(states));
  });
});
