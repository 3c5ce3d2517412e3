import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ChainState } from '../../contracts/state';
import { issueApproval } from '../../identity';
import { eventually } from '../harness/eventually';
import { setupGoverned, type Governed } from '../harness/governed';
import { testAddress } from '../harness/temporal';

/**
 * examples/agent (issue 16 item 4) as a user runs it: the scripted agent loop talks MCP to `governor mcp`
 * on stdio, against a governor on the default bundle. It reads a note, writes a summary, is denied a
 * write outside its workspace (and sees why), and asks to overwrite a protected file, which two data
 * stewards approve; the file is then overwritten once. Needs `npm run build` (the CLI and the example).
 */

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned();
});
afterAll(async () => {
  await g?.stop();
});

it('reads, writes, is denied outside its workspace, and overwrites a protected file after two approvals', async () => {
  const child = spawn(process.execPath, [path.join(__dirname, '../../dist/examples/agent/agent.js')], {
    env: { ...process.env, TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: g.home, GOVERNOR_TASK_QUEUE: g.taskQueue },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    // The session's protected write waits for approvers.
    const waiting = async (): Promise<ChainState | undefined> => {
      const sessions = g.client.workflow.list({
        query: `WorkflowType = "governedSessionWorkflow" AND TaskQueue = "${g.taskQueue}" AND GovernorStatus = "AwaitingApproval"`,
      });
      for await (const s of sessions) return g.gc.status(s.workflowId);
      return undefined;
    };
    const state = await eventually('the protected write awaiting approval', waiting, {
      timeoutMs: 90_000,
      intervalMs: 500,
    });
    const step = state.steps.find((s) => s.approval?.outcome === 'pending')!;
    expect(step.action).toBe('fs.write');
    expect(step.resource).toMatch(/^File::"\/tmp\/agent-workspace-[^/]+\/protected\/config\.txt"$/);
    const workspace = step.resource.slice('File::"'.length, -'/protected/config.txt"'.length);
    expect(fs.readFileSync(path.join(workspace, 'protected', 'config.txt'), 'utf8')).toBe('mode=safe\n');
    for (const sub of ['stella', 'sam']) {
      const token = await issueApproval({
        home: g.home,
        sub,
        roles: ['data-steward'],
        chainId: state.chainId,
        stepId: step.id,
        stepDigest: step.approval!.stepDigest,
        decision: 'approve',
      });
      expect((await g.gc.submitApproval(state.chainId, token)).verdict.counted).toBe(true);
    }
    expect(await exited).toBe(0);
    expect(stderr).not.toContain('ERROR');
    expect(stdout).toContain('> read_file');
    expect(stdout).toContain('Q3 plan: ship the gateway');
    expect(stdout).toMatch(/ERROR: .*agents may write only inside the agent workspace/);
    expect(stdout).toContain('(the agent sees why and stays in its workspace)');
    expect(fs.readFileSync(path.join(workspace, 'summary.txt'), 'utf8')).toBe('Summary: Q3 plan: ship the gateway.\n');
    expect(fs.readFileSync(path.join(workspace, 'protected', 'config.txt'), 'utf8')).toBe('mode=fast\n');
    expect(
      fs.existsSync('/tmp/not-my-workspace.txt') && fs.readFileSync('/tmp/not-my-workspace.txt', 'utf8') === 'x',
    ).toBe(false);
    const ended = await g.client.workflow.getHandle(state.chainId).result();
    expect((ended as { status: string }).status).toBe('Completed');
  } finally {
    child.kill();
  }
}, 180_000);
