import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DefaultLogger, Runtime, bundleWorkflowCode } from '@temporalio/worker';
import { initKeys, loadPublicJwks } from '../../identity';
import { canonicalJson } from '../../core/canonical';
import {
  createReplayer,
  formatReport,
  verifyChain,
  type HistoryJson,
  type Replayer,
  type VerifyReport,
} from '../../audit/verify';

/**
 * `verifyChain` on the committed histories of test/replay/histories (recorded from real runs). Their
 * receipts were signed by a test home's key that no longer exists, so with any key we hold the
 * signatures fail — and the links, hashes, digests, checkpoint and bindings must still hold.
 * Mutations of a recorded payload must be named by the check that covers them. (Whether these
 * histories replay with the current workflow code is the replay regression suite's job,
 * test/unit/replay.test.ts; verify's replay check runs on live chains in test/integration/verify-*.)
 */
const dir = path.join(__dirname, '..', 'replay', 'histories');
const load = (file: string): HistoryJson => JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as HistoryJson;
let replayer: Replayer;
try {
  // The replay worker logs its lifecycle at INFO, Core a failed replay at WARN: the reports say it.
  Runtime.install({
    logger: new DefaultLogger('WARN'),
    telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
  });
} catch {
  // already installed in this jest worker
}
let trusted: ReturnType<typeof loadPublicJwks>;

beforeAll(async () => {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
  replayer = createReplayer({ workflowBundle: { code } });
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-verify-unit-'));
  await initKeys(home, { names: ['receipt'] });
  trusted = loadPublicJwks(home, 'receipt');
}, 120_000);
afterAll(async () => {
  await replayer?.close();
});

const check = (report: VerifyReport, name: string) => report.checks.find((c) => c.name === name)!;
const verify = (histories: HistoryJson[]) =>
  verifyChain({ histories, trustedReceiptJwks: trusted, bundles: () => undefined, replayer });

/** The decoded local-activity results of `type`, in history order. */
function localResults(history: HistoryJson, type: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const e of history.events as Record<
    string,
    Record<string, Record<string, Record<string, { data: string }[]>>>
  >[]) {
    const details = e.markerRecordedEventAttributes?.details;
    if (!details?.result) continue;
    const meta = JSON.parse(Buffer.from(details.data!.payloads![0]!.data, 'base64').toString('utf8')) as {
      activity_type: string;
    };
    if (meta.activity_type === type)
      out.push(
        JSON.parse(Buffer.from(details.result.payloads![0]!.data, 'base64').toString('utf8')) as Record<
          string,
          unknown
        >,
      );
  }
  return out;
}

/** Decodes, edits and re-encodes the JSON payload of the `n`-th local-activity result of `type`. */
function editLocalResult(
  history: HistoryJson,
  type: string,
  n: number,
  edit: (result: Record<string, unknown>) => void,
): void {
  const events = history.events as Record<string, Record<string, Record<string, Record<string, { data: string }[]>>>>[];
  let seen = 0;
  for (const e of events) {
    const details = e.markerRecordedEventAttributes?.details;
    if (!details?.result) continue;
    const meta = JSON.parse(Buffer.from(details.data!.payloads![0]!.data, 'base64').toString('utf8')) as {
      activity_type: string;
    };
    if (meta.activity_type !== type || seen++ !== n) continue;
    const payload = details.result.payloads![0]!;
    const result = JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8')) as Record<string, unknown>;
    edit(result);
    payload.data = Buffer.from(JSON.stringify(result)).toString('base64');
    return;
  }
  throw new Error(`no ${type} result #${n}`);
}

describe('verifyChain on recorded histories', () => {
  it.each([
    'completed.json',
    'denied.json',
    'escalated-approved.json',
    'approval-deadline.json',
    'revoked.json',
    'coordinated.json',
  ])(
    '%s: links, hashes, digests, checkpoint and bindings hold; only what the foreign key signs fails',
    async (file) => {
      const report = await verify([load(file)]);
      expect(check(report, 'history')).toMatchObject({ ok: true });
      expect(check(report, 'checkpoint')).toMatchObject({ ok: true });
      // Coordination requests are sealed with the receipt key too: only those seals may fail here.
      const bindings = check(report, 'bindings');
      const slotSeals = (bindings.problems ?? []).filter((p) =>
        /^slot request at event \d+ of run 1: its seal is not valid with the trusted receipt key$/.test(p),
      );
      expect(bindings.problems ?? []).toEqual(slotSeals);
      if (file === 'coordinated.json') expect(slotSeals.length).toBeGreaterThan(0);
      const receipts = check(report, 'receipts');
      expect(receipts.ok).toBe(false);
      expect(receipts.problems).toHaveLength(report.receipts);
      for (const p of receipts.problems!) expect(p).toMatch(/: signature is not valid with the trusted receipt key$/);
      // The bundle is not available here: a missing bundle is a failed check, never a pass.
      expect(check(report, 'decisions').ok).toBe(report.decisions === 0 || report.bundleDigests.length === 0);
      expect(report.verdict).toBe('failed');
      expect(['Completed', 'Denied', 'Revoked']).toContain(report.status);
    },
  );

  it('links the receipts of a continued-as-new chain across its runs', async () => {
    const report = await verify([load('continued-as-new-first-run.json'), load('continued-as-new-last-run.json')]);
    expect(report.runs).toBe(2);
    expect(check(report, 'history')).toMatchObject({ ok: true });
    expect(check(report, 'checkpoint')).toMatchObject({ ok: true });
    expect(check(report, 'bindings')).toMatchObject({ ok: true });
    for (const p of check(report, 'receipts').problems!) expect(p).toMatch(/signature is not valid/);
    expect(report.status).toBe('Completed');
  });

  it('checks the checkpoint that closes a continued run against the run that continued', async () => {
    const first = load('continued-as-new-first-run.json');
    const checkpoints = localResults(first, 'recordReceipt').filter(
      (r) => (r.receipt as { kind: string }).kind === 'checkpoint',
    );
    expect(checkpoints).toHaveLength(1);
    editLocalResult(first, 'recordReceipt', localResults(first, 'recordReceipt').length - 1, (r) => {
      (r.payload as { nextStep: number }).nextStep += 1;
    });
    const report = await verify([first, load('continued-as-new-last-run.json')]);
    expect(check(report, 'checkpoint').problems).toEqual([
      expect.stringMatching(/^receipt \d+: the checkpoint of run 1 does not match the run that continued$/),
    ]);
    expect(check(report, 'receipts').problems).toEqual(
      expect.arrayContaining([expect.stringMatching(/\(checkpoint\): digest does not match what history recorded$/)]),
    );
  });

  it('refuses a continued chain whose first run is missing, or whose runs are out of order', async () => {
    const missing = await verify([load('continued-as-new-last-run.json')]);
    expect(check(missing, 'history').problems).toEqual(
      expect.arrayContaining([
        'run 1 continues an earlier run that is missing',
        'run 1 resumes a chain (earlier runs are missing)',
      ]),
    );
    const swapped = await verify([load('continued-as-new-last-run.json'), load('continued-as-new-first-run.json')]);
    expect(check(swapped, 'history').ok).toBe(false);
    expect(check(swapped, 'receipts').problems!.some((p) => p.includes('out of sequence'))).toBe(true);
  });

  it('names a changed decision: its receipt digest no longer matches', async () => {
    const history = load('completed.json');
    editLocalResult(history, 'authorize', 0, (r) => {
      (r.decision as { effect: string }).effect = 'deny';
    });
    const report = await verify([history]);
    const receipts = check(report, 'receipts').problems!;
    expect(receipts).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^receipt 1 \(decision, step deploy\): digest does not match what history recorded$/),
      ]),
    );
    expect(receipts.filter((p) => p.includes('digest'))).toHaveLength(1);
  });

  it('names a changed service outcome that no receipt field covers directly: the binding to the activity result', async () => {
    const history = load('completed.json');
    const events = history.events as Record<string, { result?: { payloads: { data: string }[] } }>[];
    const completed = events.find((e) => e.activityTaskCompletedEventAttributes)!.activityTaskCompletedEventAttributes!;
    const result = JSON.parse(Buffer.from(completed.result!.payloads[0]!.data, 'base64').toString('utf8')) as unknown;
    completed.result!.payloads[0]!.data = Buffer.from(JSON.stringify({ tampered: result })).toString('base64');
    const report = await verify([history]);
    expect(check(report, 'bindings').problems).toEqual([
      expect.stringMatching(/the recorded outcome differs from what the service activity returned$/),
    ]);
    expect(check(report, 'receipts').problems!.every((p) => p.includes('signature'))).toBe(true);
  });

  it('rejects a history that is not in the stable form, and one with a broken event sequence', async () => {
    const extra = load('denied.json');
    (extra.events as Record<string, unknown>[])[2]!.unexpected = 1;
    expect(check(await verify([extra]), 'history').problems).toEqual(
      expect.arrayContaining(['run 1: not in the stable proto3 JSON form (it does not round-trip)']),
    );

    const gap = load('denied.json');
    (gap.events as unknown[]).splice(3, 1);
    const report = await verify([gap]);
    expect(check(report, 'history').problems).toEqual(
      expect.arrayContaining([expect.stringMatching(/^run 1: event 4: eventId "5"/)]),
    );
    expect(check(report, 'replay').detail).toBe('run 1: not replayed (the history is malformed)');
  });

  it('prints one line per check and the verdict', async () => {
    // Recorded before decisions named the revocation lists they saw (a later history adds that line).
    const report = await verify([load('v2-denied.json')]);
    const lines = formatReport(report).split('\n');
    expect(lines).toHaveLength(report.checks.length + 1);
    expect(lines[0]).toMatch(/^ok {4}history {5}1 run\(s\), \d+ events of chain /);
    expect(lines.at(-1)).toMatch(
      /^NOT VERIFIED: chain \S+ \(Denied; 1 run\(s\), \d+ receipt\(s\), \d+ decision\(s\)\)$/,
    );
    expect(canonicalJson(JSON.parse(JSON.stringify(report)))).toBe(canonicalJson(report));
  });
});
