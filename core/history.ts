/*
 * Names the governor's workflows record in Temporal history, as `governor verify` and `policy diff`
 * read them back. Recorded in history: never renamed (the worker registers the same names:
 * activities/index.ts, contracts/*). Sandbox-safe.
 */

/** Marker name of local activity results written by Temporal's Core SDK (TypeScript, Python, .NET, Ruby). */
export const LOCAL_ACTIVITY_MARKER = 'core_local_activity';
/** Marker the SDK records for `patched()` (Core SDK format). */
export const PATCH_MARKER = 'core_patch';

/** The governor's activity types. */
export const Activity = {
  /** Re-verifies identity and evaluates policy (a local activity). */
  authorize: 'authorize',
  /** Checks one approval vote (a local activity). */
  verifyApproval: 'verifyApproval',
  /** Signs a receipt of the chain (a local activity). */
  recordReceipt: 'recordReceipt',
  /** Runs a built-in executor. */
  execute: 'execute',
  /** Decision and built-in execution in one activity: its result holds an `authorize` result and maybe an `execute` one. */
  governStep: 'governStep',
  /** Asks a domain's coordinator for a slot. */
  requestSlot: 'requestSlot',
} as const;

/** The governor's local activities (results recorded as `LOCAL_ACTIVITY_MARKER` markers). */
export const GOVERNOR_LOCAL_ACTIVITIES: readonly string[] = [
  Activity.authorize,
  Activity.verifyApproval,
  Activity.recordReceipt,
];

/** Signal a domain's coordinator sends a chain with its slot verdict. */
export const SLOT_VERDICT_SIGNAL = 'slotVerdict';

// ---- reading them back: one typed decoder of the governor's activity events ----------------------
//
// `governor verify` (audit/verify/decode.ts) and `policy diff` (audit/history.ts) read local-activity
// markers and activity results through these readers. How a payload is decoded is the caller's: the
// verifier reads the stable proto3 JSON form strictly, `policy diff` message objects with a converter.

/** A decoded payload, or why it could not be decoded. */
export type Decoded = { ok: true; value: unknown } | { ok: false; problem: string };

/** Decodes the payload of a `Payloads` value (`{payloads: [...]}`), in whichever form the history is. */
export type PayloadsReader = (payloads: unknown) => Decoded;

/** A local activity's marker, read. */
export interface LocalActivityMarker {
  /** The `activity_type` its data names. */
  activityType: unknown;
  /** Its result; undefined when none was recorded (an attempt that failed or waits for a retry backoff). */
  result: Decoded | undefined;
}

/**
 * A `MarkerRecorded` event's attributes as a local activity's marker (`LOCAL_ACTIVITY_MARKER`):
 * undefined for another marker, a problem when its data does not decode.
 */
export function readLocalActivityMarker(
  attrs: unknown,
  read: PayloadsReader,
): LocalActivityMarker | { problem: string } | undefined {
  if (!isObject(attrs) || attrs.markerName !== LOCAL_ACTIVITY_MARKER) return undefined;
  const details = isObject(attrs.details) ? attrs.details : {};
  const meta = read(details.data);
  if (!meta.ok) return { problem: meta.problem };
  const activityType = isObject(meta.value) ? meta.value.activity_type : undefined;
  return { activityType, result: details.result === undefined ? undefined : read(details.result) };
}

/** The patch id of a `MarkerRecorded` event's attributes when it is a `patched()` marker (`PATCH_MARKER`). */
export function readPatchMarker(attrs: unknown, read: PayloadsReader): string | undefined {
  if (!isObject(attrs) || attrs.markerName !== PATCH_MARKER) return undefined;
  const data = read(isObject(attrs.details) ? attrs.details['patch-data'] : undefined);
  return data.ok && isObject(data.value) && typeof data.value.id === 'string' ? data.value.id : undefined;
}

/** An activity the workflow scheduled, and what became of it. */
export interface RecordedActivity {
  /** Id of its `ActivityTaskScheduled` event. */
  eventId: number;
  /** Activity type. */
  type: string;
  /** Its input (first argument); undefined when it does not decode. */
  input: unknown;
  /** Why its input does not decode. */
  inputProblem?: string;
  completed: boolean;
  /** Its result, once completed. */
  result: unknown;
  /** A cancellation was requested before the activity completed: the workflow did not consume its result. */
  cancelledFirst: boolean;
}

/**
 * The activities of one history, by the id of the event that scheduled them: feed it the scheduled,
 * cancel-requested and completed events' attributes in history order.
 */
export class RecordedActivities {
  private readonly byEventId = new Map<string, RecordedActivity>();

  constructor(private readonly read: PayloadsReader) {}

  /** `ActivityTaskScheduled` at `eventId`. */
  scheduled(eventId: number, attrs: unknown): RecordedActivity {
    const a = isObject(attrs) ? attrs : {};
    const type = isObject(a.activityType) && typeof a.activityType.name === 'string' ? a.activityType.name : '';
    const input = this.read(a.input);
    const activity: RecordedActivity = {
      eventId,
      type,
      input: input.ok ? input.value : undefined,
      ...(input.ok ? {} : { inputProblem: input.problem }),
      completed: false,
      result: undefined,
      cancelledFirst: false,
    };
    this.byEventId.set(String(eventId), activity);
    return activity;
  }

  /** `ActivityTaskCancelRequested`: marks the activity cancelled first unless it already completed. */
  cancelRequested(attrs: unknown): void {
    const activity = this.byEventId.get(String(isObject(attrs) ? attrs.scheduledEventId : undefined));
    if (activity && !activity.completed) activity.cancelledFirst = true;
  }

  /**
   * `ActivityTaskCompleted`: the activity completed, with its result (undefined when it returned
   * nothing); a problem when it was never scheduled or its result does not decode (it then stays not completed).
   */
  completed(attrs: unknown): { ok: true; activity: RecordedActivity } | { ok: false; problem: string } {
    const a = isObject(attrs) ? attrs : {};
    const activity = this.byEventId.get(String(a.scheduledEventId));
    if (!activity) return { ok: false, problem: 'completes an activity that was never scheduled' };
    const result = a.result === undefined ? { ok: true as const, value: undefined } : this.read(a.result);
    if (!result.ok) return { ok: false, problem: `activity result: ${result.problem}` };
    activity.completed = true;
    activity.result = result.value;
    return { ok: true, activity };
  }
}

/**
 * A `governStep` result's parts: its `authorize` result, its `execute` result (as recorded) when it
 * executed, and the chain's final checkpoint when it signed one (LEAN_CHAIN_PATCH).
 */
export function readGovernStepResult(
  value: unknown,
): { authorized: Record<string, unknown>; executed: unknown; checkpoint: unknown } | undefined {
  if (!isObject(value) || !isObject(value.authorized)) return undefined;
  return { authorized: value.authorized, executed: value.executed, checkpoint: value.checkpoint };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
