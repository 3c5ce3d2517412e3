import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { AgentSession, createGatewayServer, type AgentIdentity, type GatewayOptions } from './server';

/**
 * The gateway on Streamable HTTP (`governor mcp --http <port>`), one MCP session per connection. Every
 * request carries the agent's credential (`Authorization: Bearer`) and attestation
 * (`X-Governor-Attestation`), checked before the body is read; a request of an existing MCP session
 * must come from the same workload (its credential may be refreshed). Bodies are bounded; bad JSON and
 * bad JSON-RPC get a JSON-RPC error. `X-Governor-Agent-Id` shares one governed session between the
 * connections of one agent.
 */

export const MCP_PATH = '/mcp';
export const ATTESTATION_HEADER = 'x-governor-attestation';
export const AGENT_ID_HEADER = 'x-governor-agent-id';

/** Verifies a credential; rejects (with a message that never echoes it) when it is not valid. */
export type Identify = (credential: string, attestation: string) => Promise<AgentIdentity>;

export interface HttpGatewayOptions extends GatewayOptions {
  identify: Identify;
  maxBodyBytes: number;
}

interface Connection {
  transport: StreamableHTTPServerTransport;
  identity: AgentIdentity;
  session: AgentSession;
  /** Closed with the connection (false for a session shared by agent id). */
  ownsSession: boolean;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

function jsonRpcError(res: http.ServerResponse, status: number, code: number, message: string, headers = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

const unauthorized = (res: http.ServerResponse, message: string): void =>
  jsonRpcError(res, 401, -32001, message, { 'www-authenticate': 'Bearer realm="temporal-governor"' });

/** Reads a body of at most `limit` bytes; undefined (after answering 413) when it is larger. */
function readBody(req: http.IncomingMessage, res: http.ServerResponse, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      jsonRpcError(res, 413, -32600, `request body larger than ${limit} bytes`, { connection: 'close' });
      req.resume();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        jsonRpcError(res, 413, -32600, `request body larger than ${limit} bytes`, { connection: 'close' });
        req.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export interface HttpGateway {
  server: http.Server;
  /** Closes every connection and its own session (final checkpoint), then the HTTP server. */
  close(reason: string): Promise<void>;
}

export function createHttpGateway(options: HttpGatewayOptions): HttpGateway {
  const connections = new Map<string, Connection>();
  const byAgent = new Map<string, AgentSession>();
  const log = options.log ?? (() => undefined);

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    if (url.pathname !== MCP_PATH) return jsonRpcError(res, 404, -32600, `not found; the MCP endpoint is ${MCP_PATH}`);
    const auth = req.headers.authorization;
    const bearer = auth && /^Bearer [A-Za-z0-9._~+/=-]+$/.test(auth) ? auth.slice('Bearer '.length) : undefined;
    if (!bearer) return unauthorized(res, 'an Authorization: Bearer <credential> header is required');
    const attestation = req.headers[ATTESTATION_HEADER];
    if (typeof attestation !== 'string' || attestation.length === 0) {
      return unauthorized(res, `an ${ATTESTATION_HEADER} header is required`);
    }
    let identity: AgentIdentity;
    try {
      identity = await options.identify(bearer, attestation);
    } catch (err) {
      return unauthorized(res, `credential refused: ${(err as Error).message}`);
    }

    let body: unknown;
    if (req.method === 'POST') {
      const raw = await readBody(req, res, options.maxBodyBytes);
      if (raw === undefined) return;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return jsonRpcError(res, 400, -32700, 'parse error: the body is not JSON');
      }
    }

    const sessionHeader = req.headers['mcp-session-id'];
    if (typeof sessionHeader === 'string') {
      const conn = connections.get(sessionHeader);
      if (!conn) return jsonRpcError(res, 404, -32001, 'unknown or closed MCP session');
      if (conn.identity.workload !== identity.workload) {
        return jsonRpcError(res, 403, -32001, 'this MCP session belongs to another workload');
      }
      // A refreshed credential (same workload) replaces the old one for the next proposals.
      if (!timingSafeEqual(digest(conn.identity.credential), digest(identity.credential))) {
        conn.identity.credential = identity.credential;
        conn.identity.attestation = identity.attestation;
      }
      return conn.transport.handleRequest(req, res, body);
    }
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      return jsonRpcError(
        res,
        400,
        -32600,
        'no MCP session: send an initialize request first (without mcp-session-id)',
      );
    }
    const agentId = req.headers[AGENT_ID_HEADER];
    const agentKey =
      typeof agentId === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$/.test(agentId)
        ? `${identity.workload}/${agentId}`
        : undefined;
    let session = agentKey ? byAgent.get(agentKey) : undefined;
    if (!session) {
      session = new AgentSession(options.port, identity, `MCP agent session (${identity.workload})`);
      if (agentKey) byAgent.set(agentKey, session);
    }
    const ownsSession = agentKey === undefined;
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        connections.set(id, { transport, identity: session.identity, session, ownsSession });
      },
    });
    transport.onclose = () => {
      const id = transport.sessionId;
      if (id) connections.delete(id);
      if (ownsSession) {
        session.close('the MCP client closed its connection').catch((err: Error) => {
          log('could not close the agent session', { error: err.message });
        });
      }
    };
    const server = createGatewayServer(options, session);
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      log('request failed', { error: err.message });
      jsonRpcError(res, 500, -32603, 'internal error');
    });
  });

  return {
    server,
    async close(reason: string): Promise<void> {
      const all = [...connections.values()];
      connections.clear();
      for (const c of all) {
        if (c.ownsSession) await c.session.close(reason).catch(() => undefined);
        await c.transport.close().catch(() => undefined);
      }
      for (const s of byAgent.values()) await s.close(reason).catch(() => undefined);
      byAgent.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
