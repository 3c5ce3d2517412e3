/** How long `eventually` keeps asking, and how often. */
export interface EventuallyOptions {
  /** Default 60 s: generous, since a 2-core CI machine runs a dev server, workers and jest at once. */
  timeoutMs?: number;
  /** Default 100 ms. */
  intervalMs?: number;
}

/**
 * Polls `check` until it returns a value other than `undefined` or `false` and returns that value; a
 * check that throws counts as "not yet" (its last error is named if time runs out). The one polling
 * helper of the test suites: for what is eventually true (visibility, a worker's side effect, a server
 * coming back), never to wait out a fixed delay.
 */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: EventuallyOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const cause = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
