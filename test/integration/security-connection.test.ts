import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { GovernorClient } from '../../sdk/client';
import { issueAttestation, issueCredential } from '../../identity';
import type { ChainResult } from '../../contracts/state';
import { connectClient, connectWorker, loadTemporalSettings, type TemporalSettings } from '../../runtime/connection';
import { createGovernorWorker } from '../../workers/worker';
import { makeTestCerts, startGrpcFront, type GrpcFront, type TestCerts } from '../harness/grpc-front';
import { makeHome, testClient, testAddress, uniqueQueue } from '../harness/temporal';

// Remote-cluster connections (TLS, mTLS, API key) through a loopback front end that terminates TLS
// and checks credentials in front of the plaintext dev server. Settings always go through
// loadTemporalSettings: in process with an env object, or in a CLI child with its environment.

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'bin', 'governor.js');
const WORKLOAD = 'agent:release-bot';
const API_KEY = `gov-test-key-${Math.random().toString(36).slice(2)}-secret`;
const NO_CONFIG_FILE = path.join(os.tmpdir(), 'governor-no-such-temporal.toml');

let certs: TestCerts;
let tlsFront: GrpcFront;
let mtlsFront: GrpcFront;
let keyFront: GrpcFront;
let home: string;
let chainFile: string;
/** `governor worker` children still running (killed in afterAll if a test failed before stopping one). */
const workerChildren = new Set<ChildProcess>();

/** The test process's environment without any TEMPORAL_* connection setting (nor the user's config file). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('TEMPORAL_') || k === 'TEMPORAL_CLI_PATH') env[k] = v;
  return { ...env, TEMPORAL_CONFIG_FILE: NO_CONFIG_FILE, GOVERNOR_HOME: home };
}

function tlsEnv(front: GrpcFront, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...cleanEnv(),
    TEMPORAL_ADDRESS: front.address,
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TLS: 'true',
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.caCert,
    ...extra,
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * stderr without Node's DEP0123 warning: grpc-js sets the TLS server name to the address's host, and
 * Node warns when that is an IP address (the front end listens on 127.0.0.1).
 */
function problems(stderr: string): string {
  return stderr
    .split('\n')
    .filter((l) => l !== '' && !l.includes('[DEP0123]') && !l.startsWith('(Use `node --trace-deprecation'))
    .join('\n');
}

/** Runs the built CLI asynchronously (an in-process worker must keep running meanwhile). */
function governor(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts `governor worker` as a child; resolves once it printed that it is connected (or it exited). */
function startWorkerChild(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ connected: boolean; stop(): Promise<Run>; exited: Promise<Run> }> {
  const child = spawn(process.execPath, [cli, 'worker', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  workerChildren.add(child);
  let stdout = '';
  let stderr = '';
  const exited = new Promise<Run>((resolve) =>
    child.on('close', (code) => {
      workerChildren.delete(child);
      resolve({ code, stdout, stderr });
    }),
  );
  return new Promise((resolve) => {
    const stop = async (): Promise<Run> => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    };
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('governor worker connected')) resolve({ connected: true, stop, exited });
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    void exited.then(() => resolve({ connected: false, stop, exited }));
  });
}

/** A governor worker in this process, connected with `settings` (the worker's real connection path). */
async function startWorker(
  settings: TemporalSettings,
  taskQueue: string,
): Promise<{ worker: Worker; stop(): Promise<void> }> {
  const connection = await connectWorker(settings);
  const { worker, watchers } = await createGovernorWorker({
    connection,
    namespace: settings.namespace,
    taskQueue,
    home,
    workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! },
  });
  const running = worker.run();
  return {
    worker,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      watchers.forEach((w) => w.close());
      await connection.close();
    },
  };
}

async function creds(): Promise<{ credential: string; attestation: string }> {
  return {
    credential: await issueCredential({ home, sub: WORKLOAD }),
    attestation: await issueAttestation({ home, sub: WORKLOAD }),
  };
}

function noopChain(): Record<string, unknown> {
  return {
    workload: WORKLOAD,
    steps: [
      { id: 'deploy', action: 'deploy', resource: { type: 'Environment', id: 'staging' }, executor: { type: 'noop' } },
    ],
  };
}

async function expectNoChain(chainId: string): Promise<void> {
  const { client, connection } = await testClient();
  try {
    await expect(client.workflow.getHandle(chainId).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  } finally {
    await connection.close();
  }
}

function expectNoSecret(...outputs: string[]): void {
  for (const o of outputs) expect(o.includes(API_KEY)).toBe(false);
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(root, 'dist', 'cli', 'cli.js')))
    throw new Error('run `npm run build` first: these tests spawn bin/governor.js');
  certs = makeTestCerts();
  const upstream = testAddress();
  tlsFront = await startGrpcFront({ upstream, certs });
  mtlsFront = await startGrpcFront({ upstream, certs, requireClientCert: true });
  keyFront = await startGrpcFront({ upstream, certs, apiKey: API_KEY });
  home = await makeHome();
  chainFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-chain-')), 'chain.json');
  fs.writeFileSync(chainFile, JSON.stringify(noopChain()));
});

afterAll(async () => {
  for (const child of workerChildren) child.kill('SIGKILL');
  await tlsFront?.close();
  await mtlsFront?.close();
  await keyFront?.close();
  if (certs) fs.rmSync(certs.dir, { recursive: true, force: true });
});

describe('TLS to a remote frontend', () => {
  it('runs a governed chain end to end: worker and CLI both connect over TLS with the server CA', async () => {
    const settings = loadTemporalSettings({}, tlsEnv(tlsFront));
    expect(settings.address).toBe(tlsFront.address);
    expect(settings.connectionOptions.tls).toMatchObject({ serverRootCACertificate: expect.any(Uint8Array) });
    const taskQueue = uniqueQueue('governor-tls');
    const worker = await startWorker(settings, taskQueue);
    try {
      const chainId = `tls-${uniqueQueue('chain')}`;
      const r = await governor(
        ['run', chainFile, '--as', WORKLOAD, '--task-queue', taskQueue, '--chain-id', chainId, '--wait', '--json'],
        tlsEnv(tlsFront),
      );
      expect({ code: r.code, stderr: problems(r.stderr) }).toEqual({ code: 0, stderr: '' });
      expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ chainId, status: 'Completed' });

      // Both sides really went through the TLS front end: the worker polls, the CLI starts and queries.
      const via = [...tlsFront.stats.methods].map((m) => m.split('/').pop());
      expect(via).toEqual(
        expect.arrayContaining([
          'PollWorkflowTaskQueue',
          'PollActivityTaskQueue',
          'StartWorkflowExecution',
          'QueryWorkflow',
        ]),
      );

      // The client connection (connectClient) over TLS reads the same chain from the real server.
      const connection = await connectClient(settings);
      try {
        const state = await new GovernorClient(
          new Client({ connection, namespace: settings.namespace }),
          taskQueue,
        ).status(chainId);
        expect(state.status).toBe('Completed');
        expect(state.steps.map((s) => [s.id, s.status])).toEqual([['deploy', 'completed']]);
      } finally {
        await connection.close();
      }
    } finally {
      await worker.stop();
    }
  });

  it('honours TEMPORAL_TLS_SERVER_NAME: the name in the certificate connects, another name is refused', async () => {
    const good = loadTemporalSettings({}, tlsEnv(tlsFront, { TEMPORAL_TLS_SERVER_NAME: 'localhost' }));
    const connection = await connectClient(good);
    await connection.close();
    const native = await connectWorker(good);
    await native.close();

    const bad = loadTemporalSettings({}, tlsEnv(tlsFront, { TEMPORAL_TLS_SERVER_NAME: 'not-this-server.example' }));
    await expect(connectClient(bad)).rejects.toMatchObject({
      code: 'GOVERNOR_TEMPORAL_UNREACHABLE',
      message: expect.stringContaining(`cannot reach Temporal at ${tlsFront.address}`),
    });
    await expect(connectWorker(bad)).rejects.toMatchObject({
      code: 'GOVERNOR_TEMPORAL_UNREACHABLE',
      message: expect.stringContaining(`cannot reach Temporal at ${tlsFront.address}`),
    });
  });

  it('refuses a server signed by another CA (or plaintext to a TLS port) with exit 3 naming the address; nothing starts', async () => {
    const chainId = `wrong-ca-${uniqueQueue('chain')}`;
    const run = await governor(
      ['run', chainFile, '--as', WORKLOAD, '--chain-id', chainId],
      tlsEnv(tlsFront, { TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.otherCaCert }),
    );
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(`cannot reach Temporal at ${tlsFront.address}`);
    expect(run.stderr).toContain('TEMPORAL_TLS_SERVER_CA_CERT_PATH');
    expect(run.stdout).not.toContain('started chain');
    await expectNoChain(chainId);

    const worker = await governor(
      ['worker', '--task-queue', uniqueQueue('never')],
      tlsEnv(tlsFront, { TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.otherCaCert }),
    );
    expect(worker.code).toBe(3);
    expect(worker.stderr).toContain(`cannot reach Temporal at ${tlsFront.address}`);
    expect(worker.stdout).not.toContain('governor worker connected');

    // Plaintext to the TLS port: in process, both connection kinds.
    const plain = loadTemporalSettings({}, { ...cleanEnv(), TEMPORAL_ADDRESS: tlsFront.address });
    expect(plain.connectionOptions.tls).toBeUndefined();
    await expect(connectClient(plain, 2000)).rejects.toMatchObject({ code: 'GOVERNOR_TEMPORAL_UNREACHABLE' });
    await expect(connectWorker(plain)).rejects.toMatchObject({ code: 'GOVERNOR_TEMPORAL_UNREACHABLE' });
  });
});

describe('mTLS', () => {
  const mtls = (extra: Record<string, string> = {}) =>
    tlsEnv(mtlsFront, {
      TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKey,
      ...extra,
    });

  it('refuses a client without a certificate, or with one from another CA', async () => {
    for (const env of [
      tlsEnv(mtlsFront),
      mtls({
        TEMPORAL_TLS_CLIENT_CERT_PATH: certs.rogueClientCert,
        TEMPORAL_TLS_CLIENT_KEY_PATH: certs.rogueClientKey,
      }),
    ]) {
      const settings = loadTemporalSettings({}, env);
      await expect(connectClient(settings)).rejects.toMatchObject({
        code: 'GOVERNOR_TEMPORAL_UNREACHABLE',
        message: expect.stringContaining(mtlsFront.address),
      });
      await expect(connectWorker(settings)).rejects.toMatchObject({
        code: 'GOVERNOR_TEMPORAL_UNREACHABLE',
        message: expect.stringContaining(mtlsFront.address),
      });
    }
    expect(mtlsFront.stats.methods.size).toBe(0);
    expect(mtlsFront.stats.clientCertSubjects.has('governor-rogue-client')).toBe(false);

    const worker = await governor(['worker', '--task-queue', uniqueQueue('never')], tlsEnv(mtlsFront));
    expect(worker.code).toBe(3);
    expect(worker.stderr).toContain(`cannot reach Temporal at ${mtlsFront.address}`);
    expect(mtlsFront.stats.methods.size).toBe(0);
  });

  it('connects the worker and the CLI with the client certificate', async () => {
    const settings = loadTemporalSettings({}, mtls());
    expect(settings.connectionOptions.tls).toMatchObject({
      clientCertPair: { crt: expect.any(Uint8Array), key: expect.any(Uint8Array) },
    });
    const taskQueue = uniqueQueue('governor-mtls');
    const worker = await startWorker(settings, taskQueue);
    try {
      const connection = await connectClient(settings);
      try {
        const gc = new GovernorClient(new Client({ connection, namespace: settings.namespace }), taskQueue);
        const handle = await gc.start(noopChain(), await creds());
        expect(((await handle.result()) as ChainResult).status).toBe('Completed');
      } finally {
        await connection.close();
      }
    } finally {
      await worker.stop();
    }
    const list = await governor(['list', '--limit', '1', '--json'], mtls());
    expect({ code: list.code, stderr: problems(list.stderr) }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(list.stdout)).toHaveProperty('chains');
    expect([...mtlsFront.stats.clientCertSubjects]).toEqual(['governor-test-client']);
    expect([...mtlsFront.stats.methods].map((m) => m.split('/').pop())).toEqual(
      expect.arrayContaining(['PollWorkflowTaskQueue', 'StartWorkflowExecution', 'ListWorkflowExecutions']),
    );
  });

  it('refuses a client certificate without its key (exit 1 naming the setting) instead of connecting without one', async () => {
    const r = await governor(['list'], tlsEnv(mtlsFront, { TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCert }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('TEMPORAL_TLS_CLIENT_KEY_PATH');
  });
});

describe('API key (Temporal Cloud style)', () => {
  it('connects the CLI with TEMPORAL_API_KEY; a missing or wrong key is refused clearly; the key is never printed', async () => {
    const before = keyFront.stats.authorized;
    const ok = await governor(
      ['list', '--limit', '1', '--json'],
      tlsEnv(keyFront, { TEMPORAL_API_KEY: API_KEY, LOG_LEVEL: 'debug' }),
    );
    expect({ code: ok.code, stderr: problems(ok.stderr) }).toEqual({ code: 0, stderr: '' });
    expect(keyFront.stats.authorized).toBeGreaterThan(before);
    expectNoSecret(ok.stdout, ok.stderr);

    const refusedBefore = keyFront.stats.refused;
    const wrongKey = `${API_KEY}-wrong`;
    const wrong = await governor(['list', '--json'], tlsEnv(keyFront, { TEMPORAL_API_KEY: wrongKey }));
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain(`Temporal at ${keyFront.address} refused the credentials`);
    expect(wrong.stderr).toContain('TEMPORAL_API_KEY');
    expect(JSON.parse(wrong.stdout.trim())).toMatchObject({
      code: 'GOVERNOR_TEMPORAL_UNREACHABLE',
      field: 'TEMPORAL_API_KEY',
    });
    expectNoSecret(wrong.stdout, wrong.stderr);
    expect(wrong.stdout.includes(wrongKey) || wrong.stderr.includes(wrongKey)).toBe(false);

    const missing = await governor(['list'], tlsEnv(keyFront));
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain(`Temporal at ${keyFront.address} refused the credentials`);
    expect(missing.stderr).toContain('missing or invalid API key'); // the server's own reason is shown
    expect(keyFront.stats.refused).toBeGreaterThanOrEqual(refusedBefore + 2);
  });

  it('runs `governor worker` with TEMPORAL_API_KEY (debug logs) and a chain completes through it; the key never reaches its output', async () => {
    const taskQueue = uniqueQueue('governor-key');
    const child = await startWorkerChild(
      ['--task-queue', taskQueue, '--no-watch-policies'],
      tlsEnv(keyFront, { TEMPORAL_API_KEY: API_KEY, LOG_LEVEL: 'debug' }),
    );
    let out: Run | undefined;
    try {
      expect(child.connected).toBe(true);
      const settings = loadTemporalSettings({}, tlsEnv(keyFront, { TEMPORAL_API_KEY: API_KEY }));
      expect(settings.connectionOptions.apiKey).toBe(API_KEY);
      const connection = await connectClient(settings);
      try {
        const gc = new GovernorClient(new Client({ connection, namespace: settings.namespace }), taskQueue);
        const handle = await gc.start(noopChain(), await creds());
        expect(((await handle.result()) as ChainResult).status).toBe('Completed');
      } finally {
        await connection.close();
      }
    } finally {
      out = await child.stop();
    }
    expect(out.stdout).toContain(`governor worker connected to ${keyFront.address}`);
    expectNoSecret(out.stdout, out.stderr);

    const wrong = await governor(
      ['worker', '--task-queue', uniqueQueue('never')],
      tlsEnv(keyFront, { TEMPORAL_API_KEY: 'not-the-key-0123456789', LOG_LEVEL: 'debug' }),
    );
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain(`Temporal at ${keyFront.address} refused the credentials`);
    expect(wrong.stdout).not.toContain('governor worker connected');
    expect(wrong.stdout.includes('not-the-key-0123456789') || wrong.stderr.includes('not-the-key-0123456789')).toBe(
      false,
    );
  });
});

describe('settings', () => {
  it('rejects an invalid TEMPORAL_* setting with exit 1 naming it, before connecting', async () => {
    const r = await governor(['list'], tlsEnv(tlsFront, { TEMPORAL_TLS: 'yes' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('TEMPORAL_TLS: must be true or false');
    const missing = await governor(
      ['worker'],
      tlsEnv(tlsFront, { TEMPORAL_TLS_SERVER_CA_CERT_PATH: path.join(certs.dir, 'missing.pem') }),
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('TEMPORAL_TLS_SERVER_CA_CERT_PATH: cannot read');
  });

  it('connects through a profile of a Temporal config file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE)', async () => {
    const file = path.join(certs.dir, 'temporal.toml');
    fs.writeFileSync(
      file,
      [
        '[profile.remote]',
        `address = "${keyFront.address}"`,
        'namespace = "default"',
        `api_key = "${API_KEY}"`,
        '[profile.remote.tls]',
        `server_ca_cert_path = "${certs.caCert}"`,
        '',
      ].join('\n'),
    );
    const env = { ...cleanEnv(), TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'remote' };
    const settings = loadTemporalSettings({}, env);
    expect(settings.address).toBe(keyFront.address);
    const connection = await connectClient(settings);
    await connection.close();
    const r = await governor(['list', '--limit', '1'], env);
    expect({ code: r.code, stderr: problems(r.stderr) }).toEqual({ code: 0, stderr: '' });
    expectNoSecret(r.stdout, r.stderr);
    const unknown = await governor(['list'], { ...env, TEMPORAL_PROFILE: 'nope' });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('TEMPORAL_PROFILE');
  });
});
