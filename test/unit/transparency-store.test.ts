import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { LogDiverged, TransparencyStore, type StoredLeaf } from '../../activities/transparency';
import { anchorCheckpoint, DEFAULT_MAX_IN_FLIGHT_APPENDS } from '../../audit/transparency-log';
import { checkpointLeafHash } from '../../audit/transparency';
import type { CheckpointLeaf, ProofAnchor } from '../../contracts/transparency';

/**
 * The transparency log's leaf store keeps what it read across its own appends (no re-read of every leaf per
 * batch) and still sees every other change to the file; `anchorCheckpoint` sends a log at most `maxInFlight`
 * appends at a time from one client (issue 20 item 3: the 1,000-chain test).
 */

function leafAt(index: number): StoredLeaf {
  const leaf: CheckpointLeaf = {
    v: 1,
    chainId: `chain-${index}`,
    runId: `run-${index}`,
    seq: 3,
    hash: index.toString(16).padStart(64, '0'),
    checkpoint: `jws-${index}`,
  };
  return { index, leaf, hash: checkpointLeafHash(leaf) };
}

describe('TransparencyStore', () => {
  let home: string;
  beforeEach(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-tlog-store-'));
  });
  afterEach(() => fs.rmSync(home, { recursive: true, force: true }));

  test('its own appends extend what it read: the same leaves and root as a fresh read of the file', () => {
    const store = new TransparencyStore(home, 'default', 'log');
    expect(store.load().leaves).toEqual([]);
    store.append([leafAt(0), leafAt(1)]);
    const read = store.load();
    const reads = jest.spyOn(fs, 'readFileSync');
    store.append([leafAt(2)]);
    const kept = store.load();
    expect(reads.mock.calls.filter(([f]) => f === store.leavesFile)).toHaveLength(0);
    reads.mockRestore();
    expect(kept.leaves.map((l) => l.index)).toEqual([0, 1, 2]);
    const fresh = new TransparencyStore(home, 'default', 'log').load();
    expect(kept.leaves).toEqual(fresh.leaves);
    expect(store.rootAt(kept.hashes, 3)).toBe(store.rootAt(fresh.hashes, 3));
    // The earlier state is not changed by the append (callers hold it).
    expect(read.leaves).toHaveLength(2);
  });

  test('another writer and an edit of the file are read and checked again', () => {
    const store = new TransparencyStore(home, 'default', 'log');
    store.append([leafAt(0), leafAt(1)]);
    new TransparencyStore(home, 'default', 'log').append([leafAt(2)]);
    expect(store.load().leaves.map((l) => l.index)).toEqual([0, 1, 2]);
    // Another writer between this store's read and its append: its next load reads the file again.
    store.load();
    new TransparencyStore(home, 'default', 'log').append([leafAt(3)]);
    store.append([leafAt(4)]);
    expect(store.load().leaves.map((l) => l.index)).toEqual([0, 1, 2, 3, 4]);
    // Two lines swapped (same size): refused.
    const lines = fs.readFileSync(store.leavesFile, 'utf8').trimEnd().split('\n');
    [lines[1], lines[2]] = [lines[2]!, lines[1]!];
    fs.writeFileSync(store.leavesFile, lines.join('\n') + '\n');
    expect(() => store.load()).toThrow(LogDiverged);
  });

  test('an append whose leaves do not follow what it read is not kept: the next load reads the file', () => {
    const store = new TransparencyStore(home, 'default', 'log');
    store.append([leafAt(0)]);
    store.load();
    store.append([leafAt(5)]); // a wrong index: the file now holds a bad line
    expect(() => store.load()).toThrow(/holds leaf 5, not 1/);
  });
});

describe('anchorCheckpoint', () => {
  /** A client whose update-with-start answers after a tick, counting the calls in flight. */
  function fakeClient(fail?: (call: number) => Error | undefined) {
    let active = 0;
    let calls = 0;
    const seen = { max: 0, calls: 0 };
    const client = {
      workflow: {
        async executeUpdateWithStart(_update: unknown, options: { args: [{ chainId: string }] }) {
          const call = calls++;
          seen.calls = calls;
          active++;
          seen.max = Math.max(seen.max, active);
          try {
            await new Promise((res) => setTimeout(res, 2));
            const err = fail?.(call);
            if (err) throw err;
            return { log: 'l', index: Number(options.args[0].chainId.slice(1)) } as unknown as ProofAnchor;
          } finally {
            active--;
          }
        },
      },
    } as unknown as Client;
    return { client, seen };
  }

  test(`sends at most ${DEFAULT_MAX_IN_FLIGHT_APPENDS} appends to a log at a time; the rest wait, none is lost`, async () => {
    const { client, seen } = fakeClient();
    const anchors = await Promise.all(
      Array.from({ length: 60 }, (_, i) => anchorCheckpoint(client, { chainId: `c${i}` }, { taskQueue: 'q' })),
    );
    expect(anchors.map((a) => a.index)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(seen.max).toBe(DEFAULT_MAX_IN_FLIGHT_APPENDS);
    expect(seen.calls).toBe(60);
  });

  test('maxInFlight is per log; a refusal over the server limit is retried', async () => {
    const exhausted = Object.assign(new Error('limit on number of concurrent in-flight updates'), { code: 8 });
    const { client, seen } = fakeClient((call) => (call % 5 === 0 ? exhausted : undefined));
    const anchors = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        anchorCheckpoint(client, { chainId: `c${i}` }, { taskQueue: 'q', logId: 'a', maxInFlight: 3 }),
      ),
    );
    expect(anchors).toHaveLength(20);
    expect(seen.max).toBe(3);
    expect(seen.calls).toBeGreaterThan(20);
    // Two logs: each its own slots.
    const two = fakeClient();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        anchorCheckpoint(
          two.client,
          { chainId: `c${i}` },
          { taskQueue: 'q', logId: i % 2 ? 'a' : 'b', maxInFlight: 2 },
        ),
      ),
    );
    expect(two.seen.max).toBe(4);
  });

  test('a refusal that is not transient is thrown, and frees its slot', async () => {
    const refused = new Error('GOVERNOR_ANCHOR_REFUSED: no such workflow');
    const { client } = fakeClient((call) => (call === 0 ? refused : undefined));
    await expect(
      anchorCheckpoint(client, { chainId: 'c0' }, { taskQueue: 'q', logId: 'x', maxInFlight: 1 }),
    ).rejects.toBe(refused);
    await expect(
      anchorCheckpoint(client, { chainId: 'c1' }, { taskQueue: 'q', logId: 'x', maxInFlight: 1 }),
    ).resolves.toMatchObject({ index: 1 });
  });
});
