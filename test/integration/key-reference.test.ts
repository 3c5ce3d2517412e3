import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { ChainResult } from '../../contracts/state';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { issueApproval, issueAttestation, issueCredential, keyPaths, loadPublicJwks } from '../../identity';
import { startSigner } from '../../identity/signer';
import { SignerClient } from '../../identity/signer-client';
import { GovernorClient } from '../../sdk/client';
import { keysCheck } from '../../workers/health';
import { runGovernorCli } from '../harness/cli';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/*
 * Keys for a fleet (issue 18 item 4, docs/production.md): the receipt key given to a worker by reference,
 * with no private key in its GOVERNOR_HOME at all (so a fall back to the home's key cannot happen unseen).
 * - A real `governor signer` child process over a real Unix socket (mode 0600) signs every receipt of a
 *   chain, and `governor verify` (the real CLI) verifies the chain with the home's public JWKS.
 * - The signer goes down: the next chain's step is denied, naming the signer (fail closed), and the
 *   worker's readiness check fails; nothing is signed with any other key.
 * - A key file given by reference signs a chain that verifies; a key file group or others can read is
 *   refused at worker start with an error naming the file.
 * - The signer refuses a socket path it does not own or that is not a socket, and signs only digests
 *   for the receipt key; the approver key by reference (a file) signs votes that verify.
 */

const WORKLOAD = 'agent:release-bot';
let home: string;
let outside: string;
let receiptFile: string;
let connection: Connection;
let client: Client;
let signer: ChildProcess | undefined;
const socket = () => path.join(outside, 'signer.sock');

const chain = {
  workload: WORKLOAD,
  owner: 'team-release',
  steps: [
    { id: 'deploy', action: 'deploy', resource: { type: 'Environment', id: 'staging' }, executor: { type: 'noop' } },
    { id: 'announce', action: 'notify', resource: { type: 'Channel', id: 'releases' }, executor: { type: 'noop' } },
  ],
};
const creds = async () => ({
  credential: await issueCredential({ home, sub: WORKLOAD }),
  attestation: await issueAttestation({ home, sub: WORKLOAD }),
});

/** Starts `governor signer` (the built CLI) on `socket()`; resolves once it listens. */
function startSignerProcess(): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      path.join(__dirname, '..', '..', 'bin', 'governor.js'),
      'signer',
      '--socket',
      socket(),
      '--receipt-key',
      receiptFile,
    ],
    { env: { ...process.env, GOVERNOR_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('signer listening on')) resolve(child);
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`signer exited (${code}):\n${out}`)));
  });
}

beforeAll(async () => {
  home = await makeHome();
  outside = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-keyref-'));
  // The receipt private key leaves the home: only its public JWKS stays there.
  receiptFile = path.join(outside, 'receipt.private.jwk.json');
  fs.copyFileSync(keyPaths(home, 'receipt').privateKeyPath, receiptFile);
  fs.chmodSync(receiptFile, 0o600);
  fs.rmSync(keyPaths(home, 'receipt').privateKeyPath);
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
}, 60_000);

afterAll(async () => {
  signer?.kill('SIGKILL');
  await connection?.close();
});

async function run(gc: GovernorClient): Promise<{ id: string; result: ChainResult }> {
  const handle = await gc.start(chain, await creds());
  return { id: handle.workflowId, result: (await handle.result()) as ChainResult };
}

test('a signer process signs every receipt of a chain that verifies; when it is down the step is denied and the worker is not ready', async () => {
  signer = await startSignerProcess();
  expect(fs.statSync(socket()).mode & 0o777).toBe(0o600);
  const taskQueue = uniqueQueue('keyref-signer');
  const ref = { signer: socket() };
  const worker = await startGovernorWorker({ home, taskQueue, receiptKey: ref });
  try {
    const gc = new GovernorClient(client, taskQueue);
    const { id, result } = await run(gc);
    expect(result.status).toBe('Completed');
    const verified = await runGovernorCli(['--json', 'verify', id], {
      GOVERNOR_HOME: home,
      TEMPORAL_ADDRESS: testAddress(),
    });
    expect({ code: verified.code, verdict: JSON.parse(verified.stdout).verdict }).toEqual({
      code: 0,
      verdict: 'verified',
    });
    expect(await keysCheck(home, ref)()).toEqual({ ok: true });

    // The signer dies: no receipt can be signed, so the step is denied (never signed by another key).
    signer.kill('SIGKILL');
    await new Promise((r) => signer!.once('exit', r));
    signer = undefined;
    const down = await run(gc);
    expect(down.result.status).toBe('Denied');
    const reason = `${down.result.reason ?? ''} ${down.result.steps[0]!.decision?.reason ?? ''}`;
    expect(reason).toContain(`signer at ${socket()} unavailable`);
    const ready = await keysCheck(home, ref)();
    expect(ready).toMatchObject({ ok: false, reason: expect.stringContaining(`signer at ${socket()} unavailable`) });
  } finally {
    await worker.stop();
  }
}, 120_000);

test('a key file by reference signs a chain that verifies; one that group or others can read is refused, naming the file', async () => {
  const taskQueue = uniqueQueue('keyref-file');
  const worker = await startGovernorWorker({ home, taskQueue, receiptKey: { file: receiptFile } });
  try {
    const { id, result } = await run(new GovernorClient(client, taskQueue));
    expect(result.status).toBe('Completed');
    const verified = await runGovernorCli(['--json', 'verify', id], {
      GOVERNOR_HOME: home,
      TEMPORAL_ADDRESS: testAddress(),
    });
    expect(JSON.parse(verified.stdout).verdict).toBe('verified');
  } finally {
    await worker.stop();
  }
  const open = path.join(outside, 'open.private.jwk.json');
  fs.copyFileSync(receiptFile, open);
  fs.chmodSync(open, 0o644);
  await expect(
    startGovernorWorker({ home, taskQueue: uniqueQueue('keyref-open'), receiptKey: { file: open } }),
  ).rejects.toThrow(`receipt key file ${open} is accessible to group or others (mode 0644)`);
  // Not found: named too, and no fall back to a key in the home (there is none).
  const missing = path.join(outside, 'missing.jwk.json');
  await expect(
    startGovernorWorker({ home, taskQueue: uniqueQueue('keyref-missing'), receiptKey: { file: missing } }),
  ).rejects.toThrow(`receipt key file ${missing} is unreadable (ENOENT)`);
}, 120_000);

test('the signer refuses a socket path it does not own or that is not a socket, and signs only what its keys sign', async () => {
  const plain = path.join(outside, 'plain');
  fs.writeFileSync(plain, '');
  await expect(startSigner({ socket: plain, keys: { receipt: receiptFile } })).rejects.toThrow(
    'the path exists and is not a socket',
  );
  if (process.getuid?.() === 0) {
    // A socket that belongs to another user (nobody): not ours to take over.
    const theirs = path.join(outside, 'theirs.sock');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(theirs, r));
    fs.chownSync(theirs, 65534, 65534);
    await expect(startSigner({ socket: theirs, keys: { receipt: receiptFile } })).rejects.toThrow(
      /belongs to uid 65534, not to us/,
    );
    srv.close();
  }
  const s = await startSigner({ socket: path.join(outside, 'strict.sock'), keys: { receipt: receiptFile } });
  const c = new SignerClient(s.socket);
  try {
    await expect(c.sign('receipt', 'governor-receipt+jws', 'not a digest')).rejects.toThrow(
      'refused: not a governor-receipt+jws payload',
    );
    await expect(c.sign('receipt', 'JWT', 'a'.repeat(64))).rejects.toThrow('does not sign this type');
    await expect(c.sign('approver', 'approval+jwt', '{}')).rejects.toThrow('no such key here');
    expect(await c.sign('receipt', 'governor-receipt+jws', 'a'.repeat(64))).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  } finally {
    c.close();
    await s.close();
  }
});

test('the approver key by reference (a file) signs votes that verify', async () => {
  const approverFile = path.join(outside, 'approver.private.jwk.json');
  fs.copyFileSync(keyPaths(home, 'approver').privateKeyPath, approverFile);
  fs.chmodSync(approverFile, 0o600);
  fs.rmSync(keyPaths(home, 'approver').privateKeyPath);
  const before = process.env.GOVERNOR_APPROVER_KEY_FILE;
  process.env.GOVERNOR_APPROVER_KEY_FILE = approverFile;
  try {
    const token = await issueApproval({
      home,
      sub: 'alice',
      roles: ['sre-lead'],
      chainId: 'c1',
      stepId: 's1',
      stepDigest: 'd'.repeat(64),
      decision: 'approve',
    });
    // Verified with the approver JWKS of the home (what the governor's vote verification trusts).
    const vote = await jwtVerify(token, createLocalJWKSet(loadPublicJwks(home, 'approver')), {
      typ: 'approval+jwt',
      audience: 'temporal-governor-approval',
    });
    expect(vote.payload).toMatchObject({ sub: 'alice', decision: 'approve', chainId: 'c1' });
    fs.chmodSync(approverFile, 0o640);
    await expect(
      issueApproval({
        home,
        sub: 'alice',
        roles: ['sre-lead'],
        chainId: 'c1',
        stepId: 's1',
        stepDigest: 'd'.repeat(64),
        decision: 'approve',
      }),
    ).rejects.toThrow(`approver key file ${approverFile} is accessible to group or others (mode 0640)`);
  } finally {
    if (before === undefined) delete process.env.GOVERNOR_APPROVER_KEY_FILE;
    else process.env.GOVERNOR_APPROVER_KEY_FILE = before;
  }
});
