import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SubmitApprovalResult } from '../../contracts/approval';
import { ChainResult, ChainState } from '../../contracts/state';
import { mintInteropTokens, type InteropTokens } from '../interop/mint';
import { schemaErrors } from '../harness/published-schemas';
import { makeHome, startGovernorWorker, testAddress, uniqueQueue } from '../harness/temporal';
import { runVerifyCli } from '../harness/verify-cli';

/**
 * A Go service with only the Temporal Go SDK, docs/other-sdks.md and the published schemas, against a
 * real governor worker (default bundle) on the shared test server: `go test` in test/interop/go starts
 * the documented staging chain, an escalated chain approved by a signal and an update, malformed votes
 * and malformed starts, and 40 chains (half denied, half completing) polled with the `status` query while
 * they close and after (see interop_test.go). Then every valid chain it started must pass
 * `governor verify`, and the results it received must match the published JSON Schemas.
 * Go is required: CI installs it (.ci/run); without it this test fails, it never skips.
 */

const GO_DIR = path.join(__dirname, '..', 'interop', 'go');
const GO_TIMEOUT_MS = 12 * 60_000; // a cold module download and build of the SDK takes minutes on a small machine

interface GoOutput {
  validChains: string[] | null;
  samples: Record<string, unknown>;
  rejected: { case: string; chainId: string; message: string }[] | null;
  /** TestChainsPolledWhileTheyClose: chains polled, status queries answered, histories a query cut. */
  polled?: { chains: number; queries: number; cutAfterLocalActivity: number };
}

function findGo(): string | undefined {
  const candidates = [
    ...(process.env.PATH ?? '')
      .split(path.delimiter)
      .filter(Boolean)
      .map((dir) => path.join(dir, 'go')),
    '/usr/local/go/bin/go',
  ];
  return candidates.find((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

function run(
  cmd: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

let home: string;
let tokens: InteropTokens;
let go: { code: number | null; output: string };
let produced: GoOutput;
let stopWorker: (() => Promise<void>) | undefined;

beforeAll(async () => {
  const goBin = findGo();
  if (!goBin)
    throw new Error(
      'Go is required for the interop test (CI installs it): no `go` on PATH and no /usr/local/go/bin/go',
    );
  home = await makeHome();
  const taskQueue = uniqueQueue('governor');
  // A workflow cache, as in test/harness/governed.ts: votes arrive while local activities run.
  const worker = await startGovernorWorker({ home, taskQueue, maxCachedWorkflows: 100 });
  stopWorker = () => worker.stop();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-interop-'));
  tokens = await mintInteropTokens(home, `interop-${randomUUID().slice(0, 8)}`);
  const tokensFile = path.join(dir, 'tokens.json');
  fs.writeFileSync(tokensFile, JSON.stringify(tokens), { mode: 0o600 });
  const outFile = path.join(dir, 'out.json');
  go = await run(goBin, ['test', '-count=1', '-v', '-timeout', '10m', './...'], {
    cwd: GO_DIR,
    env: {
      ...process.env,
      PATH: `${path.dirname(goBin)}${path.delimiter}${process.env.PATH ?? ''}`,
      GOVERNOR_INTEROP_ADDRESS: testAddress(),
      GOVERNOR_INTEROP_TASK_QUEUE: taskQueue,
      GOVERNOR_INTEROP_TOKENS: tokensFile,
      GOVERNOR_INTEROP_OUT: outFile,
    },
  });
  produced = fs.existsSync(outFile)
    ? (JSON.parse(fs.readFileSync(outFile, 'utf8')) as GoOutput)
    : { validChains: null, samples: {}, rejected: null };
}, GO_TIMEOUT_MS + 60_000);

afterAll(async () => {
  await stopWorker?.();
});

describe('a Go client of the governor (test/interop/go)', () => {
  it('passes: the documented staging chain and the escalated chain complete, every malformed vote and start is refused, chains polled while they close answer every status query', () => {
    const ran = [
      'TestStagingChainAsDocumented',
      'TestEscalatedChainApprovedFromGo',
      'TestMalformedInputsRejected',
      'TestChainsPolledWhileTheyClose',
    ].map((name) => [name, new RegExp(`^--- (PASS|FAIL|SKIP): ${name} `, 'm').exec(go.output)?.[1] ?? 'did not run']);
    // The Go test's failure lines (its t.Logf lines of refused inputs too, when it failed).
    const failures =
      go.code === 0
        ? []
        : go.output.split('\n').filter((line) => /^\s*(--- FAIL|FAIL|panic:|\S+\.go:\d+: )/.test(line));
    expect({ exit: go.code, tests: Object.fromEntries(ran), failures }).toEqual({
      exit: 0,
      tests: {
        TestStagingChainAsDocumented: 'PASS',
        TestEscalatedChainApprovedFromGo: 'PASS',
        TestMalformedInputsRejected: 'PASS',
        TestChainsPolledWhileTheyClose: 'PASS',
      },
      failures: [],
    });
    expect(produced.rejected?.length).toBeGreaterThanOrEqual(10);
    // How many histories the status queries cut after a local activity depends on timing: reported, not required.
    process.stderr.write(
      `interop-go: ${produced.polled?.chains} chains polled while they closed answered ${produced.polled?.queries} status queries; ` +
        `${produced.polled?.cutAfterLocalActivity} histories cut after a local activity by a query\n`,
    );
  });

  it('`governor verify` passes for every valid chain the Go program started (each replays its history)', async () => {
    expect(produced.validChains?.slice().sort()).toEqual(
      [tokens.prod.chainId, tokens.staging.chainId, ...tokens.polled.map((p) => p.chainId)].sort(),
    );
    for (const chainId of produced.validChains ?? []) {
      const r = await runVerifyCli([chainId], { home, env: { TEMPORAL_ADDRESS: testAddress() } });
      const failedChecks = (
        (r.json.checks ?? []) as { name: string; ok: boolean; problems?: string[]; detail?: string }[]
      ).filter((c) => !c.ok);
      expect({ chainId, code: r.code, verdict: r.json.verdict, failedChecks, error: r.error }).toEqual({
        chainId,
        code: 0,
        verdict: 'verified',
        failedChecks: [],
        error: undefined,
      });
    }
  });

  it('what Go received matches the published JSON Schemas (status, submitApproval result, chain results)', () => {
    const checks: [string, string, { safeParse(v: unknown): { success: boolean } }][] = [
      ['stagingResult', 'chain-result.schema.json', ChainResult],
      ['prodResult', 'chain-result.schema.json', ChainResult],
      ['statusAwaitingApproval', 'chain-state.schema.json', ChainState],
      ['submitApprovalResult', 'submit-approval-result.schema.json', SubmitApprovalResult],
    ];
    for (const [sample, file, zod] of checks) {
      const doc = produced.samples[sample];
      expect({
        sample,
        present: doc !== undefined,
        errors: doc === undefined ? [] : schemaErrors(file, doc),
        zod: doc === undefined || zod.safeParse(doc).success,
      }).toEqual({ sample, present: true, errors: [], zod: true });
    }
  });
});
