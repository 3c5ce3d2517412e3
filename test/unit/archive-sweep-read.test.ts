import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createArchiveActivities } from '../../activities/archive';
import type { ArchiveStore } from '../../audit/archive';
import { fetchChainHistories } from '../../audit/verify';
import type { SweepResult } from '../../contracts/archive';
import { ErrorCode } from '../../contracts/errors';

/*
 * How the archiver's sweep reads a closed chain (activities/archive.ts): it lists closed chains by type, then the
 * run lists of its batch (newest first). When the listed run is the newest of its id, the chain's lineage is read
 * from it without a describe, and the run's own history must name a governed chain's or session's type; otherwise
 * (the id used again by a later run) the chain is described, as before. Temporal is modelled by a client that
 * answers those calls and records them.
 */

const T0 = Date.parse('2026-11-30T12:00:00.000Z');
const quiet = new DefaultLogger('ERROR', () => undefined);
const store: ArchiveStore = {
  location: 'memory',
  where: (key) => `memory/${key}`,
  get: async () => undefined,
  putIfAbsent: async () => 'written',
};

interface Closed {
  id: string;
  closedAt: number;
  /** Its id was used again by a run started after it closed. */
  reused?: boolean;
  /** The type its history's first event names (default: a governed chain). */
  type?: string;
}

function temporalModel(chains: Closed[], histories: 'not found' | 'recorded') {
  const described: string[] = [];
  const fetched: string[] = [];
  const notFound = (what: string) => Object.assign(new Error(`${what} not found`), { name: 'WorkflowNotFoundError' });
  const client = {
    // The worker runs each activity's client calls under the activity's abort signal.
    withAbortSignal: <R>(_signal: AbortSignal, fn: () => Promise<R>): Promise<R> => fn(),
    workflow: {
      list({ query }: { query: string }) {
        const rows: { workflowId: string; runId: string; closeTime: Date }[] = [];
        const listing = query.includes('CloseTime >=');
        for (const c of chains) {
          // The sweep's listing (closed chains), or the run lists of a batch (newest first).
          if (!listing && !query.includes(`'${c.id}'`)) continue;
          if (c.reused && !listing)
            rows.push({ workflowId: c.id, runId: `run-${c.id}-2`, closeTime: new Date(c.closedAt + 1) });
          rows.push({ workflowId: c.id, runId: `run-${c.id}`, closeTime: new Date(c.closedAt) });
        }
        return (async function* () {
          yield* rows;
        })();
      },
      getHandle(id: string, runId?: string) {
        return {
          describe: async () => {
            described.push(id);
            throw notFound(`workflow ${id}`);
          },
          fetchHistory: async () => {
            fetched.push(`${id}/${runId}`);
            if (histories === 'not found') throw notFound(`run ${runId}`);
            const type = chains.find((c) => c.id === id)?.type ?? 'governedChainWorkflow';
            return {
              events: [
                {
                  eventId: '1',
                  eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
                  workflowExecutionStartedEventAttributes: { workflowType: { name: type } },
                },
              ],
            };
          },
        };
      },
    },
  };
  return { client: client as unknown as Client, described, fetched };
}

describe("the archiver's sweep reads a closed chain", () => {
  let clock: jest.SpyInstance<number, []>;
  afterEach(() => clock?.mockRestore());

  it('from the run it listed, without a describe, unless its id has a newer run', async () => {
    const t = temporalModel(
      [
        { id: 'plain', closedAt: T0 - 2_000 },
        { id: 'reused', closedAt: T0 - 1_000, reused: true },
      ],
      'not found',
    );
    clock = jest.spyOn(Date, 'now').mockImplementation(() => T0);
    const { archiveSweep } = createArchiveActivities({ home: '/nonexistent', store });
    const env = new MockActivityEnvironment(undefined, { client: t.client, logger: quiet });
    const r = (await env.run(archiveSweep, {
      taskQueue: 'governor',
      since: new Date(T0 - 5_000).toISOString(),
    })) as SweepResult;
    // The listing's type filter and the run list stand for the describe: the newest run's history is read at once.
    expect(t.fetched).toEqual(['plain/run-plain']);
    // A newer run of the id: described, as before (the lineage is read from the newest run).
    expect(t.described).toEqual(['reused']);
    expect(r.refused).toBe(2);
  });

  it('and, not described, refuses a run whose history names another workflow type, naming it', async () => {
    const t = temporalModel(
      [
        { id: 'chain', closedAt: T0 },
        { id: 'impostor', closedAt: T0, type: 'paymentsWorkflow' },
      ],
      'recorded',
    );
    const read = await fetchChainHistories(t.client, 'chain', 10, ['run-chain'], 'run-chain');
    expect(read).toHaveLength(1);
    expect(read.runs).toEqual([{ runId: 'run-chain', lineage: 0 }]);
    await expect(fetchChainHistories(t.client, 'impostor', 10, ['run-impostor'], 'run-impostor')).rejects.toMatchObject(
      { code: ErrorCode.InvalidInput, message: 'workflow impostor is a paymentsWorkflow, not a governed chain' },
    );
    expect(t.described).toEqual([]);
  });
});
