import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { projectRoot, resolveTemporalCli, TEMPORAL_CLI_VERSION } from '../workers/temporal-cli';

/** The machine and software the figures were taken on. */
export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  temporalCli: string;
  temporalSdk: string;
  cedar: string;
  jose: string;
  /** 1-minute load average when the bench started: other work on the machine skews every figure. */
  loadAverageAtStart: number;
}

function packageVersion(name: string): string {
  try {
    return (
      JSON.parse(fs.readFileSync(path.join(projectRoot(), 'node_modules', name, 'package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
  } catch {
    return 'unknown';
  }
}

/** CPU model, cores, memory, OS and the versions of everything in the measured path. */
export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  let cli = TEMPORAL_CLI_VERSION;
  try {
    const out = spawnSync(resolveTemporalCli({ build: false }), ['--version'], { encoding: 'utf8' });
    cli = out.stdout.trim() || cli;
  } catch {
    // keep the pinned version
  }
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    temporalCli: cli,
    temporalSdk: packageVersion('@temporalio/worker'),
    cedar: cedar.getCedarVersion(),
    jose: packageVersion('jose'),
    loadAverageAtStart: Math.round(os.loadavg()[0]! * 100) / 100,
  };
}
