import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { z } from 'zod';
import { ErrorCode, GovernorError } from '../contracts/errors';

/*
 * Payload encryption (AES-256-GCM PayloadCodec) and its key ring.
 *
 * An encrypted payload is `{metadata: {encoding: "binary/encrypted", "encryption-key-id": <id>},
 * data: IV (12 random bytes) ‖ ciphertext ‖ tag (16 bytes)}`. The plaintext is the original payload
 * serialized as a `temporal.api.common.v1.Payload` protobuf (its metadata and data), so nothing of
 * it — not even its encoding — is visible. The additional authenticated data binds the format
 * version and the key id. Encryption uses the key ring's primary key; decryption uses the key the
 * payload names, so rotating the primary (keeping the old keys) still decrypts old histories.
 *
 * Payloads without `encoding: binary/encrypted` pass through decode unchanged (histories written
 * before encryption was turned on). Errors name the key id or the problem, never key material.
 */

/** `encoding` of an encrypted payload. */
export const ENCRYPTED_ENCODING = 'binary/encrypted';
/** Metadata key naming the key a payload was encrypted with. */
export const KEY_ID_METADATA = 'encryption-key-id';
/** Environment variable naming the key file (worker, client commands, verify). */
export const CODEC_KEYS_ENV = 'GOVERNOR_CODEC_KEYS';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const AAD_PREFIX = 'temporal-governor/payload/aes-256-gcm/v1:';
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Thrown when a payload cannot be encrypted or decrypted; the message never contains key material. */
export class PayloadCodecError extends Error {
  override readonly name = 'PayloadCodecError';
}

// ---- key ring ---------------------------------------------------------------------------------

const KeyIdSchema = z.string().regex(KEY_ID, 'must be 1-64 letters, digits, ".", "_" or "-"');

/** The key file: `{ "primary": "k2", "keys": { "k1": "<base64 of 32 bytes>", "k2": "…" } }`. */
export const CodecKeyFile = z.strictObject({
  primary: KeyIdSchema,
  keys: z.record(z.string(), z.string()),
});
export type CodecKeyFile = z.infer<typeof CodecKeyFile>;

/** Validated keys: the primary id and every key as a KeyObject (never printed with its bytes). */
export interface KeyRing {
  primary: string;
  keys: ReadonlyMap<string, KeyObject>;
}

function badKeyFile(source: string, field: string, message: string): GovernorError {
  return new GovernorError(ErrorCode.InvalidInput, `codec key file ${source}: ${field}: ${message}`, field);
}

/** Validates a parsed key file; errors name the bad field (never its value). */
export function parseKeyRing(raw: unknown, source = '(inline)'): KeyRing {
  const parsed = CodecKeyFile.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.map(String).join('.') || '(root)';
    // zod's messages name expected types and unknown keys, never the offending values.
    throw badKeyFile(source, field, issue.message);
  }
  const { primary, keys } = parsed.data;
  const ids = Object.keys(keys);
  if (ids.length === 0) throw badKeyFile(source, 'keys', 'at least one key is required');
  const ring = new Map<string, KeyObject>();
  for (const id of ids) {
    if (!KEY_ID.test(id))
      throw badKeyFile(source, `keys.${id.slice(0, 64)}`, 'key id must be 1-64 letters, digits, ".", "_" or "-"');
    const value = keys[id]!;
    const bytes = Buffer.from(value, 'base64');
    if (bytes.toString('base64') !== value)
      throw badKeyFile(source, `keys.${id}`, 'must be standard base64 (with padding)');
    if (bytes.length !== KEY_BYTES)
      throw badKeyFile(source, `keys.${id}`, `must be ${KEY_BYTES} bytes (AES-256), got ${bytes.length}`);
    ring.set(id, createSecretKey(bytes));
    bytes.fill(0);
  }
  if (!ring.has(primary)) throw badKeyFile(source, 'primary', `"${primary}" is not one of keys (${ids.join(', ')})`);
  return { primary, keys: ring };
}

/** Reads and validates a key file. */
export function loadKeyRing(file: string): KeyRing {
  const source = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(source, 'utf8');
  } catch (err) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `codec key file ${source}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      'codec-keys',
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the error: it could quote a key.
    throw new GovernorError(ErrorCode.InvalidInput, `codec key file ${source}: not valid JSON`, 'codec-keys');
  }
  return parseKeyRing(raw, source);
}

/** A new random key, base64. */
export function newKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/**
 * Creates a key file with one key (`k1`, primary), or with `rotate` adds a new key to an existing
 * file and makes it the primary (old keys stay, so old histories still decrypt). Written 0600.
 */
export function writeKeyFile(
  file: string,
  options: { rotate?: boolean } = {},
): { file: string; primary: string; keyIds: string[]; created: boolean } {
  const target = path.resolve(file);
  const exists = fs.existsSync(target);
  if (exists && !options.rotate) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `codec key file ${target} already exists: use --rotate to add a new primary key (replacing it would make existing histories unreadable)`,
      '--file',
    );
  }
  let content: CodecKeyFile;
  if (exists) {
    loadKeyRing(target); // refuse to rotate a broken file
    const current = JSON.parse(fs.readFileSync(target, 'utf8')) as CodecKeyFile;
    let n = Object.keys(current.keys).length + 1;
    while (`k${n}` in current.keys) n++;
    content = { primary: `k${n}`, keys: { ...current.keys, [`k${n}`]: newKey() } };
  } else {
    content = { primary: 'k1', keys: { k1: newKey() } };
  }
  fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
  const tmp = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, target);
  return { file: target, primary: content.primary, keyIds: Object.keys(content.keys), created: !exists };
}

// ---- codec ------------------------------------------------------------------------------------

function aad(keyId: string): Buffer {
  return Buffer.from(AAD_PREFIX + keyId, 'utf8');
}

/** Printable form of an untrusted key id (bounded, no control characters). */
function shown(id: string): string {
  return JSON.stringify(id.length > 64 ? `${id.slice(0, 64)}…` : id);
}

/** AES-256-GCM payload codec over a key ring. */
export class AesGcmPayloadCodec implements PayloadCodec {
  constructor(private readonly ring: KeyRing) {}

  /** The primary key id (new payloads are encrypted with it). */
  get primaryKeyId(): string {
    return this.ring.primary;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.encrypt(p));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.decrypt(p));
  }

  /** Encrypts one payload with the primary key. */
  encrypt(payload: Payload): Payload {
    const keyId = this.ring.primary;
    const plaintext = temporal.api.common.v1.Payload.encode(payload).finish();
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.ring.keys.get(keyId)!, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(keyId));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return {
      metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from(keyId) },
      data: new Uint8Array(Buffer.concat([iv, ciphertext, cipher.getAuthTag()])),
    };
  }

  /** Decrypts one payload with the key it names; payloads that are not encrypted pass through. */
  decrypt(payload: Payload): Payload {
    const encoding = payload.metadata?.encoding;
    if (!encoding || Buffer.from(encoding).toString('utf8') !== ENCRYPTED_ENCODING) return payload;
    const rawId = payload.metadata?.[KEY_ID_METADATA];
    if (!rawId || rawId.length === 0)
      throw new PayloadCodecError(`encrypted payload has no ${KEY_ID_METADATA} metadata`);
    const keyId = Buffer.from(rawId).toString('utf8');
    const key = this.ring.keys.get(keyId);
    if (!key)
      throw new PayloadCodecError(
        `encrypted payload names unknown ${KEY_ID_METADATA} ${shown(keyId)} (the key ring has ${[...this.ring.keys.keys()].join(', ')})`,
      );
    const data = Buffer.from(payload.data ?? new Uint8Array(0));
    if (data.length < IV_BYTES + TAG_BYTES)
      throw new PayloadCodecError(`encrypted payload (key ${shown(keyId)}) is too short: ${data.length} bytes`);
    let plaintext: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(keyId));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      plaintext = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new PayloadCodecError(
        `encrypted payload (key ${shown(keyId)}) failed authentication: its IV, ciphertext or tag was altered, or the key is not the one it was encrypted with`,
      );
    }
    let inner: temporal.api.common.v1.Payload;
    try {
      inner = temporal.api.common.v1.Payload.decode(plaintext);
    } catch {
      throw new PayloadCodecError(`encrypted payload (key ${shown(keyId)}) does not hold a serialized Payload`);
    }
    return {
      metadata: { ...inner.metadata },
      data: inner.data,
      ...(inner.externalPayloads.length > 0 ? { externalPayloads: inner.externalPayloads } : {}),
    };
  }
}

/** The data converter of a governor with payload encryption: the codec, and failures encoded too. */
export function codecDataConverter(codec: PayloadCodec): DataConverter {
  return { payloadCodecs: [codec], failureConverterPath: require.resolve('./failure-converter') };
}

/** Loads the key file and returns the codec and its data converter. */
export function loadCodec(file: string): { codec: AesGcmPayloadCodec; dataConverter: DataConverter } {
  const codec = new AesGcmPayloadCodec(loadKeyRing(file));
  return { codec, dataConverter: codecDataConverter(codec) };
}

// ---- proto3 JSON payloads (codec server, histories) -------------------------------------------

/** A payload in proto3 JSON form: metadata values and data in base64. */
export interface PayloadJson {
  metadata?: Record<string, string>;
  data?: string;
}

function strictBase64(value: unknown, field: string): Uint8Array {
  if (typeof value !== 'string') throw new PayloadCodecError(`${field}: must be a base64 string`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) throw new PayloadCodecError(`${field}: not standard base64`);
  return new Uint8Array(bytes);
}

/** Parses a proto3-JSON payload (strict base64); errors name the field. */
export function payloadFromJson(json: unknown, field = 'payload'): Payload {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new PayloadCodecError(`${field}: must be an object`);
  const j = json as Record<string, unknown>;
  for (const k of Object.keys(j))
    if (k !== 'metadata' && k !== 'data' && k !== 'externalPayloads')
      throw new PayloadCodecError(`${field}.${k.slice(0, 64)}: unknown field`);
  const metadata: Record<string, Uint8Array> = {};
  if (j.metadata !== undefined && j.metadata !== null) {
    if (typeof j.metadata !== 'object' || Array.isArray(j.metadata))
      throw new PayloadCodecError(`${field}.metadata: must be an object`);
    for (const [k, v] of Object.entries(j.metadata as Record<string, unknown>))
      metadata[k] = strictBase64(v, `${field}.metadata.${k.slice(0, 64)}`);
  }
  const data = j.data === undefined || j.data === null ? new Uint8Array(0) : strictBase64(j.data, `${field}.data`);
  return { metadata, data };
}

/** A payload in proto3 JSON form (empty fields omitted, as protobufjs' toJSON does). */
export function payloadToJson(payload: Payload): PayloadJson {
  const out: PayloadJson = {};
  const entries = Object.entries(payload.metadata ?? {});
  if (entries.length > 0)
    out.metadata = Object.fromEntries(entries.map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  if (payload.data && payload.data.length > 0) out.data = Buffer.from(payload.data).toString('base64');
  return out;
}

function isEncryptedJson(value: Record<string, unknown>): boolean {
  const m = value.metadata;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return false;
  const enc = (m as Record<string, unknown>).encoding;
  return typeof enc === 'string' && Buffer.from(enc, 'base64').toString('utf8') === ENCRYPTED_ENCODING;
}

/**
 * A copy of a JSON document (a workflow history in proto3 JSON form) with every encrypted payload
 * replaced by its decoded form. Throws PayloadCodecError naming where a payload failed to decode.
 */
export async function decodeJsonPayloads(json: unknown, codec: PayloadCodec, where = ''): Promise<unknown> {
  if (Array.isArray(json)) {
    const out: unknown[] = [];
    for (let i = 0; i < json.length; i++) out.push(await decodeJsonPayloads(json[i], codec, `${where}[${i}]`));
    return out;
  }
  if (typeof json !== 'object' || json === null) return json;
  const obj = json as Record<string, unknown>;
  if (isEncryptedJson(obj)) {
    try {
      const [decoded] = await codec.decode([payloadFromJson(obj, where || 'payload')]);
      return payloadToJson(decoded!);
    } catch (err) {
      throw new PayloadCodecError(`${where || 'payload'}: ${(err as Error).message}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k] = await decodeJsonPayloads(v, codec, where ? `${where}.${k}` : k);
  return out;
}
