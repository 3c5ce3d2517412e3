/** Credential replay protection: one claim workflow per credential (`iss` + `jti`). Sandbox-safe. */

/** Workflow type of a credential claim. Recorded: never rename. */
export const CREDENTIAL_CLAIM_WORKFLOW_TYPE = 'credentialClaimWorkflow';

/** Prefix of claim workflow ids: `governor-credential:<sha256(iss \n jti), hex>`. */
export const CREDENTIAL_CLAIM_ID_PREFIX = 'governor-credential:';

/** Input of a claim workflow: the chain the credential is bound to. */
export interface CredentialClaimInput {
  chainId: string;
  /** The chain's first run id: a chain id reused later has another one. */
  firstRunId: string;
  iss: string;
  /** The credential's expiry, seconds since the epoch. */
  exp: number;
}
