import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApprovalSubmission, SubmitApprovalResult } from './approval';
import type { RevocationList, RevokeWorkloadInput } from './revocation';
import type { ChainState } from './state';

/**
 * Queries, signals and updates of `governedChainWorkflow`. Their names are recorded in history and
 * used by other SDKs and `temporal workflow signal|query`: never rename.
 */

/** Current state of the chain: every step with its decision, and what is pending. */
export const statusQuery = defineQuery<ChainState>('status');

/** Payload of a credential refresh: a new credential (JWT) and optionally a fresh attestation. */
export interface RefreshCredentialInput {
  credential: string;
  attestation?: string;
}

/** Delivers a refreshed credential to a running chain (`temporal workflow signal --name refreshCredential`). */
export const refreshCredentialSignal = defineSignal<[RefreshCredentialInput]>('refreshCredential');

/** Same as the signal, but returns the chain state once the refresh is accepted into the workflow. */
export const refreshCredentialUpdate = defineUpdate<ChainState, [RefreshCredentialInput]>('refreshCredentialUpdate');

/** An approve vote: `{ "token": "<approval JWT>" }` (works from the Temporal UI and `temporal workflow signal`). */
export const approveSignal = defineSignal<[ApprovalSubmission]>('approve');

/** A deny vote: `{ "token": "<approval JWT>" }`. */
export const denySignal = defineSignal<[ApprovalSubmission]>('deny');

/** Submits a vote and returns the approval state after the vote was verified and counted or rejected. */
export const submitApprovalUpdate = defineUpdate<SubmitApprovalResult, [ApprovalSubmission]>('submitApproval');

/** Revocation: `{ "reason": "…", "by": "…" }`. The chain stops at its next step; the step in flight is cancelled. */
export interface RevokeInput {
  reason: string;
  by?: string;
}

/** Revokes a running chain (also sent to every chain of a workload by `governor revoke --workload`). */
export const revokeSignal = defineSignal<[RevokeInput]>('revoke');

/** Adds a workload to the revocation registry; returns the list after the change. */
export const revokeWorkloadUpdate = defineUpdate<RevocationList, [RevokeWorkloadInput]>('revokeWorkload');

/** The revocation registry's current list (consulted by `authorize`). */
export const revocationsQuery = defineQuery<RevocationList>('revocations');
