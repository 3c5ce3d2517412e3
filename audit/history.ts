import type { WorkflowHandle } from '@temporalio/client';
import {
  Activity,
  readGovernStepResult,
  readLocalActivityMarker,
  RecordedActivities,
  type PayloadsReader,
} from '../core/history';
import { defaultPayloadConverter, type PayloadCodec, type PayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { AuthzRequest, Decision } from '../contracts/decision';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { decodeJsonPayloads, ENCRYPTED_ENCODING } from '../runtime/codec';

/**
 * Reading recorded decisions back out of a chain's workflow history.
 *
 * `authorize` runs as a local activity, so its result is in a `MarkerRecorded` event: marker name
 * `core_local_activity`, `details.data` a JSON payload `{seq, attempt, activity_id, activity_type,
 * complete_time, backoff, original_schedule_time}` and `details.result` the activity's result payload
 * (absent when the attempt failed or is waiting for a retry backoff). A history written by a worker
 * that ran `authorize` as a normal activity has `ActivityTaskScheduled` (type `authorize`) and the
 * matching `ActivityTaskCompleted` result instead; both are read. A step decided by `governStep` (decision
 * and built-in execution in one activity) has its `authorize` result under `authorized` in the
 * activity's result.
 *
 * Payloads are decoded with the given payload converter (default: Temporal's default, JSON). A history
 * whose payloads are encrypted must be decoded with the codec first.
 */

/** A workflow history as `WorkflowHandle.fetchHistory()` returns it. */
export type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

/** One decision recorded in a chain's history. */
export interface RecordedDecision {
  /** The step the decision was for (`<step>.compensation` for a compensation). */
  stepId: string;
  /** `decision` (a step) or `compensation-decision`, from the decision's receipt. */
  kind: string;
  /** The exact request that was evaluated; absent when verification failed before policy ran. */
  request?: AuthzRequest;
  decision: Decision;
  /** The shadow block, when a candidate bundle was evaluated beside the active one. */
  shadow?: Record<string, unknown>;
  /** Id of the history event that holds the result. */
  eventId: number;
  /** Sequence number of the decision's receipt in the chain. */
  receiptSeq?: number;
}

const ENCRYPTED_BASE64 = Buffer.from(ENCRYPTED_ENCODING).toString('base64');

/**
 * `history` with its payloads decoded by `codecs` (a client's data converter codecs, last first). Without
 * codecs, an encrypted history is an error (reading it would silently find no decisions).
 */
export async function decodeHistory(
  history: History,
  codecs: readonly PayloadCodec[],
  chainId: string,
): Promise<History> {
  let json: unknown = temporal.api.history.v1.History.fromObject(history as Record<string, unknown>).toJSON();
  if (codecs.length === 0) {
    if (JSON.stringify(json).includes(ENCRYPTED_BASE64)) {
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `chain ${chainId}: payloads are encrypted (${ENCRYPTED_ENCODING}): give the codec key file (--codec-keys or GOVERNOR_CODEC_KEYS)`,
        'codec-keys',
      );
    }
    return history;
  }
  for (const codec of [...codecs].reverse()) json = await decodeJsonPayloads(json, codec);
  return temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
}

/**
 * Every `authorize` result in `history`, in history order. Results that are not decisions (malformed,
 * or from another activity) are skipped, never guessed at: the decision must parse as a `Decision`.
 * Markers and activity results are read with the verifier's decoder (core/history.ts).
 */
export function recordedDecisions(
  history: History,
  options: { payloadConverter?: PayloadConverter } = {},
): RecordedDecision[] {
  const converter = options.payloadConverter ?? defaultPayloadConverter;
  // Message objects, decoded leniently: whatever does not decode is not a decision.
  const read: PayloadsReader = (payloads) => {
    const first = (payloads as { payloads?: unknown[] } | null | undefined)?.payloads?.[0];
    if (!first) return { ok: false, problem: 'no payload' };
    try {
      return { ok: true, value: converter.fromPayload(first as Parameters<PayloadConverter['fromPayload']>[0]) };
    } catch {
      return { ok: false, problem: 'cannot be decoded' };
    }
  };
  const out: RecordedDecision[] = [];
  const push = (result: unknown, eventId: number): void => {
    const recorded = asRecordedDecision(result, eventId);
    if (recorded) out.push(recorded);
  };
  const activities = new RecordedActivities(read);
  for (const event of history.events ?? []) {
    const eventId = Number(event.eventId ?? 0);
    if (event.markerRecordedEventAttributes) {
      const marker = readLocalActivityMarker(event.markerRecordedEventAttributes, read);
      if (!marker || 'problem' in marker || marker.activityType !== Activity.authorize) continue;
      push(marker.result?.ok ? marker.result.value : undefined, eventId);
    } else if (event.activityTaskScheduledEventAttributes) {
      activities.scheduled(eventId, event.activityTaskScheduledEventAttributes);
    } else if (event.activityTaskCancelRequestedEventAttributes) {
      activities.cancelRequested(event.activityTaskCancelRequestedEventAttributes);
    } else if (event.activityTaskCompletedEventAttributes) {
      const done = activities.completed(event.activityTaskCompletedEventAttributes);
      if (!done.ok) continue;
      const { type, result, cancelledFirst } = done.activity;
      // A `governStep` whose cancellation was requested first: the workflow never read its decision.
      if (type === Activity.governStep && !cancelledFirst) push(readGovernStepResult(result)?.authorized, eventId);
      if (type === Activity.authorize) push(result, eventId);
    }
  }
  return out;
}

/** Snapshots an `authorize` result into a RecordedDecision, or undefined when it is not one. */
function asRecordedDecision(result: unknown, eventId: number): RecordedDecision | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const r = result as {
    decision?: unknown;
    request?: unknown;
    receipt?: { stepId?: unknown; kind?: unknown; seq?: unknown };
    shadow?: unknown;
  };
  const decision = Decision.safeParse(r.decision);
  if (!decision.success) return undefined;
  const request = r.request === undefined || r.request === null ? undefined : AuthzRequest.safeParse(r.request);
  if (request && !request.success) return undefined;
  const stepId = typeof r.receipt?.stepId === 'string' ? r.receipt.stepId : '';
  const kind = typeof r.receipt?.kind === 'string' ? r.receipt.kind : 'decision';
  return {
    stepId,
    kind,
    ...(request ? { request: request.data } : {}),
    decision: decision.data,
    ...(typeof r.shadow === 'object' && r.shadow !== null ? { shadow: r.shadow as Record<string, unknown> } : {}),
    eventId,
    ...(typeof r.receipt?.seq === 'number' ? { receiptSeq: r.receipt.seq } : {}),
  };
}
