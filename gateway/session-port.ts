import type { Step } from '../contracts/chain';
import { ErrorCode, GovernorError } from '../contracts/errors';
import type { ChainResult } from '../contracts/state';
import type { GovernorClient } from '../sdk/client';

/**
 * What the MCP gateway needs from a governor: the four session operations of `GovernorClient`
 * (issue 16 item 1, `contracts/session.ts`). The gateway depends on this port only, so its mapping and
 * error paths are tested with a fake, and `governorSessionPort` adapts the real client.
 */

/** How a proposed step ended (or that it waits for approvers). Mirrors `contracts/session.ts`. */
export type ProposeOutcome =
  | { outcome: 'executed'; stepId: string; output?: unknown; outputDigest: string; receiptHash: string }
  | { outcome: 'denied'; stepId: string; reason: string; determiningPolicies: string[] }
  | { outcome: 'awaiting-approval'; stepId: string; pendingRoles?: string[] }
  | { outcome: 'failed'; stepId: string; reason: string };

export interface OpenSessionInput {
  workload: string;
  owner?: string;
  summary?: string;
  steps?: Step[];
  credential: string;
  attestation: string;
  sessionId?: string;
}

export interface SessionPort {
  openSession(input: OpenSessionInput): Promise<{ sessionId: string }>;
  proposeStep(
    sessionId: string,
    proposal: { step: Step; credential: string; attestation?: string },
  ): Promise<ProposeOutcome>;
  awaitStep(sessionId: string, stepId: string, options: { credential: string }): Promise<ProposeOutcome>;
  closeSession(sessionId: string, options: { reason?: string }): Promise<ChainResult>;
}

const METHODS = ['openSession', 'proposeStep', 'awaitStep', 'closeSession'] as const;

/**
 * The port over a real `GovernorClient`. Refuses (fails closed, at start) a client without the session
 * operations instead of failing at the first tool call.
 */
export function governorSessionPort(client: GovernorClient): SessionPort {
  const sessions = client as unknown as Partial<SessionPort>;
  const missing = METHODS.filter((m) => typeof sessions[m] !== 'function');
  if (missing.length > 0) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `this governor SDK has no agent sessions (missing ${missing.join(', ')}); the MCP gateway needs them`,
    );
  }
  const s = sessions as SessionPort;
  return {
    openSession: (input) => s.openSession.call(client, input),
    proposeStep: (sessionId, proposal) => s.proposeStep.call(client, sessionId, proposal),
    awaitStep: (sessionId, stepId, options) => s.awaitStep.call(client, sessionId, stepId, options),
    closeSession: (sessionId, options) => s.closeSession.call(client, sessionId, options),
  };
}
