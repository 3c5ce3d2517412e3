import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, WithStartWorkflowOperation, WorkflowNotFoundError } from '@temporalio/client';
import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import {
  FLEET_MEMO,
  fleetRegistryId,
  controlTaskQueueFromEnv,
  FLEET_REGISTRY_TYPE,
  FleetMemo,
  activateFleetBundleUpdate,
  fleetStatusQuery,
  type FleetActivation,
  type FleetStatus,
  type FleetWorker,
} from '../../contracts/fleet';
import { durationMs } from '../../contracts/duration';
import { keyPaths } from '../../identity';
import { bundleArchiveDir } from '../../policies/bundle-archive';
import { loadSignedBundle, readTrustedKeys } from '../../policies/signing';
import { connectClient, loadTemporalSettings } from '../../runtime/connection';
import { Exit, type CommandContext } from '../context';

/**
 * `governor fleet status|activate` (DESIGN §11): the namespace's governor workers as one fleet. `status`
 * lists every worker the fleet registry heard from (identity, task queue, bundle digest and version, last
 * seen) and whether it enforces the declared active bundle; `activate` declares the active bundle (signed
 * by a trusted policy-signing key with a version newer than the active one). Exit codes: 0 ok, 1 refused
 * or bad input, 2 (`status`) a live worker diverges from the active bundle, 3 Temporal unreachable.
 */

async function fleetClient(ctx: CommandContext): Promise<Client> {
  const dataConverter = ctx.dataConverter();
  const settings = loadTemporalSettings();
  const connection = await connectClient(settings);
  return new Client({ connection, namespace: settings.namespace, ...(dataConverter ? { dataConverter } : {}) });
}

/** The fleet registry's view: its status query, else (no worker answers) what its memo declares. */
export async function readFleetStatus(client: Client, controlTaskQueue: string): Promise<FleetStatus | undefined> {
  const handle = client.workflow.getHandle(fleetRegistryId(controlTaskQueue));
  let memo: FleetMemo | undefined;
  try {
    const d = await handle.describe();
    if (d.type !== FLEET_REGISTRY_TYPE)
      throw new GovernorError(
        ErrorCode.PolicyError,
        `the fleet registry's id is held by a workflow of another type (${d.type})`,
        'fleet',
      );
    const parsed = FleetMemo.safeParse((d.memo ?? {})[FLEET_MEMO]);
    memo = parsed.success ? parsed.data : undefined;
    if (d.status.name === 'RUNNING') return await handle.query(fleetStatusQuery);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    if (err instanceof GovernorError || !memo) throw err;
  }
  return {
    state: memo?.state ?? 'recovering',
    ...(memo?.active ? { active: memo.active } : {}),
    workers: [],
    activations: memo?.active ? [memo.active] : [],
  };
}

/** One worker row of `fleet status`. */
export interface FleetRow extends FleetWorker {
  live: boolean;
  /** Enforces the active bundle (true when none is declared). */
  matches: boolean;
}

/** Workers with liveness (last report within `staleMs` of `now`) and whether each enforces the active digest. */
export function fleetRows(status: FleetStatus, staleMs: number, now = Date.now()): FleetRow[] {
  return status.workers.map((w) => ({
    ...w,
    live: now - Date.parse(w.lastSeen) <= staleMs,
    matches: !status.active || w.digest === status.active.digest,
  }));
}

/** The bundle directory of `activate`: a directory, or a digest of the bundle archive (`<home>/bundles/<digest>`). */
function bundleDirOf(home: string, arg: string): string {
  if (/^[0-9a-f]{64}$/.test(arg) && !existsSync(arg)) {
    const dir = path.join(bundleArchiveDir(home), arg);
    if (!existsSync(dir))
      throw new GovernorError(ErrorCode.InvalidInput, `no bundle ${arg} in the bundle archive ${dir}`, 'bundle');
    return dir;
  }
  return path.resolve(arg);
}

function short(digest: string | undefined): string {
  return digest ? digest.slice(0, 12) : '-';
}

export function registerFleetCommands(program: Command, ctx: CommandContext): void {
  const fleet = program
    .command('fleet')
    .description("the namespace's governor workers as one fleet: which bundle each enforces, and the active one");

  fleet
    .command('status')
    .description(
      'list the workers (id, task queue, bundle digest and version, last seen) and whether each enforces the active bundle',
    )
    .option('--stale-after <duration>', 'a worker unheard of for longer is not live', '30s')
    .option('--all', 'also list workers that are no longer live')
    .option('--control-task-queue <name>', "the fleet's control task queue", controlTaskQueueFromEnv(process.env))
    .action(async (opts: { staleAfter: string; all?: boolean; controlTaskQueue: string }) => {
      const out = ctx.out();
      const staleMs = durationMs(opts.staleAfter);
      const client = await fleetClient(ctx);
      const status = await readFleetStatus(client, opts.controlTaskQueue);
      if (!status) {
        out.print('no fleet registry: no governor worker has reported yet, and no active bundle is declared', {
          workers: [],
        });
        ctx.setExit(Exit.Ok);
        return;
      }
      const rows = fleetRows(status, staleMs).filter((r) => opts.all || r.live);
      const divergent = rows.filter((r) => r.live && !r.matches);
      const lines: string[] = [];
      const a = status.active;
      lines.push(
        a
          ? `active bundle: ${a.digest} (version ${a.version}, issued ${a.issuedAt}, activated${a.by ? ` by ${a.by}` : ''} at ${a.at})`
          : 'active bundle: none declared (each worker enforces its own bundle)',
      );
      if (status.state !== 'ready') lines.push('registry: recovering');
      lines.push(`${rows.length} worker(s)${divergent.length ? `, ${divergent.length} DIVERGENT` : ''}:`);
      for (const r of rows) {
        const flag = !r.live ? 'stale' : r.matches ? (a ? 'ok' : '-') : 'DIVERGENT';
        lines.push(
          `  ${flag.padEnd(9)} ${r.workerId}  queue ${r.taskQueue}  bundle ${short(r.digest)} v${r.version ?? '-'}  build ${r.buildId}  started ${r.startedAt}  last seen ${r.lastSeen}`,
        );
      }
      out.print(lines.join('\n'), {
        active: a ?? null,
        state: status.state,
        workers: rows,
        divergent: divergent.map((r) => r.workerId),
        activations: status.activations,
      });
      ctx.setExit(divergent.length > 0 ? Exit.Denied : Exit.Ok);
    });

  fleet
    .command('activate <bundle>')
    .description(
      "declare the fleet's active bundle (a bundle directory, or a digest of GOVERNOR_HOME's bundle archive): it must be signed by a trusted policy-signing key with a version newer than the active one; workers on any other bundle then refuse to decide",
    )
    .option('--by <who>', 'who activates it (recorded; default user@host)')
    .option(
      '--trusted-jwks <file>',
      'trusted policy-signing JWKS (default <GOVERNOR_HOME>/keys/policy-signing.jwks.json)',
    )
    .option('--control-task-queue <name>', "the fleet's control task queue", controlTaskQueueFromEnv(process.env))
    .action(async (arg: string, opts: { by?: string; trustedJwks?: string; controlTaskQueue: string }) => {
      const out = ctx.out();
      const home = ctx.home();
      const dir = bundleDirOf(home, arg);
      const trusted = readTrustedKeys(
        opts.trustedJwks ? path.resolve(opts.trustedJwks) : keyPaths(home, 'policy-signing').jwksPath,
      );
      // Checked here for a clear message; the registry verifies again (it is the trust boundary), and so does every worker.
      const signed = await loadSignedBundle(dir, { trusted, requireSigned: true });
      if (signed.check?.version === undefined)
        throw new GovernorError(
          ErrorCode.PolicyError,
          `policy bundle ${dir} is signed without a version: sign it with \`governor policy sign --bundle-version <n>\``,
          'bundle.sig',
        );
      const by = (opts.by ?? `${os.userInfo().username}@${os.hostname()}`).slice(0, 200);
      const client = await fleetClient(ctx);
      const startWorkflowOperation = new WithStartWorkflowOperation(FLEET_REGISTRY_TYPE, {
        workflowId: fleetRegistryId(opts.controlTaskQueue),
        taskQueue: opts.controlTaskQueue,
        args: [],
        workflowIdConflictPolicy: 'USE_EXISTING',
        staticSummary: 'Governor fleet registry',
      });
      let status: FleetStatus;
      try {
        status = await client.workflow.executeUpdateWithStart(activateFleetBundleUpdate, {
          args: [{ digest: signed.bundle.digest, signature: signed.signature!.trim(), by }],
          startWorkflowOperation,
        });
      } catch (err) {
        const cause = (err as { cause?: { message?: string } }).cause;
        throw new GovernorError(ErrorCode.PolicyError, cause?.message ?? (err as Error).message, 'bundle');
      }
      const a = status.active as FleetActivation;
      out.print(
        `fleet active bundle: ${a.digest} (version ${a.version}, issued ${a.issuedAt}, activated by ${a.by ?? '-'} at ${a.at})`,
        { ok: true, active: a },
      );
      ctx.setExit(Exit.Ok);
    });
}
