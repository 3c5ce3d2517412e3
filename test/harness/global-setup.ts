import { PAYLOAD_CONVERTER_PATH } from '../../workers/worker';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { freePort, startDevServer } from '../../workers/dev-server';
import { startLingerRelayProcess } from './linger-relay';

/**
 * One real Temporal dev server (the pinned CLI, in memory, headless) for the whole integration run,
 * and the workflow bundle built once. Test files read the address and bundle path from the env.
 * Tests reach the server through a relay that lets a dead client's calls finish before the server sees
 * its connection close (test/harness/linger-relay.ts says why).
 */
export default async function globalSetup(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-test-'));
  const port = await freePort();
  const server = await startDevServer({
    port,
    httpPort: await freePort(),
    headless: true,
    logFile: path.join(dir, 'temporal-server.log'),
    onProgress: (m) => process.stderr.write(`${m}\n`),
  });
  Object.assign(globalThis, { __governorServer: server });
  const relay = await startLingerRelayProcess(server.address).catch(async (err: unknown) => {
    await server.stop();
    throw err;
  });
  Object.assign(globalThis, { __governorRelay: relay });

  const { code } = await bundleWorkflowCode({
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    workflowsPath: require.resolve('../../workflows'),
    logger: {
      trace() {},
      debug() {},
      info() {},
      warn() {},
      error(m: string) {
        process.stderr.write(`${m}\n`);
      },
      log() {},
    },
  });
  const bundlePath = path.join(dir, 'workflow-bundle.js');
  fs.writeFileSync(bundlePath, code);

  process.env.GOVERNOR_TEST_DIR = dir;
  process.env.GOVERNOR_TEST_ADDRESS = relay.address;
  process.env.GOVERNOR_TEST_SERVER_LOG = path.join(dir, 'temporal-server.log');
  process.env.GOVERNOR_TEST_BUNDLE = bundlePath;
}
