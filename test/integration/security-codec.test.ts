import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import * as patches from '../../contracts/patches';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { bundleWorkflowCode } from '@temporalio/worker';
import { diffRecordedDecisions } from '../../audit/policy-diff';
import { loadBundle } from '../../policies/bundle';
import { defaultPoliciesDir } from '../../workers/worker';
import { namespaceRevocationRegistryId } from '../../contracts/revocation';
import { controlQueueOf } from '../harness/temporal';
import type { ServiceActivityInput } from '../../contracts/executor';
import type { ChainResult } from '../../contracts/state';
import { ENCRYPTED_ENCODING, loadCodec, payloadFromJson, writeKeyFile, type PayloadJson } from '../../runtime/codec';
import { startCodecServer, type CodecServer } from '../../workers/codec-server';
import { resolveTemporalCli } from '../../workers/temporal-cli';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { runVerifyCli } from '../harness/verify-cli';
import { testAddress } from '../harness/temporal';

/**
 * Payload encryption on a real server: the governor worker, the service worker and the client share
 * the AES-GCM data converter. Histories are read raw (no codec) to show no secret is stored in the
 * clear, then decoded through the authenticated codec server to show it was there all along.
 */

const CANARY = `canary-${randomBytes(12).toString('hex')}`;
const FAIL_CANARY = `failure-canary-${randomBytes(12).toString('hex')}`;
const TOKEN = randomBytes(32).toString('base64url');

let dir: string;
let keyFile: string;
let g: Governed;
let server: CodecServer;
let rawConnection: Connection;
let rawClient: Client;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-codec-it-'));
  keyFile = writeKeyFile(path.join(dir, 'codec-keys.json')).file;
  const { codec, dataConverter } = loadCodec(keyFile);
  // The workflow sandbox encodes its failures with the converter it was bundled with.
  const { code } = await bundleWorkflowCode({
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    workflowsPath: require.resolve('../../workflows'),
    failureConverterPath: dataConverter.failureConverterPath,
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
  g = await setupGoverned({
    dataConverter,
    workflowBundle: { code },
    revocationCacheTtlMs: 0, // every decision reads the registry: no waiting for a cached list to expire
    extraActivities: () => ({
      async explode(input: ServiceActivityInput) {
        throw ApplicationFailure.nonRetryable(
          `service exploded while handling ${String(input.input.secret)}`,
          'SERVICE_FAILED',
        );
      },
    }),
  });
  server = await startCodecServer({ codec, token: TOKEN, port: 0 });
  rawConnection = await Connection.connect({ address: testAddress() });
  rawClient = new Client({ connection: rawConnection });
}, 180_000);

afterAll(async () => {
  await server?.close();
  await rawConnection?.close();
  await g?.stop();
});

/** The history exactly as the server stores it, read with no data converter at all. */
async function rawHistory(workflowId: string): Promise<temporal.api.history.v1.History> {
  const events: temporal.api.history.v1.IHistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await rawConnection.workflowService.getWorkflowExecutionHistory({
      namespace: 'default',
      execution: { workflowId },
      nextPageToken,
    });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken && page.nextPageToken.length > 0 ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return temporal.api.history.v1.History.create({ events });
}

/** Every base64 spelling a secret can take inside a base64 field (3 alignments). */
function base64Forms(secret: string): string[] {
  const forms: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.from('x'.repeat(shift) + secret).toString('base64');
    // Drop the characters that depend on the neighbours: the leading ones mixing the shift, the trailing block.
    forms.push(b64.slice(Math.ceil((shift * 4) / 3) + 1, -4));
  }
  return forms;
}

/** Asserts the secret is in neither the binary history, its JSON form, nor any base64 spelling. */
function expectAbsent(history: temporal.api.history.v1.History, secret: string): void {
  const binary = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  expect(binary.includes(Buffer.from(secret))).toBe(false);
  const json = JSON.stringify(history.toJSON());
  expect(json).not.toContain(secret);
  for (const form of base64Forms(secret)) {
    expect(json).not.toContain(form);
    expect(binary.includes(Buffer.from(form))).toBe(false);
  }
}

/** Every payload object (proto3 JSON) of a JSON document, except under the keys in `skip`. */
function payloadsIn(json: unknown, out: PayloadJson[] = [], skip: string[] = []): PayloadJson[] {
  if (Array.isArray(json)) json.forEach((v) => payloadsIn(v, out, skip));
  else if (typeof json === 'object' && json !== null) {
    const o = json as Record<string, unknown>;
    const m = o.metadata as Record<string, unknown> | undefined;
    if (m && typeof m === 'object' && typeof m.encoding === 'string') out.push(o as PayloadJson);
    else for (const [k, v] of Object.entries(o)) if (!skip.includes(k)) payloadsIn(v, out, skip);
  }
  return out;
}

const isEncrypted = (p: PayloadJson): boolean =>
  Buffer.from(p.metadata!.encoding!, 'base64').toString() === ENCRYPTED_ENCODING;

/** Decodes the history's encrypted payloads through the codec server (bearer token); returns their plain texts. */
async function decodeViaServer(history: temporal.api.history.v1.History): Promise<string[]> {
  const encrypted = payloadsIn(history.toJSON()).filter(isEncrypted);
  const res = await fetch(`${server.url}/decode`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ payloads: encrypted }),
  });
  expect(res.status).toBe(200);
  const decoded = ((await res.json()) as { payloads: unknown[] }).payloads.map((p) => payloadFromJson(p));
  expect(decoded).toHaveLength(encrypted.length);
  return decoded.map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8'));
}

describe('payload encryption on the real server', () => {
  let completedId: string;

  it('runs a governed chain with encryption on; the raw history never holds the canary, the codec server reveals it', async () => {
    const chain = {
      workload: WORKLOAD,
      summary: `release with ${CANARY}`,
      steps: [
        g.serviceStep(
          'deploy',
          'deploy',
          { type: 'Environment', id: 'staging' },
          { input: { secret: CANARY }, context: { ticket: CANARY } },
        ),
        g.serviceStep('announce', 'notify', { type: 'Channel', id: 'releases' }, { input: { note: CANARY } }),
      ],
    };
    const handle = await g.gc.start(chain, await g.creds());
    completedId = handle.workflowId;
    const result = (await handle.result()) as ChainResult;
    expect(result.status).toBe('Completed');
    expect(g.ledger.has(`${handle.workflowId}/deploy`)).toBe(true);
    // The client with the codec reads everything back (query and static summary).
    expect((await g.gc.status(handle.workflowId)).steps.map((s) => s.status)).toEqual(['completed', 'completed']);
    expect(await (await handle.describe()).staticSummary()).toContain(CANARY);

    const history = await rawHistory(handle.workflowId);
    expectAbsent(history, CANARY);
    // Every payload of the history is encrypted except the search attributes (workload, status…: not
    // secret, and visibility must index them) and Core's marker bookkeeping: local-activity metadata and
    // `patched()` ids (`{ id, deprecated }`, the governor's own patch names).
    const payloads = payloadsIn(
      history.toJSON(),
      [],
      ['searchAttributes', 'upsertWorkflowSearchAttributesEventAttributes'],
    );
    const plain = payloads
      .filter((p) => !isEncrypted(p))
      .map((p) => JSON.parse(Buffer.from(p.data ?? '', 'base64').toString()) as unknown);
    expect(payloads.filter(isEncrypted).length).toBeGreaterThan(10);
    expect(plain.length).toBeGreaterThan(0);
    const patchIds = new Set<string>(Object.values(patches));
    for (const value of plain) {
      const keys = Object.keys(value as object).sort();
      if (keys.join() === 'deprecated,id') expect(patchIds.has((value as { id: string }).id)).toBe(true);
      else expect(keys).toEqual(expect.arrayContaining(['activity_id', 'activity_type', 'seq']));
    }
    // The workflow input, activity inputs and the summary are ciphertext.
    const started = history.events[0]!.workflowExecutionStartedEventAttributes!;
    expect(Buffer.from(started.input!.payloads![0]!.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(history.events[0]!.userMetadata!.summary!.metadata!.encoding!).toString()).toBe(
      ENCRYPTED_ENCODING,
    );
    // The search attributes stay readable (not secret; the list and filters rely on them).
    expect(defaultPayloadConverter.fromPayload(started.searchAttributes!.indexedFields!.GovernorWorkload!)).toBe(
      WORKLOAD,
    );

    const texts = await decodeViaServer(history);
    expect(texts.some((t) => t.includes(CANARY))).toBe(true);
    expect(texts.join('\n')).toContain(`"secret":"${CANARY}"`);
  });

  it('the Temporal CLI shows the history decoded through the codec server only with the token', async () => {
    const cli = resolveTemporalCli(); // the binary global-setup started the dev server with
    // Asynchronously: the codec server answers from this process's event loop.
    const show = (extra: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const args = [
          'workflow',
          'show',
          '--address',
          testAddress(),
          '--namespace',
          'default',
          '--workflow-id',
          completedId,
          '--output',
          'json',
          '--codec-endpoint',
          server.url,
          ...extra,
        ];
        execFile(cli, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, stdout, stderr }),
        );
      });
    const decoded = await show(['--codec-auth', `Bearer ${TOKEN}`]);
    expect(decoded.code).toBe(0);
    // The CLI prints decoded payloads in proto3 JSON (data in base64): the canary is there, nothing is encrypted.
    expect(base64Forms(CANARY).some((form) => decoded.stdout.includes(form))).toBe(true);
    expect(decoded.stdout).not.toContain(Buffer.from(ENCRYPTED_ENCODING).toString('base64'));
    const refused = await show(['--codec-auth', 'Bearer not-the-token-0123456789']);
    expect(refused.code).not.toBe(0);
    for (const form of base64Forms(CANARY)) expect(refused.stdout).not.toContain(form);
    expect(`${refused.stdout}${refused.stderr}`).not.toContain('not-the-token-0123456789');
  });

  it('encrypts failure messages: a failing step and a denied chain leave only "Encoded failure" in raw history', async () => {
    const failing = await g.gc.start(
      {
        workload: WORKLOAD,
        steps: [
          {
            id: 'boom',
            action: 'deploy',
            resource: { type: 'Environment', id: 'staging' },
            input: { secret: FAIL_CANARY },
            executor: { type: 'activity', taskQueue: g.serviceQueue, activityType: 'explode' },
          },
        ],
      },
      await g.creds(),
    );
    const result = (await failing.result()) as ChainResult;
    expect(result.status).toBe('Failed');
    expect(JSON.stringify(result)).toContain(FAIL_CANARY);

    const history = await rawHistory(failing.workflowId);
    expectAbsent(history, FAIL_CANARY);
    expect(JSON.stringify(history.toJSON())).not.toContain('service exploded');
    const failed = history.events.map((e) => e.activityTaskFailedEventAttributes).filter((a) => a);
    expect(failed.length).toBeGreaterThan(0);
    for (const a of failed) {
      expect(a!.failure!.message).toBe('Encoded failure');
      expect(a!.failure!.stackTrace ?? '').toBe('');
      expect(Buffer.from(a!.failure!.encodedAttributes!.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    }
    const texts = await decodeViaServer(history);
    expect(texts.some((t) => t.includes(`service exploded while handling ${FAIL_CANARY}`))).toBe(true);

    // A chain denied by policy: the reason travels in the (encrypted) result.
    const denied = await g.run({
      workload: WORKLOAD,
      steps: [
        g.serviceStep(
          'drop',
          'drop_table',
          { type: 'Database', id: 'prod' },
          { input: { table: FAIL_CANARY }, context: { ticket: FAIL_CANARY } },
        ),
      ],
    });
    expect(denied.status).toBe('Denied');
    const deniedHistory = await rawHistory(denied.chainId);
    expectAbsent(deniedHistory, FAIL_CANARY);
    expect(JSON.stringify(deniedHistory.toJSON())).not.toContain(denied.reason!);
    expect((await decodeViaServer(deniedHistory)).join('\n')).toContain(FAIL_CANARY);
  });

  it('revocation still works: the registry memo is encrypted and authorize decodes it', async () => {
    const workload = `agent:codec-${randomBytes(4).toString('hex')}`;
    const waiting = await g.gc.start(
      { workload, steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })] },
      await g.creds(workload),
    );
    await g.waitFor(waiting.workflowId, (s) => s.status === 'AwaitingApproval');
    for (let i = 0; i < 100 && (await g.gc.list({ workload, status: 'AwaitingApproval' })).length === 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    const revoked = await g.gc.revokeWorkload({ workload, reason: `leak ${CANARY}`, by: 'security' });
    expect(revoked.chains).toEqual([waiting.workflowId]);
    expect(((await waiting.result()) as ChainResult).status).toBe('Revoked');

    // The memo as the server stores it is ciphertext; the codec client reads it back.
    const described = await rawConnection.workflowService.describeWorkflowExecution({
      namespace: 'default',
      execution: { workflowId: namespaceRevocationRegistryId(controlQueueOf(g.taskQueue)) },
    });
    const memo = described.workflowExecutionInfo!.memo!.fields!.revoked!;
    expect(Buffer.from(memo.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(temporal.api.common.v1.Payload.encode(memo).finish()).includes(Buffer.from(CANARY))).toBe(false);
    expect(
      (
        (await g.client.workflow.getHandle(namespaceRevocationRegistryId(controlQueueOf(g.taskQueue))).describe()).memo
          ?.revoked as Record<string, unknown>
      )[workload],
    ).toMatchObject({ workload });

    // A chain started after the revocation is denied by authorize, which read the encrypted memo.
    const later = await g.run(
      { workload, steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' })] },
      await g.creds(workload),
    );
    expect(later.status).toBe('Denied');
    expect(later.reason).toContain(`workload ${workload} is revoked`);
    expect(g.ledger.has(`${later.chainId}/deploy`)).toBe(false);
  });

  it('a client without the codec cannot read encrypted results (fails, never shows ciphertext as data)', async () => {
    await expect(rawClient.workflow.getHandle(completedId).result()).rejects.toThrow(/binary\/encrypted|encoding/i);
  });

  it('policy diff reads the decisions of encrypted chains with the codec, and refuses without it', async () => {
    const candidate = loadBundle(defaultPoliciesDir());
    const report = await diffRecordedDecisions(g.client, candidate, { chains: [completedId] });
    expect(report).toMatchObject({ chains: 1, decisions: 2, reEvaluated: 2, skipped: 0, flipped: [] });
    await expect(diffRecordedDecisions(rawClient, candidate, { chains: [completedId] })).rejects.toThrow(
      /payloads are encrypted \(binary\/encrypted\)/,
    );
  });

  describe('governor verify with the codec key file', () => {
    const cli = (args: string[], codecKeys?: string) =>
      runVerifyCli(args, {
        home: g.home,
        env: { TEMPORAL_ADDRESS: testAddress() },
        ...(codecKeys ? { codecKeys } : {}),
      });

    it('verifies the encrypted chain live and from an exported proof that stays encrypted', async () => {
      const proofFile = path.join(dir, 'proof.json');
      const live = await cli([completedId, '--export', proofFile], keyFile);
      expect(live.error).toBeUndefined();
      expect(live.json.verdict).toBe('verified');
      expect(live.code).toBe(0);
      expect((live.json.checks as { name: string; ok: boolean }[]).every((c) => c.ok)).toBe(true);
      const proofText = fs.readFileSync(proofFile, 'utf8');
      expect(proofText).not.toContain(CANARY);
      for (const form of base64Forms(CANARY)) expect(proofText).not.toContain(form);

      const offline = await cli(['--proof', proofFile], keyFile);
      expect(offline.json.verdict).toBe('verified');
      expect(offline.code).toBe(0);
    });

    it('without the key file (or with the wrong one) verification fails and says why', async () => {
      const without = await cli([completedId]);
      expect(without.code).toBe(2);
      const history = (without.json.checks as { name: string; ok: boolean; detail: string }[]).find(
        (c) => c.name === 'history',
      )!;
      expect(history.ok).toBe(false);
      expect(history.detail).toContain('payloads are encrypted');

      const otherKeys = writeKeyFile(path.join(dir, 'other-keys.json')).file;
      const wrong = await cli([completedId], otherKeys);
      expect(wrong.code).toBe(2);
      const detail = (wrong.json.checks as { name: string; detail: string }[]).find(
        (c) => c.name === 'history',
      )!.detail;
      expect(detail).toMatch(/failed authentication/);
      expect(detail).not.toContain(fs.readFileSync(otherKeys, 'utf8').slice(30, 60));
    });
  });
});
