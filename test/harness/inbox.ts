import type { Governed } from './governed';

/** The approval inbox of a test, on loopback. */
export interface TestInbox {
  /** `http://127.0.0.1:<port>` */
  url: string;
  stop(): Promise<void>;
}

/**
 * Whether the approval inbox (inbox/, built on branch h-inbox) is present in this tree: until it is,
 * the browser test of the inbox is skipped.
 */
export function inboxAvailable(): boolean {
  return false;
}

/** Starts the approval inbox on the governed test setup's client and task queue, with the bundle's manifest. */
export function startInboxForTest(_options: { g: Governed; policiesDir: string; port: number }): Promise<TestInbox> {
  return Promise.reject(new Error('the approval inbox (inbox/) is not in this tree yet'));
}
