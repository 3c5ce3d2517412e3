import { defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import { Chain, GovernedChainInput, JsonValue, Step } from './chain';
import { ApprovalState } from './approval';
import { StepState, type ChainResult } from './state';
import { COMPENSATION_ID_PROBLEM, isCompensationStepId } from '../core/step';

/*
 * Agent sessions (DESIGN §9): a governed chain opened with zero or more declared steps, to which the
 * agent proposes one step at a time (`proposeStep` update). Workflow type `governedSessionWorkflow`;
 * its messages are the chain's (`status`, `revoke`, votes, credential refresh) plus the updates below.
 * Names are recorded in history and used by other SDKs: never rename.
 */

/** Workflow type of a session (documented for other SDKs: never rename). */
export const SESSION_WORKFLOW_TYPE = 'governedSessionWorkflow';

/** Most steps one session may govern (declared and proposed, across continue-as-new). */
export const MAX_SESSION_STEPS = 1000;

/** Most bytes of JSON one proposal may carry (step + tokens). */
export const MAX_PROPOSAL_BYTES = 256 * 1024;

/** Context key the governor fills with the session summary (a proposal's own `context.session` is refused). */
export const SESSION_CONTEXT_KEY = 'session';

/** `context.session` of a session step: what the session executed before this step. */
export const SessionSummary = z.strictObject({
  /** Steps executed so far in this session. */
  steps: z.int().min(0),
  /** Executed steps so far, by action. */
  actions: z.record(z.string(), z.int().min(0)),
});
export type SessionSummary = z.infer<typeof SessionSummary>;

const Token = z.string().min(1, 'must be a non-empty JWT string').max(16_384);

/** What an agent sends with `proposeStep`: the step (same schema as a declared step) and its current credential. */
export const ProposeStepInput = z.strictObject({
  step: Step,
  credential: Token,
  attestation: Token.optional(),
});
export type ProposeStepInput = z.input<typeof ProposeStepInput>;

/** `awaitStep`: the step to wait for, and the agent's current credential. */
export const AwaitStepInput = z.strictObject({
  stepId: z.string().min(1).max(128),
  credential: Token,
});
export type AwaitStepInput = z.infer<typeof AwaitStepInput>;

/** `closeSession`: why the agent ends the session. */
export const CloseSessionInput = z.strictObject({ reason: z.string().max(500).optional() });
export type CloseSessionInput = z.infer<typeof CloseSessionInput>;

/** The outcome of a proposed step, as `proposeStep` and `awaitStep` return it. */
export const ProposeOutcome = z.discriminatedUnion('outcome', [
  z.strictObject({
    outcome: z.literal('executed'),
    stepId: z.string(),
    /** The executor's output (absent when it exceeds the manifest's `session.maxOutputBytes`, or after continue-as-new). */
    output: JsonValue.optional(),
    /** Why `output` is absent, when it is. */
    outputOmitted: z.string().optional(),
    /** SHA-256 (hex) of the canonical JSON of the output (`null` when the executor returned none). */
    outputDigest: z.string(),
    /** Hash of the execution receipt (its payload commits to the output). */
    receiptHash: z.string(),
  }),
  z.strictObject({
    outcome: z.literal('denied'),
    stepId: z.string(),
    reason: z.string(),
    determiningPolicies: z.array(z.string()),
  }),
  z.strictObject({
    outcome: z.literal('awaiting-approval'),
    stepId: z.string(),
    pendingRoles: z.array(z.string()).optional(),
    approval: ApprovalState.optional(),
  }),
  z.strictObject({ outcome: z.literal('failed'), stepId: z.string(), reason: z.string() }),
]);
export type ProposeOutcome = z.infer<typeof ProposeOutcome>;

export { COMPENSATION_ID_PROBLEM };

/** The chain of a session: like a chain, but zero declared steps are allowed. */
export const SessionChain = z
  .strictObject({
    workload: Chain.shape.workload,
    owner: Chain.shape.owner,
    summary: z.string().max(400).optional(),
    steps: z.array(Step).max(MAX_SESSION_STEPS).default([]),
  })
  .superRefine((chain, ctx) => {
    const seen = new Map<string, number>();
    chain.steps.forEach((step, i) => {
      const first = seen.get(step.id);
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'id'],
          message: `duplicate step id (same as steps.${first}.id)`,
        });
      else seen.set(step.id, i);
      if (isCompensationStepId(step.id))
        ctx.addIssue({ code: 'custom', path: ['steps', i, 'id'], message: COMPENSATION_ID_PROBLEM });
      if (Object.prototype.hasOwnProperty.call(step.context, SESSION_CONTEXT_KEY))
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'context', SESSION_CONTEXT_KEY],
          message: 'reserved (the governor fills it with the session summary)',
        });
    });
  });

/** The outcome of a step as carried across continue-as-new (outputs are not carried). */
const CarriedOutcome = z.record(z.string(), z.unknown());

/** Input of `governedSessionWorkflow`. Other SDKs send exactly this object as the single argument. */
export const GovernedSessionInput = z.strictObject({
  chainId: GovernedChainInput.shape.chainId,
  chain: SessionChain,
  credential: GovernedChainInput.shape.credential,
  attestation: GovernedChainInput.shape.attestation,
  options: z
    .strictObject({
      /** Continue-as-new after this many governed steps in one run (default: when Temporal suggests it). */
      continueAsNewAfterSteps: z.int().min(1).max(MAX_SESSION_STEPS).optional(),
    })
    .optional(),
  /** Set by the workflow itself when it continues as new; services never send it. */
  resume: z
    .strictObject({
      nextStep: z.int().min(0),
      head: z.strictObject({ seq: z.int().min(0), hash: z.string() }),
      steps: z.array(StepState),
      completed: z.array(z.string()),
      policyDigest: z.string().optional(),
      breakGlass: z.boolean().optional(),
      runs: z.int().min(2),
      checkpoint: GovernedChainInput.shape.resume.unwrap().shape.checkpoint,
      /** Every step governed so far (declared and proposed), in order. */
      governed: z.array(Step),
      summary: SessionSummary,
      outcomes: z.record(z.string(), CarriedOutcome),
    })
    .optional(),
});
export type GovernedSessionInput = z.infer<typeof GovernedSessionInput>;

/** Proposes one step to a running session; returns its outcome (`awaiting-approval` at once when it escalates). */
export const proposeStepUpdate = defineUpdate<ProposeOutcome, [ProposeStepInput]>('proposeStep');

/** Waits for the final outcome of a step of the session (an escalated one: until it is decided and run). */
export const awaitStepUpdate = defineUpdate<ProposeOutcome, [AwaitStepInput]>('awaitStep');

/** Ends the session (after the steps already accepted) with its final signed checkpoint. */
export const closeSessionUpdate = defineUpdate<ChainResult, [CloseSessionInput]>('closeSession');

/** The settings of the active manifest a session runs with (`session` section). */
export interface SessionSettings {
  idleTimeoutMs: number;
  maxOutputBytes: number;
}

/** SHA-256 of `null` in canonical JSON: the output digest of an executor that returned nothing. */
export const NULL_OUTPUT_DIGEST = '74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b';
