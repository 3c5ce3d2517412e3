import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NativeConnection } from '@temporalio/worker';
import type { PolicyStore } from '../activities/policy-store';
import type { FleetMember } from '../activities/fleet';
import { loadPrivateKeyObject, loadPublicJwks } from '../identity';
import { checkKeyRef, keyRefFromEnv, type KeyRef } from '../identity/key-ref';
import { bundleFingerprint } from './policy-watch';
import { fetchSdkMetrics, type GovernorMetrics } from '../runtime/metrics';

/**
 * The worker's operations endpoint (DESIGN §12), one HTTP port:
 * - `/metrics`: the governor's Prometheus metrics, followed by the Temporal SDK's own worker metrics
 *   (Core's Prometheus exporter, bound on loopback and read at each scrape);
 * - `/healthz`: 200 while the process serves HTTP;
 * - `/readyz`: 200 when every readiness check passes, 503 otherwise, with a JSON body naming each check.
 * No token, key, input or secret is ever part of an answer.
 */

/** One readiness check: ok, or not with a short reason (never a secret). */
export type CheckResult = { ok: true } | { ok: false; reason: string };
export type ReadinessCheck = () => Promise<CheckResult>;

/** Connected to Temporal: the frontend's gRPC health service answers SERVING within `timeoutMs`. */
export function temporalCheck(connection: NativeConnection, timeoutMs = 2000): ReadinessCheck {
  return async () => {
    try {
      const res = await connection.withDeadline(Date.now() + timeoutMs, () => connection.healthService.check({}));
      // 1 = SERVING (grpc.health.v1.HealthCheckResponse.ServingStatus)
      return Number(res.status) === 1 ? { ok: true } : { ok: false, reason: `Temporal health status ${res.status}` };
    } catch {
      return { ok: false, reason: 'Temporal frontend unreachable' };
    }
  };
}

/**
 * A valid policy bundle is loaded, and the bundle folder on disk is valid too (a live rollout that was
 * rejected, or files that would not load at the next start, make the worker not ready while the last
 * valid bundle stays enforced). Each folder state is checked once (by its fingerprint).
 */
export function bundleCheck(policies: PolicyStore, dir?: string): ReadinessCheck {
  let checked: { print: string; result: CheckResult } | undefined;
  return async () => {
    if (!policies.current()) return { ok: false, reason: 'no valid policy bundle is loaded' };
    if (!dir) return { ok: true };
    const print = bundleFingerprint(dir);
    if (checked?.print !== print) {
      let result: CheckResult;
      try {
        await policies.loadFrom(dir);
        result = { ok: true };
      } catch {
        result = { ok: false, reason: 'the policy bundle on disk is invalid (the last valid one stays enforced)' };
      }
      checked = { print, result };
    }
    return checked.result;
  };
}

/**
 * The worker's bundle is the fleet's declared active bundle (or none is declared): a divergent worker
 * denies every decision, so it is not ready. The reason names both digests (no secret).
 */
export function fleetCheck(fleet: Pick<FleetMember, 'check' | 'policies'>): ReadinessCheck {
  return async () => {
    const verdict = await fleet.check(fleet.policies.current());
    return verdict.ok ? { ok: true } : { ok: false, reason: verdict.reason };
  };
}

/**
 * The receipt signing key and its public JWKS are readable; for a key given by reference (default: from
 * the environment), the key file is private and published, or the signer answers with a published key.
 */
export function keysCheck(home: string, ref: KeyRef | undefined = keyRefFromEnv('receipt')): ReadinessCheck {
  return async () => {
    if (ref) {
      try {
        await checkKeyRef(home, 'receipt', ref);
        return { ok: true };
      } catch (err) {
        // Paths and kids only (key-ref.ts messages never carry key material).
        return { ok: false, reason: `receipt key unusable: ${(err as Error).message}` };
      }
    }
    try {
      await loadPrivateKeyObject(home, 'receipt');
      loadPublicJwks(home, 'receipt');
      return { ok: true };
    } catch {
      return { ok: false, reason: 'receipt keys unreadable' };
    }
  };
}

/** The worker is polling (not stopped or failed). */
export function workerCheck(state: () => string): ReadinessCheck {
  return () => {
    const s = state();
    return Promise.resolve(s === 'RUNNING' ? { ok: true } : { ok: false, reason: `worker ${s.toLowerCase()}` });
  };
}

/** Options of the operations server. */
export interface OpsServerOptions {
  /** Port (0: any free port). */
  port: number;
  /** Default 127.0.0.1; `0.0.0.0` to let a Prometheus on another host scrape. */
  host?: string;
  metrics?: GovernorMetrics;
  /** Loopback address of the Temporal SDK's Prometheus exporter (appended to /metrics). */
  sdkMetricsAddress?: string;
  checks?: Record<string, ReadinessCheck>;
}

/** A running operations server. */
export interface OpsServer {
  port: number;
  /** e.g. `http://127.0.0.1:9464` */
  url: string;
  close(): Promise<void>;
}

/** Runs every check (each bounded by its own timeout) and reports them by name. */
export async function readiness(
  checks: Record<string, ReadinessCheck>,
): Promise<{ ready: boolean; checks: Record<string, CheckResult> }> {
  const names = Object.keys(checks);
  const results = await Promise.all(
    names.map((n) => checks[n]!().catch((): CheckResult => ({ ok: false, reason: 'check failed' }))),
  );
  const byName = Object.fromEntries(names.map((n, i) => [n, results[i]!]));
  return { ready: results.every((r) => r.ok), checks: byName };
}

/** Starts the operations server. */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    if (url === '/healthz') return send(200, 'application/json', '{"status":"ok"}\n');
    if (url === '/readyz') {
      void readiness(options.checks ?? {}).then(
        (r) =>
          send(
            r.ready ? 200 : 503,
            'application/json',
            `${JSON.stringify({ status: r.ready ? 'ready' : 'not ready', checks: r.checks })}\n`,
          ),
        () => send(503, 'application/json', '{"status":"not ready"}\n'),
      );
      return;
    }
    if (url === '/metrics' && options.metrics) {
      const registry = options.metrics.registry;
      void Promise.all([registry.metrics(), fetchSdkMetrics(options.sdkMetricsAddress)]).then(
        ([own, sdk]) => send(200, registry.contentType, sdk ? `${own}\n${sdk}` : own),
        () => send(500, 'text/plain', 'metrics unavailable\n'),
      );
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return {
    port,
    url: `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
