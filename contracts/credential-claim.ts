import { z } from 'zod';

/** Credential replay protection: one claim workflow per credential (`iss` + `jti`). Sandbox-safe. */

/** Workflow type of a credential claim. Recorded: never rename. */
export const CREDENTIAL_CLAIM_WORKFLOW_TYPE = 'credentialClaimWorkflow';

/** Prefix of claim workflow ids: `governor-credential:<sha256(iss \n jti), hex>`. */
export const CREDENTIAL_CLAIM_ID_PREFIX = 'governor-credential:';

/** Input of a claim workflow: the chain the credential is bound to. */
export const CredentialClaimInput = z.strictObject({
  chainId: z.string().min(1).max(128),
  /** The chain's first run id: a chain id reused later has another one. */
  firstRunId: z.string().min(1).max(128),
  iss: z.string().min(1).max(2048),
  /** The credential's expiry, seconds since the epoch. */
  exp: z.number().min(0),
});
export type CredentialClaimInput = z.infer<typeof CredentialClaimInput>;
