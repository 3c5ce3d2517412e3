import fs from 'node:fs';
import path from 'node:path';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { historyFromSavedJson } from '../harness/history';

/**
 * Coordinator histories recorded from real runs (test/integration/coordinator-histories.test.ts) must
 * replay with the current workflow code. `v1-coordinator-*` were recorded before the
 * `coordinator-validated-input-carried-deadlines` patch: a holder carried across continue-as-new,
 * a tie opened and expired, a malformed signal, a release. `coordinator-*` were recorded with it.
 */
const dir = path.join(__dirname, '..', 'replay', 'coordinator');
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
let code: string;

beforeAll(async () => {
  ({ code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  }));
}, 120_000);

const load = (file: string): { workflowId: string; history: unknown } =>
  JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as { workflowId: string; history: unknown };

describe('coordinator replay regression suite', () => {
  it('has histories recorded before and after the validation patch', () => {
    expect(files.filter((f) => f.startsWith('v1-coordinator-')).length).toBeGreaterThanOrEqual(3);
    expect(files.filter((f) => f.startsWith('coordinator-')).length).toBeGreaterThanOrEqual(3);
  });

  it.each(files)('replays %s with the current workflow code', async (file) => {
    const { workflowId, history } = load(file);
    await expect(
      Worker.runReplayHistory({ workflowBundle: { code } }, historyFromSavedJson(history), workflowId),
    ).resolves.toBeUndefined();
  });
});
