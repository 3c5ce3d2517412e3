import type { DevServer } from '../../workers/dev-server';

/** Stops the shared dev server started by global-setup. */
export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __governorServer?: DevServer }).__governorServer?.stop();
}
