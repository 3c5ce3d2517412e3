import { context as otelContext, type Context as OtelContext } from '@opentelemetry/api';
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  patched,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { GovernedChainInput, JsonValue, Step } from '../contracts/chain';
import { formatIssuePath, invalidInputMessage, UNDECODABLE_PAYLOAD } from '../contracts/issues';
import { findTooDeep, findTooLarge, formatPath, MAX_JSON_DEPTH, nonFiniteNumber } from '../contracts/limits';
import { PATCHES_AT_START } from '../contracts/patches';
import { GovernorWorkloadKey } from '../contracts/search-attributes';
import {
  AwaitStepInput,
  CloseSessionInput,
  COMPENSATION_ID_PROBLEM,
  GovernedSessionInput,
  MAX_PROPOSAL_BYTES,
  MAX_SESSION_STEPS,
  NULL_OUTPUT_DIGEST,
  ProposeStepInput,
  SESSION_CONTEXT_KEY,
  awaitStepUpdate,
  closeSessionUpdate,
  proposeStepUpdate,
  type ProposeOutcome,
  type SessionSettings,
} from '../contracts/session';
import type { ChainResult, StepState } from '../contracts/state';
import { ChainStatus } from '../contracts/status';
import { jwsPayload } from '../core/jws-header';
import { isCompensationStepId, resourceLabel, stepAction } from '../core/step';
import { startArchive } from './chain/archive';
import { setChainHandlers } from './chain/handlers';
import { govern } from './chain/execute';
import { rejectInput, resumeCheckpointProblem, type ChainResume } from './chain/input';
import { governor } from './chain/proxies';
import { ChainRun, Revoked } from './chain/run';
import { failureMessage, invalidInput } from './failure';
import { compensate } from './governed-chain';
import { LOCAL_ACTIVITY } from './retry';

/*
 * Agent sessions (DESIGN §9): a governed chain that grows as the agent decides. Deterministic code only.
 *
 * The session reuses the chain's run (chain/run.ts) and governs every step exactly like a declared
 * one (chain/execute.ts). Proposals (`proposeStep` updates) are validated in the workflow (it is the
 * trust boundary: other SDKs send raw updates), queued in the order the workflow accepted them, and
 * governed one at a time by the main loop; each update handler waits for its own step's outcome.
 */

/** A step waiting to be governed, in acceptance order. */
interface Proposal {
  seq: number;
  step: Step;
  credential: string;
  attestation?: string;
  /** Declared at open: authorized with the session's opening credential, not re-checked first. */
  declared: boolean;
  /**
   * The OpenTelemetry context of the update that proposed it (in memory only, never recorded): the step
   * is governed under it, so its activities join the proposer's trace (the MCP gateway's tools/call).
   * The root context when the worker does not trace; nothing here issues or changes a command.
   */
  trace?: OtelContext;
}

/** What the main loop answers a proposal: its outcome, or why it was refused (nothing governed). */
type Answer = { kind: 'outcome'; outcome: ProposeOutcome } | { kind: 'refused'; message: string };

/** Most outcomes a session keeps with their output for `awaitStep` (older ones keep their digest only). */
const MAX_OUTPUTS_KEPT = 50;

/** Runs an agent session: declared steps, then proposals as they arrive, until closed, idle or revoked. */
export async function governedSessionWorkflow(raw: GovernedSessionInput): Promise<ChainResult> {
  // Parsed at once and the handlers set before anything is awaited: an update delivered with the first
  // task (a proposal that arrived during continue-as-new) finds its handler. The resume is verified next.
  // Every patch a new session takes, decided before anything is awaited (PATCHES_AT_START).
  const atStart = patched(PATCHES_AT_START);
  const input = parseSessionInput(raw);
  const resume = input.resume;
  const governed: Step[] = resume ? [...resume.governed] : [];
  const chainInput = {
    chainId: input.chainId,
    chain: { workload: input.chain.workload, owner: input.chain.owner, summary: input.chain.summary, steps: governed },
    credential: input.credential,
    attestation: input.attestation,
  } as GovernedChainInput;
  const run = new ChainRun(chainInput, true, resume as ChainResume | undefined, false, false, atStart);
  run.session = resume
    ? { steps: resume.summary.steps, actions: { ...resume.summary.actions } }
    : { steps: 0, actions: {} };

  const queue: Proposal[] = [];
  const answers = new Map<number, Answer>();
  /** Final (or awaiting) outcome of every governed step, by step id. */
  const outcomes = new Map<string, ProposeOutcome>(
    Object.entries(resume?.outcomes ?? {}).map(([id, o]) => [id, o as ProposeOutcome]),
  );
  /** Step ids governed, queued or being verified: a proposal may not reuse one. */
  const reserved = new Set<string>(governed.map((s) => s.id));
  let nextSeq = 0;
  let closing: CloseSessionInput | undefined;
  /** The session's result, once it ended (what `closeSession` returns). */
  const final: { result?: ChainResult } = {};
  let ended = false;

  // Declared steps first, before any proposal can be queued (the handlers below are set after this).
  if (!resume) {
    for (const step of input.chain.steps) {
      reserved.add(step.id);
      queue.push({ seq: ++nextSeq, step, credential: input.credential, declared: true });
    }
  }

  setChainHandlers(run);

  const refuseIfEnded = (): void => {
    if (run.revoked || (ended && run.state.status === ChainStatus.Revoked))
      throw invalidInput('session: revoked (no further step is accepted)');
    if (closing !== undefined || ended) throw invalidInput('session: closed (no further step is accepted)');
  };

  setHandler(
    proposeStepUpdate,
    async (proposal) => {
      const p = ProposeStepInput.parse(proposal); // validated: defaults applied
      const seq = ++nextSeq;
      reserved.add(p.step.id);
      queue.push({
        seq,
        step: p.step,
        credential: p.credential,
        attestation: p.attestation,
        declared: false,
        trace: otelContext.active(),
      });
      const id = p.step.id;
      const awaiting = () => run.state.currentStep === id && run.stepState(id)?.status === 'awaiting-approval';
      await condition(() => answers.has(seq) || awaiting());
      const answer = answers.get(seq);
      if (!answer) return awaitingOutcome(run, id);
      answers.delete(seq);
      if (answer.kind === 'refused') throw invalidInput(answer.message);
      return answer.outcome;
    },
    {
      validator: (proposal) => {
        refuseIfEnded();
        const p = checkProposal(proposal, run.chain.workload);
        if (reserved.has(p.step.id))
          throw invalidInput(`step.id: duplicate step id (already proposed in this session)`);
        if (reserved.size >= MAX_SESSION_STEPS)
          throw invalidInput(
            `step: the session already holds ${MAX_SESSION_STEPS} steps (the most one session may govern)`,
          );
      },
    },
  );

  setHandler(
    awaitStepUpdate,
    async (ask) => {
      const { stepId, credential } = AwaitStepInput.parse(ask);
      // Only the session's agent reads its outputs: the credential is verified like a proposal's.
      const checked = await verifyTokens(run, stepId, credential);
      if (checked) throw invalidInput(checked);
      const final = () => {
        const o = outcomes.get(stepId);
        return o !== undefined && o.outcome !== 'awaiting-approval';
      };
      await condition(() => final() || (ended && !queue.some((q) => q.step.id === stepId)));
      const outcome = outcomes.get(stepId);
      if (!outcome || outcome.outcome === 'awaiting-approval')
        throw invalidInput(`stepId: the session ended before step ${stepId} was governed`);
      return outcome;
    },
    {
      validator: (ask) => {
        const parsed = AwaitStepInput.safeParse(ask);
        if (!parsed.success) throw invalidInput(invalidInputMessage(parsed.error));
        const sub = unverifiedSubject(parsed.data.credential);
        if (sub !== run.chain.workload) throw invalidInput(`credential: ${subjectProblem(sub)}`);
        if (!reserved.has(parsed.data.stepId) && !outcomes.has(parsed.data.stepId))
          throw invalidInput('stepId: no such step in this session');
      },
    },
  );

  setHandler(
    closeSessionUpdate,
    async (close) => {
      closing ??= CloseSessionInput.parse(close ?? {});
      run.closeRequested = true; // a step awaiting approval is denied rather than holding the close
      await condition(() => final.result !== undefined);
      return final.result!;
    },
    {
      validator: (close) => {
        if (run.revoked) throw invalidInput('session: revoked');
        const parsed = CloseSessionInput.safeParse(close ?? {});
        if (!parsed.success) throw invalidInput(invalidInputMessage(parsed.error));
      },
    },
  );

  if (resume) await verifySessionResume(input, resume);
  upsertSearchAttributes([{ key: GovernorWorkloadKey, value: input.chain.workload }]);
  run.setStatus(ChainStatus.Running);
  run.publishDetails();

  // The manifest's session settings, read once per run (recorded: replay reads the same).
  let settings: SessionSettings;
  try {
    settings = await governor.sessionSettings.executeWithOptions(
      { ...LOCAL_ACTIVITY, summary: 'read the session settings' },
      [],
    );
  } catch {
    settings = { idleTimeoutMs: 30 * 60_000, maxOutputBytes: 65_536 };
  }

  const stepsThisRun = input.options?.continueAsNewAfterSteps;
  let ranThisRun = 0;
  let outcome: ChainStatus = ChainStatus.Completed;
  const { state } = run;
  let current: Proposal | undefined;

  try {
    for (;;) {
      run.stopIfRevoked();
      if (queue.length === 0) {
        if (closing) {
          state.reason = `closed${closing.reason ? `: ${closing.reason}` : ''}`;
          break;
        }
        const due = workflowInfo().continueAsNewSuggested || (stepsThisRun !== undefined && ranThisRun >= stepsThisRun);
        if (ranThisRun > 0 && due) {
          // Every answered handler returns first; a proposal that arrives meanwhile is governed here.
          await condition(() => allHandlersFinished() || queue.length > 0 || closing !== undefined || !!run.revoked);
          if (queue.length === 0 && !closing && !run.revoked) {
            const continued = await continueSession(run, input, { governed, outcomes });
            if (continued) return continued;
            // No checkpoint, no continuation: the session ends Failed (fail closed), with what it has.
            state.reason = run.receiptFailure;
            outcome = ChainStatus.Failed;
            break;
          }
          continue;
        }
        const woke = await condition(
          () => queue.length > 0 || closing !== undefined || run.revoked !== undefined,
          settings.idleTimeoutMs,
        );
        if (!woke) {
          state.reason = `closed: idle for ${settings.idleTimeoutMs} ms`;
          break;
        }
        continue;
      }
      const p = queue.shift()!;
      current = p;
      const answer = await (p.trace
        ? otelContext.with(p.trace, () => governProposal(run, p, settings, governed))
        : governProposal(run, p, settings, governed));
      current = undefined;
      if (answer.kind === 'refused') reserved.delete(p.step.id);
      else {
        ranThisRun++;
        outcomes.set(p.step.id, answer.outcome);
        forgetOldOutputs(outcomes);
      }
      answers.set(p.seq, answer);
    }
  } catch (err) {
    if (!(err instanceof Revoked)) throw err;
    outcome = ChainStatus.Revoked;
    const { revoked } = run;
    const currentId = state.currentStep;
    const s = currentId ? run.stepState(currentId) : undefined;
    if (s && s.status !== 'completed') {
      s.status = 'denied';
      s.error = `revoked: ${revoked?.reason ?? ''}`;
      outcomes.set(s.id, { outcome: 'denied', stepId: s.id, reason: s.error, determiningPolicies: [] });
    }
    state.reason = `revoked${revoked?.by ? ` by ${revoked.by}` : ''}: ${revoked?.reason ?? ''}`;
    await run.record(currentId, 'decision', { revoked: revoked ?? null });
    // The proposal whose step was in flight gets that step's outcome; those still queued are refused.
    if (current) {
      const o = outcomes.get(current.step.id);
      answers.set(current.seq, o ? { kind: 'outcome', outcome: o } : { kind: 'refused', message: 'session: revoked' });
      if (!o) reserved.delete(current.step.id);
    }
    for (const p of queue.splice(0)) answers.set(p.seq, { kind: 'refused', message: 'session: revoked' });
    state.currentStep = undefined;
    for (const id of [...run.completed].reverse()) {
      const step = governed.find((x) => x.id === id)!;
      if (step.compensation) await compensate(run, step, step.compensation);
    }
  }
  state.currentStep = undefined;
  ended = true;

  // The final signed checkpoint, as for any chain.
  let checkpoint: string | undefined;
  const summary = { status: outcome, reason: state.reason ?? null, steps: state.steps.length };
  if (await run.record(undefined, 'checkpoint', summary)) checkpoint = run.lastSignature;
  else if (outcome === ChainStatus.Completed) {
    outcome = ChainStatus.Failed;
    state.reason = run.receiptFailure;
  }
  if (run.receiptFailure && outcome === ChainStatus.Completed) {
    outcome = ChainStatus.Failed;
    state.reason = run.receiptFailure;
  }
  run.setPendingRoles(undefined);
  run.setStatus(outcome);
  const { chainId } = run;
  const result: ChainResult = {
    chainId,
    status: outcome,
    reason: state.reason,
    steps: state.steps,
    receiptHead: run.head,
    checkpoint,
  };
  // The proof archive (ARCHIVE_PROOF_PATCH): its detached workflow's start is awaited before the result is
  // handed out, so `closeSession` still answers in the workflow task that ends the session.
  await startArchive(run, 'session');
  final.result = result;
  // Webhooks (sessions that escalated with some configured): the outcome; only the starts are awaited.
  await run.notifications?.outcome(outcome, state.reason);
  await condition(allHandlersFinished);
  log.info('session ended', { chainId, status: outcome });
  return result;
}

/** The `awaiting-approval` outcome of a step whose approval is pending now. */
function awaitingOutcome(run: ChainRun, stepId: string): ProposeOutcome {
  const s = run.stepState(stepId);
  return {
    outcome: 'awaiting-approval',
    stepId,
    ...(run.state.pendingRoles ? { pendingRoles: [...run.state.pendingRoles] } : {}),
    ...(s?.approval ? { approval: s.approval } : {}),
  };
}

/** Keeps the output of the latest outcomes only (older ones keep their digest and receipt). */
function forgetOldOutputs(outcomes: Map<string, ProposeOutcome>): void {
  let kept = 0;
  for (const [id, o] of [...outcomes.entries()].reverse()) {
    if (o.outcome !== 'executed' || o.output === undefined) continue;
    if (++kept > MAX_OUTPUTS_KEPT) {
      const { output: _dropped, ...rest } = o;
      outcomes.set(id, { ...rest, outputOmitted: 'no longer kept by the session (see the execution receipt)' });
    }
  }
}

/** Verifies a proposal's tokens (an activity); the problem naming the field, or undefined. */
async function verifyTokens(
  run: ChainRun,
  stepId: string,
  credential: string,
  attestation?: string,
): Promise<string | undefined> {
  try {
    const v = await governor.verifyProposal.executeWithOptions(
      { ...LOCAL_ACTIVITY, summary: `verify the credential proposing ${stepId}` },
      [
        {
          chainId: run.chainId,
          stepId,
          workload: run.chain.workload,
          credential,
          ...(attestation !== undefined ? { attestation } : {}),
        },
      ],
    );
    return v.ok ? undefined : `${v.field}: ${v.reason}`;
  } catch (err) {
    return `credential: could not be verified: ${failureMessage(err)}`;
  }
}

/** Governs one proposal like a declared step; its outcome, or why it was refused before anything was governed. */
async function governProposal(
  run: ChainRun,
  p: Proposal,
  settings: SessionSettings,
  governed: Step[],
): Promise<Answer> {
  const { step } = p;
  if (!p.declared) {
    const attestation = p.attestation ?? run.attestation;
    const problem = await verifyTokens(run, step.id, p.credential, attestation);
    if (problem) return { kind: 'refused', message: problem };
    run.stopIfRevoked();
    // The proposal's tokens are the session's current ones from now on.
    run.credential = p.credential;
    run.attestation = attestation;
  }
  governed.push(step);
  const { state } = run;
  const s: StepState = { id: step.id, action: step.action, resource: resourceLabel(step.resource), status: 'pending' };
  state.steps.push(s);
  state.currentStep = step.id;
  s.status = 'authorizing';
  run.publishDetails();
  const result = await govern(run, stepAction(step), s, (d) => (s.decision = d));
  state.currentStep = undefined;
  let outcome: ProposeOutcome;
  if (result.kind === 'denied') {
    s.status = 'denied';
    s.error = result.reason;
    outcome = {
      outcome: 'denied',
      stepId: step.id,
      reason: result.reason,
      determiningPolicies: [...(s.decision?.determiningPolicies ?? [])],
    };
  } else if (result.kind === 'failed') {
    s.status = 'failed';
    s.error = result.reason;
    outcome = { outcome: 'failed', stepId: step.id, reason: result.reason };
  } else {
    s.outcome = result.outcome;
    s.status = 'completed';
    run.completed.push(step.id);
    const receiptHash = run.head.hash;
    const summary = run.session!;
    summary.steps++;
    summary.actions[step.action] = (summary.actions[step.action] ?? 0) + 1;
    const output = result.outcome.result;
    let outputDigest = NULL_OUTPUT_DIGEST;
    let kept: { output: JsonValue } | { outputOmitted: string } = { output: null };
    const folded = result.output; // digested with the execution receipt (FOLDED_REMOTE_STEP_PATCH)
    if (output !== undefined && output !== null && folded) {
      outputDigest = folded.digest;
      kept =
        folded.bytes <= settings.maxOutputBytes
          ? { output: output as JsonValue }
          : {
              outputOmitted: `output is ${folded.bytes} bytes; session.maxOutputBytes is ${settings.maxOutputBytes}`,
            };
    } else if (output !== undefined && output !== null) {
      try {
        const measured = await governor.sessionOutput.executeWithOptions(
          { ...LOCAL_ACTIVITY, summary: `digest the output of ${step.id}` },
          [{ chainId: run.chainId, stepId: step.id, output, maxOutputBytes: settings.maxOutputBytes }],
        );
        outputDigest = measured.digest;
        kept =
          measured.bytes <= settings.maxOutputBytes
            ? { output: output as JsonValue }
            : {
                outputOmitted: `output is ${measured.bytes} bytes; session.maxOutputBytes is ${settings.maxOutputBytes}`,
              };
      } catch (err) {
        outputDigest = '';
        kept = { outputOmitted: `output could not be digested: ${failureMessage(err)}` };
      }
    }
    s.outputDigest = outputDigest;
    outcome = { outcome: 'executed', stepId: step.id, ...kept, outputDigest, receiptHash };
  }
  run.setStatus(ChainStatus.Running);
  run.publishDetails();
  return { kind: 'outcome', outcome };
}

/**
 * Continues the session as new, carrying its state; the signed checkpoint closes this run's receipts.
 * Undefined when the checkpoint could not be recorded (the session then ends Failed).
 */
async function continueSession(
  run: ChainRun,
  input: GovernedSessionInput,
  carry: { governed: Step[]; outcomes: Map<string, ProposeOutcome> },
): Promise<ChainResult | undefined> {
  const runs = run.resume?.runs ?? 1;
  const nextStep = carry.governed.length;
  const payload = { continuedAsNew: true, nextStep, run: runs, firstRunId: run.firstRunId };
  if (!(await run.record(undefined, 'checkpoint', payload))) return undefined;
  const outcomes: Record<string, Record<string, unknown>> = {};
  for (const [id, o] of carry.outcomes) {
    if (o.outcome === 'executed' && o.output !== undefined) {
      const { output: _output, ...rest } = o;
      outcomes[id] = { ...rest, outputOmitted: 'recorded in an earlier run of the session (see its receipt)' };
    } else outcomes[id] = { ...o };
  }
  const resume: NonNullable<GovernedSessionInput['resume']> = {
    nextStep,
    head: run.head,
    steps: run.state.steps,
    completed: run.completed,
    policyDigest: run.state.policyDigest,
    breakGlass: run.state.breakGlass,
    runs: runs + 1,
    ...(run.lastReceipt ? { checkpoint: run.lastReceipt } : {}),
    governed: carry.governed,
    summary: run.session!,
    outcomes,
  };
  const { credential, attestation } = run;
  return await continueAsNew<typeof governedSessionWorkflow>({
    ...input,
    chain: { ...input.chain, steps: [] },
    credential,
    attestation,
    resume,
  });
}

// ---- the trust boundary -------------------------------------------------------------------------

/** Checks a proposal's shape (the same schemas as declared steps) and that its credential names this session's workload. */
function checkProposal(proposal: unknown, workload: string): ProposeStepInput {
  const undecodable =
    typeof proposal === 'object' && proposal !== null
      ? (proposal as Record<string, unknown>)[UNDECODABLE_PAYLOAD]
      : null;
  if (typeof undecodable === 'string') throw invalidInput('(root): the payload could not be decoded');
  const deep = findTooDeep(proposal, MAX_JSON_DEPTH, nonFiniteNumber);
  if (deep) throw invalidInput(`${formatIssuePath(deep)}: ${deep.message}`);
  const large = findTooLarge(proposal, MAX_PROPOSAL_BYTES, 'the proposal');
  if (large) throw invalidInput(`${formatPath(large.path)}: ${large.message}`);
  const parsed = ProposeStepInput.safeParse(proposal);
  if (!parsed.success) throw invalidInput(invalidInputMessage(parsed.error));
  const { step, credential } = parsed.data;
  if (isCompensationStepId(step.id)) throw invalidInput(`step.id: ${COMPENSATION_ID_PROBLEM}`);
  if (Object.prototype.hasOwnProperty.call(step.context, SESSION_CONTEXT_KEY))
    throw invalidInput('step.context.session: reserved (the governor fills it with the session summary)');
  const sub = unverifiedSubject(credential);
  if (sub !== workload) throw invalidInput(`credential: ${subjectProblem(sub)}`);
  return parsed.data;
}

function subjectProblem(sub: string | undefined): string {
  return sub === undefined
    ? 'not a JWT with a subject'
    : "belongs to another workload, not this session's (a session accepts only its own workload's credential)";
}

/**
 * The `sub` claim of a compact JWS, unverified (a cheap first filter in the validator, with no history
 * event; the step's `verifyProposal` and `authorize` verify the signature).
 */
function unverifiedSubject(token: string): string | undefined {
  const sub = jwsPayload(token)?.sub;
  return typeof sub === 'string' ? sub : undefined;
}

/**
 * Parses the session's own input (synchronously); anything invalid ends the run at once as `Rejected`,
 * before anything is governed.
 */
function parseSessionInput(raw: unknown): GovernedSessionInput {
  const info = workflowInfo();
  const undecodable =
    typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)[UNDECODABLE_PAYLOAD] : null;
  if (typeof undecodable === 'string') return rejectInput('(root): the payload could not be decoded');
  const claimsResume = typeof raw === 'object' && raw !== null && (raw as { resume?: unknown }).resume !== undefined;
  if (claimsResume && !info.continuedFromExecutionRunId)
    return rejectInput(
      'resume: set only by the governor when a session continues as new; a new session must not carry it',
    );
  const deep = findTooDeep(raw, MAX_JSON_DEPTH, nonFiniteNumber);
  if (deep) return rejectInput(`${formatIssuePath(deep)}: ${deep.message}`);
  const parsed = GovernedSessionInput.safeParse(raw);
  if (!parsed.success) return rejectInput(invalidInputMessage(parsed.error));
  const input = parsed.data;
  if (input.chainId !== info.workflowId)
    return rejectInput('chainId: is not this workflow id (start the session with workflow id = chainId)');
  if (input.resume && input.resume.nextStep !== input.resume.governed.length)
    return rejectInput('resume.nextStep: not the number of governed steps');
  return input;
}

/** A continued run: its head must be the checkpoint the previous run of this session signed. */
async function verifySessionResume(
  input: GovernedSessionInput,
  resume: NonNullable<GovernedSessionInput['resume']>,
): Promise<void> {
  const reason = await resumeCheckpointProblem(input.chainId, resume);
  if (reason !== undefined) rejectInput(reason);
}
