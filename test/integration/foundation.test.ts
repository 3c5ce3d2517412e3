import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { GovernorStatusKey, SEARCH_ATTRIBUTES_FOR_CLI } from '../../contracts/search-attributes';
import { assertPortFree } from '../../workers/dev-server';
import { testAddress } from '../harness/temporal';

const root = path.join(__dirname, '..', '..');
const cli = path.join(root, 'bin', 'governor.js');

/** Runs the built CLI (npm install built dist/) and returns its exit code and output. */
function governor(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('foundation: the real Temporal dev server', () => {
  it('answers and has every governor search attribute registered with its type', async () => {
    const connection = await Connection.connect({ address: testAddress() });
    try {
      const info = await connection.workflowService.getSystemInfo({});
      expect(info.capabilities?.upsertMemo).toBe(true);
      const client = new Client({ connection });
      const listed = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
      const custom = listed.customAttributes ?? {};
      // temporal.api.enums.v1.IndexedValueType: 2 = KEYWORD, 5 = BOOL, 7 = KEYWORD_LIST
      const expected: Record<string, number> = {};
      for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES_FOR_CLI))
        expected[name] = { Keyword: 2, Bool: 5, KeywordList: 7 }[type];
      for (const [name, type] of Object.entries(expected)) expect({ name, type: custom[name] }).toEqual({ name, type });
      expect(client.options.namespace).toBe('default');
      expect(GovernorStatusKey.name).toBe('GovernorStatus');
    } finally {
      await connection.close();
    }
  });

  it('reports a taken port clearly', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      await expect(assertPortFree('127.0.0.1', port, 'Temporal frontend')).rejects.toMatchObject({
        code: 'GOVERNOR_PORT_IN_USE',
        message: expect.stringContaining(`port 127.0.0.1:${port} is already in use`),
      });
      const r = governor(['server', '--port', String(port), '--headless']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`port 127.0.0.1:${port} is already in use`);
    } finally {
      blocker.close();
    }
  });

  it('exits 3 with one clear message when Temporal cannot be reached', () => {
    const r = governor(['worker'], {
      TEMPORAL_ADDRESS: '127.0.0.1:1',
      GOVERNOR_HOME: fs.mkdtempSync(path.join(os.tmpdir(), 'gov-')),
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('cannot reach Temporal at 127.0.0.1:1');
    const list = governor(['list', '--json'], { TEMPORAL_ADDRESS: '127.0.0.1:1' });
    expect(list.code).toBe(3);
    expect(JSON.parse(list.stdout.trim())).toMatchObject({
      code: 'GOVERNOR_TEMPORAL_UNREACHABLE',
      field: 'TEMPORAL_ADDRESS',
    });
  });

  it('says clearly when no Temporal binary exists and no Go toolchain can build one', () => {
    const tools = fs.mkdtempSync(path.join(os.tmpdir(), 'gov-tools-'));
    const env = { PATH: path.dirname(process.execPath), GOVERNOR_TOOLS_DIR: tools, TEMPORAL_CLI_PATH: '' };
    const r = governor(['server', '--install-only'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no Go toolchain to build one');
    expect(fs.readdirSync(tools)).toEqual([]);
  });

  it('rejects a bad port setting naming the flag', () => {
    const r = governor(['server', '--port', '99999']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--port: must be a port number');
  });
});
