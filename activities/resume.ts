import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import type { Receipt, ReceiptHead } from '../contracts/receipt';
import { canonicalJson, sha256Hex } from '../policies/engine';
import { receiptBody } from '../core/receipts';

/** Input of `verifyResume`: what a continued run claims about the run it continues. */
export interface VerifyResumeInput {
  chainId: string;
  /** This run's first execution run id (set by the server, never by the starter). */
  firstRunId: string;
  /** The run this one continued from (set by the server; absent on a first run). */
  continuedFromRunId?: string;
  nextStep: number;
  /** `resume.runs`: this run's number (the previous run's is one less). */
  runs: number;
  head: ReceiptHead;
  checkpoint?: Receipt;
}

/** The payload of the checkpoint a run signs before it continues as new (what `verifyResume` recomputes). */
export function continuationPayload(p: { nextStep: number; run: number; firstRunId: string }): Record<string, unknown> {
  return { continuedAsNew: true, nextStep: p.nextStep, run: p.run, firstRunId: p.firstRunId };
}

/**
 * Checks that a `resume` came from the governor's own continue-as-new of this chain: the run was
 * continued (server-set), and the carried checkpoint is a receipt of this chain, signed with the
 * receipt key, over the carried head, committing to this chain's first run and to the step the run
 * resumes at. Returns the reason it does not hold, or undefined. Never throws for bad input.
 */
export async function checkResume(input: VerifyResumeInput, receiptJwks: JSONWebKeySet): Promise<string | undefined> {
  if (!input.continuedFromRunId)
    return 'resume: this run did not continue as new from a run of this chain (resume is set only by the governor itself)';
  const cp = input.checkpoint;
  if (!cp) return 'resume.checkpoint: missing (the run being continued must carry its signed checkpoint)';
  if (cp.kind !== 'checkpoint' || cp.stepId !== undefined) return 'resume.checkpoint: not a checkpoint receipt';
  if (cp.chainId !== input.chainId) return 'resume.checkpoint: belongs to another chain';
  if (cp.seq !== input.head.seq || cp.hash !== input.head.hash)
    return 'resume.head: does not match the signed checkpoint';
  const expected = sha256Hex(
    canonicalJson(continuationPayload({ nextStep: input.nextStep, run: input.runs - 1, firstRunId: input.firstRunId })),
  );
  if (cp.digest !== expected) return 'resume.checkpoint: does not commit to this chain run and resume position';
  if (sha256Hex(canonicalJson(receiptBody(cp))) !== cp.hash) return 'resume.checkpoint: hash does not match its body';
  try {
    const { payload, protectedHeader } = await compactVerify(cp.signature, createLocalJWKSet(receiptJwks), {
      algorithms: ['EdDSA'],
    });
    if (protectedHeader.typ !== 'governor-receipt+jws') return 'resume.checkpoint: not a receipt signature';
    if (new TextDecoder().decode(payload) !== cp.hash) return 'resume.checkpoint: signature does not cover its hash';
  } catch {
    return 'resume.checkpoint: signature does not verify with the governor receipt key';
  }
  return undefined;
}
