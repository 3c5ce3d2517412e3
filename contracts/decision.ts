import { z } from 'zod';

/** What policy decided for one request (DESIGN §3). Recorded in history: extend, never rename. */
export const Effect = z.enum(['allow', 'deny', 'escalate']);
export type Effect = z.infer<typeof Effect>;

/** Approval requirements merged from the escalatable `forbid`s that blocked the request. */
export const EscalationRequirement = z.strictObject({
  roles: z.array(z.string()).min(1),
  quorum: z.int().min(1),
  /** ISO-8601-ish duration as written in the annotation or manifest default, e.g. `30m`. */
  deadline: z.string(),
  /** The escalatable policies that produced this requirement. */
  policies: z.array(z.string()),
});
export type EscalationRequirement = z.infer<typeof EscalationRequirement>;

export const Decision = z.strictObject({
  effect: Effect,
  /** Policy ids that determined the result (Cedar's `reason`). */
  determiningPolicies: z.array(z.string()),
  /** Annotations of each determining policy, by policy id (explain). */
  annotations: z.record(z.string(), z.record(z.string(), z.string())),
  /** Evaluation and verification errors; non-empty always means deny. */
  errors: z.array(z.string()),
  /** Human-readable reason for a deny or escalate. */
  reason: z.string().optional(),
  escalation: EscalationRequirement.optional(),
  /** SHA-256 (hex) of the canonical bundle content used. */
  bundleDigest: z.string(),
  /** SHA-256 (hex) of the canonical request that was evaluated. */
  inputDigest: z.string(),
  /** The evaluation time passed in (never read from a clock inside the decision). */
  evaluatedAt: z.string(),
});
export type Decision = z.infer<typeof Decision>;

/** The Cedar request the decision function evaluates. Pure data: recorded so it can be re-evaluated. */
export const AuthzRequest = z.strictObject({
  principal: z.strictObject({ type: z.literal('Workload'), id: z.string() }),
  action: z.string(),
  resource: z.strictObject({ type: z.string(), id: z.string() }),
  context: z.record(z.string(), z.json()),
  /** Evaluation time, ISO-8601 UTC. */
  now: z.string(),
});
export type AuthzRequest = z.infer<typeof AuthzRequest>;
