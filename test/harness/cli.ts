import { spawn } from 'node:child_process';
import path from 'node:path';

/** What one run of the real `governor` CLI printed and exited with. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (`bin/governor.js`, `npm run build` first) with `env` added to this process's. */
export function runGovernorCli(args: string[], env: Record<string, string>, cwd?: string): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'governor.js'), ...args], {
      env: { ...process.env, ...env },
      ...(cwd ? { cwd } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
