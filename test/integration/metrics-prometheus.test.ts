import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ChainState } from '../../contracts/state';
import { DecisionLogLine } from '../../contracts/decision-log';
import { issueAttestation, issueCredential } from '../../identity';
import { GovernorClient } from '../../sdk/client';
import { freePort } from '../../workers/dev-server';
import { defaultBundleWith } from '../harness/bundles';
import { eventually } from '../harness/eventually';
import { schemaErrors } from '../harness/published-schemas';
import { makeHome, testAddress, testClient, uniqueQueue } from '../harness/temporal';

/*
 * Operations with real parts (DESIGN §12, issue 19): the real `governor worker` (built CLI) with
 * --metrics-port and --decision-log, reaching the shared Temporal server through a loopback TCP relay
 * (closed at the end to take "Temporal" away), scraped by Debian's `prometheus` every second. A known
 * set of chains (allowed, denied, escalated) runs; the decision counts are read back through
 * Prometheus's HTTP query API; the decision log has exactly one line per decision, each valid against
 * contracts/decision-log-line.schema.json; /healthz and /readyz answer, and /readyz fails when the
 * bundle on disk is invalid and when Temporal is unreachable.
 */

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'bin', 'governor.js');
const example = (name: string): unknown =>
  parseYaml(fs.readFileSync(path.join(root, 'examples', 'chains', name), 'utf8')) as unknown;

/** A TCP relay to the test server that can be cut (every connection destroyed, no new ones accepted). */
async function startRelay(target: string): Promise<{ address: string; cut(): Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(port, host);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    address,
    cut: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

interface Proc {
  child: ChildProcess;
  out: () => string;
}

function startProc(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(cmd, args, { env: { ...process.env, ...env } });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, out: () => out };
}

async function stopProc(p: Proc | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((resolve) => p.child.once('exit', resolve));
  p.child.kill(signal);
  await exited;
}

/** One instant query through Prometheus's HTTP API: the samples as { labels → value }. */
async function promQuery(base: string, query: string): Promise<{ metric: Record<string, string>; value: number }[]> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await res.json()) as {
    status: string;
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  if (body.status !== 'success') throw new Error(`prometheus query failed: ${JSON.stringify(body)}`);
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

describe('operations: Prometheus metrics, health endpoints and the decision log of a real worker', () => {
  let worker: Proc | undefined;
  let prometheus: Proc | undefined;
  let relay: Awaited<ReturnType<typeof startRelay>> | undefined;
  let closeClient: (() => Promise<void>) | undefined;

  afterAll(async () => {
    await stopProc(prometheus);
    await stopProc(worker);
    await relay?.cut();
    await closeClient?.();
  });

  it('counts decisions by effect through Prometheus, logs one schema-valid line per decision, and reports readiness', async () => {
    const home = await makeHome();
    const taskQueue = uniqueQueue('ops');
    const policies = defaultBundleWith(() => {});
    const decisionLog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-dlog-')), 'decisions.jsonl');
    const metricsPort = await freePort();
    relay = await startRelay(testAddress());
    worker = startProc(
      process.execPath,
      [
        cli,
        'worker',
        '--task-queue',
        taskQueue,
        '--policies',
        policies,
        '--metrics-port',
        String(metricsPort),
        '--decision-log',
        decisionLog,
      ],
      { GOVERNOR_HOME: home, TEMPORAL_ADDRESS: relay.address, LOG_LEVEL: 'warn' },
    );
    const ops = `http://127.0.0.1:${metricsPort}`;
    await eventually(
      'the worker to print its endpoints',
      () => worker!.out().includes(`${ops}/readyz`) || worker!.child.exitCode !== null,
      {
        timeoutMs: 120_000,
      },
    );
    expect(worker.out()).toContain(`metrics ${ops}/metrics, health ${ops}/healthz, readiness ${ops}/readyz`);

    const healthz = await fetch(`${ops}/healthz`);
    expect(healthz.status).toBe(200);
    const ready = await eventually('/readyz 200', async () => {
      const r = await fetch(`${ops}/readyz`);
      return r.status === 200 ? ((await r.json()) as { checks: Record<string, { ok: boolean }> }) : undefined;
    });
    expect(Object.keys(ready.checks).sort()).toEqual(['fleet', 'keys', 'policyBundle', 'temporal', 'worker']);

    // Prometheus scraping the worker every second.
    const promPort = await freePort();
    const promDir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-prom-'));
    const config = path.join(promDir, 'prometheus.yml');
    fs.writeFileSync(
      config,
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        '  - job_name: governor',
        `    static_configs: [{ targets: ["127.0.0.1:${metricsPort}"] }]`,
        '',
      ].join('\n'),
    );
    prometheus = startProc('prometheus', [
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(promDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ]);
    const prom = `http://127.0.0.1:${promPort}`;
    await eventually(
      'prometheus to be ready',
      async () =>
        (await fetch(`${prom}/-/ready`)
          .then((r) => r.ok)
          .catch(() => false)) || prometheus!.child.exitCode !== null,
      { timeoutMs: 60_000 },
    );
    expect(prometheus.child.exitCode).toBeNull();

    // The known set of chains: 3 allowed (2 decisions each), 2 denied (1 each), 1 escalated (1, left waiting).
    const { client, connection } = await testClient();
    closeClient = () => connection.close();
    const gc = new GovernorClient(client, taskQueue);
    const creds = async () => ({
      credential: await issueCredential({ home, sub: 'agent:release-bot' }),
      attestation: await issueAttestation({ home, sub: 'agent:release-bot' }),
    });
    const allowed = await Promise.all(
      [0, 1, 2].map(async () => gc.start(example('deploy-staging.yaml'), await creds())),
    );
    const denied = await Promise.all([0, 1].map(async () => gc.start(example('drop-prod-table.yaml'), await creds())));
    const escalated = await gc.start(example('deploy-prod.yaml'), await creds());
    for (const h of allowed) expect(await h.result()).toMatchObject({ status: 'Completed' });
    for (const h of denied) expect(await h.result()).toMatchObject({ status: 'Denied' });
    await eventually('the escalated chain to wait for approval', async () => {
      const s = await gc.status(escalated.workflowId).catch(() => undefined);
      return s?.status === 'AwaitingApproval';
    });

    // Through Prometheus's query API: the decision counts by effect, the chains, the bundle in use.
    const byEffect = await eventually(
      'Prometheus to have scraped every decision',
      async () => {
        const rows = await promQuery(prom, 'sum by (effect) (governor_decisions_total{job="governor"})');
        const got = Object.fromEntries(rows.map((r) => [r.metric.effect!, r.value]));
        return got.allow === 6 && got.deny === 2 && got.escalate === 1 ? got : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(byEffect).toEqual({ allow: 6, deny: 2, escalate: 1 });
    const finished = await eventually('chains finished by status', async () => {
      const rows = await promQuery(prom, 'sum by (status) (governor_chains_finished_total)');
      const got = Object.fromEntries(rows.map((r) => [r.metric.status!, r.value]));
      return got.Completed === 3 && got.Denied === 2 ? got : undefined;
    });
    expect(finished).toEqual({ Completed: 3, Denied: 2 });
    const waiting = await eventually('one approval waiting', async () => {
      const rows = await promQuery(prom, 'governor_approvals_waiting');
      return rows[0]?.value === 1 ? rows : undefined;
    });
    expect(waiting).toHaveLength(1);
    const stepStates: ChainState[] = [];
    for (const h of [...allowed, ...denied, escalated]) stepStates.push(await gc.status(h.workflowId));
    const digest = stepStates[0]!.steps[0]!.decision!.bundleDigest;
    const bundle = await promQuery(prom, 'governor_policy_bundle_active');
    expect(bundle.map((b) => [b.metric.role, b.metric.digest, b.value])).toEqual([['active', digest, 1]]);
    // Determining policies as labels: the prod drop-table forbid decided both denies.
    const byPolicy = await promQuery(prom, 'sum by (policy) (governor_decision_policies_total{effect="deny"})');
    expect(byPolicy.map((r) => [r.metric.policy, r.value])).toEqual([['db-drop-table-prod-forbid', 2]]);
    const latency = await promQuery(prom, 'sum(governor_decision_duration_seconds_count)');
    expect(latency[0]?.value).toBe(9);
    // The Temporal SDK's own worker metrics come through the same endpoint.
    const sdk = await promQuery(prom, 'count({job="governor", __name__=~"temporal_.+"})');
    expect(sdk[0]?.value ?? 0).toBeGreaterThan(0);

    // No token, input value or secret in what the endpoint serves.
    const text = await (await fetch(`${ops}/metrics`)).text();
    expect(text).not.toMatch(/eyJ[\w-]+\./);
    expect(text).not.toContain('1.4.2');
    expect(text).not.toContain('orders');
    expect(text).not.toContain('agent:release-bot');

    // The decision log: exactly one line per decision, each valid against the published schema and
    // matching the decision recorded in the chain's state.
    // Lines are appended in batches a moment after their decision (a decision never waits on the disk).
    const readLog = (): DecisionLogLine[] =>
      (fs.existsSync(decisionLog) ? fs.readFileSync(decisionLog, 'utf8') : '')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as DecisionLogLine);
    const lines = await eventually('the decision log to hold the 9 decisions', () => {
      const l = readLog();
      return l.length >= 9 ? l : undefined;
    });
    expect(lines).toHaveLength(9);
    for (const line of lines) {
      expect(schemaErrors('decision-log-line.schema.json', line)).toEqual([]);
      expect(DecisionLogLine.safeParse(line).success).toBe(true);
    }
    expect(new Set(lines.map((l) => l.decisionId)).size).toBe(9);
    for (const state of stepStates) {
      for (const step of state.steps.filter((s) => s.decision)) {
        const logged = lines.filter((l) => l.chainId === state.chainId && l.stepId === step.id);
        expect(logged).toHaveLength(1);
        expect(logged[0]).toMatchObject({
          effect: step.decision!.effect,
          determiningPolicies: step.decision!.determiningPolicies,
          bundleDigest: step.decision!.bundleDigest,
          time: step.decision!.evaluatedAt,
          workload: 'agent:release-bot',
        });
      }
    }
    const raw = fs.readFileSync(decisionLog, 'utf8');
    expect(raw).not.toMatch(/eyJ[\w-]+\./);
    expect(raw).not.toContain('1.4.2');

    // /readyz: an invalid bundle on disk makes the worker not ready (the last valid one stays enforced).
    const manifest = path.join(policies, 'manifest.yaml');
    const good = fs.readFileSync(manifest, 'utf8');
    fs.writeFileSync(manifest, 'name: [this is not a manifest\n');
    const notReady = await eventually('/readyz 503 on an invalid bundle', async () => {
      const r = await fetch(`${ops}/readyz`);
      return r.status === 503
        ? ((await r.json()) as { checks: Record<string, { ok: boolean; reason?: string }> })
        : undefined;
    });
    expect(notReady.checks.policyBundle).toEqual({
      ok: false,
      reason: 'the policy bundle on disk is invalid (the last valid one stays enforced)',
    });
    expect(notReady.checks.temporal).toEqual({ ok: true });
    fs.writeFileSync(manifest, good);
    await eventually('/readyz 200 again', async () => (await fetch(`${ops}/readyz`)).status === 200);

    // /readyz: Temporal unreachable → 503 (the process itself is still up: /healthz 200).
    await relay.cut();
    const down = await eventually(
      '/readyz 503 with Temporal down',
      async () => {
        const r = await fetch(`${ops}/readyz`);
        return r.status === 503
          ? ((await r.json()) as { checks: Record<string, { ok: boolean; reason?: string }> })
          : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(down.checks.temporal).toEqual({ ok: false, reason: 'Temporal frontend unreachable' });
    expect((await fetch(`${ops}/healthz`)).status).toBe(200);
    await client.workflow.getHandle(escalated.workflowId).terminate('test over');
  }, 300_000);
});
