import { lookup } from 'node:dns/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Executor } from '../contracts/chain';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { entryLabel, matchHttpCall, type HttpSection, type HttpTarget, type MatchedCall } from '../policies/http-allow';
import { canonicalHost, classifyAddress, hostPort } from '../policies/ip-ranges';

/** Resolves a host name to every address it has (IP strings in any spelling). */
export type HttpResolver = (host: string) => Promise<string[]>;

/** What the http executor must know beyond the manifest. */
export interface HttpExecutorOptions {
  /**
   * `host:port` (or URLs) of the Temporal frontend, its HTTP API and Web UI that this worker knows:
   * never callable, even when an entry allow-lists them. The dev server's defaults
   * (`localhost:7233`, its HTTP API `localhost:7243`, `localhost:8233`) are always included.
   */
  protectedAddresses?: readonly string[];
  /** Name resolution; default: the system resolver (`dns.lookup`, every address). Tests inject one. */
  resolve?: HttpResolver;
  /** Where `secretRef.env` is read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** Always protected: the local dev server's frontend and UI ports. */
const DEV_SERVER_ADDRESSES = ['localhost:7233', 'localhost:7243', 'localhost:8233'];
const RESOLVE_TIMEOUT_MS = 5000;
const MAX_SECRET_BYTES = 8192;

/** A call that passed every check: where to connect (exact checked addresses) and what to send. */
export interface CheckedCall {
  call: MatchedCall;
  /** Every address the host resolved to, all checked; the executor connects to the first. */
  addresses: { address: string; family: 4 | 6 }[];
  /** The entry's headers with secrets resolved. Never logged, never returned from an activity. */
  entryHeaders: Map<string, string>;
}

interface ProtectedAddress {
  spelled: string;
  host: string;
  kind: 'name' | 'ipv4' | 'ipv6';
  port: number;
}

function parseProtected(spelled: string): ProtectedAddress {
  let url: URL | undefined;
  try {
    url = new URL(spelled.includes('://') ? spelled : `http://${spelled}`);
  } catch {
    url = undefined;
  }
  const host = url ? canonicalHost(url.hostname) : undefined;
  if (!url || !host)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      'http protectedAddresses (TEMPORAL_ADDRESS, the UI address, GOVERNOR_HTTP_PROTECTED): an entry is not host:port',
      'protectedAddresses',
    );
  // A bare `host` is a Temporal frontend on its default port.
  const port =
    url.port !== '' ? Number(url.port) : spelled.includes('://') ? (url.protocol === 'https:' ? 443 : 80) : 7233;
  return { spelled: hostPort(host.host, port), host: host.host, kind: host.kind, port };
}

/** The system resolver: every address, as the OS orders them, bounded in time. */
const systemResolve: HttpResolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Addresses of this host's own interfaces (canonical), plus what always means "this host". */
function isLocalAddress(address: string): boolean {
  const c = classifyAddress(address);
  if (!c) return false;
  if (c.class === 'loopback' || c.class === 'unspecified') return true;
  for (const list of Object.values(os.networkInterfaces())) {
    for (const i of list ?? []) if (classifyAddress(i.address)?.address === c.address) return true;
  }
  return false;
}

/**
 * Decides whether the http executor may make a call, from the manifest and from the addresses the
 * target resolves to *now*. Used twice per call: by `authorize` (pre-flight, so a refused target is a
 * recorded deny before anything is sent or any approval is awaited) and by the executor right before
 * it connects, to the exact addresses this check returned (a second resolution that answers
 * differently is checked again: no DNS rebinding).
 */
export class HttpGuard {
  private readonly protectedAddresses: ProtectedAddress[];
  private readonly resolve: HttpResolver;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly home: string,
    options: HttpExecutorOptions = {},
  ) {
    this.protectedAddresses = [...DEV_SERVER_ADDRESSES, ...(options.protectedAddresses ?? [])].map(parseProtected);
    this.resolve = options.resolve ?? systemResolve;
    this.env = options.env ?? process.env;
  }

  /** Checks a call of `executor` against `section`; a refusal's reason names what was refused (never a secret, a path or a query). */
  async check(
    section: HttpSection,
    executor: Extract<Executor, { type: 'http' }>,
  ): Promise<{ ok: true; checked: CheckedCall } | { ok: false; reason: string }> {
    const matched = matchHttpCall(section, { url: executor.url, method: executor.method, headers: executor.headers });
    if (!matched.ok) return matched;
    const { call } = matched;
    const { target, host, port } = call;
    const where = hostPort(host.host, port);

    // Temporal's own endpoints, by name or address, before anything is resolved.
    for (const p of this.protectedAddresses) {
      if (p.port === port && p.host === host.host)
        return { ok: false, reason: `${where} is a Temporal endpoint of this worker (${p.spelled}): never callable` };
    }

    let resolved: string[];
    if (host.kind !== 'name') resolved = [host.host];
    else if (target.addresses) resolved = target.addresses;
    else {
      try {
        resolved = await withTimeout(this.resolve(host.host), RESOLVE_TIMEOUT_MS, `resolving ${host.host}`);
      } catch {
        return { ok: false, reason: `${host.host} could not be resolved` };
      }
    }
    if (resolved.length === 0) return { ok: false, reason: `${host.host} resolved to no address` };

    const addresses: CheckedCall['addresses'] = [];
    for (const raw of resolved) {
      const c = classifyAddress(raw);
      if (!c) return { ok: false, reason: `${host.host} resolved to something that is not an IP address` };
      const named =
        (host.kind !== 'name' && host.host === c.address) || (target.addresses?.includes(c.address) ?? false);
      if (c.class !== 'public' && !(named && target.explicitPort)) {
        const what =
          host.kind === 'name'
            ? `${host.host} resolves to ${c.address} (${c.class})`
            : `${c.address} is a ${c.class} address`;
        return {
          ok: false,
          reason: `${what}: only an http.allow entry that names that exact address and its port may reach it`,
        };
      }
      addresses.push({ address: c.address, family: c.version });
    }

    const temporal = await this.temporalEndpoint(
      port,
      addresses.map((a) => a.address),
    );
    if (temporal)
      return { ok: false, reason: `${where} is a Temporal endpoint of this worker (${temporal}): never callable` };

    const entryHeaders = new Map<string, string>();
    for (const [lower, { name, value }] of target.headers) {
      if (value.value !== undefined) {
        entryHeaders.set(lower, value.value);
        continue;
      }
      const secret = this.readSecret(target, name, value.secretRef!);
      if (!secret.ok) return secret;
      entryHeaders.set(lower, secret.value);
    }
    return { ok: true, checked: { call, addresses, entryHeaders } };
  }

  /** The protected endpoint `port` on one of `addresses` is, if any (fails closed when a protected name cannot be resolved). */
  private async temporalEndpoint(port: number, addresses: string[]): Promise<string | undefined> {
    for (const p of this.protectedAddresses) {
      if (p.port !== port) continue;
      let theirs: string[];
      try {
        theirs =
          p.kind === 'name'
            ? (await withTimeout(this.resolve(p.host), RESOLVE_TIMEOUT_MS, `resolving ${p.host}`)).map(
                (a) => classifyAddress(a)?.address ?? a,
              )
            : [p.host];
      } catch {
        return `${p.spelled}, which could not be resolved to rule it out`;
      }
      // A Temporal endpoint on this host is reachable through every local address (0.0.0.0 binds).
      const local = theirs.some(isLocalAddress);
      if (addresses.some((a) => theirs.includes(a) || (local && isLocalAddress(a)))) return p.spelled;
    }
    return undefined;
  }

  private readSecret(
    target: HttpTarget,
    header: string,
    ref: { env?: string | undefined; file?: string | undefined },
  ): { ok: true; value: string } | { ok: false; reason: string } {
    const field = `${entryLabel(target)}.headers.${header}.secretRef`;
    let value: string | undefined;
    if (ref.env !== undefined) {
      value = this.env[ref.env];
      if (value === undefined || value === '')
        return {
          ok: false,
          reason: `the secret for ${field} is not available (environment variable ${ref.env} is unset or empty)`,
        };
    } else {
      const file = path.resolve(this.home, ref.file!);
      try {
        if (fs.statSync(file).size > MAX_SECRET_BYTES)
          return { ok: false, reason: `the secret for ${field} is larger than ${MAX_SECRET_BYTES} bytes` };
        value = fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch {
        return { ok: false, reason: `the secret for ${field} is not available (file ${ref.file} cannot be read)` };
      }
    }
    if (value === '' || value.length > MAX_SECRET_BYTES || /[\r\n\0]/.test(value))
      return { ok: false, reason: `the secret for ${field} is empty, too long or contains CR, LF or NUL` };
    return { ok: true, value };
  }
}
