import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import type { GatewayConfig, Upstream } from './config';

/**
 * The gateway's connections to its upstream MCP servers (SDK `Client` over stdio or Streamable HTTP).
 * Only the `governor mcp` process holds them; the governor's own worker never does. An upstream that
 * exits or drops its connection is reconnected at the next use; a call in flight when it did fails.
 */

/** Separator of prefixed tool names (`fs__read_file`) when the gateway fronts more than one upstream. */
export const PREFIX_SEPARATOR = '__';

const GATEWAY_INFO = { name: 'temporal-governor-mcp-gateway', version: '1.0.0' };

/** One upstream tool as the agent sees it. */
export interface ExposedTool {
  /** The name the agent calls (prefixed when there are several upstreams). */
  name: string;
  server: string;
  /** The upstream's own name for it. */
  tool: string;
  /** The upstream's definition (schemas passed through unchanged). */
  definition: Tool;
}

class UpstreamConnection {
  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;

  constructor(
    readonly name: string,
    private readonly spec: Upstream,
  ) {}

  private async connect(): Promise<Client> {
    const client = new Client(GATEWAY_INFO, { capabilities: {} });
    const transport =
      'url' in this.spec
        ? new StreamableHTTPClientTransport(new URL(this.spec.url))
        : new StdioClientTransport({
            command: this.spec.command,
            args: this.spec.args,
            env: { ...getDefaultEnvironment(), ...(this.spec.env ?? {}) },
            ...(this.spec.cwd ? { cwd: this.spec.cwd } : {}),
            // The upstream's own diagnostics go to the gateway's stderr, never to the agent's stdout.
            stderr: 'inherit',
          });
    client.onclose = () => {
      if (this.client === client) this.client = undefined;
    };
    await client.connect(transport);
    this.client = client;
    return client;
  }

  /** The live client, (re)connecting when there is none. */
  async get(): Promise<Client> {
    if (this.client) return this.client;
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close().catch(() => undefined);
  }
}

export class Upstreams {
  private readonly connections = new Map<string, UpstreamConnection>();

  constructor(config: Pick<GatewayConfig, 'upstreams'>) {
    for (const [name, spec] of Object.entries(config.upstreams)) {
      this.connections.set(name, new UpstreamConnection(name, spec));
    }
  }

  /** True when tool names carry their upstream's prefix. */
  get prefixed(): boolean {
    return this.connections.size > 1;
  }

  /** Connects every upstream now (so a misconfigured one stops the gateway at start). */
  async connectAll(): Promise<void> {
    for (const c of this.connections.values()) {
      try {
        await c.get();
      } catch (err) {
        throw new Error(`upstream ${c.name}: cannot connect: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /** The union of the upstreams' tools, name-prefixed (`<upstream>__<tool>`) when there are several. */
  async listTools(): Promise<ExposedTool[]> {
    const tools: ExposedTool[] = [];
    for (const c of this.connections.values()) {
      const client = await c.get();
      let cursor: string | undefined;
      do {
        const page = await client.listTools(cursor ? { cursor } : undefined);
        for (const definition of page.tools) {
          const name = this.prefixed ? `${c.name}${PREFIX_SEPARATOR}${definition.name}` : definition.name;
          tools.push({ name, server: c.name, tool: definition.name, definition: { ...definition, name } });
        }
        cursor = page.nextCursor;
      } while (cursor);
    }
    return tools;
  }

  /** Which upstream and tool an exposed name means (undefined for a name no upstream could have). */
  resolve(name: string): { server: string; tool: string } | undefined {
    if (!this.prefixed) {
      const [server] = this.connections.keys();
      return { server: server!, tool: name };
    }
    const at = name.indexOf(PREFIX_SEPARATOR);
    if (at <= 0) return undefined;
    const server = name.slice(0, at);
    const tool = name.slice(at + PREFIX_SEPARATOR.length);
    return this.connections.has(server) && tool.length > 0 ? { server, tool } : undefined;
  }

  has(server: string): boolean {
    return this.connections.has(server);
  }

  /** Calls one tool once; rejects on a protocol error, a lost connection or after `timeoutMs`. */
  async call(server: string, tool: string, args: Record<string, unknown>, timeoutMs: number): Promise<CallToolResult> {
    const c = this.connections.get(server);
    if (!c) throw new Error(`no upstream named ${server}`);
    const client = await c.get();
    const result = await client.callTool({ name: tool, arguments: args }, undefined, { timeout: timeoutMs });
    return result as CallToolResult;
  }

  async close(): Promise<void> {
    await Promise.all([...this.connections.values()].map((c) => c.close()));
  }
}
