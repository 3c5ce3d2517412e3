import { canonicalJson } from '../../../core/canonical';
import { LRUCache } from 'lru-cache';
import { Activity } from '../../../core/history';
import { resourceLabel } from '../../../core/step';
import { findDomain } from '../../../contracts/coordination';
import { AuthzRequest, Decision } from '../../../contracts/decision';
import { durationMs } from '../../../contracts/duration';
import { RevocationListRef } from '../../../contracts/revocation';
import { subscribedEvents } from '../../../contracts/notification';
import { bundleDigest, type LoadedBundle } from '../../../policies/bundle';
import { decisionsDiffer } from '../../../policies/decision-diff';
import { PolicyEngine } from '../../../policies/engine';
import type { DecodedRun, ReceiptEntry } from '../decode';
import { CheckName, Problems, type VerifyCheck } from '../report';
import { isRecord, oneLine, short } from '../util';

/** Where the bundle of a recorded digest comes from: undefined when it is not available (may throw, with a reason). */
export type BundleLookup = (digest: string) => LoadedBundle | undefined;

/** Engines by bundle digest (the digest is recomputed from the content before an engine is made). */
const engines = new LRUCache<string, PolicyEngine>({ max: 64 });

/** Decisions already re-evaluated, by bundle digest and canonical request (the decision function is pure). Bounded. */
const decided = new LRUCache<string, Decision>({ max: 20_000 });

function decide(bundle: LoadedBundle, request: AuthzRequest): Decision {
  const memo = `${bundle.digest}\n${canonicalJson(request)}`;
  let decision = decided.get(memo);
  if (!decision) {
    decision = engineFor(bundle).decide(request);
    decided.set(memo, decision);
  }
  return decision;
}

function engineFor(bundle: LoadedBundle): PolicyEngine {
  let engine = engines.get(bundle.digest);
  if (!engine) {
    engine = PolicyEngine.fromBundle(bundle);
    engines.set(bundle.digest, engine);
  }
  return engine;
}

/** What the check has seen so far across the chain's decisions. */
interface Tally {
  problems: Problems;
  /** Bundle digests the decisions name (enforced and shadow). */
  digests: Set<string>;
  /** The revocation list each decision saw (its receipt's digest covers it; see decisionReceiptPayload). */
  revocationLists: Set<string>;
  /** Bundles re-evaluated with. */
  used: Set<string>;
  /** The bundle of a digest (looked up once), or why there is none. */
  bundle(digest: string): LoadedBundle | string;
  failureDenies: number;
  shadows: number;
  shadowsSkipped: number;
}

/**
 * The `decisions` check: every recorded decision re-evaluated from its recorded request with the
 * bundle of its recorded digest is identical (canonical JSON), and the grace period and approval rules
 * recorded with it are that bundle's; decisions made before policy ran (no request) are denies.
 */
export function checkDecisions(
  runs: DecodedRun[],
  lookup: BundleLookup,
): { check: VerifyCheck; count: number; digests: string[]; revocationLists: string[] } {
  const available = new Map<string, LoadedBundle | string>();
  const t: Tally = {
    problems: new Problems(),
    digests: new Set(),
    revocationLists: new Set(),
    used: new Set(),
    bundle(digest) {
      const known = available.get(digest);
      if (known !== undefined) return known;
      let found: LoadedBundle | string;
      try {
        const b = lookup(digest);
        found = !b
          ? 'not available'
          : bundleDigest(b.files) !== digest || b.digest !== digest
            ? 'its content does not hash to its digest'
            : b;
      } catch (err) {
        found = oneLine((err as Error).message);
      }
      available.set(digest, found);
      return found;
    },
    failureDenies: 0,
    shadows: 0,
    shadowsSkipped: 0,
  };
  let count = 0;
  for (const run of runs) {
    for (const entry of run.entries) {
      if (entry.source !== Activity.authorize) continue;
      count++;
      checkDecision(t, entry, `decision at event ${entry.eventId} of run ${run.index + 1}`);
    }
  }
  const { shadows, shadowsSkipped, failureDenies } = t;
  const shadowNote =
    shadows > 0
      ? `; ${shadows - shadowsSkipped} of ${shadows} shadow decision(s) re-evaluated (shadow bundles are not archived)`
      : '';
  const check = t.problems.check(
    CheckName.Decisions,
    `${count - failureDenies} decision(s) re-evaluated with ${t.used.size} bundle(s): identical; ${failureDenies} made before policy ran, all deny${shadowNote}`,
  );
  return { check, count, digests: [...t.digests].sort(), revocationLists: [...t.revocationLists].sort() };
}

/** One `authorize` result: its decision re-evaluated, and what the workflow acted on besides it. */
function checkDecision(t: Tally, entry: ReceiptEntry, where: string): void {
  const { problems } = t;
  const recorded = Decision.safeParse(entry.result.decision);
  if (!recorded.success) {
    problems.add(`${where}: not a decision`);
    return;
  }
  const decision = recorded.data;
  if (decision.bundleDigest) t.digests.add(decision.bundleDigest);
  const seen = RevocationListRef.safeParse(entry.result.revocations);
  if (seen.success) t.revocationLists.add(`${seen.data.registry} seq ${seen.data.seq} head ${seen.data.head}`);
  else if (entry.result.revocations !== undefined) problems.add(`${where}: the revocation list it names is malformed`);
  const rawRequest = entry.result.request;
  if (rawRequest === undefined || rawRequest === null) {
    // Verification failed before policy ran (credential, attestation, revoked workload, no bundle).
    if (decision.effect !== 'deny' || decision.errors.length === 0)
      problems.add(`${where}: made without a request, yet not a deny with its reason`);
    else t.failureDenies++;
    return;
  }
  const request = AuthzRequest.safeParse(rawRequest);
  if (!request.success) {
    problems.add(`${where}: the recorded request is malformed`);
    return;
  }
  const b = t.bundle(decision.bundleDigest);
  if (typeof b === 'string') {
    problems.add(`${where}: bundle ${short(decision.bundleDigest)} ${b}`);
    return;
  }
  t.used.add(b.digest);
  // What the workflow acted on besides the decision comes from the same bundle.
  const ladder = (b.manifest.approvals.ladder ?? []).map((l) => ({
    afterMs: durationMs(l.after),
    roles: [...l.roles],
  }));
  // Webhook notifications: the events the bundle's webhooks asked for (absent when none).
  const notify = subscribedEvents(b.manifest.notifications.webhooks);
  const rules = decision.effect === 'escalate' ? { ladder, ...(notify.length > 0 ? { notify } : {}) } : undefined;
  if (
    entry.result.credentialExpired !== false ||
    entry.result.gracePeriod !== durationMs(b.manifest.credential.gracePeriod) ||
    canonicalJson(entry.result.approvalRules ?? null) !== canonicalJson(rules ?? null)
  ) {
    problems.add(`${where}: its grace period, approval rules or credential flag are not the bundle's`);
  }
  // A step `authorize` called uncoordinated skipped `requestSlot`: the bundle must agree.
  // The flag is not signed: a step executed inside governStep is checked against the bundle whatever it says.
  if (
    entry.result.coordinated === false ||
    (entry.executedInOne &&
      entry.result.receipt &&
      isRecord(entry.result.receipt) &&
      entry.result.receipt.kind === 'decision')
  ) {
    const domain = findDomain(b.manifest.coordination.domains, resourceLabel(request.data.resource));
    if (domain) {
      problems.add(
        entry.result.coordinated === false
          ? `${where}: says its resource is not coordinated, but the bundle puts it in domain ${domain.name}`
          : `${where}: its step ran without a coordination slot, but the bundle puts its resource in domain ${domain.name}`,
      );
    }
  }
  const again = decide(b, request.data);
  if (canonicalJson(again) !== canonicalJson(entry.result.decision)) {
    problems.add(
      `${where}: re-evaluation gives ${again.effect}${again.effect === decision.effect ? ' with other details' : ''}, recorded ${decision.effect}`,
    );
  }
  if (entry.result.shadow !== undefined) checkShadow(t, where, decision, request.data, entry.result.shadow);
}

/** A shadow block: the candidate bundle's verdict on the same request, re-evaluated when that bundle is available. */
function checkShadow(t: Tally, where: string, decision: Decision, request: AuthzRequest, shadow: unknown): void {
  t.shadows++;
  const s = isRecord(shadow) ? shadow : {};
  const sd = typeof s.bundleDigest === 'string' ? s.bundleDigest : '';
  if (sd) t.digests.add(sd);
  const sb = sd ? t.bundle(sd) : 'not named';
  // Shadow bundles are never enforced nor archived: re-evaluated when available, else noted.
  if (typeof sb === 'string') {
    t.shadowsSkipped++;
    return;
  }
  const d = decide(sb, request);
  const expected = {
    bundleDigest: d.bundleDigest,
    effect: d.effect,
    differs: decisionsDiffer(decision, d),
    determiningPolicies: d.determiningPolicies,
    annotations: d.annotations,
    errors: d.errors,
    ...(d.reason !== undefined ? { reason: d.reason } : {}),
    ...(d.escalation !== undefined ? { escalation: d.escalation } : {}),
  };
  if (canonicalJson(expected) !== canonicalJson(shadow))
    t.problems.add(`${where}: the shadow decision differs on re-evaluation`);
}
