import { Client, Connection } from '@temporalio/client';
import { issueAttestation, issueCredential, keyPaths, loadPrivateKey } from '../../identity';
import { GovernorClient } from '../../sdk/client';
import { recordedDecisions } from '../../audit/history';
import { ErrorCode } from '../../contracts/errors';
import type { ChainResult } from '../../contracts/state';
import { loadBundle } from '../../policies/bundle';
import { signBundleDir } from '../../policies/signing';
import type { GovernorWorkerOptions } from '../../workers/worker';
import { addStagingFreeze, copyBundle, editBundleFile } from '../harness/policy';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/** `requireSignedPolicy` on the real server: refusing to start, and refusing to roll out. */

const WORKLOAD = 'agent:release-bot';
let home: string;
let foreignHome: string;
let connection: Connection;
let client: Client;

beforeAll(async () => {
  home = await makeHome();
  foreignHome = await makeHome();
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
});

afterAll(async () => {
  await connection?.close();
});

const sign = async (dir: string, from = home) => signBundleDir(dir, await loadPrivateKey(from, 'policy-signing'));

/** A governor worker for these tests (shared harness, this file's home, signed bundles required). */
function startWorker(options: Partial<GovernorWorkerOptions> & { taskQueue: string }) {
  return startGovernorWorker({ home, requireSignedPolicy: true, ...options });
}

async function runChain(taskQueue: string, env = 'staging'): Promise<{ result: ChainResult; chainId: string }> {
  const gc = new GovernorClient(client, taskQueue);
  const handle = await gc.start(
    {
      workload: WORKLOAD,
      steps: [{ id: 's1', action: 'deploy', resource: { type: 'Environment', id: env }, executor: { type: 'noop' } }],
    },
    {
      credential: await issueCredential({ home, sub: WORKLOAD }),
      attestation: await issueAttestation({ home, sub: WORKLOAD }),
    },
  );
  return { result: (await handle.result()) as ChainResult, chainId: handle.workflowId };
}

describe('a worker with requireSignedPolicy', () => {
  it('refuses to start on an unsigned bundle', async () => {
    await expect(startWorker({ taskQueue: uniqueQueue('signed'), policiesDir: copyBundle() })).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      message: expect.stringMatching(/refused \(unsigned\): the bundle has no bundle\.sig/),
    });
  });

  it('refuses to start on a bundle changed after signing (tampered)', async () => {
    const dir = copyBundle();
    await sign(dir);
    editBundleFile(dir, 'deployments.cedar', '@quorum("2")', '@quorum("1")');
    await expect(startWorker({ taskQueue: uniqueQueue('signed'), policiesDir: dir })).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      message: expect.stringContaining('refused (tampered)'),
    });
  });

  it('refuses to start on a bundle signed by an untrusted key, and starts once that key is the configured trust', async () => {
    const dir = copyBundle();
    await sign(dir, foreignHome);
    await expect(startWorker({ taskQueue: uniqueQueue('signed'), policiesDir: dir })).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      message: expect.stringContaining('refused (untrusted)'),
    });
    const taskQueue = uniqueQueue('signed');
    const w = await startWorker({
      taskQueue,
      policiesDir: dir,
      policyTrustJwks: keyPaths(foreignHome, 'policy-signing').jwksPath,
    });
    try {
      expect(w.policies.current()!.signature).toMatchObject({ status: 'valid' });
      const { result } = await runChain(taskQueue);
      expect(result.status).toBe('Completed');
      expect(result.steps[0]!.decision!.bundleDigest).toBe(loadBundle(dir).digest);
    } finally {
      await w.stop();
    }
  });

  it('refuses to start when the trusted policy-signing JWKS is missing', async () => {
    const dir = copyBundle();
    await sign(dir);
    await expect(
      startWorker({
        taskQueue: uniqueQueue('signed'),
        policiesDir: dir,
        policyTrustJwks: `${home}/keys/absent.jwks.json`,
      }),
    ).rejects.toMatchObject({
      code: ErrorCode.KeysMissing,
      message: expect.stringContaining('absent.jwks.json'),
    });
  });

  it('runs on a signed bundle and rolls out only a re-signed change; an unsigned edit is refused and the old bundle keeps deciding', async () => {
    const dir = copyBundle();
    await sign(dir);
    const signedDigest = loadBundle(dir).digest;
    const taskQueue = uniqueQueue('signed');
    const w = await startWorker({ taskQueue, policiesDir: dir, watchPolicies: { debounceMs: 50, pollIntervalMs: 0 } });
    try {
      const first = await runChain(taskQueue);
      expect(first.result.status).toBe('Completed');
      expect(first.result.steps[0]!.decision!.bundleDigest).toBe(signedDigest);

      addStagingFreeze(dir); // edited, not re-signed
      await expect(w.watchers[0]!.check()).resolves.toMatchObject({
        kind: 'rejected',
        reason: expect.stringContaining('(tampered)'),
      });
      const second = await runChain(taskQueue);
      expect(second.result.status).toBe('Completed');
      expect(second.result.steps[0]!.decision!.bundleDigest).toBe(signedDigest);

      await sign(dir);
      await expect(w.watchers[0]!.check()).resolves.toMatchObject({
        kind: 'activated',
        digest: loadBundle(dir).digest,
        previous: signedDigest,
      });
      const third = await runChain(taskQueue);
      expect(third.result.status).toBe('Denied');
      const [decision] = recordedDecisions(await client.workflow.getHandle(third.chainId).fetchHistory());
      expect(decision!.decision).toMatchObject({
        effect: 'deny',
        bundleDigest: loadBundle(dir).digest,
        determiningPolicies: ['deploy-staging-freeze'],
      });
    } finally {
      await w.stop();
    }
  });
});
