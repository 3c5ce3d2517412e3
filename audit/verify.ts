import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { loadPublicJwks } from '../identity';
import { decisionReceiptPayload, receiptBody, RECEIPT_KINDS_BY_SOURCE, type ReceiptSource } from '../core/receipts';
import { GovernedChainInput } from '../contracts/chain';
import { VALIDATED_INPUT_PATCH } from '../contracts/patches';
import { findDomain, requestDigestInput, SLOT_SEAL_TYP, slotRequestId } from '../contracts/coordination';
import { compensationStepId, idempotencyKey, isCompensationStepId, ownContext, resourceLabel } from '../core/step';
import { stepDigest } from '../core/digests';
import { Activity, GOVERNOR_LOCAL_ACTIVITIES, LOCAL_ACTIVITY_MARKER, PATCH_MARKER, SLOT_VERDICT_SIGNAL } from '../core/history';
import { AuthzRequest, Decision } from '../contracts/decision';
import { durationMs } from '../contracts/duration';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { GENESIS_HASH, Receipt, type ReceiptHead } from '../contracts/receipt';
import { RevocationListRef } from '../contracts/revocation';
import { GovernorPolicyDigestKey, GovernorStatusKey, GovernorWorkloadKey } from '../contracts/search-attributes';
import { ChainStatus, TERMINAL_STATUSES, WORKFLOW_TYPE } from '../contracts/status';
import { loadArchivedBundle } from '../policies/bundle-archive';
import { bundleDigest, type LoadedBundle } from '../policies/bundle';
import { canonicalJson, sha256Hex } from '../core/canonical';
import { decisionsDiffer } from '../policies/decision-diff';
import { PolicyEngine } from '../policies/engine';
import { decodeJsonPayloads, ENCRYPTED_ENCODING } from '../runtime/codec';
import { checkRuns, listRunIds, type ChainRun, type RunReport } from './runs';

/*
 * `governor verify`: the replay-integrity proof of one chain (DESIGN §1, issue 7).
 *
 * Input is the chain's workflow history — every run, first to last, in the stable JSON form of
 * `historyToJson` (protobufjs' proto3 JSON: what `JSON.stringify(await handle.fetchHistory())`
 * gives, and what `Worker.runReplayHistory` accepts). The same code verifies a live chain and an
 * exported proof, so both give the same answer. Checks, one report line each:
 *
 *   history     well-formed: proto3 JSON that round-trips byte for byte, contiguous event ids,
 *               each event type matching its attributes, the governor's workflow type, a valid
 *               chain input, runs linked by continue-as-new, one chain id throughout
 *   runs        every run of the workflow id and how it relates to the chain (audit/runs.ts):
 *               no executor ran in a branch a reset abandoned, the chain did not end terminated,
 *               timed out or cancelled, no other execution used the id
 *   replay      every run replays with the current workflow code (no nondeterminism, no failure)
 *   receipts    every receipt the workflow consumed: seq contiguous from 1, prevHash links (also
 *               across runs), hash recomputed from the body, digest recomputed from what history
 *               recorded, Ed25519 signature valid with the trusted receipt key
 *   checkpoint  a completed workflow ends with a checkpoint receipt that its result names
 *               (receiptHead, checkpoint signature) and whose payload matches its status and reason;
 *               every run that continued as new ends with a checkpoint naming the next run
 *   bindings    what receipts do not sign themselves is tied to what they do: step digests
 *               recomputed from the chain input; requests naming the step's workload, action,
 *               resource and context; approvals in a request counted before it; executor activities
 *               scheduled only after an allowing decision (or break-glass) and a coordination grant,
 *               with exactly the step's input; recorded outcomes equal to what executors returned;
 *               sealed coordination requests and the verdicts coordinators signalled; the workflow
 *               result's step states, vote-update results and search attributes matching the receipts
 *   decisions   every recorded decision re-evaluated from its recorded request with the bundle of
 *               its recorded digest is identical (canonical JSON), and the grace period and approval
 *               rules recorded with it are that bundle's; decisions made before policy ran (no
 *               request) are denies
 *
 * Security: trust comes only from the caller's receipt JWKS and bundle lookup, never from the
 * history. Untrusted history is snapshotted into plain data and checked by guard clauses; a
 * malformed history is a failed check, never an exception.
 */

/** A workflow history in its stable JSON form (protobufjs proto3 JSON of `temporal.api.history.v1.History`). */
export type HistoryJson = Record<string, unknown>;

/** One check of a verification. */
export interface VerifyCheck {
  name: string;
  ok: boolean;
  /** One line: what was checked, or the first problems found. */
  detail: string;
  /** Every problem found (failed checks only). */
  problems?: string[];
}

/** The outcome of verifying one chain: one entry per check and the verdict. */
export interface VerifyReport {
  chainId: string | null;
  verdict: 'verified' | 'failed';
  /** The chain's final status (from its checkpoint), `Running`, or how its workflow ended. */
  status: string | null;
  runs: number;
  receipts: number;
  decisions: number;
  /** Bundle digests the recorded decisions name (enforced and shadow), sorted. */
  bundleDigests: string[];
  /** Revocation lists the recorded decisions saw (`<registry> seq <n> head <hash>`), sorted; absent when none names one. */
  revocationLists?: string[];
  checks: VerifyCheck[];
  /** Every run of the chain's workflow id, with its status and how it relates to the chain (empty without a run list). */
  runList: RunReport[];
}

/** Names of the checks, in report order. */
export const CheckName = {
  Proof: 'proof',
  Seal: 'seal',
  ReceiptKey: 'receipt-key',
  Bundles: 'bundles',
  History: 'history',
  Runs: 'runs',
  Replay: 'replay',
  Receipts: 'receipts',
  Checkpoint: 'checkpoint',
  Bindings: 'bindings',
  Decisions: 'decisions',
} as const;

/** Where the bundle of a recorded digest comes from: undefined when it is not available (may throw, with a reason). */
export type BundleLookup = (digest: string) => LoadedBundle | undefined;

/** What `verifyChain` needs. */
export interface VerifyChainInput {
  /** The chain's runs, first to last, in the stable JSON form (`historyToJson`). */
  histories?: readonly unknown[];
  /** A single-run chain's history (shorthand for `histories: [history]`). */
  history?: unknown;
  /**
   * Every run of the chain's workflow id (default: the list `fetchChainHistories` attached to
   * `histories`). Without it the `runs` check fails: resets and terminations cannot be excluded.
   */
  runs?: readonly ChainRun[];
  /** The chain id the history must belong to (default: the id in the history's input). */
  chainId?: string;
  /** GOVERNOR_HOME: default source of the trusted receipt key and of archived bundles. */
  home?: string;
  /** Trusted receipt public keys (default `<home>/keys/receipt.jwks.json`). */
  trustedReceiptJwks?: JSONWebKeySet;
  /** Bundles by digest (default: the bundle archive of `home`). */
  bundles?: BundleLookup;
  /** A replayer to reuse (and its cache); default a one-shot replayer on `workflowBundle`. */
  replayer?: Replayer;
  /** Workflow code to replay with (default: this package's `workflows/`, bundled on the fly). */
  workflowBundle?: WorkflowBundleOption;
  /** Payload codec of an encrypted history (`runtime/codec.ts`): payloads are decoded before any check. */
  codec?: PayloadCodec;
}

// ---- history: stable JSON form, fetching ------------------------------------------------------

/** The stable JSON form of a history (what proofs embed and `verifyChain` reads). */
export function historyToJson(history: unknown): HistoryJson {
  const message = temporal.api.history.v1.History.fromObject(history as Record<string, unknown>);
  return JSON.parse(JSON.stringify(message.toJSON())) as HistoryJson;
}

/** A chain's lineage histories, first to last, with every run of its workflow id attached (`runs`, not enumerable). */
export type ChainHistories = HistoryJson[] & { readonly runs?: readonly ChainRun[] };

/**
 * Fetches the chain's lineage, first to last: the latest run, then each run it continued from
 * (`continuedExecutionRunId`); and attaches as `runs` every run of the workflow id (resets,
 * terminated runs, other executions), listed with `WorkflowId = '<chainId>'`, with the histories of
 * those outside the lineage. Throws NotFound for an unknown chain, TemporalUnreachable when the
 * server stops answering.
 */
export async function fetchChainHistories(client: Client, chainId: string, maxRuns = 10_000): Promise<ChainHistories> {
  const runs: HistoryJson[] = [];
  const lineageIds: string[] = [];
  const others: ChainRun[] = [];
  try {
    const described = await client.workflow.getHandle(chainId).describe();
    if (described.type !== WORKFLOW_TYPE) {
      throw new GovernorError(ErrorCode.InvalidInput, `workflow ${chainId} is a ${described.type}, not a governed chain`, 'chainId');
    }
    let runId: string | undefined = described.runId;
    while (runId) {
      if (runs.length >= maxRuns) throw new GovernorError(ErrorCode.InvalidInput, `chain ${chainId} has more than ${maxRuns} runs`, 'chainId');
      const json = historyToJson(await client.workflow.getHandle(chainId, runId).fetchHistory());
      runs.unshift(json);
      lineageIds.unshift(runId);
      const started = startedAttributes(json);
      const previous = started?.continuedExecutionRunId;
      runId = typeof previous === 'string' && previous.length > 0 ? previous : undefined;
    }
    // Oldest first (the server lists newest first); runs of the lineage are read above.
    const listed = (await listRunIds(client, chainId, maxRuns)).reverse();
    for (const id of listed.filter((r) => !lineageIds.includes(r))) {
      if (runs.length + others.length >= maxRuns) throw new GovernorError(ErrorCode.InvalidInput, `chain ${chainId} has more than ${maxRuns} runs`, 'chainId');
      others.push({ runId: id, history: historyToJson(await client.workflow.getHandle(chainId, id).fetchHistory()) });
    }
  } catch (err) {
    throw temporalError(err, chainId);
  }
  const all: ChainRun[] = [...others, ...lineageIds.map((runId, lineage) => ({ runId, lineage }))];
  Object.defineProperty(runs, 'runs', { value: all, enumerable: false });
  return runs;
}

function temporalError(err: unknown, chainId: string): unknown {
  if (err instanceof GovernorError) return err;
  const e = err as { name?: string; code?: number; message?: string };
  if (e?.name === 'WorkflowNotFoundError' || e?.code === 5) return new GovernorError(ErrorCode.NotFound, `no chain ${chainId}`, 'chainId');
  if (e?.code === 14 || e?.code === 4) return new GovernorError(ErrorCode.TemporalUnreachable, `cannot reach Temporal: ${e.message ?? 'unavailable'}`, 'TEMPORAL_ADDRESS');
  return err;
}

function startedAttributes(json: HistoryJson): Record<string, unknown> | undefined {
  const events = json.events;
  if (!Array.isArray(events) || !isRecord(events[0])) return undefined;
  const attrs = events[0].workflowExecutionStartedEventAttributes;
  return isRecord(attrs) ? attrs : undefined;
}

// ---- replay ---------------------------------------------------------------------------------

/** The outcome of replaying one history with the current workflow code. */
export type ReplayOutcome = { ok: true } | { ok: false; error: string };

/** Replays histories with one long-lived replay worker; results are cached by history content. */
export interface Replayer {
  /**
   * Replays `history` (stable JSON form). The same content (canonical JSON) is replayed once and
   * its outcome cached: replay is a pure function of the history and the workflow code, which is
   * fixed for the replayer's lifetime. `canonical`, when given, must be `canonicalJson(history)`
   * (callers that already computed it save a serialisation).
   */
  replay(history: HistoryJson, workflowId: string, canonical?: string): Promise<ReplayOutcome>;
  /** Stops the replay worker. */
  close(): Promise<void>;
}

interface QueuedReplay {
  workflowId: string;
  history: temporal.api.history.v1.History;
  resolve: (outcome: ReplayOutcome) => void;
}

const MAX_REPLAYS_CACHED = 10_000;

/**
 * A replayer on `Worker.runReplayHistories`: one replay worker fed from a queue, so verifying many
 * chains (or one proof many times) does not pay for a worker per history. When the replay worker
 * itself fails (Core rejects a malformed history), the history in flight fails and the next one
 * starts a fresh worker.
 */
export function createReplayer(options: { workflowBundle?: WorkflowBundleOption } = {}): Replayer {
  // The governor worker's payload converter: a history holding an undecodable payload replays as it ran.
  const dataConverter = { payloadConverterPath: require.resolve('../runtime/payload-converter') };
  const workerOptions = options.workflowBundle ? { workflowBundle: options.workflowBundle, dataConverter } : { workflowsPath: require.resolve('../workflows'), dataConverter };
  const cache = new Map<string, Promise<ReplayOutcome>>();
  const queue: QueuedReplay[] = [];
  let inFlight: QueuedReplay | undefined;
  let wake: (() => void) | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  async function* feed(): AsyncGenerator<{ workflowId: string; history: temporal.api.history.v1.History }> {
    for (;;) {
      while (queue.length === 0) {
        if (closed) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
      inFlight = queue.shift()!;
      yield { workflowId: inFlight.workflowId, history: inFlight.history };
    }
  }

  const start = (): void => {
    running = (async () => {
      try {
        for await (const result of Worker.runReplayHistories(workerOptions, feed())) {
          const done = inFlight;
          inFlight = undefined;
          done?.resolve(result.error ? { ok: false, error: oneLine(result.error.message) } : { ok: true });
        }
      } catch (err) {
        const done = inFlight;
        inFlight = undefined;
        done?.resolve({ ok: false, error: `the replay worker rejected the history: ${oneLine((err as Error)?.message ?? String(err))}` });
      } finally {
        running = undefined;
        if (queue.length > 0 && !closed) start();
      }
    })();
  };

  return {
    replay(history, workflowId, canonical) {
      let key: string;
      let message: temporal.api.history.v1.History;
      try {
        key = sha256Hex(`${workflowId}\n${canonical ?? canonicalJson(history)}`);
        const cached = cache.get(key);
        if (cached) return cached;
        message = temporal.api.history.v1.History.fromObject(history);
      } catch (err) {
        return Promise.resolve({ ok: false, error: `not a history: ${oneLine((err as Error).message)}` });
      }
      if (closed) return Promise.resolve({ ok: false, error: 'the replayer is closed' });
      const outcome = new Promise<ReplayOutcome>((resolve) => queue.push({ workflowId, history: message, resolve }));
      if (cache.size >= MAX_REPLAYS_CACHED) cache.delete(cache.keys().next().value!);
      cache.set(key, outcome);
      if (!running) start();
      wake?.();
      return outcome;
    },
    async close() {
      closed = true;
      wake?.();
      await running;
      for (const q of queue.splice(0)) q.resolve({ ok: false, error: 'the replayer is closed' });
    },
  };
}

// ---- decoding one run -----------------------------------------------------------------------

const { authorize: AUTHORIZE, verifyApproval: VERIFY_APPROVAL, recordReceipt: RECORD_RECEIPT, execute: EXECUTE, governStep: GOVERN_STEP, requestSlot: REQUEST_SLOT } = Activity;

/** A receipt as history recorded it, with the result that carried it. */
interface ReceiptEntry {
  run: number;
  eventId: number;
  source: ReceiptSource;
  result: Record<string, unknown>;
  /** A decision whose `governStep` also executed the step (so it asked no coordinator). */
  executedInOne?: boolean;
}

/** A service (or built-in) activity the workflow scheduled. */
interface ScheduledActivity {
  run: number;
  eventId: number;
  type: string;
  input: unknown;
  completed: boolean;
  result: unknown;
  /** A cancellation was requested before the activity completed: the workflow did not consume its result. */
  cancelledFirst: boolean;
}

type Closure =
  | { type: 'completed'; result: unknown }
  | { type: 'continued-as-new'; newRunId: string }
  | { type: 'failed' | 'terminated' | 'canceled' | 'timed-out' };

interface DecodedRun {
  index: number;
  events: number;
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
  input?: GovernedChainInput;
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
  /** Updates by id: the accepted request's name and first argument, and the successful result. */
  updates: Map<string, { name?: string; arg?: unknown; result?: unknown; completed: boolean }>;
  /** Coordination slot requests (`requestSlot` results), in history order. */
  slots: { eventId: number; result: Record<string, unknown> }[];
  /** Signals received: name and first argument. */
  signals: { eventId: number; name: string; arg: unknown }[];
  /** Signals the chain sent to other workflows (its coordinators): target workflow id, name, first argument. */
  sent: { eventId: number; workflowId: string; name: string; arg: unknown }[];
  /** Patch ids the run recorded (`patched()` markers), in history order. */
  patches: string[];
}

const CLOSURES: Record<string, Closure['type']> = {
  workflowExecutionCompletedEventAttributes: 'completed',
  workflowExecutionContinuedAsNewEventAttributes: 'continued-as-new',
  workflowExecutionFailedEventAttributes: 'failed',
  workflowExecutionTerminatedEventAttributes: 'terminated',
  workflowExecutionCanceledEventAttributes: 'canceled',
  workflowExecutionTimedOutEventAttributes: 'timed-out',
};

function decodeRun(raw: unknown, index: number): DecodedRun {
  const run: DecodedRun = { index, events: 0, problems: [], replayable: false, entries: [], orphans: 0, activities: [], startAttributes: {}, upserts: [], updates: new Map(), slots: [], signals: [], sent: [], patches: [] };
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
  run.canonical = canonicalJson(raw);
  const roundTrip = roundTripProblem(run.canonical, raw);
  if (roundTrip) {
    problem(roundTrip.message);
    if (roundTrip.fatal) return run;
  }

  let structural = true;
  const scheduled = new Map<string, ScheduledActivity>();
  events.forEach((event, i) => {
    const where = `event ${i + 1}`;
    if (!isRecord(event)) {
      problem(`${where}: not an object`);
      structural = false;
      return;
    }
    if (event.eventId !== String(i + 1)) {
      problem(`${where}: eventId ${JSON.stringify(event.eventId)} (event ids must be 1, 2, 3…)`);
      structural = false;
    }
    const keys = Object.keys(event).filter((k) => k.endsWith('EventAttributes'));
    if (keys.length !== 1) {
      problem(`${where}: ${keys.length} attribute blocks`);
      structural = false;
      return;
    }
    const key = keys[0]!;
    if (event.eventType !== eventTypeOf(key)) {
      problem(`${where}: eventType ${String(event.eventType)} does not match its ${key}`);
      structural = false;
    }
    const attrs = event[key];
    if (!isRecord(attrs)) {
      problem(`${where}: attributes are not an object`);
      structural = false;
      return;
    }
    const eventId = i + 1;
    if (i === 0) {
      if (key !== 'workflowExecutionStartedEventAttributes') {
        problem('the first event is not WorkflowExecutionStarted');
        structural = false;
        return;
      }
      run.workflowType = isRecord(attrs.workflowType) && typeof attrs.workflowType.name === 'string' ? attrs.workflowType.name : undefined;
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
      return;
    }
    if (key === 'workflowExecutionStartedEventAttributes') {
      problem(`${where}: a second WorkflowExecutionStarted`);
      structural = false;
      return;
    }
    const closure = CLOSURES[key];
    if (closure) {
      if (i !== events.length - 1) {
        problem(`${where}: the workflow closes before the last event`);
        structural = false;
      }
      if (closure === 'completed') {
        const result = firstPayload(attrs.result);
        if (!result.ok) problem(`workflow result: ${result.problem}`);
        run.closure = { type: 'completed', result: result.ok ? result.value : undefined };
      } else if (closure === 'continued-as-new') {
        run.closure = { type: 'continued-as-new', newRunId: optionalString(attrs.newExecutionRunId) ?? '' };
      } else {
        run.closure = { type: closure };
      }
      return;
    }
    if (key === 'workflowTaskFailedEventAttributes' && attrs.cause === 'WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW') {
      run.resetAs = optionalString(attrs.newRunId);
      return;
    }
    if (key === 'markerRecordedEventAttributes') {
      if (attrs.markerName === PATCH_MARKER) {
        const data = firstPayload(isRecord(attrs.details) ? attrs.details['patch-data'] : undefined);
        if (data.ok && isRecord(data.value) && typeof data.value.id === 'string') run.patches.push(data.value.id);
        return;
      }
      if (attrs.markerName !== LOCAL_ACTIVITY_MARKER) return;
      const details = isRecord(attrs.details) ? attrs.details : {};
      const meta = firstPayload(details.data);
      if (!meta.ok) {
        problem(`${where}: local activity marker data: ${meta.problem}`);
        return;
      }
      const type = isRecord(meta.value) ? meta.value.activity_type : undefined;
      if (typeof type !== 'string' || ![...GOVERNOR_LOCAL_ACTIVITIES, REQUEST_SLOT].includes(type)) return; // replay judges unknown markers
      if (details.result === undefined) return; // a failed attempt: no result, no receipt
      const result = firstPayload(details.result);
      if (!result.ok || !isRecord(result.value)) {
        problem(`${where}: ${type} result: ${result.ok ? 'not an object' : result.problem}`);
        return;
      }
      if (type === REQUEST_SLOT) run.slots.push({ eventId, result: result.value });
      else run.entries.push({ run: index, eventId, source: type as ReceiptSource, result: result.value });
      return;
    }
    if (key === 'activityTaskScheduledEventAttributes') {
      const type = isRecord(attrs.activityType) && typeof attrs.activityType.name === 'string' ? attrs.activityType.name : '';
      const input = firstPayload(attrs.input);
      if (!input.ok) problem(`${where}: activity input: ${input.problem}`);
      const activity = { run: index, eventId, type, input: input.ok ? input.value : undefined, completed: false, result: undefined, cancelledFirst: false };
      scheduled.set(String(eventId), activity);
      run.activities.push(activity);
      return;
    }
    if (key === 'workflowExecutionSignaledEventAttributes') {
      const arg = firstPayload(attrs.input);
      run.signals.push({ eventId, name: typeof attrs.signalName === 'string' ? attrs.signalName : '', arg: arg.ok ? arg.value : undefined });
      return;
    }
    if (key === 'signalExternalWorkflowExecutionInitiatedEventAttributes') {
      const arg = firstPayload(attrs.input);
      const target = isRecord(attrs.workflowExecution) && typeof attrs.workflowExecution.workflowId === 'string' ? attrs.workflowExecution.workflowId : '';
      run.sent.push({ eventId, workflowId: target, name: typeof attrs.signalName === 'string' ? attrs.signalName : '', arg: arg.ok ? arg.value : undefined });
      return;
    }
    if (key === 'upsertWorkflowSearchAttributesEventAttributes') {
      const sa = searchAttributes(attrs.searchAttributes);
      if (!sa.ok) problem(`${where}: search attributes: ${sa.problem}`);
      else run.upserts.push(sa.value);
      return;
    }
    if (key === 'workflowExecutionUpdateAcceptedEventAttributes' || key === 'workflowExecutionUpdateCompletedEventAttributes') {
      const accepted = key === 'workflowExecutionUpdateAcceptedEventAttributes';
      const request = accepted && isRecord(attrs.acceptedRequest) ? attrs.acceptedRequest : undefined;
      const meta = isRecord(request?.meta) ? request.meta : isRecord(attrs.meta) ? attrs.meta : {};
      const id = typeof meta.updateId === 'string' ? meta.updateId : '';
      const update = run.updates.get(id) ?? { completed: false };
      run.updates.set(id, update);
      if (request) {
        const input = isRecord(request.input) ? request.input : {};
        update.name = typeof input.name === 'string' ? input.name : undefined;
        const arg = firstPayload(input.args);
        if (arg.ok) update.arg = arg.value;
        else problem(`${where}: update argument: ${arg.problem}`);
        return;
      }
      const outcome = isRecord(attrs.outcome) ? attrs.outcome : {};
      if (outcome.success !== undefined) {
        const result = firstPayload(outcome.success);
        if (!result.ok) problem(`${where}: update result: ${result.problem}`);
        else update.result = result.value;
      }
      update.completed = true;
      return;
    }
    if (key === 'activityTaskCancelRequestedEventAttributes') {
      const activity = scheduled.get(String(attrs.scheduledEventId));
      if (activity && !activity.completed) activity.cancelledFirst = true;
      return;
    }
    if (key === 'activityTaskCompletedEventAttributes') {
      const activity = scheduled.get(String(attrs.scheduledEventId));
      if (!activity) {
        problem(`${where}: completes an activity that was never scheduled`);
        return;
      }
      const result = attrs.result === undefined ? { ok: true as const, value: undefined } : firstPayload(attrs.result);
      if (!result.ok) {
        problem(`${where}: activity result: ${result.problem}`);
        return;
      }
      activity.completed = true;
      activity.result = result.value;
      if (activity.type === GOVERN_STEP) {
        if (!isRecord(result.value) || !isRecord(result.value.authorized) || (result.value.executed !== undefined && !isRecord(result.value.executed))) {
          problem(`${where}: governStep result is not a decision with an optional execution`);
          return;
        }
        // Cancelled first (a revocation): the workflow never read it, so its receipts are not the chain's.
        if (activity.cancelledFirst) {
          run.orphans++;
          return;
        }
        run.entries.push({ run: index, eventId, source: AUTHORIZE, result: result.value.authorized, executedInOne: isRecord(result.value.executed) });
        if (isRecord(result.value.executed)) run.entries.push({ run: index, eventId, source: EXECUTE, result: result.value.executed });
        return;
      }
      if (activity.type !== EXECUTE) return;
      if (!isRecord(result.value)) {
        problem(`${where}: execute result is not an object`);
        return;
      }
      if (activity.cancelledFirst) run.orphans++;
      else run.entries.push({ run: index, eventId, source: EXECUTE, result: result.value });
    }
  });
  run.replayable = structural;

  if (run.workflowType !== WORKFLOW_TYPE) problem(`workflow type ${JSON.stringify(run.workflowType ?? null)}, not ${WORKFLOW_TYPE}`);
  if (run.rawInput !== undefined) {
    const parsed = GovernedChainInput.safeParse(run.rawInput);
    if (parsed.success) run.input = parsed.data;
    else problem(`workflow input is not a chain input (${parsed.error.issues.map((i) => i.path.join('.') || '(root)').slice(0, 3).join(', ')})`);
  } else if (run.problems.length === 0) {
    problem('workflow input missing');
  }
  return run;
}

/** Round-trip outcomes by content (a pure function of the canonical JSON). Bounded. */
const roundTrips = new Map<string, { message: string; fatal: boolean } | undefined>();

function roundTripProblem(canonical: string, raw: HistoryJson): { message: string; fatal: boolean } | undefined {
  const key = sha256Hex(canonical);
  if (roundTrips.has(key)) return roundTrips.get(key);
  let outcome: { message: string; fatal: boolean } | undefined;
  try {
    const message = temporal.api.history.v1.History.fromObject(raw);
    if (canonicalJson(message.toJSON()) !== canonical) outcome = { message: 'not in the stable proto3 JSON form (it does not round-trip)', fatal: false };
  } catch (err) {
    outcome = { message: `not a valid history message: ${oneLine((err as Error).message)}`, fatal: true };
  }
  if (roundTrips.size >= 10_000) roundTrips.delete(roundTrips.keys().next().value!);
  roundTrips.set(key, outcome);
  return outcome;
}

/** `fooBarEventAttributes` → `EVENT_TYPE_FOO_BAR`. */
function eventTypeOf(attributesKey: string): string {
  const name = attributesKey.slice(0, -'EventAttributes'.length);
  return `EVENT_TYPE_${name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

type Decoded = { ok: true; value: unknown } | { ok: false; problem: string };

/** Decodes `payloads[0]` of a Payloads JSON object with Temporal's default converter; base64 must be canonical. */
function firstPayload(payloads: unknown): Decoded {
  if (!isRecord(payloads) || !Array.isArray(payloads.payloads) || payloads.payloads.length !== 1) return { ok: false, problem: 'expected exactly one payload' };
  return decodePayload(payloads.payloads[0]);
}

/** Decodes a SearchAttributes JSON object (`indexedFields`: one payload per attribute). */
function searchAttributes(value: unknown): { ok: true; value: Record<string, unknown> } | { ok: false; problem: string } {
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

// ---- verification ---------------------------------------------------------------------------

/** A receipt that passed the schema, with where it came from. */
interface ChainReceipt {
  receipt: Receipt;
  entry: ReceiptEntry;
}

/** Collects a check's problems; the detail lists the first few. */
class Problems {
  readonly list: string[] = [];
  add(message: string): void {
    this.list.push(message);
  }
  get ok(): boolean {
    return this.list.length === 0;
  }
  check(name: string, okDetail: string): VerifyCheck {
    if (this.ok) return { name, ok: true, detail: okDetail };
    const shown = this.list.slice(0, 3).join('; ');
    return { name, ok: false, detail: this.list.length > 3 ? `${shown}; and ${this.list.length - 3} more` : shown, problems: [...this.list] };
  }
}

/**
 * Verifies one chain from its history: replay, receipts, checkpoint, bindings, decisions (see the
 * file comment). Never throws for a bad history: every problem is a failed check. Throws only for
 * a bad trusted key set (bad input of the caller).
 */
export async function verifyChain(input: VerifyChainInput): Promise<VerifyReport> {
  const raw = input.histories ?? (input.history !== undefined ? [input.history] : []);
  const codecProblems: string[] = [];
  const histories = await decodeHistories(raw, input.codec, codecProblems);
  const trusted = input.trustedReceiptJwks ?? loadPublicJwks(input.home, 'receipt');
  const keySet = trustedKeys(trusted);
  const bundles: BundleLookup = input.bundles ?? ((digest) => (input.home ? loadArchivedBundle(input.home, digest) : undefined));

  const runs = histories.map((h, i) => decodeRun(h, i));
  const history = new Problems();
  codecProblems.forEach((p) => history.add(p));
  runs.forEach((r) => r.problems.forEach((p) => history.add(p)));
  if (runs.length === 0) history.add('no history');
  const first = runs[0];
  const chainId = input.chainId ?? first?.input?.chainId ?? null;
  checkRunLinks(runs, chainId, history);
  const runCodecProblems: string[] = [];
  const runList = await decodeRunList(input.runs ?? (raw as ChainHistories).runs, input.codec, runCodecProblems);
  runCodecProblems.forEach((p) => history.add(p));
  const runsChecked = checkRuns(chainId, histories, runList);

  const replayer = input.replayer ?? createReplayer(input.workflowBundle ? { workflowBundle: input.workflowBundle } : {});
  let replay: VerifyCheck;
  try {
    replay = await replayRuns(runs, chainId ?? 'governor-verify', replayer);
  } finally {
    if (!input.replayer) await replayer.close();
  }

  const receipts = await checkReceipts(runs, chainId, keySet);
  const checkpoint = checkCheckpoint(runs, receipts.chain);
  const slotSeals = await checkSlotSeals(runs, keySet);
  const bindings = checkBindings(runs, chainId, receipts.chain, checkpoint.status, slotSeals);
  const decisions = checkDecisions(runs, bundles);

  const checks: VerifyCheck[] = [
    history.check(CheckName.History, `${runs.length} run(s), ${runs.reduce((n, r) => n + r.events, 0)} events of chain ${chainId}`),
    runsChecked.check,
    replay,
    receipts.check,
    checkpoint.check,
    bindings,
    decisions.check,
  ];
  return {
    chainId,
    verdict: checks.every((c) => c.ok) ? 'verified' : 'failed',
    status: checkpoint.status,
    runs: runs.length,
    receipts: receipts.chain.length,
    decisions: decisions.count,
    bundleDigests: decisions.digests,
    ...(decisions.revocationLists.length > 0 ? { revocationLists: decisions.revocationLists } : {}),
    checks,
    runList: runsChecked.runs,
  };
}

/** The run list with the histories of runs outside the lineage decoded like the lineage's. */
async function decodeRunList(runs: readonly ChainRun[] | undefined, codec: PayloadCodec | undefined, problems: string[]): Promise<ChainRun[] | undefined> {
  if (!Array.isArray(runs)) return undefined;
  const out: ChainRun[] = [];
  for (const run of runs as readonly ChainRun[]) {
    if (run?.history === undefined) {
      out.push(run);
      continue;
    }
    const own: string[] = [];
    const [history] = await decodeHistories([run.history], codec, own);
    own.forEach((p) => problems.push(p.replace(/^run 1:/, `run ${String(run.runId)}:`)));
    out.push({ ...run, history: history as HistoryJson });
  }
  return out;
}

const ENCRYPTED_BASE64 = Buffer.from(ENCRYPTED_ENCODING).toString('base64');

/**
 * Decodes every encrypted payload of each history with `codec` (a run that does not decode stays as
 * it is and its problem is recorded); without a codec, an encrypted history is named as such.
 */
async function decodeHistories(histories: readonly unknown[], codec: PayloadCodec | undefined, problems: string[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const [i, h] of histories.entries()) {
    if (!codec) {
      if (JSON.stringify(h ?? null).includes(ENCRYPTED_BASE64)) problems.push(`run ${i + 1}: payloads are encrypted (${ENCRYPTED_ENCODING}): verify with the codec key file (--codec-keys or GOVERNOR_CODEC_KEYS)`);
      out.push(h);
      continue;
    }
    try {
      out.push(await decodeJsonPayloads(h, codec));
    } catch (err) {
      problems.push(`run ${i + 1}: ${oneLine((err as Error).message)}`);
      out.push(h);
    }
  }
  return out;
}

function checkRunLinks(runs: DecodedRun[], chainId: string | null, history: Problems): void {
  runs.forEach((run, i) => {
    if (run.input && chainId !== null && run.input.chainId !== chainId) history.add(`run ${i + 1}: chain ${run.input.chainId}, not ${chainId}`);
    if (run.workflowId !== undefined && chainId !== null && run.workflowId !== chainId) history.add(`run ${i + 1}: workflow ${run.workflowId}, not ${chainId}`);
    if (i === 0) {
      if (run.continuedFrom) history.add('run 1 continues an earlier run that is missing');
      if (run.input?.resume) history.add('run 1 resumes a chain (earlier runs are missing)');
      return;
    }
    const prev = runs[i - 1]!;
    if (prev.closure?.type !== 'continued-as-new') history.add(`run ${i}: does not continue as new, yet run ${i + 1} follows it`);
    else if (!run.runId || prev.closure.newRunId !== run.runId) history.add(`run ${i + 1}: is not the run that run ${i} continued as`);
    // A run that was itself made by a reset continues as new under the id the reset gave it.
    if (!run.continuedFrom || (run.continuedFrom !== prev.runId && run.continuedFrom !== prev.resetAs)) history.add(`run ${i + 1}: does not continue run ${i}`);
    if (run.firstRunId !== first(runs).firstRunId) history.add(`run ${i + 1}: belongs to another first run`);
    if (!run.input?.resume) history.add(`run ${i + 1}: carries no resume state`);
    if (run.input && prev.input && canonicalJson(run.input.chain) !== canonicalJson(prev.input.chain)) history.add(`run ${i + 1}: carries another chain than run ${i}`);
  });
  const last = runs[runs.length - 1];
  if (last?.closure?.type === 'continued-as-new') history.add(`run ${runs.length} continued as new, but the next run is missing`);
}

function first<T>(list: readonly T[]): T {
  return list[0]!;
}

async function replayRuns(runs: DecodedRun[], workflowId: string, replayer: Replayer): Promise<VerifyCheck> {
  const problems = new Problems();
  for (const run of runs) {
    if (!run.json || !run.replayable) {
      problems.add(`run ${run.index + 1}: not replayed (the history is malformed)`);
      continue;
    }
    const outcome = await replayer.replay(run.json, workflowId, run.canonical);
    if (!outcome.ok) problems.add(`run ${run.index + 1}: ${outcome.error}`);
  }
  if (runs.length === 0) problems.add('nothing to replay');
  return problems.check(CheckName.Replay, `${runs.length} run(s) replayed with the current workflow code: no nondeterminism`);
}

/** The payload a receipt's digest covers, as recorded in history (see activities/index.ts). */
function receiptPayload(entry: ReceiptEntry, approvalStepDigest: string | undefined): { ok: true; payload: unknown } | { ok: false; problem: string } {
  const r = entry.result;
  switch (entry.source) {
    case AUTHORIZE:
      return { ok: true, payload: { ...decisionReceiptPayload({ request: r.request, decision: r.decision, shadow: r.shadow, revocations: r.revocations }), stepDigest: r.stepDigest } };
    case VERIFY_APPROVAL:
      // The vote was verified against the step digest of the decision that escalated the step.
      if (approvalStepDigest === undefined) return { ok: false, problem: 'an approval for a step that has no decision' };
      return { ok: true, payload: { verdict: r.verdict, stepDigest: approvalStepDigest } };
    default:
      return { ok: true, payload: r.payload ?? null };
  }
}

async function checkReceipts(runs: DecodedRun[], chainId: string | null, keySet: TrustedKeys): Promise<{ check: VerifyCheck; chain: ChainReceipt[] }> {
  const problems = new Problems();
  const chain: ChainReceipt[] = [];
  let head: ReceiptHead = { seq: 0, hash: GENESIS_HASH };
  const stepDigests = new Map<string, string>();
  const kids = new Set<string>();
  let orphans = 0;
  for (const run of runs) {
    orphans += run.orphans;
    if (run.index > 0 && run.input?.resume && canonicalJson(run.input.resume.head) !== canonicalJson(head)) {
      problems.add(`run ${run.index + 1}: resumes from receipt ${run.input.resume.head.seq}, but run ${run.index} ended at receipt ${head.seq}`);
    }
    for (const entry of run.entries) {
      const parsed = Receipt.safeParse(entry.result.receipt);
      if (!parsed.success) {
        problems.add(`event ${entry.eventId} of run ${run.index + 1}: the ${entry.source} result holds no valid receipt`);
        continue;
      }
      const r = parsed.data;
      const label = `receipt ${r.seq} (${r.kind}${r.stepId !== undefined ? `, step ${r.stepId}` : ''})`;
      if (chainId !== null && r.chainId !== chainId) problems.add(`${label}: belongs to chain ${r.chainId}`);
      if (r.seq !== head.seq + 1) problems.add(`${label}: out of sequence (expected ${head.seq + 1})`);
      if (r.prevHash !== head.hash) problems.add(`${label}: does not link to the previous receipt`);
      if (!RECEIPT_KINDS_BY_SOURCE[entry.source].includes(r.kind)) problems.add(`${label}: a ${entry.source} result cannot hold a ${r.kind} receipt`);
      if (sha256Hex(canonicalJson(receiptBody(r))) !== r.hash) problems.add(`${label}: hash does not match its body`);
      const payload = receiptPayload(entry, r.stepId !== undefined ? stepDigests.get(r.stepId) : undefined);
      if (!payload.ok) problems.add(`${label}: ${payload.problem}`);
      else {
        let digest: string | undefined;
        try {
          digest = sha256Hex(canonicalJson(payload.payload));
        } catch {
          digest = undefined;
        }
        if (digest !== r.digest) problems.add(`${label}: digest does not match what history recorded`);
      }
      const signature = await verifyCompactJws(r.signature, keySet, 'governor-receipt+jws');
      if (!signature.ok) problems.add(`${label}: signature ${signature.problem}`);
      else {
        if (signature.payload !== r.hash) problems.add(`${label}: the signature signs another hash`);
        kids.add(signature.kid);
      }
      if (entry.source === AUTHORIZE && r.stepId !== undefined && typeof entry.result.stepDigest === 'string') stepDigests.set(r.stepId, entry.result.stepDigest);
      head = { seq: r.seq, hash: r.hash };
      chain.push({ receipt: r, entry });
    }
  }
  const orphanNote = orphans > 0 ? `; ${orphans} receipt(s) of activities cancelled before completing are not part of the chain` : '';
  const check = problems.check(
    CheckName.Receipts,
    chain.length === 0 ? `no receipts${orphanNote}` : `${chain.length} receipt(s), seq 1-${head.seq}: linked, hashes and digests recomputed, signed by ${[...kids].join(', ')}${orphanNote}`,
  );
  return { check, chain };
}

type JwsCheck = { ok: true; payload: string; kid: string } | { ok: false; problem: string };

/** Trusted keys as jose needs them, with an id (digest of the canonical JWKS) for memoising verifications. */
interface TrustedKeys {
  id: string;
  keySet: ReturnType<typeof createLocalJWKSet>;
}

/**
 * Verifications already made, by key set, `typ` and JWS: verifying is a pure function of those, and
 * a proof checked again (or a mutated copy of it) carries mostly the same signatures. Bounded.
 */
const verified = new Map<string, JwsCheck>();
const MAX_VERIFIED = 20_000;

/** Checks a compact JWS: canonical base64url segments, EdDSA, the expected `typ`, a trusted key. */
async function verifyCompactJws(jws: string, keys: TrustedKeys, typ: string): Promise<JwsCheck> {
  const memo = `${keys.id}\n${typ}\n${jws}`;
  const known = verified.get(memo);
  if (known) return known;
  const result = await verifyJwsUncached(jws, keys, typ);
  if (verified.size >= MAX_VERIFIED) verified.delete(verified.keys().next().value!);
  verified.set(memo, result);
  return result;
}

async function verifyJwsUncached(jws: string, { keySet }: TrustedKeys, typ: string): Promise<JwsCheck> {
  const segments = jws.split('.');
  if (segments.length !== 3 || segments.some((s) => s.length === 0 || Buffer.from(s, 'base64url').toString('base64url') !== s)) {
    return { ok: false, problem: 'is not a canonical compact JWS' };
  }
  try {
    const { payload, protectedHeader } = await compactVerify(jws, keySet, { algorithms: ['EdDSA'] });
    if (protectedHeader.typ !== typ) return { ok: false, problem: `has typ ${String(protectedHeader.typ)}, not ${typ}` };
    return { ok: true, payload: new TextDecoder().decode(payload), kid: String(protectedHeader.kid ?? '') };
  } catch {
    // Deliberately generic: which part failed does not help anyone but a forger.
    return { ok: false, problem: 'is not valid with the trusted receipt key' };
  }
}

const keySets = new Map<string, TrustedKeys>();

/** The trusted JWKS as a jose key set; throws InvalidInput when it is not a usable JWKS. */
function trustedKeys(jwks: JSONWebKeySet): TrustedKeys {
  if (!isRecord(jwks) || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new GovernorError(ErrorCode.InvalidInput, 'trusted receipt keys: not a JWKS with at least one key', 'receiptJwks');
  }
  // A snapshot: the caller's object may change later, the memo must not.
  const snapshot = JSON.parse(JSON.stringify(jwks)) as JSONWebKeySet;
  const id = sha256Hex(canonicalJson(snapshot));
  let keys = keySets.get(id);
  if (!keys) {
    try {
      keys = { id, keySet: createLocalJWKSet(snapshot) };
    } catch {
      throw new GovernorError(ErrorCode.InvalidInput, 'trusted receipt keys: not a valid JWKS', 'receiptJwks');
    }
    if (keySets.size >= 16) keySets.delete(keySets.keys().next().value!);
    keySets.set(id, keys);
  }
  return keys;
}

/** Verifies a proof seal (or any compact JWS of ours over a text payload) with the trusted receipt keys. */
export async function verifySealJws(jws: string, jwks: JSONWebKeySet, typ: string): Promise<JwsCheck> {
  return verifyCompactJws(jws, trustedKeys(jwks), typ);
}

function checkCheckpoint(runs: DecodedRun[], chain: ChainReceipt[]): { check: VerifyCheck; status: string | null } {
  const problems = new Problems();
  const last = runs[runs.length - 1];
  const lastReceipt = chain[chain.length - 1];
  // A checkpoint ends the chain and every run that continued as new, and nothing else.
  for (const run of runs.slice(0, -1)) {
    const own = chain.filter((c) => c.entry.run === run.index);
    const end = own[own.length - 1];
    const next = runs[run.index + 1]?.input?.resume;
    const cp = end && isRecord(end.entry.result.payload) ? end.entry.result.payload : {};
    if (!end || end.receipt.kind !== 'checkpoint' || end.entry.source !== RECORD_RECEIPT) problems.add(`run ${run.index + 1} continued as new without a checkpoint`);
    else if (cp.continuedAsNew !== true || cp.nextStep !== next?.nextStep || cp.run !== run.index + 1 || next?.runs !== run.index + 2) {
      problems.add(`receipt ${end.receipt.seq}: the checkpoint of run ${run.index + 1} does not match the run that continued`);
    }
  }
  chain.slice(0, -1).forEach((c, i) => {
    const endsRun = chain[i + 1]!.entry.run !== c.entry.run && runs[c.entry.run]?.closure?.type === 'continued-as-new';
    if (c.receipt.kind === 'checkpoint' && !endsRun) problems.add(`receipt ${c.receipt.seq}: a checkpoint before the end of the chain or of a run`);
  });
  if (!last) {
    problems.add('no run');
    return { check: problems.check(CheckName.Checkpoint, ''), status: null };
  }
  const closure = last.closure;
  if (!closure) {
    if (lastReceipt?.receipt.kind === 'checkpoint') problems.add('a checkpoint, yet the workflow is still running');
    return { check: problems.check(CheckName.Checkpoint, `chain still running: ${chain.length} receipt(s) so far, no checkpoint yet`), status: 'Running' };
  }
  if (closure.type !== 'completed') {
    problems.add(`the workflow ended ${closure.type} without a checkpoint`);
    return { check: problems.check(CheckName.Checkpoint, ''), status: closure.type };
  }
  if (!lastReceipt || lastReceipt.receipt.kind !== 'checkpoint' || lastReceipt.entry.source !== RECORD_RECEIPT) {
    problems.add('the chain completed, but its last receipt is not a checkpoint');
    return { check: problems.check(CheckName.Checkpoint, ''), status: null };
  }
  const payload = lastReceipt.entry.result.payload;
  const result = closure.result;
  const cp = isRecord(payload) ? payload : {};
  const status = typeof cp.status === 'string' ? cp.status : null;
  if (status === null || !(TERMINAL_STATUSES as readonly string[]).includes(status)) problems.add('the checkpoint names no final status');
  if (!isRecord(result)) {
    problems.add('the workflow result is missing');
  } else {
    const head = lastReceipt.receipt;
    if (!isRecord(result.receiptHead) || canonicalJson(result.receiptHead) !== canonicalJson({ seq: head.seq, hash: head.hash })) {
      problems.add(`the workflow result's receiptHead is not the last receipt (${head.seq})`);
    }
    if (result.checkpoint !== head.signature) problems.add("the workflow result's checkpoint is not the checkpoint receipt's signature");
    if (result.status !== status) problems.add(`the workflow ended ${String(result.status)}, the checkpoint says ${String(status)}`);
    if ((result.reason ?? null) !== (cp.reason ?? null)) problems.add("the workflow result's reason differs from the checkpoint's");
    if (result.chainId !== lastReceipt.receipt.chainId) problems.add("the workflow result's chain id differs from the receipts'");
    const steps = last.input?.chain.steps.length;
    if (cp.steps !== steps || !Array.isArray(result.steps) || result.steps.length !== steps) problems.add(`the checkpoint covers ${String(cp.steps)} step(s), the chain has ${String(steps)}`);
  }
  return {
    check: problems.check(CheckName.Checkpoint, `checkpoint receipt ${lastReceipt.receipt.seq} seals the chain: ${String(status)}; the workflow result names it`),
    status,
  };
}

/** The governed actions of a chain by step id (steps and their compensations), as the workflow builds them. */
function actionsOf(rawInput: unknown): Map<string, { action: unknown; resource: unknown; context: unknown; input: unknown; executor: unknown }> {
  const out = new Map<string, { action: unknown; resource: unknown; context: unknown; input: unknown; executor: unknown }>();
  // Exactly what the workflow (and so `authorize`) saw: the parsed copy for validating runs, else the raw input.
  const chain = isRecord(rawInput) && isRecord(rawInput.chain) ? rawInput.chain : undefined;
  const steps = chain && Array.isArray(chain.steps) ? chain.steps : [];
  for (const step of steps) {
    if (!isRecord(step) || typeof step.id !== 'string') continue;
    out.set(step.id, { action: step.action, resource: step.resource, context: step.context, input: step.input, executor: step.executor });
    const comp = step.compensation;
    if (isRecord(comp)) {
      out.set(compensationStepId(step.id), { action: comp.action, resource: comp.resource ?? step.resource, context: comp.context, input: comp.input, executor: comp.executor });
    }
  }
  return out;
}


/**
 * Coordination slot requests are sealed by the governor's receipt key over `{domain, requestDigest}`;
 * the digest covers the request's content. Returns a problem per `<run>/<eventId>` of a slot request
 * (undefined when the seal and digest hold).
 */
async function checkSlotSeals(runs: DecodedRun[], keySet: TrustedKeys): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const run of runs) {
    for (const slot of run.slots) {
      if (slot.result.coordinated !== true) continue;
      const request = isRecord(slot.result.request) ? slot.result.request : {};
      let problem: string | undefined;
      let digest: string | undefined;
      try {
        digest = sha256Hex(canonicalJson(requestDigestInput(request as Parameters<typeof requestDigestInput>[0])));
      } catch {
        digest = undefined;
      }
      if (digest === undefined || request.requestDigest !== digest) problem = 'its digest does not match its content';
      else if (typeof request.seal !== 'string') problem = 'it is not sealed';
      else {
        const verified = await verifyCompactJws(request.seal, keySet, SLOT_SEAL_TYP);
        if (!verified.ok) problem = `its seal ${verified.problem}`;
        else if (verified.payload !== canonicalJson({ domain: request.domain, requestDigest: digest })) problem = 'its seal covers another request';
      }
      out.set(`${run.index}/${slot.eventId}`, problem);
    }
  }
  return out;
}

function checkBindings(runs: DecodedRun[], chainId: string | null, chain: ChainReceipt[], finalStatus: string | null, slotSeals: Map<string, string | undefined>): VerifyCheck {
  const problems = new Problems();
  const firstRun = runs[0];
  if (!firstRun?.input || chainId === null) {
    problems.add('no chain input to bind receipts to');
    return problems.check(CheckName.Bindings, '');
  }
  const workload = firstRun.input.chain.workload;
  // A run with the validated-input patch governed the schema-parsed input (defaults applied); older runs the raw one.
  const actions = actionsOf(firstRun.patches.includes(VALIDATED_INPUT_PATCH) ? firstRun.input : firstRun.rawInput);
  /** Per step, as of the point in history being checked: the latest decision, approvers counted, break-glass. */
  const lastDecision = new Map<string, Record<string, unknown>>();
  const lastAuthorize = new Map<string, Record<string, unknown>>();
  const counted = new Map<string, Set<string>>();
  const breakGlass = new Map<string, Record<string, unknown>>();
  const outcomes = new Map<string, unknown>();
  const verdicts = new Map<string, Record<string, unknown>>(); // `${run}/${seq}` → recorded verdict
  const stepDigests = new Map<string, string>();
  /** Coordinated steps waiting for their slot verdict, and steps whose slot was refused. */
  const awaitingSlot = new Set<string>();
  const slotRefused = new Set<string>();
  const coordinators = new Map<string, string>();
  const allowed = (stepId: string): boolean => {
    const effect = lastDecision.get(stepId)?.effect;
    if (awaitingSlot.has(stepId) || slotRefused.has(stepId)) return false;
    return effect === 'allow' || (effect === 'escalate' && breakGlass.has(stepId));
  };
  const completedActivities = runs.flatMap((r) => r.activities.filter((a) => a.type !== EXECUTE && a.type !== GOVERN_STEP && a.completed && !a.cancelledFirst));
  let executions = 0;

  // Receipts and scheduled activities in history order: an activity must be scheduled only after an
  // allowing decision for its step, with exactly the step's input.
  // By entry, not by event: a `governStep` result holds two receipts (decision, execution) in one event.
  const receiptsByEntry = new Map(chain.map((c) => [c.entry, c]));
  const timeline = runs.flatMap((run) => [
    ...run.entries.map((e) => ({ run: run.index, eventId: e.eventId, receipt: receiptsByEntry.get(e), activity: undefined, slot: undefined })),
    ...run.activities.map((a) => ({ run: run.index, eventId: a.eventId, receipt: undefined, activity: a, slot: undefined })),
    ...run.slots.map((sl) => ({ run: run.index, eventId: sl.eventId, receipt: undefined, activity: undefined, slot: sl.result })),
  ]);
  timeline.sort((a, b) => a.run - b.run || a.eventId - b.eventId);

  for (const item of timeline) {
    if (item.activity) {
      checkScheduled(item.activity);
      continue;
    }
    if (item.slot) {
      // A coordinated step asked its domain for a slot: it may run only once a grant is recorded.
      if (item.slot.coordinated !== true) continue;
      const request = isRecord(item.slot.request) ? item.slot.request : {};
      const stepId = typeof request.stepId === 'string' ? request.stepId : '';
      const where = `slot request at event ${item.eventId} of run ${item.run + 1}`;
      const action = actions.get(stepId);
      const resource = action && isRecord(action.resource) ? resourceLabel({ type: String(action.resource.type), id: String(action.resource.id) }) : undefined;
      if (request.chainId !== chainId || !action || request.workload !== workload || request.action !== action.action || request.resource !== resource) {
        problems.add(`${where}: not for a step of this chain`);
        continue;
      }
      if (item.slot.requestId !== slotRequestId(chainId, stepId) || item.slot.domain !== request.domain) problems.add(`${where}: its request id or domain is not the request's`);
      const seal = slotSeals.get(`${item.run}/${item.eventId}`);
      if (seal) problems.add(`${where}: ${seal}`);
      if (!allowed(stepId)) problems.add(`${where}: asked before an allowing decision`);
      awaitingSlot.add(stepId);
      coordinators.set(stepId, typeof item.slot.coordinatorId === 'string' ? item.slot.coordinatorId : '');
      continue;
    }
    if (!item.receipt) continue; // not a valid receipt: the receipts check names it
    const { receipt: r, entry } = item.receipt;
    const label = `receipt ${r.seq} (${r.kind}${r.stepId !== undefined ? `, step ${r.stepId}` : ''})`;
    if (r.kind === 'checkpoint') continue;
    const res = entry.result;
    if ((r.kind === 'decision' || (r.kind as string) === 'coordination') && entry.source === RECORD_RECEIPT) {
      const payload = isRecord(res.payload) ? res.payload : {};
      if (r.stepId !== undefined && !actions.has(r.stepId)) problems.add(`${label}: names no step of the chain`);
      if (isRecord(payload.revoked)) continue; // a revocation {revoked: {reason, by?}}, naming the step in flight if any
      const verdict = isRecord(payload.coordination) ? payload.coordination : undefined;
      if (!verdict || r.stepId === undefined) {
        problems.add(`${label}: a recorded decision that is neither a revocation nor a coordination verdict`);
        continue;
      }
      // A coordination verdict: final, for this step, exactly as the coordinator signalled it.
      const final = (verdict.status === 'granted' && verdict.granted === true) || (verdict.status === 'rejected' && verdict.granted === false);
      if (!final || verdict.chainId !== chainId || verdict.stepId !== r.stepId) problems.add(`${label}: not a final coordination verdict for this step`);
      const signalled = runs[entry.run]!.signals.some((sg) => sg.name === SLOT_VERDICT_SIGNAL && sg.eventId < entry.eventId && canonicalJson(sg.arg ?? null) === canonicalJson(verdict));
      if (!signalled) problems.add(`${label}: no coordinator signalled this verdict`);
      if (!awaitingSlot.delete(r.stepId)) problems.add(`${label}: a verdict for a slot the step never requested`);
      if (verdict.granted !== true) slotRefused.add(r.stepId);
      continue;
    }
    const stepId = r.stepId;
    const action = stepId !== undefined ? actions.get(stepId) : undefined;
    if (!action || stepId === undefined) {
      problems.add(`${label}: names no step of the chain`);
      continue;
    }
    if (entry.source === AUTHORIZE) {
      const expected = r.kind === 'compensation-decision' ? isCompensationStepId(stepId) : !isCompensationStepId(stepId);
      if (!expected) problems.add(`${label}: the kind does not match the step`);
      const digest = stepDigest(chainId, { stepId, action: action.action, resource: action.resource, context: action.context }, { input: action.input, executor: action.executor });
      if (res.stepDigest !== digest) problems.add(`${label}: its step digest is not the digest of the chain's step`);
      stepDigests.set(stepId, digest);
      lastDecision.set(stepId, isRecord(res.decision) ? res.decision : {});
      lastAuthorize.set(stepId, res);
      if (res.request !== undefined && res.request !== null) {
        const req = isRecord(res.request) ? res.request : {};
        const principal = isRecord(req.principal) ? req.principal : {};
        const resource = isRecord(action.resource) ? { type: action.resource.type, id: action.resource.id } : undefined;
        if (principal.id !== workload) problems.add(`${label}: evaluated for ${String(principal.id)}, not the chain's workload`);
        if (req.action !== action.action || canonicalJson(req.resource ?? null) !== canonicalJson(resource ?? null)) problems.add(`${label}: evaluated another action or resource than the step's`);
        const context = isRecord(req.context) ? req.context : {};
        const own = isRecord(action.context) ? action.context : {};
        const strip = (c: Record<string, unknown>): string => canonicalJson(ownContext(c));
        if (strip(context) !== strip(own)) problems.add(`${label}: evaluated another context than the step's`);
        const approvals = isRecord(context.approvals) ? context.approvals : undefined;
        if (approvals) {
          const approvers = Array.isArray(approvals.approvers) ? approvals.approvers : [];
          const ok = counted.get(stepId) ?? new Set<string>();
          for (const a of approvers) if (typeof a !== 'string' || !ok.has(a)) problems.add(`${label}: counts approver ${String(a)}, whose vote was not counted before`);
        }
      }
    } else if (entry.source === VERIFY_APPROVAL) {
      const verdict = isRecord(res.verdict) ? res.verdict : {};
      verdicts.set(`${entry.run}/${String(verdict.seq)}`, verdict);
      if (verdict.counted === true && typeof verdict.approver === 'string' && (verdict.decision === 'approve' || verdict.breakGlass === true)) {
        const set = counted.get(stepId) ?? new Set<string>();
        set.add(verdict.approver);
        counted.set(stepId, set);
        if (verdict.breakGlass === true) breakGlass.set(stepId, verdict);
      }
    } else if (r.kind === 'execution' || r.kind === 'compensation-execution') {
      const payload = isRecord(res.payload) ? res.payload : {};
      if (payload.status !== 'completed') continue; // a failed execution records the error, not an outcome
      executions++;
      if (!allowed(stepId)) problems.add(`${label}: executed without an allowing decision (last: ${String(lastDecision.get(stepId)?.effect)})`);
      const outcome = isRecord(payload.outcome) ? payload.outcome : {};
      outcomes.set(stepId, payload.outcome);
      if (outcome.idempotencyKey !== idempotencyKey(chainId, stepId)) problems.add(`${label}: idempotency key is not ${idempotencyKey(chainId, stepId)}`);
      if (entry.source === EXECUTE) {
        if (canonicalJson(res.outcome ?? null) !== canonicalJson(payload.outcome ?? null)) problems.add(`${label}: the receipt's outcome differs from the executor's`);
      } else if (outcome.executor === 'activity') {
        const ran = completedActivities.find((a) => isRecord(a.input) && a.input.idempotencyKey === outcome.idempotencyKey);
        if (!ran) problems.add(`${label}: no completed service activity ran with its idempotency key`);
        else if (canonicalJson(ran.result ?? null) !== canonicalJson(outcome.result ?? null)) problems.add(`${label}: the recorded outcome differs from what the service activity returned`);
      }
    }
  }

  /** An executor activity: scheduled after an allowing decision, for a step of the chain, with the step's exact input. */
  function checkScheduled(a: ScheduledActivity): void {
    const where = `activity scheduled at event ${a.eventId} of run ${a.run + 1}`;
    const input = isRecord(a.input) ? a.input : {};
    const stepId = typeof input.stepId === 'string' ? input.stepId : '';
    const action = actions.get(stepId);
    if (!action) {
      problems.add(`${where}: runs no step of the chain`);
      return;
    }
    const executor = isRecord(action.executor) ? action.executor : {};
    const same = (x: unknown, y: unknown): boolean => canonicalJson(x ?? null) === canonicalJson(y ?? null);
    if (a.type === GOVERN_STEP) {
      // Decides before it executes: its own result must hold the allowing decision (checked with the
      // receipts); here, it must carry exactly the step, bound as `authorize` binds it.
      const binding = isRecord(input.binding) ? input.binding : {};
      const resource = isRecord(action.resource) ? { type: action.resource.type, id: action.resource.id } : undefined;
      const ok =
        input.chainId === chainId &&
        input.idempotencyKey === idempotencyKey(chainId ?? '', stepId) &&
        input.kind === (isCompensationStepId(stepId) ? 'compensation' : 'step') &&
        input.action === action.action &&
        same(input.resource, resource) &&
        same(input.context, action.context) &&
        same(binding.input, action.input) &&
        same(binding.executor, action.executor) &&
        executor.type !== 'activity';
      if (!ok) problems.add(`${where}: its input is not step ${stepId}'s`);
      return;
    }
    if (!allowed(stepId)) problems.add(`${where}: step ${stepId} scheduled without an allowing decision`);
    let ok = input.chainId === chainId && input.idempotencyKey === idempotencyKey(chainId ?? '', stepId) && same(input.input, action.input);
    if (a.type === EXECUTE) {
      const receipt = isRecord(input.receipt) ? input.receipt : {};
      ok &&= same(input.executor, action.executor) && receipt.kind === (isCompensationStepId(stepId) ? 'compensation-execution' : 'execution');
    } else {
      const resource = isRecord(action.resource) ? { type: action.resource.type, id: action.resource.id } : undefined;
      ok &&= executor.type === 'activity' && executor.activityType === a.type && input.action === action.action && same(input.resource, resource);
    }
    if (!ok) problems.add(`${where}: its input is not step ${stepId}'s`);
  }

  // What the workflow told the world must match its receipts: its result's step states, the
  // verdicts it returned to approvers, its search attributes.
  checkResultSteps(runs, actions, lastAuthorize, outcomes, breakGlass, problems);
  for (const run of runs) {
    for (const update of run.updates.values()) {
      if (update.name !== 'submitApproval' || !isRecord(update.result)) continue;
      const verdict = isRecord(update.result.verdict) ? update.result.verdict : {};
      const recorded = verdicts.get(`${run.index}/${String(verdict.seq)}`);
      const approval = isRecord(update.result.approval) ? update.result.approval : {};
      if (!recorded) {
        // Votes closed before they were verified get a rejection that no receipt records.
        if (verdict.counted !== false) problems.add(`a vote update (seq ${String(verdict.seq)}) returned a verdict that no receipt records`);
        continue;
      }
      const withoutRepeat = (v: Record<string, unknown>): string => canonicalJson(Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'repeat')));
      if (withoutRepeat(verdict) !== withoutRepeat(recorded)) problems.add(`a vote update (seq ${String(verdict.seq)}) returned another verdict than the receipt records`);
      if (typeof approval.stepId !== 'string' || approval.stepDigest !== stepDigests.get(approval.stepId)) problems.add(`a vote update (seq ${String(verdict.seq)}) returned the approval of another step`);
      if (recorded.counted === true) {
        const claims = jwtClaims(isRecord(update.arg) ? update.arg.token : undefined);
        const stepId = typeof approval.stepId === 'string' ? approval.stepId : '';
        if (
          !claims ||
          claims.sub !== recorded.approver ||
          claims.chainId !== chainId ||
          claims.stepId !== stepId ||
          claims.stepDigest !== stepDigests.get(stepId) ||
          claims.decision !== recorded.decision
        ) {
          problems.add(`the counted vote ${String(verdict.seq)} was not cast by its token's approver for this step`);
        }
      }
    }
  }
  // Coordination messages: verdicts received and releases/withdrawals sent name this chain's steps.
  for (const run of runs) {
    for (const sg of run.signals) {
      if (sg.name !== SLOT_VERDICT_SIGNAL) continue;
      const v = isRecord(sg.arg) ? sg.arg : {};
      const stepId = typeof v.stepId === 'string' ? v.stepId : '';
      if (v.chainId !== chainId || !actions.has(stepId) || v.requestId !== slotRequestId(chainId, stepId)) problems.add(`a slot verdict received at event ${sg.eventId} of run ${run.index + 1} is not for a step of this chain`);
    }
    for (const sent of run.sent) {
      const arg = isRecord(sent.arg) ? sent.arg : {};
      const stepId = typeof arg.stepId === 'string' ? arg.stepId : '';
      if (arg.chainId !== chainId || !actions.has(stepId) || coordinators.get(stepId) !== sent.workflowId) {
        problems.add(`the ${sent.name} signal sent at event ${sent.eventId} of run ${run.index + 1} is not for a coordinated step of this chain`);
      }
    }
  }
  checkSearchAttributes(runs, workload, chain, finalStatus, problems);
  return problems.check(
    CheckName.Bindings,
    `receipts bound to the chain's ${actions.size} action(s): step digests, requests, approvals, ${executions} execution outcome(s), executor inputs, result, search attributes`,
  );
}

/** The workflow result's step states against the receipts (decisions, outcomes, break-glass). */
function checkResultSteps(
  runs: DecodedRun[],
  actions: ReturnType<typeof actionsOf>,
  lastAuthorize: Map<string, Record<string, unknown>>,
  outcomes: Map<string, unknown>,
  breakGlass: Map<string, Record<string, unknown>>,
  problems: Problems,
): void {
  const last = runs[runs.length - 1];
  if (last?.closure?.type !== 'completed' || !isRecord(last.closure.result) || !Array.isArray(last.closure.result.steps)) return;
  const steps = last.input?.chain.steps ?? [];
  const same = (x: unknown, y: unknown): boolean => canonicalJson(x ?? null) === canonicalJson(y ?? null);
  const decisionMatches = (stated: unknown, id: string): boolean => {
    const recorded = lastAuthorize.get(id)?.decision;
    // No decision in the step state: never decided, or revoked while waiting for a refreshed credential.
    if (stated === undefined) return recorded === undefined || lastAuthorize.get(id)?.credentialExpired === true;
    const d = isRecord(stated) ? stated : {};
    // Authorization that could not complete is denied in the workflow (fail closed), with no bundle.
    if (d.effect === 'deny' && d.bundleDigest === '' && d.inputDigest === '' && d.evaluatedAt === '') return true;
    if (!isRecord(recorded)) return false;
    // A credential that expired without a refresh: the recorded decision with the workflow's reason.
    if (typeof d.reason === 'string' && d.reason.startsWith('credential expired and no refresh arrived')) {
      return same({ ...d, reason: undefined }, { ...recorded, reason: undefined });
    }
    return same(d, recorded);
  };
  last.closure.result.steps.forEach((raw, i) => {
    const s = isRecord(raw) ? raw : {};
    const step = steps[i];
    const where = `the result's step ${i + 1}`;
    if (!step || s.id !== step.id || s.action !== step.action || s.resource !== resourceLabel(step.resource)) {
      problems.add(`${where}: not the chain's step`);
      return;
    }
    if (!decisionMatches(s.decision, step.id)) problems.add(`${where} (${step.id}): its decision is not the recorded one`);
    if (!same(s.outcome, outcomes.get(step.id))) problems.add(`${where} (${step.id}): its outcome is not the recorded one`);
    const comp = isRecord(s.compensation) ? s.compensation : undefined;
    const compId = compensationStepId(step.id);
    if (comp && actions.has(compId)) {
      if (!decisionMatches(comp.decision, compId)) problems.add(`${where} (${step.id}): its compensation decision is not the recorded one`);
      if (!same(comp.outcome, outcomes.get(compId))) problems.add(`${where} (${step.id}): its compensation outcome is not the recorded one`);
    } else if (comp || outcomes.has(compId)) problems.add(`${where} (${step.id}): its compensation is not the recorded one`);
    const glass = breakGlass.get(step.id);
    if (s.breakGlass !== undefined && (!glass || !same(s.breakGlass, { approver: glass.approver, justification: glass.justification ?? '' }))) {
      problems.add(`${where} (${step.id}): a break-glass approval no receipt records`);
    }
  });
  if (last.closure.result.steps.length !== steps.length) problems.add(`the result lists ${last.closure.result.steps.length} step(s), the chain has ${steps.length}`);
}

/** Search attributes: the workload at start, policy digests that decisions name, the final status. */
function checkSearchAttributes(runs: DecodedRun[], workload: string, chain: ChainReceipt[], finalStatus: string | null, problems: Problems): void {
  const digests = new Set(chain.filter((c) => c.entry.source === AUTHORIZE).map((c) => (isRecord(c.entry.result.decision) ? c.entry.result.decision.bundleDigest : undefined)));
  const statuses = Object.values(ChainStatus) as string[];
  for (const run of runs) {
    const started = run.startAttributes[GovernorWorkloadKey.name];
    if (started !== undefined && started !== workload) problems.add(`run ${run.index + 1}: started with search attribute ${GovernorWorkloadKey.name} ${String(started)}`);
    for (const upsert of run.upserts) {
      const digest = upsert[GovernorPolicyDigestKey.name];
      if (digest !== undefined && !digests.has(digest as string)) problems.add(`run ${run.index + 1}: ${GovernorPolicyDigestKey.name} set to a digest no decision names`);
      const status = upsert[GovernorStatusKey.name];
      if (status !== undefined && !statuses.includes(status as string)) problems.add(`run ${run.index + 1}: ${GovernorStatusKey.name} set to ${String(status)}`);
    }
  }
  const last = runs[runs.length - 1];
  if (last?.closure?.type === 'completed' && finalStatus !== null) {
    const set = last.upserts.map((u) => u[GovernorStatusKey.name]).filter((v) => v !== undefined);
    if (set[set.length - 1] !== finalStatus) problems.add(`the chain ended ${finalStatus}, its ${GovernorStatusKey.name} says ${String(set[set.length - 1])}`);
  }
}

/** The claims of a compact JWT, unverified (only compared with what a verified receipt records). */
function jwtClaims(token: unknown): Record<string, unknown> | undefined {
  if (typeof token !== 'string') return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    return isRecord(claims) ? claims : undefined;
  } catch {
    return undefined;
  }
}

/** Engines by bundle digest (the digest is recomputed from the content before an engine is made). */
const engines = new Map<string, PolicyEngine>();
const MAX_ENGINES = 64;

/** Decisions already re-evaluated, by bundle digest and canonical request (the decision function is pure). Bounded. */
const decided = new Map<string, Decision>();
const MAX_DECIDED = 20_000;

function decide(bundle: LoadedBundle, request: AuthzRequest): Decision {
  const memo = `${bundle.digest}\n${canonicalJson(request)}`;
  let decision = decided.get(memo);
  if (!decision) {
    decision = engineFor(bundle).decide(request);
    if (decided.size >= MAX_DECIDED) decided.delete(decided.keys().next().value!);
    decided.set(memo, decision);
  }
  return decision;
}

function engineFor(bundle: LoadedBundle): PolicyEngine {
  let engine = engines.get(bundle.digest);
  if (!engine) {
    engine = PolicyEngine.fromBundle(bundle);
    if (engines.size >= MAX_ENGINES) engines.delete(engines.keys().next().value!);
    engines.set(bundle.digest, engine);
  }
  return engine;
}

function checkDecisions(runs: DecodedRun[], lookup: BundleLookup): { check: VerifyCheck; count: number; digests: string[]; revocationLists: string[] } {
  const problems = new Problems();
  const digests = new Set<string>();
  // The revocation list each decision saw (its receipt's digest covers it; see decisionReceiptPayload).
  const revocationLists = new Set<string>();
  const used = new Set<string>();
  const available = new Map<string, LoadedBundle | string>();
  const bundle = (digest: string): LoadedBundle | string => {
    const known = available.get(digest);
    if (known !== undefined) return known;
    let found: LoadedBundle | string;
    try {
      const b = lookup(digest);
      found = !b ? 'not available' : bundleDigest(b.files) !== digest || b.digest !== digest ? 'its content does not hash to its digest' : b;
    } catch (err) {
      found = oneLine((err as Error).message);
    }
    available.set(digest, found);
    return found;
  };
  let count = 0;
  let failureDenies = 0;
  let shadows = 0;
  let shadowsSkipped = 0;
  for (const run of runs) {
    for (const entry of run.entries) {
      if (entry.source !== AUTHORIZE) continue;
      count++;
      const where = `decision at event ${entry.eventId} of run ${run.index + 1}`;
      const recorded = Decision.safeParse(entry.result.decision);
      if (!recorded.success) {
        problems.add(`${where}: not a decision`);
        continue;
      }
      const decision = recorded.data;
      if (decision.bundleDigest) digests.add(decision.bundleDigest);
      const seen = RevocationListRef.safeParse(entry.result.revocations);
      if (seen.success) revocationLists.add(`${seen.data.registry} seq ${seen.data.seq} head ${seen.data.head}`);
      else if (entry.result.revocations !== undefined) problems.add(`${where}: the revocation list it names is malformed`);
      const rawRequest = entry.result.request;
      if (rawRequest === undefined || rawRequest === null) {
        // Verification failed before policy ran (credential, attestation, revoked workload, no bundle).
        if (decision.effect !== 'deny' || decision.errors.length === 0) problems.add(`${where}: made without a request, yet not a deny with its reason`);
        else failureDenies++;
        continue;
      }
      const request = AuthzRequest.safeParse(rawRequest);
      if (!request.success) {
        problems.add(`${where}: the recorded request is malformed`);
        continue;
      }
      const b = bundle(decision.bundleDigest);
      if (typeof b === 'string') {
        problems.add(`${where}: bundle ${short(decision.bundleDigest)} ${b}`);
        continue;
      }
      used.add(b.digest);
      // What the workflow acted on besides the decision comes from the same bundle.
      const ladder = (b.manifest.approvals.ladder ?? []).map((l) => ({ afterMs: durationMs(l.after), roles: [...l.roles] }));
      const rules = decision.effect === 'escalate' ? { ladder } : undefined;
      if (entry.result.credentialExpired !== false || entry.result.gracePeriod !== durationMs(b.manifest.credential.gracePeriod) || canonicalJson(entry.result.approvalRules ?? null) !== canonicalJson(rules ?? null)) {
        problems.add(`${where}: its grace period, approval rules or credential flag are not the bundle's`);
      }
      // A step `authorize` called uncoordinated skipped `requestSlot`: the bundle must agree.
      // The flag is not signed: a step executed inside governStep is checked against the bundle whatever it says.
      if (entry.result.coordinated === false || (entry.executedInOne && entry.result.receipt && isRecord(entry.result.receipt) && entry.result.receipt.kind === 'decision')) {
        const domain = findDomain(b.manifest.coordination.domains, resourceLabel(request.data.resource));
        if (domain) {
          problems.add(
            entry.result.coordinated === false
              ? `${where}: says its resource is not coordinated, but the bundle puts it in domain ${domain.name}`
              : `${where}: its step ran without a coordination slot, but the bundle puts its resource in domain ${domain.name}`,
          );
        }
      }
      const again = decide(b, request.data);
      if (canonicalJson(again) !== canonicalJson(entry.result.decision)) {
        problems.add(`${where}: re-evaluation gives ${again.effect}${again.effect === decision.effect ? ' with other details' : ''}, recorded ${decision.effect}`);
      }
      const shadow = entry.result.shadow;
      if (shadow !== undefined) {
        shadows++;
        const s = isRecord(shadow) ? shadow : {};
        const sd = typeof s.bundleDigest === 'string' ? s.bundleDigest : '';
        if (sd) digests.add(sd);
        const sb = sd ? bundle(sd) : 'not named';
        // Shadow bundles are never enforced nor archived: re-evaluated when available, else noted.
        if (typeof sb === 'string') shadowsSkipped++;
        else {
          const d = decide(sb, request.data);
          const expected = {
            bundleDigest: d.bundleDigest,
            effect: d.effect,
            differs: decisionsDiffer(decision, d),
            determiningPolicies: d.determiningPolicies,
            annotations: d.annotations,
            errors: d.errors,
            ...(d.reason !== undefined ? { reason: d.reason } : {}),
            ...(d.escalation !== undefined ? { escalation: d.escalation } : {}),
          };
          if (canonicalJson(expected) !== canonicalJson(shadow)) problems.add(`${where}: the shadow decision differs on re-evaluation`);
        }
      }
    }
  }
  const shadowNote = shadows > 0 ? `; ${shadows - shadowsSkipped} of ${shadows} shadow decision(s) re-evaluated (shadow bundles are not archived)` : '';
  const check = problems.check(
    CheckName.Decisions,
    `${count - failureDenies} decision(s) re-evaluated with ${used.size} bundle(s): identical; ${failureDenies} made before policy ran, all deny${shadowNote}`,
  );
  return { check, count, digests: [...digests].sort(), revocationLists: [...revocationLists].sort() };
}

// ---- output ---------------------------------------------------------------------------------

/** One line per check, then the verdict. */
export function formatReport(report: VerifyReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = report.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(width)}  ${c.detail}`);
  if (report.revocationLists?.length) lines.push(`revocation list(s) the decisions saw: ${report.revocationLists.join('; ')}`);
  lines.push(
    `${report.verdict === 'verified' ? 'verified' : 'NOT VERIFIED'}: chain ${report.chainId ?? '(unknown)'}` +
      ` (${report.status ?? 'status unknown'}; ${report.runs} run(s), ${report.receipts} receipt(s), ${report.decisions} decision(s))`,
  );
  // Every run of the workflow id, when there is more than the chain's one.
  if ((report.runList ?? []).length > 1 || report.runList?.some((r) => !r.lineage)) {
    for (const r of report.runList) lines.push(`  run ${r.runId}  ${r.status.padEnd(14)}  ${r.detail}`);
  }
  return lines.join('\n');
}

// ---- helpers --------------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

function short(digest: string): string {
  return digest.length > 12 ? `${digest.slice(0, 12)}…` : digest || '(none)';
}
