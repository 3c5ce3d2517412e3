import type { JsonValue, ResourceRef } from './chain';

/**
 * What a service's own activity receives when a step uses the `activity` executor. The service must
 * treat `idempotencyKey` (`<chainId>/<stepId>`) as the identity of the side effect: a retried
 * activity carries the same key and must not act twice.
 */
export interface ServiceActivityInput {
  idempotencyKey: string;
  chainId: string;
  stepId: string;
  action: string;
  resource: ResourceRef;
  input: Record<string, JsonValue>;
  /**
   * The execution grant (contracts/grant.ts): a short-lived JWS the governor signed for exactly this call,
   * audience the service's task queue. Absent only in calls scheduled by workflows that ran before grants
   * existed; a service that requires grants (sdk/grant.ts `verifyServiceActivityGrant`) refuses those.
   */
  grant?: string;
}

/** The activity type the MCP gateway's worker registers (recorded in history: never rename). */
export const MCP_TOOL_CALL_ACTIVITY = 'mcpToolCall';

/** What the gateway's `mcpToolCall` activity receives for a step with the `mcp` executor. */
export interface McpToolCallInput extends ServiceActivityInput {
  /** The upstream's name in the gateway's configuration. */
  server: string;
  /** The upstream's own tool name; `input` holds the tool's arguments. */
  tool: string;
}
