import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { isGovernorError } from '../../contracts/errors';
import {
  AesGcmPayloadCodec,
  decodeJsonPayloads,
  ENCRYPTED_ENCODING,
  KEY_ID_METADATA,
  loadKeyRing,
  parseKeyRing,
  payloadFromJson,
  payloadToJson,
  writeKeyFile,
  type KeyRing,
} from '../../runtime/codec';
import { startCodecServer, writeTokenFile, type CodecServer } from '../../workers/codec-server';

const k1 = randomBytes(32).toString('base64');
const k2 = randomBytes(32).toString('base64');
const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const text = (b: Uint8Array | null | undefined): string => Buffer.from(b ?? new Uint8Array()).toString('utf8');

function ring(primary: string, keys: Record<string, string>): KeyRing {
  return parseKeyRing({ primary, keys });
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'governor-codec-'));
}

/** The message of what `fn` throws (sync or async). */
async function thrown(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('AES-256-GCM payload codec', () => {
  const codec = new AesGcmPayloadCodec(ring('k1', { k1 }));
  const original = defaultPayloadConverter.toPayload({ secret: CANARY, n: 1 })!;

  it('round-trips payloads: metadata says binary/encrypted and the key id, nothing of the plaintext shows', async () => {
    const [encoded] = await codec.encode([original]);
    expect(text(encoded!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(text(encoded!.metadata![KEY_ID_METADATA])).toBe('k1');
    expect(Object.keys(encoded!.metadata!).sort()).toEqual(['encoding', KEY_ID_METADATA].sort());
    const raw = Buffer.from(encoded!.data!);
    expect(raw.includes(Buffer.from(CANARY))).toBe(false);
    expect(raw.includes(Buffer.from('json/plain'))).toBe(false);
    const [decoded] = await codec.decode([encoded!]);
    expect(text(decoded!.metadata!.encoding)).toBe('json/plain');
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ secret: CANARY, n: 1 });
    // The plaintext is the serialized Payload message.
    expect(temporal.api.common.v1.Payload.encode(decoded!).finish()).toEqual(
      temporal.api.common.v1.Payload.encode(original).finish(),
    );
  });

  it('uses a fresh random IV per payload (same plaintext, different ciphertexts)', async () => {
    const [a, b] = await codec.encode([original, original]);
    expect(Buffer.from(a!.data!).subarray(0, 12).equals(Buffer.from(b!.data!).subarray(0, 12))).toBe(false);
    expect(Buffer.from(a!.data!).equals(Buffer.from(b!.data!))).toBe(false);
  });

  it('round-trips empty and binary payloads', async () => {
    const empty: Payload = { metadata: { encoding: Buffer.from('binary/null') } };
    const bin: Payload = { metadata: { encoding: Buffer.from('binary/plain') }, data: randomBytes(1000) };
    const decoded = await codec.decode(await codec.encode([empty, bin]));
    expect(text(decoded[0]!.metadata!.encoding)).toBe('binary/null');
    expect(decoded[0]!.data?.length ?? 0).toBe(0);
    expect(Buffer.from(decoded[1]!.data!).equals(Buffer.from(bin.data!))).toBe(true);
  });

  it('passes payloads that are not encrypted through decode unchanged', async () => {
    const [out] = await codec.decode([original]);
    expect(out).toBe(original);
  });

  it('rotation: a payload encrypted with k1 still decodes after k2 becomes the primary; new payloads use k2', async () => {
    const [old] = await new AesGcmPayloadCodec(ring('k1', { k1 })).encode([original]);
    const rotated = new AesGcmPayloadCodec(ring('k2', { k1, k2 }));
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([old!]))[0]!)).toEqual({ secret: CANARY, n: 1 });
    const [fresh] = await rotated.encode([original]);
    expect(text(fresh!.metadata![KEY_ID_METADATA])).toBe('k2');
    // A key ring that dropped k1 cannot read the old payload.
    const err = await thrown(() => new AesGcmPayloadCodec(ring('k2', { k2 })).decode([old!]));
    expect(err.message).toContain('unknown encryption-key-id "k1"');
  });

  it('refuses an unknown key id, naming it and never the keys', async () => {
    const [encoded] = await codec.encode([original]);
    const forged = { ...encoded!, metadata: { ...encoded!.metadata, [KEY_ID_METADATA]: Buffer.from('k9') } };
    const err = await thrown(() => codec.decode([forged]));
    expect(err.name).toBe('PayloadCodecError');
    expect(err.message).toMatch(/unknown encryption-key-id "k9" \(the key ring has k1\)/);
    expect(err.message).not.toContain(k1);
    const missing = { ...encoded!, metadata: { encoding: encoded!.metadata!.encoding! } };
    expect((await thrown(() => codec.decode([missing]))).message).toContain(`no ${KEY_ID_METADATA}`);
  });

  it.each([
    ['IV', (d: Buffer) => (d[0]! ^= 1)],
    ['ciphertext', (d: Buffer) => (d[20]! ^= 1)],
    ['tag', (d: Buffer) => (d[d.length - 1]! ^= 1)],
  ])('fails closed on a tampered %s', async (_what, flip) => {
    const [encoded] = await codec.encode([original]);
    const data = Buffer.from(encoded!.data!);
    flip(data);
    const err = await thrown(() => codec.decode([{ ...encoded!, data }]));
    expect(err.message).toMatch(/failed authentication/);
    expect(err.message).not.toContain(k1);
  });

  it('fails when a payload is re-labelled with another key of the ring (the key id is authenticated)', async () => {
    const both = new AesGcmPayloadCodec(ring('k1', { k1, k2 }));
    const [encoded] = await both.encode([original]);
    const relabelled = { ...encoded!, metadata: { ...encoded!.metadata, [KEY_ID_METADATA]: Buffer.from('k2') } };
    expect((await thrown(() => both.decode([relabelled]))).message).toMatch(/key "k2"\) failed authentication/);
  });

  it('refuses truncated data', async () => {
    const short = {
      metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from('k1') },
      data: randomBytes(10),
    };
    expect((await thrown(() => codec.decode([short]))).message).toMatch(/too short/);
  });

  it('does not print key material when inspected', () => {
    expect(JSON.stringify(codec)).not.toContain(k1);
    expect(inspect(codec, { depth: 10 })).not.toContain(k1);
  });
});

describe('codec key file', () => {
  it.each([
    [
      'a 16-byte key',
      { primary: 'k1', keys: { k1: randomBytes(16).toString('base64') } },
      'keys.k1',
      /must be 32 bytes \(AES-256\), got 16/,
    ],
    ['primary not in keys', { primary: 'k2', keys: { k1 } }, 'primary', /"k2" is not one of keys \(k1\)/],
    ['a key that is not base64', { primary: 'k1', keys: { k1: 'not base64!' } }, 'keys.k1', /standard base64/],
    ['no keys', { primary: 'k1', keys: {} }, 'keys', /at least one key/],
    ['no primary', { keys: { k1 } }, 'primary', /expected string/],
    ['a key that is not a string', { primary: 'k1', keys: { k1: 42 } }, 'keys.k1', /expected string/],
    ['an unknown field', { primary: 'k1', keys: { k1 }, extra: true }, '(root)', /extra/],
    ['a bad key id', { primary: 'k 1', keys: { 'k 1': k1 } }, 'primary', /letters, digits/],
    ['not an object', [], '(root)', /expected object/],
  ])('names the bad field: %s', (_label, raw, field, message) => {
    const err = (() => {
      try {
        parseKeyRing(raw, 'keys.json');
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected an error');
    })();
    expect(isGovernorError(err) && err.field).toBe(field);
    expect(err.message).toMatch(message);
    expect(err.message).toContain(`codec key file keys.json: ${field}:`);
    expect(err.message).not.toContain(k1);
  });

  it('does not quote the file when it is not JSON, and names a missing file', () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'bad.json'), `{"primary":"k1","keys":{"k1":"${k1}"`);
    const bad = (() => {
      try {
        loadKeyRing(path.join(dir, 'bad.json'));
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected an error');
    })();
    expect(bad.message).toMatch(/not valid JSON$/);
    expect(bad.message).not.toContain(k1);
    expect(() => loadKeyRing(path.join(dir, 'missing.json'))).toThrow(/cannot read \(ENOENT\)/);
  });

  it('keygen writes a 0600 file with one primary key; --rotate adds a new primary and keeps the old key', async () => {
    const file = path.join(tmpDir(), 'keys', 'codec-keys.json');
    const created = writeKeyFile(file);
    expect(created).toMatchObject({ primary: 'k1', keyIds: ['k1'], created: true });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const [old] = await new AesGcmPayloadCodec(loadKeyRing(file)).encode([defaultPayloadConverter.toPayload(CANARY)!]);
    expect(() => writeKeyFile(file)).toThrow(/already exists: use --rotate/);
    const rotated = writeKeyFile(file, { rotate: true });
    expect(rotated).toMatchObject({ primary: 'k2', keyIds: ['k1', 'k2'], created: false });
    const ringAfter = loadKeyRing(file);
    expect(ringAfter.primary).toBe('k2');
    expect(defaultPayloadConverter.fromPayload((await new AesGcmPayloadCodec(ringAfter).decode([old!]))[0]!)).toBe(
      CANARY,
    );
  });
});

describe('history JSON decoding', () => {
  it('decodes every encrypted payload in a proto3-JSON document and leaves the rest alone', async () => {
    const codec = new AesGcmPayloadCodec(ring('k1', { k1 }));
    const [enc] = await codec.encode([defaultPayloadConverter.toPayload({ secret: CANARY })!]);
    const plain = payloadToJson(defaultPayloadConverter.toPayload('visible')!);
    const doc = { events: [{ eventId: '1', attrs: { input: { payloads: [payloadToJson(enc!), plain] } } }] };
    const out = (await decodeJsonPayloads(doc, codec)) as typeof doc;
    const [first, second] = out.events[0]!.attrs.input.payloads;
    expect(defaultPayloadConverter.fromPayload(payloadFromJson(first))).toEqual({ secret: CANARY });
    expect(second).toEqual(plain);
    const other = new AesGcmPayloadCodec(ring('k1', { k1: k2 }));
    await expect(decodeJsonPayloads(doc, other)).rejects.toThrow(
      /events\[0\]\.attrs\.input\.payloads\[0\]: .*failed authentication/,
    );
  });
});

describe('codec server', () => {
  const TOKEN = randomBytes(24).toString('base64url');
  const codec = new AesGcmPayloadCodec(ring('k2', { k1, k2 }));
  const lines: string[] = [];
  const logger = {
    info: (o: unknown, m?: string) => lines.push(JSON.stringify([o, m])),
    warn: (o: unknown, m?: string) => lines.push(JSON.stringify([o, m])),
  };
  let server: CodecServer;

  beforeAll(async () => {
    server = await startCodecServer({
      codec,
      token: TOKEN,
      port: 0,
      corsOrigins: ['http://localhost:8233'],
      logger: logger as never,
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  const post = (op: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${op}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', ...headers },
      body: JSON.stringify(body),
    });
  const auth = { Authorization: `Bearer ${TOKEN}` };

  it('refuses to start without a usable token', async () => {
    await expect(startCodecServer({ codec, token: 'short', port: 0 })).rejects.toThrow(/at least 16 characters/);
  });

  it('answers 401 without credentials and with a wrong token, never echoing what was presented', async () => {
    const [enc] = await codec.encode([defaultPayloadConverter.toPayload(CANARY)!]);
    const body = { payloads: [payloadToJson(enc!)] };
    const none = await post('/decode', body);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    const wrongToken = `wrong-${randomBytes(16).toString('hex')}`;
    for (const header of [
      `Bearer ${wrongToken}`,
      `Basic ${wrongToken}`,
      wrongToken,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
    ]) {
      const res = await post('/decode', body, { Authorization: header });
      expect(res.status).toBe(401);
      const text = await res.text();
      expect(text).not.toContain(wrongToken);
      expect(text).not.toContain(TOKEN.slice(0, 10));
      expect(text).not.toContain(CANARY);
    }
    const logged = lines.join('\n');
    expect(logged).toContain('"status":401');
    expect(logged).not.toContain(wrongToken);
    expect(logged).not.toContain(TOKEN);
  });

  it('decodes with a valid token (proto3 JSON in and out), under any path prefix', async () => {
    const [enc] = await new AesGcmPayloadCodec(ring('k1', { k1 })).encode([
      defaultPayloadConverter.toPayload({ secret: CANARY })!,
    ]);
    for (const op of ['/decode', '/default/decode']) {
      const res = await post(op, { payloads: [payloadToJson(enc!)] }, auth);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      const out = (await res.json()) as { payloads: unknown[] };
      expect(out.payloads).toHaveLength(1);
      const p = payloadFromJson(out.payloads[0]);
      expect(text(p.metadata!.encoding)).toBe('json/plain');
      expect(defaultPayloadConverter.fromPayload(p)).toEqual({ secret: CANARY });
    }
    expect(lines.join('\n')).not.toContain(TOKEN);
  });

  it('encodes and decodes over HTTP (round trip with the primary key)', async () => {
    const plain = [
      payloadToJson(defaultPayloadConverter.toPayload({ secret: CANARY })!),
      payloadToJson(defaultPayloadConverter.toPayload(null)!),
    ];
    const encRes = await post('/encode', { payloads: plain }, auth);
    expect(encRes.status).toBe(200);
    const encoded = (await encRes.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(encoded.payloads).toHaveLength(2);
    expect(Buffer.from(encoded.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(encoded.payloads[0]!.metadata[KEY_ID_METADATA]!, 'base64').toString()).toBe('k2');
    expect(JSON.stringify(encoded)).not.toContain(Buffer.from(CANARY).toString('base64').slice(0, 12));
    const decRes = await post('/decode', encoded, auth);
    expect(decRes.status).toBe(200);
    expect(await decRes.json()).toEqual({ payloads: plain });
  });

  it('answers 400 naming the field for malformed bodies and payloads that do not decode', async () => {
    const bad = await post('/decode', { payloads: [{ metadata: { encoding: 'not base64!' } }] }, auth);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(
      /payloads\[0\]\.metadata\.encoding: not standard base64/,
    );
    const notArray = await post('/decode', { nope: 1 }, auth);
    expect(notArray.status).toBe(400);
    const [enc] = await codec.encode([defaultPayloadConverter.toPayload(CANARY)!]);
    const json = payloadToJson(enc!);
    const tampered = {
      ...json,
      data: Buffer.from(Buffer.from(json.data!, 'base64').map((b, i) => (i === 30 ? b ^ 1 : b))).toString('base64'),
    };
    const res = await post('/decode', { payloads: [tampered] }, auth);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/decode failed: .*failed authentication/);
    expect((await post('/other', {}, auth)).status).toBe(404);
    expect((await fetch(`${server.url}/decode`, { headers: auth })).status).toBe(405);
  });

  it('answers the CORS preflight of the configured UI origin only', async () => {
    const preflight = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'http://localhost:8233',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,content-type,x-namespace',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://localhost:8233');
    expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    for (const h of ['authorization', 'content-type', 'x-namespace']) expect(allowed).toContain(h);
    const foreign = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    // A real request from the UI origin carries the CORS header too, also on a 401.
    const unauth = await post('/decode', { payloads: [] }, { Origin: 'http://localhost:8233' });
    expect(unauth.status).toBe(401);
    expect(unauth.headers.get('access-control-allow-origin')).toBe('http://localhost:8233');
  });

  it('writes a token file once (0600) and keeps it', () => {
    const file = path.join(tmpDir(), 'keys', 'codec-token');
    expect(writeTokenFile(file).created).toBe(true);
    const first = fs.readFileSync(file, 'utf8');
    expect(first.trim().length).toBeGreaterThanOrEqual(32);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(writeTokenFile(file).created).toBe(false);
    expect(fs.readFileSync(file, 'utf8')).toBe(first);
  });
});
