/**
 * The coordinator's ordering and conflict rules: pure and deterministic (same batch, same rules,
 * same versions → same result, whatever the arrival order). No I/O, no clock, no randomness.
 */

/** One request as the ordering sees it. */
export interface Contender {
  requestId: string;
  action: string;
  /** `Type::"id"`. */
  resource: string;
  authority: number;
  priority: number;
  requestDigest: string;
  plannedVersion?: number;
}

/** The domain's conflict rules. */
export interface ConflictRules {
  conflicts: readonly (readonly [string, string])[];
  onConflict: 'reject' | 'requeue';
}

/** What became of one request of a batch. */
export type Placement =
  | { requestId: string; disposition: 'queued' }
  | { requestId: string; disposition: 'tie'; tie: number; conflictWith: string }
  | { requestId: string; disposition: 'requeued'; conflictWith: string; reason: string }
  | { requestId: string; disposition: 'rejected'; reason: string; conflictWith?: string };

/** A resolved batch: the queue order (queued and tie contenders, then requeued), rejections and ties. */
export interface BatchResolution {
  queue: Placement[];
  rejected: Placement[];
  /** Contender request ids of each tie, in order; `tie` of a placement indexes this. */
  ties: string[][];
}

/** Authority desc, then priority desc, then request digest, then request id (total and stable). */
export function compareContenders(a: Contender, b: Contender): number {
  if (a.authority !== b.authority) return b.authority - a.authority;
  if (a.priority !== b.priority) return b.priority - a.priority;
  if (a.requestDigest !== b.requestDigest) return a.requestDigest < b.requestDigest ? -1 : 1;
  return a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0;
}

/** True when the two actions form a conflicting pair (pairs are unordered). */
export function actionsConflict(a: string, b: string, pairs: ConflictRules['conflicts']): boolean {
  return pairs.some(([x, y]) => (x === a && y === b) || (x === b && y === a));
}

/** Why a request planned against `planned` cannot run at `current`, or undefined when it can. */
export function staleness(planned: number | undefined, current: number): string | undefined {
  if (planned === undefined || planned === current) return undefined;
  if (planned < current) return `stale: planned against version ${planned}, current ${current}`;
  return `unknown version: planned against version ${planned}, current ${current}`;
}

/**
 * Orders a batch and settles its conflicts. Stale requests are rejected first; then, in order, a
 * request conflicting with an already kept request of higher authority loses (rejected, or requeued
 * after the batch's kept requests); one conflicting only with kept requests of equal authority joins
 * their tie, which the domain's tie-breaker role settles. Conflicts are domain-wide: the domain is the
 * shared resource.
 */
export function resolveBatch(
  requests: readonly Contender[],
  rules: ConflictRules,
  versions: Readonly<Record<string, number>>,
): BatchResolution {
  const seen = new Set<string>();
  const sorted: Contender[] = [];
  for (const r of [...requests].sort(compareContenders)) {
    if (seen.has(r.requestId)) continue;
    seen.add(r.requestId);
    sorted.push(r);
  }
  const rejected: Placement[] = [];
  const requeued: Placement[] = [];
  const kept: Contender[] = [];
  const tieOf = new Map<string, number>();
  let ties: string[][] = [];

  for (const r of sorted) {
    const stale = staleness(r.plannedVersion, versions[r.resource] ?? 0);
    if (stale) {
      rejected.push({ requestId: r.requestId, disposition: 'rejected', reason: stale });
      continue;
    }
    const rivals = kept.filter((k) => actionsConflict(k.action, r.action, rules.conflicts));
    if (rivals.length === 0) {
      kept.push(r);
      continue;
    }
    const stronger = rivals.find((k) => k.authority > r.authority);
    if (stronger) {
      const reason = `conflicts with ${stronger.requestId} (${stronger.action}, authority ${stronger.authority} > ${r.authority})`;
      if (rules.onConflict === 'requeue')
        requeued.push({
          requestId: r.requestId,
          disposition: 'requeued',
          conflictWith: stronger.requestId,
          reason: `requeued after ${stronger.requestId}: ${reason}`,
        });
      else rejected.push({ requestId: r.requestId, disposition: 'rejected', reason, conflictWith: stronger.requestId });
      continue;
    }
    // Equal authority (sorted: never lower): one tie with every equal rival, merging their ties.
    const joined = [...new Set(rivals.map((k) => tieOf.get(k.requestId)).filter((t): t is number => t !== undefined))];
    const target = joined[0] ?? ties.push([]) - 1;
    for (const t of joined.slice(1)) {
      for (const id of ties[t]!) tieOf.set(id, target);
      ties[target]!.push(...ties[t]!);
      ties[t] = [];
    }
    for (const k of rivals) {
      if (tieOf.has(k.requestId)) continue;
      tieOf.set(k.requestId, target);
      ties[target]!.push(k.requestId);
    }
    tieOf.set(r.requestId, target);
    ties[target]!.push(r.requestId);
    kept.push(r);
  }

  // Renumber ties (merged ones are empty) and order their contenders like the batch.
  const rank = new Map(kept.map((k, i) => [k.requestId, i]));
  const renumber = new Map<number, number>();
  const compact: string[][] = [];
  ties.forEach((contenders, i) => {
    if (contenders.length === 0) return;
    renumber.set(i, compact.length);
    compact.push([...contenders].sort((a, b) => rank.get(a)! - rank.get(b)!));
  });
  ties = compact;
  const queue: Placement[] = kept.map((k) => {
    const t = tieOf.get(k.requestId);
    if (t === undefined) return { requestId: k.requestId, disposition: 'queued' };
    const tie = renumber.get(t)!;
    const other = ties[tie]!.find((id) => id !== k.requestId)!;
    return { requestId: k.requestId, disposition: 'tie', tie, conflictWith: other };
  });
  return { queue: [...queue, ...requeued], rejected, ties };
}

/**
 * Settles a tie for `winner`: the winner stays, then each other contender (in order) stays unless it
 * conflicts with one that stays. Returns those that stay (in order) and those that lose, with whom.
 */
export function settleTie(
  contenders: readonly Contender[],
  winner: string,
  rules: ConflictRules,
): { kept: string[]; lost: { requestId: string; conflictWith: string }[] } {
  const w = contenders.find((c) => c.requestId === winner);
  if (!w) throw new Error(`${winner} is not a contender of this tie`);
  const kept: Contender[] = [w];
  const lost: { requestId: string; conflictWith: string }[] = [];
  for (const c of [...contenders].sort(compareContenders)) {
    if (c.requestId === winner) continue;
    const rival = kept.find((k) => actionsConflict(k.action, c.action, rules.conflicts));
    if (rival) lost.push({ requestId: c.requestId, conflictWith: rival.requestId });
    else kept.push(c);
  }
  const order = new Map([...contenders].sort(compareContenders).map((c, i) => [c.requestId, i]));
  return { kept: kept.map((k) => k.requestId).sort((a, b) => order.get(a)! - order.get(b)!), lost };
}
