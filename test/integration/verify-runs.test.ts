import { runGovernorCli } from '../harness/cli';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GovernedChainInput } from '../../contracts/chain';
import type { ChainResult } from '../../contracts/state';
import { WORKFLOW_TYPE } from '../../contracts/status';
import { PROOF_FORMAT } from '../../audit/proof';
import {
  createReplayer,
  fetchChainHistories,
  verifyChain,
  type Replayer,
  type RunReport,
  type VerifyCheck,
  type VerifyReport,
} from '../../audit/verify';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { testAddress } from '../harness/temporal';
import { runVerifyCli } from '../harness/verify-cli';

/**
 * Issue 14, item 4: `governor verify` sees every run of a chain's workflow id, and `governor status`
 * says how a run really ended. The operator powers of the Temporal UI and CLI, used on real chains:
 * a reset that makes a completed chain run its steps a second time, a terminate while a chain waits
 * for approval, and a second execution under a chain's id after it ended.
 */

let g: Governed;
let replayer: Replayer;
beforeAll(async () => {
  g = await setupGoverned();
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
});
afterAll(async () => {
  await replayer?.close();
  await g?.stop();
});

/** A built-in step (noop executor, decided and run by `governStep`). */
const notify = (id: string) => ({
  id,
  action: 'notify',
  resource: { type: 'Channel', id: 'releases' },
  executor: { type: 'noop' },
});

async function verifyLive(chainId: string): Promise<VerifyReport> {
  return verifyChain({ histories: await fetchChainHistories(g.client, chainId), chainId, home: g.home, replayer });
}

const check = (report: { checks: VerifyCheck[] }, name: string): VerifyCheck =>
  report.checks.find((c) => c.name === name)!;

/** The real CLI (`npm run build` first), against the test server with the worker's home. */
const cli = (args: string[]) =>
  runGovernorCli(args, { TEMPORAL_ADDRESS: testAddress(), GOVERNOR_HOME: g.home, GOVERNOR_TASK_QUEUE: g.taskQueue });

/** Resets a run to its first completed workflow task (as `temporal workflow reset --type FirstWorkflowTask` does); returns the new run id and the reset point. */
async function resetToFirstTask(chainId: string, runId: string): Promise<{ newRunId: string; eventId: number }> {
  const history = await g.client.workflow.getHandle(chainId, runId).fetchHistory();
  const completed = history.events!.find((e) => e.workflowTaskCompletedEventAttributes)!;
  const eventId = Number(completed.eventId);
  const response = await g.client.workflowService.resetWorkflowExecution({
    namespace: 'default',
    workflowExecution: { workflowId: chainId, runId },
    reason: 'issue 14: an operator reset',
    workflowTaskFinishEventId: completed.eventId!,
    requestId: randomUUID(),
  });
  return { newRunId: response.runId, eventId };
}

describe('verify sees every run of the workflow id', () => {
  it('fails a completed chain that was reset so its steps ran again, naming the reset point and each step that ran twice', async () => {
    const handle = await g.gc.start(
      { workload: WORKLOAD, steps: [notify('first'), notify('second')] },
      await g.creds(),
    );
    const chainId = handle.workflowId;
    const baseRunId = handle.firstExecutionRunId;
    expect(((await handle.result()) as ChainResult).status).toBe('Completed');
    // Before the reset: one run, verified, listed as the chain's first run.
    const before = await verifyLive(chainId);
    expect(before.checks.filter((c) => !c.ok)).toEqual([]);
    expect(before.runList).toEqual([
      {
        runId: baseRunId,
        status: 'Completed',
        relation: 'first',
        detail: 'first run; run 1 of the chain',
        lineage: true,
      },
    ]);

    const { newRunId, eventId } = await resetToFirstTask(chainId, baseRunId);
    const again = (await g.client.workflow.getHandle(chainId, newRunId).result()) as ChainResult;
    // The reset run decided and executed both steps a second time.
    expect(again.status).toBe('Completed');
    expect(again.steps.map((s) => s.status)).toEqual(['completed', 'completed']);

    const report = await verifyLive(chainId);
    expect(report.verdict).toBe('failed');
    const runs = check(report, 'runs');
    expect(runs.ok).toBe(false);
    const point = `the reset of run ${baseRunId} at event ${eventId} (into run ${newRunId})`;
    expect(runs.problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^step first ran in two branches of ${escape(point)}: in run ${baseRunId} at event \\d+ and again in run ${newRunId} event \\d+$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^step second ran in two branches of ${escape(point)}: in run ${baseRunId} at event \\d+ and again in run ${newRunId} event \\d+$`,
        ),
      ),
    ]);
    // The reset run alone is a sound history: only the run list shows what happened.
    expect(report.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['runs']);
    expect(report.runList).toEqual<RunReport[]>([
      {
        runId: baseRunId,
        status: 'Completed',
        relation: 'first',
        detail: `first run; reset into run ${newRunId} at event ${eventId}; not part of the chain (superseded)`,
        lineage: false,
      },
      {
        runId: newRunId,
        status: 'Completed',
        relation: 'reset',
        detail: `reset from run ${baseRunId} at event ${eventId}; run 1 of the chain`,
        lineage: true,
      },
    ]);

    // The CLI: exit 2, both runs in the JSON report, and a proof that carries the run list and fails offline the same way.
    const proofFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-runs-')), 'proof.json');
    const live = await runVerifyCli([chainId, '--export', proofFile], {
      home: g.home,
      env: { TEMPORAL_ADDRESS: testAddress() },
    });
    expect(live.error).toBeUndefined();
    expect(live.code).toBe(2);
    expect(live.json).toMatchObject({ ok: false, runList: report.runList });
    const proof = JSON.parse(fs.readFileSync(proofFile, 'utf8')) as {
      format: string;
      runs: { runId: string; lineage?: number; history?: unknown }[];
    };
    expect(proof.format).toBe(PROOF_FORMAT);
    expect(proof.runs.map((r) => [r.runId, r.lineage, r.history !== undefined])).toEqual([
      [baseRunId, undefined, true],
      [newRunId, 0, false],
    ]);
    const offline = await runVerifyCli(['--proof', proofFile], {
      home: g.home,
      env: { TEMPORAL_ADDRESS: '127.0.0.1:1' },
    });
    expect(offline.code).toBe(2);
    expect((offline.json.checks as VerifyCheck[]).find((c) => c.name === 'runs')).toEqual(runs);

    // status: the latest run says it was made by a reset; the base run, asked for by id, is reported as reset (exit 2).
    const latest = await cli(['status', chainId, '--json']);
    expect(latest.code).toBe(0);
    expect(JSON.parse(latest.stdout)).toMatchObject({
      status: 'Completed',
      execution: { runId: newRunId, status: 'Completed', resetFrom: { runId: baseRunId, eventId }, notClean: false },
    });
    const base = await cli(['status', chainId, '--run', baseRunId]);
    expect(base.code).toBe(2);
    expect(base.stdout).toContain(`status Reset`);
    expect(base.stdout).toContain(`reset: run ${baseRunId} was reset by an operator into run ${newRunId}`);
  });

  it('reports a chain terminated while awaiting approval as Terminated (status exit 2) and not ending cleanly (verify fails)', async () => {
    const handle = await g.gc.start(
      { workload: WORKLOAD, steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })] },
      await g.creds(),
    );
    const chainId = handle.workflowId;
    await g.waitFor(chainId, (s) => s.status === 'AwaitingApproval');
    await handle.terminate('issue 14: an operator terminate');

    // The workflow's own answer has not changed: that is why status must ask the server.
    expect((await g.gc.status(chainId)).status).toBe('AwaitingApproval');
    const human = await cli(['status', chainId]);
    expect(human.code).toBe(2);
    expect(human.stdout).toMatch(new RegExp(`^chain ${chainId} {2}workload ${WORKLOAD} {2}status Terminated\\n`));
    expect(human.stdout).toContain(
      'execution Terminated: the chain did not end cleanly; its workflow was stopped outside the governor (it last reported AwaitingApproval',
    );
    const json = await cli(['status', chainId, '--json']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({
      chainId,
      status: 'Terminated',
      workflowStatus: 'AwaitingApproval',
      execution: { runId: handle.firstExecutionRunId, status: 'Terminated', notClean: true },
    });

    const report = await verifyLive(chainId);
    expect(report.verdict).toBe('failed');
    expect(check(report, 'runs').problems).toEqual([
      `the chain's last run ${handle.firstExecutionRunId} was terminated: the chain did not end cleanly`,
    ]);
    expect(check(report, 'checkpoint').detail).toBe('the workflow ended terminated without a checkpoint');
    expect(report.runList).toEqual([
      {
        runId: handle.firstExecutionRunId,
        status: 'Terminated',
        relation: 'first',
        detail: 'first run; run 1 of the chain',
        lineage: true,
      },
    ]);

    // `run --wait` follows a chain until it ends: a terminate ends the wait (exit 2) instead of waiting forever.
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'governor-wait-')), 'chain.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        workload: WORKLOAD,
        steps: [g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' })],
      }),
    );
    const waitedId = `wait-${randomUUID()}`;
    const waiting = cli(['run', file, '--as', WORKLOAD, '--chain-id', waitedId, '--wait']);
    await g.waitFor(waitedId, (s) => s.status === 'AwaitingApproval');
    await g.client.workflow.getHandle(waitedId).terminate('issue 14: an operator terminate');
    const waited = await waiting;
    expect(waited.code).toBe(2);
    expect(waited.stdout).toContain(`chain ${waitedId}  workload ${WORKLOAD}  status Terminated`);

    // list shows the execution status (visibility is eventually consistent: poll until the close is indexed).
    let row: { status: string; executionStatus: string } | undefined;
    for (let i = 0; i < 40 && row?.executionStatus !== 'Terminated'; i++) {
      const listed = await cli(['list', '--workload', WORKLOAD, '--json']);
      row = (JSON.parse(listed.stdout) as { chains: ({ chainId: string } & typeof row)[] }).chains.find(
        (c) => c!.chainId === chainId,
      );
      if (row?.executionStatus !== 'Terminated') await new Promise((r) => setTimeout(r, 250));
    }
    expect(row).toMatchObject({ status: 'Terminated', executionStatus: 'Terminated' });
  });

  it('lists both runs when a chain id is used again after the chain completed, and fails both', async () => {
    const first = await g.gc.start({ workload: WORKLOAD, steps: [notify('only')] }, await g.creds());
    const chainId = first.workflowId;
    expect(((await first.result()) as ChainResult).status).toBe('Completed');
    // GovernorClient never reuses an id; another client (the Temporal CLI, another SDK) can.
    const second = await g.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: g.taskQueue,
      workflowId: chainId,
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      args: [
        GovernedChainInput.parse({
          chainId,
          chain: { workload: WORKLOAD, steps: [notify('only')] },
          ...(await g.creds()),
        }),
      ],
    });
    expect(((await second.result()) as ChainResult).status).toBe('Completed');

    const report = await verifyLive(chainId);
    expect(report.verdict).toBe('failed');
    expect(check(report, 'runs').problems).toEqual([
      `run ${first.firstExecutionRunId} (Completed) is another execution of workflow id ${chainId}: a chain id names one chain`,
    ]);
    expect(report.runList).toEqual([
      {
        runId: first.firstExecutionRunId,
        status: 'Completed',
        relation: 'other-execution',
        detail: 'another execution of the same workflow id',
        lineage: false,
      },
      {
        runId: second.firstExecutionRunId,
        status: 'Completed',
        relation: 'first',
        detail: 'first run; run 1 of the chain',
        lineage: true,
      },
    ]);
    // Everything else about the newer chain holds.
    expect(report.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['runs']);
  });

  it('keeps a clean chain verified, with its one run listed, and refuses to verify without a run list', async () => {
    const r = await g.run({ workload: WORKLOAD, steps: [notify('one')] });
    const histories = await fetchChainHistories(g.client, r.chainId);
    const report = await verifyChain({ histories, chainId: r.chainId, home: g.home, replayer });
    expect(report.verdict).toBe('verified');
    expect(check(report, 'runs').detail).toBe(
      "1 run(s) of the workflow id, 1 in the chain; no executor ran outside the chain's runs",
    );
    // A copy of the histories without the run list cannot exclude a reset: fail closed.
    const bare = await verifyChain({ histories: [...histories], chainId: r.chainId, home: g.home, replayer });
    expect(bare.verdict).toBe('failed');
    expect(check(bare, 'runs').detail).toMatch(
      /^no run list: resets, terminations and other executions of the workflow id cannot be excluded/,
    );
  });
});

describe('run refuses oversized input before anything is sent', () => {
  it('a 20 MB chain file: exit 1 naming the limit, and no workflow started', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-big-'));
    const file = path.join(dir, 'big.json');
    const chainId = `big-${randomUUID()}`;
    fs.writeFileSync(
      file,
      JSON.stringify({
        workload: WORKLOAD,
        steps: [{ ...notify('a'), input: { blob: 'x'.repeat(20 * 1024 * 1024) } }],
      }),
    );
    const r = await cli(['run', file, '--as', WORKLOAD, '--chain-id', chainId]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file}: the chain file is 20,971,`);
    expect(r.stderr).toContain('the limit is 2,097,152 bytes (2 MiB) (nothing was sent)');
    await expect(g.client.workflow.getHandle(chainId).describe()).rejects.toMatchObject({
      name: 'WorkflowNotFoundError',
    });

    // Under the file limit but over the workflow input limit: refused by the client, naming the field.
    const medium = path.join(dir, 'medium.json');
    fs.writeFileSync(
      medium,
      JSON.stringify({ workload: WORKLOAD, steps: [{ ...notify('a'), input: { blob: 'x'.repeat(1536 * 1024) } }] }),
    );
    const m = await cli(['run', medium, '--as', WORKLOAD, '--chain-id', chainId]);
    expect(m.code).toBe(1);
    expect(m.stderr).toMatch(
      /the workflow input is 1,57\d,\d{3} bytes \(1\.5 MiB\) as JSON; the limit is 1,048,576 bytes \(1 MiB\); most of it is steps\.0\.input\.blob/,
    );
    await expect(g.client.workflow.getHandle(chainId).describe()).rejects.toMatchObject({
      name: 'WorkflowNotFoundError',
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
