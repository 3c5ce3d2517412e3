import { temporal } from '@temporalio/proto';

/**
 * Parses a history saved with JSON.stringify (protobufjs' proto3 JSON) back into a History message.
 * (`historyFromJSON` of @temporalio/common 1.24.0 fails with "type must be a Type": it pairs its own
 * protobufjs 8 with the proto package's protobufjs 7 types.)
 */
export function historyFromSavedJson(json: unknown): temporal.api.history.v1.History {
  return temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
}

/**
 * The workflow id a saved chain history ran under: its input's `chainId` (the governed chain refuses to
 * run under any other id, so replays must use it).
 */
export function chainIdOfSavedJson(json: unknown): string {
  const events =
    (
      json as {
        events?: { workflowExecutionStartedEventAttributes?: { input?: { payloads?: { data?: string }[] } } }[];
      }
    ).events ?? [];
  const data = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
  if (!data) throw new Error('saved history has no workflow input');
  const input = JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { chainId?: unknown };
  if (typeof input.chainId !== 'string') throw new Error('saved history input has no chainId');
  return input.chainId;
}

/** One event of a history saved with JSON.stringify (proto3 JSON). */
export type JsonEvent = Record<string, unknown> & { eventId: string; eventType: string };

/** The patch ids a saved history's markers record. */
export function patchIds(events: JsonEvent[]): string[] {
  return events
    .filter((e) => e.eventType === 'EVENT_TYPE_MARKER_RECORDED')
    .map(
      (e) =>
        e.markerRecordedEventAttributes as {
          markerName: string;
          details: Record<string, { payloads: { data: string }[] }>;
        },
    )
    .filter((m) => m.markerName === 'core_patch')
    .map(
      (m) =>
        (JSON.parse(Buffer.from(m.details['patch-data']!.payloads[0]!.data, 'base64').toString()) as { id: string }).id,
    );
}

/**
 * Whether a local activity's marker ends its workflow task and the next task was asked for at once, as the
 * server records it when the worker completed the task early (what a query during the activity can cause).
 */
export const hasCutAfterLocalActivity = (events: JsonEvent[]) =>
  events.some(
    (e, i) =>
      isLocalActivityMarker(e) &&
      events[i + 1]?.eventType === 'EVENT_TYPE_WORKFLOW_TASK_SCHEDULED' &&
      (events[i + 2]?.workflowTaskStartedEventAttributes as { requestId?: string } | undefined)?.requestId ===
        'request-from-RespondWorkflowTaskCompleted',
  );

/**
 * The history as the server records it when the worker ends a workflow task right after the local activity
 * marker at `at` and asks for the next task at once (what a query during the activity can cause): a scheduled,
 * started and completed workflow task inserted after that marker, the later events renumbered, and the commands
 * that followed the marker in its task attributed to the new task.
 */
export function cutAfter(events: JsonEvent[], at: number): JsonEvent[] {
  if (!isLocalActivityMarker(events[at]!) || !isCommandEvent(events[at + 1])) {
    throw new Error(`event ${at + 1}: not a local activity marker followed by more commands of its task`);
  }
  const id = Number(events[at]!.eventId);
  const scheduled = events[lastIndexWhere(events, at, (e) => e.eventType === 'EVENT_TYPE_WORKFLOW_TASK_SCHEDULED')]!;
  const time = events[at]!.eventTime;
  const inserted: JsonEvent[] = [
    {
      eventId: String(id + 1),
      eventTime: time,
      eventType: 'EVENT_TYPE_WORKFLOW_TASK_SCHEDULED',
      workflowTaskScheduledEventAttributes: scheduled.workflowTaskScheduledEventAttributes,
    },
    {
      eventId: String(id + 2),
      eventTime: time,
      eventType: 'EVENT_TYPE_WORKFLOW_TASK_STARTED',
      workflowTaskStartedEventAttributes: {
        scheduledEventId: String(id + 1),
        identity: 'replay-test',
        requestId: 'request-from-RespondWorkflowTaskCompleted',
      },
    },
    {
      eventId: String(id + 3),
      eventTime: time,
      eventType: 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED',
      workflowTaskCompletedEventAttributes: {
        scheduledEventId: String(id + 1),
        startedEventId: String(id + 2),
        identity: 'replay-test',
      },
    },
  ];
  // The commands after the marker, up to the next workflow task, now belong to the inserted one.
  let end = at + 1;
  while (isCommandEvent(events[end])) end++;
  const shift = (value: unknown, key: string | undefined, moved: boolean): unknown => {
    if (Array.isArray(value)) return value.map((v) => shift(v, undefined, moved));
    if (value === null || typeof value !== 'object') {
      if (moved && key === 'workflowTaskCompletedEventId') return String(id + 3);
      return key?.endsWith('EventId') && typeof value === 'string' && Number(value) > id
        ? String(Number(value) + 3)
        : value;
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shift(v, k, moved)]));
  };
  const later = events.slice(at + 1).map((e, k) => ({
    ...(shift(e, undefined, at + 1 + k < end) as JsonEvent),
    eventId: String(Number(e.eventId) + 3),
  }));
  return [...events.slice(0, at + 1), ...inserted, ...later];
}

/** The indexes of the local activity markers a workflow task could be cut after (more commands follow them). */
export function cuttableMarkers(events: JsonEvent[]): number[] {
  return events.flatMap((e, i) => (isLocalActivityMarker(e) && isCommandEvent(events[i + 1]) ? [i] : []));
}

/** Events the worker's commands record (what follows a workflow task's completion, before the next task). */
function isCommandEvent(e: JsonEvent | undefined): boolean {
  return (
    e !== undefined &&
    (e as Record<string, unknown>).workflowTaskCompletedEventId === undefined &&
    Object.values(e).some(
      (v) =>
        v !== null &&
        typeof v === 'object' &&
        typeof (v as Record<string, unknown>).workflowTaskCompletedEventId === 'string',
    )
  );
}

const isLocalActivityMarker = (e: JsonEvent) =>
  e.eventType === 'EVENT_TYPE_MARKER_RECORDED' &&
  (e.markerRecordedEventAttributes as { markerName: string }).markerName === 'core_local_activity';

/** The index of the last event before `end` that `match` accepts, or -1. */
function lastIndexWhere(events: JsonEvent[], end: number, match: (e: JsonEvent) => boolean): number {
  for (let i = end - 1; i >= 0; i--) if (match(events[i]!)) return i;
  return -1;
}
