import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { loadPrivateKey } from '../../identity';
import { sealSlotRequest } from '../../activities/coordination';
import { CoordinationClient } from '../../sdk/coordination';
import {
  slotRequestId,
  type CoordinatorState,
  type SlotAsk,
  type SlotRequest,
  type SlotVerdict,
} from '../../contracts/coordination';
import type { Manifest } from '../../policies/manifest';
import { createGovernorWorker } from '../../workers/worker';
import { defaultBundleWith } from './bundles';
import { makeHome, testAddress, testClient, uniqueQueue } from './temporal';

/**
 * A governor worker (coordinator included) on the shared dev server with its own coordination
 * domains, a client, and helpers to seal requests and wait for the coordinator's state. Like
 * test/integration/coordination.test.ts, the worker keeps a workflow cache (the coordinator receives
 * signals while its local activities run); determinism is checked by replaying the histories.
 */
export interface CoordinatorHarness {
  home: string;
  taskQueue: string;
  client: Client;
  cc: CoordinationClient;
  manifest: Manifest;
  seal(domain: string, ask: SlotAsk): Promise<SlotRequest>;
  /** Polls `coordinatorState` (settled) until `predicate` holds; throws naming `what` after ~20 s. */
  waitState(domain: string, predicate: (s: CoordinatorState) => boolean, what: string): Promise<CoordinatorState>;
  /** Every run of the workflow id, oldest first, with its history. */
  runs(workflowId: string): Promise<{ runId: string; status: string; history: temporal.api.history.v1.IHistory }[]>;
  stop(): Promise<void>;
}

/**
 * Seals a slot request as the governor's `requestSlot` activity does, with the receipt key in `home`
 * (`domain` picks the domain). A test tool: only the governor deployment holds that key, so the service
 * SDK (`CoordinationClient`) only sends requests that are already sealed.
 */
export async function sealSlotRequestWithKey(
  home: string,
  manifest: Pick<Manifest, 'coordination'>,
  domain: string,
  a: SlotAsk,
): Promise<SlotRequest | undefined> {
  return sealSlotRequest(manifest, a, await loadPrivateKey(home, 'receipt'), { domain });
}

export const ask = (chainId: string, workload: string, action: string, extra: Partial<SlotAsk> = {}): SlotAsk => ({
  chainId,
  stepId: 's',
  workload,
  action,
  resource: { type: 'Cluster', id: 'eu-1' },
  ...extra,
});
export const idOf = (r: { chainId: string; stepId: string }): string => slotRequestId(r.chainId, r.stepId);
/** The last final (granted or rejected) verdict for `requestId` among the recent ones. */
export const final = (s: CoordinatorState, requestId: string): SlotVerdict | undefined =>
  s.recent.filter((v) => v.requestId === requestId && v.status !== 'queued').pop();

export async function startCoordinatorHarness(
  domains: Record<string, unknown>[],
  authority: Record<string, number>,
): Promise<CoordinatorHarness> {
  const bundleDir = defaultBundleWith((m) => {
    m.coordination = { domains, authority: { workloads: authority, default: 0 } };
  });
  const home = await makeHome();
  const taskQueue = uniqueQueue('coordinator');
  const native = await NativeConnection.connect({ address: testAddress() });
  let worker: Worker;
  let manifest: Manifest;
  try {
    const created = await createGovernorWorker({
      connection: native,
      namespace: 'default',
      taskQueue,
      home,
      policiesDir: bundleDir,
      workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! },
      maxCachedWorkflows: 50,
    });
    worker = created.worker;
    manifest = created.policies.current()!.bundle.manifest;
  } catch (err) {
    await native.close();
    throw err;
  }
  const running = worker.run();
  const { client, connection: conn } = await testClient();
  const cc = new CoordinationClient(client, taskQueue);

  return {
    home,
    taskQueue,
    client,
    cc,
    manifest,
    async seal(domain, a) {
      return (await sealSlotRequestWithKey(home, manifest, domain, a))!;
    },
    async waitState(domain, predicate, what) {
      let last: CoordinatorState | undefined;
      for (let i = 0; i < 200; i++) {
        try {
          last = await cc.state(domain);
          if (last.settled && predicate(last)) return last;
        } catch {
          // not started yet, or between two runs
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(
        `${domain}: never ${what}; last state: ${JSON.stringify({ runs: last?.runs, holder: last?.holder?.requestId, queue: last?.queue.map((q) => q.requestId), ties: last?.ties, recent: last?.recent.map((v) => [v.requestId, v.status, v.reason]) })}`,
      );
    },
    async runs(workflowId) {
      // Oldest first, following the continue-as-new links (start times can tie to the millisecond);
      // visibility can lag a moment behind the last continue-as-new: read again until the links close.
      const from = (h: temporal.api.history.v1.IHistory): string | undefined =>
        h.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
      for (let attempt = 0; ; attempt++) {
        const found: { runId: string; status: string }[] = [];
        for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
          found.push({ runId: wf.runId, status: wf.status.name });
        const all = await Promise.all(
          found.map(async ({ runId, status }) => ({
            runId,
            status,
            history: await client.workflow.getHandle(workflowId, runId).fetchHistory(),
          })),
        );
        const ordered: typeof all = [];
        let next = all.find((r) => from(r.history) === undefined);
        while (next) {
          ordered.push(next);
          const prev: string = next.runId;
          next = all.find((r) => from(r.history) === prev);
        }
        if (ordered.length === all.length && ordered.length > 0) return ordered;
        if (attempt >= 50) throw new Error(`runs of ${workflowId} do not form one continue-as-new chain`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await native.close();
      await conn.close();
    },
  };
}
