import { randomUUID } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { issueAttestation, issueCredential } from '../identity';
import { GovernorClient } from '../sdk/client';
import type { Chain, GovernedChainInput } from '../contracts/chain';
import type { ChainResult } from '../contracts/state';
import { nowMs } from './stats';

/** The workload every bench chain runs as (permitted to deploy to staging by the default bundle). */
export const WORKLOAD = 'agent:release-bot';

/**
 * Which workflow a bench run starts. `lean`: the plain workflow on the lean baseline worker (a bundle
 * of the baselines alone, `WorkerChild.leanTaskQueue`).
 */
export type Kind = 'governed' | 'plain' | 'shaped' | 'lean';

/** A chain of `n` allowed no-op steps: `deploy` to `Environment::"staging"` under the default bundle. */
export function noopChain(n: number): Chain {
  return {
    workload: WORKLOAD,
    summary: `bench: ${n} no-op deploys to staging`,
    steps: Array.from({ length: n }, (_, i) => ({
      id: `s${i + 1}`,
      action: 'deploy',
      resource: { type: 'Environment', id: 'staging' },
      input: {},
      context: {},
      executor: { type: 'noop' as const },
    })),
  };
}

/** One `deploy` to `Environment::"prod"`: the default bundle escalates it (two sre-lead approvals within 30m). */
export function escalatedChain(): Chain {
  return {
    workload: WORKLOAD,
    summary: 'bench: a production deploy waiting for approval',
    steps: [
      {
        id: 'deploy-prod',
        action: 'deploy',
        resource: { type: 'Environment', id: 'prod' },
        input: {},
        context: {},
        executor: { type: 'noop' as const },
      },
    ],
  };
}

/** A fresh credential (valid for an hour) and attestation for the bench workload. */
export async function credentials(home: string): Promise<{ credential: string; attestation: string }> {
  const credential = await issueCredential({ home, sub: WORKLOAD, ttlSeconds: 3600 });
  return { credential, attestation: await issueAttestation({ home, sub: WORKLOAD }) };
}

/** Starts and runs chains of one kind on one task queue. */
export class ChainRunner {
  private readonly gc: GovernorClient;
  private creds?: { at: number; value: { credential: string; attestation: string } };

  constructor(
    private readonly client: Client,
    private readonly home: string,
    readonly taskQueue: string,
    readonly leanTaskQueue?: string,
  ) {
    this.gc = new GovernorClient(client, taskQueue);
  }

  /**
   * A new credential per chain (the default bundle binds a credential's jti to the first chain that
   * presents it, as a service minting one JWT-SVID per chain would); the attestation is reissued every
   * 5 minutes (its max age is 15m).
   */
  async fresh(): Promise<{ credential: string; attestation: string }> {
    if (!this.creds || Date.now() - this.creds.at > 300_000)
      this.creds = { at: Date.now(), value: await credentials(this.home) };
    return {
      credential: await issueCredential({ home: this.home, sub: WORKLOAD, ttlSeconds: 3600 }),
      attestation: this.creds.value.attestation,
    };
  }

  /** Starts one workflow of `kind` for `chain`; returns its handle. */
  async start(
    kind: Kind | 'wait',
    chain: Chain,
    options: { credentials?: { credential: string; attestation: string } } = {},
  ): Promise<WorkflowHandle> {
    const creds = options.credentials ?? (await this.fresh());
    const chainId = `bench-${kind}-${randomUUID()}`;
    if (kind === 'governed') return this.gc.start(chain, { ...creds, chainId });
    const input: GovernedChainInput = { chainId, chain, ...creds };
    const type =
      kind === 'plain' || kind === 'lean'
        ? 'plainChainWorkflow'
        : kind === 'shaped'
          ? 'shapedChainWorkflow'
          : 'plainWaitWorkflow';
    if (kind === 'lean' && !this.leanTaskQueue) throw new Error('lean baseline: the worker runs no lean worker');
    const taskQueue = kind === 'lean' ? this.leanTaskQueue! : this.taskQueue;
    return this.client.workflow.start(type, { taskQueue, workflowId: chainId, args: [input] });
  }

  /** Runs one chain to completion; returns its end-to-end latency (start call to result) in ms. */
  async run(kind: Kind, chain: Chain): Promise<{ ms: number; handle: WorkflowHandle }> {
    const creds = await this.fresh(); // issued outside the timed section
    const t0 = nowMs();
    const handle = await this.start(kind, chain, { credentials: creds });
    const result: unknown = await handle.result();
    const ms = nowMs() - t0;
    if (kind === 'governed' && (result as ChainResult).status !== 'Completed') {
      throw new Error(
        `governed bench chain ended ${(result as ChainResult).status}: ${(result as ChainResult).reason ?? ''}`,
      );
    }
    return { ms, handle };
  }
}
