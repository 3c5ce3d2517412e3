import fc from 'fast-check';
import { Coordination, findDomain, matchesResourcePattern } from '../../contracts/coordination';
import {
  actionsConflict,
  compareContenders,
  resolveBatch,
  settleTie,
  staleness,
  type ConflictRules,
  type Contender,
} from '../../workflows/coordination-order';

const hex = (n: number): string => n.toString(16).padStart(64, '0');
const c = (requestId: string, action: string, authority: number, extra: Partial<Contender> = {}): Contender => ({
  requestId,
  action,
  resource: 'Environment::"prod"',
  authority,
  priority: 0,
  requestDigest: hex(requestId.split('').reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % 1_000_003, 7)),
  ...extra,
});
const reject: ConflictRules = {
  conflicts: [
    ['deploy', 'rollback'],
    ['migrate', 'migrate'],
  ],
  onConflict: 'reject',
};

describe('ordering', () => {
  it('orders by authority desc, then priority desc, then request digest', () => {
    const batch = [
      c('low', 'notify', 0),
      c('mid-b', 'notify', 5, { requestDigest: hex(2) }),
      c('top', 'notify', 10),
      c('mid-a', 'notify', 5, { requestDigest: hex(1) }),
      c('mid-urgent', 'notify', 5, { priority: 9, requestDigest: hex(9) }),
    ];
    const r = resolveBatch(batch, reject, {});
    expect(r.queue.map((p) => p.requestId)).toEqual(['top', 'mid-urgent', 'mid-a', 'mid-b', 'low']);
    expect(r.rejected).toEqual([]);
    expect([...batch].sort(compareContenders).map((x) => x.requestId)).toEqual([
      'top',
      'mid-urgent',
      'mid-a',
      'mid-b',
      'low',
    ]);
  });

  it('gives the same queue, rejections and ties for every arrival order (property)', () => {
    const actions = ['deploy', 'rollback', 'migrate', 'notify'];
    const contender = fc.record({
      action: fc.constantFrom(...actions),
      authority: fc.integer({ min: 0, max: 3 }),
      priority: fc.integer({ min: 0, max: 2 }),
      planned: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(
        fc.array(contender, { minLength: 1, maxLength: 9 }),
        fc.constantFrom<ConflictRules['onConflict']>('reject', 'requeue'),
        fc.integer(),
        (specs, onConflict, seed) => {
          const batch = specs.map((s, i) =>
            c(`chain-${i}/step`, s.action, s.authority, {
              priority: s.priority,
              plannedVersion: s.planned,
              requestDigest: hex((i * 7919 + 13) % 9973),
            }),
          );
          const rules = { ...reject, onConflict };
          const versions = { 'Environment::"prod"': 1 };
          const expected = resolveBatch(batch, rules, versions);
          const shuffled = fc.sample(fc.shuffledSubarray(batch, { minLength: batch.length, maxLength: batch.length }), {
            seed,
            numRuns: 1,
          })[0]!;
          expect(resolveBatch(shuffled, rules, versions)).toEqual(expected);
          expect(resolveBatch([...batch].reverse(), rules, versions)).toEqual(expected);
          // every request is placed exactly once
          const placed = [...expected.queue, ...expected.rejected].map((p) => p.requestId).sort();
          expect(placed).toEqual(batch.map((b) => b.requestId).sort());
        },
      ),
      { numRuns: 300 },
    );
  });

  it('ignores a repeated request id', () => {
    const r = resolveBatch([c('a', 'notify', 1), c('a', 'notify', 1)], reject, {});
    expect(r.queue).toEqual([{ requestId: 'a', disposition: 'queued' }]);
  });
});

describe('conflicts', () => {
  it('lets the higher authority win and rejects the other, naming the winner', () => {
    const r = resolveBatch([c('rb', 'rollback', 5), c('dep', 'deploy', 10), c('note', 'notify', 0)], reject, {});
    expect(r.queue.map((p) => p.requestId)).toEqual(['dep', 'note']);
    expect(r.rejected).toEqual([
      {
        requestId: 'rb',
        disposition: 'rejected',
        conflictWith: 'dep',
        reason: 'conflicts with dep (deploy, authority 10 > 5)',
      },
    ]);
  });

  it('requeues the loser after the batch when the domain says so', () => {
    const r = resolveBatch(
      [c('rb', 'rollback', 5), c('dep', 'deploy', 10), c('note', 'notify', 0)],
      { ...reject, onConflict: 'requeue' },
      {},
    );
    expect(r.queue.map((p) => [p.requestId, p.disposition])).toEqual([
      ['dep', 'queued'],
      ['note', 'queued'],
      ['rb', 'requeued'],
    ]);
    expect(r.queue[2]).toMatchObject({ conflictWith: 'dep', reason: expect.stringContaining('requeued after dep') });
  });

  it('treats conflict pairs as unordered and lets a pair name one action twice', () => {
    expect(actionsConflict('rollback', 'deploy', reject.conflicts)).toBe(true);
    expect(actionsConflict('migrate', 'migrate', reject.conflicts)).toBe(true);
    expect(actionsConflict('deploy', 'deploy', reject.conflicts)).toBe(false);
  });

  it('turns a conflict between equal authorities into a tie; a weaker conflicting request loses to the tie', () => {
    const r = resolveBatch(
      [c('a', 'deploy', 5), c('b', 'rollback', 5), c('weak', 'rollback', 1), c('free', 'notify', 5)],
      reject,
      {},
    );
    expect(r.ties).toHaveLength(1);
    expect(r.ties[0]!.sort()).toEqual(['a', 'b']);
    expect(
      r.queue
        .filter((p) => p.disposition === 'tie')
        .map((p) => p.requestId)
        .sort(),
    ).toEqual(['a', 'b']);
    expect(r.queue.find((p) => p.requestId === 'free')).toEqual({ requestId: 'free', disposition: 'queued' });
    expect(r.rejected).toEqual([
      {
        requestId: 'weak',
        disposition: 'rejected',
        conflictWith: 'a',
        reason: 'conflicts with a (deploy, authority 5 > 1)',
      },
    ]);
  });

  it('merges ties joined by one request', () => {
    const r = resolveBatch(
      [c('m1', 'migrate', 3), c('d1', 'deploy', 3), c('m2', 'migrate', 3), c('r1', 'rollback', 3)],
      reject,
      {},
    );
    expect(r.ties.map((t) => [...t].sort())).toEqual(
      expect.arrayContaining([
        ['m1', 'm2'],
        ['d1', 'r1'],
      ]),
    );
    expect(r.ties).toHaveLength(2);
  });

  it('settles a tie: the winner stays, contenders conflicting with it lose, others stay', () => {
    const contenders = [c('a', 'deploy', 5), c('b', 'rollback', 5), c('d', 'deploy', 5)];
    expect(settleTie(contenders, 'b', reject)).toEqual({
      kept: ['b'],
      lost: expect.arrayContaining([
        { requestId: 'a', conflictWith: 'b' },
        { requestId: 'd', conflictWith: 'b' },
      ]),
    });
    const a = settleTie(contenders, 'a', reject);
    expect(a.lost).toEqual([{ requestId: 'b', conflictWith: 'a' }]);
    expect(a.kept.sort()).toEqual(['a', 'd']);
    expect(() => settleTie(contenders, 'zz', reject)).toThrow('not a contender');
  });
});

describe('versions', () => {
  it('rejects a request planned against an older (or unknown newer) version before it can win a conflict', () => {
    expect(staleness(undefined, 4)).toBeUndefined();
    expect(staleness(4, 4)).toBeUndefined();
    expect(staleness(2, 4)).toBe('stale: planned against version 2, current 4');
    expect(staleness(5, 4)).toBe('unknown version: planned against version 5, current 4');
    const r = resolveBatch([c('old', 'deploy', 10, { plannedVersion: 0 }), c('rb', 'rollback', 1)], reject, {
      'Environment::"prod"': 1,
    });
    expect(r.rejected).toEqual([
      { requestId: 'old', disposition: 'rejected', reason: 'stale: planned against version 0, current 1' },
    ]);
    expect(r.queue.map((p) => p.requestId)).toEqual(['rb']);
  });
});

describe('resource patterns and the manifest section', () => {
  it.each([
    ['Environment::"prod"', 'Environment::"prod"', true],
    ['Environment::"prod"', 'Environment::"prod-2"', false],
    ['Environment::*', 'Environment::"anything"', true],
    ['Environment::*', 'Database::"prod"', false],
    ['Environment::"prod-*"', 'Environment::"prod-eu"', true],
    ['Environment::"prod-*"', 'Environment::"staging"', false],
    ['Db::Table::"orders.*"', 'Db::Table::"orders.items"', true],
    ['Db::Table::*', 'Table::"x"', false],
    ['Environment::"a.b"', 'Environment::"aXb"', false],
  ])('%s matches %s: %s', (pattern, label, expected) => {
    expect(matchesResourcePattern(pattern, label)).toBe(expected);
  });

  it('validates domains strictly, applies defaults and picks the first matching domain', () => {
    const parsed = Coordination.parse({
      domains: [
        {
          name: 'cluster:prod-eu',
          resources: ['Environment::"prod"'],
          conflicts: [['deploy', 'rollback']],
          tieBreakerRole: 'sre-lead',
        },
        { name: 'everything', resources: ['Environment::*'], tieBreakerRole: 'sre-lead' },
      ],
      authority: { workloads: { 'agent:release-bot': 10 } },
    });
    expect(parsed.domains[0]).toEqual({
      name: 'cluster:prod-eu',
      resources: ['Environment::"prod"'],
      conflicts: [['deploy', 'rollback']],
      onConflict: 'reject',
      batchingWindow: '2s',
      tieBreakerRole: 'sre-lead',
      decisionDeadline: '15m',
      holdTimeout: '1h',
    });
    expect(parsed.authority).toEqual({ workloads: { 'agent:release-bot': 10 }, roles: {}, default: 0 });
    expect(findDomain(parsed.domains, 'Environment::"prod"')?.name).toBe('cluster:prod-eu');
    expect(findDomain(parsed.domains, 'Environment::"dev"')?.name).toBe('everything');
    expect(findDomain(parsed.domains, 'Database::"prod"')).toBeUndefined();
    expect(Coordination.parse({})).toEqual({ domains: [], authority: { workloads: {}, roles: {}, default: 0 } });

    const bad = Coordination.safeParse({
      domains: [
        { name: 'a', resources: ['prod'], tieBreakerRole: 'x', typo: 1 },
        { name: 'a', resources: ['Environment::*'], tieBreakerRole: 'x', batchingWindow: 'soon' },
      ],
    });
    expect(bad.success).toBe(false);
    const messages = bad.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(messages).toEqual(
      expect.arrayContaining([
        expect.stringContaining('domains.0.resources.0: must be a resource pattern'),
        expect.stringContaining('domains.1.batchingWindow: must be a duration'),
      ]),
    );
    expect(messages.some((m) => m.includes('typo'))).toBe(true);
  });
});
