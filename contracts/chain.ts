import { z } from 'zod';
import { Receipt } from './receipt';
import { PackedSteps } from './state';

/**
 * The chain contract: the single source of truth for what a service submits. The JSON Schema in
 * `contracts/chain-input.schema.json` is generated from these schemas (`npm run schema`).
 * Changing them changes workflow input: replay-test it.
 */

const MAX_STEPS = 1000;

/** An identifier usable in Cedar entity ids, workflow ids and idempotency keys. */
const Identifier = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/, 'must be 1-128 characters: letters, digits, _ . : @ -');

/** A Cedar type name such as `Environment` or `Db::Table`. */
const CedarTypeName = z
  .string()
  .regex(/^[A-Z][A-Za-z0-9_]*(::[A-Z][A-Za-z0-9_]*)*$/, 'must be a Cedar type name such as Environment');

/**
 * JSON value (what can travel in a Temporal payload and a Cedar context): `z.json()`'s union (the same JSON Schema),
 * with an error that says what is not JSON and where inside the value (a service in another language can send
 * `1e400`, which JavaScript reads as Infinity), never the value itself.
 */
export const JsonValue: z.ZodType<z.core.util.JSONType> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(JsonValue), z.record(z.string(), JsonValue)], {
    error: (issue) => notJsonText(placeOfFailure(issue)),
  }),
);
export type JsonValue = z.infer<typeof JsonValue>;

const JSON_KINDS = 'JSON has strings, finite numbers, booleans, null, arrays and plain objects';
/** Shown of a long place: its first and last segments (as `formatPath` in contracts/limits.ts), and of a key its start. */
const PLACE_HEAD = 10;
const PLACE_TAIL = 2;
const PLACE_KEY_CHARS = 64;

/** Where inside a union's input its failure sits (the segments shown, and how many there are), and what is there. */
interface NotJsonPlace {
  head: string[];
  tail: string[];
  count: number;
  what: string | undefined;
}

/**
 * The place of each failed union, by the identity of its `errors` array (which zod copies into the finalized issue
 * its parent sees). zod finalizes nested unions first, so a parent takes its child's place and adds its own key:
 * constant work a level, never a walk of the value (a walk at every level made a refusal quadratic in depth).
 */
const placeOfUnion = new WeakMap<object, NotJsonPlace>();

function placeOfFailure(issue: { input?: unknown; errors?: unknown }): NotJsonPlace {
  const errors = issue.errors as { path: PropertyKey[]; errors?: object }[][] | undefined;
  const nested = errors?.flat().find((i) => i.path.length > 0);
  let place: NotJsonPlace;
  if (nested === undefined) place = { head: [], tail: [], count: 0, what: nonJsonKind(issue.input) };
  else {
    const child = nested.errors !== undefined ? placeOfUnion.get(nested.errors) : undefined;
    const keys = nested.path.filter((k) => typeof k !== 'symbol').map(shownKey);
    place = {
      head: [...keys, ...(child?.head ?? [])].slice(0, PLACE_HEAD),
      tail: [...keys, ...(child?.tail ?? [])].slice(-PLACE_TAIL),
      count: keys.length + (child?.count ?? 0),
      what: child?.what,
    };
  }
  if (errors !== undefined) placeOfUnion.set(errors, place);
  return place;
}

function shownKey(key: string | number): string {
  if (key === '') return '""';
  const text = String(key);
  return text.length > PLACE_KEY_CHARS ? `${text.slice(0, PLACE_KEY_CHARS)}…` : text;
}

function notJsonText(place: NotJsonPlace): string {
  if (place.what === undefined) return `not a JSON value (${JSON_KINDS})`;
  let where = 'it';
  if (place.count > PLACE_HEAD + PLACE_TAIL)
    where = `${place.head.join('.')}.…(${(place.count - PLACE_HEAD - PLACE_TAIL).toLocaleString('en-US')} more).${place.tail.join('.')}`;
  else if (place.count > 0)
    where = [...place.head, ...place.tail.slice(place.tail.length - (place.count - place.head.length))].join('.');
  return `not a JSON value: ${where} is ${place.what} (${JSON_KINDS})`;
}

/** "not a JSON value: a.b is a non-finite number (JSON has …)": what sits at `place` inside `value`, when it is not JSON. */
export function notJsonMessage(value: unknown, place: readonly (string | number)[] = []): string {
  let at: unknown = value;
  for (const key of place) at = (at as Record<string | number, unknown> | undefined)?.[key];
  const keys = place.map(shownKey);
  return notJsonText({
    head: keys.slice(0, PLACE_HEAD),
    tail: keys.slice(-PLACE_TAIL),
    count: keys.length,
    what: nonJsonKind(at),
  });
}

/** What a value is when it is not JSON at its own level (its members are not looked at); undefined when it is. */
function nonJsonKind(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : 'a non-finite number';
    case 'undefined':
      return 'undefined';
    case 'object': {
      if (value === null || Array.isArray(value)) return undefined;
      let proto: unknown;
      try {
        proto = Object.getPrototypeOf(value);
      } catch {
        return 'an object that cannot be inspected';
      }
      return proto === Object.prototype || proto === null ? undefined : 'an object that is not a plain object';
    }
    default:
      return `a ${typeof value}`;
  }
}

const JsonRecord = z.record(z.string(), JsonValue);

export const ResourceRef = z.strictObject({
  type: CedarTypeName,
  id: z.string().min(1).max(256),
});
export type ResourceRef = z.infer<typeof ResourceRef>;

export const NoopExecutor = z.strictObject({
  type: z.literal('noop'),
});

export const HttpExecutor = z.strictObject({
  type: z.literal('http'),
  method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).default('POST'),
  url: z.url({ protocol: /^https?$/ }),
  headers: z.record(z.string(), z.string().max(4096)).optional(),
  body: JsonValue.optional(),
  timeoutMs: z.int().min(100).max(120_000).default(10_000),
});

export const ActivityExecutor = z.strictObject({
  type: z.literal('activity'),
  /** The service's own task queue: the governor never holds the service's credentials. */
  taskQueue: z.string().min(1).max(200),
  activityType: z.string().min(1).max(200),
  timeoutMs: z.int().min(100).max(3_600_000).default(60_000),
  /** Heartbeat timeout: a long activity that heartbeats learns promptly that its step was revoked. */
  heartbeatTimeoutMs: z.int().min(100).max(3_600_000).optional(),
});

/**
 * A tool of an upstream MCP server, called by the MCP gateway (`governor mcp`) that holds the upstream
 * connection: an activity `mcpToolCall` on the gateway's own task queue, attempted once (an MCP tool
 * call carries no idempotency key, so the governor never repeats it; SECURITY.md).
 */
export const McpExecutor = z.strictObject({
  type: z.literal('mcp'),
  /** The gateway's own task queue: the governor worker never holds the upstream connections. */
  taskQueue: z.string().min(1).max(200),
  /** The upstream's name in the gateway's configuration. */
  server: z.string().min(1).max(128),
  /** The upstream's own tool name (without the gateway's prefix). */
  tool: z.string().min(1).max(128),
  timeoutMs: z.int().min(100).max(3_600_000).default(60_000),
});

export const Executor = z.discriminatedUnion('type', [NoopExecutor, HttpExecutor, ActivityExecutor, McpExecutor]);
export type Executor = z.infer<typeof Executor>;

export const Compensation = z.strictObject({
  action: Identifier,
  resource: ResourceRef.optional(),
  input: JsonRecord.default({}),
  context: JsonRecord.default({}),
  executor: Executor,
});
export type Compensation = z.infer<typeof Compensation>;

export const Step = z.strictObject({
  id: Identifier,
  action: Identifier,
  resource: ResourceRef,
  input: JsonRecord.default({}),
  context: JsonRecord.default({}),
  executor: Executor,
  compensation: Compensation.optional(),
  /** For steps on a coordinated resource: ordering priority and the resource version the step was planned against. */
  coordination: z
    .strictObject({
      priority: z.int().min(-1000).max(1000).optional(),
      plannedVersion: z.int().min(0).optional(),
    })
    .optional(),
});
export type Step = z.infer<typeof Step>;

export const Chain = z
  .strictObject({
    /** The workload that submits the chain; `Workload::"<workload>"` in policy. */
    workload: Identifier,
    /** The workload's declared owner (a person or team); never allowed to approve its steps. */
    owner: Identifier.optional(),
    summary: z.string().max(400).optional(),
    steps: z.array(Step).min(1).max(MAX_STEPS),
  })
  .superRefine((chain, ctx) => {
    // zod runs this even when an id failed its own pattern: name the first use, never echo the value.
    const seen = new Map<string, number>();
    chain.steps.forEach((step, i) => {
      const first = seen.get(step.id);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'id'],
          message: `duplicate step id (same as steps.${first}.id)`,
        });
      } else {
        seen.set(step.id, i);
      }
    });
  });
export type Chain = z.infer<typeof Chain>;

/** Input of `governedChainWorkflow`. Other SDKs send exactly this object as the single argument. */
export const GovernedChainInput = z.strictObject({
  chainId: Identifier,
  chain: Chain,
  /** The workload's JWT credential (JWT-SVID shape). */
  credential: z.string().min(1).max(16_384),
  /** A signed attestation (JWT) about the workload's runtime. */
  attestation: z.string().min(1).max(16_384),
  options: z
    .strictObject({
      /** Continue-as-new after this many steps (default: when Temporal suggests it). */
      continueAsNewAfterSteps: z.int().min(1).max(MAX_STEPS).optional(),
    })
    .optional(),
  /** Set by the workflow itself when it continues as new; services never send it. */
  resume: z
    .strictObject({
      nextStep: z.int().min(0),
      head: z.strictObject({ seq: z.int().min(0), hash: z.string() }),
      /** Step states so far (status query shape); empty when they travel packed (`packedSteps`). */
      steps: z.array(z.record(z.string(), z.unknown())),
      /** The step states so far, packed (runs with the lean-chain patch): the same states, fewer bytes. */
      packedSteps: PackedSteps.optional(),
      /** Ids of completed steps, oldest first (for compensation). */
      completed: z.array(z.string()),
      policyDigest: z.string().optional(),
      breakGlass: z.boolean().optional(),
      runs: z.int().min(2),
      /**
       * The signed checkpoint receipt the previous run recorded before continuing as new; its hash is
       * `head`. The workflow refuses a `resume` without one, or whose signature, chain, first run or
       * position does not verify with the governor's receipt key.
       */
      checkpoint: Receipt.optional(),
    })
    .optional(),
});
export type GovernedChainInput = z.infer<typeof GovernedChainInput>;

/** Formats zod issues as one line per issue, naming the field and never echoing the raw value. */
export function formatIssues(error: z.ZodError, prefix = ''): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.');
      return `${path || '(root)'}: ${issue.message}`;
    })
    .join('\n');
}
