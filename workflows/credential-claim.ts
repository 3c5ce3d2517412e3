import { ApplicationFailure, patched } from '@temporalio/workflow';
import { CredentialClaimInput } from '../contracts/credential-claim';
import { ErrorCode } from '../contracts/errors';
import { invalidInputMessage } from '../contracts/issues';
import { VALIDATED_INPUT_PATCH } from '../contracts/patches';

/**
 * A credential's binding to the chain that first presented it. Started (by `authorize`) with a delay
 * that ends after the credential expires; it then completes at once. While it exists, and for the
 * namespace's retention after it completes, its id (derived from the credential's `iss` and `jti`)
 * cannot be started again: that is the binding. The chain id is in its memo and its result.
 */
export async function credentialClaimWorkflow(input: CredentialClaimInput): Promise<string> {
  if (patched(VALIDATED_INPUT_PATCH)) {
    // Any client can start one: a claim that names no chain properly is refused, naming the field.
    const parsed = CredentialClaimInput.safeParse(input);
    if (!parsed.success)
      throw ApplicationFailure.nonRetryable(
        `invalid claim input: ${invalidInputMessage(parsed.error)}`,
        ErrorCode.InvalidInput,
      );
  }
  return input.chainId;
}
