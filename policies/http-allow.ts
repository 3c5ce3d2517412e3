import { z } from 'zod';
import { DURATION_PATTERN, durationMs } from '../contracts/duration';
import { canonicalHost, classifyAddress, type CanonicalHost } from './ip-ranges';

/**
 * The manifest's `http` section: what the built-in http executor may call, exactly. Pure (no DNS,
 * no I/O); the executor resolves names and checks the addresses it connects to (activities/http-guard.ts).
 *
 * ```yaml
 * http:
 *   allow:
 *     - origin: https://hooks.example.com          # scheme://host[:port]: any path
 *       methods: [POST]                            # default [POST]
 *       headers:                                   # sent with every call; the chain cannot set these
 *         Authorization: { secretRef: { env: HOOKS_TOKEN } }
 *     - prefix: https://api.example.com/v1/notify/ # scheme://host[:port]/path: that path and below
 *     - origin: http://127.0.0.1:8080              # a loopback/private address only by its exact IP and port
 * ```
 */

export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const HEADER_VALUE = /^[^\r\n\0]*$/;

/** Hop-by-hop headers (RFC 9110 §7.6.1) and headers the executor sets itself: never from the chain, never from an entry. */
const TRANSPORT_HEADERS = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
  'idempotency-key',
]);
/** Credential headers: only an entry may set them, and only by secret reference. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie']);

/**
 * Why a header from the chain is refused, or undefined when the chain may send it. `entryHeaders`
 * are the (lower-case) headers the matched entry sets: the chain cannot override them either.
 */
export function refusedChainHeader(
  lowerName: string,
  entryHeaders: ReadonlySet<string> = new Set(),
): string | undefined {
  if (CREDENTIAL_HEADERS.has(lowerName) || lowerName.startsWith('proxy-'))
    return "credentials for a target come only from the manifest (an http.allow entry's headers, by secretRef), never from the chain";
  if (TRANSPORT_HEADERS.has(lowerName)) return 'it is a hop-by-hop or transport header the executor sets itself';
  if (entryHeaders.has(lowerName)) return "the manifest's http.allow entry sets it";
  return undefined;
}

/** A secret by reference: an environment variable of the worker, or a file (relative paths resolve against GOVERNOR_HOME). */
export const SecretRef = z
  .strictObject({
    env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name')
      .optional(),
    file: z.string().min(1).max(4096).optional(),
  })
  .refine((s) => (s.env === undefined) !== (s.file === undefined), {
    message: 'exactly one of env or file is required',
  });
export type SecretRef = z.infer<typeof SecretRef>;

/** A header an entry sends: a literal `value` (never a credential) or a `secretRef`, never both. */
export const HttpHeaderValue = z
  .strictObject({
    value: z.string().max(4096).regex(HEADER_VALUE, 'must not contain CR, LF or NUL').optional(),
    secretRef: SecretRef.optional(),
  })
  .refine((h) => (h.value === undefined) !== (h.secretRef === undefined), {
    message: 'exactly one of value or secretRef is required',
  });
export type HttpHeaderValue = z.infer<typeof HttpHeaderValue>;

/** One allow-list entry: an exact origin or a URL prefix, with what may be sent there. */
export const HttpAllowEntry = z
  .strictObject({
    /** `scheme://host[:port]`: every path of exactly that origin. */
    origin: z.string().max(2048).optional(),
    /** `scheme://host[:port]/path`: that path and the paths below it, on exactly that origin. */
    prefix: z.string().max(2048).optional(),
    /**
     * Pinned IP addresses for the entry's host name: connect only to these, never ask DNS (like curl
     * `--resolve`). Loopback, private and other non-public addresses need the port written in the origin.
     */
    addresses: z.array(z.string().min(1).max(64)).min(1).max(16).optional(),
    /** Methods the chain may use here (default POST only). */
    methods: z.array(z.enum(HTTP_METHODS)).min(1).default(['POST']),
    /** Headers sent with every call to this entry; the chain may not set or override them. */
    headers: z.record(z.string(), HttpHeaderValue).default({}),
    /** Largest response body read (default 1 MiB): a larger one fails the step, unread. */
    maxResponseBytes: z
      .int()
      .min(0)
      .max(16 * 1024 * 1024)
      .default(DEFAULT_MAX_RESPONSE_BYTES),
    /** Longest a call may take, connect to last byte (default 10s, at most 120s); a chain's `timeoutMs` can only shorten it. */
    timeout: z.string().regex(DURATION_PATTERN, 'must be a duration such as 500ms, 10s').default('10s'),
  })
  .superRefine((entry, ctx) => {
    for (const issue of compileEntry(entry, 0).issues)
      ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  });
export type HttpAllowEntry = z.infer<typeof HttpAllowEntry>;

/** The manifest's `http` section. */
export const HttpSection = z
  .strictObject({
    /** What the http executor may call. Empty (the default): nothing. */
    allow: z.array(HttpAllowEntry).max(1000).default([]),
    /** The former host-name allow-list: refused with a pointer to `allow`. */
    allowedHosts: z.unknown().optional(),
  })
  .superRefine((section, ctx) => {
    if (section.allowedHosts !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['allowedHosts'],
        message: 'no longer supported: list exact origins (scheme://host[:port]) or URL prefixes under http.allow',
      });
    }
    const seen = new Map<string, number>();
    section.allow.forEach((entry, i) => {
      const key = entry.origin ?? entry.prefix ?? '';
      const target = compileEntry(entry, i).target;
      const canonical = target ? `${target.origin}${target.pathPrefix}` : key;
      const first = seen.get(canonical);
      if (first !== undefined)
        ctx.addIssue({ code: 'custom', path: ['allow', i], message: `names the same target as http.allow.${first}` });
      else seen.set(canonical, i);
    });
  })
  .transform(({ allow }) => ({ allow }));
export type HttpSection = z.infer<typeof HttpSection>;

/** A validated allow-list entry in canonical form. */
export interface HttpTarget {
  /** Index in `http.allow`, for messages (`http.allow.<index>`). */
  index: number;
  scheme: 'http:' | 'https:';
  host: CanonicalHost;
  port: number;
  /** The port was written in the entry (required for loopback/private addresses). */
  explicitPort: boolean;
  /** `scheme://host:port` (IPv6 in brackets). */
  origin: string;
  /** `/` for an origin entry. */
  pathPrefix: string;
  /** Canonical pinned addresses (`addresses`), when given. */
  addresses?: string[];
  methods: readonly HttpMethod[];
  /** Lower-case header name → value. */
  headers: ReadonlyMap<string, { name: string; value: HttpHeaderValue }>;
  maxResponseBytes: number;
  timeoutMs: number;
}

/** Where an entry is, for messages. */
export function entryLabel(t: Pick<HttpTarget, 'index'>): string {
  return `http.allow.${t.index}`;
}

interface EntryIssue {
  path: (string | number)[];
  message: string;
}

/** Splits `scheme://authority/path?query#fragment` without normalising anything. */
function splitUrl(raw: string): { scheme: string; authority: string; path: string; rest: string } | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(.*)$/.exec(raw);
  return m ? { scheme: m[1]!.toLowerCase(), authority: m[2]!, path: m[3]!, rest: m[4]! } : undefined;
}

/** True when the authority spells a port (`host:8080`, `[::1]:8080`). */
function writesPort(authority: string): boolean {
  return /:\d+$/.test(authority.startsWith('[') ? authority.slice(authority.indexOf(']') + 1) : authority);
}

/** Validates and canonicalises one entry; `issues` name the field (never a secret: there is none inline). */
function compileEntry(entry: HttpAllowEntry, index: number): { target?: HttpTarget; issues: EntryIssue[] } {
  const issues: EntryIssue[] = [];
  const field = entry.origin !== undefined ? 'origin' : 'prefix';
  const raw = entry.origin ?? entry.prefix;
  if ((entry.origin === undefined) === (entry.prefix === undefined)) {
    issues.push({ path: [], message: 'exactly one of origin or prefix is required' });
    return { issues };
  }
  const parts = splitUrl(raw!);
  let url: URL | undefined;
  try {
    url = new URL(raw!);
  } catch {
    url = undefined;
  }
  if (!parts || !url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    issues.push({ path: [field], message: 'must be an absolute http:// or https:// URL' });
    return { issues };
  }
  if (parts.authority.includes('@'))
    issues.push({
      path: [field],
      message: 'must not carry credentials (user:password@): use headers with a secretRef',
    });
  if (parts.authority.includes('*'))
    issues.push({ path: [field], message: 'wildcards are not supported: name each host exactly' });
  if (parts.rest !== '') issues.push({ path: [field], message: 'must not have a query or fragment' });
  let pathPrefix = '/';
  if (field === 'origin') {
    if (parts.path !== '' && parts.path !== '/')
      issues.push({
        path: [field],
        message: 'must be an origin, scheme://host[:port], without a path (use prefix for a path)',
      });
  } else {
    pathPrefix = parts.path;
    if (!pathPrefix.startsWith('/') || pathPrefix === '/')
      issues.push({ path: [field], message: 'must have a path below / (use origin for a whole origin)' });
    else if (url.pathname !== pathPrefix)
      issues.push({
        path: [field],
        message: 'its path must be written in normal form (no dot segments, no characters that need percent-encoding)',
      });
    else if (/%2f|%5c/i.test(pathPrefix))
      issues.push({ path: [field], message: 'its path must not contain an encoded / or \\' });
  }
  const host = canonicalHost(url.hostname);
  if (!host) {
    issues.push({ path: [field], message: 'its host is not a valid host name or IP address' });
    return { issues };
  }
  const explicitPort = writesPort(parts.authority);
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  if (host.kind !== 'name') {
    const cls = classifyAddress(host.host)!.class;
    if (cls !== 'public' && !explicitPort)
      issues.push({
        path: [field],
        message: `${host.host} is a ${cls} address: write its port explicitly (scheme://address:port)`,
      });
    if (entry.addresses) issues.push({ path: ['addresses'], message: 'only for an entry that names its host by name' });
  }
  let addresses: string[] | undefined;
  if (entry.addresses) {
    addresses = [];
    entry.addresses.forEach((a, i) => {
      const c = classifyAddress(a);
      if (!c) issues.push({ path: ['addresses', i], message: 'must be an IP address' });
      else {
        if (c.class !== 'public' && !explicitPort)
          issues.push({
            path: ['addresses', i],
            message: `is a ${c.class} address: the ${field} must write its port explicitly`,
          });
        addresses!.push(c.address);
      }
    });
  }
  const headers = new Map<string, { name: string; value: HttpHeaderValue }>();
  for (const [name, value] of Object.entries(entry.headers)) {
    const lower = name.toLowerCase();
    if (!HEADER_NAME.test(name)) issues.push({ path: ['headers', name], message: 'is not a valid HTTP header name' });
    else if (headers.has(lower))
      issues.push({
        path: ['headers', name],
        message: `repeats header ${headers.get(lower)!.name} (names are case-insensitive)`,
      });
    else if (TRANSPORT_HEADERS.has(lower) || lower.startsWith('proxy-'))
      issues.push({
        path: ['headers', name],
        message: 'is a hop-by-hop, proxy or transport header the executor sets itself',
      });
    else if (CREDENTIAL_HEADERS.has(lower) && value.secretRef === undefined)
      issues.push({
        path: ['headers', name, 'value'],
        message: 'a credential header must come from a secretRef, never written in the bundle',
      });
    headers.set(lower, { name, value });
  }
  const timeoutMs = DURATION_PATTERN.test(entry.timeout) ? durationMs(entry.timeout) : 0;
  if (timeoutMs < 100 || timeoutMs > 120_000)
    issues.push({ path: ['timeout'], message: 'must be between 100ms and 120s' });
  const scheme = url.protocol;
  const target: HttpTarget = {
    index,
    scheme,
    host,
    port,
    explicitPort,
    origin: `${scheme}//${host.kind === 'ipv6' ? `[${host.host}]` : host.host}:${port}`,
    pathPrefix,
    ...(addresses ? { addresses } : {}),
    methods: entry.methods,
    headers,
    maxResponseBytes: entry.maxResponseBytes,
    timeoutMs,
  };
  return { target: issues.length === 0 ? target : undefined, issues };
}

const compiled = new WeakMap<HttpSection, HttpTarget[]>();

/** The section's entries in canonical form (cached per parsed manifest). Entries that do not validate are left out. */
export function httpTargets(section: HttpSection): HttpTarget[] {
  let targets = compiled.get(section);
  if (!targets) {
    targets = section.allow.flatMap((e, i) => compileEntry(e, i).target ?? []);
    compiled.set(section, targets);
  }
  return targets;
}

/** A call the allow-list accepts: the entry, and the target in canonical form. */
export interface MatchedCall {
  target: HttpTarget;
  /** The request URL (canonical host, no credentials, no fragment). */
  url: URL;
  host: CanonicalHost;
  port: number;
  /** The chain's headers, lower-case names (already checked). */
  chainHeaders: Map<string, string>;
}

/**
 * Matches a call against the allow-list before anything is resolved or sent: the URL's exact
 * origin (scheme, canonical host, port) and path, the method, and the chain's headers. The most
 * specific entry (longest path prefix) decides. Reasons never echo the URL's path or query (they can
 * carry tokens).
 */
export function matchHttpCall(
  section: HttpSection,
  call: { url: string; method: string; headers?: Record<string, string> | undefined },
): { ok: true; call: MatchedCall } | { ok: false; reason: string } {
  let url: URL;
  try {
    url = new URL(call.url);
  } catch {
    return { ok: false, reason: 'the URL is not valid' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { ok: false, reason: 'only http:// and https:// URLs are callable' };
  if (url.username !== '' || url.password !== '')
    return {
      ok: false,
      reason: 'the URL carries credentials (user:password@); credentials come only from the manifest',
    };
  const host = canonicalHost(url.hostname);
  if (!host) return { ok: false, reason: "the URL's host is not a valid host name or address" };
  const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  const origin = `${url.protocol}//${host.kind === 'ipv6' ? `[${host.host}]` : host.host}:${port}`;
  const sameOrigin = httpTargets(section).filter((t) => t.origin === origin);
  const path = url.pathname;
  const candidates = sameOrigin.filter(
    (t) =>
      t.pathPrefix === '/' ||
      path === t.pathPrefix ||
      path.startsWith(t.pathPrefix.endsWith('/') ? t.pathPrefix : `${t.pathPrefix}/`),
  );
  if (candidates.length === 0) {
    return {
      ok: false,
      reason: sameOrigin.length
        ? `the path is outside every http.allow prefix for ${origin}`
        : `${origin} is not in the manifest's http.allow`,
    };
  }
  const target = candidates.reduce((best, t) => (t.pathPrefix.length > best.pathPrefix.length ? t : best));
  if (target.pathPrefix !== '/' && /%2f|%5c/i.test(path))
    return { ok: false, reason: `the path has an encoded / or \\ (it could leave ${entryLabel(target)}'s prefix)` };
  if (!(target.methods as readonly string[]).includes(call.method)) {
    return {
      ok: false,
      reason: `method ${call.method} is not allowed for ${origin} (${entryLabel(target)}.methods: ${target.methods.join(', ')})`,
    };
  }
  const chainHeaders = new Map<string, string>();
  for (const [name, value] of Object.entries(call.headers ?? {})) {
    if (!HEADER_NAME.test(name)) return { ok: false, reason: 'a header name from the chain is not a valid HTTP token' };
    const lower = name.toLowerCase();
    if (chainHeaders.has(lower))
      return { ok: false, reason: `header ${name} appears twice (names are case-insensitive)` };
    const why = refusedChainHeader(lower, new Set(target.headers.keys()));
    if (why) return { ok: false, reason: `header ${name} from the chain is refused: ${why}` };
    if (!HEADER_VALUE.test(value)) return { ok: false, reason: `header ${name} from the chain contains CR, LF or NUL` };
    chainHeaders.set(lower, value);
  }
  url.hash = '';
  return { ok: true, call: { target, url, host, port, chainHeaders } };
}
