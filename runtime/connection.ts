import fs from 'node:fs';
import { loadClientConfigProfile, toClientOptions, type ClientConfigProfile } from '@temporalio/envconfig';
import { Connection, ConnectionOptions } from '@temporalio/client';
import { NativeConnection, NativeConnectionOptions } from '@temporalio/worker';
import { ErrorCode, GovernorError } from '../contracts/errors';

/** Temporal connection settings from the standard `TEMPORAL_*` variables (and the Temporal config file). */
export interface TemporalSettings {
  address: string;
  namespace: string;
  connectionOptions: NativeConnectionOptions;
}

/** Boolean settings: envconfig reads anything but `true`/`1` as false, so `TEMPORAL_TLS=yes` would turn TLS off. */
const BOOLEAN_SETTINGS = ['TEMPORAL_TLS', 'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION'];
/** File settings, checked here so a missing file is reported with the variable that names it. */
const FILE_SETTINGS = [
  'TEMPORAL_TLS_CLIENT_CERT_PATH',
  'TEMPORAL_TLS_CLIENT_KEY_PATH',
  'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
  'TEMPORAL_CONFIG_FILE',
];

function invalid(field: string, message: string): GovernorError {
  return new GovernorError(ErrorCode.InvalidInput, `${field}: ${message}`, field);
}

/**
 * The environment as envconfig should see it: empty `TEMPORAL_*` values count as unset (compose's
 * `${TEMPORAL_API_KEY:-}` must not switch TLS on), except `TEMPORAL_GRPC_META_*`, where empty removes
 * a header. Rejects values envconfig would silently misread.
 */
function checkedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (value === '' && name.startsWith('TEMPORAL_') && !name.startsWith('TEMPORAL_GRPC_META_')) continue;
    out[name] = value;
  }
  for (const name of BOOLEAN_SETTINGS) {
    const v = out[name];
    if (v !== undefined && !['true', 'false', '1', '0'].includes(v))
      throw invalid(name, `must be true or false (got "${v}")`);
  }
  if (out.TEMPORAL_TLS_DISABLE_HOST_VERIFICATION === 'true' || out.TEMPORAL_TLS_DISABLE_HOST_VERIFICATION === '1') {
    // The TypeScript SDK has no such switch; envconfig would drop it silently. Refuse rather than pretend.
    throw invalid(
      'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION',
      'is not supported; trust the server with TEMPORAL_TLS_SERVER_CA_CERT_PATH and, if its certificate names another host, set TEMPORAL_TLS_SERVER_NAME',
    );
  }
  for (const name of FILE_SETTINGS) {
    const file = out[name];
    if (file === undefined) continue;
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch (err) {
      // TEMPORAL_CONFIG_FILE may name a file that does not exist yet (envconfig ignores it); unreadable is an error.
      if (name === 'TEMPORAL_CONFIG_FILE' && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw invalid(name, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  return out;
}

/** A client certificate without its key (or the reverse) would silently connect without one. */
function checkProfile(profile: ClientConfigProfile): void {
  const tls = profile.tls;
  if (!tls || tls.disabled === true) return;
  if (tls.clientCert && !tls.clientKey)
    throw invalid(
      'TEMPORAL_TLS_CLIENT_KEY_PATH',
      'a client certificate is set but no client key (TEMPORAL_TLS_CLIENT_KEY_PATH or tls.client_key_path)',
    );
  if (tls.clientKey && !tls.clientCert)
    throw invalid(
      'TEMPORAL_TLS_CLIENT_CERT_PATH',
      'a client key is set but no client certificate (TEMPORAL_TLS_CLIENT_CERT_PATH or tls.client_cert_path)',
    );
}

/**
 * Reads `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`,
 * `TEMPORAL_GRPC_META_*` and the Temporal config file (`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`) via
 * @temporalio/envconfig. Invalid settings throw InvalidInput naming the setting.
 */
export function loadTemporalSettings(
  overrides: { address?: string; namespace?: string } = {},
  env: NodeJS.ProcessEnv = process.env,
): TemporalSettings {
  const vars = checkedEnv(env);
  let loaded;
  try {
    const profile = loadClientConfigProfile({ overrideEnvVars: vars });
    checkProfile(profile);
    loaded = toClientOptions(profile);
  } catch (err) {
    if (err instanceof GovernorError) throw err;
    const message = (err as Error).message;
    const field = /^Profile '.*' not found/.test(message)
      ? 'TEMPORAL_PROFILE'
      : /^Cannot specify both/.test(message)
        ? 'TEMPORAL_TLS_*'
        : 'TEMPORAL_CONFIG_FILE';
    throw new GovernorError(ErrorCode.InvalidInput, `Temporal settings are invalid (${field}): ${message}`, field);
  }
  const address = overrides.address ?? loaded.connectionOptions.address ?? 'localhost:7233';
  const namespace = overrides.namespace ?? loaded.namespace ?? 'default';
  return { address, namespace, connectionOptions: { ...loaded.connectionOptions, address } };
}

/** gRPC status codes of a refused identity. */
const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;

function grpcCode(err: unknown): number | undefined {
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 5;
    e = e.cause as typeof e, i++
  ) {
    if (typeof e.code === 'number') return e.code;
  }
  return undefined;
}

/** The messages along an error's cause chain (the client's "Failed to connect" hides the gRPC status in its cause). */
function describe(err: unknown): string {
  const parts: string[] = [];
  for (
    let e = err as { message?: unknown; details?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 5;
    e = e.cause as typeof e, i++
  ) {
    const text =
      typeof e.details === 'string' && e.details ? e.details : typeof e.message === 'string' ? e.message : String(e);
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
  }
  return parts.join(': ') || String(err);
}

function unreachable(settings: TemporalSettings, err: unknown): GovernorError {
  const { address } = settings;
  const apiKey = settings.connectionOptions.apiKey;
  let detail = describe(err);
  // Never echo the API key, whatever a server or library puts in its message.
  if (typeof apiKey === 'string' && apiKey.length > 0) detail = detail.split(apiKey).join('[redacted]');
  const code = grpcCode(err);
  if (
    code === UNAUTHENTICATED ||
    code === PERMISSION_DENIED ||
    /unauthenticated|permission.?denied|valid authentication credentials/i.test(detail)
  ) {
    return new GovernorError(
      ErrorCode.TemporalUnreachable,
      `Temporal at ${address} refused the credentials: ${detail}. Check TEMPORAL_API_KEY (or the client certificate) and TEMPORAL_NAMESPACE.`,
      'TEMPORAL_API_KEY',
    );
  }
  const tls = settings.connectionOptions.tls;
  const hint = tls
    ? 'Check TEMPORAL_ADDRESS and the TLS settings (TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS_CLIENT_CERT_PATH/KEY_PATH).'
    : 'Start the governor with `npx governor up` (dev server, UI and worker) or set TEMPORAL_ADDRESS.';
  return new GovernorError(
    ErrorCode.TemporalUnreachable,
    `cannot reach Temporal at ${address}: ${detail}. ${hint}`,
    'TEMPORAL_ADDRESS',
  );
}

/** Opens a worker (native) connection; throws TemporalUnreachable with the address when it cannot. */
export async function connectWorker(settings: TemporalSettings): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect(settings.connectionOptions);
  } catch (err) {
    throw unreachable(settings, err);
  }
}

/**
 * Opens a client connection with the same address, TLS, API key and gRPC metadata as the worker, and
 * checks the server answers; throws TemporalUnreachable when it cannot.
 */
export async function connectClient(settings: TemporalSettings, connectTimeoutMs = 5000): Promise<Connection> {
  const o = settings.connectionOptions;
  const options: ConnectionOptions = {
    address: settings.address,
    tls: o.tls,
    apiKey: typeof o.apiKey === 'string' ? o.apiKey : undefined,
    metadata: o.metadata,
    connectTimeout: connectTimeoutMs,
  };
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect(options);
    await connection.workflowService.getSystemInfo({});
    return connection;
  } catch (err) {
    await connection?.close().catch(() => undefined);
    throw unreachable(settings, err);
  }
}
