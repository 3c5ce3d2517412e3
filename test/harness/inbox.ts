import fs from 'node:fs';
import path from 'node:path';
import { startInbox } from '../../inbox/server';
import { loadBundle } from '../../policies/bundle';
import type { Governed } from './governed';

/** The approval inbox of a test, on loopback. */
export interface TestInbox {
  /** `http://127.0.0.1:<port>` */
  url: string;
  stop(): Promise<void>;
}

/** Whether the approval inbox (inbox/server.ts) is in this tree (the browser test is skipped without it). */
export function inboxAvailable(): boolean {
  return fs.existsSync(path.join(__dirname, '..', '..', 'inbox', 'server.ts'));
}

/**
 * Starts the approval inbox on the governed test setup (its client, task queue and GOVERNOR_HOME, whose
 * approver key signs the votes) with the bundle's manifest, on 127.0.0.1:`port` (the redirect URI the
 * IdP knows). The client secret comes from the environment variable the manifest names.
 */
export async function startInboxForTest(options: {
  g: Governed;
  policiesDir: string;
  port: number;
  log?: (line: string) => void;
}): Promise<TestInbox> {
  const manifest = loadBundle(options.policiesDir).manifest;
  const secretEnv = manifest.inbox?.oidc?.clientSecretEnv;
  const inbox = await startInbox({
    client: options.g.client,
    taskQueue: options.g.taskQueue,
    manifest,
    home: options.g.home,
    namespace: 'default',
    temporalUiUrl: 'http://localhost:8233',
    host: '127.0.0.1',
    port: options.port,
    clientSecret: secretEnv ? process.env[secretEnv] : undefined,
    log: options.log,
  });
  return { url: inbox.url, stop: () => inbox.close() };
}
