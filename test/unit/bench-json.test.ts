import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/*
 * `npm run -s bench -- --json` is read by scripts: its stdout must be the JSON document and nothing
 * else (logs, progress and the worker child's output go to stderr). Runs the built bench entry
 * (`npm run build` first, as `npm test` does) on its fastest phase, `decision`, which needs no server.
 */

const ENTRY = path.join(__dirname, '..', '..', 'dist', 'bench', 'run.js');

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ENTRY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('bench --json', () => {
  let out: string;
  beforeAll(() => {
    if (!fs.existsSync(ENTRY)) throw new Error(`${ENTRY} is missing: run \`npm run build\` first`);
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-bench-json-'));
  });
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  it('prints only the JSON results on stdout; progress goes to stderr', async () => {
    const run = await runBench(['--json', '--quick', '--only=decision', `--out=${out}`]);
    expect(run.stderr).toContain('[bench] decision');
    expect(run.code).toBe(0);
    // The whole of stdout parses: no log line before or after the document.
    const results = JSON.parse(run.stdout) as {
      schema: string;
      decision?: { iterations: number; p50Micros: number };
      errors: unknown[];
    };
    expect(results.schema).toBe('temporal-governor/bench@1');
    expect(results.errors).toEqual([]);
    expect(results.decision?.iterations).toBe(1000);
    expect(results.decision?.p50Micros).toBeGreaterThan(0);
    // The same document is what the run wrote to --out.
    expect(JSON.parse(fs.readFileSync(path.join(out, 'latest.json'), 'utf8'))).toEqual(results);
  }, 180_000);
});
