import { canonicalJson, sha256Hex } from '../core/canonical';
import { durationMs } from '../contracts/duration';
import { isGovernorError } from '../contracts/errors';
import type { SessionSettings } from '../contracts/session';
import { verifyAttestation, verifyCredential } from '../identity';
import type { PolicyStore } from './policy-store';

/*
 * The governor's activities for agent sessions (DESIGN §9): the manifest's session settings, the
 * check of a proposal's credential before its step is governed, and the digest of a step's output.
 */

/** Input of `verifyProposal`: the tokens a proposal carries and the session they must belong to. */
export interface VerifyProposalInput {
  chainId: string;
  stepId: string;
  workload: string;
  credential: string;
  /** Absent for `awaitStep`, which reads an outcome and governs nothing: the credential alone is checked. */
  attestation?: string;
}

/** Result of `verifyProposal`: the tokens verify and name the session's workload, or why not. */
export type VerifyProposalResult = { ok: true } | { ok: false; field: 'credential' | 'attestation'; reason: string };

/** Input of `sessionOutput`: what a session step's executor returned. */
export interface SessionOutputInput {
  chainId: string;
  stepId: string;
  output: unknown;
  maxOutputBytes: number;
}

/** Result of `sessionOutput`: the output's digest and size (canonical JSON). */
export interface SessionOutputResult {
  digest: string;
  bytes: number;
}

/** SHA-256 and size of the canonical JSON of a step's output (`null` when it returned nothing). */
export function sessionOutputOf(output: unknown): SessionOutputResult {
  const text = canonicalJson(output ?? null);
  return { digest: sha256Hex(text), bytes: Buffer.byteLength(text, 'utf8') };
}

/** Defaults when no bundle is loaded (a session then denies every step anyway). */
const DEFAULT_SETTINGS: SessionSettings = { idleTimeoutMs: 30 * 60_000, maxOutputBytes: 65_536 };

export function createSessionActivities(deps: { policies: PolicyStore; home: string; clock: () => Date }) {
  return {
    /** The active manifest's `session` section (idle timeout, output limit). */
    async sessionSettings(): Promise<SessionSettings> {
      const section = deps.policies.current()?.bundle.manifest.session;
      if (!section) return DEFAULT_SETTINGS;
      return { idleTimeoutMs: durationMs(section.idleTimeout), maxOutputBytes: section.maxOutputBytes };
    },

    /**
     * Verifies a proposal's credential and attestation with the active manifest, and that they name the
     * session's workload: a proposal from anyone else is refused before its step is governed (the step's
     * own `authorize` verifies them again, binds the credential and decides).
     */
    async verifyProposal(input: VerifyProposalInput): Promise<VerifyProposalResult> {
      const active = deps.policies.current();
      if (!active) return { ok: false, field: 'credential', reason: 'no valid policy bundle is loaded' };
      const { manifest } = active.bundle;
      const now = deps.clock();
      let sub: string;
      try {
        sub = (await verifyCredential(input.credential, manifest, { now, home: deps.home })).sub;
      } catch (err) {
        if (isGovernorError(err)) return { ok: false, field: 'credential', reason: err.message };
        throw err;
      }
      if (sub !== input.workload)
        return { ok: false, field: 'credential', reason: "the credential is another workload's, not this session's" };
      if (input.attestation === undefined) return { ok: true };
      try {
        await verifyAttestation(input.attestation, manifest, { now, home: deps.home, expectedSubject: sub });
      } catch (err) {
        if (isGovernorError(err)) return { ok: false, field: 'attestation', reason: err.message };
        throw err;
      }
      return { ok: true };
    },

    /** SHA-256 and size of the canonical JSON of a step's output (`null` when it returned nothing). */
    async sessionOutput(input: SessionOutputInput): Promise<SessionOutputResult> {
      return sessionOutputOf(input.output);
    },
  };
}
