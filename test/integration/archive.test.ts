import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AwsClient } from 'aws4fetch';
import pino from 'pino';
import { WorkflowFailedError } from '@temporalio/client';
import { issueApproval, loadPrivateKey, loadPublicJwks } from '../../identity';
import {
  ARCHIVE_WORKFLOW,
  ARCHIVER_POSITION_MEMO,
  ARCHIVER_WORKFLOW,
  archiveWorkflowId,
  archiverWorkflowId,
  type SweepResult,
} from '../../contracts/archive';
import { PATCHES_AT_START } from '../../contracts/patches';
import { transparencyLogIdFor, type ProofAnchor } from '../../contracts/transparency';
import { withAnchor } from '../../audit/transparency-log';
import { checkAnchor } from '../../audit/transparency';
import type { ChainResult } from '../../contracts/state';
import { WORKFLOW_TYPE } from '../../contracts/status';
import { ArchiveConflict, DirectoryArchive, exportProof, S3Archive, type ArchiveStore } from '../../audit/archive';
import { fetchChainHistories, listRunIdsOf } from '../../audit/verify';
import { listRunIds } from '../../audit/verify/history-fetch';
import { loadArchivedBundle } from '../../policies/bundle-archive';
import { GovernorClient } from '../../sdk/client';
import { sessionTestBundle } from '../harness/session-bundle';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';
import { eventually } from '../harness/eventually';
import { runVerifyCli } from '../harness/verify-cli';
import { s3TestsEnabled, startGofakes3 } from '../harness/gofakes3';

/*
 * Archived proofs (issue 20 items 2 and 3) on the real dev server: chains and sessions that close have their
 * sealed proof exported by their task queue's archiver (by default to `<GOVERNOR_HOME>/archive`), anchored in
 * the queue's transparency log; once Temporal no longer has their history
 * (deleted here with DeleteWorkflowExecution, as the namespace retention does), `governor verify --archive`
 * still verifies them; an altered archived proof does not verify; exporting a closed chain again writes
 * nothing new and never overwrites a different proof; unsafe chain ids are refused. The S3 path runs against
 * a real S3-compatible server (gofakes3, built by .ci/run).
 */

let g: Governed;
let archiveDir: string;
beforeAll(async () => {
  g = await setupGoverned({ policiesDir: sessionTestBundle('5m') });
  archiveDir = path.join(g.home, 'archive');
}, 60_000);
afterAll(async () => {
  await g?.stop();
});

const staging = { type: 'Environment', id: 'staging' };
const prod = { type: 'Environment', id: 'prod' };

const archivedFile = (chainId: string) => path.join(archiveDir, `${chainId}.proof.json`);

/** The archived proof of a closed chain, once the queue's archiver has written it. */
async function archived(chainId: string, read = (key: string) => Promise.resolve(fileOf(key))) {
  const key = `${chainId}.proof.json`;
  const bytes = await eventually(`the archived proof of ${chainId}`, () => read(key), { timeoutMs: 60_000 });
  return { bytes, proof: JSON.parse(bytes.toString('utf8')) as Record<string, unknown> & { anchor?: ProofAnchor } };
}
const fileOf = (key: string): Buffer | undefined =>
  fs.existsSync(path.join(archiveDir, key)) ? fs.readFileSync(path.join(archiveDir, key)) : undefined;

/** The results of the archiver's sweeps so far (from its history). */
async function sweeps(taskQueue: string): Promise<SweepResult[]> {
  const events = (await g.client.workflow.getHandle(archiverWorkflowId(taskQueue)).fetchHistory()).events ?? [];
  return events.flatMap((e) => {
    const p = e.activityTaskCompletedEventAttributes?.result?.payloads?.[0]?.data;
    return p ? [JSON.parse(Buffer.from(p).toString('utf8')) as SweepResult] : [];
  });
}

/** Deletes every run of a chain from Temporal (what the namespace retention does) and waits until it is gone. */
async function deleteHistory(chainId: string): Promise<void> {
  await g.client.workflowService.deleteWorkflowExecution({
    namespace: 'default',
    workflowExecution: { workflowId: chainId },
  });
  await eventually(`the history of ${chainId} to be deleted`, async () => {
    try {
      await g.client.workflow.getHandle(chainId).describe();
      return false;
    } catch (err) {
      return (err as { name?: string }).name === 'WorkflowNotFoundError';
    }
  });
}

async function approve(chainId: string, stepId: string, digest: string, sub: string): Promise<void> {
  const token = await issueApproval({
    home: g.home,
    sub,
    roles: ['sre-lead'],
    chainId,
    stepId,
    stepDigest: digest,
    decision: 'approve',
  });
  await g.gc.submitApproval(chainId, token);
}

const failedChecks = (json: Record<string, unknown>) =>
  (json.checks as { name: string; ok: boolean; detail: string }[]).filter((c) => !c.ok);

describe('archived proofs (directory)', () => {
  const closed: { chainId: string; status: string }[] = [];

  it('archives an allowed, a denied, an escalated-and-approved chain and a session as they close', async () => {
    const allowed = await g.run({ workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', staging)] });
    expect(allowed.status).toBe('Completed');
    const denied = await g.run({
      workload: WORKLOAD,
      steps: [g.serviceStep('drop', 'drop_table', { type: 'Database', id: 'prod' })],
    });
    expect(denied.status).toBe('Denied');

    const handle = await g.gc.start(
      { workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', prod)] },
      await g.creds(),
    );
    const waiting = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
    const digest = waiting.steps[0]!.approval!.stepDigest;
    await approve(handle.workflowId, 'deploy', digest, 'alice');
    await approve(handle.workflowId, 'deploy', digest, 'carol');
    const escalated = (await handle.result()) as ChainResult;
    expect(escalated.status).toBe('Completed');

    const c = await g.creds();
    const { sessionId } = await g.gc.openSession({ workload: WORKLOAD, owner: 'team-agents', ...c });
    const read = await g.gc.proposeStep(sessionId, {
      step: g.serviceStep('r1', 'doc.read', { type: 'Doc', id: 'notes' }),
      credential: c.credential,
    });
    expect(read.outcome).toBe('executed');
    const session = await g.gc.closeSession(sessionId, { reason: 'done' });
    expect(session.status).toBe('Completed');

    const jwks = loadPublicJwks(g.home, 'receipt');
    for (const r of [allowed, denied, escalated, session]) {
      // The chain starts no workflow of its own as it closes (ARCHIVE_BY_SWEEPER_PATCH, which PATCHES_AT_START
      // implies): the queue's archiver sweeps.
      const events = (await g.client.workflow.getHandle(r.chainId).fetchHistory()).events ?? [];
      expect(events.flatMap((e) => e.startChildWorkflowExecutionInitiatedEventAttributes ?? [])).toEqual([]);
      expect(JSON.stringify(events.map((e) => e.markerRecordedEventAttributes?.details ?? null))).toContain(
        Buffer.from(JSON.stringify({ id: PATCHES_AT_START, deprecated: false })).toString('base64'),
      );
      const { proof } = await archived(r.chainId);
      expect(proof).toMatchObject({ format: 'temporal-governor/proof@2', chainId: r.chainId });
      // Every archived proof carries its anchor: its checkpoint's leaf, inclusion proof and a signed tree head.
      expect(proof.anchor?.log).toBe(transparencyLogIdFor(g.taskQueue));
      expect(await checkAnchor(proof.anchor!, jwks, { chainId: r.chainId, hash: r.receiptHead.hash })).toEqual([]);
      closed.push({ chainId: r.chainId, status: r.status });
    }
    const archiver = await g.client.workflow.getHandle(archiverWorkflowId(g.taskQueue)).describe();
    expect({ type: archiver.type, status: archiver.status.name }).toEqual({
      type: ARCHIVER_WORKFLOW,
      status: 'RUNNING',
    });
    // One object per chain, nothing else (no temp files left behind).
    expect(fs.readdirSync(archiveDir).sort()).toEqual(closed.map((x) => `${x.chainId}.proof.json`).sort());
  }, 120_000);

  it("carries every run of a reused chain id in the swept proof, so verification flags it (the sweep lists its batch's runs in one query)", async () => {
    // A first run of the id, on a queue no worker polls, terminated; then the id reused (by a raw client: the SDK
    // never reuses a chain id) for a chain that completes.
    const chainId = `reused-${uniqueQueue('c')}`;
    const chain = { workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', staging)] };
    const idle = await g.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: uniqueQueue('idle'),
      workflowId: chainId,
      args: [{ chainId, chain, ...(await g.creds()) }],
    });
    await idle.terminate('test: an abandoned first run');
    const second = await g.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: g.taskQueue,
      workflowId: chainId,
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      args: [{ chainId, chain, ...(await g.creds()) }],
    });
    expect(((await second.result()) as ChainResult).status).toBe('Completed');
    // The batched listing (`WorkflowId IN (...)`) gives what the per-id listing gives, on this server.
    const other = (await g.run({ workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', staging)] })).chainId;
    const batched = await listRunIdsOf(g.client, [chainId, other, 'no-such-chain'], 100);
    expect(batched.get(chainId)).toEqual(await listRunIds(g.client, chainId, 100));
    expect(batched.get(chainId)).toHaveLength(2);
    expect(batched.get(other)).toEqual(await listRunIds(g.client, other, 100));
    expect(batched.get('no-such-chain')).toEqual([]);
    // The swept proof names both runs: the terminated one with its history, the completed one in the lineage
    // (the proof hides no run of its id).
    const { proof } = await archived(chainId);
    const runs = proof.runs as { runId: string; lineage?: number; history?: unknown }[];
    expect(runs.map((r) => r.runId).sort()).toEqual([idle.firstExecutionRunId, second.firstExecutionRunId].sort());
    expect(runs.find((r) => r.runId === idle.firstExecutionRunId)?.history).toBeDefined();
    expect(runs.find((r) => r.runId === second.firstExecutionRunId)?.lineage).toBe(0);
    expect(proof.anchor?.leaf.runId).toBe(second.firstExecutionRunId);
    // And the offline verification shows it: a chain id names one chain.
    const r = await runVerifyCli(['--archive', archiveDir, '--require-anchor', chainId], { home: g.home });
    expect(failedChecks(r.json)).toEqual([
      expect.objectContaining({
        name: 'runs',
        detail: expect.stringMatching(
          new RegExp(`run ${idle.firstExecutionRunId} \\(Terminated\\) is another execution`),
        ),
      }),
    ]);
    expect(r.code).not.toBe(0);
  }, 120_000);

  it('exports a closed chain again without writing anything new, and never overwrites a different proof', async () => {
    const { chainId } = closed[0]!;
    const file = archivedFile(chainId);
    const before = fs.readFileSync(file);
    const mtime = fs.statSync(file).mtimeMs;
    // The per-chain archive workflow (of runs recorded before the sweeper) on it: the same evidence, unchanged.
    const again = await g.client.workflow.execute(ARCHIVE_WORKFLOW, {
      workflowId: archiveWorkflowId(chainId),
      taskQueue: g.taskQueue,
      args: [{ chainId }],
    });
    expect(again).toEqual({ outcome: 'unchanged', location: file });
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.statSync(file).mtimeMs).toBe(mtime);

    // Built again from the same history into an empty archive, with the same anchor: byte for byte the archived
    // proof (close time as the export time, deterministic Ed25519), so a second export is the same object.
    const { anchor } = JSON.parse(before.toString('utf8')) as { anchor: ProofAnchor };
    const histories = await fetchChainHistories(g.client, chainId);
    const common = {
      chainId,
      histories,
      bundles: (digest: string) => loadArchivedBundle(g.home, digest),
      receiptKeys: loadPublicJwks(g.home, 'receipt'),
      signer: await loadPrivateKey(g.home, 'receipt'),
    };
    const other = new DirectoryArchive(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-archive-')));
    expect(
      await exportProof({ store: other, ...common, anchor: (p) => Promise.resolve(withAnchor(p, anchor)) }),
    ).toMatchObject({ outcome: 'written' });
    expect(fs.readFileSync(path.join(other.location, `${chainId}.proof.json`)).equals(before)).toBe(true);

    // A different proof under the chain's key (another chain's histories): refused, the file left as it is.
    const foreign = JSON.parse(fs.readFileSync(archivedFile(closed[1]!.chainId), 'utf8')) as Record<string, unknown>;
    const target = path.join(other.location, `${chainId}.proof.json`);
    fs.rmSync(target);
    const planted = JSON.stringify({ ...foreign, chainId });
    fs.writeFileSync(target, planted);
    await expect(exportProof({ store: other, ...common })).rejects.toThrow(ArchiveConflict);
    await expect(exportProof({ store: other, ...common })).rejects.toThrow(
      /already holds a different proof of chain .*not overwritten/,
    );
    expect(fs.readFileSync(target, 'utf8')).toBe(planted);
  }, 60_000);

  it('never holds up or fails a chain when the archive is down: the archiver keeps its position, and archives it once repaired', async () => {
    // Down until the test repairs it; then the same directory archive as the others.
    let down = true;
    const repaired = new DirectoryArchive(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-archive-')));
    const broken: ArchiveStore = {
      location: 'broken://archive',
      where: (key) => `broken://archive/${key}`,
      get: (key) => (down ? Promise.reject(new Error('archive: the store is down')) : repaired.get(key)),
      putIfAbsent: (key, bytes) =>
        down ? Promise.reject(new Error('archive: the store is down')) : repaired.putIfAbsent(key, bytes),
    };
    const taskQueue = uniqueQueue('governor-broken-archive');
    const worker = await startGovernorWorker({
      home: g.home,
      taskQueue,
      policiesDir: sessionTestBundle('5m'),
      archive: broken,
      archiveSweepIdleMs: 200,
    });
    try {
      const gc = new GovernorClient(g.client, taskQueue);
      const started = await gc.start(
        { workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', staging)] },
        await g.creds(),
      );
      expect(((await started.result()) as ChainResult).status).toBe('Completed');
      // Two sweeps that found the chain and could not archive it: the position stays before its close.
      const failing = await eventually('two sweeps retrying the chain', async () => {
        const r = (await sweeps(taskQueue)).filter((x) => x.retry > 0);
        return r.length >= 2 ? r : undefined;
      });
      const closeTime = (await g.client.workflow.getHandle(started.workflowId).describe()).closeTime!.getTime();
      for (const x of failing) {
        expect(x).toMatchObject({ retry: 1, written: 0 });
        expect(Date.parse(x.since)).toBeLessThanOrEqual(closeTime);
      }
      // Repaired: the next sweeps archive the chain (nothing lost), anchored.
      down = false;
      const bytes = await eventually('the proof archived after the repair', () =>
        repaired.get(`${started.workflowId}.proof.json`),
      );
      expect(JSON.parse(bytes.toString('utf8'))).toMatchObject({
        chainId: started.workflowId,
        anchor: { log: transparencyLogIdFor(taskQueue) },
      });
    } finally {
      await worker.stop();
      await g.client.workflow
        .getHandle(archiverWorkflowId(taskQueue))
        .terminate('test: the broken archive is not repaired');
    }
  }, 90_000);

  it('verifies every archived chain with --archive once Temporal has deleted its history', async () => {
    for (const { chainId, status } of closed) {
      await deleteHistory(chainId);
      // The live verification has nothing left to read.
      const live = await runVerifyCli([chainId], { home: g.home, env: { TEMPORAL_ADDRESS: testAddress() } });
      expect(live.code).toBe(1);
      expect(String((live.error as Error).message)).toMatch(/no chain/);

      const r = await runVerifyCli(['--archive', archiveDir, '--require-anchor', chainId], { home: g.home });
      expect(failedChecks(r.json)).toEqual([]);
      expect(r.code).toBe(0);
      expect(r.json).toMatchObject({ ok: true, verdict: 'verified', chainId, status, archived: archivedFile(chainId) });
    }
  }, 180_000);

  it('fails an altered archived proof, naming the seal', async () => {
    const { chainId } = closed[0]!;
    const tamperedDir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-archive-'));
    const text = fs.readFileSync(archivedFile(chainId), 'utf8');
    // One character of a recorded history changed (the staging environment named prod).
    const altered = text.replace('"staging', '"stagin9');
    expect(altered).not.toBe(text);
    fs.writeFileSync(path.join(tamperedDir, `${chainId}.proof.json`), altered);
    const r = await runVerifyCli(['--archive', tamperedDir, chainId], { home: g.home });
    expect(r.code).toBe(2);
    expect(r.json.verdict).toBe('failed');
    expect(failedChecks(r.json)).toContainEqual(
      expect.objectContaining({ name: 'seal', detail: 'the proof content differs from what was sealed' }),
    );

    // The anchor removed (it is outside the seal): the seal still holds, but --require-anchor refuses it.
    const { anchor: _dropped, ...unanchored } = JSON.parse(text) as Record<string, unknown>;
    fs.writeFileSync(path.join(tamperedDir, `${chainId}.proof.json`), JSON.stringify(unanchored));
    const plain = await runVerifyCli(['--archive', tamperedDir, chainId], { home: g.home });
    expect(plain.code).toBe(0);
    const required = await runVerifyCli(['--archive', tamperedDir, '--require-anchor', chainId], { home: g.home });
    expect(required.code).toBe(2);
    expect(failedChecks(required.json).map((c) => c.name)).toEqual(['anchor']);

    // Truncated: not JSON, a bad-input error naming the archived file.
    fs.writeFileSync(path.join(tamperedDir, `${chainId}.proof.json`), text.slice(0, 100));
    const cut = await runVerifyCli(['--archive', tamperedDir, chainId], { home: g.home });
    expect(cut.code).toBe(1);
    expect(String((cut.error as Error).message)).toMatch(/is not JSON \(altered or truncated\)/);

    // Another chain's proof under this chain's name: not this chain.
    const swapped = fs.readFileSync(archivedFile(closed[1]!.chainId));
    fs.writeFileSync(path.join(tamperedDir, `${chainId}.proof.json`), swapped);
    const wrong = await runVerifyCli(['--archive', tamperedDir, chainId], { home: g.home });
    expect(wrong.code).toBe(2);
    expect(failedChecks(wrong.json)).toContainEqual(
      expect.objectContaining({ name: 'proof', detail: `a proof of chain ${closed[1]!.chainId}, not ${chainId}` }),
    );
  }, 60_000);

  it('refuses chain ids that are not safe object keys, writing nothing', async () => {
    for (const bad of ['../escape', '/etc/passwd', 'a/b', 'a..b', '..', '']) {
      const r = await runVerifyCli(['--archive', archiveDir, bad], { home: g.home });
      expect(r.code).toBe(1);
      expect(String((r.error as Error).message)).toMatch(/not a safe object key|give a chain id/);
    }
    await expect(new DirectoryArchive(archiveDir).get('../outside.json')).rejects.toThrow(/leaves the archive/);
    // The archive workflow started directly with a hostile chain id fails without retries; nothing is written.
    const listing = fs.readdirSync(archiveDir).sort();
    for (const bad of ['../../escape', '/tmp/abs']) {
      const err = await g.client.workflow
        .execute(ARCHIVE_WORKFLOW, {
          workflowId: `hostile-${Math.random()}`,
          taskQueue: g.taskQueue,
          args: [{ chainId: bad }],
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(String(((err as WorkflowFailedError).cause?.cause as Error | undefined)?.message)).toMatch(
        /not a safe object key; nothing written/,
      );
    }
    // An archiver started by a raw client for another queue, or with a queue name that would break out of the
    // visibility query, or a bad position: refused at once, nothing swept.
    for (const args of [
      [{ taskQueue: 'some-other-queue' }],
      [{ taskQueue: `${g.taskQueue}' OR WorkflowType != '` }],
      [{ taskQueue: g.taskQueue, since: 'yesterday' }],
      [null],
    ]) {
      const err = await g.client.workflow
        .execute(ARCHIVER_WORKFLOW, { workflowId: `hostile-archiver-${Math.random()}`, taskQueue: g.taskQueue, args })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(String(((err as WorkflowFailedError).cause as Error | undefined)?.message)).toMatch(
        /invalid archiver( input)?: (taskQueue must be the task queue this archiver runs on|since must be an ISO time|its workflow id must be)/,
      );
    }
    expect(fs.readdirSync(archiveDir).sort()).toEqual(listing);
    expect(fs.existsSync(path.join(g.home, 'escape.proof.json'))).toBe(false);
  }, 60_000);
});

const describeS3 = s3TestsEnabled() ? describe : describe.skip;

describeS3('archived proofs (S3-compatible bucket, gofakes3)', () => {
  let s3: Awaited<ReturnType<typeof startGofakes3>>;
  let worker: Awaited<ReturnType<typeof startGovernorWorker>>;
  let store: S3Archive;
  const env = () => ({
    GOVERNOR_ARCHIVE_S3_ENDPOINT: s3.endpoint,
    AWS_REGION: 'eu-central-1',
    AWS_ACCESS_KEY_ID: 'test-access-key',
    AWS_SECRET_ACCESS_KEY: 'test-secret-key-never-logged',
  });
  const location = 's3://governor-proofs/prod/eu';
  let taskQueue: string;

  beforeAll(async () => {
    s3 = await startGofakes3();
    store = new S3Archive({
      bucket: 'governor-proofs',
      prefix: 'prod/eu',
      region: 'eu-central-1',
      endpoint: s3.endpoint,
      accessKeyId: 'test-access-key',
      secretAccessKey: 'test-secret-key-never-logged',
    });
    taskQueue = uniqueQueue('governor-s3');
    worker = await startGovernorWorker({
      home: g.home,
      taskQueue,
      policiesDir: sessionTestBundle('5m'),
      archive: store,
    });
  }, 60_000);
  afterAll(async () => {
    await worker?.stop();
    await s3?.stop();
  });

  it('archives a closed chain to the bucket, verifies it after the history is gone, fails it altered, and exports it once', async () => {
    const gc = new GovernorClient(g.client, taskQueue);
    const started = await gc.start(
      { workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', staging)] },
      await g.creds(),
    );
    const chainId = started.workflowId;
    expect(((await started.result()) as ChainResult).status).toBe('Completed');

    const key = `${chainId}.proof.json`;
    const { bytes, proof } = await archived(chainId, (k) => store.get(k));
    expect(proof).toMatchObject({ chainId, format: 'temporal-governor/proof@2' });
    expect(proof.anchor?.log).toBe(transparencyLogIdFor(taskQueue));

    // Again: unchanged, the same bytes.
    const again = await g.client.workflow.execute(ARCHIVE_WORKFLOW, {
      workflowId: archiveWorkflowId(chainId),
      taskQueue,
      args: [{ chainId }],
    });
    expect(again).toEqual({ outcome: 'unchanged', location: `${location}/${key}` });
    expect((await store.get(key))!.equals(bytes!)).toBe(true);

    await deleteHistory(chainId);
    const r = await runVerifyCli(['--archive', location, '--require-anchor', chainId], { home: g.home, env: env() });
    expect(failedChecks(r.json)).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ verdict: 'verified', chainId, archived: `${location}/${key}` });

    // Altered in the bucket (a plain PUT, as someone with write access to it could): fails on the seal.
    const aws = new AwsClient({ accessKeyId: 'k', secretAccessKey: 's', service: 's3', region: 'eu-central-1' });
    const put = await aws.fetch(`${s3.endpoint}/governor-proofs/prod/eu/${encodeURIComponent(key)}`, {
      method: 'PUT',
      body: bytes!.toString('utf8').replace('"staging', '"stagin9'),
    });
    expect(put.status).toBe(200);
    const tampered = await runVerifyCli(['--archive', location, chainId], { home: g.home, env: env() });
    expect(tampered.code).toBe(2);
    expect(failedChecks(tampered.json)).toContainEqual(
      expect.objectContaining({ name: 'seal', detail: 'the proof content differs from what was sealed' }),
    );

    // A missing object and an unreachable endpoint: bad input, and no credential in the message.
    const missing = await runVerifyCli(['--archive', location, 'no-such-chain'], { home: g.home, env: env() });
    expect(missing.code).toBe(1);
    expect(String((missing.error as Error).message)).toMatch(/no archived proof of chain no-such-chain/);
    const down = await runVerifyCli(['--archive', location, chainId], {
      home: g.home,
      env: { ...env(), GOVERNOR_ARCHIVE_S3_ENDPOINT: 'http://127.0.0.1:9' },
    });
    expect(down.code).toBe(1);
    expect(String((down.error as Error).message)).toMatch(/cannot read s3:\/\/governor-proofs\/prod\/eu\//);
    expect(String((down.error as Error).message)).not.toContain('test-secret-key-never-logged');
    expect(String((down.error as Error).message)).not.toContain('test-access-key');
  }, 120_000);
});

describe('the archiver itself', () => {
  it('resumes where a terminated archiver stopped, refuses a position in the future, and names a squatter', async () => {
    const taskQueue = uniqueQueue('governor-archiver');
    const id = archiverWorkflowId(taskQueue);
    const common = { home: g.home, taskQueue, policiesDir: sessionTestBundle('5m'), archiveSweepIdleMs: 200 };
    const run = async (gc: GovernorClient): Promise<string> => {
      const h = await gc.start(
        { workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', staging)] },
        await g.creds(),
      );
      expect(((await h.result()) as ChainResult).status).toBe('Completed');
      return h.workflowId;
    };
    const gc = new GovernorClient(g.client, taskQueue);
    let worker = await startGovernorWorker(common);
    let position: string;
    try {
      const first = await run(gc);
      await archived(first);
      // The position is in the archiver's memo once a sweep has moved it.
      position = await eventually('the archiver position in its memo', async () => {
        const p = (await g.client.workflow.getHandle(id).describe()).memo?.[ARCHIVER_POSITION_MEMO];
        return typeof p === 'string' ? p : undefined;
      });
    } finally {
      await worker.stop();
    }
    await g.client.workflow.getHandle(id).terminate('test: an operator terminates the archiver');
    // The next worker starts a new archiver at the terminated one's position (from its memo), not at its own start.
    worker = await startGovernorWorker(common);
    try {
      const started = (await g.client.workflow.getHandle(id).fetchHistory()).events?.[0]
        ?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
      expect((JSON.parse(Buffer.from(started!).toString('utf8')) as { since?: string }).since).toBe(position);
      await archived(await run(gc));
    } finally {
      await worker.stop();
      await g.client.workflow.getHandle(id).terminate('test done');
    }
    // A position in the future, even under the real id, is refused: it would skip every chain until then.
    const hostile = await g.client.workflow.start(ARCHIVER_WORKFLOW, {
      workflowId: id,
      taskQueue,
      args: [{ taskQueue, since: '2099-01-01T00:00:00Z' }],
    });
    worker = await startGovernorWorker(common);
    try {
      const future = await hostile.result().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(((future as WorkflowFailedError).cause as Error | undefined)?.message)).toMatch(
        /not in the future/,
      );
    } finally {
      await worker.stop();
    }

    // The archiver's id held by another workflow: the worker says so (an error in its log), it does not pass silently.
    const squatted = uniqueQueue('governor-squatted');
    await g.client.workflow.start('squatterWorkflow', {
      workflowId: archiverWorkflowId(squatted),
      taskQueue: uniqueQueue('nowhere'),
    });
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const w = await startGovernorWorker({ ...common, taskQueue: squatted, logger });
    try {
      expect(lines.join('')).toContain('proof archiver id held by another workflow');
    } finally {
      await w.stop();
      await g.client.workflow.getHandle(archiverWorkflowId(squatted)).terminate('test done');
    }
  }, 180_000);
});
