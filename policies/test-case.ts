import { z } from 'zod';
import { AuthzRequest, Effect } from '../contracts/decision';

/**
 * Data-driven policy tests (`<bundle>/tests/*.yaml|json`): a request and the decision expected for
 * it, Cedar-style. Fields left out of `expect` are not checked.
 */

export const ExpectedEscalation = z.strictObject({
  /** Compared as a set. */
  roles: z.array(z.string()).min(1),
  quorum: z.int().min(1),
  deadline: z.string(),
});

export const ExpectedDecision = z.strictObject({
  effect: Effect,
  /** Exact set of determining policy ids (order ignored); `[]` asserts none. */
  determiningPolicies: z.array(z.string()).optional(),
  escalation: ExpectedEscalation.optional(),
  /** true: evaluation errors expected (the deny is fail-closed); false: none expected. */
  errors: z.boolean().optional(),
  /** A substring the decision's `reason` must contain. */
  reasonContains: z.string().optional(),
});
export type ExpectedDecision = z.infer<typeof ExpectedDecision>;

export const PolicyTestCase = z.strictObject({
  name: z.string().min(1),
  request: AuthzRequest,
  expect: ExpectedDecision,
});
export type PolicyTestCase = z.infer<typeof PolicyTestCase>;

export const PolicyTestFile = z
  .strictObject({
    description: z.string().optional(),
    /** Free-form place for YAML anchors (`&trusted`) reused by the cases; ignored otherwise. */
    shared: z.unknown().optional(),
    cases: z.array(PolicyTestCase).min(1),
  })
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.cases.forEach((c, i) => {
      if (seen.has(c.name))
        ctx.addIssue({ code: 'custom', path: ['cases', i, 'name'], message: `duplicate case name "${c.name}"` });
      seen.add(c.name);
    });
  });
export type PolicyTestFile = z.infer<typeof PolicyTestFile>;
