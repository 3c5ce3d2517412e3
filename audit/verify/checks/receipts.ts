import { canonicalJson, sha256Hex } from '../../../core/canonical';
import { Activity } from '../../../core/history';
import { decisionReceiptPayload, receiptBody, RECEIPT_KINDS_BY_SOURCE } from '../../../core/receipts';
import { GENESIS_HASH, Receipt, type ReceiptHead } from '../../../contracts/receipt';
import type { DecodedRun, ReceiptEntry } from '../decode';
import type { KeyWindow } from '../../../identity/keys';
import { verifyCompactJws, type TrustedKeys } from '../jws';
import { CheckName, Problems, type VerifyCheck } from '../report';

/** A receipt that passed the schema, with where it came from. */
export interface ChainReceipt {
  receipt: Receipt;
  entry: ReceiptEntry;
}

/** The payload a receipt's digest covers, as recorded in history (see activities/index.ts). */
function receiptPayload(
  entry: ReceiptEntry,
  approvalStepDigest: string | undefined,
): { ok: true; payload: unknown } | { ok: false; problem: string } {
  const r = entry.result;
  switch (entry.source) {
    case Activity.authorize:
      return {
        ok: true,
        payload: {
          ...decisionReceiptPayload({
            request: r.request,
            decision: r.decision,
            shadow: r.shadow,
            revocations: r.revocations,
          }),
          stepDigest: r.stepDigest,
        },
      };
    case Activity.verifyApproval:
      // The vote was verified against the step digest of the decision that escalated the step.
      if (approvalStepDigest === undefined)
        return { ok: false, problem: 'an approval for a step that has no decision' };
      return { ok: true, payload: { verdict: r.verdict, stepDigest: approvalStepDigest } };
    default:
      return { ok: true, payload: r.payload ?? null };
  }
}

/**
 * How long after a key's retirement a receipt signed with it is still accepted: a worker notices a
 * rotation within a second (activities/index.ts), and the history's event time is when the server
 * recorded the result, a little after the signature.
 */
export const ROTATION_GRACE_MS = 60_000;

/**
 * Why a receipt recorded at `recordedAt` (epoch ms, the server's event time) may not carry a signature by a
 * key with `window`; undefined when it may. A key without a window (never rotated) is valid throughout.
 */
export function outsideWindow(window: KeyWindow | undefined, recordedAt: number | undefined): string | undefined {
  if (!window || (window.nbf === undefined && window.retired === undefined)) return undefined;
  if (recordedAt === undefined) return 'that was rotated, in an event without a time';
  if (window.retired !== undefined && recordedAt > window.retired * 1000 + ROTATION_GRACE_MS)
    return `after it was retired (${new Date(window.retired * 1000).toISOString()})`;
  if (window.nbf !== undefined && recordedAt < window.nbf * 1000 - ROTATION_GRACE_MS)
    return `before it was introduced (${new Date(window.nbf * 1000).toISOString()})`;
  return undefined;
}

/**
 * The `receipts` check: every receipt the workflow consumed, seq contiguous from 1, linked by
 * prevHash (also across runs), hash recomputed from the body, digest recomputed from what history
 * recorded, signed by a trusted receipt key. Returns the receipts in chain order.
 */
export async function checkReceipts(
  runs: DecodedRun[],
  chainId: string | null,
  keySet: TrustedKeys,
): Promise<{ check: VerifyCheck; chain: ChainReceipt[] }> {
  const problems = new Problems();
  const chain: ChainReceipt[] = [];
  let head: ReceiptHead = { seq: 0, hash: GENESIS_HASH };
  const stepDigests = new Map<string, string>();
  const kids = new Set<string>();
  let orphans = 0;
  for (const run of runs) {
    orphans += run.orphans;
    if (run.index > 0 && run.input?.resume && canonicalJson(run.input.resume.head) !== canonicalJson(head)) {
      problems.add(
        `run ${run.index + 1}: resumes from receipt ${run.input.resume.head.seq}, but run ${run.index} ended at receipt ${head.seq}`,
      );
    }
    for (const entry of run.entries) {
      const parsed = Receipt.safeParse(entry.result.receipt);
      if (!parsed.success) {
        problems.add(
          `event ${entry.eventId} of run ${run.index + 1}: the ${entry.source} result holds no valid receipt`,
        );
        continue;
      }
      const r = parsed.data;
      const label = `receipt ${r.seq} (${r.kind}${r.stepId !== undefined ? `, step ${r.stepId}` : ''})`;
      if (chainId !== null && r.chainId !== chainId) problems.add(`${label}: belongs to chain ${r.chainId}`);
      if (r.seq !== head.seq + 1) problems.add(`${label}: out of sequence (expected ${head.seq + 1})`);
      if (r.prevHash !== head.hash) problems.add(`${label}: does not link to the previous receipt`);
      if (!RECEIPT_KINDS_BY_SOURCE[entry.source].includes(r.kind))
        problems.add(`${label}: a ${entry.source} result cannot hold a ${r.kind} receipt`);
      if (sha256Hex(canonicalJson(receiptBody(r))) !== r.hash) problems.add(`${label}: hash does not match its body`);
      const payload = receiptPayload(entry, r.stepId !== undefined ? stepDigests.get(r.stepId) : undefined);
      if (!payload.ok) problems.add(`${label}: ${payload.problem}`);
      else {
        let digest: string | undefined;
        try {
          digest = sha256Hex(canonicalJson(payload.payload));
        } catch {
          digest = undefined;
        }
        if (digest !== r.digest) problems.add(`${label}: digest does not match what history recorded`);
      }
      const signature = await verifyCompactJws(r.signature, keySet, 'governor-receipt+jws');
      if (!signature.ok) problems.add(`${label}: signature ${signature.problem}`);
      else {
        if (signature.payload !== r.hash) problems.add(`${label}: the signature signs another hash`);
        kids.add(signature.kid);
        const outside = outsideWindow(keySet.windows.get(signature.kid), run.eventTimes?.get(entry.eventId));
        if (outside) problems.add(`${label}: signed by key ${signature.kid} ${outside}`);
      }
      if (entry.source === Activity.authorize && r.stepId !== undefined && typeof entry.result.stepDigest === 'string')
        stepDigests.set(r.stepId, entry.result.stepDigest);
      head = { seq: r.seq, hash: r.hash };
      chain.push({ receipt: r, entry });
    }
  }
  const orphanNote =
    orphans > 0 ? `; ${orphans} receipt(s) of activities cancelled before completing are not part of the chain` : '';
  const check = problems.check(
    CheckName.Receipts,
    chain.length === 0
      ? `no receipts${orphanNote}`
      : `${chain.length} receipt(s), seq 1-${head.seq}: linked, hashes and digests recomputed, signed by ${[...kids].join(', ')}${orphanNote}`,
  );
  return { check, chain };
}
