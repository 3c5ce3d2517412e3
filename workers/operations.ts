import { Client } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import type { PolicyStore } from '../activities/policy-store';
import { ChainStatus } from '../contracts/status';
import { createDecisionLog, type DecisionLog, type DecisionLogSettings } from '../runtime/decision-log';
import {
  bundleCheck,
  fleetCheck,
  keysCheck,
  startOpsServer,
  temporalCheck,
  workerCheck,
  type OpsServer,
} from './health';
import type { FleetMember } from '../activities/fleet';
import { GovernorMetrics, type BundleInfo, type OpenChainsSource } from '../runtime/metrics';
import { GovernorObserver } from '../runtime/observer';

/**
 * Operations of one worker process (DESIGN §12): metrics, health endpoints and the decision log, set up
 * before the worker is built (its activities report to `observer`) and served once it runs.
 */

/** What the operator chose (CLI flags / environment). */
export interface OperationsSettings {
  /** Port of `/metrics`, `/healthz`, `/readyz` (0: any free port; undefined: no endpoint). */
  metricsPort?: number;
  /** Interface to bind (default 127.0.0.1). */
  metricsHost?: string;
  decisionLog?: DecisionLogSettings;
  /** Loopback address where the Temporal SDK's Prometheus exporter listens (appended to /metrics). */
  sdkMetricsAddress?: string;
  /** Node.js process metrics (default true). */
  processMetrics?: boolean;
}

/** The non-final chain statuses reported by `governor_chains_open`. */
const OPEN_STATUSES = [
  ChainStatus.Running,
  ChainStatus.AwaitingApproval,
  ChainStatus.AwaitingCredential,
  ChainStatus.AwaitingAttestation,
] as const;

/**
 * Open chains of a task queue by status, from Temporal visibility (one count per status), cached for
 * `cacheMs` so frequent scrapes cost the server little. Undefined while visibility cannot answer.
 */
export function openChainsFromVisibility(client: Client, taskQueue: string, cacheMs = 5000): OpenChainsSource {
  let cached: { at: number; value: Promise<Record<string, number> | undefined> } | undefined;
  const quote = (v: string): string => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  return () => {
    const now = Date.now();
    if (cached && now - cached.at < cacheMs) return cached.value;
    const value = Promise.all(
      OPEN_STATUSES.map(async (status) => {
        const query = `TaskQueue = ${quote(taskQueue)} AND ExecutionStatus = 'Running' AND GovernorStatus = ${quote(status)}`;
        const { count } = await client.workflow.count(query);
        return [status, count] as const;
      }),
    ).then(
      (pairs) => Object.fromEntries(pairs),
      () => undefined,
    );
    cached = { at: now, value };
    return value;
  };
}

/** The bundles of a store, as the bundle gauge reports them. */
export function bundlesOf(policies: PolicyStore): () => BundleInfo[] {
  return () => {
    const out: BundleInfo[] = [];
    const active = policies.current();
    if (active) out.push({ role: 'active', name: active.bundle.manifest.name, digest: active.bundle.digest });
    const shadow = policies.shadow();
    if (shadow) out.push({ role: 'shadow', name: shadow.bundle.manifest.name, digest: shadow.bundle.digest });
    return out;
  };
}

/** Metrics, decision log and observer of one worker process; the endpoint once the worker runs. */
export class Operations {
  readonly metrics: GovernorMetrics | undefined;
  readonly decisionLog: DecisionLog;
  readonly observer: GovernorObserver;
  private server: OpsServer | undefined;

  constructor(readonly settings: OperationsSettings) {
    this.metrics =
      settings.metricsPort !== undefined
        ? new GovernorMetrics({ processMetrics: settings.processMetrics !== false })
        : undefined;
    const metrics = this.metrics;
    this.decisionLog = createDecisionLog(settings.decisionLog ?? {}, {
      onError: (sink) => metrics?.decisionLogErrors.inc({ sink }),
      onDropped: (sink, n) => metrics?.decisionLogDropped.inc({ sink }, n),
    });
    this.observer = new GovernorObserver({
      ...(metrics ? { metrics } : {}),
      ...(this.decisionLog.enabled ? { decisionLog: this.decisionLog } : {}),
    });
  }

  /** Serves `/metrics`, `/healthz` and `/readyz` for this worker (nothing when no port was chosen). */
  async start(worker: {
    worker: Pick<Worker, 'getState'>;
    connection: NativeConnection;
    namespace: string;
    taskQueue: string;
    policies: PolicyStore;
    policiesDir?: string;
    home: string;
    /** The worker's fleet membership: not ready while its bundle is not the fleet's active one. */
    fleet?: FleetMember;
  }): Promise<OpsServer | undefined> {
    if (this.settings.metricsPort === undefined) return undefined;
    const client = new Client({ connection: worker.connection, namespace: worker.namespace });
    this.metrics?.setSources({
      bundles: bundlesOf(worker.policies),
      openChains: openChainsFromVisibility(client, worker.taskQueue),
    });
    this.server = await startOpsServer({
      port: this.settings.metricsPort,
      ...(this.settings.metricsHost ? { host: this.settings.metricsHost } : {}),
      ...(this.metrics ? { metrics: this.metrics } : {}),
      ...(this.settings.sdkMetricsAddress ? { sdkMetricsAddress: this.settings.sdkMetricsAddress } : {}),
      checks: {
        temporal: temporalCheck(worker.connection),
        worker: workerCheck(() => worker.worker.getState()),
        policyBundle: bundleCheck(worker.policies, worker.policiesDir),
        keys: keysCheck(worker.home),
        ...(worker.fleet ? { fleet: fleetCheck(worker.fleet) } : {}),
      },
    });
    return this.server;
  }

  /** Stops the endpoint and flushes the decision log. */
  async close(): Promise<void> {
    await this.server?.close();
    this.server = undefined;
    await this.decisionLog.close();
  }
}
