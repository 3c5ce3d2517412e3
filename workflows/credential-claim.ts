import type { CredentialClaimInput } from '../contracts/credential-claim';

/**
 * A credential's binding to the chain that first presented it. Started (by `authorize`) with a delay
 * that ends after the credential expires; it then completes at once. While it exists, and for the
 * namespace's retention after it completes, its id (derived from the credential's `iss` and `jti`)
 * cannot be started again: that is the binding. The chain id is in its memo and its result.
 */
export async function credentialClaimWorkflow(input: CredentialClaimInput): Promise<string> {
  return input.chainId;
}
