import fs from 'node:fs';
import type { DevServer } from '../../workers/dev-server';
import type { LingerRelay } from './linger-relay';

/**
 * Stops the shared dev server and its relay started by global-setup. If the server's SQLite store was
 * left "interrupted" (a pure-Go driver failure after a cancelled query: from then on every call fails),
 * says so and when, so the suites that failed after that moment are not read as failures of their own.
 */
export default async function globalTeardown(): Promise<void> {
  const g = globalThis as { __governorServer?: DevServer; __governorRelay?: LingerRelay };
  await g.__governorRelay?.close();
  await g.__governorServer?.stop();
  const log = process.env.GOVERNOR_TEST_SERVER_LOG;
  if (!log || !fs.existsSync(log)) return;
  const lines = fs.readFileSync(log, 'utf8').split('\n');
  const first = lines.findIndex((l) => l.includes('interrupted (9)'));
  if (first < 0) return;
  const at = /time=(\S+)/.exec(lines[first]!)?.[1] ?? 'an unknown time';
  const cause = lines
    .slice(Math.max(0, first - 5), first)
    .reverse()
    .find((l) => l.includes('context canceled'));
  process.stderr.write(
    `\nthe shared test server's SQLite store failed at ${at} ("interrupted (9)"; every later call failed)` +
      `${cause ? ` after: ${cause.slice(0, 300)}` : ''}\nsuites that failed after that time failed for that reason; server log: ${log}\n`,
  );
}
