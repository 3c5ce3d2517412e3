import { parse } from 'yaml';

interface Rpc {
  grpcPort: number;
  membershipPort: number;
  bindOnLocalHost: boolean;
}
interface Config {
  services: Record<string, { rpc: Rpc }>;
  global: {
    pprof: { port: number };
    metrics: { prometheus: { listenAddress: string } };
    membership: { broadcastAddress: string };
  };
  persistence: { datastores: Record<string, { sql: Record<string, unknown> }> };
}
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CLUSTER_PORT_SPAN,
  clusterPorts,
  serviceConfig,
  TEMPORAL_SERVICES,
  waitForService,
} from '../../runtime/cluster';

// The per-process configs of `governor cluster up` (runtime/cluster.ts), checked as data: the traps
// issue 18's probe measured (membership ports are a SMALLINT; metrics listeners are process-wide).
describe('cluster configs', () => {
  const ports = clusterPorts(31000);
  const configs = Object.fromEntries(
    TEMPORAL_SERVICES.map((s) => [s.name, parse(serviceConfig(s.name, ports, 'pw', '/x')) as Config]),
  );

  it('refuses a port block that would put a membership port above 32767', () => {
    expect(() => clusterPorts(32767 - CLUSTER_PORT_SPAN + 1)).toThrow(/SMALLINT/);
    expect(() => clusterPorts(80)).toThrow(/base-port/);
    for (const p of Object.values(ports.services)) expect(p.membership).toBeLessThanOrEqual(32767);
  });

  it('gives every process its own ports: no two processes bind the same port', () => {
    const bound = TEMPORAL_SERVICES.map((s) => {
      const c = configs[s.name]!;
      const rpc = c.services[s.service].rpc;
      return [rpc.grpcPort, rpc.membershipPort, c.global.metrics.prometheus.listenAddress];
    });
    const all = bound.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(configs['frontend']!.global.pprof.port).toBe(0);
  });

  it('binds each history process to its own rpc ports', () => {
    expect(configs['history-1']!.services.history.rpc.grpcPort).toBe(ports.services['history-1'].grpc);
    expect(configs['history-2']!.services.history.rpc.grpcPort).toBe(ports.services['history-2'].grpc);
    expect(configs['history-2']!.services.history.rpc.membershipPort).toBe(ports.services['history-2'].membership);
  });

  it('keeps persistence and SQL advanced visibility on PostgreSQL, loopback only', () => {
    const c = configs['frontend']!;
    expect(c.persistence.datastores['postgres-default'].sql).toMatchObject({
      pluginName: 'postgres12',
      databaseName: 'temporal',
      connectAddr: `127.0.0.1:${ports.postgres}`,
    });
    expect(c.persistence.datastores['postgres-visibility'].sql.databaseName).toBe('temporal_visibility');
    expect(c.global.membership.broadcastAddress).toBe('127.0.0.1');
    for (const s of Object.values(c.services)) expect(s.rpc.bindOnLocalHost).toBe(true);
  });
});

describe('cluster start', () => {
  it('fails as soon as a starting process exits, with its log, not at the wait timeout', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-cluster-start-'));
    const log = path.join(dir, 'frontend.log');
    fs.writeFileSync(log, '{"level":"fatal","msg":"Failed to apply cluster metadata"}\n');
    const child = spawn('sh', ['-c', 'exit 1'], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    await exited;
    const processes = [{ name: 'frontend', kind: 'temporal' as const, pid: child.pid!, log }];
    // The wait would last ten minutes (past this test's timeout) if an exited process were retried.
    await expect(waitForService('frontend', 1, 600_000, processes)).rejects.toThrow(
      /frontend \(pid \d+\) exited at start:\n.*Failed to apply cluster metadata/,
    );
    fs.rmSync(dir, { recursive: true, force: true });
  }, 30_000);
});
