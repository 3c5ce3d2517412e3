import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { issueApproval } from '../../identity';
import { chainIdOfSavedJson, historyFromSavedJson } from '../harness/history';
import { sessionTestBundle } from '../harness/session-bundle';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * Runs agent sessions of every ending on the real server, saves each history and replays it with the
 * current workflow code. With RECORD_HISTORIES=1 (`npm run record-histories`) the histories are written
 * to test/replay/sessions/, which the regression suite test/unit/replay.test.ts replays: a later change
 * to workflows/session.ts that is not behind patched() fails there.
 */
const target =
  process.env.RECORD_HISTORIES === '1'
    ? path.join(__dirname, '..', 'replay', 'sessions')
    : fs.mkdtempSync(path.join(os.tmpdir(), 'governor-session-histories-'));

let g: Governed;
beforeAll(async () => {
  g = await setupGoverned({ policiesDir: sessionTestBundle('2s') });
}, 60_000);
afterAll(async () => {
  await g?.stop();
});

async function save(name: string, workflowId: string): Promise<string> {
  const history = await g.client.workflow.getHandle(workflowId).fetchHistory();
  fs.mkdirSync(target, { recursive: true });
  const file = path.join(target, `${name}.json`);
  fs.writeFileSync(file, `${JSON.stringify(history)}\n`);
  return file;
}

const doc = (id: string) => ({ type: 'Doc', id });

async function open(): Promise<{ sessionId: string; credential: string }> {
  const c = await g.creds();
  const { sessionId } = await g.gc.openSession({ workload: WORKLOAD, owner: 'team-agents', ...c });
  return { sessionId, credential: c.credential };
}

describe('session histories replay with the current workflow code', () => {
  const saved: string[] = [];

  it('records a closed session (executed, denied, approved steps) and an idle-timed-out one', async () => {
    const { sessionId, credential } = await open();
    const read = await g.gc.proposeStep(sessionId, {
      step: g.serviceStep('r1', 'doc.read', doc('notes')),
      credential,
    });
    expect(read).toMatchObject({ outcome: 'executed', stepId: 'r1' });
    const denied = await g.gc.proposeStep(sessionId, {
      step: g.serviceStep('s1', 'doc.read', doc('secrets')),
      credential,
    });
    expect(denied).toMatchObject({ outcome: 'denied', determiningPolicies: ['fs-secrets-forbid'] });
    const escalated = await g.gc.proposeStep(sessionId, {
      step: g.serviceStep('w1', 'doc.write', doc('protected')),
      credential,
    });
    expect(escalated).toMatchObject({ outcome: 'awaiting-approval', pendingRoles: ['sre-lead'] });
    const digest = (await g.gc.status(sessionId)).steps.find((s) => s.id === 'w1')!.approval!.stepDigest;
    for (const sub of ['alice', 'bob']) {
      const token = await issueApproval({
        home: g.home,
        sub,
        roles: ['sre-lead'],
        chainId: sessionId,
        stepId: 'w1',
        stepDigest: digest,
        decision: 'approve',
      });
      await g.gc.submitApproval(sessionId, token);
    }
    expect(await g.gc.awaitStep(sessionId, 'w1', { credential })).toMatchObject({ outcome: 'executed' });
    const closed = await g.gc.closeSession(sessionId, { reason: 'agent done' });
    expect(closed.status).toBe('Completed');
    saved.push(await save('session-closed', sessionId));

    // Idle for longer than the bundle's 2 s idle timeout: the session ends by itself.
    const idle = await open();
    expect(
      await g.gc.proposeStep(idle.sessionId, {
        step: g.serviceStep('r1', 'doc.read', doc('notes')),
        credential: idle.credential,
      }),
    ).toMatchObject({ outcome: 'executed' });
    const result = await g.client.workflow.getHandle(idle.sessionId).result();
    expect(result).toMatchObject({ chainId: idle.sessionId });
    saved.push(await save('session-idle', idle.sessionId));
  }, 120_000);

  it('replays every recorded session history without nondeterminism', async () => {
    expect(saved).toHaveLength(2);
    for (const file of saved) {
      const json = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
      await expect(
        Worker.runReplayHistory(
          { workflowsPath: require.resolve('../../workflows') },
          historyFromSavedJson(json),
          chainIdOfSavedJson(json),
        ),
      ).resolves.toBeUndefined();
    }
  }, 120_000);
});
