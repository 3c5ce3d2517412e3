import { canonicalJson } from '../../../core/canonical';
import { Activity } from '../../../core/history';
import { FINAL_CHECKPOINT_SOURCES } from '../../../core/receipts';
import { TERMINAL_STATUSES } from '../../../contracts/status';
import type { DecodedRun } from '../decode';
import { CheckName, Problems, type VerifyCheck } from '../report';
import { isRecord } from '../util';
import type { ChainReceipt } from './receipts';

/**
 * The `checkpoint` check: a completed workflow ends with a checkpoint receipt that its result names
 * (receiptHead, checkpoint signature) and whose payload matches its status and reason; every run that
 * continued as new ends with a checkpoint naming the next run. Returns the chain's final status.
 */
export function checkCheckpoint(
  runs: DecodedRun[],
  chain: ChainReceipt[],
): { check: VerifyCheck; status: string | null } {
  const problems = new Problems();
  const last = runs[runs.length - 1];
  const lastReceipt = chain[chain.length - 1];
  // A checkpoint ends the chain and every run that continued as new, and nothing else.
  for (const run of runs.slice(0, -1)) {
    const own = chain.filter((c) => c.entry.run === run.index);
    const end = own[own.length - 1];
    const next = runs[run.index + 1]?.input?.resume;
    const cp = end && isRecord(end.entry.result.payload) ? end.entry.result.payload : {};
    if (!end || end.receipt.kind !== 'checkpoint' || end.entry.source !== Activity.recordReceipt)
      problems.add(`run ${run.index + 1} continued as new without a checkpoint`);
    else if (
      cp.continuedAsNew !== true ||
      cp.nextStep !== next?.nextStep ||
      cp.run !== run.index + 1 ||
      next?.runs !== run.index + 2
    ) {
      problems.add(
        `receipt ${end.receipt.seq}: the checkpoint of run ${run.index + 1} does not match the run that continued`,
      );
    }
  }
  chain.slice(0, -1).forEach((c, i) => {
    const endsRun = chain[i + 1]!.entry.run !== c.entry.run && runs[c.entry.run]?.closure?.type === 'continued-as-new';
    if (c.receipt.kind === 'checkpoint' && !endsRun)
      problems.add(`receipt ${c.receipt.seq}: a checkpoint before the end of the chain or of a run`);
  });
  if (!last) {
    problems.add('no run');
    return { check: problems.check(CheckName.Checkpoint, ''), status: null };
  }
  const closure = last.closure;
  if (!closure) {
    if (lastReceipt?.receipt.kind === 'checkpoint') problems.add('a checkpoint, yet the workflow is still running');
    return {
      check: problems.check(
        CheckName.Checkpoint,
        `chain still running: ${chain.length} receipt(s) so far, no checkpoint yet`,
      ),
      status: 'Running',
    };
  }
  if (closure.type !== 'completed') {
    problems.add(`the workflow ended ${closure.type} without a checkpoint`);
    return { check: problems.check(CheckName.Checkpoint, ''), status: closure.type };
  }
  if (
    !lastReceipt ||
    lastReceipt.receipt.kind !== 'checkpoint' ||
    !FINAL_CHECKPOINT_SOURCES.includes(lastReceipt.entry.source)
  ) {
    problems.add('the chain completed, but its last receipt is not a checkpoint');
    return { check: problems.check(CheckName.Checkpoint, ''), status: null };
  }
  const payload = lastReceipt.entry.result.payload;
  const result = closure.result;
  const cp = isRecord(payload) ? payload : {};
  const status = typeof cp.status === 'string' ? cp.status : null;
  if (status === null || !(TERMINAL_STATUSES as readonly string[]).includes(status))
    problems.add('the checkpoint names no final status');
  if (!isRecord(result)) {
    problems.add('the workflow result is missing');
  } else {
    const head = lastReceipt.receipt;
    if (
      !isRecord(result.receiptHead) ||
      canonicalJson(result.receiptHead) !== canonicalJson({ seq: head.seq, hash: head.hash })
    ) {
      problems.add(`the workflow result's receiptHead is not the last receipt (${head.seq})`);
    }
    if (result.checkpoint !== head.signature)
      problems.add("the workflow result's checkpoint is not the checkpoint receipt's signature");
    if (result.status !== status)
      problems.add(`the workflow ended ${String(result.status)}, the checkpoint says ${String(status)}`);
    if ((result.reason ?? null) !== (cp.reason ?? null))
      problems.add("the workflow result's reason differs from the checkpoint's");
    if (result.chainId !== lastReceipt.receipt.chainId)
      problems.add("the workflow result's chain id differs from the receipts'");
    const steps = last.input?.chain.steps.length;
    if (cp.steps !== steps || !Array.isArray(result.steps) || result.steps.length !== steps)
      problems.add(`the checkpoint covers ${String(cp.steps)} step(s), the chain has ${String(steps)}`);
  }
  return {
    check: problems.check(
      CheckName.Checkpoint,
      `checkpoint receipt ${lastReceipt.receipt.seq} seals the chain: ${String(status)}; the workflow result names it`,
    ),
    status,
  };
}
