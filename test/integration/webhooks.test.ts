import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { issueApproval } from '../../identity';
import { loadBundle } from '../../policies/bundle';
import { verifyWebhook } from '../../activities/notify';
import type { ChainResult } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { eventually } from '../harness/eventually';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { freePort } from '../../workers/dev-server';
import { parse, stringify } from 'yaml';
import { createReplayer, fetchChainHistories, verifyChain } from '../../audit/verify';
import { sessionTestBundle } from '../harness/session-bundle';
import { makeHome, startGovernorWorker, uniqueQueue } from '../harness/temporal';

/**
 * Webhook notifications (issue 17 item 4, README "Notifications") on the real dev server, against real
 * HTTP receivers on loopback: what is sent and when, how it is signed, that retries keep the idempotency
 * key, and that a receiver that is down or hangs never holds up or fails the chain.
 */

const SECRET = 'whsec-test-0123456789abcdef';
const FILE_SECRET = 'whsec-file-fedcba9876543210';
const SECRET_ENV = 'GOVERNOR_TEST_WEBHOOK_SECRET';

interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: Record<string, unknown>;
  at: number;
  status: number;
}

/** A loopback receiver: `/flaky` answers 500 to the first request of each idempotency key, `/hang` never answers. */
class Receiver {
  readonly requests: Received[] = [];
  private readonly hanging: http.ServerResponse[] = [];
  private readonly seenFlaky = new Set<string>();
  private server!: http.Server;
  url = '';

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const key = String(req.headers['idempotency-key']);
        let status = 200;
        if (req.url === '/hang') {
          this.hanging.push(res);
          this.requests.push({
            path: req.url,
            headers: req.headers,
            raw,
            body: JSON.parse(raw),
            at: Date.now(),
            status: 0,
          });
          return;
        }
        if (req.url === '/flaky' && !this.seenFlaky.has(key)) {
          this.seenFlaky.add(key);
          status = 500;
        }
        this.requests.push({
          path: req.url ?? '',
          headers: req.headers,
          raw,
          body: JSON.parse(raw),
          at: Date.now(),
          status,
        });
        res.writeHead(status).end(status === 200 ? 'ok' : 'try again');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Requests on `path` about `chainId`, in arrival order. */
  of(p: string, chainId: string): Received[] {
    return this.requests.filter((r) => r.path === p && JSON.stringify(r.body).includes(chainId));
  }

  async stop(): Promise<void> {
    for (const r of this.hanging) r.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The receiver's own check of the documented scheme (independent of the governor's helper). */
function signatureValid(r: Received, secret: string): boolean {
  const header = String(r.headers['x-governor-signature']);
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  return createHmac('sha256', secret).update(`${m[1]}.${r.raw}`).digest('hex') === m[2];
}

const prodDeploy = (g: Governed) => ({
  workload: WORKLOAD,
  owner: 'team-release',
  steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
});

async function escalate(g: Governed): Promise<{ chainId: string; digest: string; escalatedAt: number }> {
  const handle = await g.gc.start(prodDeploy(g), await g.creds());
  const state = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
  const step = state.steps.find((s) => s.approval?.outcome === 'pending')!;
  return {
    chainId: handle.workflowId,
    digest: step.approval!.stepDigest,
    escalatedAt: Date.parse(step.decision!.evaluatedAt!),
  };
}

const vote = (g: Governed, chainId: string, digest: string, sub: string, decision: 'approve' | 'deny' = 'approve') =>
  issueApproval({
    home: g.home,
    sub,
    roles: ['sre-lead'],
    chainId,
    stepId: 'deploy',
    stepDigest: digest,
    decision,
    reason: `${sub} says ${decision}`,
  });

let receiver: Receiver;
let g: Governed;
let secretFile: string;
const previousEnv = process.env[SECRET_ENV];

beforeAll(async () => {
  process.env[SECRET_ENV] = SECRET;
  receiver = await new Receiver().start();
  secretFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-webhook-')), 'slack.secret');
  fs.writeFileSync(secretFile, `${FILE_SECRET}\n`);
  const bundleDir = defaultBundleWith((m) => {
    m.notifications = {
      webhooks: [
        { url: `${receiver.url}/json`, secret: { env: SECRET_ENV } },
        {
          url: `${receiver.url}/slack`,
          secret: { file: secretFile },
          format: 'slack',
          inboxUrl: 'https://inbox.example.test/chains/{chainId}',
          temporalUiUrl: 'https://temporal.example.test/',
        },
        { url: `${receiver.url}/flaky`, secret: { env: SECRET_ENV }, events: ['waiting'] },
      ],
    };
  });
  g = await setupGoverned({ policiesDir: bundleDir });
});

afterAll(async () => {
  await g?.stop();
  await receiver?.stop();
  if (previousEnv === undefined) delete process.env[SECRET_ENV];
  else process.env[SECRET_ENV] = previousEnv;
});

describe('webhook notifications on the real server', () => {
  it('sends waiting, each counted vote and the outcome, in order, signed, with Slack blocks linking the inbox and the Temporal UI', async () => {
    const { chainId, digest } = await escalate(g);
    const waiting = await eventually('the waiting notification', async () => receiver.of('/json', chainId)[0]);
    expect(waiting.body).toMatchObject({
      event: 'waiting',
      kind: 'chain',
      chainId,
      workload: WORKLOAD,
      owner: 'team-release',
      step: { id: 'deploy', action: 'deploy', resource: 'Environment::"prod"' },
      approval: { roles: ['sre-lead'], quorum: 2, stillNeeded: 2, approvedBy: [], deadline: '30m', outcome: 'pending' },
      links: { temporal: `http://localhost:8233/namespaces/default/workflows/${encodeURIComponent(chainId)}` },
    });
    expect(waiting.headers['x-governor-event']).toBe('waiting');
    expect(waiting.headers['content-type']).toBe('application/json');
    expect(waiting.headers['idempotency-key']).toMatch(/^[0-9a-f]{64}$/);
    expect(waiting.body.id).toBe(waiting.headers['idempotency-key']);

    // Signed with the secret: verifies with it (the receiver's own HMAC and the exported helper), not with another.
    expect(signatureValid(waiting, SECRET)).toBe(true);
    expect(verifyWebhook(SECRET, String(waiting.headers['x-governor-signature']), waiting.raw)).toBe(true);
    expect(signatureValid(waiting, 'another-secret')).toBe(false);
    expect(verifyWebhook('another-secret', String(waiting.headers['x-governor-signature']), waiting.raw)).toBe(false);
    // A tampered body does not verify either.
    expect(
      verifyWebhook(SECRET, String(waiting.headers['x-governor-signature']), waiting.raw.replace('deploy', 'delete')),
    ).toBe(false);

    const slack = await eventually('the Slack waiting message', async () => receiver.of('/slack', chainId)[0]);
    expect(signatureValid(slack, FILE_SECRET)).toBe(true);
    expect(signatureValid(slack, SECRET)).toBe(false);
    expect(slack.headers['idempotency-key']).toBe(waiting.headers['idempotency-key']);
    const blocks = slack.body.blocks as {
      type: string;
      text?: { text: string };
      elements?: { url: string; text: { text: string } }[];
    }[];
    expect(Object.keys(slack.body).sort()).toEqual(['blocks', 'text']);
    expect(blocks.map((b) => b.type)).toEqual(['header', 'section', 'actions']);
    expect(blocks[0]!.text!.text).toBe('Approval needed: deploy on Environment::"prod"');
    expect(blocks[1]!.text!.text).toContain('*Still needed:* 2 of 2 from sre-lead');
    expect(blocks[1]!.text!.text).toContain(`\`${chainId}\``);
    expect(blocks[2]!.elements!.map((e) => [e.text.text, e.url])).toEqual([
      ['Open the approval inbox', `https://inbox.example.test/chains/${encodeURIComponent(chainId)}`],
      [
        'Open in Temporal UI',
        `https://temporal.example.test/namespaces/default/workflows/${encodeURIComponent(chainId)}`,
      ],
    ]);

    // Two counted votes (a repeat in between is not an event), then the outcome.
    await g.gc.submitApproval(chainId, await vote(g, chainId, digest, 'alice'));
    await eventually('alice vote notification', async () => receiver.of('/json', chainId)[1]);
    const repeat = await g.gc.submitApproval(chainId, await vote(g, chainId, digest, 'alice'));
    expect(repeat.verdict.repeat).toBe(true);
    await g.gc.submitApproval(chainId, await vote(g, chainId, digest, 'bob'));
    const result = (await g.gc.result(chainId)) as ChainResult;
    expect(result.status).toBe('Completed');
    const all = await eventually('the outcome notification', async () => {
      const got = receiver.of('/json', chainId);
      return got.some((r) => r.body.event === 'outcome') ? got : undefined;
    });
    expect(all.map((r) => [r.body.event, (r.body.vote as { approver?: string } | undefined)?.approver])).toEqual([
      ['waiting', undefined],
      ['vote', 'alice'],
      ['vote', 'bob'],
      ['outcome', undefined],
    ]);
    expect(all[1]!.body).toMatchObject({
      vote: { approver: 'alice', decision: 'approve', roles: ['sre-lead'], reason: 'alice says approve' },
      approval: { stillNeeded: 1, approvedBy: ['alice'] },
    });
    expect(all[3]!.body).toMatchObject({ event: 'outcome', outcome: { status: 'Completed' } });
    expect(new Set(all.map((r) => r.headers['idempotency-key'])).size).toBe(4);
    for (const r of all) expect(signatureValid(r, SECRET)).toBe(true);
    const slackAll = await eventually('every Slack message', async () => {
      const got = receiver.of('/slack', chainId);
      return got.length === 4 ? got : undefined;
    });
    expect(slackAll.map((r) => (r.body.blocks as { text: { text: string } }[])[0]!.text.text)).toEqual([
      'Approval needed: deploy on Environment::"prod"',
      'alice voted approve: deploy on Environment::"prod"',
      'bob voted approve: deploy on Environment::"prod"',
      `Chain Completed: ${WORKLOAD}`,
    ]);

    // The chain still verifies (its history now holds the notification workflows' starts).
    const replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
    try {
      const report = await verifyChain({
        histories: await fetchChainHistories(g.client, chainId),
        home: g.home,
        chainId,
        replayer,
      });
      expect(report.checks.filter((c) => !c.ok)).toEqual([]);
      expect(report.verdict).toBe('verified');
    } finally {
      await replayer.close();
    }

    // No secret anywhere in history: not in the chain's, not in the notification workflows'.
    const histories = [chainId, ...all.map((r) => `governor-notify:${(r.body as { key: string }).key}`)];
    for (const id of histories) {
      const history = JSON.stringify(await g.client.workflow.getHandle(id).fetchHistory());
      expect(history).not.toContain(SECRET);
      expect(history).not.toContain(FILE_SECRET);
    }
  }, 90_000);

  it('retries a receiver that answered 500 with the same idempotency key, and does not resend to those that took it', async () => {
    const { chainId } = await escalate(g);
    const flaky = await eventually('the retried delivery', async () => {
      const got = receiver.of('/flaky', chainId);
      return got.length >= 2 ? got : undefined;
    });
    expect(flaky.map((r) => r.status)).toEqual([500, 200]);
    expect(flaky[1]!.headers['idempotency-key']).toBe(flaky[0]!.headers['idempotency-key']);
    expect(flaky[1]!.body.id).toBe(flaky[0]!.body.id);
    // Each attempt is signed afresh (its own timestamp) and verifies.
    for (const r of flaky) expect(signatureValid(r, SECRET)).toBe(true);
    // The json and Slack receivers took the waiting event on the first attempt: the retry skipped them.
    const json = receiver.of('/json', chainId);
    const slack = receiver.of('/slack', chainId);
    expect(json.map((r) => r.body.event)).toEqual(['waiting']);
    expect(slack).toHaveLength(1);
    expect(json[0]!.headers['idempotency-key']).toBe(flaky[0]!.headers['idempotency-key']);
    expect(slack[0]!.headers['idempotency-key']).toBe(flaky[0]!.headers['idempotency-key']);
    await g.gc.submitApproval(
      chainId,
      await vote(g, chainId, (await g.gc.status(chainId)).steps[0]!.approval!.stepDigest, 'carol', 'deny'),
    );
    expect((await g.gc.result(chainId)).status).toBe('Denied');
  }, 90_000);

  it('refuses a notification workflow that anyone else started (raw client): nothing is signed or sent', async () => {
    const { chainId } = await escalate(g);
    await eventually('the genuine waiting notification', async () => receiver.of('/json', chainId)[0]);
    const before = receiver.requests.length;
    // An attacker with namespace access starts the notification workflow on the governor's queue, naming a
    // real chain, with a message of their own: unsigned by the governor, it must never reach a receiver.
    const forged = await g.client.workflow.start('governorNotifyWorkflow', {
      taskQueue: g.taskQueue,
      workflowId: `forged-notify-${chainId}`,
      args: [
        {
          event: 'outcome',
          key: `${chainId}/outcome-forged`,
          kind: 'chain',
          chainId,
          workload: WORKLOAD,
          outcome: { status: 'Completed', reason: 'approved: click https://evil.example/login to confirm' },
        },
      ],
    });
    // WorkflowFailedError ← ActivityFailure ← the activity's refusal.
    const failure = await forged.result().then(
      () => undefined,
      (err: { cause?: { cause?: { message?: string; nonRetryable?: boolean } } }) => err.cause?.cause,
    );
    expect(failure?.message).toBe('notification refused: it was not started by a governed chain; nothing was sent');
    expect(failure?.nonRetryable).toBe(true);
    expect(receiver.requests.slice(before).filter((r) => r.raw.includes('evil.example'))).toEqual([]);
    expect(receiver.requests.filter((r) => r.raw.includes('outcome-forged'))).toEqual([]);
    await g.gc.submitApproval(
      chainId,
      await vote(g, chainId, (await g.gc.status(chainId)).steps[0]!.approval!.stepDigest, 'carol', 'deny'),
    );
  }, 90_000);

  it('measures the time from a chain escalating to its webhook delivered', async () => {
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      const { chainId, digest, escalatedAt } = await escalate(g);
      const delivered = await eventually('the waiting notification', async () => receiver.of('/json', chainId)[0]);
      samples.push(delivered.at - escalatedAt);
      await g.gc.submitApproval(chainId, await vote(g, chainId, digest, 'dave', 'deny'));
    }
    samples.sort((a, b) => a - b);
    process.stdout.write(
      `escalation → webhook delivered (ms, ${samples.length} chains): ${samples.join(', ')}; median ${samples[2]}\n`,
    );
    expect(samples.every((ms) => Number.isFinite(ms))).toBe(true);
  }, 120_000);
});

describe('a receiver that is down or hangs', () => {
  let bad: Governed;
  let hang: Receiver;
  beforeAll(async () => {
    hang = await new Receiver().start();
    const closedPort = await freePort();
    bad = await setupGoverned({
      policiesDir: defaultBundleWith((m) => {
        m.notifications = {
          webhooks: [
            { url: `http://127.0.0.1:${closedPort}/down`, secret: { env: SECRET_ENV } },
            { url: `${hang.url}/hang`, secret: { env: SECRET_ENV }, format: 'slack' },
          ],
        };
      }),
    });
  });
  afterAll(async () => {
    await bad?.stop();
    await hang?.stop();
  });

  it('never blocks or fails the chain: it completes, or is denied, while its notifications are still being retried', async () => {
    const approved = await escalate(bad);
    await eventually('the hanging receiver to get the waiting message', async () =>
      hang.of('/hang', approved.chainId).length >= 1 ? true : undefined,
    );
    await bad.gc.submitApproval(approved.chainId, await vote(bad, approved.chainId, approved.digest, 'alice'));
    await bad.gc.submitApproval(approved.chainId, await vote(bad, approved.chainId, approved.digest, 'bob'));
    expect((await bad.gc.result(approved.chainId)).status).toBe('Completed');
    // The chain ended; its notifications are still in flight (held open, or retrying) in their own workflows.
    const outcome = bad.client.workflow.getHandle(`governor-notify:${approved.chainId}/outcome`);
    expect((await outcome.describe()).status.name).toBe('RUNNING');
    expect((await bad.client.workflow.getHandle(approved.chainId).describe()).status.name).toBe('COMPLETED');

    const denied = await escalate(bad);
    await bad.gc.submitApproval(denied.chainId, await vote(bad, denied.chainId, denied.digest, 'carol', 'deny'));
    expect((await bad.gc.result(denied.chainId)).status).toBe('Denied');
    const waiting = bad.client.workflow.getHandle(`governor-notify:${denied.chainId}/deploy/waiting`);
    expect((await waiting.describe()).status.name).toBe('RUNNING');
  }, 90_000);
});

describe('a bad webhook in the manifest', () => {
  const bundleWith = (webhook: Record<string, unknown>) =>
    defaultBundleWith((m) => {
      m.notifications = { webhooks: [webhook] };
    });

  it.each([
    [
      'an ftp:// url',
      { url: 'ftp://hooks.example.test/x', secret: { env: 'X' } },
      /notifications\.webhooks\.0\.url.*http:\/\/ or https:\/\//,
    ],
    ['no secret', { url: 'https://hooks.example.test/x' }, /notifications\.webhooks\.0\.secret.*Required/],
    [
      'credentials in the url',
      { url: 'https://u:p@hooks.example.test/x', secret: { env: 'X' } },
      /notifications\.webhooks\.0\.url.*credentials/,
    ],
    [
      'a secret written inline',
      { url: 'https://hooks.example.test/x', secret: 'hunter2' },
      /notifications\.webhooks\.0\.secret/,
    ],
    [
      'an unknown event',
      { url: 'https://hooks.example.test/x', secret: { env: 'X' }, events: ['started'] },
      /notifications\.webhooks\.0\.events\.0/,
    ],
  ])('refuses %s, naming the field', async (_what, webhook, expected) => {
    const dir = bundleWith(webhook);
    expect(() => loadBundle(dir)).toThrow(expected);
    // The worker refuses to start on it.
    const home = await makeHome();
    await expect(
      startGovernorWorker({ home, taskQueue: uniqueQueue('bad-webhook'), policiesDir: dir }),
    ).rejects.toThrow(expected);
  });

  it('never echoes an inline secret in the error', () => {
    const dir = bundleWith({ url: 'https://hooks.example.test/x', secret: 'hunter2-inline-secret' });
    let message = '';
    try {
      loadBundle(dir);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/notifications\.webhooks\.0\.secret/);
    expect(message).not.toContain('hunter2-inline-secret');
  });
});

describe('agent sessions', () => {
  let sg: Governed;
  beforeAll(async () => {
    const dir = sessionTestBundle('5m');
    const file = path.join(dir, 'manifest.yaml');
    const manifest = parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    manifest.notifications = { webhooks: [{ url: `${receiver.url}/json`, secret: { env: SECRET_ENV } }] };
    fs.writeFileSync(file, stringify(manifest));
    sg = await setupGoverned({ policiesDir: dir });
  });
  afterAll(async () => {
    await sg?.stop();
  });

  it('notifies a session step waiting for approval, its votes, and the session outcome', async () => {
    const c = await sg.creds();
    const { sessionId } = await sg.gc.openSession({ workload: WORKLOAD, owner: 'team-agents', ...c });
    const step = sg.serviceStep('w1', 'doc.write', { type: 'Doc', id: 'protected' });
    const first = await sg.gc.proposeStep(sessionId, { step, credential: c.credential });
    expect(first.outcome).toBe('awaiting-approval');
    const waiting = await eventually('the waiting notification', async () => receiver.of('/json', sessionId)[0]);
    expect(waiting.body).toMatchObject({
      event: 'waiting',
      kind: 'session',
      chainId: sessionId,
      step: { id: 'w1', action: 'doc.write', resource: 'Doc::"protected"' },
      approval: { roles: ['sre-lead'], quorum: 2, stillNeeded: 2 },
    });
    const digest = (await sg.gc.status(sessionId)).steps[0]!.approval!.stepDigest;
    for (const sub of ['alice', 'bob']) {
      const token = await issueApproval({
        home: sg.home,
        sub,
        roles: ['sre-lead'],
        chainId: sessionId,
        stepId: 'w1',
        stepDigest: digest,
        decision: 'approve',
      });
      await sg.gc.submitApproval(sessionId, token);
    }
    await sg.gc.awaitStep(sessionId, 'w1', { credential: c.credential });
    expect((await sg.gc.closeSession(sessionId)).status).toBe('Completed');
    const all = await eventually('the outcome notification', async () => {
      const got = receiver.of('/json', sessionId);
      return got.some((r) => r.body.event === 'outcome') ? got : undefined;
    });
    expect(all.map((r) => r.body.event)).toEqual(['waiting', 'vote', 'vote', 'outcome']);
    expect(all[3]!.body).toMatchObject({ kind: 'session', outcome: { status: 'Completed' } });
    for (const r of all) expect(signatureValid(r, SECRET)).toBe(true);
  }, 90_000);
});
