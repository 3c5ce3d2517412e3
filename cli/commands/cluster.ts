import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import {
  clusterDown,
  clusterStatus,
  clusterUp,
  isAlive,
  readClusterState,
  writeClusterState,
  type ClusterProcess,
} from '../../runtime/cluster';
import { initKeys } from '../../identity';
import { projectRoot } from '../../workers/temporal-cli';
import { Exit, type CommandContext } from '../context';

/**
 * `governor cluster up|down|status`: a PostgreSQL-backed, multi-process Temporal cluster on loopback
 * (runtime/cluster.ts) and N governor worker processes against it, recorded under
 * `<GOVERNOR_HOME>/cluster` so that `status` and `down` in another shell find them.
 */

const clusterDir = (home: string) => path.join(home, 'cluster');

/** Starts one `governor worker` process against the cluster, detached; returns its record. */
export function startGovernorWorker(
  home: string,
  address: string,
  namespace: string,
  index: number,
  extraEnv: Record<string, string> = {},
): ClusterProcess {
  const dir = clusterDir(home);
  const log = path.join(dir, 'logs', `governor-worker-${index}.log`);
  const fd = fs.openSync(log, 'a');
  const child = spawn(process.execPath, [path.join(projectRoot(), 'bin', 'governor.js'), 'worker'], {
    stdio: ['ignore', fd, fd],
    detached: true,
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: address,
      TEMPORAL_NAMESPACE: namespace,
      GOVERNOR_HOME: home,
      GOVERNOR_WORKER_ID: `governor-worker-${index}`,
      ...extraEnv,
    },
  });
  fs.closeSync(fd);
  child.unref();
  return { name: `governor-worker-${index}`, kind: 'governor-worker', pid: child.pid ?? -1, log };
}

function parseCount(value: string, field: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new GovernorError(ErrorCode.InvalidInput, `${field}: must be an integer ${min}-${max}`, field);
  }
  return n;
}

export function registerClusterCommands(program: Command, ctx: CommandContext): void {
  const cluster = program
    .command('cluster')
    .description(
      'a Temporal cluster on PostgreSQL (frontend, 2 × history, matching, worker as separate processes) and governor workers',
    );

  cluster
    .command('up')
    .description('build the pinned server when missing, start PostgreSQL, the Temporal services and N governor workers')
    .option('--base-port <port>', 'first port of the block of 70 the cluster uses (frontend gRPC)', '17233')
    .option('--workers <n>', 'governor worker processes', '2')
    .option('--namespace <name>', 'namespace to register', process.env.TEMPORAL_NAMESPACE ?? 'default')
    .action(async (opts: { basePort: string; workers: string; namespace: string }) => {
      const out = ctx.out();
      const home = ctx.home();
      const workers = parseCount(opts.workers, '--workers', 0, 16);
      const basePort = parseCount(opts.basePort, '--base-port', 1024, 32767);
      const keys = await initKeys(home);
      if (keys.created.length > 0) process.stderr.write(`created development keys in ${keys.dir}\n`);
      const state = await clusterUp({
        dir: clusterDir(home),
        basePort,
        namespace: opts.namespace,
        onProgress: (m) => process.stderr.write(`${m}\n`),
      });
      for (let i = 1; i <= workers; i++) {
        state.processes.push(startGovernorWorker(home, state.address, state.namespace, i));
      }
      writeClusterState(state);
      out.print(
        [
          `Temporal ${state.serverVersion} cluster on ${state.address} (namespace ${state.namespace}), ready in ${state.startMs} ms`,
          ...state.processes.map((p) => `  ${p.name.padEnd(18)} pid ${p.pid}`),
          `Use it: TEMPORAL_ADDRESS=${state.address} npx governor demo`,
          'Stop it: npx governor cluster down',
        ].join('\n'),
        state,
      );
      ctx.setExit(Exit.Ok);
    });

  cluster
    .command('status')
    .description('each process of the cluster, its pid and whether it runs')
    .action(() => {
      const out = ctx.out();
      const { state, processes } = clusterStatus(clusterDir(ctx.home()));
      if (!state || processes.length === 0) {
        const what = state ? `the cluster in ${state.dir} is down` : `no cluster recorded in ${clusterDir(ctx.home())}`;
        out.print(what, { running: false, processes: [] });
        return ctx.setExit(Exit.Unreachable);
      }
      const allUp = processes.every((p) => p.running);
      out.print(
        [
          `cluster ${state.address} (namespace ${state.namespace}, Temporal ${state.serverVersion}, started ${state.startedAt})`,
          ...processes.map(
            (p) =>
              `  ${p.name.padEnd(18)} pid ${String(p.pid).padEnd(8)} ${p.running ? 'running' : 'STOPPED'}` +
              (p.ports
                ? `  ${Object.entries(p.ports)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(' ')}`
                : ''),
          ),
        ].join('\n'),
        { ...state, running: allUp, processes },
      );
      ctx.setExit(allUp ? Exit.Ok : Exit.Unreachable);
    });

  cluster
    .command('down')
    .description('stop the governor workers, the Temporal services and PostgreSQL (data is kept)')
    .action(async () => {
      const out = ctx.out();
      const dir = clusterDir(ctx.home());
      if (!readClusterState(dir)) {
        out.print(`no cluster recorded in ${dir}`, { stopped: [] });
        return ctx.setExit(Exit.Ok);
      }
      const stopped = await clusterDown(dir);
      const left = stopped.filter((p) => p.kind !== 'postgres' && isAlive(p.pid));
      out.print(
        stopped.length ? `stopped ${stopped.map((p) => `${p.name} (${p.pid})`).join(', ')}` : 'nothing was running',
        { stopped },
      );
      ctx.setExit(left.length ? Exit.BadInput : Exit.Ok);
    });
}
