import { z } from 'zod';
import { DURATION_PATTERN, durationMs } from '../contracts/duration';
import { Coordination } from '../contracts/coordination';
import { HttpSection } from './http-allow';

/**
 * The governance manifest (`manifest.yaml` of a policy bundle). Strict: an unknown key is an error,
 * so a typo never silently weakens governance.
 */

/** A JWKS source: inline keys, a file (relative paths resolve against GOVERNOR_HOME), or an https URL. */
export const JwksSource = z
  .strictObject({
    file: z.string().min(1).optional(),
    uri: z.url({ protocol: /^https?$/ }).optional(),
    keys: z.array(z.record(z.string(), z.unknown())).optional(),
  })
  .refine((s) => [s.file, s.uri, s.keys].filter((v) => v !== undefined).length === 1, {
    message: 'exactly one of file, uri or keys is required',
  });
export type JwksSource = z.infer<typeof JwksSource>;

const Algorithm = z.enum([
  'EdDSA',
  'Ed25519',
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
]);

/** Duration such as `90s`, `30m`, `2h`, `1d`. */
export const Duration = z.string().regex(DURATION_PATTERN, 'must be a duration such as 30s, 30m, 2h');

export const TrustedIssuer = z.strictObject({
  issuer: z.string().min(1),
  audience: z.string().min(1),
  jwks: JwksSource,
  algorithms: z.array(Algorithm).min(1).default(['EdDSA', 'ES256']),
});
export type TrustedIssuer = z.infer<typeof TrustedIssuer>;

export const TrustedAttester = z.strictObject({
  issuer: z.string().min(1),
  jwks: JwksSource,
  algorithms: z.array(Algorithm).min(1).default(['EdDSA', 'ES256']),
  maxAge: Duration.default('15m'),
});
export type TrustedAttester = z.infer<typeof TrustedAttester>;

/**
 * A trusted signer of approval votes (human approvers' JWTs, `typ: approval+jwt`). None configured means no vote
 * can ever verify, so every escalation is denied at its deadline: fail closed.
 */
export const TrustedApprover = z.strictObject({
  issuer: z.string().min(1),
  audience: z.string().min(1).default('temporal-governor-approval'),
  jwks: JwksSource,
  algorithms: z.array(Algorithm).min(1).default(['EdDSA', 'ES256']),
});
export type TrustedApprover = z.infer<typeof TrustedApprover>;

/** One rung of the escalation ladder: once `after` has elapsed since escalation, `roles` also become eligible. */
export const ApprovalLadderStep = z.strictObject({
  after: Duration,
  roles: z.array(z.string().min(1)).min(1),
});
export type ApprovalLadderStep = z.infer<typeof ApprovalLadderStep>;

/** `{name}`: a tool argument the mapping places into a template. */
const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
/** `Type::"<template>"`: the resource of a mapped tool call. */
export const RESOURCE_TEMPLATE = /^([A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*)::"([^"\\]*)"$/;

/** A string template: literal text and `{argument}` placeholders, nothing else in braces. */
const Template = z
  .string()
  .min(1)
  .max(512)
  .refine((t) => !/[{}]/.test(t.replace(PLACEHOLDER, '')), 'braces only around an argument name, as in {path}');

/**
 * How the MCP gateway maps one tool's calls to a governed step: the action, the resource
 * (`File::"{path}"`), and context attributes (`path: "{path}"`) filled from the call's string arguments.
 */
export const McpToolRule = z.strictObject({
  action: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/, 'must be 1-128 characters: letters, digits, _ . : @ -'),
  resource: Template.refine((t) => RESOURCE_TEMPLATE.test(t), 'must look like Type::"{argument}"'),
  context: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an identifier'), Template).default({}),
});
export type McpToolRule = z.infer<typeof McpToolRule>;

/** The argument names a template places, in order. */
export function templateArguments(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!);
}

export const ApproverRole = z.strictObject({
  description: z.string().optional(),
});

/**
 * The approval inbox's sign-in (`governor inbox`, DESIGN §10): OpenID Connect authorization code + PKCE
 * against the organisation's IdP. Roles come from an ID-token claim mapped here; the client secret is
 * never written in the manifest, only the environment variable that holds it.
 */
export const InboxOidc = z.strictObject({
  /** The IdP's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`); http only on loopback. */
  issuer: z.url({ protocol: /^https?$/ }),
  clientId: z.string().min(1).max(256),
  /** Environment variable holding the client secret (a public client with PKCE only when absent). */
  clientSecretEnv: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name')
    .optional(),
  /** Where the IdP sends the browser back: `<inbox URL>/auth/callback`. */
  redirectUri: z.url({ protocol: /^https?$/ }),
  scopes: z.array(z.string().min(1)).min(1).default(['openid', 'profile', 'email']),
  /** The ID-token claim that names the approver (the vote's `sub`; separation of duties compares it). */
  approverClaim: z.string().min(1).default('sub'),
  /** The ID-token claim holding the person's groups (a string or a list of strings). */
  rolesClaim: z.string().min(1).default('groups'),
  /** Claim value → governor roles. A value not listed grants nothing. */
  roleMap: z.record(z.string().min(1), z.array(z.string().min(1).max(64)).min(1)).default({}),
});
export type InboxOidc = z.infer<typeof InboxOidc>;

/** The approval inbox: its IdP (none: development sign-in, refused when NODE_ENV=production) and the vote signer. */
export const InboxSection = z.strictObject({
  oidc: InboxOidc.optional(),
  /** `iss` of the votes the inbox signs with `<home>/keys/approver.private.jwk.json`: one of `trustedApprovers`. */
  approverIssuer: z.string().min(1).optional(),
  /** How long a signed-in session lasts. */
  sessionTtl: Duration.default('8h'),
});
export type InboxSection = z.infer<typeof InboxSection>;

export const Manifest = z.strictObject({
  version: z.literal(1),
  name: z.string().min(1),
  trustedIssuers: z.array(TrustedIssuer).min(1),
  trustedAttesters: z.array(TrustedAttester).min(1),
  /** Signers of approval votes; default none (no vote verifies, escalations deny at their deadline). */
  trustedApprovers: z.array(TrustedApprover).default([]),
  credential: z
    .strictObject({
      /** How long a chain waits for a refreshed credential before it is denied. */
      gracePeriod: Duration.default('5m'),
      /** Largest token accepted, checked before parsing. */
      maxTokenBytes: z.int().min(512).max(65_536).default(8192),
      /**
       * The maximum clock skew allowed between the governor and token signers, at most 5 s: how far
       * `exp` may lie behind and `nbf`/`iat` ahead of the governor's clock, for credentials,
       * attestations and approval votes alike.
       */
      clockToleranceSeconds: z.int().min(0).max(5).default(5),
      /**
       * Longest credential accepted: `exp - iat` at most this (1m to 30d, default 24h). With `iat` required
       * and never ahead of the clock by more than the skew, no credential is valid for longer than this
       * from now, and nothing the governor schedules for a credential (its replay claim) lies further out.
       */
      maxLifetime: Duration.refine(
        (d) => !DURATION_PATTERN.test(d) || (durationMs(d) >= 60_000 && durationMs(d) <= 30 * 86_400_000),
        'must be between 1m and 30d',
      ).default('24h'),
      /**
       * Replay protection. `bind-to-chain` (default): a credential must carry a `jti`, and the first
       * chain that presents it owns it; any other chain presenting it is denied as a replay.
       * `allow`: a credential may be presented by any number of chains until it expires.
       */
      jtiReplay: z.enum(['bind-to-chain', 'allow']).default('bind-to-chain'),
    })
    .prefault({}),
  approverRoles: z.record(z.string(), ApproverRole).default({}),
  approvals: z
    .strictObject({
      defaultDeadline: Duration.default('30m'),
      defaultQuorum: z.int().min(1).default(1),
      breakGlassRole: z.string().optional(),
      /** Escalation ladder; absent means no ladder (treat as `[]`). */
      ladder: z.array(ApprovalLadderStep).optional(),
    })
    .prefault({}),
  /** What the built-in http executor may call: exact origins or URL prefixes (schema in policies/http-allow.ts). Default: nothing. */
  http: HttpSection.prefault({}),
  /** Declared owners of workloads: an owner may never approve its workload's steps. */
  owners: z.record(z.string(), z.string()).default({}),
  /** Coordination domains and authority ranks (schema in contracts/coordination.ts); default: none. */
  coordination: Coordination.prefault({}),
  /** Agent sessions (DESIGN §9): how long a session may stay idle, and the largest step output it returns. */
  session: z
    .strictObject({
      /** A session with no proposal for this long closes (with its final signed checkpoint). */
      idleTimeout: Duration.default('30m'),
      /** Largest step output (canonical JSON bytes) recorded in the session and returned to the agent. */
      maxOutputBytes: z.int().min(0).max(1_048_576).default(65_536),
    })
    .prefault({}),
  /**
   * The MCP gateway (`governor mcp`): a rule per tool name (`read_file`) or per upstream and tool
   * (`fs/read_file`, which wins). A tool without a rule is never called: the gateway refuses it.
   */
  mcp: z.strictObject({ tools: z.record(z.string().min(1).max(257), McpToolRule).default({}) }).prefault({}),
  /** The approval inbox (`governor inbox`): OIDC sign-in; absent means development sign-in only. */
  inbox: InboxSection.optional(),
});
export type Manifest = z.infer<typeof Manifest>;

/** Parses a duration (`30m`) to milliseconds (shared with the sandbox-safe contracts). */
export { durationMs } from '../contracts/duration';
