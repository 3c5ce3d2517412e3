import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { SEARCH_ATTRIBUTES_FOR_CLI } from '../contracts/search-attributes';
import { Grpc, grpcCodeOf, innermostMessage } from './error-causes';

/**
 * A real Temporal cluster on loopback (DESIGN §11): PostgreSQL from Debian under GOVERNOR_HOME on its
 * own port, the Temporal server built from its Go module (the version the pinned CLI embeds) running
 * frontend, two history, matching and worker services as separate processes, persistence and SQL
 * advanced visibility on PostgreSQL, and the governor's search attributes registered on the namespace.
 *
 * Every process is started detached and recorded (name, pid, ports) in `<dir>/state.json`, so
 * `governor cluster status|down` in another process finds them. Measured traps (issue 18): membership
 * ports are a SMALLINT in the schema (≤ 32767), metrics and pprof listeners are process-wide (each
 * process gets its own config), search attributes are per namespace on SQL visibility and a new
 * namespace refuses them for ~2 s, and connection pools can exceed PostgreSQL's default 100.
 */

export const TEMPORAL_SERVER_MODULE = 'go.temporal.io/server';
/** The server version the pinned Temporal CLI (v1.5.1) embeds. */
export const TEMPORAL_SERVER_VERSION = 'v1.29.1';

/** The Temporal services, one process each (history twice). */
export const TEMPORAL_SERVICES = [
  { name: 'frontend', service: 'frontend', offset: 0 },
  { name: 'history-1', service: 'history', offset: 10 },
  { name: 'history-2', service: 'history', offset: 12 },
  { name: 'matching', service: 'matching', offset: 20 },
  { name: 'worker', service: 'worker', offset: 30 },
] as const;
export type TemporalProcessName = (typeof TEMPORAL_SERVICES)[number]['name'];

/** Ports used by a cluster on `basePort`: a block of 70 from the base (see `clusterPorts`). */
export const CLUSTER_PORT_SPAN = 70;

export interface ClusterPorts {
  frontend: number;
  frontendHttp: number;
  postgres: number;
  /** grpc and membership port of each Temporal process. */
  services: Record<TemporalProcessName, { grpc: number; membership: number; metrics: number }>;
}

/** The port plan: all ports from `base` up, membership ports ≤ 32767 (a SMALLINT in the schema). */
export function clusterPorts(base: number): ClusterPorts {
  if (!Number.isInteger(base) || base < 1024 || base + CLUSTER_PORT_SPAN > 32767) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `--base-port: must be 1024-${32767 - CLUSTER_PORT_SPAN} (Temporal stores membership ports as a SMALLINT)`,
      '--base-port',
    );
  }
  const services = {} as ClusterPorts['services'];
  TEMPORAL_SERVICES.forEach((s, i) => {
    services[s.name] = { grpc: base + s.offset, membership: base + s.offset + 1, metrics: base + 40 + i };
  });
  return { frontend: base, frontendHttp: base + 2, postgres: base + 60, services };
}

export interface ClusterProcess {
  name: string;
  kind: 'postgres' | 'temporal' | 'governor-worker';
  pid: number;
  log: string;
  ports?: Record<string, number>;
}

/** `<dir>/state.json`: what `status` and `down` read. */
export interface ClusterState {
  version: 1;
  dir: string;
  basePort: number;
  address: string;
  httpAddress: string;
  namespace: string;
  serverVersion: string;
  startedAt: string;
  /** Milliseconds from `up` until the namespace and search attributes were ready. */
  startMs?: number;
  processes: ClusterProcess[];
}

export interface ClusterOptions {
  /** Cluster folder (`<GOVERNOR_HOME>/cluster` for the CLI). */
  dir: string;
  basePort: number;
  namespace?: string;
  onProgress?: (message: string) => void;
}

/** Project root (the folder with package.json above this file, in both `runtime/` and `dist/runtime/`). */
function projectRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}

const stateFile = (dir: string) => path.join(dir, 'state.json');
const secretFile = (dir: string) => path.join(dir, 'postgres.password');

// ---------------------------------------------------------------------------------------------
// Toolchain: the server and its SQL tool, PostgreSQL binaries.

function onPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, binary);
    if (fs.existsSync(candidate)) return candidate;
  }
  return fs.existsSync(`/usr/local/go/bin/${binary}`) ? `/usr/local/go/bin/${binary}` : undefined;
}

export interface ServerTools {
  server: string;
  sqlTool: string;
  /** `schema/postgresql/v12` of the server module (the SQL tool has only MySQL schemas built in). */
  schemaDir: string;
}

/** The git-ignored folder the server and SQL tool are built into (`GOVERNOR_TOOLS_DIR` overrides `.tools/`). */
export function serverToolsDir(root = projectRoot()): string {
  return path.join(
    process.env.GOVERNOR_TOOLS_DIR ?? path.join(root, '.tools'),
    `temporal-server-${TEMPORAL_SERVER_VERSION}`,
  );
}

/**
 * The pinned Temporal server and SQL schema tool, built with `go install` (CGO off) into `.tools/`
 * when missing; the PostgreSQL schema files are copied next to them from the module cache.
 */
export function resolveServerTools(onProgress?: (m: string) => void): ServerTools {
  const dir = serverToolsDir();
  const tools: ServerTools = {
    server: path.join(dir, 'temporal-server'),
    sqlTool: path.join(dir, 'temporal-sql-tool'),
    schemaDir: path.join(dir, 'schema', 'postgresql', 'v12'),
  };
  if (fs.existsSync(tools.server) && fs.existsSync(tools.sqlTool) && fs.existsSync(tools.schemaDir)) return tools;
  const go = onPath('go');
  if (!go) {
    throw new GovernorError(
      ErrorCode.ToolchainMissing,
      `no Temporal server build in ${dir} and no Go toolchain to build one: install Go >= 1.25`,
      'go',
    );
  }
  const staging = path.join(dir, 'staging');
  fs.mkdirSync(staging, { recursive: true });
  const env = { ...process.env, GOBIN: staging, CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' };
  onProgress?.(`building Temporal server ${TEMPORAL_SERVER_VERSION} and its SQL tool with ${go} (first run only)…`);
  const result = spawnSync(
    go,
    [
      'install',
      `${TEMPORAL_SERVER_MODULE}/cmd/server@${TEMPORAL_SERVER_VERSION}`,
      `${TEMPORAL_SERVER_MODULE}/cmd/tools/sql@${TEMPORAL_SERVER_VERSION}`,
    ],
    { stdio: ['ignore', 2, 'inherit'], env },
  );
  if (
    result.status !== 0 ||
    !fs.existsSync(path.join(staging, 'server')) ||
    !fs.existsSync(path.join(staging, 'sql'))
  ) {
    throw new GovernorError(
      ErrorCode.ToolchainMissing,
      `building the Temporal server failed (go install exit ${result.status ?? result.signal}); see the output above`,
      'go',
    );
  }
  const modCache = spawnSync(go, ['env', 'GOMODCACHE'], { encoding: 'utf8', env }).stdout.trim();
  const moduleSchema = path.join(
    modCache,
    `${TEMPORAL_SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}`,
    'schema',
    'postgresql',
  );
  if (!fs.existsSync(moduleSchema)) {
    throw new GovernorError(ErrorCode.ToolchainMissing, `no PostgreSQL schema in ${moduleSchema}`, 'go');
  }
  fs.rmSync(path.join(dir, 'schema'), { recursive: true, force: true });
  fs.cpSync(moduleSchema, path.join(staging, 'schema', 'postgresql'), { recursive: true });
  fs.chmodSync(staging, 0o755);
  for (const f of fs.readdirSync(path.join(staging, 'schema'), { recursive: true, withFileTypes: true })) {
    fs.chmodSync(path.join(f.parentPath, f.name), f.isDirectory() ? 0o755 : 0o644);
  }
  fs.renameSync(path.join(staging, 'schema'), path.join(dir, 'schema'));
  fs.renameSync(path.join(staging, 'sql'), tools.sqlTool);
  fs.renameSync(path.join(staging, 'server'), tools.server); // last: its presence means "all built"
  fs.rmSync(staging, { recursive: true, force: true });
  onProgress?.(`Temporal server ${TEMPORAL_SERVER_VERSION} built in ${dir}`);
  return tools;
}

/** PostgreSQL's binaries: `GOVERNOR_PG_BIN`, else the newest `/usr/lib/postgresql/<n>/bin` (Debian). */
export function resolvePostgres(): string {
  const fromEnv = process.env.GOVERNOR_PG_BIN;
  const candidates = fromEnv
    ? [fromEnv]
    : fs.existsSync('/usr/lib/postgresql')
      ? fs
          .readdirSync('/usr/lib/postgresql')
          .filter((v) => /^\d+$/.test(v))
          .sort((a, b) => Number(b) - Number(a))
          .map((v) => path.join('/usr/lib/postgresql', v, 'bin'))
      : [];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'initdb')) && fs.existsSync(path.join(d, 'pg_ctl')));
  if (!found) {
    throw new GovernorError(
      ErrorCode.ToolchainMissing,
      'PostgreSQL not found (no /usr/lib/postgresql/<version>/bin/initdb): `apt-get install postgresql` or set GOVERNOR_PG_BIN',
      'postgresql',
    );
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a database cluster of our own, run as a non-root user when we are root.

function pgUser(): { uid: number; gid: number; name: string } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const name = process.env.GOVERNOR_PG_USER ?? 'postgres';
  const id = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (id.status !== 0) {
    throw new GovernorError(
      ErrorCode.ToolchainMissing,
      `PostgreSQL refuses to run as root and there is no '${name}' user to run it as (set GOVERNOR_PG_USER)`,
      'postgresql',
    );
  }
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()), name };
}

function runPg(bin: string, args: string[], options: { allowFail?: boolean } = {}): SpawnSyncReturns<string> {
  const user = pgUser();
  const [cmd, argv] = user ? ['runuser', ['-u', user.name, '--', bin, ...args]] : [bin, args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', cwd: '/' });
  if (r.status !== 0 && !options.allowFail) {
    throw new GovernorError(
      ErrorCode.ServerStartFailed,
      `${path.basename(bin)} ${args[0]} failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim().slice(-800)}`,
      'postgresql',
    );
  }
  return r;
}

function pgPaths(dir: string) {
  return { data: path.join(dir, 'postgres', 'data'), log: path.join(dir, 'logs', 'postgres.log') };
}

/** Creates the database cluster (once), with password auth on loopback only. */
function initPostgres(dir: string, pgBin: string, password: string): void {
  const { data } = pgPaths(dir);
  if (fs.existsSync(path.join(data, 'PG_VERSION'))) return;
  const pgDir = path.dirname(data);
  fs.mkdirSync(pgDir, { recursive: true });
  const user = pgUser();
  const pwFile = path.join(pgDir, 'initdb.pw');
  fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  if (user) {
    // The postgres user must reach the folder: the cluster folder and its parents are traversable.
    for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
      const mode = fs.statSync(d).mode;
      if ((mode & 0o001) === 0) {
        // The cluster folder and the folder that holds it (GOVERNOR_HOME) get o+x (traverse, not list).
        if (d === dir || d === path.dirname(dir)) fs.chmodSync(d, mode | 0o711);
        else if (spawnSync('runuser', ['-u', user.name, '--', 'test', '-x', d]).status !== 0) {
          throw new GovernorError(
            ErrorCode.InvalidInput,
            `${d} is not traversable by the '${user.name}' user that runs PostgreSQL: choose a GOVERNOR_HOME elsewhere`,
            'GOVERNOR_HOME',
          );
        }
      }
    }
    fs.chownSync(pgDir, user.uid, user.gid);
    fs.chownSync(pwFile, user.uid, user.gid);
  }
  try {
    runPg(path.join(pgBin, 'initdb'), [
      '-D',
      data,
      '-U',
      'temporal',
      `--pwfile=${pwFile}`,
      '--auth-host=scram-sha-256',
      '--auth-local=scram-sha-256',
      '-E',
      'UTF8',
      '--no-instructions',
    ]);
  } finally {
    fs.rmSync(pwFile, { force: true });
  }
}

/** Starts PostgreSQL on 127.0.0.1:`port` (waits until it accepts connections); returns its pid. */
export function startPostgres(dir: string, port: number): number {
  const pgBin = resolvePostgres();
  const { data, log } = pgPaths(dir);
  fs.mkdirSync(path.dirname(log), { recursive: true });
  const user = pgUser();
  if (!fs.existsSync(log)) fs.writeFileSync(log, '');
  if (user) fs.chownSync(log, user.uid, user.gid);
  // Five Temporal processes × two stores × their pools, plus the tools: more than the default 100.
  const opts = [
    `-p ${port}`,
    "-c listen_addresses='127.0.0.1'",
    `-c unix_socket_directories='${path.dirname(data)}'`,
    '-c max_connections=300',
    '-c fsync=on',
  ].join(' ');
  runPg(path.join(pgBin, 'pg_ctl'), ['-D', data, '-l', log, '-w', '-t', '60', '-o', opts, 'start']);
  return postgresPid(dir) ?? -1;
}

/** Stops PostgreSQL (fast shutdown: open sessions are disconnected, committed data is kept). */
export function stopPostgres(dir: string): void {
  const { data } = pgPaths(dir);
  if (!fs.existsSync(path.join(data, 'postmaster.pid'))) return;
  runPg(path.join(resolvePostgres(), 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop'], {
    allowFail: true,
  });
}

/** The postmaster's pid, from `postmaster.pid`, when it runs. */
export function postgresPid(dir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(pgPaths(dir).data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return isAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Database and schemas: persistence (`temporal`) and SQL advanced visibility (`temporal_visibility`). */
function setupSchemas(dir: string, tools: ServerTools, port: number, password: string): void {
  const marker = path.join(dir, 'postgres', `schema-${TEMPORAL_SERVER_VERSION}.done`);
  if (fs.existsSync(marker)) return;
  for (const [db, schema] of [
    ['temporal', 'temporal'],
    ['temporal_visibility', 'visibility'],
  ] as const) {
    const base = ['--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(port), '-u', 'temporal', '--db', db];
    const run = (args: string[], allowFail = false) => {
      const r = spawnSync(tools.sqlTool, [...base, ...args], {
        encoding: 'utf8',
        env: { ...process.env, SQL_PASSWORD: password },
      });
      if (r.status !== 0 && !allowFail) {
        throw new GovernorError(
          ErrorCode.ServerStartFailed,
          `temporal-sql-tool ${args[0]} on ${db} failed: ${(r.stderr || r.stdout).trim().slice(-800)}`,
          'postgresql',
        );
      }
      return r;
    };
    run(['create-database'], true); // exists on a re-run after a partial setup
    run(['setup-schema', '-v', '0.0']);
    run(['update-schema', '-d', path.join(tools.schemaDir, schema, 'versioned')]);
  }
  fs.writeFileSync(marker, new Date().toISOString());
}

// ---------------------------------------------------------------------------------------------
// Temporal services: one config per process (metrics and membership ports are process-wide).

/** The server config of one process (YAML; JSON is YAML). */
export function serviceConfig(name: TemporalProcessName, ports: ClusterPorts, password: string, dir: string): string {
  const store = (db: string, maxConns: number) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName: db,
      connectAddr: `127.0.0.1:${ports.postgres}`,
      connectProtocol: 'tcp',
      user: 'temporal',
      password,
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  const services: Record<string, unknown> = {};
  for (const s of TEMPORAL_SERVICES) {
    // Every process knows every service's ports; the entry of its own service is the one it binds.
    const own = s.name === name ? s : TEMPORAL_SERVICES.find((o) => o.service === s.service && o.name === name);
    const p = ports.services[(own ?? s).name];
    if (services[s.service]) continue;
    services[s.service] = {
      rpc: {
        grpcPort: p.grpc,
        membershipPort: p.membership,
        bindOnLocalHost: true,
        ...(s.service === 'frontend' ? { httpPort: ports.frontendHttp } : {}),
      },
    };
  }
  const config = {
    log: { stdout: true, level: 'warn', format: 'json' },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      numHistoryShards: 4,
      datastores: { 'postgres-default': store('temporal', 12), 'postgres-visibility': store('temporal_visibility', 4) },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' },
      pprof: { port: 0 },
      metrics: {
        prometheus: {
          framework: 'tally',
          timerType: 'histogram',
          listenAddress: `127.0.0.1:${ports.services[name].metrics}`,
        },
      },
    },
    services,
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: {
        active: {
          enabled: true,
          initialFailoverVersion: 1,
          rpcName: 'frontend',
          rpcAddress: `127.0.0.1:${ports.frontend}`,
        },
      },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    archival: { history: { state: 'disabled' }, visibility: { state: 'disabled' } },
    namespaceDefaults: { archival: { history: { state: 'disabled' }, visibility: { state: 'disabled' } } },
    dynamicConfigClient: { filepath: path.join(dir, 'config', 'dynamicconfig.yaml'), pollInterval: '10s' },
  };
  return `# Generated by governor cluster up for the ${name} process; rewritten on every start.\n${JSON.stringify(config, null, 2)}\n`;
}

const DYNAMIC_CONFIG = [
  '# Generated by governor cluster up.',
  '# Search attributes are read fresh after registration (a new one is usable at once).',
  'system.forceSearchAttributesCacheRefreshOnRead:',
  '  - value: true',
  '# Local cluster: no reason to throttle transfer tasks (the dev server default adds ~50 ms per task).',
  'history.transferProcessorMaxPollRPS:',
  '  - value: 10000',
  '',
].join('\n');

function writeConfigs(dir: string, ports: ClusterPorts, password: string): void {
  fs.mkdirSync(path.join(dir, 'config'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'config', 'dynamicconfig.yaml'), DYNAMIC_CONFIG);
  for (const s of TEMPORAL_SERVICES) {
    const d = path.join(dir, 'config', s.name);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'development.yaml'), serviceConfig(s.name, ports, password, dir), { mode: 0o600 });
  }
}

/** Starts one Temporal service process (detached: it outlives `governor cluster up`); returns it. */
export function startTemporalProcess(dir: string, name: TemporalProcessName, ports: ClusterPorts): ClusterProcess {
  const tools = resolveServerTools();
  const spec = TEMPORAL_SERVICES.find((s) => s.name === name)!;
  const log = path.join(dir, 'logs', `${name}.log`);
  fs.mkdirSync(path.dirname(log), { recursive: true });
  const fd = fs.openSync(log, 'a');
  const child = spawn(
    tools.server,
    [
      '--root',
      dir,
      '--config',
      path.join('config', name),
      '--env',
      'development',
      '--allow-no-auth',
      'start',
      '--service',
      spec.service,
    ],
    { stdio: ['ignore', fd, fd], detached: true, cwd: dir },
  );
  fs.closeSync(fd);
  child.unref();
  const p = ports.services[name];
  return {
    name,
    kind: 'temporal',
    pid: child.pid ?? -1,
    log,
    ports: { grpc: p.grpc, membership: p.membership, metrics: p.metrics },
  };
}

// ---------------------------------------------------------------------------------------------
// Processes.

export function isAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited, not yet reaped by its parent) still answers signal 0.
  try {
    return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await sleep(100);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Fails with PortInUse when any port of the block is taken (another cluster, another program). */
export async function assertClusterPortsFree(ports: ClusterPorts): Promise<void> {
  const all = [
    ports.frontendHttp,
    ports.postgres,
    ...Object.values(ports.services).flatMap((p) => [p.grpc, p.membership, p.metrics]),
  ];
  for (const port of all) {
    if (await portOpen(port)) {
      throw new GovernorError(
        ErrorCode.PortInUse,
        `port 127.0.0.1:${port} is already in use; choose another --base-port`,
        'port',
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Namespace and search attributes.

async function withConnection<T>(address: string, fn: (c: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address, connectTimeout: 2000 });
  try {
    return await fn(connection);
  } finally {
    await connection.close();
  }
}

/** A process of the cluster exited while it was starting: no retry can bring it back. */
class ProcessExited extends GovernorError {}

/**
 * Retries `fn` until it succeeds or `timeoutMs` passes (then throws its last error). A `ProcessExited`
 * ends the wait at once: a service that died at start does not come back by waiting for it.
 */
async function retry<T>(what: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ProcessExited) throw err;
      last = err;
      await sleep(500);
    }
  }
  throw new GovernorError(
    ErrorCode.ServerStartFailed,
    `${what} did not succeed within ${timeoutMs} ms: ${String((last as Error)?.message ?? last)}`,
  );
}

const SA_TYPES: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  Keyword: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  KeywordList: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
  Bool: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
};

/**
 * Registers `namespace` (when missing) and the governor's search attributes on it. SQL visibility keeps
 * custom attributes per namespace, and a namespace created a moment ago refuses them for ~2 s: retried.
 */
export async function registerNamespace(address: string, namespace: string, timeoutMs = 60_000): Promise<void> {
  await retry(`registering namespace ${namespace}`, timeoutMs, () =>
    withConnection(address, async (c) => {
      try {
        await c.workflowService.describeNamespace({ namespace });
      } catch {
        await c.workflowService
          .registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('7 days') })
          .catch((err: { code?: number }) => {
            if (err.code !== 6) throw err; // ALREADY_EXISTS: a concurrent or earlier registration
          });
      }
    }),
  );
  await retry(`registering search attributes on ${namespace}`, timeoutMs, () =>
    withConnection(address, async (c) => {
      const listed = await c.operatorService.listSearchAttributes({ namespace });
      const have = new Set(Object.keys(listed.customAttributes ?? {}));
      const missing = Object.entries(SEARCH_ATTRIBUTES_FOR_CLI).filter(([n]) => !have.has(n));
      if (missing.length === 0) return;
      await c.operatorService.addSearchAttributes({
        namespace,
        searchAttributes: Object.fromEntries(missing.map(([n, t]) => [n, SA_TYPES[t]])),
      });
      throw new Error('registered; checking again'); // the next round confirms they are listed
    }),
  );
}

/**
 * Waits until every history shard and the matching service know `namespace`. The frontend knows a namespace as soon
 * as it is registered; the other services learn it when their namespace registry refreshes, and until then answer
 * "Namespace not found" (a governor worker's first calls then fail closed). A describe of a workflow that does not
 * exist answers NOT_FOUND for the workflow once its shard knows the namespace: probed on ids spread over the shards.
 */
export async function waitForNamespace(address: string, namespace: string, timeoutMs = 60_000): Promise<void> {
  await retry(`namespace ${namespace} known to every service`, timeoutMs, () =>
    withConnection(address, async (c) => {
      const unknown = (err: unknown): boolean => /namespace not found/i.test(innermostMessage(err));
      for (let i = 0; i < 32; i++) {
        try {
          await c.workflowService.describeWorkflowExecution({
            namespace,
            execution: { workflowId: `governor-namespace-probe-${i}` },
          });
        } catch (err) {
          // NOT_FOUND for the probe's workflow is the answer wanted; for the namespace it is not yet.
          if (grpcCodeOf(err) !== Grpc.NotFound || unknown(err)) throw err;
        }
      }
      await c.workflowService
        .describeTaskQueue({ namespace, taskQueue: { name: 'governor-namespace-probe' } })
        .catch((err: unknown) => {
          if (unknown(err)) throw err;
        });
    }),
  );
}

/** Fails (at once, see `retry`) if a recorded process has exited, with the tail of its log. */
function assertAlive(processes: ClusterProcess[]): void {
  const dead = processes.find((p) => !isAlive(p.pid));
  if (!dead) return;
  const tail = fs.existsSync(dead.log) ? fs.readFileSync(dead.log, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
  throw new ProcessExited(ErrorCode.ServerStartFailed, `${dead.name} (pid ${dead.pid}) exited at start:\n${tail}`);
}

/**
 * Waits until one Temporal service listens on its gRPC port; fails as soon as any of `processes` has
 * exited (with the tail of its log) rather than at the timeout.
 */
export async function waitForService(
  name: string,
  port: number,
  timeoutMs: number,
  processes: ClusterProcess[],
): Promise<void> {
  await retry(`Temporal ${name} on 127.0.0.1:${port}`, timeoutMs, async () => {
    assertAlive(processes);
    if (!(await portOpen(port))) throw new Error(`${name} does not listen on ${port} yet`);
  });
}

/** Waits until the frontend answers and the history ring owns every shard (a workflow list works). */
async function waitForFrontend(address: string, timeoutMs: number, processes: ClusterProcess[]): Promise<void> {
  await retry(`Temporal frontend on ${address}`, timeoutMs, async () => {
    assertAlive(processes);
    await withConnection(address, (c) => c.workflowService.getSystemInfo({}));
  });
}

// ---------------------------------------------------------------------------------------------
// The cluster.

export function readClusterState(dir: string): ClusterState | undefined {
  try {
    return JSON.parse(fs.readFileSync(stateFile(dir), 'utf8')) as ClusterState;
  } catch {
    return undefined;
  }
}

export function writeClusterState(state: ClusterState): void {
  const tmp = `${stateFile(state.dir)}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  fs.renameSync(tmp, stateFile(state.dir));
}

function clusterPassword(dir: string): string {
  const file = secretFile(dir);
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  fs.mkdirSync(dir, { recursive: true });
  const password = crypto.randomBytes(24).toString('base64url');
  fs.writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return password;
}

/**
 * Brings the cluster up: tools, PostgreSQL, schemas, the five Temporal processes, namespace and search
 * attributes. Returns the recorded state (governor workers are added by the caller).
 */
export async function clusterUp(options: ClusterOptions): Promise<ClusterState> {
  const t0 = Date.now();
  const dir = path.resolve(options.dir);
  const namespace = options.namespace ?? 'default';
  const progress = options.onProgress ?? (() => {});
  const existing = readClusterState(dir);
  if (existing && existing.processes.some((p) => isAlive(p.pid))) {
    throw new GovernorError(
      ErrorCode.PortInUse,
      `a cluster already runs from ${dir} (frontend ${existing.address}); \`governor cluster down\` first`,
      'cluster',
    );
  }
  const ports = clusterPorts(options.basePort);
  await assertClusterPortsFree(ports);
  if (await portOpen(ports.frontend)) {
    throw new GovernorError(ErrorCode.PortInUse, `port 127.0.0.1:${ports.frontend} is already in use`, 'port');
  }
  const tools = resolveServerTools(progress);
  const pgBin = resolvePostgres();
  fs.mkdirSync(path.join(dir, 'logs'), { recursive: true });
  const password = clusterPassword(dir);

  const state: ClusterState = {
    version: 1,
    dir,
    basePort: options.basePort,
    address: `127.0.0.1:${ports.frontend}`,
    httpAddress: `127.0.0.1:${ports.frontendHttp}`,
    namespace,
    serverVersion: TEMPORAL_SERVER_VERSION,
    startedAt: new Date().toISOString(),
    processes: [],
  };
  try {
    progress(`PostgreSQL (${pgBin}) on 127.0.0.1:${ports.postgres}…`);
    initPostgres(dir, pgBin, password);
    const pgPid = startPostgres(dir, ports.postgres);
    state.processes.push({
      name: 'postgres',
      kind: 'postgres',
      pid: pgPid,
      log: pgPaths(dir).log,
      ports: { sql: ports.postgres },
    });
    writeClusterState(state);
    setupSchemas(dir, tools, ports.postgres, password);
    writeConfigs(dir, ports, password);
    progress(`Temporal ${TEMPORAL_SERVER_VERSION}: ${TEMPORAL_SERVICES.map((s) => s.name).join(', ')}…`);
    // On a new database every service writes the cluster metadata and the system namespace at start, and
    // together they race (PostgreSQL: duplicate key on namespaces_pkey; the frontend exits with "Failed to
    // apply cluster metadata"). So one service starts first; the others start once its gRPC port is open,
    // which the server does only after both are written (temporal/server_impl.go: Start).
    const [first, ...rest] = TEMPORAL_SERVICES;
    state.processes.push(startTemporalProcess(dir, first.name, ports));
    writeClusterState(state);
    await waitForService(first.name, ports.services[first.name].grpc, 60_000, state.processes);
    for (const s of rest) state.processes.push(startTemporalProcess(dir, s.name, ports));
    writeClusterState(state);
    await waitForFrontend(state.address, 90_000, state.processes);
    progress(`namespace ${namespace} and search attributes…`);
    await registerNamespace(state.address, namespace);
    await waitForNamespace(state.address, namespace);
    state.startMs = Date.now() - t0;
    writeClusterState(state);
    return state;
  } catch (err) {
    await clusterDown(dir).catch(() => {});
    throw err;
  }
}

/** Stops every recorded process (governor workers first, PostgreSQL last). */
export async function clusterDown(dir: string): Promise<ClusterProcess[]> {
  const state = readClusterState(path.resolve(dir));
  if (!state) return [];
  const order = (p: ClusterProcess) => (p.kind === 'governor-worker' ? 0 : p.kind === 'temporal' ? 1 : 2);
  const procs = [...state.processes].sort((a, b) => order(a) - order(b));
  const workers = procs.filter((p) => p.kind === 'governor-worker');
  await Promise.all(workers.map((p) => stopProcess(p.pid)));
  await Promise.all(procs.filter((p) => p.kind === 'temporal').map((p) => stopProcess(p.pid)));
  stopPostgres(state.dir);
  const stopped = procs.filter((p) => p.kind !== 'postgres' || !postgresPid(state.dir));
  writeClusterState({ ...state, processes: [] });
  return stopped;
}

/** Each recorded process and whether it runs. */
export function clusterStatus(dir: string): {
  state?: ClusterState;
  processes: (ClusterProcess & { running: boolean })[];
} {
  const state = readClusterState(path.resolve(dir));
  if (!state) return { processes: [] };
  return {
    state,
    processes: state.processes.map((p) => ({
      ...p,
      running: p.kind === 'postgres' ? postgresPid(state.dir) !== undefined : isAlive(p.pid),
    })),
  };
}
