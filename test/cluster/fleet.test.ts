import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { Command, CommanderError } from 'commander';
import { registerFleetCommands } from '../../cli/commands/fleet';
import type { ChainResult } from '../../contracts/state';
import { issueAttestation, issueCredential, loadPrivateKey } from '../../identity';
import { loadBundle } from '../../policies/bundle';
import { signBundleDir } from '../../policies/signing';
import { clusterDown, clusterUp, type ClusterState } from '../../runtime/cluster';
import { GovernorClient } from '../../sdk/client';
import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import { eventually } from '../harness/eventually';
import { addStagingFreeze, copyBundle } from '../harness/policy';
import { makeHome } from '../harness/temporal';
import { freeClusterBase, startChild, type Child } from './harness';

/*
 * One policy across the fleet on the real cluster (issue 18 item 3, DESIGN §11): four governor worker
 * processes — two on task queue A and one on task queue C with the active bundle (version 2), and a
 * divergent fourth on task queue B with another bundle (version 3, never activated). `governor fleet
 * status` lists all four and flags the fourth; chains routed to it are denied naming both digests and
 * nothing runs; chains on A and C are allowed; activating an older version (1) is refused; one
 * revocation is honoured on A and C.
 */

const CHAINS = Number(process.env.FLEET_CHAINS ?? 24);
let dir: string;
let home: string;
let state: ClusterState;
let connection: Connection | undefined;
let client: Client;
const children: Child[] = [];
const qA = `fleet-a-${randomUUID()}`;
const qB = `fleet-b-${randomUUID()}`;
const qC = `fleet-c-${randomUUID()}`;
let v1: string;
let v2: string;
let v3: string;

async function signed(extra: string, version: number): Promise<string> {
  const d = copyBundle();
  fs.writeFileSync(
    path.join(d, `${extra}.cedar`),
    `@id("${extra}-noop")\nforbid (principal, action, resource) when { false };\n`,
  );
  await signBundleDir(d, await loadPrivateKey(home, 'policy-signing'), { version });
  return d;
}

async function fleetCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const program = new Command('governor').option('--json').exitOverride();
  program.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  const out: string[] = [];
  let code = 0;
  registerFleetCommands(program, {
    out: () => ({
      json: true,
      print: (_human: string, data?: unknown) => out.push(JSON.stringify(data ?? {})),
      error: () => undefined,
    }),
    setExit: (c) => {
      code = c;
    },
    home: () => home,
    dataConverter: () => undefined,
  });
  try {
    await program.parseAsync(['node', 'governor', '--json', ...args]);
    return { code, stdout: out.join('\n'), stderr: '' };
  } catch (err) {
    if (err instanceof CommanderError) return { code: 1, stdout: out.join('\n'), stderr: err.message };
    return { code: 1, stdout: out.join('\n'), stderr: (err as Error).message };
  }
}

async function run(queue: string, workload: string): Promise<ChainResult> {
  const handle = await new GovernorClient(client, queue).start(
    {
      workload,
      steps: [
        { id: 'announce', action: 'notify', resource: { type: 'Channel', id: 'ops' }, executor: { type: 'noop' } },
      ],
    },
    {
      credential: await issueCredential({ home, sub: workload }),
      attestation: await issueAttestation({ home, sub: workload }),
    },
  );
  return (await handle.result()) as ChainResult;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-fleet-'));
  home = await makeHome();
  v1 = await signed('v1', 1);
  v2 = await signed('v2', 2);
  v3 = copyBundle(v2);
  addStagingFreeze(v3);
  await signBundleDir(v3, await loadPrivateKey(home, 'policy-signing'), { version: 3 });
  const { base } = await freeClusterBase();
  const t0 = Date.now();
  state = await clusterUp({ dir: path.join(dir, 'cluster'), basePort: base, onProgress: () => undefined });
  process.stderr.write(`fleet: cluster up in ${Date.now() - t0} ms\n`);
  process.env.TEMPORAL_ADDRESS = state.address;
  const { code } = await bundleWorkflowCode({
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    workflowsPath: require.resolve('../../workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
  const bundle = path.join(dir, 'workflow-bundle.js');
  fs.writeFileSync(bundle, code);
  const workers: [string, string][] = [
    [qA, v2],
    [qA, v2],
    [qC, v2],
    [qB, v3],
  ];
  workers.forEach(([queue, policies], i) =>
    children.push(
      startChild(
        `governor-${i + 1}`,
        {
          TEMPORAL_ADDRESS: state.address,
          GOVERNOR_HOME: home,
          ROLE: 'governor',
          GOVERNOR_TASK_QUEUE: queue,
          GOVERNOR_POLICIES: policies,
          GOVERNOR_WORKFLOW_BUNDLE: bundle,
        },
        path.join(dir, `governor-${i + 1}.log`),
      ),
    ),
  );
  await Promise.all(children.map((c) => c.ready));
  connection = await Connection.connect({ address: state.address });
  client = new Client({ connection });
}, 600_000);

afterAll(async () => {
  await Promise.all(children.map((c) => c.kill()));
  await connection?.close().catch(() => undefined);
  if (dir) await clusterDown(path.join(dir, 'cluster')).catch(() => undefined);
  if (dir && !process.env.KEEP_CLUSTER) fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('one policy across a fleet of governor worker processes on the cluster', () => {
  it('lists the four workers, denies on the divergent one naming both digests, allows on the three, refuses a rollback, and honours one revocation on two task queues', async () => {
    const active = loadBundle(v2).digest;
    const divergent = loadBundle(v3).digest;
    const activated = await fleetCli(['fleet', 'activate', v2, '--by', 'release-manager']);
    expect({ code: activated.code, stderr: activated.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(activated.stdout)).toMatchObject({ active: { digest: active, version: 2 } });

    // fleet status: all four workers, the fourth flagged.
    const status = await eventually(
      'the four workers in fleet status',
      async () => {
        const s = await fleetCli(['fleet', 'status']);
        const parsed = JSON.parse(s.stdout) as {
          workers: { taskQueue: string; digest?: string; version?: number; matches: boolean; live: boolean }[];
          divergent: string[];
        };
        return parsed.workers.length === 4 ? { code: s.code, parsed } : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(status.code).toBe(2);
    expect(status.parsed.workers.map((w) => [w.taskQueue, w.digest, w.version, w.matches, w.live]).sort()).toEqual(
      [
        [qA, active, 2, true, true],
        [qA, active, 2, true, true],
        [qB, divergent, 3, false, true],
        [qC, active, 2, true, true],
      ].sort(),
    );
    expect(status.parsed.divergent).toHaveLength(1);

    // Chains on the divergent worker's queue are denied naming both digests, and nothing runs; on A and C they complete.
    const ids = Array.from({ length: CHAINS }, (_, i) => i);
    const results = await Promise.all(
      ids.map(async (i) => {
        const queue = [qA, qC, qB][i % 3]!;
        return { queue, result: await run(queue, `agent:fleet-${i}`) };
      }),
    );
    for (const { queue, result } of results) {
      const s = result.steps[0]!;
      if (queue === qB) {
        expect({ status: result.status, step: s.status, outcome: s.outcome }).toEqual({
          status: 'Denied',
          step: 'denied',
          outcome: undefined,
        });
        expect(s.decision?.reason).toContain('policy bundle divergence');
        expect(s.decision?.reason).toContain(active);
        expect(s.decision?.reason).toContain(divergent);
      } else {
        expect({ queue, status: result.status, step: s.status }).toEqual({
          queue,
          status: 'Completed',
          step: 'completed',
        });
      }
    }
    process.stderr.write(
      `fleet: ${results.filter((r) => r.queue !== qB).length} chains allowed on A and C, ${results.filter((r) => r.queue === qB).length} denied on the divergent worker\n`,
    );

    // Rollback: version 1 after version 2 is refused; the active bundle stays.
    const rollback = await fleetCli(['fleet', 'activate', v1]);
    expect(rollback.code).toBe(1);
    expect(rollback.stderr).toContain('rollback');
    const after = JSON.parse((await fleetCli(['fleet', 'status'])).stdout) as { active: { digest: string } };
    expect(after.active.digest).toBe(active);

    // One revocation (namespace-wide registry), honoured by the workers of A and of C.
    const workload = 'agent:fleet-revoked';
    await new GovernorClient(client, qA).revokeWorkload({ workload, reason: 'leaked key', by: 'security' });
    for (const queue of [qA, qC]) {
      const r = await eventually(
        `the revocation on ${queue}`,
        async () => {
          const res = await run(queue, workload);
          return res.status === 'Denied' ? res : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 500 },
      );
      expect(r.steps[0]!.decision?.reason).toContain(`workload ${workload} is revoked: leaked key`);
    }
  });
});
