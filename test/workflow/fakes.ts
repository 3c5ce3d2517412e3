import type { GovernorAuthorizeResult } from '../../activities';
import type { Decision } from '../../contracts/decision';
import type { Receipt, ReceiptKind } from '../../contracts/receipt';

/*
 * Stand-ins for what the governor's activities return (signatures, digests and decisions are made up:
 * the workflows only carry them). Each fake records what the workflow asked of it.
 */

/** A 64-digit hex string for `n` (a fake SHA-256). */
export const hex = (n: number): string => n.toString(16).padStart(64, '0');

/** Receipts linked in order, and what each one recorded. */
export class FakeReceipts {
  private seq = 0;
  readonly recorded: { seq: number; stepId?: string; kind: ReceiptKind; payload: unknown }[] = [];

  make(chainId: string, stepId: string | undefined, kind: ReceiptKind, payload: unknown): Receipt {
    const seq = ++this.seq;
    this.recorded.push({ seq, ...(stepId !== undefined ? { stepId } : {}), kind, payload });
    return {
      seq,
      chainId,
      ...(stepId !== undefined ? { stepId } : {}),
      kind,
      digest: hex(seq * 2),
      prevHash: hex(seq - 1),
      hash: hex(seq),
      signature: `fake.receipt-${seq}.signature`,
    };
  }
}

/** A policy decision made "now". */
export function decision(effect: Decision['effect'], extra: Partial<Decision> = {}): Decision {
  return {
    effect,
    determiningPolicies: [],
    annotations: {},
    errors: [],
    bundleDigest: hex(0xb),
    inputDigest: hex(0x1),
    evaluatedAt: new Date().toISOString(),
    ...extra,
  };
}

/** What `authorize` returns for `d` (no coordination: the workflow asks for no slot). */
export function authorized(
  receipt: Receipt,
  d: Decision,
  extra: Partial<GovernorAuthorizeResult> = {},
): GovernorAuthorizeResult {
  return {
    decision: d,
    receipt,
    credentialExpired: false,
    gracePeriod: 0,
    stepDigest: hex(0x5),
    coordinated: false,
    ...extra,
  };
}

/** A string shaped like a compact JWS vote (header `{"alg":"EdDSA","typ":"approval+jwt"}`, as the update validator requires; `name` must be [A-Za-z0-9_-]). */
export const fakeToken = (name: string): string =>
  `eyJhbGciOiJFZERTQSIsInR5cCI6ImFwcHJvdmFsK2p3dCJ9.${name}.c2lnbmF0dXJl`;
