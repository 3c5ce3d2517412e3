import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { revocationRegistryId, type Revocation, type RevocationList } from '../contracts/revocation';

/**
 * Reads the revocation registry (its memo, through DescribeWorkflowExecution: a server call that
 * never waits for a worker) for `authorize`, cached for `ttlMs` so a decision costs no extra
 * round trip. A revocation reaches new chains within the TTL; running chains are also signalled
 * directly by `governor revoke`. A registry that does not exist yet means nothing is revoked; any
 * other failure throws (the activity retries, then the chain is denied: fail closed).
 */
export class RevocationCache {
  private cached?: { at: number; list: RevocationList };
  private inflight?: Promise<RevocationList>;

  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
    private readonly ttlMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The revocation of `workload`, if it is revoked. */
  async lookup(workload: string): Promise<Revocation | undefined> {
    return (await this.list()).revoked[workload];
  }

  /** Forgets the cached list (tests, and `governor revoke` in the same process). */
  invalidate(): void {
    this.cached = undefined;
  }

  private async list(): Promise<RevocationList> {
    if (this.cached && this.now() - this.cached.at < this.ttlMs) return this.cached.list;
    this.inflight ??= this.fetch().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async fetch(): Promise<RevocationList> {
    let list: RevocationList;
    try {
      const description = await this.client.workflow.getHandle(revocationRegistryId(this.taskQueue)).describe();
      list = { revoked: ((description.memo?.revoked ?? {}) as RevocationList['revoked']) };
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      list = { revoked: {} };
    }
    this.cached = { at: this.now(), list };
    return list;
  }
}
