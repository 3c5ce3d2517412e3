import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { projectRoot } from '../../workers/temporal-cli';
import { eventually } from './eventually';

/*
 * A real S3-compatible server for the proof archive's S3 path: gofakes3 (github.com/johannesboyne/gofakes3,
 * pinned), built with `go install` by `.ci/run` (stage gofakes3-build) into the tools folder that
 * runtime/cluster.ts uses (GOVERNOR_TOOLS_DIR, else `.tools/`). A test that needs it fails when it is
 * missing, unless GOVERNOR_TEST_SKIP_S3=1 says explicitly that it was not built (then the test is skipped).
 */

export const GOFAKES3_VERSION = 'v1.2.0';
export const GOFAKES3_MODULE = 'github.com/johannesboyne/gofakes3/cmd/gofakes3';

/** Where `.ci/run` puts the binary. */
export function gofakes3Path(): string {
  const tools = process.env.GOVERNOR_TOOLS_DIR ?? path.join(projectRoot(), '.tools');
  return path.join(tools, `gofakes3-${GOFAKES3_VERSION}`, 'gofakes3');
}

/** Whether the S3 tests run: the binary is there, or its absence was declared (GOVERNOR_TEST_SKIP_S3=1). */
export function s3TestsEnabled(): boolean {
  if (fs.existsSync(gofakes3Path())) return true;
  if (process.env.GOVERNOR_TEST_SKIP_S3 === '1') return false;
  // Missing without saying so: run the tests, which fail naming the build command.
  return true;
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** A running gofakes3 (in-memory backend, buckets created on first use) on 127.0.0.1. */
export async function startGofakes3(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const bin = gofakes3Path();
  if (!fs.existsSync(bin))
    throw new Error(
      `gofakes3 is not built at ${bin}: run .ci/run, or GOBIN=${path.dirname(bin)} go install ${GOFAKES3_MODULE}@${GOFAKES3_VERSION} (or set GOVERNOR_TEST_SKIP_S3=1 to skip the S3 tests explicitly)`,
    );
  const port = await freePort();
  const child: ChildProcess = spawn(bin, ['-backend', 'memory', '-autobucket', '-host', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await eventually(
      'gofakes3 to listen',
      async () => {
        if (child.exitCode !== null) throw new Error(`gofakes3 exited: ${stderr}`);
        const res = await fetch(endpoint);
        await res.arrayBuffer();
        return true;
      },
      { timeoutMs: 20_000 },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    endpoint,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
