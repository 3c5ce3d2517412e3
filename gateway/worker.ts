import { ApplicationFailure, type DataConverter } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { MCP_TOOL_CALL_ACTIVITY, type McpToolCallInput } from '../contracts/executor';
import { ErrorCode } from '../contracts/errors';
import { tracingActivityInterceptors } from '../runtime/tracing';
import type { Upstreams } from './upstreams';

/**
 * The gateway's Temporal worker: it hosts `mcpToolCall`, the executor of `mcp` steps, on the gateway's
 * own task queue, inside the `governor mcp` process that holds the upstream connections. The governor
 * schedules it once per step (no retry: SECURITY.md); every failure here is final for the step.
 */

/** The activity's result: the upstream's `CallToolResult` as JSON. */
export type McpToolCallResult = Record<string, unknown>;

/** The payload converter every governor worker loads (workers/worker.ts loads the same module). */
const PAYLOAD_CONVERTER_PATH = require.resolve('../runtime/payload-converter');

export function createMcpActivities(
  upstreams: Upstreams,
  limits: { maxResultBytes: number; toolTimeoutMs: number },
): Record<string, (input: McpToolCallInput) => Promise<McpToolCallResult>> {
  return {
    async [MCP_TOOL_CALL_ACTIVITY](input: McpToolCallInput): Promise<McpToolCallResult> {
      if (!upstreams.has(input.server)) {
        throw ApplicationFailure.nonRetryable(
          `this gateway has no upstream named ${input.server}`,
          ErrorCode.ExecutorFailed,
        );
      }
      let result: unknown;
      try {
        result = await upstreams.call(input.server, input.tool, input.input, limits.toolTimeoutMs);
      } catch (err) {
        // A crash, a lost connection, a timeout or a protocol error: the step fails, never retried.
        throw ApplicationFailure.nonRetryable(
          `upstream ${input.server}: tool ${input.tool} failed: ${(err as Error).message}`,
          ErrorCode.ExecutorFailed,
        );
      }
      const json = JSON.stringify(result ?? null);
      if (Buffer.byteLength(json, 'utf8') > limits.maxResultBytes) {
        throw ApplicationFailure.nonRetryable(
          `upstream ${input.server}: tool ${input.tool} returned more than ${limits.maxResultBytes} bytes (the call ran; its result is not recorded)`,
          ErrorCode.ExecutorFailed,
        );
      }
      return JSON.parse(json) as McpToolCallResult;
    },
  };
}

export interface GatewayWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  upstreams: Upstreams;
  maxResultBytes: number;
  toolTimeoutMs: number;
  dataConverter?: DataConverter;
  /** Continue the chain's trace in `mcpToolCall` (Temporal's OpenTelemetry activity interceptor). */
  tracing?: boolean;
}

/** Creates (does not run) the gateway's worker. */
export async function createGatewayWorker(options: GatewayWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    activities: createMcpActivities(options.upstreams, options),
    dataConverter: { ...options.dataConverter, payloadConverterPath: PAYLOAD_CONVERTER_PATH },
    ...(options.tracing ? { interceptors: { activity: tracingActivityInterceptors() } } : {}),
  });
}
