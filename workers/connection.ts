import { loadClientConnectConfig } from '@temporalio/envconfig';
import { Connection, ConnectionOptions } from '@temporalio/client';
import { NativeConnection, NativeConnectionOptions } from '@temporalio/worker';
import { ErrorCode, GovernorError } from '../contracts/errors';

/** Temporal connection settings from the standard `TEMPORAL_*` variables (and the Temporal config file). */
export interface TemporalSettings {
  address: string;
  namespace: string;
  connectionOptions: NativeConnectionOptions;
}

/** Reads `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*` (via @temporalio/envconfig). */
export function loadTemporalSettings(overrides: { address?: string; namespace?: string } = {}): TemporalSettings {
  let loaded;
  try {
    loaded = loadClientConnectConfig();
  } catch (err) {
    throw new GovernorError(ErrorCode.InvalidInput, `Temporal settings are invalid: ${(err as Error).message}`, 'TEMPORAL_*');
  }
  const address = overrides.address ?? loaded.connectionOptions.address ?? 'localhost:7233';
  const namespace = overrides.namespace ?? loaded.namespace ?? 'default';
  return { address, namespace, connectionOptions: { ...loaded.connectionOptions, address } };
}

function unreachable(address: string, err: unknown): GovernorError {
  return new GovernorError(
    ErrorCode.TemporalUnreachable,
    `cannot reach Temporal at ${address}: ${(err as Error)?.message ?? String(err)}. ` +
      'Start it with `npx governor server` or set TEMPORAL_ADDRESS.',
    'TEMPORAL_ADDRESS',
  );
}

/** Opens a worker (native) connection; throws TemporalUnreachable with the address when it cannot. */
export async function connectWorker(settings: TemporalSettings): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect(settings.connectionOptions);
  } catch (err) {
    throw unreachable(settings.address, err);
  }
}

/** Opens a client connection and checks the server answers; throws TemporalUnreachable when it cannot. */
export async function connectClient(settings: TemporalSettings, connectTimeoutMs = 5000): Promise<Connection> {
  const o = settings.connectionOptions;
  const options: ConnectionOptions = {
    address: settings.address,
    tls: o.tls,
    apiKey: typeof o.apiKey === 'string' ? o.apiKey : undefined,
    metadata: o.metadata,
    connectTimeout: connectTimeoutMs,
  };
  try {
    const connection = await Connection.connect(options);
    await connection.workflowService.getSystemInfo({});
    return connection;
  } catch (err) {
    throw unreachable(settings.address, err);
  }
}
