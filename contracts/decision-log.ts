import { z } from 'zod';
import { Effect } from './decision';

/**
 * One line of the decision log (DESIGN §12): every decision the worker signs, as one JSON object per
 * line, for a SIEM. Only identifiers and the decision's outcome: never a credential, attestation,
 * approval token, step input or context value. Fields are only ever added, never renamed or removed.
 */
export const DecisionLogLine = z.strictObject({
  /** Unique per decision in history: `<chainId>#<receipt seq>` (a retried activity attempt logs the same id again, with its own `attempt`). */
  decisionId: z.string(),
  /** When the decision was made (the decision's evaluation time, ISO-8601 UTC). */
  time: z.string(),
  chainId: z.string(),
  stepId: z.string(),
  /** `step` or `compensation`. */
  kind: z.enum(['step', 'compensation']),
  /** The workload that submitted the chain (`Workload::"<workload>"` in policy). */
  workload: z.string(),
  action: z.string(),
  resource: z.strictObject({ type: z.string(), id: z.string() }),
  effect: Effect,
  /** Policy ids that determined the result (empty for a deny made before policy, e.g. an invalid credential). */
  determiningPolicies: z.array(z.string()),
  /** True when the decision is a fail-closed deny (verification, revocation, target or evaluation error). */
  failClosed: z.boolean(),
  /** SHA-256 (hex) of the policy bundle that decided ('' when none was loaded). */
  bundleDigest: z.string(),
  /** Hash of the signed decision receipt (verify it with `governor verify`). */
  receiptHash: z.string(),
  receiptSeq: z.int().min(1),
  /** The activity attempt that made the decision (1 unless Temporal retried it). */
  attempt: z.int().min(1),
  /** Time spent deciding, in milliseconds. */
  durationMs: z.number().min(0),
});
export type DecisionLogLine = z.infer<typeof DecisionLogLine>;
