import { eventually } from '../harness/eventually';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assertPortFree, freePort } from '../../workers/dev-server';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'bin', 'governor.js');

interface Running {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function start(args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = start(args, env);
  return r.exited.then((code) => ({ code, stdout: r.stdout(), stderr: r.stderr() }));
}

describe('governor up (the embedded default)', () => {
  it('starts server + UI + worker, runs a chain, stops cleanly on Ctrl-C, and reuses the persisted state on the next start', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-up-'));
    const port = await freePort();
    const uiPort = await freePort();
    const inboxPort = await freePort();
    const env = { GOVERNOR_HOME: home, TEMPORAL_ADDRESS: `127.0.0.1:${port}`, LOG_LEVEL: 'info' };

    const first = start(
      ['up', '--port', String(port), '--ui-port', String(uiPort), '--inbox-port', String(inboxPort)],
      env,
    );
    await eventually(
      'the UI URL and the worker',
      () => first.stdout().includes('Temporal UI:') || first.child.exitCode !== null,
      { timeoutMs: 90_000 },
    );
    expect(first.stdout()).toContain(`Temporal UI:  http://localhost:${uiPort}`);
    expect(first.stdout()).toContain('npx governor demo');
    expect(fs.existsSync(path.join(home, 'keys', 'receipt.private.jwk.json'))).toBe(true);
    const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
    expect(ui.status).toBe(200);
    // The approval inbox, with the development sign-in (the default bundle names no IdP).
    expect(first.stdout()).toContain(`Approval inbox: http://127.0.0.1:${inboxPort}`);
    expect(first.stdout()).toMatch(/Metrics: +http:\/\/127\.0\.0\.1:\d+\/metrics/);
    expect(first.stdout()).toMatch(/Health: +http:\/\/127\.0\.0\.1:\d+\/healthz/);
    expect(first.stdout()).toMatch(/Readiness: +http:\/\/127\.0\.0\.1:\d+\/readyz/);
    const inbox = await fetch(`http://127.0.0.1:${inboxPort}/`);
    expect(inbox.status).toBe(200);
    expect(await inbox.text()).toContain('id="dev-banner"');

    const chain = await run(
      ['run', path.join(root, 'examples/chains/deploy-staging.yaml'), '--as', 'agent:release-bot', '--wait', '--json'],
      env,
    );
    expect({ code: chain.code, stderr: chain.stderr }).toEqual({ code: 0, stderr: '' });
    const { chainId } = JSON.parse(chain.stdout.trim().split('\n').pop()!) as { chainId: string };

    // The worker logs structured JSON through pino (installed as Temporal's runtime logger).
    const workerLines = first
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'));
    expect(workerLines.length).toBeGreaterThan(0);
    expect(workerLines.map((l) => JSON.parse(l) as { name: string }).some((l) => l.name === 'governor-worker')).toBe(
      true,
    );
    expect(first.stderr()).not.toMatch(/eyJ[\w-]+\.eyJ/); // no JWT ever reaches a log line

    first.child.kill('SIGINT');
    expect(await first.exited).toBe(0);
    await assertPortFree('127.0.0.1', port, 'Temporal frontend'); // the server process is gone too
    expect(fs.existsSync(path.join(home, 'temporal.db'))).toBe(true);

    // The second start with --json: its last line names every URL (UI, inbox, metrics, health, readiness).
    const second = start(
      ['up', '--json', '--port', String(port), '--ui-port', String(uiPort), '--inbox-port', String(inboxPort)],
      env,
    );
    try {
      await eventually(
        'the second start',
        () => second.stdout().includes('"up":true') || second.child.exitCode !== null,
        { timeoutMs: 90_000 },
      );
      const lines = second
        .stdout()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const urls = lines.find((l) => l.up === true)!;
      expect(urls).toMatchObject({
        uiUrl: `http://localhost:${uiPort}`,
        inboxUrl: `http://127.0.0.1:${inboxPort}`,
        temporalAddress: `127.0.0.1:${port}`,
      });
      expect(urls.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      expect((await fetch(urls.healthUrl as string)).status).toBe(200);
      const ready = await eventually('the worker to be ready', async () => {
        const r = await fetch(urls.readyUrl as string);
        return r.status === 200 ? r : undefined;
      });
      expect(ready.status).toBe(200);
      expect(await (await fetch(urls.metricsUrl as string)).text()).toContain('governor_decisions_total');
      expect((await fetch(urls.inboxUrl as string)).status).toBe(200);
      expect(second.stderr()).not.toContain('building Temporal CLI');
      expect(second.stderr()).not.toContain('created development keys');
      const status = await run(['status', chainId, '--json'], env);
      expect(status.code).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({ chainId, status: 'Completed' });
    } finally {
      second.child.kill('SIGINT');
      expect(await second.exited).toBe(0);
    }
  }, 240_000);

  it('`governor server` says clearly when the UI port is taken and starts nothing', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-up-'));
    const port = await freePort();
    const blocker = start(['server', '--port', String(await freePort()), '--headless'], { GOVERNOR_HOME: home });
    await eventually(
      'a first server',
      () => blocker.stdout().includes('Temporal dev server on') || blocker.child.exitCode !== null,
      { timeoutMs: 90_000 },
    );
    const busyPort = Number(/127\.0\.0\.1:(\d+)/.exec(blocker.stdout())![1]);
    try {
      const r = await run(['server', '--port', String(port), '--ui-port', String(busyPort)], { GOVERNOR_HOME: home });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`Temporal UI port 127.0.0.1:${busyPort} is already in use`);
      await assertPortFree('127.0.0.1', port, 'Temporal frontend');
    } finally {
      blocker.child.kill('SIGINT');
      expect(await blocker.exited).toBe(0);
    }
  }, 120_000);
});
