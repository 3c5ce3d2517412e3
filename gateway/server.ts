import { randomBytes } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode as McpErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type ServerNotification,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { Step } from '../contracts/chain';
import { SessionEndedError } from '../sdk/client';
import type { McpToolRule } from '../policies/manifest';
import { mapToolCall, ruleFor } from './mapping';
import { governorNote } from './policy-notes';
import type { ProposeOutcome, SessionPort } from './session-port';
import type { ExposedTool } from './upstreams';
import { inSpan } from '../runtime/spans';

/**
 * The gateway's MCP server (SDK low-level `Server`): `tools/list` passes the upstreams' tools through
 * (schemas unchanged; a note on tools the governor always refuses), and every `tools/call` becomes a
 * proposed step of the agent's session, whose `mcp` executor calls the upstream once from the gateway's
 * worker. Credentials come from the connection (never from tool arguments) and are never logged.
 */

/** The agent behind one connection: its credential, attestation and session's workload. */
export interface AgentIdentity {
  credential: string;
  attestation: string;
  workload: string;
}

/** What the server needs from the upstreams (the real `Upstreams`, or a test double). */
export interface ToolCatalog {
  listTools(): Promise<ExposedTool[]>;
  resolve(name: string): { server: string; tool: string } | undefined;
}

export interface GatewayOptions {
  port: SessionPort;
  catalog: ToolCatalog;
  /** The bundle's `mcp.tools` rules. */
  rules: Readonly<Record<string, McpToolRule>>;
  /** True when policy can never allow the action (policy-notes.ts). */
  neverAllowed: (action: string) => boolean;
  /** The gateway's task queue (the `mcp` executor's). */
  taskQueue: string;
  /** Upstream call timeout; the step's executor timeout adds 5 s so the gateway's clear error comes first. */
  toolTimeoutMs: number;
  escalationWaitMs: number;
  /** Interval of progress notifications while a call waits for approvers (default 2 s). */
  progressIntervalMs?: number;
  /** Diagnostics (stderr): never receives credentials, arguments or outputs. */
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

/**
 * The agent's session, opened at its first tool call: one per MCP connection (or per agent id, shared
 * by that agent's connections). Step ids are `<random>-<n>`: unique even across gateway restarts.
 */
export class AgentSession {
  private opening: Promise<string> | undefined;
  private next = 1;
  private readonly prefix = `mcp-${randomBytes(4).toString('hex')}`;
  sessionId: string | undefined;

  constructor(
    private readonly port: SessionPort,
    readonly identity: AgentIdentity,
    private readonly summary = 'MCP agent session',
  ) {}

  nextStepId(): string {
    return `${this.prefix}-${this.next++}`;
  }

  /** The session id, opening the session once (a failed open is retried at the next call). */
  async id(): Promise<string> {
    if (this.sessionId) return this.sessionId;
    this.opening ??= this.port
      .openSession({
        workload: this.identity.workload,
        summary: this.summary,
        credential: this.identity.credential,
        attestation: this.identity.attestation,
      })
      .then(({ sessionId }) => (this.sessionId = sessionId))
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  /**
   * Forgets a session that has completed (idle timeout, or closed), so that the next call opens a new one
   * instead of being refused until the agent reconnects (a reconnect opens a new session too).
   */
  forget(sessionId: string): void {
    if (this.sessionId === sessionId) this.sessionId = undefined;
  }

  /** Closes the session if it was opened (the final signed checkpoint). */
  async close(reason: string): Promise<void> {
    const id = this.sessionId ?? (this.opening ? await this.opening.catch(() => undefined) : undefined);
    if (!id) return;
    this.sessionId = undefined;
    await this.port.closeSession(id, { reason });
  }
}

const text = (t: string, isError = false): CallToolResult => ({ content: [{ type: 'text', text: t }], isError });

/** A refusal the model sees (a tool error), with the governor's facts in `_meta`. */
function refusal(message: string, meta: Record<string, unknown> = {}): CallToolResult {
  return { ...text(message, true), _meta: { governor: meta } };
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** The tool result for a step's outcome. */
export function outcomeResult(sessionId: string, outcome: ProposeOutcome): CallToolResult {
  const meta: Record<string, unknown> = { sessionId, stepId: outcome.stepId, outcome: outcome.outcome };
  switch (outcome.outcome) {
    case 'executed': {
      const governor = { ...meta, receiptHash: outcome.receiptHash, outputDigest: outcome.outputDigest };
      const output = outcome.output as Partial<CallToolResult> | undefined;
      if (output && typeof output === 'object' && Array.isArray(output.content)) {
        return { ...(output as CallToolResult), _meta: { ...(output._meta ?? {}), governor } };
      }
      return {
        ...text(
          output === undefined
            ? `executed (step ${outcome.stepId}); the output was not recorded in full (digest ${outcome.outputDigest})`
            : JSON.stringify(output),
        ),
        _meta: { governor },
      };
    }
    case 'denied': {
      const policies = outcome.determiningPolicies.length
        ? ` (policies: ${outcome.determiningPolicies.join(', ')})`
        : '';
      return refusal(`denied by the governor: ${outcome.reason}${policies}`, {
        ...meta,
        reason: outcome.reason,
        determiningPolicies: outcome.determiningPolicies,
      });
    }
    case 'awaiting-approval': {
      const roles = outcome.pendingRoles?.length ? ` by ${outcome.pendingRoles.join(', ')}` : '';
      return refusal(
        `awaiting approval${roles}: step ${outcome.stepId} of session ${sessionId} is recorded and runs once approved; it has not run yet`,
        { ...meta, ...(outcome.pendingRoles ? { pendingRoles: outcome.pendingRoles } : {}) },
      );
    }
    case 'failed':
      return refusal(`the call failed (step ${outcome.stepId}): ${outcome.reason}`, {
        ...meta,
        reason: outcome.reason,
      });
  }
}

/** Builds the MCP server of one connection. `session` is this connection's (or this agent's) session. */
export function createGatewayServer(options: GatewayOptions, session: AgentSession): Server {
  const server = new Server(
    { name: 'temporal-governor-mcp-gateway', version: '1.0.0' },
    {
      capabilities: { tools: {} },
      instructions:
        'Every tool call is governed by Temporal Governor: it may be denied (the result says why) or wait for human approval.',
    },
  );
  const log = options.log ?? (() => undefined);
  let known: Map<string, ExposedTool> | undefined;
  const tools = async (refresh = false): Promise<Map<string, ExposedTool>> => {
    if (!known || refresh) known = new Map((await options.catalog.listTools()).map((t) => [t.name, t]));
    return known;
  };

  server.setRequestHandler(ListToolsRequestSchema, async () => {
    const list: Tool[] = [];
    for (const t of (await tools(true)).values()) {
      const rule = ruleFor(options.rules, t.server, t.tool);
      const note = !rule
        ? governorNote('no mapping rule in the policy bundle; every call of this tool is refused')
        : options.neverAllowed(rule.action)
          ? governorNote(`no policy ever permits action ${rule.action}; every call of this tool is denied`)
          : undefined;
      list.push(
        note ? { ...t.definition, description: `${t.definition.description ?? ''}\n\n${note}`.trim() } : t.definition,
      );
    }
    return { tools: list };
  });

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name } = request.params;
    const target = options.catalog.resolve(name);
    const exposed = target ? ((await tools()).get(name) ?? (await tools(true)).get(name)) : undefined;
    if (!target || !exposed) throw new McpError(McpErrorCode.InvalidParams, `unknown tool: ${name}`);
    const rule = ruleFor(options.rules, target.server, target.tool);
    if (!rule) {
      return refusal(`tool ${name} has no mapping rule in the governor's policy bundle; the call was not proposed`);
    }
    const mapped = mapToolCall(rule, name, request.params.arguments);
    if (!mapped.ok) return refusal(mapped.reason);

    let sessionId: string;
    try {
      sessionId = await session.id();
    } catch (err) {
      log('could not open the agent session', { error: messageOf(err) });
      return refusal(`the governor could not open the agent's session: ${messageOf(err)}`);
    }
    const step: Step = {
      id: session.nextStepId(),
      action: mapped.action,
      resource: mapped.resource,
      input: (request.params.arguments ?? {}) as Step['input'],
      context: mapped.context,
      executor: {
        type: 'mcp',
        taskQueue: options.taskQueue,
        server: target.server,
        tool: target.tool,
        timeoutMs: Math.min(options.toolTimeoutMs + 5000, 3_600_000),
      },
    };
    const { credential, attestation } = session.identity;
    // A span per tools/call (identifiers only: never the arguments, the result or a token); the proposal's
    // update carries its context, so the session's step (decision, execution) joins this trace.
    const attributes = {
      'mcp.tool': name,
      'mcp.upstream': target.server,
      'governor.session_id': sessionId,
      'governor.step_id': step.id,
      'governor.action': step.action,
      'governor.resource': `${step.resource.type}::${step.resource.id}`,
    };
    return inSpan('governor.tool_call', attributes, async (annotate) => {
      let outcome: ProposeOutcome;
      try {
        outcome = await options.port.proposeStep(sessionId, { step, credential, attestation });
      } catch (err) {
        log('proposal refused', { sessionId, stepId: step.id, error: messageOf(err) });
        annotate({ 'governor.outcome': 'refused' });
        // A session that ended by itself (idle timeout) or was closed is replaced at the next call; one that
        // was revoked or denied stays refused on this connection (an operator stopped it).
        if (err instanceof SessionEndedError && err.status === 'Completed') session.forget(sessionId);
        return refusal(`the governor refused the call: ${messageOf(err)}`, { sessionId, stepId: step.id });
      }
      log('step proposed', { sessionId, stepId: step.id, action: step.action, outcome: outcome.outcome });
      if (outcome.outcome === 'awaiting-approval') {
        outcome = await waitForApproval(options, session, sessionId, outcome, extra);
      }
      annotate({ 'governor.outcome': outcome.outcome });
      return outcomeResult(sessionId, outcome);
    });
  });
  return server;
}

interface CallExtra {
  signal: AbortSignal;
  _meta?: { progressToken?: string | number };
  sendNotification: (n: ServerNotification) => Promise<void>;
}

/**
 * Waits for approvers up to `escalationWaitMs`, sending progress notifications when the client asked for
 * them (a progress token). A client that goes away stops the wait; the step stays recorded either way.
 */
async function waitForApproval(
  options: GatewayOptions,
  session: AgentSession,
  sessionId: string,
  first: Extract<ProposeOutcome, { outcome: 'awaiting-approval' }>,
  extra: CallExtra,
): Promise<ProposeOutcome> {
  const deadline = Date.now() + options.escalationWaitMs;
  const interval = options.progressIntervalMs ?? 2000;
  const token = extra._meta?.progressToken;
  const { credential } = session.identity;
  let outcome: ProposeOutcome = first;
  let pending: Promise<{ done: ProposeOutcome }> | undefined;
  let progress = 0;
  while (outcome.outcome === 'awaiting-approval' && !extra.signal.aborted) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    if (token !== undefined) {
      const roles = outcome.pendingRoles?.length ? ` by ${outcome.pendingRoles.join(', ')}` : '';
      await extra
        .sendNotification({
          method: 'notifications/progress',
          params: {
            progressToken: token,
            progress: ++progress,
            message: `step ${outcome.stepId} of session ${sessionId} awaits approval${roles}`,
          },
        })
        .catch(() => undefined);
    }
    pending ??= options.port.awaitStep(sessionId, outcome.stepId, { credential }).then((done) => ({ done }));
    pending.catch(() => undefined);
    const tick = sleep(Math.min(remaining, interval), extra.signal).then(() => undefined);
    let settled: { done: ProposeOutcome } | undefined;
    try {
      settled = await Promise.race([pending, tick]);
    } catch (err) {
      // The step is still recorded and still awaits its approvers: say so, not that it failed.
      options.log?.('could not wait for an approval', { sessionId, stepId: outcome.stepId, error: messageOf(err) });
      break;
    }
    if (settled) {
      pending = undefined;
      outcome = settled.done;
      if (outcome.outcome === 'awaiting-approval') await tick; // awaitStep returned early: no busy loop
    }
  }
  return outcome;
}
