import { canonicalJson, sha256Hex } from './canonical';
import { refusedInputDigestInput, stepDigestInput, type StepBinding, type StepFacts } from './step';

/* Digests of the protocol's facts (core/step.ts), computed the same way by the worker and the verifier. */

/** sha256 of the canonical step binding (`stepDigestInput`). */
export function stepDigest(chainId: string, a: StepFacts, binding: StepBinding | null): string {
  return sha256Hex(canonicalJson(stepDigestInput(chainId, a, binding)));
}

/** sha256 of what a deny made before policy commits to (`refusedInputDigestInput`). */
export function refusedInputDigest(chainId: string, a: Omit<StepFacts, 'context'>): string {
  return sha256Hex(canonicalJson(refusedInputDigestInput(chainId, a)));
}
