import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpGuard, type HttpResolver } from '../../activities/http-guard';
import { checkBundle, formatIssue } from '../../policies/bundle';
import { HttpSection, matchHttpCall } from '../../policies/http-allow';
import { canonicalHost, classifyAddress } from '../../policies/ip-ranges';

/**
 * The http executor's allow-list, without the network: host canonicalisation, the address
 * classifier over every spelling the URL parser accepts, the manifest schema's errors (naming the
 * field), and matching a call (origin, prefix, method, headers) before anything is resolved.
 */

describe('classifyAddress: every spelling of an address gets one class', () => {
  it.each([
    // loopback, in every numeric spelling of 127.0.0.1 and of ::1
    ['127.0.0.1', '127.0.0.1', 'loopback'],
    ['2130706433', '127.0.0.1', 'loopback'],
    ['0x7f000001', '127.0.0.1', 'loopback'],
    ['0X7F000001', '127.0.0.1', 'loopback'],
    ['0177.0.0.1', '127.0.0.1', 'loopback'],
    ['0177.0.0.01', '127.0.0.1', 'loopback'],
    ['127.1', '127.0.0.1', 'loopback'],
    ['127.0.1', '127.0.0.1', 'loopback'],
    ['0x7f.1', '127.0.0.1', 'loopback'],
    ['127.0.0.1.', '127.0.0.1', 'loopback'],
    ['127.255.255.254', '127.255.255.254', 'loopback'],
    ['::1', '::1', 'loopback'],
    ['[::1]', '::1', 'loopback'],
    ['0:0:0:0:0:0:0:1', '::1', 'loopback'],
    ['[0000:0000:0000:0000:0000:0000:0000:0001]', '::1', 'loopback'],
    ['::ffff:127.0.0.1', '::ffff:7f00:1', 'loopback'],
    ['[::ffff:127.0.0.1]', '::ffff:7f00:1', 'loopback'],
    ['[::ffff:7f00:1]', '::ffff:7f00:1', 'loopback'],
    ['[0:0:0:0:0:ffff:127.0.0.1]', '::ffff:7f00:1', 'loopback'],
    ['[64:ff9b::127.0.0.1]', '64:ff9b::7f00:1', 'loopback'],
    ['[2002:7f00:1::]', '2002:7f00:1::', 'loopback'],
    // unspecified
    ['0.0.0.0', '0.0.0.0', 'unspecified'],
    ['0', '0.0.0.0', 'unspecified'],
    ['0x0', '0.0.0.0', 'unspecified'],
    ['::', '::', 'unspecified'],
    ['[::ffff:0.0.0.0]', '::ffff:0:0', 'unspecified'],
    // private, CGNAT, link-local (cloud metadata), ULA, site-local
    ['10.1.2.3', '10.1.2.3', 'private'],
    ['167772161', '10.0.0.1', 'private'],
    ['012.0.0.1', '10.0.0.1', 'private'],
    ['172.16.0.1', '172.16.0.1', 'private'],
    ['172.31.255.255', '172.31.255.255', 'private'],
    ['192.168.0.1', '192.168.0.1', 'private'],
    ['0xc0a80001', '192.168.0.1', 'private'],
    ['[::ffff:192.168.0.1]', '::ffff:c0a8:1', 'private'],
    ['100.64.0.1', '100.64.0.1', 'shared (CGNAT)'],
    ['100.127.255.255', '100.127.255.255', 'shared (CGNAT)'],
    ['169.254.169.254', '169.254.169.254', 'link-local'],
    ['2852039166', '169.254.169.254', 'link-local'],
    ['[::ffff:169.254.169.254]', '::ffff:a9fe:a9fe', 'link-local'],
    ['fe80::1', 'fe80::1', 'link-local'],
    ['fd00::1', 'fd00::1', 'unique-local'],
    ['[FC00::1]', 'fc00::1', 'unique-local'],
    ['fec0::1', 'fec0::1', 'site-local'],
    // multicast, broadcast, reserved, documentation, benchmarking
    ['224.0.0.1', '224.0.0.1', 'multicast'],
    ['239.255.255.250', '239.255.255.250', 'multicast'],
    ['ff02::1', 'ff02::1', 'multicast'],
    ['255.255.255.255', '255.255.255.255', 'broadcast'],
    ['4294967295', '255.255.255.255', 'broadcast'],
    ['240.0.0.1', '240.0.0.1', 'reserved'],
    ['192.0.0.8', '192.0.0.8', 'reserved'],
    ['[::127.0.0.1]', '::7f00:1', 'reserved'],
    ['100::1', '100::1', 'reserved'],
    ['2001::1', '2001::1', 'reserved'],
    ['4000::1', '4000::1', 'reserved'],
    ['192.0.2.1', '192.0.2.1', 'documentation'],
    ['198.51.100.7', '198.51.100.7', 'documentation'],
    ['203.0.113.9', '203.0.113.9', 'documentation'],
    ['2001:db8::1', '2001:db8::1', 'documentation'],
    ['198.18.0.1', '198.18.0.1', 'benchmarking'],
    // public
    ['8.8.8.8', '8.8.8.8', 'public'],
    ['134744072', '8.8.8.8', 'public'],
    ['100.63.255.255', '100.63.255.255', 'public'],
    ['100.128.0.0', '100.128.0.0', 'public'],
    ['172.15.255.255', '172.15.255.255', 'public'],
    ['172.32.0.0', '172.32.0.0', 'public'],
    ['[::ffff:8.8.8.8]', '::ffff:808:808', 'public'],
    ['2606:4700::1111', '2606:4700::1111', 'public'],
    ['[2002:808:808::1]', '2002:808:808::1', 'public'],
  ])('%s is %s (%s)', (spelling, canonical, cls) => {
    expect(classifyAddress(spelling)).toMatchObject({ address: canonical, class: cls });
  });

  it.each([
    'localhost',
    'LOCALHOST.',
    'example.com',
    '',
    '1.2.3.4.5',
    '256.0.0.1',
    '[fe80::1%25eth0]',
    'a b',
    'user@127.0.0.1',
    '127.0.0.1:80',
    '::1::2',
    '1:2:3:4:5:6:7:8:9',
  ])('%j is not an address', (spelling) => expect(classifyAddress(spelling)).toBeUndefined());
});

describe('canonicalHost', () => {
  it.each([
    ['LOCALHOST', 'localhost'],
    ['localhost.', 'localhost'],
    ['LocalHost.', 'localhost'],
    ['%6c%6fcalhost', 'localhost'],
    ['ｌｏｃａｌｈｏｓｔ', 'localhost'],
    ['Hooks.Example.COM.', 'hooks.example.com'],
    ['bücher.example', 'xn--bcher-kva.example'],
    ['BÜCHER.example.', 'xn--bcher-kva.example'],
  ])('%s → %s', (spelling, host) => expect(canonicalHost(spelling)).toEqual({ kind: 'name', host }));

  it.each(['localhost..', 'a/b', 'a?b', 'a#b', 'a\\b'])('%j is refused', (spelling) =>
    expect(canonicalHost(spelling)).toBeUndefined(),
  );
});

const section = (allow: unknown[]): HttpSection => HttpSection.parse({ allow });
const issuesOf = (allow: unknown[]): string[] => {
  const r = HttpSection.safeParse({ allow });
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('the manifest http section: strict, and errors name the field', () => {
  it('accepts origins, prefixes, pinned addresses and secret headers, with defaults', () => {
    const s = section([
      { origin: 'https://hooks.example.com' },
      {
        prefix: 'https://api.example.com/v1/notify/',
        methods: ['POST', 'PUT'],
        headers: { Authorization: { secretRef: { env: 'API_TOKEN' } }, 'X-Source': { value: 'governor' } },
      },
      { origin: 'http://127.0.0.1:8080', maxResponseBytes: 1024, timeout: '2s' },
      { origin: 'https://internal.example:8443', addresses: ['10.0.0.5'] },
    ]);
    expect(s.allow[0]).toEqual({
      origin: 'https://hooks.example.com',
      methods: ['POST'],
      headers: {},
      maxResponseBytes: 1024 * 1024,
      timeout: '10s',
    });
  });

  it.each<[string, unknown, string]>([
    ['a bare host name', { origin: 'hooks.example.com' }, '0.origin: must be an absolute http:// or https:// URL'],
    ['another scheme', { origin: 'ftp://hooks.example.com' }, '0.origin: must be an absolute http:// or https:// URL'],
    [
      'a path on an origin',
      { origin: 'https://hooks.example.com/x' },
      '0.origin: must be an origin, scheme://host[:port], without a path (use prefix for a path)',
    ],
    ['a query', { origin: 'https://hooks.example.com?x=1' }, '0.origin: must not have a query or fragment'],
    [
      'credentials',
      { origin: 'https://u:p@hooks.example.com' },
      '0.origin: must not carry credentials (user:password@): use headers with a secretRef',
    ],
    [
      'a wildcard',
      { origin: 'https://*.example.com' },
      '0.origin: wildcards are not supported: name each host exactly',
    ],
    [
      'loopback without a port',
      { origin: 'http://127.0.0.1' },
      '0.origin: 127.0.0.1 is a loopback address: write its port explicitly (scheme://address:port)',
    ],
    [
      'loopback in hex without a port',
      { origin: 'http://0x7f000001' },
      '0.origin: 127.0.0.1 is a loopback address: write its port explicitly (scheme://address:port)',
    ],
    [
      'a default port only implied',
      { origin: 'http://[::1]' },
      '0.origin: ::1 is a loopback address: write its port explicitly (scheme://address:port)',
    ],
    [
      'a private pinned address without a port',
      { origin: 'https://internal.example', addresses: ['10.0.0.5'] },
      '0.addresses.0: is a private address: the origin must write its port explicitly',
    ],
    [
      'a pinned address that is not one',
      { origin: 'https://internal.example:8443', addresses: ['internal'] },
      '0.addresses.0: must be an IP address',
    ],
    [
      'a prefix with dot segments',
      { prefix: 'https://api.example.com/v1/../admin/' },
      '0.prefix: its path must be written in normal form (no dot segments, no characters that need percent-encoding)',
    ],
    [
      'a prefix of /',
      { prefix: 'https://api.example.com/' },
      '0.prefix: must have a path below / (use origin for a whole origin)',
    ],
    [
      'both origin and prefix',
      { origin: 'https://a.example', prefix: 'https://a.example/x/' },
      '0: exactly one of origin or prefix is required',
    ],
    ['neither', { methods: ['POST'] }, '0: exactly one of origin or prefix is required'],
    [
      'an unknown method',
      { origin: 'https://a.example', methods: ['TRACE'] },
      '0.methods.0: Invalid option: expected one of "GET"|"POST"|"PUT"|"PATCH"|"DELETE"',
    ],
    [
      'a literal Authorization',
      { origin: 'https://a.example', headers: { Authorization: { value: 'Bearer x' } } },
      '0.headers.Authorization.value: a credential header must come from a secretRef, never written in the bundle',
    ],
    [
      'a Host header',
      { origin: 'https://a.example', headers: { Host: { value: 'b.example' } } },
      '0.headers.Host: is a hop-by-hop, proxy or transport header the executor sets itself',
    ],
    [
      'a Proxy-Authorization header',
      { origin: 'https://a.example', headers: { 'Proxy-Authorization': { secretRef: { env: 'X' } } } },
      '0.headers.Proxy-Authorization: is a hop-by-hop, proxy or transport header the executor sets itself',
    ],
    [
      'a secretRef with both sources',
      { origin: 'https://a.example', headers: { 'X-Key': { secretRef: { env: 'X', file: 'x' } } } },
      '0.headers.X-Key.secretRef: exactly one of env or file is required',
    ],
    ['a too long timeout', { origin: 'https://a.example', timeout: '5m' }, '0.timeout: must be between 100ms and 120s'],
    ['an unknown key', { origin: 'https://a.example', allowPrivate: true }, '0: Unrecognized key: "allowPrivate"'],
  ])('refuses %s', (_, entry, issue) => {
    expect(issuesOf([entry]).map((i) => `${i.replace(/^allow\./, '')}`)).toContain(issue);
  });

  it('refuses the former allowedHosts and two entries naming the same target', () => {
    expect(
      HttpSection.safeParse({ allowedHosts: ['127.0.0.1'] }).error?.issues.map(
        (i) => `${i.path.join('.')}: ${i.message}`,
      ),
    ).toEqual([
      'allowedHosts: no longer supported: list exact origins (scheme://host[:port]) or URL prefixes under http.allow',
    ]);
    expect(issuesOf([{ origin: 'https://A.example:443' }, { origin: 'https://a.example.' }])).toEqual([
      'allow.1: names the same target as http.allow.0',
    ]);
  });

  it('policy check reports a bad http entry as manifest.yaml: http.allow.<i>.<field>: message', () => {
    const dir = mkdtempSync(join(tmpdir(), 'governor-http-bundle-'));
    try {
      cpSync(join(__dirname, '../../policies/default'), dir, { recursive: true });
      const file = join(dir, 'manifest.yaml');
      writeFileSync(
        file,
        readFileSync(file, 'utf8').replace(
          '  allow: []\n',
          '  allow:\n    - origin: http://localhost\n    - origin: http://2130706433\n',
        ),
      );
      const lines = checkBundle(dir)
        .filter((i) => i.severity === 'error')
        .map(formatIssue);
      expect(lines).toEqual([
        'manifest.yaml: http.allow.1.origin: 127.0.0.1 is a loopback address: write its port explicitly (scheme://address:port)',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('matchHttpCall: exact origin, path prefix, method and headers, before any resolution', () => {
  const s = section([
    { origin: 'https://hooks.example.com', methods: ['POST'], headers: { 'X-Api-Key': { secretRef: { env: 'K' } } } },
    { prefix: 'https://api.example.com/v1/notify/', methods: ['POST', 'PUT'] },
    { prefix: 'https://api.example.com/v1/notify/urgent', methods: ['PUT'] },
    { origin: 'http://127.0.0.1:8080' },
  ]);
  const match = (url: string, method = 'POST', headers?: Record<string, string>) =>
    matchHttpCall(s, { url, method, headers });
  const reason = (r: ReturnType<typeof match>): string => (r.ok ? 'ok' : r.reason);

  it('matches the canonical origin whatever the spelling', () => {
    for (const url of [
      'https://hooks.example.com/a',
      'HTTPS://HOOKS.EXAMPLE.COM./a?b=1',
      'https://hooks.example.com:443/x#frag',
    ]) {
      const r = match(url);
      expect(r.ok && r.call.target.index).toBe(0);
    }
    const r = match('http://0x7f000001:8080/x');
    expect(r.ok && r.call.target.index).toBe(3);
  });

  it.each([
    ['http://hooks.example.com/a', "http://hooks.example.com:80 is not in the manifest's http.allow"],
    ['https://hooks.example.com:8443/a', "https://hooks.example.com:8443 is not in the manifest's http.allow"],
    ['https://evil.hooks.example.com/a', "https://evil.hooks.example.com:443 is not in the manifest's http.allow"],
    [
      'https://hooks.example.com.evil.com/a',
      "https://hooks.example.com.evil.com:443 is not in the manifest's http.allow",
    ],
    ['http://127.0.0.1:8081/x', "http://127.0.0.1:8081 is not in the manifest's http.allow"],
    ['http://localhost:8080/x', "http://localhost:8080 is not in the manifest's http.allow"],
    ['http://[::1]:8080/x', "http://[::1]:8080 is not in the manifest's http.allow"],
    ['http://[::ffff:127.0.0.1]:8080/x', "http://[::ffff:7f00:1]:8080 is not in the manifest's http.allow"],
    [
      'https://api.example.com/v1/notifyx',
      'the path is outside every http.allow prefix for https://api.example.com:443',
    ],
    [
      'https://api.example.com/v1/notify/../admin',
      'the path is outside every http.allow prefix for https://api.example.com:443',
    ],
    [
      'https://api.example.com/v1/notify/%2e%2e/admin',
      'the path is outside every http.allow prefix for https://api.example.com:443',
    ],
    [
      'https://api.example.com/v1/notify/a%2F..%2F..%2Fadmin',
      "the path has an encoded / or \\ (it could leave http.allow.1's prefix)",
    ],
    [
      'https://u:secret@hooks.example.com/a',
      'the URL carries credentials (user:password@); credentials come only from the manifest',
    ],
  ])('refuses %s', (url, why) => {
    expect(reason(match(url))).toBe(why);
    expect(reason(match(url))).not.toContain('secret');
  });

  it('uses the most specific prefix, and its methods', () => {
    expect(match('https://api.example.com/v1/notify/a').ok).toBe(true);
    expect(reason(match('https://api.example.com/v1/notify/urgent/page'))).toBe(
      'method POST is not allowed for https://api.example.com:443 (http.allow.2.methods: PUT)',
    );
    expect(match('https://api.example.com/v1/notify/urgent/page', 'PUT').ok).toBe(true);
    expect(reason(match('https://hooks.example.com/a', 'GET'))).toBe(
      'method GET is not allowed for https://hooks.example.com:443 (http.allow.0.methods: POST)',
    );
  });

  it.each([
    ['Cookie', 'credentials for a target come only from the manifest'],
    ['cookie', 'credentials for a target come only from the manifest'],
    ['Authorization', 'credentials for a target come only from the manifest'],
    ['Proxy-Authorization', 'credentials for a target come only from the manifest'],
    ['Proxy-Connection', 'credentials for a target come only from the manifest'],
    ['Host', 'it is a hop-by-hop or transport header'],
    ['Connection', 'it is a hop-by-hop or transport header'],
    ['Keep-Alive', 'it is a hop-by-hop or transport header'],
    ['TE', 'it is a hop-by-hop or transport header'],
    ['Trailer', 'it is a hop-by-hop or transport header'],
    ['Transfer-Encoding', 'it is a hop-by-hop or transport header'],
    ['Upgrade', 'it is a hop-by-hop or transport header'],
    ['Content-Length', 'it is a hop-by-hop or transport header'],
    ['Idempotency-Key', 'it is a hop-by-hop or transport header'],
    ['x-api-key', "the manifest's http.allow entry sets it"],
  ])('refuses the chain header %s', (name, why) => {
    const r = match('https://hooks.example.com/a', 'POST', { [name]: 'value-from-chain' });
    expect(reason(r)).toContain(`header ${name} from the chain is refused: ${why}`);
    expect(reason(r)).not.toContain('value-from-chain');
  });

  it('refuses header tricks and accepts ordinary headers', () => {
    expect(reason(match('https://hooks.example.com/a', 'POST', { 'X-A': '1', 'x-a': '2' }))).toBe(
      'header x-a appears twice (names are case-insensitive)',
    );
    expect(reason(match('https://hooks.example.com/a', 'POST', { 'X-A': 'a\r\nCookie: b' }))).toBe(
      'header X-A from the chain contains CR, LF or NUL',
    );
    expect(reason(match('https://hooks.example.com/a', 'POST', { 'X A': '1' }))).toBe(
      'a header name from the chain is not a valid HTTP token',
    );
    const ok = match('https://hooks.example.com/a', 'POST', { 'X-Trace': 'abc', 'Content-Type': 'application/json' });
    expect(ok.ok && [...ok.call.chainHeaders]).toEqual([
      ['x-trace', 'abc'],
      ['content-type', 'application/json'],
    ]);
  });

  it('an empty allow-list refuses everything', () => {
    expect(reason(matchHttpCall(section([]), { url: 'https://hooks.example.com/', method: 'POST' }))).toBe(
      "https://hooks.example.com:443 is not in the manifest's http.allow",
    );
  });
});

describe('HttpGuard: addresses, Temporal endpoints and secrets (injected resolver, no network)', () => {
  const dns: Record<string, string[]> = {
    'mixed.example': ['93.184.215.14', '10.0.0.7'],
    'mapped.example': ['::ffff:10.0.0.1'],
    'public.example': ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c'],
    'temporal.internal': ['10.0.0.9'],
    localhost: ['127.0.0.1', '::1'],
  };
  const resolve: HttpResolver = (host) =>
    dns[host] ? Promise.resolve(dns[host]) : Promise.reject(new Error(`ENOTFOUND ${host}`));
  const s = section([
    { origin: 'https://mixed.example' },
    { origin: 'https://mapped.example' },
    { origin: 'https://public.example', headers: { Authorization: { secretRef: { env: 'TOKEN' } } } },
    { origin: 'http://10.0.0.9:7233' },
    { origin: 'https://gone.example' },
    { origin: 'https://public.example:8443', headers: { 'X-Key': { secretRef: { file: 'no/such/file' } } } },
  ]);
  const check = (guard: HttpGuard, url: string) =>
    guard.check(s, { type: 'http', method: 'POST', url, timeoutMs: 1000 });
  const reason = async (p: ReturnType<typeof check>): Promise<string> => {
    const r = await p;
    return r.ok ? 'ok' : r.reason;
  };

  it('checks every address a name resolves to, IPv4-mapped ones by their embedded address', async () => {
    const guard = new HttpGuard('/nonexistent', { resolve, env: { TOKEN: 't' } });
    expect(await reason(check(guard, 'https://mixed.example/x'))).toBe(
      'mixed.example resolves to 10.0.0.7 (private): only an http.allow entry that names that exact address and its port may reach it',
    );
    expect(await reason(check(guard, 'https://mapped.example/x'))).toBe(
      'mapped.example resolves to ::ffff:a00:1 (private): only an http.allow entry that names that exact address and its port may reach it',
    );
    expect(await reason(check(guard, 'https://gone.example/x'))).toBe('gone.example could not be resolved');
    const ok = await check(guard, 'https://public.example/x');
    expect(ok.ok && ok.checked.addresses).toEqual([
      { address: '93.184.215.14', family: 4 },
      { address: '2606:2800:21f:cb07:6820:80da:af6b:8b2c', family: 6 },
    ]);
  });

  it('never calls a Temporal endpoint it knows, by name or by address, and fails closed when it cannot tell', async () => {
    const guard = new HttpGuard('/nonexistent', { resolve, protectedAddresses: ['temporal.internal:7233'] });
    expect(await reason(check(guard, 'http://10.0.0.9:7233/api'))).toBe(
      '10.0.0.9:7233 is a Temporal endpoint of this worker (temporal.internal:7233): never callable',
    );
    const blind = new HttpGuard('/nonexistent', { resolve, protectedAddresses: ['unknown.internal:7233'] });
    expect(await reason(check(blind, 'http://10.0.0.9:7233/api'))).toBe(
      '10.0.0.9:7233 is a Temporal endpoint of this worker (unknown.internal:7233, which could not be resolved to rule it out): never callable',
    );
    expect(() => new HttpGuard('/nonexistent', { protectedAddresses: ['not a host'] })).toThrow(
      'an entry is not host:port',
    );
  });

  it('reads secrets by reference and names the reference, never the value, when one is unusable', async () => {
    const missing = new HttpGuard('/nonexistent', { resolve, env: {} });
    expect(await reason(check(missing, 'https://public.example/x'))).toBe(
      'the secret for http.allow.2.headers.Authorization.secretRef is not available (environment variable TOKEN is unset or empty)',
    );
    const injected = new HttpGuard('/nonexistent', { resolve, env: { TOKEN: 'Bearer abc\r\nX-Evil: 1' } });
    const why = await reason(check(injected, 'https://public.example/x'));
    expect(why).toBe(
      'the secret for http.allow.2.headers.Authorization.secretRef is empty, too long or contains CR, LF or NUL',
    );
    expect(await reason(check(missing, 'https://public.example:8443/x'))).toBe(
      'the secret for http.allow.5.headers.X-Key.secretRef is not available (file no/such/file cannot be read)',
    );
    const good = await check(
      new HttpGuard('/nonexistent', { resolve, env: { TOKEN: 'Bearer abc' } }),
      'https://public.example/x',
    );
    expect(good.ok && [...good.checked.entryHeaders]).toEqual([['authorization', 'Bearer abc']]);
  });
});
