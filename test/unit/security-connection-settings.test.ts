import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadTemporalSettings } from '../../runtime/connection';

// loadTemporalSettings reads the standard TEMPORAL_* settings through @temporalio/envconfig. These
// cases pin what reaches the connections and which settings are refused (naming the setting).
// Connections over TLS, mTLS and API keys are exercised in test/integration/security-connection.test.ts.

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-settings-'));
const file = (name: string, text: string): string => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
};
const ca = file('ca.pem', 'CA PEM');
const crt = file('client.pem', 'CLIENT PEM');
const key = file('client.key', 'CLIENT KEY');
const NO_FILE = path.join(dir, 'none.toml');
/** No config file and nothing from the test process's environment. */
const env = (vars: Record<string, string> = {}): NodeJS.ProcessEnv => ({ TEMPORAL_CONFIG_FILE: NO_FILE, ...vars });
const text = (b: unknown): string => Buffer.from(b as Uint8Array).toString();

function refused(vars: Record<string, string>): { code?: string; field?: string; message: string } {
  try {
    loadTemporalSettings({}, env(vars));
  } catch (err) {
    return err as { code?: string; field?: string; message: string };
  }
  throw new Error(`settings were accepted: ${JSON.stringify(vars)}`);
}

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('loadTemporalSettings', () => {
  it('defaults to plaintext localhost:7233, namespace default', () => {
    const s = loadTemporalSettings({}, env());
    expect(s).toEqual({
      address: 'localhost:7233',
      namespace: 'default',
      connectionOptions: expect.objectContaining({ address: 'localhost:7233' }),
    });
    expect(s.connectionOptions.tls).toBeUndefined();
    expect(s.connectionOptions.apiKey).toBeUndefined();
  });

  it('carries address, namespace, server CA, server name and the client pair', () => {
    const s = loadTemporalSettings(
      {},
      env({
        TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233',
        TEMPORAL_NAMESPACE: 'ns.acct',
        TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca,
        TEMPORAL_TLS_SERVER_NAME: 'front.internal',
        TEMPORAL_TLS_CLIENT_CERT_PATH: crt,
        TEMPORAL_TLS_CLIENT_KEY_PATH: key,
      }),
    );
    expect(s.address).toBe('ns.acct.tmprl.cloud:7233');
    expect(s.namespace).toBe('ns.acct');
    const tls = s.connectionOptions.tls as {
      serverNameOverride?: string;
      serverRootCACertificate?: Uint8Array;
      clientCertPair?: { crt: Uint8Array; key: Uint8Array };
    };
    expect(tls.serverNameOverride).toBe('front.internal');
    expect(text(tls.serverRootCACertificate)).toBe('CA PEM');
    expect([text(tls.clientCertPair!.crt), text(tls.clientCertPair!.key)]).toEqual(['CLIENT PEM', 'CLIENT KEY']);
  });

  it('turns TLS on with an API key unless TEMPORAL_TLS=false says otherwise; an empty key counts as unset', () => {
    const withKey = loadTemporalSettings({}, env({ TEMPORAL_API_KEY: 'k-123' }));
    expect(withKey.connectionOptions).toMatchObject({ apiKey: 'k-123', tls: true });
    expect(
      loadTemporalSettings({}, env({ TEMPORAL_API_KEY: 'k-123', TEMPORAL_TLS: 'false' })).connectionOptions.tls,
    ).toBe(false);
    // docker-compose passes `${TEMPORAL_API_KEY:-}` as an empty string: not a key, and no TLS.
    const empty = loadTemporalSettings({}, env({ TEMPORAL_API_KEY: '', TEMPORAL_TLS: '' }));
    expect(empty.connectionOptions.apiKey).toBeUndefined();
    expect(empty.connectionOptions.tls).toBeUndefined();
    expect(loadTemporalSettings({}, env({ TEMPORAL_TLS: '1' })).connectionOptions.tls).toEqual({});
  });

  it('carries gRPC metadata (TEMPORAL_GRPC_META_*) and lets overrides win over the environment', () => {
    const s = loadTemporalSettings(
      { address: '127.0.0.1:7999', namespace: 'other' },
      env({ TEMPORAL_ADDRESS: 'x:1', TEMPORAL_GRPC_META_TENANT: 'blue' }),
    );
    expect(s.address).toBe('127.0.0.1:7999');
    expect(s.connectionOptions.address).toBe('127.0.0.1:7999');
    expect(s.namespace).toBe('other');
    expect(s.connectionOptions.metadata).toEqual({ tenant: 'blue' });
  });

  it('refuses booleans envconfig would misread as false (TEMPORAL_TLS=yes would mean plaintext)', () => {
    for (const [name, value] of [
      ['TEMPORAL_TLS', 'yes'],
      ['TEMPORAL_TLS', 'TRUE'],
      ['TEMPORAL_TLS_DISABLE_HOST_VERIFICATION', 'on'],
    ]) {
      expect(refused({ [name!]: value! })).toMatchObject({
        code: 'GOVERNOR_INVALID_INPUT',
        field: name,
        message: `${name}: must be true or false (got "${value}")`,
      });
    }
  });

  it('refuses TEMPORAL_TLS_DISABLE_HOST_VERIFICATION=true (the SDK cannot honour it) but accepts false', () => {
    expect(refused({ TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' })).toMatchObject({
      field: 'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION',
      message: expect.stringContaining('TEMPORAL_TLS_SERVER_NAME'),
    });
    expect(loadTemporalSettings({}, env({ TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'false' })).address).toBe(
      'localhost:7233',
    );
  });

  it('names the setting of an unreadable certificate file', () => {
    for (const name of [
      'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
      'TEMPORAL_TLS_CLIENT_CERT_PATH',
      'TEMPORAL_TLS_CLIENT_KEY_PATH',
    ]) {
      expect(refused({ [name]: path.join(dir, 'missing.pem') })).toMatchObject({
        code: 'GOVERNOR_INVALID_INPUT',
        field: name,
        message: expect.stringContaining(`${name}: cannot read`),
      });
    }
  });

  it('refuses half a client pair instead of silently connecting without a certificate', () => {
    expect(refused({ TEMPORAL_TLS_CLIENT_CERT_PATH: crt })).toMatchObject({ field: 'TEMPORAL_TLS_CLIENT_KEY_PATH' });
    expect(refused({ TEMPORAL_TLS_CLIENT_KEY_PATH: key })).toMatchObject({ field: 'TEMPORAL_TLS_CLIENT_CERT_PATH' });
    const toml = file('half.toml', `[profile.default.tls]\nclient_cert_path = "${crt}"\n`);
    expect(refused({ TEMPORAL_CONFIG_FILE: toml })).toMatchObject({ field: 'TEMPORAL_TLS_CLIENT_KEY_PATH' });
  });

  it('reads a profile of the config file, environment winning; an unknown profile names TEMPORAL_PROFILE', () => {
    const toml = file(
      'temporal.toml',
      [
        '[profile.prod]',
        'address = "prod.example:7233"',
        'namespace = "prod"',
        'api_key = "from-file"',
        '[profile.prod.tls]',
        `server_ca_cert_path = "${ca}"`,
        '',
      ].join('\n'),
    );
    const s = loadTemporalSettings(
      {},
      env({ TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'prod', TEMPORAL_NAMESPACE: 'prod-2' }),
    );
    expect(s).toMatchObject({
      address: 'prod.example:7233',
      namespace: 'prod-2',
      connectionOptions: { apiKey: 'from-file' },
    });
    expect(text((s.connectionOptions.tls as { serverRootCACertificate: Uint8Array }).serverRootCACertificate)).toBe(
      'CA PEM',
    );
    expect(refused({ TEMPORAL_CONFIG_FILE: toml, TEMPORAL_PROFILE: 'staging' })).toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      field: 'TEMPORAL_PROFILE',
      message: expect.stringContaining("'staging'"),
    });
    const broken = file('broken.toml', '[profile.default\naddress = ');
    expect(refused({ TEMPORAL_CONFIG_FILE: broken })).toMatchObject({
      code: 'GOVERNOR_INVALID_INPUT',
      field: 'TEMPORAL_CONFIG_FILE',
    });
  });
});
