import type { Client } from '@temporalio/client';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import {
  COORDINATION_RECEIPT_KIND,
  COORDINATOR_WORKFLOW_TYPE,
  coordinatorId,
  findDomain,
  matchesResourcePattern,
  requestDigestInput,
  requestSlotSignal,
  SLOT_SEAL_TYP,
  SlotAsk,
  SlotRequest,
  slotRequestId,
  type Coordination,
  type SlotVerdict,
  type TieBreakVerdict,
} from '../contracts/coordination';
import { durationMs } from '../contracts/duration';
import { resourceLabel } from '../core/step';
import { ErrorCode, GovernorError, isGovernorError } from '../contracts/errors';
import type { Receipt, ReceiptHead } from '../contracts/receipt';
import { formatIssues } from '../contracts/chain';
import { canonicalJson, sha256Hex } from '../policies/engine';
import type { Manifest } from '../policies/manifest';
import { verifyApproval } from '../identity';
import { makeReceipt, signCompact, type ReceiptSigning } from '../core/receipts';

/** A domain's rules as the coordinator uses them (durations in milliseconds). */
export interface DomainRules {
  name: string;
  resources: string[];
  conflicts: [string, string][];
  onConflict: 'reject' | 'requeue';
  batchingWindowMs: number;
  tieBreakerRole: string;
  decisionDeadline: string;
  decisionDeadlineMs: number;
  holdTimeoutMs: number;
}

/** Input of `admitSlotRequests`: the coordinator's domain and the requests of the batch it closes (may be empty). */
export interface AdmitInput {
  domain: string;
  requests: SlotRequest[];
}

/** Result of `admitSlotRequests`. */
export interface AdmitResult {
  /** Absent when the active bundle has no such domain (every request is then rejected). */
  rules?: DomainRules;
  bundleDigest: string;
  /** Governor time of the admission (ISO-8601). */
  now: string;
  /** One per request, same order: admitted with the manifest's current authority, or refused with why. */
  admissions: { requestId: string; ok: boolean; reason?: string; authority: number }[];
}

/** Result of `requestSlot`: whether the step is coordinated, and where. */
export type RequestSlotResult =
  | { coordinated: false }
  | { coordinated: true; domain: string; coordinatorId: string; requestId: string; request: SlotRequest };

/** Input of `signCoordinationReceipts`: the coordinator's receipt chain head and what to record, in order. */
export interface SignCoordinationInput {
  coordinatorId: string;
  prev: ReceiptHead;
  entries: { stepId: string; payload: unknown }[];
}

/**
 * Result of `signCoordinationReceipts`. `signedAt` (governor time, ISO-8601; absent in results
 * recorded by older versions) is when a grant took effect: the coordinator runs a holder's hold
 * timeout from it, across continue-as-new.
 */
export interface SignCoordinationResult {
  receipts: Receipt[];
  signedAt?: string;
}

/** Input of `verifyTieBreak`. */
export interface VerifyTieBreakInput {
  tieId: string;
  /** The tie receipt's payload digest: the `stepDigest` the vote must carry. */
  digest: string;
  role: string;
  contenders: { requestId: string; chainId: string; stepId: string; workload: string }[];
  token: string;
}

/**
 * The rank of a request (the manifest's `coordination.authority`): the workload's rank, raised to
 * the highest rank among the roles of the approvers who let the step through.
 */
export function authorityOf(
  coordination: Coordination,
  workload: string,
  approverRoles: readonly string[] = [],
): number {
  const ranks = coordination.authority;
  const base = ranks.workloads[workload] ?? ranks.default;
  return approverRoles.reduce((max, role) => Math.max(max, ranks.roles[role] ?? max), base);
}

/** The domain rules in the shape the coordinator uses. */
export function domainRules(d: Coordination['domains'][number]): DomainRules {
  return {
    name: d.name,
    resources: [...d.resources],
    conflicts: d.conflicts.map(([a, b]) => [a, b] as [string, string]),
    onConflict: d.onConflict,
    batchingWindowMs: durationMs(d.batchingWindow),
    tieBreakerRole: d.tieBreakerRole,
    decisionDeadline: d.decisionDeadline,
    decisionDeadlineMs: durationMs(d.decisionDeadline),
    holdTimeoutMs: durationMs(d.holdTimeout),
  };
}

/**
 * Builds the sealed slot request of a step, or undefined when its resource belongs to no coordination
 * domain. `options.domain` picks a domain explicitly (it must cover the resource).
 */
export async function sealSlotRequest(
  manifest: Pick<Manifest, 'coordination'>,
  ask: SlotAsk,
  signer: ReceiptSigning,
  options: { domain?: string } = {},
): Promise<SlotRequest | undefined> {
  const parsed = SlotAsk.safeParse(ask);
  if (!parsed.success)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `invalid slot request:\n${formatIssues(parsed.error)}`,
      String(parsed.error.issues[0]?.path.join('.') ?? ''),
    );
  const a = parsed.data;
  const label = resourceLabel(a.resource);
  const domains = manifest.coordination.domains;
  const domain =
    options.domain === undefined
      ? findDomain(domains, label)
      : domains.find((d) => d.name === options.domain && d.resources.some((p) => matchesResourcePattern(p, label)));
  if (!domain) {
    if (options.domain !== undefined)
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `coordination domain ${options.domain} does not exist or does not cover ${label}`,
        'domain',
      );
    return undefined;
  }
  const approverRoles =
    a.approverRoles && a.approverRoles.length > 0 ? [...new Set(a.approverRoles)].sort() : undefined;
  const body = {
    chainId: a.chainId,
    stepId: a.stepId,
    workload: a.workload,
    action: a.action,
    resource: label,
    priority: a.priority ?? 0,
    plannedVersion: a.plannedVersion,
    authority: authorityOf(manifest.coordination, a.workload, approverRoles),
    ...(approverRoles ? { approverRoles } : {}),
  };
  const requestDigest = sha256Hex(canonicalJson(requestDigestInput(body)));
  const seal = await signCompact(signer, SLOT_SEAL_TYP, canonicalJson({ domain: domain.name, requestDigest }));
  const request: SlotRequest = { ...body, domain: domain.name, requestDigest, seal };
  if (request.plannedVersion === undefined) delete request.plannedVersion;
  return request;
}

/**
 * Delivers a request to its domain's coordinator, starting the coordinator if it is not running
 * (signal-with-start: atomic, so concurrent first requests never start two coordinators).
 */
export async function submitSlotRequest(client: Client, taskQueue: string, request: SlotRequest): Promise<string> {
  const workflowId = coordinatorId(taskQueue, request.domain);
  await client.workflow.signalWithStart(COORDINATOR_WORKFLOW_TYPE, {
    workflowId,
    taskQueue,
    args: [{ domain: request.domain }],
    signal: requestSlotSignal,
    signalArgs: [request],
    staticSummary: `Coordinator of ${request.domain}`,
  });
  return workflowId;
}

/**
 * Admits the requests of a batch: each must be well formed, target this domain, cover one of its
 * resources, and carry a valid seal of this governor over its recomputed digest. Authority is taken
 * from the active manifest (a rollout between request and batch applies). Never throws for a bad
 * request: the refusal and its reason are the admission.
 */
export async function admitRequests(
  manifest: Pick<Manifest, 'coordination'>,
  bundleDigest: string,
  input: AdmitInput,
  options: { now: Date; receiptJwks: JSONWebKeySet },
): Promise<AdmitResult> {
  const domain = manifest.coordination.domains.find((d) => d.name === input.domain);
  const jwks = createLocalJWKSet(options.receiptJwks);
  const admissions: AdmitResult['admissions'] = [];
  for (const raw of input.requests) {
    const requestId =
      typeof raw?.chainId === 'string' && typeof raw.stepId === 'string'
        ? slotRequestId(raw.chainId, raw.stepId)
        : '(malformed)';
    const refuse = (reason: string) => admissions.push({ requestId, ok: false, reason, authority: 0 });
    const parsed = SlotRequest.safeParse(raw);
    if (!parsed.success) {
      refuse('malformed slot request');
      continue;
    }
    const r = parsed.data;
    if (!domain) {
      refuse(`coordination domain ${input.domain} is not configured in the active policy bundle`);
      continue;
    }
    if (r.domain !== domain.name) {
      refuse(`request is for domain ${r.domain}, not ${domain.name}`);
      continue;
    }
    if (!domain.resources.some((p) => matchesResourcePattern(p, r.resource))) {
      refuse(`${r.resource} is not a resource of domain ${domain.name}`);
      continue;
    }
    const digest = sha256Hex(canonicalJson(requestDigestInput(r)));
    if (digest !== r.requestDigest) {
      refuse('request digest does not match the request');
      continue;
    }
    let sealed: string;
    try {
      const verified = await compactVerify(r.seal, jwks, { algorithms: ['EdDSA'] });
      if (verified.protectedHeader.typ !== SLOT_SEAL_TYP) throw new Error('typ');
      sealed = new TextDecoder().decode(verified.payload);
    } catch {
      refuse('request is not sealed by this governor');
      continue;
    }
    if (sealed !== canonicalJson({ domain: r.domain, requestDigest: r.requestDigest })) {
      refuse('request seal is for another request or domain');
      continue;
    }
    admissions.push({
      requestId,
      ok: true,
      authority: authorityOf(manifest.coordination, r.workload, r.approverRoles),
    });
  }
  return {
    ...(domain ? { rules: domainRules(domain) } : {}),
    bundleDigest,
    now: options.now.toISOString(),
    admissions,
  };
}

/**
 * Judges a tie-break vote: a valid approval JWT of a trusted approver holding the domain's tie-breaker
 * role, bound to this tie (`stepDigest` = tie digest) and naming one contender (`chainId`/`stepId`),
 * from someone who is none of the contenders' workloads nor their owners. Never throws for a bad vote.
 */
export async function judgeTieBreak(
  token: string,
  manifest: Manifest,
  input: Omit<VerifyTieBreakInput, 'token'>,
  options: { now: Date; home: string },
): Promise<TieBreakVerdict> {
  const reject = (reason: string, extra: Partial<TieBreakVerdict> = {}): TieBreakVerdict => ({
    tieId: input.tieId,
    counted: false,
    reason,
    ...extra,
  });
  let vote: Awaited<ReturnType<typeof verifyApproval>>;
  try {
    vote = await verifyApproval(token, manifest, options);
  } catch (err) {
    if (isGovernorError(err) && err.code === ErrorCode.ApprovalInvalid) return reject(err.message);
    throw err;
  }
  const who = { approver: vote.sub, decision: vote.decision };
  if (vote.stepDigest !== input.digest) return reject('vote is not for this tie', who);
  const chosen = input.contenders.find((c) => c.chainId === vote.chainId && c.stepId === vote.stepId);
  if (!chosen) return reject('vote names no contender of this tie', who);
  const parties = new Set(
    input.contenders.flatMap((c) => [c.workload, manifest.owners[c.workload]]).filter((x): x is string => Boolean(x)),
  );
  if (parties.has(vote.sub)) return reject('a contender or its owner may not settle the tie', who);
  if (!vote.roles.includes(input.role))
    return reject(`approver does not hold the tie-breaker role (${input.role})`, who);
  return {
    tieId: input.tieId,
    counted: true,
    reason: vote.reason ?? '',
    approver: vote.sub,
    decision: vote.decision,
    ...(vote.decision === 'approve' ? { winner: chosen.requestId } : {}),
  };
}

/** Signs the coordinator's next receipts, linked after `prev`, in order. */
export async function signCoordination(
  signer: ReceiptSigning,
  input: SignCoordinationInput,
  options: { now?: Date } = {},
): Promise<SignCoordinationResult> {
  const receipts: Receipt[] = [];
  let prev = input.prev;
  for (const e of input.entries) {
    const receipt = await makeReceipt(signer, {
      chainId: input.coordinatorId,
      stepId: e.stepId,
      kind: COORDINATION_RECEIPT_KIND,
      payload: e.payload,
      prev,
    });
    receipts.push(receipt);
    prev = { seq: receipt.seq, hash: receipt.hash };
  }
  return { receipts, signedAt: (options.now ?? new Date()).toISOString() };
}

/** Input of `verifySlotVerdict`: a final verdict the chain received, and what it asked for. */
export interface VerifySlotVerdictInput {
  verdict: SlotVerdict;
  /** The coordinator `requestSlot` delivered the request to. */
  coordinatorId: string;
  /** The digest of the sealed request `requestSlot` delivered. */
  requestDigest: string;
}

/**
 * Checks that a slot verdict is the coordinator's: a receipt of that coordinator, signed with the
 * governor's receipt key, whose payload is exactly this verdict for this request. Returns the reason
 * it is not, or undefined. A signal is not authenticated by Temporal: this is what makes a grant one.
 */
export async function checkSlotVerdict(
  input: VerifySlotVerdictInput,
  receiptJwks: JSONWebKeySet,
): Promise<string | undefined> {
  const { receipt, ...verdict } = input.verdict;
  if (!receipt?.signature || receipt.prevHash === undefined || receipt.event === undefined)
    return 'the verdict carries no signed coordination receipt';
  if (receipt.coordinatorId !== input.coordinatorId) return "the verdict's receipt is not the domain coordinator's";
  const payload = {
    type: 'coordination',
    event: receipt.event,
    domain: verdict.domain,
    requestDigest: input.requestDigest,
    verdict,
  };
  if (sha256Hex(canonicalJson(payload)) !== receipt.digest)
    return "the verdict's receipt does not commit to this verdict for this request";
  const body = {
    seq: receipt.seq,
    chainId: receipt.coordinatorId,
    stepId: verdict.requestId,
    kind: COORDINATION_RECEIPT_KIND,
    digest: receipt.digest,
    prevHash: receipt.prevHash,
  };
  if (sha256Hex(canonicalJson(body)) !== receipt.hash) return "the verdict's receipt hash does not match its body";
  try {
    const { payload: signed, protectedHeader } = await compactVerify(
      receipt.signature,
      createLocalJWKSet(receiptJwks),
      { algorithms: ['EdDSA'] },
    );
    if (protectedHeader.typ !== 'governor-receipt+jws' || new TextDecoder().decode(signed) !== receipt.hash)
      return "the verdict's signature does not cover its receipt";
  } catch {
    return "the verdict's signature does not verify with the governor receipt key";
  }
  return undefined;
}
