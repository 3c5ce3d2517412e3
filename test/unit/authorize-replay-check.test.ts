import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authorizeAction, type AuthorizeInput } from '../../activities/authorize';
import { PolicyStore } from '../../activities/policy-store';
import { GENESIS_HASH } from '../../contracts/receipt';
import { initKeys, issueAttestation, issueCredential } from '../../identity';
import { DEFAULT_BUNDLE_DIR } from '../harness/policy';

/*
 * The credential's replay check (`credential.jtiReplay: bind-to-chain`, the default) runs while the
 * attestation is verified and policy evaluated (its first call per chain is a server round trip). Its
 * verdict still decides first, exactly as when it ran before them: a replayed credential is denied
 * whatever the attestation and policy say, a check that cannot decide throws (retried, then denied),
 * and the check is made only for a verified credential whose subject is the chain's workload.
 */

const WORKLOAD = 'agent:release-bot';
let home: string;
let store: PolicyStore;
beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'governor-replay-check-'));
  await initKeys(home);
  store = new PolicyStore();
  store.activateDir(DEFAULT_BUNDLE_DIR);
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

async function input(overrides: Partial<AuthorizeInput> = {}): Promise<AuthorizeInput> {
  return {
    chainId: 'chain-1',
    stepId: 's1',
    kind: 'step',
    workload: WORKLOAD,
    action: 'deploy',
    resource: { type: 'Environment', id: 'staging' },
    context: {},
    credential: await issueCredential({ home, sub: WORKLOAD }),
    attestation: await issueAttestation({ home, sub: WORKLOAD }),
    firstRunId: 'run-1',
    prev: { seq: 0, hash: GENESIS_HASH },
    ...overrides,
  };
}

/** A replay check answering `answer` after a few event-loop turns, recording what it was asked. */
function check(answer: () => string | undefined) {
  const calls: { jti: string; chainId: string; firstRunId?: string }[] = [];
  const bindCredential = async (c: { jti: string }, chain: { chainId: string; firstRunId?: string }) => {
    calls.push({ jti: c.jti, ...chain });
    await new Promise((resolve) => setTimeout(resolve, 20));
    return answer();
  };
  return { calls, bindCredential };
}

describe('authorize: the credential replay check', () => {
  it('allows when the credential is bound to this chain, after asking once with the verified jti', async () => {
    const c = check(() => undefined);
    const result = await authorizeAction(store, home, await input(), new Date(), { bindCredential: c.bindCredential });
    expect(result.decision.effect).toBe('allow');
    expect(c.calls).toEqual([{ jti: expect.any(String), chainId: 'chain-1', firstRunId: 'run-1' }]);
  });

  it('denies a replayed credential even though policy allows the action', async () => {
    const c = check(() => 'credential replayed: its jti is already bound to another chain');
    const result = await authorizeAction(store, home, await input(), new Date(), { bindCredential: c.bindCredential });
    expect(result.decision.effect).toBe('deny');
    expect(result.decision.reason).toContain('credential replayed');
    expect(result.request).toBeUndefined(); // the policy's verdict is not returned
  });

  it('denies a replayed credential with the replay as the reason when the attestation is invalid too', async () => {
    const c = check(() => 'credential replayed: its jti is already bound to another chain');
    const attestation = await issueAttestation({ home, sub: 'agent:someone-else' });
    const result = await authorizeAction(store, home, await input({ attestation }), new Date(), {
      bindCredential: c.bindCredential,
    });
    expect(result.decision.effect).toBe('deny');
    expect(result.decision.reason).toContain('credential replayed');
    // Not replayed, the same input is denied for its attestation.
    const bound = await authorizeAction(store, home, await input({ attestation }), new Date(), {
      bindCredential: check(() => undefined).bindCredential,
    });
    expect(bound.decision.effect).toBe('deny');
    expect(bound.decision.reason).not.toContain('credential replayed');
  });

  it('throws when the check cannot decide, even though policy allows (fail closed: retried, then denied)', async () => {
    const c = check(() => {
      throw new Error('server unavailable');
    });
    await expect(
      authorizeAction(store, home, await input(), new Date(), { bindCredential: c.bindCredential }),
    ).rejects.toThrow('server unavailable');
  });

  it('is not asked for a credential that does not verify or names another workload', async () => {
    const c = check(() => undefined);
    const other = await issueCredential({ home, sub: 'agent:someone-else' });
    const denied = await authorizeAction(store, home, await input({ credential: other }), new Date(), {
      bindCredential: c.bindCredential,
    });
    expect(denied.decision.effect).toBe('deny');
    const forged = await authorizeAction(store, home, await input({ credential: 'a.b.c' }), new Date(), {
      bindCredential: c.bindCredential,
    });
    expect(forged.decision.effect).toBe('deny');
    expect(c.calls).toEqual([]);
  });
});
