import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

/**
 * A scripted agent loop (no LLM): it talks MCP to `governor mcp` on stdio, exactly as an AI agent host
 * would (README "Governing an AI agent"), and does what a model might decide, one step after the other:
 * read a note, write a summary, try to write outside its workspace (denied, with the reason), then ask
 * to overwrite a protected file (waits for two data stewards: `governor approve`).
 *
 *   npm run build && node dist/examples/agent/agent.js
 *
 * It needs a running governor (`npx governor up`) and development keys (`npx governor keys init`). It
 * creates its workspace under /tmp/agent-workspace-*, which the default bundle's files.cedar allows.
 */

const ROOT = path.resolve(__dirname, '../../..');
const governor = path.join(ROOT, 'bin/governor.js');

function text(result: CallToolResult): string {
  return result.content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n');
}

async function main(): Promise<void> {
  const workspace = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'agent-workspace-')));
  fs.writeFileSync(path.join(workspace, 'notes.txt'), 'Q3 plan: ship the gateway; fix the flaky test.\n');
  fs.mkdirSync(path.join(workspace, 'protected'));
  fs.writeFileSync(path.join(workspace, 'protected', 'config.txt'), 'mode=safe\n');
  const config = path.join(workspace, '..', `${path.basename(workspace)}.gateway.json`);
  fs.writeFileSync(
    config,
    JSON.stringify({
      upstreams: { fs: { command: path.join(ROOT, 'node_modules/.bin/mcp-server-filesystem'), args: [workspace] } },
      escalationWaitMs: 10 * 60_000,
    }),
  );
  // The agent's identity: a development credential and attestation for workload agent:coder. A real
  // agent host gets these from its identity provider and sets them in the gateway's environment.
  const issue = (what: string): string =>
    execFileSync(process.execPath, [governor, what, 'issue', '--sub', 'agent:coder'], { encoding: 'utf8' }).trim();
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    GOVERNOR_AGENT_CREDENTIAL: issue('token'),
    GOVERNOR_AGENT_ATTESTATION: issue('attest'),
  };

  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [governor, 'mcp', '--config', config],
    env,
    stderr: 'inherit',
  });
  const agent = new Client({ name: 'scripted-agent', version: '1.0.0' });
  await agent.connect(transport);
  const { tools } = await agent.listTools();
  console.log(`tools: ${tools.map((t) => t.name).join(', ')}`);

  const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> => {
    console.log(`\n> ${name} ${JSON.stringify(args).slice(0, 120)}`);
    const result = (await agent.callTool({ name, arguments: args }, undefined, {
      timeout: 15 * 60_000,
      resetTimeoutOnProgress: true,
      onprogress: (p) => console.log(`  … ${p.message ?? 'waiting'}`),
    })) as CallToolResult;
    console.log(`${result.isError ? '  ERROR: ' : '  '}${text(result)}`);
    return result;
  };

  // The loop a model would drive: each step decided after the previous result.
  const notes = await call('read_file', { path: path.join(workspace, 'notes.txt') });
  const summary = `Summary: ${text(notes).split(';')[0]}.\n`;
  await call('write_file', { path: path.join(workspace, 'summary.txt'), content: summary });
  const outside = await call('write_file', { path: path.join(os.tmpdir(), 'not-my-workspace.txt'), content: 'x' });
  if (outside.isError) console.log('  (the agent sees why and stays in its workspace)');
  console.log('\n  two data stewards approve with: npx governor approve <sessionId> --as stella --roles data-steward');
  console.log('                            and: npx governor approve <sessionId> --as sam --roles data-steward');
  await call('write_file', { path: path.join(workspace, 'protected', 'config.txt'), content: 'mode=fast\n' });
  await agent.close(); // the gateway closes the session: its final signed checkpoint
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
