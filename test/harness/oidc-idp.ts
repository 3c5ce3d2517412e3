import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';

/**
 * A real OpenID Provider (panva/oidc-provider v9) on loopback, in its own Node process
 * (test/harness/oidc-idp-server.mjs; the provider is ESM-only, so it runs outside jest). Its sign-in page
 * is a plain form (`#login`, `#password`, `#idp-submit`) that a test fills with fetch or a headless browser;
 * there is no consent screen (first-party client).
 */

/** One account of the test IdP: its password and the claims of its ID token (`sub` is the account id). */
export interface IdpAccount {
  password: string;
  claims?: Record<string, unknown>;
}

/** A confidential client (client_secret_basic, authorization code + PKCE). */
export interface IdpClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
}

export interface TestIdp {
  /** `http://127.0.0.1:<port>`: the issuer and the discovery base. */
  issuer: string;
  stop(): Promise<void>;
}

/** Starts the test IdP with these clients and accounts; resolves once it listens. */
export async function startTestIdp(options: {
  clients: IdpClient[];
  accounts: Record<string, IdpAccount>;
  port?: number;
}): Promise<TestIdp> {
  const script = path.join(__dirname, 'oidc-idp-server.mjs');
  const child: ChildProcess = spawn(process.execPath, [script, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'development' },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const issuer = await new Promise<string>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    const timer = setTimeout(() => reject(new Error(`test IdP did not start: ${stderr}`)), 20_000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { issuer: string }).issuer);
      } catch {
        reject(new Error(`test IdP said: ${line} ${stderr}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`test IdP exited with ${code}: ${stderr}`));
    });
  });
  return {
    issuer,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** A TCP port free on loopback right now (for a redirect URI that must be known before the server starts). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
