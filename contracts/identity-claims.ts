import { z } from 'zod';

/**
 * The claims a real identity provider, attester and approval service must issue: the payloads of the
 * three signed tokens the governor accepts. They state what `identity/verify.ts` enforces
 * (test/unit/json-schema.test.ts signs tokens on both sides of every bound and checks both agree);
 * published as JSON Schemas by `npm run schema`. Sandbox-safe.
 *
 * Claims not listed here are allowed and ignored. What no schema can say (signatures, trusted issuers,
 * audiences and clocks) is in each schema's description and in SECURITY.md.
 */

/** A string claim `verify.ts` reads: non-empty, at most 1024 characters. */
const ClaimText = z.string().min(1).max(1024);
/** `iss`: compared with the manifest's trusted signers (exact string). */
const Issuer = z.string().min(1);
/** A NumericDate (RFC 7519): seconds since the epoch. */
const NumericDate = z.number();
/** `reason` / `justification` of a vote: at most 1000 characters. */
const Note = z.string().max(1000);
/** An OCI content digest such as `sha256:<64 hex>`. */
export const OCI_DIGEST_PATTERN = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

/** Payload of a workload credential (SPIFFE JWT-SVID shape). */
export const CredentialClaims = z.looseObject({
  iss: Issuer.describe("A trusted issuer of the active bundle's manifest (`trustedIssuers[].issuer`)."),
  sub: ClaimText.describe('The workload: must equal the chain\'s `workload` (`Workload::"<sub>"` in policy).'),
  aud: z
    .union([z.string(), z.array(z.string()).min(1)])
    .describe("Must contain the trusted issuer's `audience` (default bundle: `temporal-governor`)."),
  exp: NumericDate.describe(
    'Expiry; a chain waits up to `credential.gracePeriod` for a refreshed credential after it.',
  ),
  iat: NumericDate.describe('Issued at; not in the future (beyond `credential.clockToleranceSeconds`).'),
  nbf: NumericDate.optional().describe('Not before (optional).'),
  jti: ClaimText.describe(
    'Unique per credential: the first chain that presents it owns it (`credential.jtiReplay: bind-to-chain`, the default).',
  ),
});
export type CredentialClaims = z.infer<typeof CredentialClaims>;

/** Payload of a runtime attestation (`typ: attestation+jwt`). */
export const AttestationClaims = z.looseObject({
  iss: Issuer.describe('A trusted attester of the manifest (`trustedAttesters[].issuer`).'),
  sub: ClaimText.describe("The attested workload: must equal the credential's `sub`."),
  iat: NumericDate.describe(
    "Issued at: at most the attester's `maxAge` (default 15m) before the check, not in the future.",
  ),
  exp: NumericDate.optional(),
  nbf: NumericDate.optional(),
  imageDigest: ClaimText.regex(OCI_DIGEST_PATTERN).describe(
    'The running image, e.g. `sha256:<64 hex>` (`context.attestation.imageDigest` in policy).',
  ),
  trustZone: ClaimText.describe(
    '`context.attestation.trustZone` in policy (the default bundle forbids every action unless it is `trusted`).',
  ),
  environment: ClaimText.describe('`context.attestation.environment` in policy.'),
});
export type AttestationClaims = z.infer<typeof AttestationClaims>;

/** Payload of an approver's vote (`typ: approval+jwt`), sent as `{ "token": "<JWT>" }`. */
export const ApprovalClaims = z.looseObject({
  iss: Issuer.describe('A trusted approver of the manifest (`trustedApprovers[].issuer`).'),
  sub: ClaimText.describe(
    'The approver (a person): never the requesting workload nor its owner; counted once per step.',
  ),
  aud: z
    .union([z.string(), z.array(z.string()).min(1)])
    .describe("Must contain the trusted approver's `audience` (default `temporal-governor-approval`)."),
  exp: NumericDate,
  iat: NumericDate,
  nbf: NumericDate.optional(),
  jti: ClaimText,
  roles: z
    .array(z.string().min(1).max(64))
    .min(1)
    .max(32)
    .describe("The approver's roles; at least one must be eligible for the step (policy roles, or the ladder's)."),
  chainId: ClaimText.describe('The chain (workflow id) the vote is for.'),
  stepId: ClaimText.describe('The step awaiting approval (`status` query: `steps[].approval.stepId`).'),
  stepDigest: ClaimText.describe(
    'The exact step version the vote approves (`status` query: `steps[].approval.stepDigest`).',
  ),
  decision: z.enum(['approve', 'deny']),
  reason: Note.optional(),
  justification: Note.optional().describe(
    "Required, 10+ characters, with a break-glass vote (the manifest's `approvals.breakGlassRole`).",
  ),
  idp: z
    .looseObject({ iss: ClaimText, sub: ClaimText })
    .optional()
    .describe(
      'Who signed in at the identity provider the vote came through (the approval inbox): its issuer and subject, recorded in the verdict and its receipt.',
    ),
});
export type ApprovalClaims = z.infer<typeof ApprovalClaims>;

/**
 * The vote itself, as an approver signs it: the part of `ApprovalClaims` beyond the registered claims.
 * The issued claims, `issueApproval`'s options and a verified vote (identity/) all derive from it.
 */
export type ApprovalVote = Pick<
  ApprovalClaims,
  'sub' | 'roles' | 'chainId' | 'stepId' | 'stepDigest' | 'decision' | 'reason' | 'justification' | 'idp'
>;

/** JOSE header rules shared by the three tokens (stated in the schemas' descriptions). */
export const TOKEN_HEADER_RULES =
  'Header: compact JWS signed with an asymmetric algorithm the trusted signer allows (manifest `algorithms`, default EdDSA or ES256) by a key in its JWKS, ' +
  'selected by `kid`; no `jku`, `x5u`, `jwk`, `x5c` or `crit`; at most `credential.maxTokenBytes` (default 8192) bytes.';
