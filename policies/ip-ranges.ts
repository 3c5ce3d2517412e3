/**
 * Host canonicalisation and IP address classification for the http executor's allow-list. Pure: no
 * DNS, no I/O. Every spelling the WHATWG URL parser accepts for an address (`2130706433`,
 * `0x7f000001`, `0177.0.0.1`, `127.1`, `[::ffff:127.0.0.1]`, `LOCALHOST.`, IDNA) maps to one
 * canonical form first, and only canonical forms are classified or compared.
 */

/** What an address is: `public` is the only class the executor may reach without an entry naming the exact address. */
export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'shared (CGNAT)'
  | 'link-local'
  | 'unique-local'
  | 'site-local'
  | 'multicast'
  | 'unspecified'
  | 'broadcast'
  | 'documentation'
  | 'benchmarking'
  | 'reserved';

/** A canonical host: a lower-case ASCII (IDNA) name without trailing dot, or an IP address. */
export type CanonicalHost =
  | { kind: 'name'; host: string }
  | { kind: 'ipv4'; host: string; bytes: number[] }
  | { kind: 'ipv6'; host: string; bytes: number[] };

/**
 * Canonicalises a host as the WHATWG URL parser does (case, IDNA via `domainToASCII`, every numeric
 * IPv4 spelling, IPv6 compression) and drops one trailing dot from names. `host` is the bare form:
 * IPv6 without brackets. Undefined when it is not a valid host.
 */
export function canonicalHost(raw: string): CanonicalHost | undefined {
  if (raw.length === 0 || raw.length > 253 + 2 || /[\s/?#@\\]/.test(raw)) return undefined;
  // A bare IPv6 address (as DNS answers) gets its brackets; a bracketed one keeps them.
  const spelled = raw.includes(':') && !raw.startsWith('[') ? `[${raw}]` : raw;
  let hostname: string;
  try {
    const url = new URL(`http://${spelled}/`);
    if (url.port !== '' || url.username !== '' || url.password !== '') return undefined;
    hostname = url.hostname;
  } catch {
    return undefined;
  }
  if (hostname.startsWith('[')) {
    const host = hostname.slice(1, -1);
    const bytes = parseIpv6(host);
    return bytes ? { kind: 'ipv6', host, bytes } : undefined;
  }
  const v4 = parseIpv4(hostname);
  if (v4) return { kind: 'ipv4', host: hostname, bytes: v4 };
  const host = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (host === '' || host.endsWith('.') || host.length > 253) return undefined;
  // A name that ends in a numeric label would be parsed as IPv4 by some resolvers: refused as ambiguous.
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(host.slice(host.lastIndexOf('.') + 1))) return undefined;
  return { kind: 'name', host };
}

/** Dotted-quad IPv4 (the canonical form the URL parser produces) to its 4 bytes. */
function parseIpv4(s: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const bytes = m.slice(1).map(Number);
  return bytes.every((b) => b <= 255) ? bytes : undefined;
}

/** IPv6 text (no brackets, no zone) to its 16 bytes; accepts `::` and an embedded dotted quad. */
function parseIpv6(s: string): number[] | undefined {
  if (s.includes('%')) return undefined;
  let text = s;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    const v4 = parseIpv4(text.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    text = text.slice(0, lastColon + 1) + '0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !rest) return undefined;
  let words: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length - (tail.length ? 1 : 0);
    if (fill < 1) return undefined; // `::` stands for at least one group
    words = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    words = head;
  }
  if (tail.length) words = [...words.slice(0, -1), ...tail];
  if (words.length !== 8) return undefined;
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/** True when the first `bits` bits of `bytes` equal those of `prefix`. */
function inPrefix(bytes: readonly number[], prefix: readonly number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if (((bytes[byte] ?? 0) & mask) !== ((prefix[byte] ?? 0) & mask)) return false;
  }
  return true;
}

const V4_RANGES: readonly [number[], number, AddressClass][] = [
  [[0, 0, 0, 0], 8, 'unspecified'], // "this network"; 0.0.0.0 reaches the local host
  [[10, 0, 0, 0], 8, 'private'],
  [[100, 64, 0, 0], 10, 'shared (CGNAT)'],
  [[127, 0, 0, 0], 8, 'loopback'],
  [[169, 254, 0, 0], 16, 'link-local'], // includes cloud metadata endpoints (169.254.169.254)
  [[172, 16, 0, 0], 12, 'private'],
  [[192, 0, 0, 0], 24, 'reserved'], // IETF protocol assignments
  [[192, 0, 2, 0], 24, 'documentation'],
  [[192, 88, 99, 0], 24, 'reserved'], // 6to4 relay anycast (deprecated)
  [[192, 168, 0, 0], 16, 'private'],
  [[198, 18, 0, 0], 15, 'benchmarking'],
  [[198, 51, 100, 0], 24, 'documentation'],
  [[203, 0, 113, 0], 24, 'documentation'],
  [[224, 0, 0, 0], 4, 'multicast'],
  [[255, 255, 255, 255], 32, 'broadcast'],
  [[240, 0, 0, 0], 4, 'reserved'],
];

function classifyV4(bytes: readonly number[]): AddressClass {
  for (const [prefix, bits, cls] of V4_RANGES) if (inPrefix(bytes, prefix, bits)) return cls;
  return 'public';
}

const V6_RANGES: readonly [number[], number, AddressClass][] = [
  [[0x01, 0x00], 64, 'reserved'], // discard-only 100::/64
  [[0x00, 0x64, 0xff, 0x9b, 0x00, 0x01], 48, 'private'], // local-use NAT64 64:ff9b:1::/48
  [[0x20, 0x01, 0x0d, 0xb8], 32, 'documentation'],
  [[0x20, 0x01, 0x00, 0x00], 23, 'reserved'], // IETF protocol assignments, Teredo included
  [[0x3f, 0xff], 20, 'documentation'],
  [[0xfc], 7, 'unique-local'],
  [[0xfe, 0x80], 10, 'link-local'],
  [[0xfe, 0xc0], 10, 'site-local'],
  [[0xff], 8, 'multicast'],
];

function classifyV6(bytes: readonly number[]): AddressClass {
  const zeros = (n: number): boolean => bytes.slice(0, n).every((b) => b === 0);
  if (zeros(16)) return 'unspecified';
  if (zeros(15) && bytes[15] === 1) return 'loopback';
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the embedded IPv4 address.
  if (zeros(10) && bytes[10] === 0xff && bytes[11] === 0xff) return classifyV4(bytes.slice(12));
  if (inPrefix(bytes, [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0], 96)) return classifyV4(bytes.slice(12));
  // IPv4-compatible (::a.b.c.d, deprecated) and anything else in ::/8.
  if (bytes[0] === 0) return 'reserved';
  // 6to4 (2002:a.b.c.d::/48) reaches the embedded IPv4 address.
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return classifyV4(bytes.slice(2, 6));
  for (const [prefix, bits, cls] of V6_RANGES) if (inPrefix(bytes, prefix, bits)) return cls;
  // Only 2000::/3 is global unicast; the rest is unallocated.
  return inPrefix(bytes, [0x20], 3) ? 'public' : 'reserved';
}

/**
 * Classifies an IP address in any spelling the URL parser accepts (`127.1`, `2130706433`,
 * `::ffff:127.0.0.1`, `[::1]`). Undefined when `raw` is not an IP address (a name, or invalid).
 */
export function classifyAddress(raw: string): { address: string; version: 4 | 6; class: AddressClass } | undefined {
  const host = canonicalHost(raw);
  if (!host || host.kind === 'name') return undefined;
  return host.kind === 'ipv4'
    ? { address: host.host, version: 4, class: classifyV4(host.bytes) }
    : { address: host.host, version: 6, class: classifyV6(host.bytes) };
}

/** `host:port` with IPv6 brackets, for messages and comparisons. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
