import type { Step } from '../../contracts/chain';
import type { McpToolCallInput } from '../../contracts/executor';
import type { ProposeOutcome, SessionPort } from '../../gateway/session-port';

/*
 * A stand-in for the governor behind the MCP gateway's SessionPort, for unit tests of the gateway's own
 * paths: it records every proposal and answers with a scripted decision; allowed steps run the gateway's
 * real `mcpToolCall` activity once. The integration test runs the real governor instead.
 */

export type Decide = (step: Step) => 'allow' | 'deny' | 'escalate';

/** The fake governor: records proposals; allowed steps run the gateway's real mcpToolCall activity once. */
export class FakeGovernor implements SessionPort {
  opened = 0;
  closed: string[] = [];
  proposals: { sessionId: string; step: Step; credential: string }[] = [];
  /** Escalated steps, released by `approve`. */
  private readonly waiting = new Map<
    string,
    { step: Step; release: (o: ProposeOutcome) => void; done: Promise<ProposeOutcome> }
  >();

  constructor(
    private readonly run: (input: McpToolCallInput) => Promise<unknown>,
    public decide: Decide = () => 'allow',
  ) {}

  async openSession(): Promise<{ sessionId: string }> {
    this.opened++;
    return { sessionId: `session-${this.opened}` };
  }

  private async execute(sessionId: string, step: Step): Promise<ProposeOutcome> {
    if (step.executor.type !== 'mcp') throw new Error('not an mcp step');
    try {
      const output = await this.run({
        idempotencyKey: `${sessionId}/${step.id}`,
        chainId: sessionId,
        stepId: step.id,
        action: step.action,
        resource: step.resource,
        input: step.input,
        server: step.executor.server,
        tool: step.executor.tool,
      });
      return { outcome: 'executed', stepId: step.id, output, outputDigest: 'd', receiptHash: 'h' };
    } catch (err) {
      return { outcome: 'failed', stepId: step.id, reason: (err as Error).message };
    }
  }

  async proposeStep(sessionId: string, p: { step: Step; credential: string }): Promise<ProposeOutcome> {
    this.proposals.push({ sessionId, step: p.step, credential: p.credential });
    const verdict = this.decide(p.step);
    if (verdict === 'deny') {
      return {
        outcome: 'denied',
        stepId: p.step.id,
        reason: 'agents may write only inside the agent workspace',
        determiningPolicies: ['fs-write-outside-workspace-forbid'],
      };
    }
    if (verdict === 'escalate') {
      let release!: (o: ProposeOutcome) => void;
      const done = new Promise<ProposeOutcome>((r) => (release = r));
      this.waiting.set(p.step.id, { step: p.step, release, done });
      return { outcome: 'awaiting-approval', stepId: p.step.id, pendingRoles: ['data-steward'] };
    }
    return this.execute(sessionId, p.step);
  }

  async awaitStep(_sessionId: string, stepId: string): Promise<ProposeOutcome> {
    const w = this.waiting.get(stepId);
    if (!w) throw new Error(`no step ${stepId}`);
    return w.done;
  }

  async approve(sessionId: string, stepId: string): Promise<void> {
    const w = this.waiting.get(stepId)!;
    w.release(await this.execute(sessionId, w.step));
  }

  async closeSession(sessionId: string): Promise<never> {
    this.closed.push(sessionId);
    return undefined as never;
  }
}
