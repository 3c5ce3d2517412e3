import { patched, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { z } from 'zod';
import { GovernedChainInput } from '../../contracts/chain';
import { UNDECODABLE_PAYLOAD, formatIssuePath, invalidInputMessage } from '../../contracts/issues';
import { findTooDeep, MAX_JSON_DEPTH, nonFiniteNumber } from '../../contracts/limits';
import { statusQuery } from '../../contracts/messages';
import { RESERVED_COMPENSATION_ID_PATCH } from '../../contracts/patches';
import { GENESIS_HASH } from '../../contracts/receipt';
import { GovernorStatusKey } from '../../contracts/search-attributes';
import { StepState, type ChainState } from '../../contracts/state';
import { ChainStatus } from '../../contracts/status';
import { packedStepsProblem } from '../../core/packed-steps';
import { COMPENSATION_ID_PROBLEM, isCompensationStepId } from '../../core/step';
import { failureMessage, invalidInput } from '../failure';
import { LOCAL_ACTIVITY } from '../retry';
import { governor } from './proxies';

/**
 * What a run carries into the next when the chain continues as new: the input's `resume`, with the
 * steps in the `status` query's shape. Written only by the governor's own continue-as-new.
 */
export const ChainResume = GovernedChainInput.shape.resume.unwrap().extend({ steps: z.array(StepState) });
export type ChainResume = z.infer<typeof ChainResume>;

/** A type guard, so a resume zod accepts is used as received (zod's output would be a copy, its keys re-ordered). */
const isChainResume = (value: unknown): value is ChainResume => ChainResume.safeParse(value).success;

/** Why `resume` is not a {@link ChainResume}, naming the fields (`resume.steps[0].status: …`). */
const resumeIssues = (resume: unknown): string => invalidInputMessage(ChainResume.safeParse(resume).error!, 'resume');

/**
 * The `resume` of a continued run, typed (undefined in a run that continues nothing). The previous run
 * of this chain wrote it, so it parses; the objects received are kept, so what the run shows, carries on
 * and returns is exactly what it received. A resume that does not parse ends the run with a
 * non-retryable `GOVERNOR_INVALID_INPUT` rather than acting on a state it cannot read (runs on the
 * `validated-input` path have already been rejected by {@link acceptInput}).
 */
export function readResume(resume: GovernedChainInput['resume'] | null): ChainResume | undefined {
  // `null`: runs before `validated-input` read the input unparsed, and treated it as absent.
  if (resume === undefined || resume === null) return undefined;
  if (isChainResume(resume)) return resume;
  throw invalidInput(`invalid workflow input: ${resumeIssues(resume)}`);
}

/** Ends the run as `Rejected` with a non-retryable `GOVERNOR_INVALID_INPUT` naming the field (chains and sessions). */
export function rejectInput(message: string): never {
  const state: ChainState = {
    chainId: workflowInfo().workflowId,
    workload: '',
    status: ChainStatus.Rejected,
    reason: message,
    steps: [],
    receiptHead: { seq: 0, hash: GENESIS_HASH },
  };
  setHandler(statusQuery, () => state);
  upsertSearchAttributes([{ key: GovernorStatusKey, value: ChainStatus.Rejected }]);
  throw invalidInput(`invalid workflow input: ${message}`);
}

/**
 * Parses the workflow's own input (defaults applied) and checks `resume`; anything invalid ends the run
 * at once as `Rejected` with a non-retryable `GOVERNOR_INVALID_INPUT` naming the field, before anything
 * is authorized or executed (never a workflow-task retry loop). `atStart`: the run recorded PATCHES_AT_START
 * (which implies RESERVED_COMPENSATION_ID_PATCH).
 */
export async function acceptInput(raw: unknown, atStart = false): Promise<GovernedChainInput> {
  const info = workflowInfo();
  const reject = rejectInput;
  const undecodable =
    typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)[UNDECODABLE_PAYLOAD] : null;
  if (typeof undecodable === 'string') {
    const hint = 'send one JSON object (encoding json/plain)';
    return reject(`(root): the payload could not be decoded (${undecodable}): ${hint}`);
  }
  // Only the governor's own continue-as-new carries `resume`: refused first in a run nobody continued,
  // whatever else is wrong with it (a first run with `resume` would skip steps without authorization).
  const claimsResume = typeof raw === 'object' && raw !== null && (raw as { resume?: unknown }).resume !== undefined;
  if (claimsResume && !info.continuedFromExecutionRunId) {
    return reject('resume: set only by the governor when a chain continues as new; a new chain must not carry it');
  }
  // Before zod, which recurses (a hostile 20,000-level document would overflow the stack) and refuses a non-finite
  // number (1e400 from another SDK) once at every level it nests.
  const deep = findTooDeep(raw, MAX_JSON_DEPTH, nonFiniteNumber);
  if (deep) return reject(`${formatIssuePath(deep)}: ${deep.message}`);
  const parsed = GovernedChainInput.safeParse(raw);
  if (!parsed.success) return reject(invalidInputMessage(parsed.error));
  const input = parsed.data;
  if (input.chainId !== info.workflowId) {
    return reject(`chainId: is not this workflow's id (start the chain with workflow id = chainId)`);
  }
  const { resume } = input;
  if (resume) {
    // A continued run: its head must be the checkpoint the previous run of this chain signed.
    const reason = await resumeCheckpointProblem(input.chainId, resume);
    if (reason !== undefined) return reject(reason);
    if (resume.nextStep > input.chain.steps.length) return reject('resume.nextStep: beyond the last step of the chain');
    const packed = resume.packedSteps ? packedStepsProblem(input.chain.steps, resume.packedSteps) : undefined;
    if (packed !== undefined) return reject(`resume.${packed}`);
    // The steps' states as the previous run showed them (`GovernedChainInput` checks only that each is a record).
    if (!isChainResume(resume)) return reject(resumeIssues(resume));
  }
  // A step may not take the id the governor gives a compensation (its key would dedupe the real one).
  const reserved = input.chain.steps.findIndex((s) => isCompensationStepId(s.id));
  if (reserved >= 0 && (atStart || patched(RESERVED_COMPENSATION_ID_PATCH))) {
    return reject(`chain.steps[${reserved}].id: ${COMPENSATION_ID_PROBLEM}`);
  }
  return input;
}

/**
 * Checks a continued run's `resume` (chain or session) against the checkpoint the previous run signed:
 * undefined when it is that checkpoint, else why not (the run then refuses its input: fail closed).
 */
export async function resumeCheckpointProblem(
  chainId: string,
  resume: Pick<NonNullable<GovernedChainInput['resume']>, 'nextStep' | 'runs' | 'head' | 'checkpoint'>,
): Promise<string | undefined> {
  const info = workflowInfo();
  try {
    const checked = await governor.verifyResume.executeWithOptions(
      { ...LOCAL_ACTIVITY, summary: 'verify the signed checkpoint this run resumes from' },
      [
        {
          chainId,
          firstRunId: info.firstExecutionRunId,
          continuedFromRunId: info.continuedFromExecutionRunId,
          nextStep: resume.nextStep,
          runs: resume.runs,
          head: resume.head,
          ...(resume.checkpoint ? { checkpoint: resume.checkpoint } : {}),
        },
      ],
    );
    return checked.ok ? undefined : checked.reason;
  } catch (err) {
    return `resume: the checkpoint could not be verified: ${failureMessage(err)}`;
  }
}
