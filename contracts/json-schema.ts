import { z } from 'zod';
import { ApprovalSubmission, SubmitApprovalResult } from './approval';
import { GovernedChainInput, JsonValue } from './chain';
import { ApprovalClaims, AttestationClaims, CredentialClaims, TOKEN_HEADER_RULES } from './identity-claims';
import { ChainResult, ChainState } from './state';
import { ProposeOutcome, ProposeStepInput } from './session';
import { DecisionLogLine } from './decision-log';

/**
 * The published JSON Schemas (draft 2020-12), generated from the zod schemas the governor itself
 * parses with, so services in other languages validate exactly what the governor accepts and returns.
 * `npm run schema` writes them to `contracts/<file>`; test/unit/json-schema.test.ts checks the
 * committed files are what this generates.
 */

const ID_BASE = 'https://temporal-governor.dev/schemas/';

/** One published schema: its file, the zod schema, and the words JSON Schema cannot say. */
export interface PublishedSchema {
  /** File name under `contracts/`. */
  file: string;
  title: string;
  description: string;
  schema: z.ZodType;
  /** `input`: what a caller sends (defaults optional); `output`: what the governor returns. */
  io: 'input' | 'output';
  /** Extra descriptions by JSON pointer into the generated schema (the pointer must exist). */
  describe?: Record<string, string>;
}

const EXECUTOR_OPTIONS = '/properties/chain/properties/steps/items/properties/executor/oneOf';
const STEP = '/properties/chain/properties/steps/items';

export const PUBLISHED_SCHEMAS: readonly PublishedSchema[] = [
  {
    file: 'chain-input.schema.json',
    title: 'governedChainWorkflow input',
    io: 'input',
    schema: GovernedChainInput,
    description:
      'The single argument of the governedChainWorkflow workflow type (task queue "governor" by default). The workflow parses it itself, ' +
      'with the zod schemas this file is generated from (contracts/chain.ts, `npm run schema`), and applies the defaults shown here. ' +
      'Any invalid input ends the run at once: a non-retryable ApplicationFailure of type GOVERNOR_INVALID_INPUT whose message lists each problem as ' +
      '`<path>: <message>` joined by "; " (paths like `chain.steps[0].resource`, `(root)` for the object itself), search attribute GovernorStatus = "Rejected", ' +
      'nothing authorized or executed. Rules this schema cannot express, enforced the same way: `chainId` equals the workflow id; step ids are unique within ' +
      '`chain.steps`; `resume` is written only by the workflow itself when it continues as new and is refused in any run a client starts. ' +
      'The credential and attestation are verified at every step (credential-claims.schema.json, attestation-claims.schema.json).',
    describe: {
      '/properties/chainId':
        'The chain id: must equal the workflow id the chain is started with (GOVERNOR_INVALID_INPUT at path `chainId` otherwise).',
      '/properties/chain/properties/workload':
        'The workload submitting the chain (`Workload::"<workload>"` in policy): must equal the credential\'s `sub`.',
      '/properties/chain/properties/owner':
        "The workload's declared owner (a person or team); never allowed to approve the chain's steps.",
      '/properties/chain/properties/steps':
        'The steps, run in order. Step ids must be unique within the chain (not expressible here; GOVERNOR_INVALID_INPUT at `chain.steps[i].id`).',
      [`${STEP}/properties/id`]: 'Unique within the chain; the idempotency key of the step is `<chainId>/<id>`.',
      [`${STEP}/properties/context`]:
        'Facts for policy (`context` in Cedar). Keys `attestation`, `approvals` and `now` are reserved: filled only from verified sources.',
      [`${EXECUTOR_OPTIONS}/1/properties/url`]:
        "http or https only; the host must also be in the manifest's `http.allowedHosts`, or the step fails with GOVERNOR_HOST_NOT_ALLOWED.",
      '/properties/credential':
        "The workload's credential: a JWT-SVID (claims: credential-claims.schema.json). A fresh one per chain: under the default `credential.jtiReplay: bind-to-chain` its `jti` belongs to the first chain that presents it.",
      '/properties/attestation':
        "A signed attestation of the workload's runtime (typ attestation+jwt; claims: attestation-claims.schema.json).",
      '/properties/resume':
        'Written only by the workflow itself when it continues as new (checked against the signed checkpoint of the run it continues). Never send it: in a run a client starts it is refused with GOVERNOR_INVALID_INPUT at path `resume`.',
    },
  },
  {
    file: 'chain-state.schema.json',
    title: 'governedChainWorkflow status query result',
    io: 'output',
    schema: ChainState,
    description:
      'What the `status` query of governedChainWorkflow returns (contracts/state.ts): every step with its decision, approval and outcome, and what the chain waits for. ' +
      'Fields are only ever added, never renamed or removed: a client should ignore fields it does not know.',
  },
  {
    file: 'chain-result.schema.json',
    title: 'governedChainWorkflow result',
    io: 'output',
    schema: ChainResult,
    description:
      'The result of governedChainWorkflow (contracts/state.ts): status Completed, Denied, Failed or Revoked. A rejected input (GovernorStatus "Rejected") ' +
      'returns no result: the run fails with ApplicationFailure type GOVERNOR_INVALID_INPUT. Fields are only ever added: ignore fields you do not know.',
  },
  {
    file: 'submit-approval-input.schema.json',
    title: 'submitApproval update input (also the approve / deny signal payload)',
    io: 'input',
    schema: ApprovalSubmission,
    description:
      "The argument of the `submitApproval` update and of the `approve` / `deny` signals (contracts/approval.ts): an approver's signed vote " +
      "(claims: approval-claims.schema.json). The update's validator rejects anything else before it reaches history (GOVERNOR_INVALID_INPUT); a malformed signal is ignored.",
  },
  {
    file: 'submit-approval-result.schema.json',
    title: 'submitApproval update result',
    io: 'output',
    schema: SubmitApprovalResult,
    description:
      'What the `submitApproval` update returns (contracts/approval.ts): the verdict on this vote (counted, or rejected with its reason) and the approval state ' +
      'after it (`approval.outcome` is `approved` once the vote completed the quorum). Fields are only ever added: ignore fields you do not know.',
  },
  {
    file: 'propose-step-input.schema.json',
    title: 'proposeStep update input (agent sessions)',
    io: 'input',
    schema: ProposeStepInput,
    description:
      'The argument of the `proposeStep` update of a `governedSessionWorkflow` (contracts/session.ts, DESIGN §9): one step, with exactly the schema of a declared step ' +
      "(chain-input.schema.json), and the agent's current credential (and optionally a fresh attestation). The update's validator refuses, before anything reaches history, " +
      'a malformed proposal, a step id the session already holds, a step whose `context.session` is set (the governor fills it with the session summary), a credential whose ' +
      "`sub` is not the session's workload, and any proposal once the session is closed or revoked (GOVERNOR_INVALID_INPUT, naming the field). The credential and attestation " +
      'are then verified before the step is governed; a proposal that fails is refused and changes nothing.',
  },
  {
    file: 'propose-outcome.schema.json',
    title: 'proposeStep / awaitStep update result (agent sessions)',
    io: 'output',
    schema: ProposeOutcome,
    description:
      'What the `proposeStep` and `awaitStep` updates return (contracts/session.ts): `executed` with the output (bounded by the manifest `session.maxOutputBytes`; ' +
      '`outputOmitted` says why it is absent), the SHA-256 of its canonical JSON and the hash of the execution receipt; `denied` with the reason and determining policies; ' +
      '`awaiting-approval` (then `awaitStep` waits for the final outcome); or `failed` (the executor failed). Fields are only ever added: ignore fields you do not know.',
  },
  {
    file: 'credential-claims.schema.json',
    title: 'Workload credential claims (JWT-SVID payload)',
    io: 'input',
    schema: CredentialClaims,
    description:
      'The payload of the `credential` a workload identity provider (SPIFFE/SPIRE, cloud IAM) must issue, as identity/verify.ts and the authorize activity check it ' +
      '(contracts/identity-claims.ts). Beyond this schema: signed by a key of a trusted issuer (manifest `trustedIssuers`) whose `issuer` equals `iss`; `aud` contains that ' +
      "issuer's `audience`; not expired and `iat` not in the future (manifest `credential.clockToleranceSeconds`, at most 5 s); `sub` equals the chain's `workload`; `jti` not yet " +
      'bound to another chain. Header `typ` absent, `JWT` or `JOSE`. ' +
      TOKEN_HEADER_RULES,
  },
  {
    file: 'attestation-claims.schema.json',
    title: 'Workload attestation claims',
    io: 'input',
    schema: AttestationClaims,
    description:
      'The payload of the `attestation` an attester must issue (contracts/identity-claims.ts). Beyond this schema: signed by a trusted attester (manifest `trustedAttesters`) ' +
      "whose `issuer` equals `iss`; `sub` equals the credential's `sub`; `iat` at most the attester's `maxAge` (default 15m) old and not in the future; `exp`, when present, not passed. " +
      'Header `typ` must be `attestation+jwt`. ' +
      TOKEN_HEADER_RULES,
  },
  {
    file: 'approval-claims.schema.json',
    title: 'Approval vote claims',
    io: 'input',
    schema: ApprovalClaims,
    description:
      'The payload of an approver\'s vote, sent as `{ "token": "<JWT>" }` by the `approve` / `deny` signals or the `submitApproval` update (contracts/identity-claims.ts). ' +
      'Beyond this schema: signed by a trusted approver (manifest `trustedApprovers`; none configured means every vote is rejected) whose `issuer` equals `iss`; `aud` contains its ' +
      '`audience` (default `temporal-governor-approval`); not expired, `iat` not in the future; `chainId`, `stepId` and `stepDigest` name the step awaiting approval as the ' +
      '`status` query shows it; `sub` is neither the workload nor its owner; at least one of `roles` is eligible. Header `typ` must be `approval+jwt`. ' +
      TOKEN_HEADER_RULES,
  },
  {
    file: 'decision-log-line.schema.json',
    title: 'decision log line',
    io: 'output',
    schema: DecisionLogLine,
    description:
      "One line of the governor's decision log (`governor worker --decision-log <file>` or `--decision-log-url <url>`): every decision a worker signs, " +
      'as one JSON object per line (contracts/decision-log.ts). Identifiers and outcomes only: never a token, step input or context value. ' +
      'Losing the log never changes a decision. Fields are only ever added, never renamed or removed: a reader should ignore fields it does not know.',
  },
];

/** The JSON Schema of one published schema, with its `$id`, title, description and extra descriptions. */
export function publishedJsonSchema(published: PublishedSchema): Record<string, unknown> {
  const metadata = z.registry<{ id: string }>();
  metadata.add(JsonValue, { id: 'JsonValue' });
  const override = (ctx: { zodSchema: unknown; jsonSchema: Record<string, unknown> }): void => {
    // A custom registry replaces the global one: keep the descriptions written with `.describe()`.
    const description = z.globalRegistry.get(ctx.zodSchema as z.ZodType)?.description;
    if (description !== undefined) ctx.jsonSchema.description = description;
    httpUrlPattern(ctx);
  };
  const generated = z.toJSONSchema(published.schema, {
    io: published.io,
    unrepresentable: 'throw',
    metadata,
    override,
  }) as Record<string, unknown>;
  const { $schema, ...rest } = generated;
  const schema: Record<string, unknown> = {
    $schema,
    $id: `${ID_BASE}${published.file}`,
    title: published.title,
    description: published.description,
    ...rest,
  };
  for (const [pointer, description] of Object.entries(published.describe ?? {}))
    at(schema, pointer).description = description;
  if (published.file === 'chain-input.schema.json') at(schema, '/properties/resume').readOnly = true;
  return schema;
}

/** The committed file's text (stable key order, trailing newline). */
export function publishedJsonSchemaText(published: PublishedSchema): string {
  return `${JSON.stringify(publishedJsonSchema(published), null, 2)}\n`;
}

/** The published schema written to `contracts/<file>`. */
export function publishedSchema(file: string): PublishedSchema {
  const found = PUBLISHED_SCHEMAS.find((p) => p.file === file);
  if (!found) throw new Error(`no published schema ${file}`);
  return found;
}

/** The JSON Schema of `governedChainWorkflow`'s input. */
export function chainInputJsonSchema(): Record<string, unknown> {
  return publishedJsonSchema(publishedSchema('chain-input.schema.json'));
}

/** The committed text of `contracts/chain-input.schema.json`. */
export function chainInputJsonSchemaText(): string {
  return publishedJsonSchemaText(publishedSchema('chain-input.schema.json'));
}

/**
 * zod's URL check with `protocol: /^https?$/` has no JSON Schema keyword of its own: state it as a
 * pattern (zod also requires the `scheme://` form). Any other protocol rule would be silently lost: refuse.
 */
function httpUrlPattern(ctx: { zodSchema: unknown; jsonSchema: Record<string, unknown> }): void {
  const def = (ctx.zodSchema as { _zod?: { def?: { format?: string; protocol?: RegExp } } })._zod?.def;
  if (def?.format !== 'url' || def.protocol === undefined) return;
  if (def.protocol.source !== '^https?$')
    throw new Error(`URL protocol rule /${def.protocol.source}/ has no JSON Schema translation: add one`);
  ctx.jsonSchema.pattern = '^[Hh][Tt][Tt][Pp][Ss]?://';
}

/** The object at a JSON pointer (`/properties/chain`), which must exist. */
function at(schema: Record<string, unknown>, pointer: string): Record<string, unknown> {
  let node: unknown = schema;
  for (const key of pointer.split('/').slice(1)) {
    node = (node as Record<string, unknown> | undefined)?.[key];
    if (typeof node !== 'object' || node === null)
      throw new Error(`JSON pointer ${pointer} names nothing in the generated schema`);
  }
  return node as Record<string, unknown>;
}
