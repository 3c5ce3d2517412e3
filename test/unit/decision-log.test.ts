import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { DecisionLogLine } from '../../contracts/decision-log';
import { FileDecisionSink, HttpDecisionSink, decisionLogSettingsFromEnv } from '../../runtime/decision-log';
import { GovernorMetrics, classifyTokenFailure, classifyVoteRejection, BoundedLabel } from '../../runtime/metrics';
import { GovernorObserver } from '../../runtime/observer';
import { eventually } from '../harness/eventually';

/*
 * The decision log's sinks against a real file system and a real HTTP server (rotation, batching,
 * retries, the bounded buffer), and the observer's promise: a failing sink never changes a decision.
 */

const line = (i: number): DecisionLogLine => ({
  decisionId: `chain-${i}#1`,
  time: '2026-01-01T00:00:00.000Z',
  chainId: `chain-${i}`,
  stepId: 's1',
  kind: 'step',
  workload: 'agent:w',
  action: 'deploy',
  resource: { type: 'Environment', id: 'staging' },
  effect: 'allow',
  determiningPolicies: ['p'],
  failClosed: false,
  bundleDigest: 'd',
  receiptHash: 'h',
  receiptSeq: 1,
  attempt: 1,
  durationMs: 1,
});

describe('decision log sinks', () => {
  it('the file sink rotates by size and keeps maxFiles rotated files, every line whole', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dlog-'));
    const file = path.join(dir, 'd.jsonl');
    const size = Buffer.byteLength(`${JSON.stringify(line(0))}\n`);
    const sink = new FileDecisionSink({ file, maxBytes: size * 3, maxFiles: 2 });
    for (let i = 0; i < 10; i++) sink.write(line(i));
    await sink.close();
    const read = (f: string): string[] =>
      fs
        .readFileSync(f, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as DecisionLogLine).chainId);
    expect(fs.readdirSync(dir).sort()).toEqual(['d.jsonl', 'd.jsonl.1', 'd.jsonl.2']);
    expect(read(file)).toEqual(['chain-9']);
    expect(read(`${file}.1`)).toEqual(['chain-6', 'chain-7', 'chain-8']);
    expect(read(`${file}.2`)).toEqual(['chain-3', 'chain-4', 'chain-5']);
  });

  it('a file that cannot be written is counted, never thrown', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dlog-'));
    const file = path.join(dir, 'd.jsonl');
    fs.mkdirSync(file); // a directory where the file should be
    const errors: string[] = [];
    const dropped: number[] = [];
    const sink = new FileDecisionSink({ file, onError: (s) => errors.push(s), onDropped: (_, n) => dropped.push(n) });
    expect(() => sink.write(line(1))).not.toThrow();
    await expect(sink.close()).resolves.toBeUndefined();
    expect(errors).toEqual(['file']);
    expect(dropped).toEqual([1]);
  });

  it('the file sink never blocks a write: lines wait in a bounded buffer, the oldest dropped and counted beyond it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dlog-'));
    const file = path.join(dir, 'd.jsonl');
    const dropped: number[] = [];
    const sink = new FileDecisionSink({ file, maxBuffer: 5, onDropped: (_, n) => dropped.push(n) });
    // Written in one synchronous run: nothing reaches the file before the appender runs.
    for (let i = 0; i < 7; i++) sink.write(line(i));
    expect(fs.existsSync(file)).toBe(false);
    await sink.close();
    const chains = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as DecisionLogLine).chainId);
    expect(chains).toEqual(['chain-2', 'chain-3', 'chain-4', 'chain-5', 'chain-6']);
    expect(dropped).toEqual([1, 1]);
    // A sink with the default buffer appends after what is there, in order, each line once (a batch
    // starts as soon as 512 lines wait, the rest follow).
    const next = new FileDecisionSink({ file });
    for (let i = 7; i < 600; i++) next.write(line(i));
    await next.close();
    const all = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    expect(all).toHaveLength(5 + 593);
    expect(all.slice(5).map((l) => (JSON.parse(l) as DecisionLogLine).chainId)).toEqual(
      Array.from({ length: 593 }, (_, i) => `chain-${i + 7}`),
    );
  });

  it('the http sink batches, retries a failing endpoint, and drops the oldest lines beyond its buffer', async () => {
    const batches: string[][] = [];
    const headers: string[] = [];
    let failuresLeft = 2;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        if (failuresLeft > 0) {
          failuresLeft--;
          res.writeHead(503).end();
          return;
        }
        headers.push(`${req.headers['content-type']} ${req.headers['x-key'] ?? '-'}`);
        batches.push(body.split('\n').filter(Boolean));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ingest`;
    try {
      const errors: string[] = [];
      const dropped: number[] = [];
      const sink = new HttpDecisionSink({
        url,
        headers: { 'x-key': 'k' },
        batchSize: 100,
        flushMs: 60_000,
        maxBuffer: 5,
        onError: (s) => errors.push(s),
        onDropped: (_s, n) => dropped.push(n),
      });
      // 7 lines written before any is sent: the buffer keeps the newest 5 (2 dropped); close() sends
      // them as one batch, which the endpoint refuses twice (503, retried) and then accepts.
      for (let i = 0; i < 7; i++) sink.write(line(i));
      await sink.close();
      expect(dropped).toEqual([1, 1]);
      expect(errors).toEqual(['http', 'http']);
      expect(batches.map((b) => b.map((l) => (JSON.parse(l) as DecisionLogLine).chainId))).toEqual([
        ['chain-2', 'chain-3', 'chain-4', 'chain-5', 'chain-6'],
      ]);
      // A full batch is sent at once (batchSize), without waiting for the flush timer.
      const small = new HttpDecisionSink({ url, batchSize: 2, flushMs: 60_000 });
      small.write(line(7));
      small.write(line(8));
      await eventually('the full batch to arrive', () => batches.length === 2);
      await small.close();
      expect(headers).toEqual(['application/x-ndjson k', 'application/x-ndjson -']);
      expect(batches[1]!.map((l) => (JSON.parse(l) as DecisionLogLine).chainId)).toEqual(['chain-7', 'chain-8']);
    } finally {
      server.close();
    }
  });

  it('the http sink gives a batch up after maxAttempts and counts it dropped', async () => {
    const server = http.createServer((_req, res) => res.writeHead(500).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const dropped: number[] = [];
      const sink = new HttpDecisionSink({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
        flushMs: 10,
        maxAttempts: 2,
        onDropped: (_s, n) => dropped.push(n),
      });
      sink.write(line(1));
      sink.write(line(2));
      await eventually('the batch to be dropped', () => dropped.length > 0);
      await sink.close();
      expect(dropped).toEqual([2]);
    } finally {
      server.close();
    }
  });

  it('settings from the environment; bad headers are refused without echoing them', () => {
    expect(
      decisionLogSettingsFromEnv({
        GOVERNOR_DECISION_LOG: '/tmp/x',
        GOVERNOR_DECISION_LOG_MAX_BYTES: '1000',
        GOVERNOR_DECISION_LOG_URL: 'https://siem.example/ingest',
        GOVERNOR_DECISION_LOG_HEADERS: '{"authorization":"Bearer s3cret"}',
      }),
    ).toEqual({
      file: '/tmp/x',
      maxBytes: 1000,
      url: 'https://siem.example/ingest',
      headers: { authorization: 'Bearer s3cret' },
    });
    expect(() => decisionLogSettingsFromEnv({ GOVERNOR_DECISION_LOG_HEADERS: 'Bearer s3cret' })).toThrow(
      /^GOVERNOR_DECISION_LOG_HEADERS: must be a JSON object of strings$/,
    );
  });
});

describe('metrics labels and the observer', () => {
  it('classifies reasons into fixed categories and caps label values', () => {
    expect(classifyTokenFailure('credential expired')).toBe('expired');
    expect(classifyTokenFailure('attestation is stale')).toBe('stale');
    expect(classifyTokenFailure('credential replayed: its jti is already bound to another chain')).toBe('replayed');
    expect(classifyTokenFailure('credential issuer not trusted')).toBe('issuer_untrusted');
    expect(classifyTokenFailure('credential is malformed')).toBe('malformed');
    expect(classifyTokenFailure('something new about <input value>')).toBe('other');
    expect(classifyVoteRejection('approval is for another chain')).toBe('other_chain');
    expect(classifyVoteRejection('approver holds none of the eligible roles (dba)')).toBe('role_not_eligible');
    expect(classifyVoteRejection('approval expired')).toBe('invalid_token');
    const label = new BoundedLabel(2);
    expect(['a', 'b', 'c', 'a'].map((v) => label.value(v))).toEqual(['a', 'b', 'other', 'a']);
  });

  it('a decision log that throws is counted and never reaches the caller', async () => {
    const metrics = new GovernorMetrics({ processMetrics: false });
    const observer = new GovernorObserver({
      metrics,
      decisionLog: {
        enabled: true,
        write: () => {
          throw new Error('disk on fire');
        },
      } as never,
    });
    const decided = {
      chainId: 'c',
      stepId: 's',
      kind: 'step' as const,
      workload: 'w',
      action: 'deploy',
      resource: { type: 'Environment', id: 'prod' },
      decision: {
        effect: 'deny' as const,
        determiningPolicies: [],
        annotations: {},
        errors: ['credential expired'],
        reason: 'credential expired',
        bundleDigest: 'd',
        inputDigest: 'i',
        evaluatedAt: '2026-01-01T00:00:00.000Z',
      },
      receipt: {
        seq: 1,
        chainId: 'c',
        kind: 'decision' as const,
        digest: 'x',
        prevHash: 'y',
        hash: 'z',
        signature: 'sig',
      },
      durationMs: 2,
      attempt: 1,
    };
    expect(() => observer.decided(decided)).not.toThrow();
    const text = await metrics.registry.metrics();
    expect(text).toContain('governor_decisions_total{effect="deny",kind="step"} 1');
    expect(text).toContain('governor_decision_policies_total{effect="deny",policy="none"} 1');
    expect(text).toContain('governor_token_failures_total{token="credential",reason="expired"} 1');
    expect(text).toContain('governor_decision_log_errors_total{sink="all"} 1');
  });
});
