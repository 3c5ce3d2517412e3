import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { LRUCache } from 'lru-cache';
import { canonicalJson, sha256Hex } from '../../core/canonical';
import {
  Activity,
  GOVERNOR_LOCAL_ACTIVITIES,
  PATCH_MARKER,
  readGovernStepResult,
  readLocalActivityMarker,
  readPatchMarker,
  RecordedActivities,
  type Decoded,
  type RecordedActivity,
} from '../../core/history';
import { chainResultSteps } from '../../core/packed-steps';
import type { ReceiptSource } from '../../core/receipts';
import { GovernedChainInput } from '../../contracts/chain';
import { WORKFLOW_TYPE } from '../../contracts/status';
import { GovernedSessionInput, SESSION_WORKFLOW_TYPE } from '../../contracts/session';
import type { HistoryJson } from './history-fetch';
import { isRecord, oneLine, optionalString } from './util';

/*
 * Decoding one run's history (stable JSON form) into what the checks read: its shape problems, its
 * start and closure, the receipts its activities recorded, the activities it scheduled, the messages
 * it received and sent. One handler per event type (`EVENT_HANDLERS`); untrusted payloads are decoded
 * strictly (canonical base64, exactly one payload) and every problem is recorded, never thrown.
 */

/** An event's time as epoch ms: proto3 JSON (RFC 3339 string) or the message form (`{seconds, nanos}`). */
function eventTimeMs(t: unknown): number | undefined {
  let ms = NaN;
  if (typeof t === 'string') ms = Date.parse(t);
  else if (isRecord(t) && (typeof t.seconds === 'string' || typeof t.seconds === 'number'))
    ms = Number(t.seconds) * 1000 + (typeof t.nanos === 'number' ? Math.floor(t.nanos / 1e6) : 0);
  return Number.isFinite(ms) ? ms : undefined;
}

/** A receipt as history recorded it, with the result that carried it. */
export interface ReceiptEntry {
  run: number;
  eventId: number;
  source: ReceiptSource;
  result: Record<string, unknown>;
  /** A decision whose `governStep` also executed the step (so it asked no coordinator). */
  executedInOne?: boolean;
}

/** A service (or built-in) activity the workflow scheduled, in run `run`. */
export interface ScheduledActivity extends RecordedActivity {
  run: number;
}

export type Closure =
  | { type: 'completed'; result: unknown }
  | { type: 'continued-as-new'; newRunId: string }
  | { type: 'failed' | 'terminated' | 'canceled' | 'timed-out' };

/** An update of the run: the accepted request's name and first argument, and the successful result. */
export interface RecordedUpdate {
  name?: string;
  arg?: unknown;
  result?: unknown;
  completed: boolean;
}

export interface DecodedRun {
  index: number;
  events: number;
  /** When the server recorded each event (epoch ms), by event id; absent for events without a readable time. */
  eventTimes?: Map<number, number>;
  /** Well-formedness problems (the `history` check). */
  problems: string[];
  /** Sound enough to hand to the replay worker. */
  replayable: boolean;
  json?: HistoryJson;
  /** Canonical JSON of `json` (computed once: the round-trip check and the replay cache both use it). */
  canonical?: string;
  workflowType?: string;
  runId?: string;
  continuedFrom?: string;
  firstRunId?: string;
  /** The run id a reset gave this run (its last `RESET_WORKFLOW` workflow task failure's `newRunId`). */
  resetAs?: string;
  rawInput?: unknown;
  /**
   * The chain input. For an agent session (`governedSessionWorkflow`), its chain's steps are every step
   * the session governed, declared and proposed, across all its runs (audit/verify/session.ts).
   */
  input?: GovernedChainInput;
  /** An agent session's own input, parsed. */
  session?: GovernedSessionInput;
  closure?: Closure;
  entries: ReceiptEntry[];
  /** Receipts of activities whose result the workflow never consumed (cancelled before they completed). */
  orphans: number;
  activities: ScheduledActivity[];
  /** The workflow id the started event names (recent servers record it). */
  workflowId?: string;
  /** Search attributes set at start, decoded. */
  startAttributes: Record<string, unknown>;
  /** Search attribute upserts, decoded, in history order. */
  upserts: Record<string, unknown>[];
  /** Updates by id. */
  updates: Map<string, RecordedUpdate>;
  /** Coordination slot requests (`requestSlot` results), in history order. */
  slots: { eventId: number; result: Record<string, unknown> }[];
  /** Signals received: name and first argument. */
  signals: { eventId: number; name: string; arg: unknown }[];
  /** Signals the chain sent to other workflows (its coordinators): target workflow id, name, first argument. */
  sent: { eventId: number; workflowId: string; name: string; arg: unknown }[];
  /** Patch ids the run recorded (`patched()` markers), in history order. */
  patches: string[];
}

/** What an event handler sees: the run being decoded and the event's place in it. */
interface EventContext {
  run: DecodedRun;
  activities: RecordedActivities;
  eventId: number;
  /** `event <id>`, for problems. */
  where: string;
  /** The history's last event. */
  last: boolean;
  problem(message: string): void;
  /** A problem that makes the history unfit for replay. */
  malformed(message: string): void;
}

type EventHandler = (attrs: Record<string, unknown>, c: EventContext) => void;

/** How `decodeRun` reads a history. */
export interface DecodeOptions {
  /**
   * The history was just fetched from Temporal and put in the stable form by `historyToJson` (the archiver, the
   * transparency log): the round-trip check (which catches a proof's JSON that is not the stable form) cannot find
   * anything there and is skipped, with the canonical JSON it needs (three passes over the history).
   */
  fromServer?: boolean;
}

export function decodeRun(raw: unknown, index: number, options: DecodeOptions = {}): DecodedRun {
  const run: DecodedRun = {
    index,
    events: 0,
    problems: [],
    replayable: false,
    entries: [],
    orphans: 0,
    activities: [],
    startAttributes: {},
    upserts: [],
    updates: new Map(),
    slots: [],
    signals: [],
    sent: [],
    patches: [],
  };
  const problem = (message: string): void => {
    run.problems.push(`run ${index + 1}: ${message}`);
  };
  if (!isRecord(raw) || !Array.isArray(raw.events) || raw.events.length === 0) {
    problem('not a history (an object with a non-empty `events` array)');
    return run;
  }
  run.json = raw;
  const events = raw.events as unknown[];
  run.events = events.length;

  // The stable form round-trips through the protobuf message byte for byte: no unknown fields,
  // no non-canonical base64 or numbers, nothing the replayer would read differently from us.
  if (!options.fromServer) {
    run.canonical = canonicalJson(raw);
    const roundTrip = roundTripProblem(run.canonical, raw);
    if (roundTrip) {
      problem(roundTrip.message);
      if (roundTrip.fatal) return run;
    }
  }

  let structural = true;
  const malformed = (message: string): void => {
    problem(message);
    structural = false;
  };
  const activities = new RecordedActivities(firstPayload);
  const eventTimes = new Map<number, number>();
  run.eventTimes = eventTimes;
  events.forEach((event, i) => {
    const where = `event ${i + 1}`;
    const time = isRecord(event) ? eventTimeMs(event.eventTime) : undefined;
    if (time !== undefined) eventTimes.set(i + 1, time);
    const found = eventAttributes(event, i, where, malformed);
    if (!found) return;
    const last = i === events.length - 1;
    const c: EventContext = { run, activities, eventId: i + 1, where, last, problem, malformed };
    if (i === 0) {
      if (found.key === 'workflowExecutionStartedEventAttributes') started(found.attrs, c);
      else malformed('the first event is not WorkflowExecutionStarted');
      return;
    }
    const handler = Object.hasOwn(EVENT_HANDLERS, found.key) ? EVENT_HANDLERS[found.key] : undefined;
    handler?.(found.attrs, c);
  });
  run.replayable = structural;

  const isSession = run.workflowType === SESSION_WORKFLOW_TYPE;
  if (run.workflowType !== WORKFLOW_TYPE && !isSession)
    problem(`workflow type ${JSON.stringify(run.workflowType ?? null)}, not ${WORKFLOW_TYPE}`);
  if (run.rawInput !== undefined && isSession) {
    const parsed = GovernedSessionInput.safeParse(run.rawInput);
    if (parsed.success) {
      run.session = parsed.data;
      const { chainId, chain, credential, attestation, resume } = parsed.data;
      // Steps are filled in once every run is decoded (sessionSteps); the resume as the chain checks read it.
      run.input = {
        chainId,
        chain: { workload: chain.workload, owner: chain.owner, summary: chain.summary, steps: [] },
        credential,
        attestation,
        ...(resume ? { resume: { ...resume, steps: resume.steps as Record<string, unknown>[] } } : {}),
      } as GovernedChainInput;
    } else
      problem(
        `workflow input is not a session input (${parsed.error.issues
          .map((i) => i.path.join('.') || '(root)')
          .slice(0, 3)
          .join(', ')})`,
      );
  } else if (run.rawInput !== undefined) {
    const parsed = GovernedChainInput.safeParse(run.rawInput);
    if (parsed.success) run.input = parsed.data;
    else
      problem(
        `workflow input is not a chain input (${parsed.error.issues
          .map((i) => i.path.join('.') || '(root)')
          .slice(0, 3)
          .join(', ')})`,
      );
  } else if (run.problems.length === 0) {
    problem('workflow input missing');
  }
  return run;
}

/** The event's one attribute block and its key, checked against its id and type; undefined when there is none to read. */
function eventAttributes(
  event: unknown,
  i: number,
  where: string,
  malformed: (message: string) => void,
): { key: string; attrs: Record<string, unknown> } | undefined {
  if (!isRecord(event)) {
    malformed(`${where}: not an object`);
    return undefined;
  }
  if (event.eventId !== String(i + 1)) {
    malformed(`${where}: eventId ${JSON.stringify(event.eventId)} (event ids must be 1, 2, 3…)`);
  }
  const keys = Object.keys(event).filter((k) => k.endsWith('EventAttributes'));
  if (keys.length !== 1) {
    malformed(`${where}: ${keys.length} attribute blocks`);
    return undefined;
  }
  const key = keys[0]!;
  if (event.eventType !== eventTypeOf(key)) {
    malformed(`${where}: eventType ${String(event.eventType)} does not match its ${key}`);
  }
  const attrs = event[key];
  if (!isRecord(attrs)) {
    malformed(`${where}: attributes are not an object`);
    return undefined;
  }
  return { key, attrs };
}

// ---- one handler per event type ---------------------------------------------------------------

/** The first event: what the run is, its chain input and its search attributes at start. */
function started(attrs: Record<string, unknown>, { run, problem }: EventContext): void {
  run.workflowType =
    isRecord(attrs.workflowType) && typeof attrs.workflowType.name === 'string' ? attrs.workflowType.name : undefined;
  run.runId = optionalString(attrs.originalExecutionRunId);
  run.continuedFrom = optionalString(attrs.continuedExecutionRunId);
  run.firstRunId = optionalString(attrs.firstExecutionRunId);
  run.workflowId = optionalString(attrs.workflowId);
  const sa = searchAttributes(attrs.searchAttributes);
  if (!sa.ok) problem(`search attributes at start: ${sa.problem}`);
  else run.startAttributes = sa.value;
  const input = firstPayload(attrs.input);
  if (!input.ok) problem(`workflow input: ${input.problem}`);
  else run.rawInput = input.value;
}

/**
 * A long chain's lean result carries its step states packed (`packedSteps`): the checks read them
 * unpacked, as `steps`; packed states that do not unpack are a problem (and the result keeps no steps).
 */
function unpackedResult(value: unknown, problem: (message: string) => void): unknown {
  if (!isRecord(value) || value.packedSteps === undefined) return value;
  const { packedSteps: _packed, ...rest } = value;
  const steps = chainResultSteps(value);
  if (!steps) problem('workflow result: packedSteps are not packed step states');
  return { ...rest, steps: steps ?? [] };
}

/** How the run closed; a closure must be the last event. */
function closed(type: Closure['type']): EventHandler {
  return (attrs, { run, where, last, problem, malformed }) => {
    if (!last) malformed(`${where}: the workflow closes before the last event`);
    if (type === 'completed') {
      const result = firstPayload(attrs.result);
      if (!result.ok) problem(`workflow result: ${result.problem}`);
      run.closure = { type: 'completed', result: result.ok ? unpackedResult(result.value, problem) : undefined };
    } else if (type === 'continued-as-new') {
      run.closure = { type: 'continued-as-new', newRunId: optionalString(attrs.newExecutionRunId) ?? '' };
    } else {
      run.closure = { type };
    }
  };
}

/** A workflow task failure that a reset caused names the run id the reset gave this run. */
function workflowTaskFailed(attrs: Record<string, unknown>, { run }: EventContext): void {
  if (attrs.cause === 'WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW') run.resetAs = optionalString(attrs.newRunId);
}

/** `patched()` markers, and the results of the governor's local activities (receipts, slot requests). */
function markerRecorded(attrs: Record<string, unknown>, { run, eventId, where, problem }: EventContext): void {
  if (attrs.markerName === PATCH_MARKER) {
    const id = readPatchMarker(attrs, firstPayload);
    if (id !== undefined) run.patches.push(id);
    return;
  }
  const marker = readLocalActivityMarker(attrs, firstPayload);
  if (!marker) return;
  if ('problem' in marker) {
    problem(`${where}: local activity marker data: ${marker.problem}`);
    return;
  }
  const type = marker.activityType;
  // Replay judges unknown markers.
  if (typeof type !== 'string' || ![...GOVERNOR_LOCAL_ACTIVITIES, Activity.requestSlot].includes(type)) return;
  if (marker.result === undefined) return; // a failed attempt: no result, no receipt
  const result = marker.result;
  if (!result.ok || !isRecord(result.value)) {
    problem(`${where}: ${type} result: ${result.ok ? 'not an object' : result.problem}`);
    return;
  }
  if (type === Activity.requestSlot) run.slots.push({ eventId, result: result.value });
  else run.entries.push({ run: run.index, eventId, source: type as ReceiptSource, result: result.value });
}

function activityScheduled(attrs: Record<string, unknown>, c: EventContext): void {
  const { run, activities, eventId, where, problem } = c;
  const activity = Object.assign(activities.scheduled(eventId, attrs), { run: run.index });
  if (activity.inputProblem !== undefined) problem(`${where}: activity input: ${activity.inputProblem}`);
  run.activities.push(activity);
}

function activityCancelRequested(attrs: Record<string, unknown>, { activities }: EventContext): void {
  activities.cancelRequested(attrs);
}

/** The receipts of `execute` and `governStep` results (unless cancelled first: the workflow never read them). */
function activityCompleted(attrs: Record<string, unknown>, c: EventContext): void {
  const { run, activities, eventId, where, problem } = c;
  const done = activities.completed(attrs);
  if (!done.ok) {
    problem(`${where}: ${done.problem}`);
    return;
  }
  const { activity } = done;
  if (activity.type === Activity.governStep) {
    const parts = readGovernStepResult(activity.result);
    if (!parts || (parts.executed !== undefined && !isRecord(parts.executed))) {
      problem(`${where}: governStep result is not a decision with an optional execution`);
      return;
    }
    // Cancelled first (a revocation): the workflow never read it, so its receipts are not the chain's.
    if (activity.cancelledFirst) {
      run.orphans++;
      return;
    }
    const executed = isRecord(parts.executed) ? parts.executed : undefined;
    const executedInOne = executed !== undefined;
    // The chain's final checkpoint (LEAN_CHAIN_PATCH) is signed only after the step's execution.
    const { checkpoint } = parts;
    if (checkpoint !== undefined && (!isRecord(checkpoint) || !executed)) {
      problem(`${where}: governStep result holds a checkpoint without an execution before it`);
      return;
    }
    run.entries.push({ run: run.index, eventId, source: Activity.authorize, result: parts.authorized, executedInOne });
    if (executed) run.entries.push({ run: run.index, eventId, source: Activity.execute, result: executed });
    if (checkpoint) run.entries.push({ run: run.index, eventId, source: Activity.governStep, result: checkpoint });
    return;
  }
  if (activity.type !== Activity.execute) return;
  if (!isRecord(activity.result)) {
    problem(`${where}: execute result is not an object`);
    return;
  }
  if (activity.cancelledFirst) run.orphans++;
  else run.entries.push({ run: run.index, eventId, source: Activity.execute, result: activity.result });
}

function signalReceived(attrs: Record<string, unknown>, { run, eventId }: EventContext): void {
  const arg = firstPayload(attrs.input);
  run.signals.push({
    eventId,
    name: typeof attrs.signalName === 'string' ? attrs.signalName : '',
    arg: arg.ok ? arg.value : undefined,
  });
}

function signalSent(attrs: Record<string, unknown>, { run, eventId }: EventContext): void {
  const arg = firstPayload(attrs.input);
  const execution = attrs.workflowExecution;
  const target = isRecord(execution) && typeof execution.workflowId === 'string' ? execution.workflowId : '';
  const name = typeof attrs.signalName === 'string' ? attrs.signalName : '';
  run.sent.push({ eventId, workflowId: target, name, arg: arg.ok ? arg.value : undefined });
}

function searchAttributesUpserted(attrs: Record<string, unknown>, { run, where, problem }: EventContext): void {
  const sa = searchAttributes(attrs.searchAttributes);
  if (!sa.ok) problem(`${where}: search attributes: ${sa.problem}`);
  else run.upserts.push(sa.value);
}

/** An update accepted (its name and argument) or completed (its result), by update id. */
function update(accepted: boolean): EventHandler {
  return (attrs, { run, where, problem }) => {
    const request = accepted && isRecord(attrs.acceptedRequest) ? attrs.acceptedRequest : undefined;
    const meta = isRecord(request?.meta) ? request.meta : isRecord(attrs.meta) ? attrs.meta : {};
    const id = typeof meta.updateId === 'string' ? meta.updateId : '';
    const recorded = run.updates.get(id) ?? { completed: false };
    run.updates.set(id, recorded);
    if (request) {
      const input = isRecord(request.input) ? request.input : {};
      recorded.name = typeof input.name === 'string' ? input.name : undefined;
      const arg = firstPayload(input.args);
      if (arg.ok) recorded.arg = arg.value;
      else problem(`${where}: update argument: ${arg.problem}`);
      return;
    }
    const outcome = isRecord(attrs.outcome) ? attrs.outcome : {};
    if (outcome.success !== undefined) {
      const result = firstPayload(outcome.success);
      if (!result.ok) problem(`${where}: update result: ${result.problem}`);
      else recorded.result = result.value;
    }
    recorded.completed = true;
  };
}

/** What each event type after the first contributes to the run (other events: only their shape is checked). */
const EVENT_HANDLERS: Readonly<Record<string, EventHandler>> = {
  workflowExecutionStartedEventAttributes: (_attrs, c) => c.malformed(`${c.where}: a second WorkflowExecutionStarted`),
  workflowExecutionCompletedEventAttributes: closed('completed'),
  workflowExecutionContinuedAsNewEventAttributes: closed('continued-as-new'),
  workflowExecutionFailedEventAttributes: closed('failed'),
  workflowExecutionTerminatedEventAttributes: closed('terminated'),
  workflowExecutionCanceledEventAttributes: closed('canceled'),
  workflowExecutionTimedOutEventAttributes: closed('timed-out'),
  workflowTaskFailedEventAttributes: workflowTaskFailed,
  markerRecordedEventAttributes: markerRecorded,
  activityTaskScheduledEventAttributes: activityScheduled,
  activityTaskCancelRequestedEventAttributes: activityCancelRequested,
  activityTaskCompletedEventAttributes: activityCompleted,
  workflowExecutionSignaledEventAttributes: signalReceived,
  signalExternalWorkflowExecutionInitiatedEventAttributes: signalSent,
  upsertWorkflowSearchAttributesEventAttributes: searchAttributesUpserted,
  workflowExecutionUpdateAcceptedEventAttributes: update(true),
  workflowExecutionUpdateCompletedEventAttributes: update(false),
};

// ---- the stable form and its payloads -----------------------------------------------------------

/** Round-trip outcomes by content (a pure function of the canonical JSON). Bounded. */
const roundTrips = new LRUCache<string, { outcome?: { message: string; fatal: boolean } }>({ max: 10_000 });

function roundTripProblem(canonical: string, raw: HistoryJson): { message: string; fatal: boolean } | undefined {
  const key = sha256Hex(canonical);
  const known = roundTrips.get(key);
  if (known) return known.outcome;
  let outcome: { message: string; fatal: boolean } | undefined;
  try {
    const message = temporal.api.history.v1.History.fromObject(raw);
    if (canonicalJson(message.toJSON()) !== canonical)
      outcome = { message: 'not in the stable proto3 JSON form (it does not round-trip)', fatal: false };
  } catch (err) {
    outcome = { message: `not a valid history message: ${oneLine((err as Error).message)}`, fatal: true };
  }
  roundTrips.set(key, outcome ? { outcome } : {});
  return outcome;
}

/** `fooBarEventAttributes` → `EVENT_TYPE_FOO_BAR`. */
function eventTypeOf(attributesKey: string): string {
  const name = attributesKey.slice(0, -'EventAttributes'.length);
  return `EVENT_TYPE_${name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

/** Decodes `payloads[0]` of a Payloads JSON object with Temporal's default converter; base64 must be canonical. */
function firstPayload(payloads: unknown): Decoded {
  if (!isRecord(payloads) || !Array.isArray(payloads.payloads) || payloads.payloads.length !== 1)
    return { ok: false, problem: 'expected exactly one payload' };
  return decodePayload(payloads.payloads[0]);
}

/** Decodes a SearchAttributes JSON object (`indexedFields`: one payload per attribute). */
function searchAttributes(
  value: unknown,
): { ok: true; value: Record<string, unknown> } | { ok: false; problem: string } {
  if (value === undefined) return { ok: true, value: {} };
  const fields = isRecord(value) ? value.indexedFields : undefined;
  if (fields === undefined) return { ok: true, value: {} };
  if (!isRecord(fields)) return { ok: false, problem: 'not an object' };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    const decoded = decodePayload(v);
    if (!decoded.ok) return { ok: false, problem: `${k}: ${decoded.problem}` };
    out[k] = decoded.value;
  }
  return { ok: true, value: out };
}

function decodePayload(p: unknown): Decoded {
  if (!isRecord(p)) return { ok: false, problem: 'payload is not an object' };
  const metadata: Record<string, Uint8Array> = {};
  if (p.metadata !== undefined) {
    if (!isRecord(p.metadata)) return { ok: false, problem: 'payload metadata is not an object' };
    for (const [k, v] of Object.entries(p.metadata)) {
      const bytes = strictBase64(v);
      if (!bytes) return { ok: false, problem: `payload metadata ${k} is not canonical base64` };
      metadata[k] = bytes;
    }
  }
  const data = p.data === undefined ? new Uint8Array(0) : strictBase64(p.data);
  if (!data) return { ok: false, problem: 'payload data is not canonical base64' };
  try {
    return { ok: true, value: defaultPayloadConverter.fromPayload({ metadata, data }) };
  } catch (err) {
    return { ok: false, problem: `payload cannot be decoded: ${oneLine((err as Error).message)}` };
  }
}

function strictBase64(value: unknown): Uint8Array | undefined {
  if (typeof value !== 'string') return undefined;
  const bytes = Buffer.from(value, 'base64');
  return bytes.toString('base64') === value ? new Uint8Array(bytes) : undefined;
}
