import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection, WithStartWorkflowOperation } from '@temporalio/client';
import { Command, CommanderError } from 'commander';
import { registerFleetCommands } from '../../cli/commands/fleet';
import {
  FLEET_MEMO,
  FLEET_REGISTRY_TYPE,
  FleetMemo,
  activateFleetBundleUpdate,
  fleetHeartbeatSignal,
  fleetRegistryId,
} from '../../contracts/fleet';
import type { ChainResult } from '../../contracts/state';
import { issueAttestation, issueCredential, loadPrivateKey } from '../../identity';
import { loadBundle } from '../../policies/bundle';
import { readBundleSignature, signBundleDir } from '../../policies/signing';
import { GovernorClient } from '../../sdk/client';
import { fleetCheck } from '../../workers/health';
import { eventually } from '../harness/eventually';
import { addStagingFreeze, copyBundle } from '../harness/policy';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';

/*
 * One policy across the fleet (DESIGN §11) on the real dev server: workers report their bundle to the
 * fleet registry; once an active bundle is declared, a worker on another bundle denies every decision
 * naming both digests (and is not ready); activation needs a valid, versioned signature by the policy
 * key and a newer version (rollback refused); forged activations and heartbeats from a raw client change
 * nothing; a revocation issued once applies on every task queue of the fleet.
 */

let home: string;
let foreignHome: string;
let connection: Connection;
let client: Client;
const control = uniqueQueue('fleet-control');
const q1 = uniqueQueue('fleet-a');
const q2 = uniqueQueue('fleet-b');
const q3 = uniqueQueue('fleet-c');
let v1: string;
let v2: string;
let v3: string;
let unversioned: string;
const workers: Awaited<ReturnType<typeof startGovernorWorker>>[] = [];

/** A copy of the default bundle made distinct by an extra (harmless) policy file, signed with `version`. */
async function bundle(name: string, version: number | undefined, from = home): Promise<string> {
  const dir = copyBundle();
  writeFileSync(
    join(dir, `${name}.cedar`),
    `// ${name}\n@id("${name}-noop")\nforbid (principal, action, resource) when { false };\n`,
  );
  const key = await loadPrivateKey(from, 'policy-signing');
  await signBundleDir(dir, key, version !== undefined ? { version } : undefined);
  return dir;
}

function digestOf(dir: string): string {
  return loadBundle(dir).digest;
}

async function run(queue: string, workload: string): Promise<ChainResult> {
  const gc = new GovernorClient(client, queue, control);
  const handle = await gc.start(
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

/** `governor fleet …` in-process, as cli/cli.ts wires it (top-level --json; errors are exit 1 or 3). */
async function fleetCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const program = new Command('governor')
    .option('--json')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  const out: string[] = [];
  let code = 0;
  registerFleetCommands(program, {
    out: () => {
      const json = Boolean(program.opts().json);
      return {
        json,
        print: (human: string, data?: unknown) => out.push(json ? JSON.stringify(data ?? { message: human }) : human),
        error: () => undefined,
      };
    },
    setExit: (c) => {
      code = c;
    },
    home: () => home,
    dataConverter: () => undefined,
  });
  try {
    await program.parseAsync(['node', 'governor', ...args, '--control-task-queue', control]);
    return { code, stdout: out.join('\n'), stderr: '' };
  } catch (err) {
    if (err instanceof CommanderError) return { code: 1, stdout: out.join('\n'), stderr: err.message };
    return { code: 1, stdout: out.join('\n'), stderr: (err as Error).message };
  }
}

async function declared(): Promise<FleetMemo | undefined> {
  const d = await client.workflow.getHandle(fleetRegistryId(control)).describe();
  const memo = FleetMemo.safeParse((d.memo ?? {})[FLEET_MEMO]);
  return memo.success ? memo.data : undefined;
}

/** A raw update-with-start of the registry, as any client of the namespace could send. */
function rawActivate(input: unknown) {
  return client.workflow.executeUpdateWithStart(activateFleetBundleUpdate, {
    args: [input as never],
    startWorkflowOperation: new WithStartWorkflowOperation(FLEET_REGISTRY_TYPE, {
      workflowId: fleetRegistryId(control),
      taskQueue: control,
      args: [],
      workflowIdConflictPolicy: 'USE_EXISTING',
    }),
  });
}

beforeAll(async () => {
  process.env.TEMPORAL_ADDRESS = testAddress();
  home = await makeHome();
  foreignHome = await makeHome();
  connection = await Connection.connect({ address: testAddress() });
  client = new Client({ connection });
  v1 = await bundle('v1', 1);
  v2 = await bundle('v2', 2);
  v3 = copyBundle(v2);
  addStagingFreeze(v3);
  await signBundleDir(v3, await loadPrivateKey(home, 'policy-signing'), { version: 3 });
  unversioned = await bundle('unversioned', undefined);
  const fleet = { heartbeatIntervalMs: 300, ttlMs: 0 };
  const common = { home, controlTaskQueue: control, revocationCacheTtlMs: 0, fleet, requireSignedPolicy: true };
  workers.push(await startGovernorWorker({ ...common, taskQueue: q1, policiesDir: v2 }));
  workers.push(await startGovernorWorker({ ...common, taskQueue: q2, policiesDir: v3 }));
  workers.push(await startGovernorWorker({ ...common, taskQueue: q3, policiesDir: v2 }));
}, 120_000);

afterAll(async () => {
  for (const w of workers) await w.stop();
  await connection?.close();
});

describe('one policy across the fleet', () => {
  it('before any activation every worker decides with its own bundle, as before', async () => {
    expect((await run(q1, 'agent:before-a')).status).toBe('Completed');
    expect((await run(q2, 'agent:before-b')).status).toBe('Completed');
    expect(await fleetCheck(workers[1]!.fleet!)()).toEqual({ ok: true });
  });

  it('forged activations and heartbeats from a raw client change nothing', async () => {
    const digest = digestOf(v2);
    // A signature by a key the fleet does not trust (another home's policy-signing key).
    const foreign = await bundle('foreign', 9, foreignHome);
    await expect(
      rawActivate({ digest: digestOf(foreign), signature: readBundleSignature(foreign)!.trim(), by: 'mallory' }),
    ).rejects.toMatchObject({ cause: { message: expect.stringContaining('untrusted') } });
    // A valid signature, but of another digest than the one claimed.
    await expect(
      rawActivate({ digest, signature: readBundleSignature(v3)!.trim(), by: 'mallory' }),
    ).rejects.toMatchObject({ cause: { message: expect.stringContaining('tampered') } });
    // Validly signed but without a version (format 1): no rollback protection, refused.
    await expect(
      rawActivate({ digest: digestOf(unversioned), signature: readBundleSignature(unversioned)!.trim() }),
    ).rejects.toMatchObject({ cause: { message: expect.stringContaining('without a version') } });
    // Not even an activation: malformed input is refused by the validator.
    await expect(rawActivate({ digest: 'x', signature: 'y' })).rejects.toMatchObject({
      cause: { message: expect.stringContaining('invalid activation') },
    });
    // A signal with the update's name is no activation; a forged heartbeat only adds a (fake) worker row.
    const handle = client.workflow.getHandle(fleetRegistryId(control));
    await handle.signal('activateFleetBundle', { digest, signature: 'forged..sig' });
    await handle.signal(fleetHeartbeatSignal, {
      workerId: 'forged',
      host: 'nowhere',
      pid: 1,
      taskQueue: q2,
      buildId: 'forged',
      startedAt: new Date().toISOString(),
      sentAt: new Date().toISOString(),
      digest,
      version: 2,
    });
    expect((await declared())?.active).toBeUndefined();
    expect((await run(q2, 'agent:still-own')).status).toBe('Completed');
  });

  it('activate: the divergent worker denies naming both digests and nothing runs; the others allow', async () => {
    const active = digestOf(v2);
    const divergent = digestOf(v3);
    const activated = await fleetCli(['--json', 'fleet', 'activate', v2, '--by', 'release-manager']);
    expect(activated).toMatchObject({ code: 0 });
    expect(JSON.parse(activated.stdout)).toMatchObject({
      ok: true,
      active: { digest: active, version: 2, by: 'release-manager' },
    });

    const denied = await run(q2, 'agent:on-divergent');
    expect({ status: denied.status, step: denied.steps[0]!.status }).toEqual({ status: 'Denied', step: 'denied' });
    expect(denied.steps[0]!.decision?.reason).toContain('policy bundle divergence');
    expect(denied.steps[0]!.decision?.reason).toContain(divergent);
    expect(denied.steps[0]!.decision?.reason).toContain(active);
    expect(denied.steps[0]!.outcome).toBeUndefined();
    expect((await run(q1, 'agent:on-active')).status).toBe('Completed');
    expect((await run(q3, 'agent:on-active-too')).status).toBe('Completed');

    // /readyz's check: not ready on the divergent worker, ready on the others.
    expect(await fleetCheck(workers[1]!.fleet!)()).toMatchObject({
      ok: false,
      reason: expect.stringContaining('policy bundle divergence'),
    });
    expect(await fleetCheck(workers[0]!.fleet!)()).toEqual({ ok: true });

    // fleet status lists the three real workers (and the forged row), the divergent one flagged.
    const status = await eventually('every worker reported after the activation', async () => {
      const s = await fleetCli(['--json', 'fleet', 'status']);
      const parsed = JSON.parse(s.stdout) as {
        workers: { workerId: string; taskQueue: string; digest?: string; matches: boolean; live: boolean }[];
        divergent: string[];
      };
      return parsed.workers.filter((w) => w.workerId !== 'forged').length === 3 ? { ...s, parsed } : undefined;
    });
    expect(status.code).toBe(2);
    const rows = status.parsed.workers.filter((w) => w.workerId !== 'forged');
    expect(rows.map((w) => [w.taskQueue, w.digest, w.matches]).sort()).toEqual(
      [
        [q1, active, true],
        [q2, divergent, false],
        [q3, active, true],
      ].sort(),
    );
    expect(status.parsed.divergent).toContain(workers[1]!.fleet!.identity.workerId);
  });

  it('rollback: an older version is refused by the registry and by a worker', async () => {
    const refused = await fleetCli(['--json', 'fleet', 'activate', v1]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('rollback');
    expect((await declared())?.active?.digest).toBe(digestOf(v2));
    await expect(workers[0]!.policies.activateFrom(v1)).rejects.toThrow(/rollback.*version 1 is older than version 2/);
    expect(workers[0]!.policies.current()?.bundle.digest).toBe(digestOf(v2));
  });

  it('a squatter on the registry id makes every worker deny (fail closed); a new registry run recovers the declaration', async () => {
    const id = fleetRegistryId(control);
    // A worker that sees the registry closed starts a new run at once: terminate until the squatter gets in.
    const squatter = await eventually('a squatter on the fleet registry id', async () => {
      await client.workflow
        .getHandle(id)
        .terminate('make room for a squatter')
        .catch(() => undefined);
      return client.workflow.start('notAFleetRegistry', { workflowId: id, taskQueue: `nowhere-${q1}` });
    });
    const denied = await run(q1, 'agent:squatted');
    expect(denied.status).toBe('Denied');
    expect(denied.steps[0]!.decision?.reason).toContain("the fleet's active policy bundle is unknown");
    await squatter.terminate('end of the squatter');
    // The next heartbeat starts a new registry run, which recovers the active bundle from the earlier runs.
    const memo = await eventually('the registry recovered', async () => {
      const m = await declared().catch(() => undefined);
      return m?.state === 'ready' && m.active ? m : undefined;
    });
    expect(memo.active?.digest).toBe(digestOf(v2));
    expect((await run(q1, 'agent:recovered')).status).toBe('Completed');
    expect((await run(q2, 'agent:still-divergent')).status).toBe('Denied');
  });

  it('a revocation issued once applies on every task queue of the fleet', async () => {
    const workload = 'agent:revoked-everywhere';
    await new GovernorClient(client, q1, control).revokeWorkload({ workload, reason: 'leaked', by: 'security' });
    for (const q of [q1, q3]) {
      const r = await run(q, workload);
      expect({ queue: q, status: r.status, reason: r.steps[0]!.decision?.reason }).toEqual({
        queue: q,
        status: 'Denied',
        reason: expect.stringContaining(`workload ${workload} is revoked: leaked`),
      });
    }
    expect((await run(q3, 'agent:not-revoked')).status).toBe('Completed');
  });
});
