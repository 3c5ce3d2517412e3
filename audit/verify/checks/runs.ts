import { defaultPayloadConverter } from '@temporalio/common';
import { Activity } from '../../../core/history';
import { WORKFLOW_TYPE } from '../../../contracts/status';
import { SESSION_WORKFLOW_TYPE } from '../../../contracts/session';

/** The governor's workflow types a chain id may name (a declared chain, an agent session). */
const CHAIN_TYPES: readonly (string | undefined)[] = [WORKFLOW_TYPE, SESSION_WORKFLOW_TYPE];
import type { ChainRun } from '../history-fetch';
import { CheckName, Problems, type VerifyCheck } from '../report';
import { isRecord, optionalString } from '../util';

/*
 * Every run of a chain's workflow id, for `governor verify` (issue 14).
 *
 * A chain's own lineage is its latest run and the runs it continued as new from; that is what the
 * other checks verify. But an operator with the Temporal UI or CLI can also *reset* a run (a new run
 * copies the history up to a workflow task, then the workflow runs again from there: every step
 * after that point runs a second time), *terminate* or *cancel* it, let it *time out*, or start a new
 * execution under the same workflow id once the chain ended. None of that shows in the lineage: a
 * reset run is a complete, replayable, validly signed history of its own.
 *
 * So verify lists every run of the workflow id (`ListWorkflowExecutions` with `WorkflowId = '<id>'`
 * returns them all), and this check says how each relates to the chain, and fails when:
 * - an executor (a service activity, `execute`, or a `governStep` that executed) was scheduled in a
 *   branch a reset abandoned: if the same step also ran in the chain's lineage, the step ran twice
 *   (named with the reset point); if not, it ran with no receipt in the chain;
 * - the chain's last run ended outside the governor (terminated, timed out, cancelled, failed);
 * - another execution used the same workflow id (a chain id names one chain);
 * - a run of the lineage was itself reset into a newer run (the verified lineage is not the latest);
 * - the run list is missing, incomplete (a reset's base run is not in it) or does not match the histories.
 *
 * Reading a reset: the new run's history holds the base run's events 1..N-1 unchanged (same event
 * ids), then event N, `WorkflowTaskFailed` with cause `RESET_WORKFLOW`, `baseRunId` and `newRunId`.
 * N is the reset point; events before it are the base run's, so an effect among them is the same
 * effect in both runs, not a second one.
 */

/** How one run relates to the chain, as verify reports it. */
export interface RunReport {
  runId: string;
  /** From the run's history: Running, Completed, ContinuedAsNew, Failed, Terminated, Canceled, TimedOut (or Unknown). */
  status: string;
  /** first, continued-as-new, reset, retry, cron, other-execution, unknown. */
  relation: string;
  /** One line: how the run came to be, and what became of it. */
  detail: string;
  /** The run is part of the chain's lineage (what the other checks verified). */
  lineage: boolean;
}

const RESET_CAUSE = 'WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW';

const CLOSURE_STATUS: Record<string, string> = {
  workflowExecutionCompletedEventAttributes: 'Completed',
  workflowExecutionContinuedAsNewEventAttributes: 'ContinuedAsNew',
  workflowExecutionFailedEventAttributes: 'Failed',
  workflowExecutionTerminatedEventAttributes: 'Terminated',
  workflowExecutionCanceledEventAttributes: 'Canceled',
  workflowExecutionTimedOutEventAttributes: 'TimedOut',
};

/** Statuses in which a chain's last run did not end by the governor's own hand. */
const NOT_CLEAN = ['Failed', 'Terminated', 'Canceled', 'TimedOut'];

/** An executor the run scheduled: a possible effect on the world. */
interface Effect {
  eventId: number;
  /** Activity type. */
  type: string;
  /** The idempotency key (`<chainId>/<stepId>`), or undefined when the input could not be read. */
  key: string | undefined;
  /** ran (completed), attempted (failed or timed out), started (no outcome recorded: it may have run). */
  outcome: 'ran' | 'attempted' | 'started';
  /** `governStep` completed without executing (a decision only): not an effect. */
  decisionOnly: boolean;
}

/** What a run's history says about the run. */
interface RunFacts {
  runId: string;
  lineage?: number;
  /** Readable as a history (an object with events). */
  readable: boolean;
  status: string;
  workflowType?: string;
  firstRunId?: string;
  originalRunId?: string;
  continuedFrom?: string;
  initiator?: string;
  /** The reset that made this run: the base run and the reset point (event id). */
  reset?: { baseRunId: string; newRunId: string; eventId: number };
  effects: Effect[];
}

/**
 * The `runs` check: every run of the workflow id, how it relates to the chain's lineage, and the
 * failures listed in the file comment. `lineage` are the lineage's histories (decoded), `runs` the
 * run list (its out-of-lineage histories decoded); without a run list the check fails (fail closed).
 */
export function checkRuns(
  workflowId: string | null,
  lineage: readonly unknown[],
  runs: readonly ChainRun[] | undefined,
): { check: VerifyCheck; runs: RunReport[] } {
  const problems = new Problems();
  const done = (okDetail: string, reports: RunReport[]): { check: VerifyCheck; runs: RunReport[] } => ({
    check: problems.check(CheckName.Runs, okDetail),
    runs: reports,
  });
  if (!Array.isArray(runs)) {
    problems.add(
      'no run list: resets, terminations and other executions of the workflow id cannot be excluded (verify live, or a proof that carries its runs)',
    );
    return done('', []);
  }

  // The list itself: unique run ids, each lineage history exactly once, a history for every other run.
  const seen = new Set<string>();
  const positions = new Map<number, string>();
  const facts: RunFacts[] = [];
  for (const [i, run] of runs.entries()) {
    const runId = typeof run?.runId === 'string' ? run.runId : '';
    if (!runId) {
      problems.add(`run list entry ${i + 1}: no run id`);
      continue;
    }
    if (seen.has(runId)) problems.add(`run ${runId}: listed twice`);
    seen.add(runId);
    let history: unknown;
    if (run.lineage !== undefined) {
      if (
        !Number.isInteger(run.lineage) ||
        run.lineage < 0 ||
        run.lineage >= lineage.length ||
        positions.has(run.lineage)
      ) {
        problems.add(
          `run ${runId}: names lineage position ${String(run.lineage)}, which is not a run of the chain's lineage or is named twice`,
        );
        continue;
      }
      positions.set(run.lineage, runId);
      history = lineage[run.lineage];
    } else {
      history = run.history;
    }
    const f = runFacts(runId, history, run.lineage);
    if (!f.readable) problems.add(`run ${runId}: no readable history`);
    facts.push(f);
  }
  for (let i = 0; i < lineage.length; i++)
    if (!positions.has(i)) problems.add(`run ${i + 1} of the chain's lineage is not in the run list`);
  const byId = new Map(facts.map((f) => [f.runId, f]));

  // A history must be the run it is listed as: its own reset names it, or its start event does.
  for (const f of facts) {
    const own = f.reset?.newRunId ?? f.originalRunId;
    if (f.readable && own !== undefined && own !== f.runId)
      problems.add(`run ${f.runId}: its history is that of run ${own}`);
  }

  const chain = facts.filter((f) => f.lineage !== undefined).sort((a, b) => a.lineage! - b.lineage!);
  const first = chain[0];
  // The chain's family: its first run's lineage through continue-as-new and resets; anything else is another execution.
  const family = new Set<string>(chain.map((f) => f.runId));
  const familyRoot = first?.firstRunId ?? first?.originalRunId;
  for (let changed = true; changed;) {
    changed = false;
    for (const f of facts) {
      if (family.has(f.runId) || !CHAIN_TYPES.includes(f.workflowType)) continue;
      const linked =
        (familyRoot !== undefined && f.firstRunId === familyRoot) ||
        (f.reset && family.has(f.reset.baseRunId)) ||
        (f.continuedFrom && family.has(f.continuedFrom));
      if (linked) {
        family.add(f.runId);
        changed = true;
      }
    }
  }

  // Resets: who was reset into whom, and where.
  const resets = facts.filter((f) => f.reset && family.has(f.runId)).map((f) => ({ ...f.reset!, newRunId: f.runId }));
  for (const r of resets) {
    if (!byId.has(r.baseRunId))
      problems.add(
        `run ${r.newRunId} was reset from run ${r.baseRunId} at event ${r.eventId}, which is not in the run list: what ran there after the reset point cannot be checked`,
      );
    if (chain.some((f) => f.runId === r.baseRunId))
      problems.add(
        `run ${r.baseRunId} of the chain was reset into run ${r.newRunId} at event ${r.eventId}: the verified runs are not the chain's latest`,
      );
  }

  // Effects: each executor scheduled, identified by the run and event where it was first recorded.
  const origin = (f: RunFacts, eventId: number): string => {
    let run: RunFacts | undefined = f;
    for (let hops = 0; run?.reset && eventId < run.reset.eventId && hops <= facts.length; hops++) {
      const base = byId.get(run.reset.baseRunId);
      if (!base) return `${run.reset.baseRunId}/${eventId}`;
      run = base;
    }
    return `${run!.runId}/${eventId}`;
  };
  const effective = (e: Effect): boolean => !e.decisionOnly;
  const inChain = new Map<string, { run: string; eventId: number; key: string | undefined }>();
  for (const f of chain)
    for (const e of f.effects.filter(effective))
      inChain.set(origin(f, e.eventId), { run: f.runId, eventId: e.eventId, key: e.key });
  const reported = new Set<string>();
  for (const f of facts) {
    if (f.lineage !== undefined || !family.has(f.runId)) continue;
    for (const e of f.effects.filter(effective)) {
      const id = origin(f, e.eventId);
      if (inChain.has(id) || reported.has(id)) continue;
      reported.add(id);
      const [originRun, originEvent] = [id.slice(0, id.lastIndexOf('/')), Number(id.slice(id.lastIndexOf('/') + 1))];
      const reset =
        resets.find((r) => r.baseRunId === originRun && r.eventId <= originEvent) ??
        resets.find((r) => r.baseRunId === originRun) ??
        resets[0];
      const point = reset
        ? `the reset of run ${reset.baseRunId} at event ${reset.eventId} (into run ${reset.newRunId})`
        : `no reset that explains run ${originRun}`;
      const step = e.key === undefined ? 'an executor whose input cannot be read' : `step ${stepOf(e.key)}`;
      const what =
        e.outcome === 'ran' ? 'ran' : e.outcome === 'attempted' ? 'was attempted' : 'was started (it may have run)';
      const twice = e.key === undefined ? [] : [...inChain.values()].filter((c) => c.key === e.key);
      if (twice.length > 0) {
        const again = twice.map((c) => `run ${c.run} event ${c.eventId}`).join(', ');
        problems.add(
          `${step} ran in two branches of ${point}: in run ${originRun} at event ${originEvent} and again in ${again}`,
        );
      } else {
        problems.add(
          `${step} ${what} in run ${originRun} at event ${originEvent}, a branch abandoned by ${point}: the chain's receipts do not record it`,
        );
      }
    }
  }

  // Other executions under the same workflow id.
  for (const f of facts) {
    if (family.has(f.runId)) continue;
    problems.add(
      `run ${f.runId} (${f.status}${f.workflowType && !CHAIN_TYPES.includes(f.workflowType) ? `, a ${f.workflowType}` : ''}) is another execution of workflow id ${workflowId ?? '(unknown)'}: a chain id names one chain`,
    );
  }

  // How the chain ended.
  const last = chain[chain.length - 1];
  if (last && NOT_CLEAN.includes(last.status)) {
    problems.add(
      `the chain's last run ${last.runId} ${last.status === 'Failed' ? 'failed as a workflow' : `was ${last.status === 'TimedOut' ? 'timed out' : last.status === 'Canceled' ? 'cancelled' : 'terminated'}`}: the chain did not end cleanly`,
    );
  }

  const reports = facts.map((f) => report(f, family, resets));
  const resetNote =
    resets.length > 0
      ? `; ${resets.map((r) => `run ${r.newRunId} reset from run ${r.baseRunId} at event ${r.eventId}`).join(', ')}`
      : '';
  return done(
    `${facts.length} run(s) of the workflow id, ${chain.length} in the chain${resetNote}; no executor ran outside the chain's runs`,
    reports,
  );
}

function report(
  f: RunFacts,
  family: Set<string>,
  resets: { baseRunId: string; newRunId: string; eventId: number }[],
): RunReport {
  let relation: string;
  let detail: string;
  if (!family.has(f.runId)) {
    relation = 'other-execution';
    detail = 'another execution of the same workflow id';
  } else if (f.reset) {
    relation = 'reset';
    detail = `reset from run ${f.reset.baseRunId} at event ${f.reset.eventId}`;
  } else if (f.continuedFrom) {
    relation =
      f.initiator === 'CONTINUE_AS_NEW_INITIATOR_RETRY'
        ? 'retry'
        : f.initiator === 'CONTINUE_AS_NEW_INITIATOR_CRON_SCHEDULE'
          ? 'cron'
          : 'continued-as-new';
    detail = `${relation === 'retry' ? 'a retry of' : relation === 'cron' ? 'a cron run after' : 'continued as new from'} run ${f.continuedFrom}`;
  } else {
    relation = f.readable ? 'first' : 'unknown';
    detail = f.readable ? 'first run' : 'no readable history';
  }
  const into = resets.filter((r) => r.baseRunId === f.runId);
  if (into.length > 0)
    detail += `; reset into ${into.map((r) => `run ${r.newRunId} at event ${r.eventId}`).join(', ')}`;
  if (f.lineage !== undefined) detail += `; run ${f.lineage + 1} of the chain`;
  else if (family.has(f.runId)) detail += '; not part of the chain (superseded)';
  return { runId: f.runId, status: f.status, relation, detail, lineage: f.lineage !== undefined };
}

function stepOf(key: string): string {
  const slash = key.lastIndexOf('/');
  return slash >= 0 ? key.slice(slash + 1) : key;
}

function runFacts(runId: string, history: unknown, lineage: number | undefined): RunFacts {
  const facts: RunFacts = {
    runId,
    readable: false,
    status: 'Unknown',
    effects: [],
    ...(lineage !== undefined ? { lineage } : {}),
  };
  const events = isRecord(history) && Array.isArray(history.events) ? (history.events as unknown[]) : undefined;
  if (!events || events.length === 0) return facts;
  facts.readable = true;
  facts.status = 'Running';
  const scheduled = new Map<string, Effect>();
  for (const raw of events) {
    if (!isRecord(raw)) continue;
    const eventId = Number(raw.eventId);
    const started = raw.workflowExecutionStartedEventAttributes;
    if (isRecord(started)) {
      facts.workflowType =
        isRecord(started.workflowType) && typeof started.workflowType.name === 'string'
          ? started.workflowType.name
          : undefined;
      facts.firstRunId = optionalString(started.firstExecutionRunId);
      facts.originalRunId = optionalString(started.originalExecutionRunId);
      facts.continuedFrom = optionalString(started.continuedExecutionRunId);
      facts.initiator = optionalString(started.initiator);
      continue;
    }
    const failed = raw.workflowTaskFailedEventAttributes;
    if (isRecord(failed) && failed.cause === RESET_CAUSE) {
      const baseRunId = optionalString(failed.baseRunId);
      const newRunId = optionalString(failed.newRunId);
      // The last reset in a history is the run's own (earlier ones were copied from its base).
      if (baseRunId && newRunId) facts.reset = { baseRunId, newRunId, eventId };
      continue;
    }
    const closure = Object.keys(raw).find((k) => CLOSURE_STATUS[k] !== undefined);
    if (closure) {
      facts.status = CLOSURE_STATUS[closure]!;
      continue;
    }
    const sched = raw.activityTaskScheduledEventAttributes;
    if (isRecord(sched)) {
      const type = isRecord(sched.activityType) ? sched.activityType.name : undefined;
      const input = decodeFirst(sched.input);
      const key = isRecord(input) && typeof input.idempotencyKey === 'string' ? input.idempotencyKey : undefined;
      // Only executors carry an idempotency key; an activity whose input cannot be read is counted (fail closed).
      if (key === undefined && input !== UNREADABLE) continue;
      const effect: Effect = {
        eventId,
        type: typeof type === 'string' ? type : '',
        key,
        outcome: 'started',
        decisionOnly: false,
      };
      scheduled.set(String(eventId), effect);
      facts.effects.push(effect);
      continue;
    }
    for (const [attr, outcome] of [
      ['activityTaskCompletedEventAttributes', 'ran'],
      ['activityTaskFailedEventAttributes', 'attempted'],
      ['activityTaskTimedOutEventAttributes', 'attempted'],
      ['activityTaskCanceledEventAttributes', 'attempted'],
    ] as const) {
      const done = raw[attr];
      if (!isRecord(done)) continue;
      const effect = scheduled.get(String(done.scheduledEventId));
      if (!effect) break;
      effect.outcome = outcome;
      if (outcome === 'ran' && effect.type === Activity.governStep) {
        // A governStep that only decided (deny, escalate, a coordinated step) executed nothing.
        const result = decodeFirst(done.result);
        effect.decisionOnly = isRecord(result) && isRecord(result.authorized) && result.executed === undefined;
      }
      break;
    }
  }
  return facts;
}

const UNREADABLE = Symbol('unreadable');

/** The first payload of a Payloads JSON object, decoded with Temporal's default converter. */
function decodeFirst(payloads: unknown): unknown {
  if (!isRecord(payloads) || !Array.isArray(payloads.payloads) || !isRecord(payloads.payloads[0])) return UNREADABLE;
  const p = payloads.payloads[0];
  try {
    const metadata: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(isRecord(p.metadata) ? p.metadata : {}))
      metadata[k] = new Uint8Array(Buffer.from(String(v), 'base64'));
    const data = new Uint8Array(Buffer.from(typeof p.data === 'string' ? p.data : '', 'base64'));
    return defaultPayloadConverter.fromPayload({ metadata, data });
  } catch {
    return UNREADABLE;
  }
}
