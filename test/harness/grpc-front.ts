import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';

/**
 * A loopback stand-in for a remote Temporal frontend (a TLS-terminating load balancer, Temporal
 * Cloud): it terminates TLS, optionally requires a client certificate of a test CA (mTLS) and/or an
 * `authorization: Bearer <key>` header, and proxies every gRPC stream to the plaintext dev server.
 * The dev server itself speaks plaintext gRPC only.
 */

/** Throwaway PKI generated with the `openssl` CLI in a temp dir (never committed). */
export interface TestCerts {
  dir: string;
  /** The CA that signed the server and client certificates. */
  caCert: string;
  /** Another CA, which signed nothing the front end presents. */
  otherCaCert: string;
  /** Server certificate (SAN DNS:localhost, IP:127.0.0.1) and key. */
  serverCert: string;
  serverKey: string;
  /** Client certificate (CN governor-test-client, clientAuth) and key, signed by the CA. */
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by the other CA (CN governor-rogue-client). */
  rogueClientCert: string;
  rogueClientKey: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Generates a CA, a server and a client certificate (EC P-256, one day) in a new temp dir. */
export function makeTestCerts(): TestCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-pki-'));
  const key = (name: string): void =>
    openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
  const ca = (name: string, cn: string): void => {
    key(name);
    openssl(dir, [
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-sha256',
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      '-out',
      `${name}.pem`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  };
  const leaf = (name: string, cn: string, signer: string, ext: string): void => {
    key(name);
    openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${signer}.pem`,
      '-CAkey',
      `${signer}.key`,
      '-CAcreateserial',
      '-days',
      '1',
      '-sha256',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    ]);
  };
  ca('ca', 'governor-test-ca');
  ca('other-ca', 'governor-other-ca');
  leaf(
    'server',
    'localhost',
    'ca',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
  );
  leaf(
    'client',
    'governor-test-client',
    'ca',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
  );
  leaf(
    'rogue',
    'governor-rogue-client',
    'other-ca',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
  );
  const p = (f: string): string => path.join(dir, f);
  return {
    dir,
    caCert: p('ca.pem'),
    otherCaCert: p('other-ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    rogueClientCert: p('rogue.pem'),
    rogueClientKey: p('rogue.key'),
  };
}

export interface GrpcFrontOptions {
  /** The plaintext gRPC server to forward to (`host:port`). */
  upstream: string;
  certs: TestCerts;
  /** Require a client certificate signed by `certs.caCert` (mTLS). */
  requireClientCert?: boolean;
  /** Require `authorization: Bearer <apiKey>` on every call. */
  apiKey?: string;
}

/** What the front end saw: enough for tests to prove calls really went through it, and how. */
export interface GrpcFrontStats {
  /** gRPC methods proxied upstream (`/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution`, …). */
  methods: Set<string>;
  /** Calls refused with UNAUTHENTICATED (missing or wrong API key). */
  refused: number;
  /** Calls that presented the expected API key. */
  authorized: number;
  /** Subject CNs of the client certificates presented on accepted TLS connections. */
  clientCertSubjects: Set<string>;
}

export interface GrpcFront {
  /** `127.0.0.1:<port>` */
  address: string;
  port: number;
  stats: GrpcFrontStats;
  close(): Promise<void>;
}

const GRPC_UNAUTHENTICATED = '16';
const GRPC_UNAVAILABLE = '14';
/** Hop-by-hop or per-connection headers that must not be forwarded. */
const DROP_REQUEST = new Set([':scheme', ':authority', 'authorization', 'connection', 'keep-alive', 'host']);

/** Starts the front end on 127.0.0.1 (a free port). */
export async function startGrpcFront(options: GrpcFrontOptions): Promise<GrpcFront> {
  const stats: GrpcFrontStats = { methods: new Set(), refused: 0, authorized: 0, clientCertSubjects: new Set() };
  const { certs } = options;
  const server = http2.createSecureServer({
    key: fs.readFileSync(certs.serverKey),
    cert: fs.readFileSync(certs.serverCert),
    allowHTTP1: false,
    ALPNProtocols: ['h2'],
    ...(options.requireClientCert
      ? { ca: fs.readFileSync(certs.caCert), requestCert: true, rejectUnauthorized: true }
      : {}),
  });

  let upstream: http2.ClientHttp2Session | undefined;
  const session = (): http2.ClientHttp2Session => {
    if (!upstream || upstream.closed || upstream.destroyed) {
      upstream = http2.connect(`http://${options.upstream}`);
      upstream.on('error', () => undefined); // surfaced per stream
    }
    return upstream;
  };

  const sockets = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const peer = socket.getPeerCertificate();
    if (peer && peer.subject?.CN) stats.clientCertSubjects.add(String(peer.subject.CN));
  });

  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    const method = String(headers[':path'] ?? '');
    if (options.apiKey !== undefined) {
      if (headers.authorization !== `Bearer ${options.apiKey}`) {
        stats.refused++;
        // Trailers-only response, as a gRPC server answers a call it refuses.
        stream.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': GRPC_UNAUTHENTICATED,
            'grpc-message': 'missing or invalid API key',
          },
          { endStream: true },
        );
        return;
      }
      stats.authorized++;
    }
    const forward: http2.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers))
      if (!DROP_REQUEST.has(name) && value !== undefined) forward[name] = value;
    let req: http2.ClientHttp2Stream;
    try {
      req = session().request(forward);
    } catch {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': GRPC_UNAVAILABLE,
          'grpc-message': 'upstream unavailable',
        },
        { endStream: true },
      );
      return;
    }
    stats.methods.add(method);
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on('response', (responseHeaders) => {
      const out = withoutPseudo(responseHeaders, true);
      if (responseHeaders['grpc-status'] !== undefined) {
        // Trailers-only response from upstream.
        if (!stream.destroyed) stream.respond(out, { endStream: true });
        return;
      }
      if (stream.destroyed) return;
      stream.respond(out, { waitForTrailers: true });
      stream.on('wantTrailers', () => {
        stream.sendTrailers(
          trailers
            ? withoutPseudo(trailers, false)
            : { 'grpc-status': GRPC_UNAVAILABLE, 'grpc-message': 'upstream sent no trailers' },
        );
      });
      req.pipe(stream);
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('error', () => {
      if (stream.destroyed) return;
      if (!stream.headersSent) {
        stream.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': GRPC_UNAVAILABLE,
            'grpc-message': 'upstream error',
          },
          { endStream: true },
        );
      } else {
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
    stream.pipe(req);
    // The caller cancelled (a worker shutting down cancels its long polls): cancel upstream too.
    stream.on('close', () => {
      if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    port,
    stats,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      upstream?.close();
      await closed;
    },
  };
}

function withoutPseudo(headers: http2.IncomingHttpHeaders, keepStatus: boolean): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (name.startsWith(':') && !(keepStatus && name === ':status')) continue;
    out[name] = value;
  }
  return out;
}
