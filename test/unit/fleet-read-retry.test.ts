import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { FleetMember } from '../../activities/fleet';
import type { PolicyStore } from '../../activities/policy-store';

/**
 * The fleet check when the server cannot answer for a moment (a restarting database briefly says
 * "namespace not found"): the registry is read again within `recoveryWaitMs` before the decision is
 * denied, and a read that failed is not reused by the next decision.
 */
function member(describe: jest.Mock, recoveryWaitMs: number): FleetMember {
  const client = {
    workflow: {
      getHandle: () => ({ describe }),
      signalWithStart: jest.fn(() => Promise.resolve(undefined)),
      start: jest.fn(() => Promise.resolve(undefined)),
    },
  } as unknown as Client;
  return new FleetMember(client, { current: () => undefined } as unknown as PolicyStore, 'q', { recoveryWaitMs });
}

test('a transient server error is read again, and the answer after it stands', async () => {
  let calls = 0;
  const describe = jest.fn(() => {
    calls += 1;
    if (calls <= 2) return Promise.reject(new Error("Namespace not found: 'default'"));
    return Promise.reject(new WorkflowNotFoundError('no registry', 'governor-fleet', undefined));
  });
  const verdict = await member(describe, 5000).check(undefined);
  expect(describe).toHaveBeenCalledTimes(3);
  expect(verdict).toEqual({ ok: true }); // no registry was ever started: no fleet declared
});

test('an error that lasts past recoveryWaitMs is a deny naming it, and is not reused by the next decision', async () => {
  const describe = jest.fn(() => Promise.reject(new Error("Namespace not found: 'default'")));
  const fleet = member(describe, 300);
  const verdict = await fleet.check(undefined);
  expect(verdict).toEqual({
    ok: false,
    reason:
      "the fleet's active policy bundle is unknown: the fleet registry cannot be read (Namespace not found: 'default')",
  });
  const first = describe.mock.calls.length;
  expect(first).toBeGreaterThan(1);
  expect((await fleet.check(undefined)).ok).toBe(false);
  expect(describe.mock.calls.length).toBeGreaterThan(first);
});
