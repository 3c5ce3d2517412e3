import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { PayloadCodec } from '@temporalio/common';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Logger as PinoLogger } from 'pino';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { payloadFromJson, payloadToJson } from '../runtime/codec';

/*
 * Codec server: Temporal's remote codec protocol over node:http, so the Temporal CLI
 * (`--codec-endpoint`) and Web UI can show encrypted payloads.
 *
 *   POST …/encode, POST …/decode   body and response: a `Payloads` message in proto3 JSON,
 *                                  `{"payloads": [{"metadata": {"encoding": "<b64>"}, "data": "<b64>"}]}`;
 *                                  only the last path segment is matched (mountable under any prefix,
 *                                  e.g. /default/decode); the `X-Namespace` header is logged, not required
 *   OPTIONS                        CORS preflight for the configured UI origins (no credentials needed)
 *
 * Every POST requires `Authorization: Bearer <token>`: the server's own token (compared in constant
 * time), or, when configured, a Temporal UI user's OIDC access token that verifies and carries the
 * required role (the UI's "Pass the user access token"). A missing or wrong token is a 401 whose body and log line never contain what was presented. 400 for a malformed body
 * or a payload that does not decode (the message names the field); 413 above the body limit.
 */

/** Environment variable holding the bearer token (alternative to `--token-file`). */
export const CODEC_TOKEN_ENV = 'GOVERNOR_CODEC_TOKEN';
/** Shortest accepted token. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * Users of the Temporal UI: with "Pass the user access token" the UI sends each signed-in user's
 * OIDC access token as the bearer. Accepted when it verifies against the identity provider's JWKS
 * (a local file: keys are never fetched at request time), names the issuer and audience, has not
 * expired, and carries the required role in the named claim.
 */
export interface CodecOidcOptions {
  issuer: string;
  audience: string;
  jwks: JSONWebKeySet;
  /** e.g. `{ claim: 'groups', value: 'governor-auditors' }`: the claim (string or array of strings) must contain the value. */
  role: { claim: string; value: string };
  /** Accepted signature algorithms (default EdDSA, ES256, RS256, PS256; never `none` or HMAC). */
  algorithms?: string[];
}

const OIDC_ALGORITHMS = ['EdDSA', 'ES256', 'RS256', 'PS256'];

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** The bearer token clients must present (the Temporal CLI, automation). */
  token: string;
  /** Also accept the UI users' own access tokens (see CodecOidcOptions). */
  oidc?: CodecOidcOptions;
  port?: number;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Origins allowed by CORS (the Temporal UI), e.g. http://localhost:8233. */
  corsOrigins?: string[];
  /** Largest request body (default 4 MiB). */
  maxBodyBytes?: number;
  logger?: Pick<PinoLogger, 'info' | 'warn'>;
}

export interface CodecServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Reads a token from a file (trailing newline trimmed); errors never contain the token. */
export function readTokenFile(file: string): string {
  let token: string;
  try {
    token = fs.readFileSync(path.resolve(file), 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `--token-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      '--token-file',
    );
  }
  return checkToken(token, '--token-file');
}

/** Checks a token is usable (length, no whitespace); the message names `field`, never the token. */
export function checkToken(token: string, field: string): string {
  if (token.length < MIN_TOKEN_LENGTH)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${field}: the codec server token must be at least ${MIN_TOKEN_LENGTH} characters`,
      field,
    );
  if (/\s/.test(token))
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${field}: the codec server token must not contain whitespace`,
      field,
    );
  return token;
}

/** Writes a new random token file (0600) unless one exists; returns whether it was created. */
export function writeTokenFile(file: string): { file: string; created: boolean } {
  const target = path.resolve(file);
  if (fs.existsSync(target)) return { file: target, created: false };
  fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
  fs.writeFileSync(target, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  return { file: target, created: true };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Constant-time check of an `Authorization` header against the expected token. */
function authorized(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer ([^\s]+)$/i.exec(header ?? '');
  // Compare digests: equal length whatever was presented, and the time does not depend on the token.
  const presented = digest(match ? match[1]! : '');
  return timingSafeEqual(presented, expected) && match !== null;
}

/** A verifier of UI users' access tokens; resolves true only for a valid token carrying the role. */
function oidcVerifier(oidc: CodecOidcOptions): (header: string | undefined) => Promise<boolean> {
  const keys = createLocalJWKSet(oidc.jwks);
  const algorithms = oidc.algorithms ?? OIDC_ALGORITHMS;
  for (const alg of algorithms) {
    if (alg === 'none' || alg.startsWith('HS'))
      throw new GovernorError(
        ErrorCode.InvalidInput,
        `oidc.algorithms: ${alg} is not accepted (asymmetric signatures only)`,
        'oidc.algorithms',
      );
  }
  return async (header) => {
    const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header ?? '');
    if (!match || match[1]!.length > 16_384) return false;
    try {
      const { payload, protectedHeader } = await jwtVerify(match[1]!, keys, {
        issuer: oidc.issuer,
        audience: oidc.audience,
        algorithms,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: 5,
      });
      // Key-bearing headers are never honoured (the local key set ignores them; refuse outright).
      if (
        protectedHeader.jku !== undefined ||
        protectedHeader.x5u !== undefined ||
        protectedHeader.jwk !== undefined ||
        protectedHeader.crit !== undefined
      )
        return false;
      const claim = payload[oidc.role.claim];
      return claim === oidc.role.value || (Array.isArray(claim) && claim.includes(oidc.role.value));
    } catch {
      return false;
    }
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Starts the codec server; resolves once it listens. */
export async function startCodecServer(options: CodecServerOptions): Promise<CodecServer> {
  const expected = digest(checkToken(options.token, 'token'));
  const userToken = options.oidc ? oidcVerifier(options.oidc) : undefined;
  const origins = new Set(options.corsOrigins ?? []);
  const limit = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const log = options.logger;

  const server = http.createServer((req, res) => {
    const started = {
      method: req.method ?? '',
      path: (req.url ?? '').split('?')[0]!.slice(0, 200),
      namespace: String(req.headers['x-namespace'] ?? '').slice(0, 200),
    };
    const send = (status: number, body?: unknown, headers: Record<string, string> = {}): void => {
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, {
        ...(text ? { 'Content-Type': 'application/json' } : {}),
        'Cache-Control': 'no-store',
        ...headers,
      });
      res.end(text);
      // Never the Authorization header or the body: only what was asked and the outcome.
      log?.info({ ...started, status }, 'codec server request');
    };
    const origin = req.headers.origin;
    if (origin && origins.has(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, X-Namespace');
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Max-Age', '600');
    }
    res.setHeader('Vary', 'Origin');
    if (req.method === 'OPTIONS') return send(204);

    const operation = started.path.split('/').filter(Boolean).pop();
    if (operation !== 'encode' && operation !== 'decode')
      return send(404, { error: 'not found: POST …/encode or …/decode' });
    if (req.method !== 'POST') return send(405, { error: 'method not allowed: use POST' }, { Allow: 'POST, OPTIONS' });
    void (async () => {
      const header = req.headers.authorization;
      if (!authorized(header, expected) && !(userToken && (await userToken(header)))) {
        req.resume();
        return send(401, { error: 'unauthorized: a valid bearer token is required' }, { 'WWW-Authenticate': 'Bearer' });
      }
      try {
        const text = await readBody(req, limit);
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          throw new HttpError(400, 'body: not JSON');
        }
        const list = (body as { payloads?: unknown } | null)?.payloads;
        if (typeof body !== 'object' || body === null || Array.isArray(body) || !Array.isArray(list))
          throw new HttpError(400, 'payloads: must be an array (a Payloads message in proto3 JSON)');
        let payloads;
        try {
          payloads = list.map((p, i) => payloadFromJson(p, `payloads[${i}]`));
        } catch (err) {
          throw new HttpError(400, (err as Error).message);
        }
        let result;
        try {
          result = operation === 'encode' ? await options.codec.encode(payloads) : await options.codec.decode(payloads);
        } catch (err) {
          throw new HttpError(400, `${operation} failed: ${(err as Error).message}`);
        }
        send(200, { payloads: result.map(payloadToJson) });
      } catch (err) {
        const status = err instanceof HttpError ? err.status : 500;
        send(status, { error: status === 500 ? 'internal error' : (err as Error).message });
      }
    })();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new GovernorError(ErrorCode.PortInUse, `--port: ${options.port} is in use`, '--port')
          : err,
      ),
    );
    server.listen(options.port ?? 8081, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
