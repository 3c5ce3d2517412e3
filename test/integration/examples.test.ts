import { runGovernorCli } from '../harness/cli';
import { setupGoverned, type Governed } from '../harness/governed';
import { testAddress } from '../harness/temporal';
import { runVerifyCli } from '../harness/verify-cli';

/**
 * The example chains (examples/chains/*.yaml) end to end, as a newcomer runs them after `npm start`:
 * `governor demo` against a governor worker on the default policy bundle, two `governor approve` votes
 * for the escalated one, `governor status`, and `governor verify` of all three. `.ci/run` also runs this
 * file on Node 24 LTS (stage node24).
 */

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned();
});
afterAll(async () => {
  await g?.stop();
});

/** The real CLI (`npm run build` first), against the test server with the worker's home and queue. */
const cli = (args: string[]) =>
  runGovernorCli(args, { TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: g.home, GOVERNOR_TASK_QUEUE: g.taskQueue });

interface DemoResult {
  file: string;
  chainId: string;
  status: string;
  reason?: string;
  pendingRoles?: string[];
}

it('demo: staging completes, the prod table drop is denied, the prod deploy waits for two sre-leads, then completes; all verify', async () => {
  const demo = await cli(['demo', '--json']);
  expect({ code: demo.code, stderr: demo.stderr }).toEqual({ code: 0, stderr: '' });
  const { results } = JSON.parse(demo.stdout) as { results: DemoResult[] };
  const byFile = Object.fromEntries(results.map((r) => [r.file, r]));
  expect(Object.keys(byFile)).toEqual(['deploy-staging.yaml', 'drop-prod-table.yaml', 'deploy-prod.yaml']);
  expect(byFile['deploy-staging.yaml']).toMatchObject({ status: 'Completed' });
  expect(byFile['drop-prod-table.yaml']).toMatchObject({ status: 'Denied' });
  expect(byFile['deploy-prod.yaml']).toMatchObject({ status: 'AwaitingApproval', pendingRoles: ['sre-lead'] });

  const denied = await cli(['status', byFile['drop-prod-table.yaml']!.chainId, '--json']);
  expect(denied.code).toBe(2);
  const deniedState = JSON.parse(denied.stdout) as {
    steps: { id: string; decision?: { determiningPolicies: string[] } }[];
  };
  expect(deniedState.steps[0]!.decision?.determiningPolicies).toEqual(['db-drop-table-prod-forbid']);

  const prod = byFile['deploy-prod.yaml']!.chainId;
  const first = await cli(['approve', prod, '--as', 'alice', '--roles', 'sre-lead', '--json']);
  expect(first.code).toBe(0);
  expect(JSON.parse(first.stdout)).toMatchObject({ counted: true, approval: { stillNeeded: 1 } });
  const second = await cli(['approve', prod, '--as', 'bob', '--roles', 'sre-lead', '--json']);
  expect(second.code).toBe(0);
  expect(JSON.parse(second.stdout)).toMatchObject({ counted: true, approval: { stillNeeded: 0 } });
  await g.waitFor(prod, (s) => s.status === 'Completed');
  const status = await cli(['status', prod, '--json']);
  expect(status.code).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ chainId: prod, status: 'Completed' });

  for (const r of results) {
    const verified = await runVerifyCli([r.chainId], { home: g.home, env: { TEMPORAL_ADDRESS: testAddress() } });
    const outcome = { file: r.file, code: verified.code, verdict: verified.json.verdict, ok: verified.json.ok };
    expect(outcome).toEqual({ file: r.file, code: 0, verdict: 'verified', ok: true });
  }
}, 180_000); // 16–26 s on a quiet machine; a CI run beside a benchmark took over 60 s

it('demo without a governor worker says so at once and starts nothing; the unreachable hint names governor up', async () => {
  const idle = `no-worker-${Date.now()}`;
  const demo = await runGovernorCli(['demo', '--task-queue', idle], {
    TEMPORAL_ADDRESS: testAddress(),
    GOVERNOR_HOME: g.home,
  });
  expect(demo.code).toBe(3);
  expect(demo.stderr).toContain(
    `no governor worker polls task queue ${idle}; start the governor with \`npx governor up\``,
  );
  const started = await g.client.workflow.count(`TaskQueue = "${idle}"`);
  expect(started.count).toBe(0);

  const down = await runGovernorCli(['status', 'any-chain'], {
    TEMPORAL_ADDRESS: '127.0.0.1:1',
    GOVERNOR_HOME: g.home,
  });
  expect(down.code).toBe(3);
  expect(down.stderr).toContain('Start the governor with `npx governor up` (dev server, UI and worker)');
});
