import fs from 'node:fs';
import path from 'node:path';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { chainIdOfSavedJson, historyFromSavedJson } from '../harness/history';

/**
 * The replay regression suite: histories recorded from real runs of every outcome (see
 * test/integration/replay-histories.test.ts) must replay with the current workflow code. A change
 * that breaks one is a workflow change that needs `patched()` or a new workflow type.
 */
const dir = path.join(__dirname, '..', 'replay', 'histories');
const files = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
// Agent sessions (workflows/session.ts), recorded by test/integration/replay-session-histories.test.ts.
const sessionDir = path.join(__dirname, '..', 'replay', 'sessions');
const sessionFiles = fs
  .readdirSync(sessionDir)
  .filter((f) => f.endsWith('.json'))
  .sort();
let code: string;

beforeAll(async () => {
  ({ code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  }));
}, 120_000);

const raw = (file: string): { events: Record<string, unknown>[] } =>
  JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as { events: Record<string, unknown>[] };
const load = (file: string) => historyFromSavedJson(raw(file));

describe('replay regression suite', () => {
  it('has a recorded history for every outcome', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'completed.json',
        'denied.json',
        'escalated-approved.json',
        'approval-deadline.json',
        'revoked.json',
        'coordinated.json',
        'continued-as-new-first-run.json',
        'continued-as-new-last-run.json',
      ]),
    );
    expect(sessionFiles).toEqual(expect.arrayContaining(['session-closed.json', 'session-idle.json']));
  });

  it.each(files)('replays %s with the current workflow code', async (file) => {
    await expect(
      Worker.runReplayHistory({ workflowBundle: { code } }, load(file), chainIdOfSavedJson(raw(file))),
    ).resolves.toBeUndefined();
  });

  it.each(sessionFiles)('replays session history %s with the current workflow code', async (file) => {
    const json = JSON.parse(fs.readFileSync(path.join(sessionDir, file), 'utf8')) as unknown;
    await expect(
      Worker.runReplayHistory({ workflowBundle: { code } }, historyFromSavedJson(json), chainIdOfSavedJson(json)),
    ).resolves.toBeUndefined();
  });

  it('fails on a deliberately altered history (an activity scheduled under another type)', async () => {
    const altered = raw('completed.json');
    const scheduled = altered.events.find((e) => e.activityTaskScheduledEventAttributes) as {
      activityTaskScheduledEventAttributes: { activityType: { name: string } };
    };
    expect(scheduled).toBeDefined();
    scheduled.activityTaskScheduledEventAttributes.activityType.name = 'somethingElse';
    // The replayer reports nondeterminism as a DeterminismViolationError naming the mismatch.
    await expect(
      Worker.runReplayHistory({ workflowBundle: { code } }, historyFromSavedJson(altered), chainIdOfSavedJson(altered)),
    ).rejects.toMatchObject({
      name: 'DeterminismViolationError',
      message: expect.stringContaining("Activity type of scheduled event 'somethingElse' does not match"),
    });
  });
});
