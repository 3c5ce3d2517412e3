import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createArchiveActivities } from '../../activities/archive';
import type { ArchiveStore } from '../../audit/archive';
import type { SweepResult } from '../../contracts/archive';

/*
 * How far back the archiver's sweeps list closed chains (activities/archive.ts `listSince`). Visibility is modelled
 * with a lag: each closed chain has the time it closed (its CloseTime) and the time visibility first lists it. The
 * sweep's queries are answered from that model, and every chain a sweep lists is then looked up (here: not found,
 * so the sweep refuses it and moves on), which is how the test sees what each sweep listed.
 */

const T0 = Date.parse('2026-11-30T12:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();

interface Closed {
  id: string;
  closedAt: number;
  visibleAt: number;
  /** Its id was used again by a run started after it closed. */
  reused?: boolean;
}

function visibility(chains: Closed[]) {
  let now = T0;
  let failNext = false;
  const bounds: number[] = [];
  const lookedUp: string[] = [];
  const described: string[] = [];
  const fetched: string[] = [];
  const notFound = (what: string) => Object.assign(new Error(`${what} not found`), { name: 'WorkflowNotFoundError' });
  const client = {
    // The worker runs each activity's client calls under the activity's abort signal.
    withAbortSignal: <R>(_signal: AbortSignal, fn: () => Promise<R>): Promise<R> => fn(),
    workflow: {
      list({ query }: { query: string }) {
        const rows: { workflowId: string; runId: string; closeTime: Date }[] = [];
        const from = /CloseTime >= '([^']+)'/.exec(query)?.[1];
        // The run lists of a batch (newest first).
        for (const c of chains)
          if (from === undefined && query.includes(`'${c.id}'`)) {
            if (c.reused) rows.push({ workflowId: c.id, runId: `run-${c.id}-2`, closeTime: new Date(c.closedAt + 1) });
            rows.push({ workflowId: c.id, runId: `run-${c.id}`, closeTime: new Date(c.closedAt) });
          }
        if (from !== undefined) {
          if (failNext) {
            failNext = false;
            throw Object.assign(new Error('visibility unavailable'), { code: 14 });
          }
          bounds.push(Date.parse(from));
          for (const c of chains)
            if (c.visibleAt <= now && c.closedAt >= Date.parse(from))
              rows.push({ workflowId: c.id, runId: `run-${c.id}`, closeTime: new Date(c.closedAt) });
        }
        return (async function* () {
          yield* rows;
        })();
      },
      getHandle(id: string, runId?: string) {
        return {
          describe: async () => {
            lookedUp.push(id);
            described.push(id);
            throw notFound(`workflow ${id}`);
          },
          fetchHistory: async () => {
            lookedUp.push(id);
            fetched.push(`${id}/${runId}`);
            throw notFound(`run ${runId}`);
          },
        };
      },
    },
  };
  return {
    client: client as unknown as Client,
    bounds,
    lookedUp,
    described,
    fetched,
    at(ms: number) {
      now = ms;
    },
    failNextListing() {
      failNext = true;
    },
  };
}

const quiet = new DefaultLogger('ERROR', () => undefined);

const store: ArchiveStore = {
  location: 'memory',
  where: (key) => `memory/${key}`,
  get: async () => undefined,
  putIfAbsent: async () => 'written',
};

describe("the archiver's sweep listing", () => {
  let clock: jest.SpyInstance<number, []>;
  afterEach(() => clock?.mockRestore());

  it('looks back over the whole lag at most every 10 s, and still lists a close that became visible late', async () => {
    const chains: Closed[] = [
      { id: 'a', closedAt: T0 - 1_000, visibleAt: T0 - 900 },
      // Closed before c, but visibility lists it only after a sweep has moved past c.
      { id: 'b', closedAt: T0 + 1_000, visibleAt: T0 + 7_000 },
      { id: 'c', closedAt: T0 + 5_000, visibleAt: T0 + 5_100 },
    ];
    const v = visibility(chains);
    let now = T0;
    clock = jest.spyOn(Date, 'now').mockImplementation(() => now);
    const { archiveSweep } = createArchiveActivities({ home: '/nonexistent', store });
    const env = new MockActivityEnvironment(undefined, { client: v.client, logger: quiet });
    const sweep = async (at: number, since: string) => {
      now = at;
      v.at(at);
      const seen = v.lookedUp.length;
      const r = (await env.run(archiveSweep, { taskQueue: 'governor', since })) as SweepResult;
      return { r, listed: v.lookedUp.slice(seen), from: v.bounds.at(-1)! };
    };

    // The process's first sweep is a full listing: the lag window before its position.
    let s = await sweep(T0, iso(T0 - 60_000));
    expect(s.from).toBe(T0 - 60_000 - 30_000);
    expect(s.listed).toEqual(['a']);
    expect(s.r.since).toBe(iso(T0 - 1_000));

    // Within 10 s: a short look-back (2 s). c is listed; b is not visible yet.
    s = await sweep(T0 + 6_000, s.r.since);
    expect(s.from).toBe(T0 - 1_000 - 2_000);
    expect(s.listed).toEqual(['c']);
    expect(s.r.since).toBe(iso(T0 + 5_000));

    // b is visible now, but it closed more than 2 s before the position: a short listing does not reach it.
    s = await sweep(T0 + 8_000, s.r.since);
    expect(s.from).toBe(T0 + 5_000 - 2_000);
    expect(s.listed).toEqual([]);

    // 10 s after the last full listing began: a full one, looking back over the lag and those 11 s. It lists b.
    s = await sweep(T0 + 11_000, s.r.since);
    expect(s.from).toBe(T0 + 5_000 - 30_000 - 11_000);
    expect(s.listed).toEqual(['b']);
    // The position stays at c: b closed before it.
    expect(s.r.since).toBe(iso(T0 + 5_000));
  });

  it('makes the listing after a failed full one full again, looking back from the last full listing that answered', async () => {
    const v = visibility([]);
    let now = T0;
    clock = jest.spyOn(Date, 'now').mockImplementation(() => now);
    const { archiveSweep } = createArchiveActivities({ home: '/nonexistent', store });
    const env = new MockActivityEnvironment(undefined, { client: v.client, logger: quiet });
    const since = iso(T0 - 5_000);
    await env.run(archiveSweep, { taskQueue: 'governor', since });
    expect(v.bounds.at(-1)).toBe(T0 - 5_000 - 30_000);

    now = T0 + 12_000;
    v.failNextListing();
    await expect(env.run(archiveSweep, { taskQueue: 'governor', since })).rejects.toThrow('visibility unavailable');

    // The retry 1 s later is full, and covers the 13 s since the last full listing that answered.
    now = T0 + 13_000;
    await env.run(archiveSweep, { taskQueue: 'governor', since });
    expect(v.bounds.at(-1)).toBe(T0 - 5_000 - 30_000 - 13_000);

    // Then short again.
    now = T0 + 14_000;
    await env.run(archiveSweep, { taskQueue: 'governor', since });
    expect(v.bounds.at(-1)).toBe(T0 - 5_000 - 2_000);
  });
  it('reads a closed chain from the run it listed, without a describe, unless its id has a newer run', async () => {
    const v = visibility([
      { id: 'plain', closedAt: T0 - 2_000, visibleAt: T0 - 1_900 },
      { id: 'reused', closedAt: T0 - 1_000, visibleAt: T0 - 900, reused: true },
    ]);
    clock = jest.spyOn(Date, 'now').mockImplementation(() => T0);
    const { archiveSweep } = createArchiveActivities({ home: '/nonexistent', store });
    const env = new MockActivityEnvironment(undefined, { client: v.client, logger: quiet });
    const r = (await env.run(archiveSweep, { taskQueue: 'governor', since: iso(T0 - 5_000) })) as SweepResult;
    // The listing's type filter and the run list stand for the describe: the newest run's history is read at once.
    expect(v.fetched).toEqual(['plain/run-plain']);
    // A newer run of the id: described, as before (the lineage is read from the newest run).
    expect(v.described).toEqual(['reused']);
    expect(r.refused).toBe(2);
  });
});
