import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
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
