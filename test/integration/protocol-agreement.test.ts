import { defaultPayloadConverter } from '@temporalio/common';
import { canonicalJson } from '../../core/canonical';
import { compensationStepId } from '../../core/step';
import { issueApproval } from '../../identity';
import { createReplayer, fetchChainHistories, verifyChain, type HistoryJson, type Replayer } from '../../audit/verify';
import { decodeRun } from '../../audit/verify/decode';
import {
  expectedIdempotencyKey,
  expectedKind,
  expectedOwnContext,
  expectedResourceLabel,
  expectedStepDigest,
  governedActions,
  requestResource,
} from '../../audit/verify/derive';
import type { ChainResult, ChainState } from '../../contracts/state';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * Protocol agreement (issue 15). The protocol's facts about a step — its digest, the idempotency key
 * its executors receive, the id, action and resource of its compensation, its resource label, the part
 * of its context that reaches policy — are computed twice: by the worker (the workflow and the
 * activities, as history, the status and the service record them) and by `governor verify`, which
 * re-derives them from the chain input (audit/verify/derive.ts, what its checks compare history with).
 * The replay suite checks determinism, not this. On real chains, every fact of every step must be the
 * same both ways, and the chain must verify.
 */

let g: Governed;
let replayer: Replayer;
beforeAll(async () => {
  g = await setupGoverned();
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});
afterAll(async () => {
  await replayer?.close();
  await g?.stop();
});

const staging = { type: 'Environment', id: 'staging' };
const dev = { type: 'Environment', id: 'dev' };
const prod = { type: 'Environment', id: 'prod' };
/** Keys of the step's own, and keys the governor owns: a step cannot set `now`, `attestation` or `approvals`. */
const SPOOFING_CONTEXT = {
  ticket: 'CHG-42',
  change: { risk: 'low', services: ['api', 'web'] },
  now: '1999-01-01T00:00:00.000Z',
  nowEpochSeconds: 915148800,
  attestation: { imageDigest: 'sha256:forged', trustZone: 'spoofed', environment: 'prod' },
  approvals: { count: 9, approvers: ['mallory'], roles: ['sre-lead'], byRole: { 'sre-lead': 9 } },
};
/** Keys `requestContext` (policies/context.ts) adds to a request from verified sources. */
const GOVERNOR_ADDED = ['attestation', 'approvals'];

/** A payload of the stable JSON form, decoded. */
function decode(payloads: unknown): unknown {
  type Payload = { metadata?: Record<string, string>; data?: string };
  const p = (payloads as { payloads?: Payload[] } | undefined)?.payloads?.[0];
  if (!p) return undefined;
  const bytes = (base64: string) => new Uint8Array(Buffer.from(base64, 'base64'));
  const metadata = Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, bytes(v)]));
  return defaultPayloadConverter.fromPayload({ metadata, data: bytes(p.data ?? '') });
}

type Json = Record<string, unknown>;
type Scheduled = { activityType: { name: string }; input: unknown };
type Completed = { scheduledEventId: string; result?: unknown };

/** What the worker recorded, read straight from history (not through the verifier's decoder). */
interface Recorded {
  /** Every `authorize` result (local activity, or the decision part of `governStep`), in history order. */
  decisions: Json[];
  /** The input of every executor activity (`governStep`, `execute`, a service's), in history order. */
  executorInputs: { type: string; input: Json }[];
}

function recorded(histories: HistoryJson[]): Recorded {
  const out: Recorded = { decisions: [], executorInputs: [] };
  for (const history of histories) {
    const types = new Map<string, string>();
    for (const e of history.events as Json[]) {
      const marker = e.markerRecordedEventAttributes as { markerName?: string; details?: Json } | undefined;
      if (marker?.markerName === 'core_local_activity' && marker.details?.result) {
        const meta = decode(marker.details.data) as { activity_type?: string };
        if (meta.activity_type === 'authorize') out.decisions.push(decode(marker.details.result) as Json);
      }
      const scheduled = e.activityTaskScheduledEventAttributes as Scheduled | undefined;
      if (scheduled) {
        const type = scheduled.activityType.name;
        types.set(String(e.eventId), type);
        const input = decode(scheduled.input) as Json;
        if (typeof input?.idempotencyKey === 'string') out.executorInputs.push({ type, input });
      }
      const completed = e.activityTaskCompletedEventAttributes as Completed | undefined;
      if (completed && types.get(String(completed.scheduledEventId)) === 'governStep') {
        out.decisions.push((decode(completed.result) as { authorized: Json }).authorized);
      }
    }
  }
  return out;
}

/** `stepId → values`, each list deduplicated (canonical JSON) and sorted. */
function byStep<T>(items: [string, T][]): Record<string, T[]> {
  const out: Record<string, Map<string, T>> = {};
  for (const [stepId, value] of items) (out[stepId] ??= new Map()).set(canonicalJson(value ?? null), value);
  const sorted = (m: Map<string, T>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
  return Object.fromEntries(Object.entries(out).map(([k, m]) => [k, sorted(m)]));
}

/** The same map, the verifier's value for each step the worker recorded one for. */
function derivedFor<T>(worker: Record<string, unknown[]>, derive: (stepId: string) => T): Record<string, T[]> {
  return Object.fromEntries(Object.keys(worker).map((stepId) => [stepId, [derive(stepId)]]));
}

/**
 * Each fact through both paths, for every step; returns the steps each fact was compared for, so the
 * caller can require that every step that reached that point was covered.
 */
async function expectAgreement(chainId: string, result: ChainResult): Promise<Record<string, string[]>> {
  const histories = await fetchChainHistories(g.client, chainId);
  const worker = recorded(histories);
  const status: ChainState = await g.gc.status(chainId);

  // The verifier's path: its reading of the chain input, and what it derives from it.
  const actions = governedActions(decodeRun(histories[0], 0));
  const action = (stepId: string) => {
    const a = actions.get(stepId);
    if (!a) throw new Error(`the verifier derives no action ${stepId} from the chain input`);
    return a;
  };

  const stepOf = (d: Json) => (d.receipt as Json).stepId as string;

  // Step digest: what `authorize` recorded (and the status shows approvers) = the digest of the chain's step.
  const digests = byStep([
    ...worker.decisions.map((d): [string, unknown] => [stepOf(d), d.stepDigest]),
    ...status.steps.filter((s) => s.approval).map((s): [string, unknown] => [s.id, s.approval!.stepDigest]),
  ]);
  expect(digests).toEqual(derivedFor(digests, (id) => expectedStepDigest(chainId, id, action(id))));

  // Decision kinds: a compensation is decided as one.
  const kinds = byStep(worker.decisions.map((d): [string, unknown] => [stepOf(d), (d.receipt as Json).kind]));
  const decisionKind = (id: string) => (expectedKind(id) === 'compensation' ? 'compensation-decision' : 'decision');
  expect(kinds).toEqual(derivedFor(kinds, decisionKind));

  // The request policy evaluated: the step's action and resource, and its own context without the
  // keys the governor owns.
  const requests = worker.decisions.filter((d) => d.request).map((d) => [stepOf(d), d.request as Json] as const);
  const what = (id: string) => ({ action: action(id).action, resource: requestResource(action(id)) });
  const asks = (r: Json) => ({ action: r.action, resource: r.resource });
  const evaluated = byStep(requests.map(([id, r]): [string, unknown] => [id, asks(r)]));
  expect(evaluated).toEqual(derivedFor(evaluated, what));
  const own = (r: Json) => {
    const entries = Object.entries(r.context as Json);
    return Object.fromEntries(entries.filter(([k]) => !GOVERNOR_ADDED.includes(k)));
  };
  const ownContexts = byStep(requests.map(([id, r]): [string, unknown] => [id, canonicalJson(own(r))]));
  expect(ownContexts).toEqual(derivedFor(ownContexts, (id) => expectedOwnContext(action(id))));
  // What the governor added is its own: verified attestation claims, approvals only from counted votes.
  for (const [, r] of requests) {
    const context = r.context as { attestation: unknown; approvals?: { count: number; approvers: string[] } };
    expect(context.attestation).not.toEqual(SPOOFING_CONTEXT.attestation);
    if (context.approvals) expect(context.approvals.count).toBe(context.approvals.approvers.length);
    expect(context.approvals?.approvers ?? []).not.toContain('mallory');
  }

  // Idempotency key: what every executor received, what the outcomes record, what the service saw.
  const keys = byStep([
    ...worker.executorInputs.map(({ input }): [string, unknown] => [input.stepId as string, input.idempotencyKey]),
    ...status.steps.flatMap((s): [string, unknown][] => [
      ...(s.outcome ? [[s.id, s.outcome.idempotencyKey] as [string, unknown]] : []),
      ...(s.compensation?.outcome
        ? [[compensationStepId(s.id), s.compensation.outcome.idempotencyKey] as [string, unknown]]
        : []),
    ]),
  ]);
  expect(keys).toEqual(derivedFor(keys, (id) => expectedIdempotencyKey(chainId, id)));

  // What an executor was asked to do: the action and resource of the step (a compensation's: with its fallback).
  const asked = byStep(
    worker.executorInputs
      .filter(({ input }) => input.action !== undefined)
      .map(({ input }): [string, unknown] => [input.stepId as string, asks(input)]),
  );
  expect(asked).toEqual(derivedFor(asked, what));

  // Resource labels: the status and the result name each step's resource as the verifier labels it;
  // the service labelled what it did (its ledger, by idempotency key) the same way.
  const labelOf = (id: string | undefined) => (id === undefined ? 'no step' : expectedResourceLabel(action(id)));
  for (const steps of [status.steps, result.steps]) {
    const labels = Object.fromEntries(steps.map((s) => [s.id, s.resource]));
    expect(labels).toEqual(Object.fromEntries(steps.map((s) => [s.id, labelOf(s.id)])));
  }
  const ledger = g.ledger.all().filter((e) => e.idempotencyKey.startsWith(`${chainId}/`));
  const keyToStep = new Map([...actions.keys()].map((id) => [expectedIdempotencyKey(chainId, id), id]));
  const stepOfKey = (key: string) => keyToStep.get(key);
  expect(Object.fromEntries(ledger.map((e) => [e.idempotencyKey, e.resource]))).toEqual(
    Object.fromEntries(ledger.map((e) => [e.idempotencyKey, labelOf(stepOfKey(e.idempotencyKey))])),
  );

  // And the verifier, on the same chain, finds every binding.
  const report = await verifyChain({ histories, chainId, home: g.home, replayer });
  expect(report.checks.filter((c) => !c.ok)).toEqual([]);
  expect(report.verdict).toBe('verified');

  return {
    digests: Object.keys(digests).sort(),
    keys: Object.keys(keys).sort(),
    asked: Object.keys(asked).sort(),
    contexts: Object.keys(ownContexts).sort(),
    ledger: ledger.map((e) => stepOfKey(e.idempotencyKey) ?? e.idempotencyKey).sort(),
  };
}

describe('the worker and governor verify agree on every protocol fact', () => {
  it('a chain with service, built-in and compensated steps, spoofed context keys and a denial', async () => {
    const perform = { type: 'activity', taskQueue: g.serviceQueue, activityType: 'perform' };
    const r = await g.run({
      workload: WORKLOAD,
      steps: [
        // A service step; its compensation is built in, on the step's resource (the fallback).
        g.serviceStep('deploy', 'deploy', staging, {
          context: SPOOFING_CONTEXT,
          input: { version: '1.4.2' },
          compensation: { action: 'rollback', executor: { type: 'noop' }, context: { reason: 'undo', now: 'spoofed' } },
        }),
        // A service step compensated by the service, on another resource.
        g.serviceStep('deploy-dev', 'deploy', dev, {
          compensation: { action: 'rollback', resource: staging, input: { to: '1.4.1' }, executor: perform },
        }),
        // A built-in executor (decided and executed in one governStep).
        {
          id: 'announce',
          action: 'notify',
          resource: { type: 'Channel', id: 'releases' },
          context: { channel: '#releases', approvals: { count: 1 } },
          executor: { type: 'noop' },
        },
        // Denied: the completed steps are compensated, last first.
        g.serviceStep('drop', 'drop_table', { type: 'Database', id: 'prod' }),
      ],
    });
    expect(r.status).toBe('Denied');
    expect(r.steps.map((s) => s.status)).toEqual(['compensated', 'compensated', 'completed', 'denied']);
    const covered = await expectAgreement(r.chainId, r);
    const comp = ['deploy.compensation', 'deploy-dev.compensation'];
    expect(covered.digests).toEqual(['announce', 'deploy', 'deploy-dev', 'drop', ...comp].sort());
    expect(covered.contexts).toEqual(['announce', 'deploy', 'deploy-dev', 'drop', ...comp].sort());
    expect(covered.keys).toEqual(['announce', 'deploy', 'deploy-dev', ...comp].sort());
    expect(covered.asked).toEqual(['announce', 'deploy', 'deploy-dev', ...comp].sort());
    expect(covered.ledger).toEqual(['deploy', 'deploy-dev', 'deploy-dev.compensation'].sort());
  });

  it('an escalated, coordinated step approved by a quorum, its context spoofing approvals', async () => {
    const deploy = g.serviceStep('deploy', 'deploy', prod, { context: { ...SPOOFING_CONTEXT, ticket: 'CHG-77' } });
    const handle = await g.gc.start({ workload: WORKLOAD, owner: 'team-release', steps: [deploy] }, await g.creds());
    const waiting = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    const digest = waiting.steps[0]!.approval!.stepDigest;
    for (const sub of ['alice', 'carol']) {
      const vote = { sub, roles: ['sre-lead'], chainId: handle.workflowId, stepId: 'deploy', stepDigest: digest };
      const token = await issueApproval({ home: g.home, ...vote, decision: 'approve' });
      await g.gc.submitApproval(handle.workflowId, token);
    }
    const r = (await handle.result()) as ChainResult;
    expect(r.status).toBe('Completed');
    expect(r.steps[0]!.coordination).toMatchObject({ domain: 'cluster:prod-eu', status: 'released' });
    const covered = await expectAgreement(r.chainId, r);
    const deployOnly = ['deploy'];
    expect(covered).toEqual({
      digests: deployOnly,
      keys: deployOnly,
      asked: deployOnly,
      contexts: deployOnly,
      ledger: deployOnly,
    });
  });
});
