import { defaultPayloadConverter } from '@temporalio/common';
import { recordedDecisions, type History } from '../../audit/history';
import { diffRecorded } from '../../audit/policy-diff';
import type { AuthzRequest, Decision } from '../../contracts/decision';
import { loadBundle } from '../../policies/bundle';
import { decisionsDiffer } from '../../policies/decision-diff';
import { PolicyEngine } from '../../policies/engine';
import { explainDecision } from '../../policies/explain';
import { addStagingFreeze, copyBundle, DEFAULT_BUNDLE_DIR } from '../harness/policy';

const engine = PolicyEngine.fromBundle(loadBundle(DEFAULT_BUNDLE_DIR));
const freezeDir = copyBundle();
addStagingFreeze(freezeDir);
const freezeEngine = PolicyEngine.fromBundle(loadBundle(freezeDir));

const trusted = { imageDigest: 'sha256:abc', trustZone: 'trusted', environment: 'staging' };
const req = (env: string): AuthzRequest => ({
  principal: { type: 'Workload', id: 'agent:release-bot' },
  action: 'deploy',
  resource: { type: 'Environment', id: env },
  context: { attestation: trusted },
  now: '2025-01-15T10:00:00.000Z',
});

const payload = (value: unknown) => defaultPayloadConverter.toPayload(value)!;
const authorizeResult = (
  stepId: string,
  request: AuthzRequest | null,
  decision: Decision,
  extra: Record<string, unknown> = {},
) => ({
  decision,
  ...(request ? { request } : {}),
  receipt: { seq: 1, chainId: 'c', stepId, kind: 'decision', digest: 'd', prevHash: 'p', hash: 'h', signature: 's' },
  credentialExpired: false,
  gracePeriod: 300000,
  ...extra,
});
const laMarker = (eventId: number, activityType: string, result?: unknown) => ({
  eventId,
  markerRecordedEventAttributes: {
    markerName: 'core_local_activity',
    details: {
      data: {
        payloads: [payload({ seq: eventId, attempt: 1, activity_id: String(eventId), activity_type: activityType })],
      },
      ...(result !== undefined ? { result: { payloads: [payload(result)] } } : {}),
    },
  },
});

describe('recordedDecisions: decisions out of a workflow history', () => {
  const staging = engine.decide(req('staging'));
  const prod = engine.decide(req('prod'));
  const denied: Decision = {
    effect: 'deny',
    determiningPolicies: [],
    annotations: {},
    errors: ['credential expired'],
    reason: 'credential expired',
    bundleDigest: engine.bundleDigest,
    inputDigest: 'x',
    evaluatedAt: '2025-01-15T10:00:00.000Z',
  };
  const shadow = {
    bundleDigest: freezeEngine.bundleDigest,
    effect: 'deny',
    differs: true,
    determiningPolicies: ['deploy-staging-freeze'],
  };

  const history = {
    events: [
      { eventId: 1, workflowExecutionStartedEventAttributes: {} },
      laMarker(5, 'authorize', authorizeResult('s1', req('staging'), staging, { shadow })),
      laMarker(6, 'recordReceipt', { seq: 2 }),
      laMarker(7, 'authorize'), // a failed attempt: no result recorded
      laMarker(8, 'authorize', { decision: { effect: 'maybe' } }), // not a Decision: skipped, not guessed at
      { eventId: 9, markerRecordedEventAttributes: { markerName: 'Version', details: {} } },
      { eventId: 10, activityTaskScheduledEventAttributes: { activityType: { name: 'authorize' } } },
      { eventId: 11, activityTaskScheduledEventAttributes: { activityType: { name: 'perform' } } },
      {
        eventId: 12,
        activityTaskCompletedEventAttributes: {
          scheduledEventId: 11,
          result: { payloads: [payload(authorizeResult('x', req('dev'), staging))] },
        },
      },
      {
        eventId: 13,
        activityTaskCompletedEventAttributes: {
          scheduledEventId: 10,
          result: { payloads: [payload(authorizeResult('s2', req('prod'), prod))] },
        },
      },
      laMarker(14, 'authorize', authorizeResult('s3', null, denied)),
    ],
  } as unknown as History;

  it('reads local-activity markers and activity results of authorize, in history order, and nothing else', () => {
    const recorded = recordedDecisions(history);
    expect(recorded.map((r) => [r.eventId, r.stepId, r.decision.effect, r.request?.resource.id ?? null])).toEqual([
      [5, 's1', 'allow', 'staging'],
      [13, 's2', 'escalate', 'prod'],
      [14, 's3', 'deny', null],
    ]);
    expect(recorded[0]).toMatchObject({
      kind: 'decision',
      receiptSeq: 1,
      shadow,
      request: req('staging'),
      decision: staging,
    });
  });

  it('diffRecorded lists the decisions a candidate would flip, and skips those made before policy ran', () => {
    const recorded = recordedDecisions(history);
    const diff = diffRecorded(freezeEngine, 'chain-1', 'run-1', recorded);
    expect(diff.reEvaluated).toBe(2);
    expect(diff.skipped).toBe(1);
    expect(diff.flipped).toEqual([
      expect.objectContaining({
        chainId: 'chain-1',
        runId: 'run-1',
        stepId: 's1',
        eventId: 5,
        recorded: expect.objectContaining({ effect: 'allow', bundleDigest: engine.bundleDigest }),
        candidate: expect.objectContaining({
          effect: 'deny',
          determiningPolicies: ['deploy-staging-freeze'],
          reason: expect.stringContaining('release freeze'),
        }),
      }),
    ]);
    expect(diffRecorded(engine, 'chain-1', undefined, recorded).flipped).toEqual([]);
  });
});

describe('decisionsDiffer: what counts as a flip', () => {
  const base = engine.decide(req('prod'));
  it('another effect, or other escalation requirements; not the same outcome for another reason', () => {
    expect(decisionsDiffer(base, { ...base, effect: 'deny' })).toBe(true);
    expect(decisionsDiffer(base, { ...base, escalation: { ...base.escalation!, quorum: 3 } })).toBe(true);
    expect(decisionsDiffer(base, { ...base, escalation: { ...base.escalation!, roles: ['dba'] } })).toBe(true);
    expect(decisionsDiffer(base, { ...base, escalation: { ...base.escalation!, deadline: '1h' } })).toBe(true);
    expect(decisionsDiffer(base, { ...base, determiningPolicies: ['other'], bundleDigest: 'other' })).toBe(false);
    const allow = engine.decide(req('staging'));
    expect(decisionsDiffer(allow, { ...allow, determiningPolicies: [] })).toBe(false);
  });
});

describe('explain: every deny and escalate names its determining policies and their annotations', () => {
  const bundle = loadBundle(DEFAULT_BUNDLE_DIR);
  const cases = bundle.tests.flatMap((t) => t.cases.map((c) => [`${t.file}: ${c.name}`, c] as const));

  it.each(cases)('%s', (_name, c) => {
    const d = engine.decide(c.request);
    if (d.effect === 'allow') {
      expect(d.determiningPolicies.length).toBeGreaterThan(0);
      return;
    }
    expect(d.reason).toBeTruthy();
    const lines = explainDecision(d);
    expect(lines[0]).toBe(`${d.effect}: ${d.reason}`);
    for (const id of d.determiningPolicies) {
      const policy = bundle.policies.find((p) => p.id === id)!;
      // The decision carries every annotation of every determining policy …
      expect(d.annotations[id]).toEqual(policy.annotations);
      // … and the explanation shows them.
      const line = lines.find((l) => l.startsWith(`  policy ${id}`))!;
      for (const [key, value] of Object.entries(policy.annotations))
        if (key !== 'id') expect(line).toContain(`@${key}(${JSON.stringify(value)})`);
    }
    if (d.effect === 'escalate') {
      expect(lines).toContain(
        `  needs ${d.escalation!.quorum} approval(s) from [${d.escalation!.roles.join(', ')}] within ${d.escalation!.deadline}`,
      );
    }
    if (d.determiningPolicies.length === 0) expect(d.reason).toMatch(/no policy permits|invalid request/);
  });
});
