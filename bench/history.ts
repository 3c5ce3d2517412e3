import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { loadPublicJwks } from '../activities/identity';
import { PolicyStore } from '../activities/policy-store';
import type { AuthzRequest, Decision } from '../contracts/decision';
import { GENESIS_HASH, type Receipt } from '../contracts/receipt';
import { canonicalJson, sha256Hex } from '../policies/engine';
import { receiptBody } from '../activities/receipts';
import { defaultPoliciesDir } from '../workers/worker';
import { nowMs, round } from './stats';

/**
 * A stand-in for `governor verify`, which does not exist yet: the work it will have to do over one
 * chain's history, timed stage by stage. Bench-local and approximate; labelled as such in results.
 */
export interface HistoryFigures {
  label: string;
  steps: number;
  events: number;
  /** Sum of payload bytes in the history (inputs, results, markers, details). */
  payloadBytes: number;
  /** Per 1,000 history events, in ms. */
  perThousandEvents: {
    /** `fetchHistory` (all pages, protobuf decode). */
    fetchMs: number;
    /** Decoding every payload with the default payload converter. */
    decodePayloadsMs: number;
    /** Re-evaluating every recorded decision with the preparsed bundle and comparing it byte for byte. */
    reEvaluateMs: number;
    /** Recomputing every receipt's hash, its link to the previous one, and its Ed25519 signature. */
    receiptChainMs: number;
    /** Deterministic replay with the current workflow code (`Worker.runReplayHistory`, warm). */
    replayMs: number;
    totalMs: number;
  };
  /** First replay in the process (creates the replay worker), ms, not normalised. */
  firstReplayMs: number;
  decisionsReEvaluated: number;
  decisionMismatches: number;
  receiptsChecked: number;
  receiptFailures: number;
}

type Json = Record<string, unknown>;

function payloadsOf(event: Json): Payload[] {
  const out: Payload[] = [];
  const visit = (v: unknown, depth: number): void => {
    if (depth > 8 || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      v.forEach((x) => visit(x, depth + 1));
      return;
    }
    const o = v as Json;
    if (o.metadata && typeof o.metadata === 'object' && o.data instanceof Uint8Array) {
      out.push(o as unknown as Payload);
      return;
    }
    for (const key of Object.keys(o)) visit(o[key], depth + 1);
  };
  visit(event, 0);
  return out;
}

function isDecisionRecord(v: unknown): v is { decision: Decision; request: AuthzRequest } {
  const o = v as { decision?: { effect?: unknown }; request?: unknown } | null;
  return typeof o === 'object' && o !== null && typeof o.decision?.effect === 'string' && typeof o.request === 'object' && o.request !== null;
}

function isReceipt(v: unknown): v is Receipt {
  const o = v as Partial<Receipt> | null;
  return typeof o === 'object' && o !== null && typeof o.signature === 'string' && typeof o.prevHash === 'string' && typeof o.hash === 'string' && typeof o.seq === 'number';
}

/** Every value in `roots` (depth-first, in order) that satisfies `match`; matches are not searched further. */
function collect<T>(roots: readonly unknown[], match: (v: unknown) => v is T): T[] {
  const out: T[] = [];
  const visit = (v: unknown, depth: number): void => {
    if (depth > 6 || v === null || typeof v !== 'object') return;
    if (match(v)) {
      out.push(v);
      return;
    }
    for (const child of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)) visit(child, depth + 1);
  };
  roots.forEach((r) => visit(r, 0));
  return out;
}

/** Fetches, decodes, re-evaluates, checks receipts of and replays one governed chain's history. */
export async function benchHistory(handle: WorkflowHandle, steps: number, home: string, bundlePath: string): Promise<HistoryFigures> {
  let t0 = nowMs();
  const history = await handle.fetchHistory();
  const fetchMs = nowMs() - t0;
  const events = (history.events ?? []) as unknown as Json[];

  t0 = nowMs();
  let payloadBytes = 0;
  const decoded: unknown[] = [];
  for (const event of events) {
    for (const p of payloadsOf(event)) {
      payloadBytes += p.data?.length ?? 0;
      try {
        decoded.push(defaultPayloadConverter.fromPayload(p));
      } catch {
        // binary or unknown encoding: counted, not decoded
      }
    }
  }
  const decodeMs = nowMs() - t0;

  const store = new PolicyStore();
  const engine = store.activateDir(defaultPoliciesDir()).engine;
  // Decisions and receipts wherever the results carry them (local activity markers, the workflow result…).
  const decisions = collect(decoded, isDecisionRecord);
  t0 = nowMs();
  let mismatches = 0;
  for (const r of decisions) {
    if (canonicalJson(engine.decide(r.request)) !== canonicalJson(r.decision)) mismatches++;
  }
  const reEvaluateMs = nowMs() - t0;

  // Receipts in history order, each once (a receipt may also appear in a later payload).
  const seen = new Set<string>();
  const receipts = collect(decoded, isReceipt).filter((r) => !seen.has(r.hash) && seen.add(r.hash));
  const key = createPublicKey({ key: loadPublicJwks(home, 'receipt').keys[0] as import('node:crypto').JsonWebKey, format: 'jwk' });
  t0 = nowMs();
  let failures = 0;
  // A continued-as-new run starts from the head its previous run carried, not from genesis.
  let prev = receipts[0]?.prevHash ?? GENESIS_HASH;
  for (const r of receipts) {
    const hash = sha256Hex(canonicalJson(receiptBody(r)));
    const [h, p, s] = r.signature.split('.') as [string, string, string];
    const payloadOk = Buffer.from(p, 'base64url').toString() === hash;
    const sigOk = nodeVerify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'));
    if (hash !== r.hash || r.prevHash !== prev || !payloadOk || !sigOk) failures++;
    prev = r.hash;
  }
  const receiptMs = nowMs() - t0;

  t0 = nowMs();
  await Worker.runReplayHistory({ workflowBundle: { codePath: bundlePath } }, history);
  const firstReplayMs = nowMs() - t0;
  t0 = nowMs();
  await Worker.runReplayHistory({ workflowBundle: { codePath: bundlePath } }, history);
  const replayMs = nowMs() - t0;

  const per = (ms: number): number => round((ms / events.length) * 1000);
  const perThousandEvents = {
    fetchMs: per(fetchMs),
    decodePayloadsMs: per(decodeMs),
    reEvaluateMs: per(reEvaluateMs),
    receiptChainMs: per(receiptMs),
    replayMs: per(replayMs),
    totalMs: per(fetchMs + decodeMs + reEvaluateMs + receiptMs + replayMs),
  };
  return {
    label: 'verify stand-in (no `governor verify` yet): fetch + decode + re-evaluate decisions + receipt chain + replay',
    steps,
    events: events.length,
    payloadBytes,
    perThousandEvents,
    firstReplayMs: round(firstReplayMs),
    decisionsReEvaluated: decisions.length,
    decisionMismatches: mismatches,
    receiptsChecked: receipts.length,
    receiptFailures: failures,
  };
}
