import cedar from './cedar';
import type * as Cedar from '@cedar-policy/cedar-wasm/nodejs';
import { formatIssues } from '../contracts/chain';
import { AuthzRequest, type Decision, type EscalationRequirement } from '../contracts/decision';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { Annotation, readEscalation, type EscalationAnnotation } from './annotations';
import type { BundlePolicy, LoadedBundle } from './bundle';
import { canonicalJson, sha256Hex } from '../core/canonical';
import { durationMs } from './manifest';

export { canonicalJson, sha256Hex } from '../core/canonical';

/**
 * The Cedar decision function (DESIGN §3).
 *
 * Request mapping: principal `Workload::"<id>"`, action `Action::"<action>"`, resource
 * `<Type>::"<id>"`, no entity store (entities = []: the default schema declares no parents; every
 * attribute a policy needs travels in the context). The context is `request.context` plus two keys
 * the engine always sets, overwriting any caller-supplied value so time cannot be spoofed:
 *
 *   now              Cedar `datetime` built from `request.now` (ISO-8601 UTC, e.g.
 *                    `2025-01-15T10:00:00.000Z`): policies compare with `datetime("...")`, `.toTime()`…
 *   nowEpochSeconds  the same instant as a Long (whole seconds since the Unix epoch)
 *
 * The request is not validated against the schema at evaluation time (a step's free-form context
 * may carry extra keys); policies are validated against it when the bundle loads, so a context that
 * does not fit simply makes a policy error — and any error is a deny.
 */

/** Preparsed policy-set ids must be unique per engine: the wasm cache is process-wide. */
let engineSeq = 0;

/**
 * The slices' budget (`PolicySlice`): at most this many actions, and policy text summing to at most
 * `SLICE_BUDGET_FACTOR` times the bundle's plus `SLICE_BUDGET_BYTES`; past it, every action evaluates the
 * whole set (as before slicing). The default bundle's slices hold about twice its text.
 */
const MAX_SLICES = 512;
const SLICE_BUDGET_FACTOR = 4;
const SLICE_BUDGET_BYTES = 256 * 1024;

interface Evaluation {
  decision: 'allow' | 'deny';
  reason: string[];
  errors: string[];
  erroringPolicies: string[];
}

/** Which path of the decision function (DESIGN §3) produced a decision. */
export const DecisionPath = {
  /** The request does not match the AuthzRequest contract (or `now` is malformed): deny. */
  InvalidRequest: 'invalid-request',
  /** A policy errored while evaluating the full set: deny (fail closed). */
  EvaluationError: 'evaluation-error',
  Allow: 'allow',
  /** Nothing permitted and nothing forbade: Cedar's default deny. */
  DefaultDeny: 'default-deny',
  /** At least one determining forbid is not escalatable: deny. */
  Forbid: 'forbid',
  /** Only escalatable forbids blocked and the rest of the set allows: escalate. */
  Escalate: 'escalate',
  /** Only escalatable forbids blocked, but nothing would permit without them: deny. */
  ApprovalCannotHelp: 'approval-cannot-help',
  /**
   * The set without the escalatable forbids errored: deny. Unreachable in practice (Cedar evaluates
   * every policy, so its errors already showed in the full set) but kept fail-closed.
   */
  EscalationEvaluationError: 'escalation-evaluation-error',
} as const;
export type DecisionPath = (typeof DecisionPath)[keyof typeof DecisionPath];

/** A decision and the path that produced it. */
export interface DecisionTrace {
  readonly decision: Decision;
  readonly path: DecisionPath;
}

/** A Cedar decision engine for one bundle: preparse once, then `decide` any number of times. */
export class PolicyEngine {
  /** SHA-256 of the bundle this engine evaluates. */
  readonly bundleDigest: string;
  /** The preparsed sets of each action some policy's scope names (see `PolicySlice`). */
  private readonly slices: ReadonlyMap<string, PolicySlice>;
  /** The slice of every other action: the policies whose scope names no action. */
  private readonly unnamed: PolicySlice;
  /** How many actions have a slice of their own (0: every action evaluates the whole set). */
  readonly slicedActions: number;
  private readonly policies: ReadonlyMap<string, BundlePolicy>;
  private readonly escalations: ReadonlyMap<string, EscalationAnnotation>;
  private readonly defaultQuorum: number;
  private readonly defaultDeadline: string;

  private constructor(
    bundle: LoadedBundle,
    slices: Map<string, PolicySlice>,
    unnamed: PolicySlice,
    escalations: Map<string, EscalationAnnotation>,
  ) {
    this.bundleDigest = bundle.digest;
    this.slices = slices;
    this.unnamed = unnamed;
    this.slicedActions = slices.size;
    this.policies = new Map(bundle.policies.map((p) => [p.id, p]));
    this.escalations = escalations;
    this.defaultQuorum = bundle.manifest.approvals.defaultQuorum;
    this.defaultDeadline = bundle.manifest.approvals.defaultDeadline;
  }

  /**
   * Preparses the bundle's policy set once, then each action's slice of it (and each slice without its
   * escalatable forbids: `PolicySlice`). Throws GovernorError(PolicyError) when Cedar rejects the set or
   * an escalation annotation is malformed.
   */
  static fromBundle(bundle: LoadedBundle, options: { slice?: boolean } = {}): PolicyEngine {
    const escalations = new Map<string, EscalationAnnotation>();
    for (const p of bundle.policies) {
      const { escalation, problems } = readEscalation(p.annotations);
      if (problems.length > 0) throw new GovernorError(ErrorCode.PolicyError, `policy ${p.id}: ${problems.join('; ')}`);
      if (escalation && p.effect === 'forbid') escalations.set(p.id, escalation);
    }
    const seq = ++engineSeq;
    const prepare = (suffix: string, policies: readonly BundlePolicy[]): string => {
      const id = `governor/${bundle.digest}/${seq}/${suffix}`;
      const answer = cedar.preparsePolicySet(id, {
        staticPolicies: Object.fromEntries(policies.map((p) => [p.id, p.text])),
      });
      if (answer.type === 'failure') {
        throw new GovernorError(
          ErrorCode.PolicyError,
          `Cedar rejected the policy set: ${answer.errors.map((e) => e.message).join('; ')}`,
        );
      }
      return id;
    };
    // The whole set first: what Cedar rejects in it is reported as before, for the bundle as a whole.
    const whole = prepare('full', bundle.policies);
    // One slice per action a scope names, and one for every other action (module comment on PolicySlice).
    // `slice: false` (tests and benchmarks only): one slice, the whole set, for every action.
    const scoped = bundle.policies.map((p) => ({
      p,
      actions: options.slice === false ? undefined : actionsNamedBy(p.text),
    }));
    const memberSets = new Map<string | undefined, BundlePolicy[]>();
    const members = (action: string | undefined): BundlePolicy[] => {
      let m = memberSets.get(action);
      if (!m) {
        m = scoped.filter((s) => !s.actions || (action !== undefined && s.actions.has(action))).map((s) => s.p);
        memberSets.set(action, m);
      }
      return m;
    };
    const named = [...new Set(scoped.flatMap((s) => [...(s.actions ?? [])]))].sort();
    // Slices repeat the policies they share (every unscoped one, a list naming many actions), and Cedar
    // keeps every preparsed set for the life of the process: past a budget, the whole set for every action.
    const size = (policies: readonly BundlePolicy[]): number => policies.reduce((n, p) => n + p.text.length, 0);
    const budget = SLICE_BUDGET_FACTOR * size(bundle.policies) + SLICE_BUDGET_BYTES;
    let sliced = named.length <= MAX_SLICES ? size(members(undefined)) : Infinity;
    for (const action of named) if (sliced <= budget) sliced += size(members(action));
    const within = sliced <= budget;
    const slice = (key: string, action: string | undefined): PolicySlice => {
      const policies = within ? members(action) : bundle.policies;
      const base = policies.filter((p) => !escalations.has(p.id));
      return {
        // Past the budget every slice is the whole set, already preparsed.
        full: within ? prepare(`full/${key}`, policies) : whole,
        base: base.length < policies.length ? prepare(`base/${key}`, base) : undefined,
      };
    };
    const slices = new Map(within ? named.map((action, i) => [action, slice(`action-${i}`, action)]) : []);
    return new PolicyEngine(bundle, slices, slice('unnamed', undefined), escalations);
  }

  /**
   * Decides one request. Pure: no clock, no I/O; the same request and bundle give the same Decision,
   * byte for byte (arrays sorted, keys in a fixed order). Never throws: anything uncertain — invalid
   * request, evaluation error, Cedar failure — is a deny listing the errors.
   */
  decide(request: AuthzRequest): Decision {
    return this.trace(request).decision;
  }

  /**
   * `decide`, plus which path of the decision function produced the decision (what `policy test`
   * coverage counts). Pure, like `decide`.
   */
  trace(request: AuthzRequest): DecisionTrace {
    let inputDigest: string;
    try {
      inputDigest = sha256Hex(canonicalJson(request));
    } catch {
      inputDigest = sha256Hex('');
    }
    const evaluatedAt = typeof (request as { now?: unknown } | null)?.now === 'string' ? request.now : '';
    const out = (
      path: DecisionPath,
      d: Omit<Decision, 'bundleDigest' | 'inputDigest' | 'evaluatedAt'>,
    ): DecisionTrace => ({
      decision: this.finish(d, inputDigest, evaluatedAt),
      path,
    });

    // Snapshot untrusted input into plain data before using it.
    const parsed = AuthzRequest.safeParse(request);
    if (!parsed.success) {
      const errors = formatIssues(parsed.error, 'request').split('\n').sort();
      return out(DecisionPath.InvalidRequest, deny([], errors, 'invalid request: fail closed'));
    }
    const req = parsed.data;
    const now = parseNow(req.now);
    if (now === undefined) {
      return out(
        DecisionPath.InvalidRequest,
        deny(
          [],
          ['request.now: must be an ISO-8601 UTC timestamp such as 2025-01-15T10:00:00.000Z'],
          'invalid request: fail closed',
        ),
      );
    }
    const call = {
      principal: { type: 'Workload', id: req.principal.id },
      action: { type: 'Action', id: req.action },
      resource: { type: req.resource.type, id: req.resource.id },
      context: {
        ...(req.context as Record<string, Cedar.CedarValueJson>),
        now: { __extn: { fn: 'datetime', arg: req.now } },
        nowEpochSeconds: now,
      },
      entities: [],
    };
    const target = `${req.action} on ${req.resource.type}::${JSON.stringify(req.resource.id)}`;

    const set = this.slices.get(req.action) ?? this.unnamed;
    // 1. The full set. Any error is a deny: Cedar skips an erroring forbid and might allow.
    const first = evaluate(set.full, call);
    if (first.errors.length > 0) {
      const where = first.erroringPolicies.length > 0 ? ` in ${first.erroringPolicies.join(', ')}` : '';
      return out(
        DecisionPath.EvaluationError,
        deny(first.erroringPolicies, first.errors, `policy evaluation failed${where}: fail closed`),
      );
    }
    // 2. Allow.
    if (first.decision === 'allow')
      return out(DecisionPath.Allow, {
        effect: 'allow',
        determiningPolicies: first.reason,
        annotations: {},
        errors: [],
      });
    // Cedar's default deny: nothing permitted it and nothing forbade it.
    if (first.reason.length === 0) {
      return out(
        DecisionPath.DefaultDeny,
        deny([], [], `no policy permits ${target} for Workload::${JSON.stringify(req.principal.id)}`),
      );
    }
    const blocking = first.reason;
    if (set.base === undefined || !blocking.every((id) => this.escalations.has(id))) {
      const hard = blocking.filter((id) => !this.escalations.has(id));
      return out(DecisionPath.Forbid, deny(blocking, [], `denied by ${this.explain(hard)}`));
    }
    // 3. Only escalatable forbids blocked: would it be allowed without them?
    const second = evaluate(set.base, call);
    if (second.errors.length > 0) {
      return out(
        DecisionPath.EscalationEvaluationError,
        deny(blocking, second.errors, 'policy evaluation failed without the escalatable policies: fail closed'),
      );
    }
    if (second.decision !== 'allow') {
      return out(
        DecisionPath.ApprovalCannotHelp,
        deny(blocking, [], `approval cannot help: no policy permits ${target} (blocked by ${blocking.join(', ')})`),
      );
    }
    const escalation = this.merge(blocking);
    return out(DecisionPath.Escalate, {
      effect: 'escalate',
      determiningPolicies: blocking,
      annotations: {},
      errors: [],
      reason: `needs approval by ${escalation.quorum} of [${escalation.roles.join(', ')}] within ${escalation.deadline}: ${this.explain(blocking)}`,
      escalation,
    });
  }

  /** Merged requirements: roles = union, quorum = max, deadline = min (manifest defaults fill gaps). */
  private merge(policyIds: readonly string[]): EscalationRequirement {
    const roles = new Set<string>();
    let quorum = 0;
    let deadline: string | undefined;
    for (const id of policyIds) {
      const e = this.escalations.get(id)!;
      e.roles.forEach((r) => roles.add(r));
      quorum = Math.max(quorum, e.quorum ?? this.defaultQuorum);
      const d = e.deadline ?? this.defaultDeadline;
      if (deadline === undefined || durationMs(d) < durationMs(deadline)) deadline = d;
    }
    return { roles: [...roles].sort(), quorum, deadline: deadline ?? this.defaultDeadline, policies: [...policyIds] };
  }

  /** `id (reason annotation)`, joined: the human half of a deny or escalate. */
  private explain(ids: readonly string[]): string {
    return ids
      .map((id) => {
        const why = this.policies.get(id)?.annotations[Annotation.reason];
        return why ? `${id} (${why})` : id;
      })
      .join('; ');
  }

  /** Adds annotations of the determining policies and the digests, in one fixed key order. */
  private finish(
    d: Omit<Decision, 'bundleDigest' | 'inputDigest' | 'evaluatedAt'>,
    inputDigest: string,
    evaluatedAt: string,
  ): Decision {
    const annotations: Record<string, Record<string, string>> = {};
    for (const id of d.determiningPolicies) {
      const policy = this.policies.get(id);
      if (!policy) continue;
      const sorted: Record<string, string> = {};
      for (const key of Object.keys(policy.annotations).sort()) sorted[key] = policy.annotations[key]!;
      annotations[id] = sorted;
    }
    return {
      effect: d.effect,
      determiningPolicies: d.determiningPolicies,
      annotations,
      errors: d.errors,
      ...(d.reason !== undefined ? { reason: d.reason } : {}),
      ...(d.escalation !== undefined ? { escalation: d.escalation } : {}),
      bundleDigest: this.bundleDigest,
      inputDigest,
      evaluatedAt,
    };
  }
}

function deny(
  determiningPolicies: string[],
  errors: string[],
  reason: string,
): Omit<Decision, 'bundleDigest' | 'inputDigest' | 'evaluatedAt'> {
  return { effect: 'deny', determiningPolicies, annotations: {}, errors, reason };
}

/** Seconds since the epoch for a strict ISO-8601 UTC timestamp (the forms Cedar's datetime accepts). */
function parseNow(now: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/.test(now)) return undefined;
  const ms = Date.parse(now);
  // Date.parse rolls over impossible dates (Feb 30); the round trip rejects them.
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 19) !== now.slice(0, 19)) return undefined;
  return Math.floor(ms / 1000);
}

/**
 * The policies Cedar would consider for one action, preparsed: a policy whose action scope names other
 * actions can neither determine nor error for this one (Cedar evaluates a policy's condition only when
 * its scope matches), so evaluating the slice decides exactly what the whole set decides, with less work
 * in wasm (about a third less a decision with the default bundle, more with larger bundles).
 * Exact because the engine passes no entities and no schema: an action has no parents, so `action in
 * Action::"x"` and `action in [...]` match only the actions they name, like `==`.
 */
interface PolicySlice {
  full: string;
  /** The slice without escalatable forbids; undefined when it has none. */
  base: string | undefined;
}

/**
 * The action ids a policy's action scope names (`==`, `in`), or undefined when the policy is in every
 * slice: its scope is `action` alone, names an action of another entity type, or cannot be read.
 */
export function actionsNamedBy(text: string): Set<string> | undefined {
  let answer: Cedar.PolicyToJsonAnswer;
  try {
    answer = cedar.policyToJson(text);
  } catch {
    return undefined;
  }
  if (answer.type !== 'success') return undefined;
  const scope = answer.json.action;
  // A template slot (`?action` cannot occur in Cedar today, but the type allows it) is in every slice.
  const uids =
    scope.op === 'All'
      ? undefined
      : 'entities' in scope
        ? scope.entities
        : 'entity' in scope
          ? [scope.entity]
          : undefined;
  if (!uids) return undefined;
  const ids = new Set<string>();
  for (const uid of uids) {
    const { type, id } = '__entity' in uid ? uid.__entity : uid;
    if (type !== 'Action') return undefined;
    ids.add(id);
  }
  return ids;
}

/** One stateful Cedar call, normalised: sorted ids, errors as `policyId: message`, failures as errors. */
function evaluate(setId: string, call: Omit<Cedar.StatefulAuthorizationCall, 'preparsedPolicySetId'>): Evaluation {
  let answer: Cedar.AuthorizationAnswer;
  try {
    answer = cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: setId });
  } catch (err) {
    return {
      decision: 'deny',
      reason: [],
      errors: [`cedar: ${err instanceof Error ? err.message : 'evaluation failed'}`],
      erroringPolicies: [],
    };
  }
  if (answer.type === 'failure') {
    const errors = answer.errors.map((e) => `cedar: ${e.message}`);
    return {
      decision: 'deny',
      reason: [],
      errors: errors.length > 0 ? [...new Set(errors)].sort() : ['cedar: evaluation failed'],
      erroringPolicies: [],
    };
  }
  const { decision, diagnostics } = answer.response;
  return {
    decision,
    reason: [...new Set(diagnostics.reason)].sort(),
    errors: [...new Set(diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`))].sort(),
    erroringPolicies: [...new Set(diagnostics.errors.map((e) => e.policyId))].sort(),
  };
}
