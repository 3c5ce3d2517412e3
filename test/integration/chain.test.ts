import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { issueAttestation, issueCredential } from '../../identity';
import type { Chain } from '../../contracts/chain';
import { GovernorStatusKey, GovernorWorkloadKey, GovernorPolicyDigestKey } from '../../contracts/search-attributes';
import type { ChainResult } from '../../contracts/state';
import { GovernorClient } from '../../sdk/client';
import { createServiceActivities } from '../../examples/service/activities';
import { Ledger } from '../../examples/service/ledger';
import { defaultBundleWith } from '../harness/bundles';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

const WORKLOAD = 'agent:release-bot';
const root = path.join(__dirname, '..', '..');

let home: string;
let connection: Connection;
let client: Client;
let governor: Awaited<ReturnType<typeof startGovernorWorker>>;
let serviceConnection: NativeConnection;
let serviceWorker: Worker;
let serviceRun: Promise<void>;
let ledger: Ledger;
let gc: GovernorClient;
const taskQueue = uniqueQueue('governor');
const serviceQueue = uniqueQueue('service');
// A short credential grace period so the "no refresh" path ends in seconds; the http test's local
// endpoint allow-listed by its exact origin (address and port, bound in beforeAll).
let bundleDir: string;
let hookServer: http.Server;
let hookPort = 0;
const hookSeen: { key: string | undefined; method: string | undefined }[] = [];
const bundleWith = (origin: string): string =>
  defaultBundleWith((m) => {
    m.credential = { gracePeriod: '3s' };
    m.http = { allow: [{ origin }] };
  });

function serviceStep(
  id: string,
  action: string,
  resource: { type: string; id: string },
  extra: Record<string, unknown> = {},
) {
  return {
    id,
    action,
    resource,
    executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
    ...extra,
  };
}

async function creds(sub = WORKLOAD, options: { now?: Date; ttlSeconds?: number; home?: string } = {}) {
  const h = options.home ?? home;
  return {
    credential: await issueCredential({ home: h, sub, now: options.now, ttlSeconds: options.ttlSeconds }),
    attestation: await issueAttestation({ home: h, sub }),
  };
}

async function runChain(chain: unknown, c?: { credential: string; attestation: string }): Promise<ChainResult> {
  const handle = await gc.start(chain, c ?? (await creds()));
  return (await handle.result()) as ChainResult;
}

beforeAll(async () => {
  hookServer = http.createServer((req, res) => {
    hookSeen.push({ key: req.headers['idempotency-key'] as string | undefined, method: req.method });
    res.writeHead(req.url === '/fail' ? 500 : 202).end('ok');
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', () => r()));
  hookPort = (hookServer.address() as { port: number }).port;
  bundleDir = bundleWith(`http://127.0.0.1:${hookPort}`);
  home = await makeHome();
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
  gc = new GovernorClient(client, taskQueue);
  governor = await startGovernorWorker({ home, taskQueue, policiesDir: bundleDir });
  ledger = new Ledger();
  serviceConnection = await NativeConnection.connect({ address: testAddress() });
  serviceWorker = await Worker.create({
    connection: serviceConnection,
    taskQueue: serviceQueue,
    activities: createServiceActivities(ledger),
  });
  serviceRun = serviceWorker.run();
});

afterAll(async () => {
  if (hookServer?.listening) hookServer.close();
  serviceWorker?.shutdown();
  await serviceRun;
  await serviceConnection?.close();
  await governor?.stop();
  await connection?.close();
});

describe('governed chains on the real server', () => {
  it('completes an allowed chain, executing each step once on the service queue, with receipts and visibility', async () => {
    const chain = {
      workload: WORKLOAD,
      steps: [
        serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' }),
        serviceStep('announce', 'notify', { type: 'Channel', id: 'releases' }),
      ],
    };
    const handle = await gc.start(chain, await creds());
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(result.steps.map((s) => [s.id, s.status, s.decision?.effect])).toEqual([
      ['deploy', 'completed', 'allow'],
      ['announce', 'completed', 'allow'],
    ]);
    expect(ledger.has(`${handle.workflowId}/deploy`)).toBe(true);
    expect(ledger.has(`${handle.workflowId}/announce`)).toBe(true);
    // decision + execution per step, then the final checkpoint
    expect(result.receiptHead.seq).toBe(5);
    expect(result.checkpoint).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const decision = result.steps[0]!.decision!;
    expect(decision.determiningPolicies).toContain('deploy-environments-permit');
    expect(decision.bundleDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(decision.inputDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(Date.parse(decision.evaluatedAt)).not.toBeNaN();

    const description = await handle.describe();
    expect(description.typedSearchAttributes.get(GovernorStatusKey)).toBe('Completed');
    expect(description.typedSearchAttributes.get(GovernorWorkloadKey)).toBe(WORKLOAD);
    expect(description.typedSearchAttributes.get(GovernorPolicyDigestKey)).toBe(decision.bundleDigest);
    expect(await description.staticSummary()).toContain('deploy → notify');

    // The status query reports every step with its decision; activity summaries name the action.
    const state = await gc.status(handle.workflowId);
    expect(state.status).toBe('Completed');
    expect(state.steps[1]!.decision!.effect).toBe('allow');
    const history = await handle.fetchHistory();
    const summaries = (history.events ?? []).flatMap((e) =>
      e.userMetadata?.summary?.data ? [JSON.parse(Buffer.from(e.userMetadata.summary.data).toString()) as string] : [],
    );
    expect(summaries).toEqual(
      expect.arrayContaining([
        'authorize deploy on Environment::"staging"',
        'execute deploy on Environment::"staging"',
        'authorize notify on Channel::"releases"',
      ]),
    );
  });

  it('stops a denied chain before the step executes (the service never ran it)', async () => {
    const chain = { workload: WORKLOAD, steps: [serviceStep('drop', 'drop_table', { type: 'Database', id: 'prod' })] };
    const handle = await gc.start(chain, await creds());
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Denied');
    expect(result.steps[0]!.status).toBe('denied');
    expect(result.steps[0]!.decision!.effect).toBe('deny');
    expect(result.steps[0]!.decision!.determiningPolicies.length).toBeGreaterThan(0);
    expect(ledger.has(`${handle.workflowId}/drop`)).toBe(false);
    expect((await handle.describe()).typedSearchAttributes.get(GovernorStatusKey)).toBe('Denied');
  });

  const allowedChain = () => ({
    workload: WORKLOAD,
    steps: [serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' })],
  });

  it.each([
    [
      'forged (another issuer key)',
      async () => ({
        credential: await issueCredential({ home: await makeHome(), sub: WORKLOAD }),
        attestation: await issueAttestation({ home, sub: WORKLOAD }),
      }),
      /credential (signature invalid|signing key not found)/,
    ],
    [
      'wrong audience',
      async () => ({
        credential: await issueCredential({ home, sub: WORKLOAD, audience: 'someone-else' }),
        attestation: await issueAttestation({ home, sub: WORKLOAD }),
      }),
      /credential audience mismatch/,
    ],
    [
      'wrong issuer',
      async () => ({
        credential: await issueCredential({ home, sub: WORKLOAD, issuer: 'https://evil.example' }),
        attestation: await issueAttestation({ home, sub: WORKLOAD }),
      }),
      /credential issuer not trusted/,
    ],
    [
      'stale attestation',
      async () => ({
        credential: await issueCredential({ home, sub: WORKLOAD }),
        attestation: await issueAttestation({
          home,
          sub: WORKLOAD,
          now: new Date(Date.now() - 3_600_000),
          ttlSeconds: 86_400,
        }),
      }),
      /attestation is stale/,
    ],
    [
      'foreign attestation',
      async () => ({
        credential: await issueCredential({ home, sub: WORKLOAD }),
        attestation: await issueAttestation({ home, sub: 'agent:other' }),
      }),
      /attestation subject does not match/,
    ],
    [
      'credential of another workload',
      async () => creds('agent:other'),
      /credential subject does not match the chain workload/,
    ],
  ])('denies a chain with a %s credential before anything executes', async (_name, make, reason) => {
    const handle = await gc.start(allowedChain(), await make());
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Denied');
    expect(result.steps[0]!.decision!.errors.join(' ')).toMatch(reason);
    expect(result.reason).toMatch(reason);
    expect(ledger.has(`${handle.workflowId}/deploy`)).toBe(false);
  });

  it('waits for a refreshed credential, then denies an expired one after the grace period', async () => {
    const expired = await creds(WORKLOAD, { now: new Date(Date.now() - 120_000), ttlSeconds: 60 });
    const handle = await gc.start(allowedChain(), expired);
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Denied');
    expect(result.reason).toContain('credential expired and no refresh arrived within 3000');
    expect(ledger.has(`${handle.workflowId}/deploy`)).toBe(false);
  });

  it('accepts a refreshed credential while AwaitingCredential and finishes', async () => {
    const expired = await creds(WORKLOAD, { now: new Date(Date.now() - 120_000), ttlSeconds: 60 });
    const handle = await gc.start(allowedChain(), expired);
    for (let i = 0; i < 50; i++) {
      const s = await gc.status(handle.workflowId);
      if (s.status === 'AwaitingCredential') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const state = await gc.refreshCredential(handle.workflowId, { credential: (await creds()).credential });
    expect(['AwaitingCredential', 'Running']).toContain(state.status);
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(ledger.has(`${handle.workflowId}/deploy`)).toBe(true);
  });

  it('denies when policy evaluation errors (Cedar would skip the erroring forbid; we do not)', async () => {
    const q = uniqueQueue('governor-erroring');
    const erroring = path.join(root, 'test', 'fixtures', 'bundles', 'erroring');
    const w = await startGovernorWorker({ home, taskQueue: q, policiesDir: erroring });
    try {
      // size * 10^12 overflows a Cedar Long: both forbids error, the permit alone would allow.
      const chain = {
        workload: WORKLOAD,
        steps: [serviceStep('s1', 'read', { type: 'Document', id: 'report' }, { context: { size: 10_000_000 } })],
      };
      const handle = await new GovernorClient(client, q).start(chain, await creds());
      const result = (await handle.result()) as ChainResult;
      expect(result.status).toBe('Denied');
      expect(result.steps[0]!.decision!.errors.length).toBeGreaterThan(0);
      expect(ledger.has(`${handle.workflowId}/s1`)).toBe(false);
    } finally {
      await w.stop();
    }
  });

  it('fails on an executor failure and runs the compensations of completed steps newest first', async () => {
    const chain = {
      workload: WORKLOAD,
      steps: [
        serviceStep(
          'deploy-dev',
          'deploy',
          { type: 'Environment', id: 'dev' },
          {
            compensation: {
              action: 'rollback',
              executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
            },
          },
        ),
        serviceStep(
          'deploy-staging',
          'deploy',
          { type: 'Environment', id: 'staging' },
          {
            compensation: {
              action: 'rollback',
              executor: { type: 'activity', taskQueue: serviceQueue, activityType: 'perform' },
            },
          },
        ),
        serviceStep('announce', 'notify', { type: 'Channel', id: 'releases' }, { input: { simulateFailure: true } }),
        serviceStep('never', 'notify', { type: 'Channel', id: 'releases' }),
      ],
    };
    const handle = await gc.start(chain, await creds());
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Failed');
    expect(result.reason).toContain('service refused notify');
    expect(result.steps.map((s) => s.status)).toEqual(['compensated', 'compensated', 'failed', 'skipped']);
    const keys = ledger
      .all()
      .map((e) => e.idempotencyKey)
      .filter((k) => k.startsWith(handle.workflowId));
    expect(keys).toEqual([
      `${handle.workflowId}/deploy-dev`,
      `${handle.workflowId}/deploy-staging`,
      `${handle.workflowId}/deploy-staging.compensation`,
      `${handle.workflowId}/deploy-dev.compensation`,
    ]);
  });

  it('runs the built-in http executor only against allow-listed origins, sending the idempotency key', async () => {
    const seen = hookSeen;
    const port = hookPort;
    try {
      const ok = {
        workload: WORKLOAD,
        steps: [
          {
            id: 'notify',
            action: 'notify',
            resource: { type: 'Channel', id: 'ops' },
            executor: { type: 'http', url: `http://127.0.0.1:${port}/hook` },
          },
        ],
      };
      const handle = await gc.start(ok, await creds());
      const result = (await handle.result()) as ChainResult;
      expect(result.status).toBe('Completed');
      expect(result.steps[0]!.outcome).toMatchObject({
        executor: 'http',
        httpStatus: 202,
        idempotencyKey: `${handle.workflowId}/notify`,
      });
      expect(seen).toEqual([{ key: `${handle.workflowId}/notify`, method: 'POST' }]);

      const blocked = {
        workload: WORKLOAD,
        steps: [
          {
            id: 'notify',
            action: 'notify',
            resource: { type: 'Channel', id: 'ops' },
            executor: { type: 'http', url: `http://localhost:${port}/hook` },
          },
        ],
      };
      const r2 = await runChain(blocked);
      expect(r2.status).toBe('Denied');
      expect(r2.reason).toBe(
        `step notify: http target refused: http://localhost:${port} is not in the manifest's http.allow`,
      );
      expect(seen).toHaveLength(1);
    } finally {
      if (hookServer.listening) hookServer.close();
    }
  });

  it('rejects a malformed chain in the client: nothing starts', async () => {
    const bad = {
      workload: WORKLOAD,
      steps: [{ id: 's1', action: 'deploy', resource: { type: 'environment', id: 'x' }, executor: { type: 'noop' } }],
    };
    await expect(gc.start(bad, { ...(await creds()), chainId: 'malformed-client-chain' })).rejects.toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      message: expect.stringContaining('steps.0.resource.type'),
    });
    await expect(client.workflow.getHandle('malformed-client-chain').describe()).rejects.toBeInstanceOf(
      WorkflowNotFoundError,
    );
  });
});

describe('the governor CLI against the real server', () => {
  // Asynchronous on purpose: the governor worker runs in this process and must keep serving.
  function governorCli(
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [path.join(root, 'bin', 'governor.js'), ...args], {
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: testAddress(),
          GOVERNOR_HOME: home,
          GOVERNOR_TASK_QUEUE: taskQueue,
          ...env,
        },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('runs the example chains with --wait --json and exit codes 0 (completed) and 2 (denied)', async () => {
    const ok = await governorCli([
      'run',
      path.join(root, 'examples/chains/deploy-staging.yaml'),
      '--as',
      WORKLOAD,
      '--wait',
      '--json',
    ]);
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    const okJson = JSON.parse(ok.stdout.trim().split('\n').pop()!);
    expect(okJson).toMatchObject({ status: 'Completed', chainId: expect.any(String) });

    const denied = await governorCli([
      'run',
      path.join(root, 'examples/chains/drop-prod-table.yaml'),
      '--as',
      WORKLOAD,
      '--wait',
      '--json',
    ]);
    // (stderr shown on a failure: a CI run once saw exit 1 here under load, not reproduced since)
    expect({ code: denied.code, stderr: denied.stderr }).toEqual({ code: 2, stderr: '' });
    expect(JSON.parse(denied.stdout.trim().split('\n').pop()!)).toMatchObject({ status: 'Denied' });

    const status = await governorCli(['status', okJson.chainId, '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ chainId: okJson.chainId, status: 'Completed' });
  });

  it('lists chains by status and workload from search attributes', async () => {
    const r = await runChain(
      { workload: 'agent:lister', steps: [serviceStep('announce', 'notify', { type: 'Channel', id: 'releases' })] },
      await creds('agent:lister'),
    );
    expect(r.status).toBe('Completed');
    let chains: { chainId: string; status: string }[] = [];
    for (let i = 0; i < 40; i++) {
      const out = await governorCli(['list', '--workload', 'agent:lister', '--status', 'Completed', '--json']);
      expect(out.code).toBe(0);
      chains = (JSON.parse(out.stdout) as { chains: { chainId: string; status: string }[] }).chains;
      if (chains.some((c) => c.chainId === r.chainId)) break;
      await new Promise((res) => setTimeout(res, 250)); // visibility is eventually consistent
    }
    expect(chains.map((c) => c.chainId)).toContain(r.chainId);
    expect(chains.every((c) => c.status === 'Completed')).toBe(true);
  });

  it('rejects a malformed chain file with exit 1, naming the field, and starts nothing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gov-chain-'));
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(
      file,
      'workload: agent:release-bot\nsteps:\n  - id: s1\n    action: deploy\n    resource: { type: Environment, id: staging }\n    executor: { type: http, url: "ftp://x" }\n',
    );
    const r = await governorCli(['run', file, '--as', WORKLOAD, '--chain-id', 'malformed-file-chain', '--json']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('steps.0.executor.url');
    return expect(client.workflow.getHandle('malformed-file-chain').describe()).rejects.toBeInstanceOf(
      WorkflowNotFoundError,
    );
  });
});

describe('crash: the governor worker killed mid-chain', () => {
  it('loses no step and executes none twice after a SIGKILL and restart', async () => {
    const q = uniqueQueue('governor-crash');
    const gate: { release?: () => void } = {};
    const crashLedger = new Ledger();
    const base = createServiceActivities(crashLedger);
    const crashQueue = uniqueQueue('service-crash');
    const nc = await NativeConnection.connect({ address: testAddress() });
    let entered!: () => void;
    const inStep2 = new Promise<void>((r) => (entered = r));
    const svc = await Worker.create({
      connection: nc,
      taskQueue: crashQueue,
      activities: {
        ...base,
        async perform(input: Parameters<typeof base.perform>[0]) {
          if (input.stepId === 's2' && !crashLedger.has(input.idempotencyKey)) {
            entered();
            await new Promise<void>((r) => (gate.release = r));
          }
          return base.perform(input);
        },
      },
    });
    const svcRun = svc.run();
    const spawnWorker = (): ChildProcess =>
      spawn(
        process.execPath,
        [path.join(root, 'bin', 'governor.js'), 'worker', '--task-queue', q, '--policies', bundleDir],
        {
          env: { ...process.env, TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: home, LOG_LEVEL: 'warn' },
          stdio: 'ignore',
        },
      );
    let child = spawnWorker();
    try {
      const step = (id: string) => ({
        id,
        action: 'deploy',
        resource: { type: 'Environment', id: 'staging' },
        executor: { type: 'activity', taskQueue: crashQueue, activityType: 'perform' },
      });
      const chain: Chain = { workload: WORKLOAD, steps: [step('s1'), step('s2'), step('s3')] } as Chain;
      const handle = await new GovernorClient(client, q).start(chain, await creds());
      await inStep2;
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      gate.release!();
      child = spawnWorker();
      const result = (await handle.result()) as ChainResult;
      expect(result.status).toBe('Completed');
      const keys = crashLedger.all().map((e) => e.idempotencyKey);
      expect(keys).toEqual([`${handle.workflowId}/s1`, `${handle.workflowId}/s2`, `${handle.workflowId}/s3`]);
      expect(crashLedger.duplicatesAbsorbed).toBe(0);
    } finally {
      child.kill('SIGKILL');
      svc.shutdown();
      await svcRun;
      await nc.close();
    }
  });
});
