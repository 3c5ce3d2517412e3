import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { formatIssues } from '../contracts/chain';

/**
 * The MCP gateway's configuration file (JSON or YAML): the upstream MCP servers it fronts, and how it
 * waits for escalations. Strict: an unknown key is an error.
 */

/** Upstream names: they prefix tool names (`<name>__<tool>`) when there is more than one upstream. */
const UpstreamName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/, 'must be 1-64 letters, digits or -');

export const StdioUpstream = z.strictObject({
  command: z.string().min(1),
  args: z.array(z.string()).default([]),
  /** Added to a minimal inherited environment (the SDK's default set: PATH, HOME, ...). */
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().optional(),
});

export const HttpUpstream = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
});

export const Upstream = z.union([StdioUpstream, HttpUpstream]);
export type Upstream = z.infer<typeof Upstream>;

export const GatewayConfig = z.strictObject({
  upstreams: z
    .record(UpstreamName, Upstream)
    .refine((u) => Object.keys(u).length > 0, 'at least one upstream is required'),
  /** The workload of the agent's session (default: the credential's `sub`). */
  sessionWorkload: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/)
    .optional(),
  /** How long a tool call waits for approvers before it returns "awaiting approval" (default 2 min). */
  escalationWaitMs: z.int().min(0).max(3_600_000).default(120_000),
  /** The gateway's own task queue, where the governor schedules `mcpToolCall` (default governor-mcp). */
  taskQueue: z.string().min(1).max(200).default('governor-mcp'),
  /** Longest an upstream tool call may take (default 60 s): then the step fails. */
  toolTimeoutMs: z.int().min(100).max(3_600_000).default(60_000),
  /** Largest HTTP request body accepted (default 1 MiB). */
  maxBodyBytes: z
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(1024 * 1024),
  /** Largest tool result returned through Temporal (default 1 MiB): a larger one fails the step. */
  maxResultBytes: z
    .int()
    .min(1024)
    .max(2 * 1024 * 1024)
    .default(1024 * 1024),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;

/** Parses a configuration object; a bad one is `InvalidInput` naming each field. */
export function parseGatewayConfig(raw: unknown, source = 'config'): GatewayConfig {
  const parsed = GatewayConfig.safeParse(raw);
  if (!parsed.success) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${source}: invalid MCP gateway configuration\n${formatIssues(parsed.error)}`,
    );
  }
  return parsed.data;
}

/** Reads a JSON or YAML configuration file. */
export function loadGatewayConfig(file: string): GatewayConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new GovernorError(ErrorCode.InvalidInput, `${file}: cannot read the MCP gateway configuration`);
  }
  let raw: unknown;
  try {
    raw = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${file}: not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  return parseGatewayConfig(raw, file);
}
