import type { PayloadCodec } from '@temporalio/common';
import type { WorkflowBundleOption } from '@temporalio/worker';
import type { JSONWebKeySet } from 'jose';
import { loadPublicJwks } from '../../identity';
import { loadArchivedBundle } from '../../policies/bundle-archive';
import { checkBindings, checkSlotSeals } from './checks/bindings';
import { checkCheckpoint } from './checks/checkpoint';
import { checkDecisions, type BundleLookup } from './checks/decisions';
import { checkRunLinks } from './checks/history';
import { checkReceipts } from './checks/receipts';
import { checkReplay } from './checks/replay';
import { checkRuns } from './checks/runs';
import { decodeRun } from './decode';
import { linkSessionSteps } from './session';
import { decodeHistories, decodeRunList, type ChainHistories, type ChainRun } from './history-fetch';
import { trustedKeys } from './jws';
import { createReplayer, type Replayer } from './replayer';
import { CheckName, Problems, type VerifyCheck, type VerifyReport } from './report';

/*
 * `governor verify`: the replay-integrity proof of one chain (DESIGN §1, issue 7).
 *
 * Input is the chain's workflow history — every run, first to last, in the stable JSON form of
 * `historyToJson` (protobufjs' proto3 JSON: what `JSON.stringify(await handle.fetchHistory())`
 * gives, and what `Worker.runReplayHistory` accepts). The same code verifies a live chain and an
 * exported proof, so both give the same answer. Checks, one report line each, one file each:
 *
 *   history     well-formed: proto3 JSON that round-trips byte for byte, contiguous event ids,
 *               each event type matching its attributes, the governor's workflow type, a valid
 *               chain input, runs linked by continue-as-new, one chain id throughout
 *               (decode.ts, checks/history.ts)
 *   runs        every run of the workflow id and how it relates to the chain (checks/runs.ts):
 *               no executor ran in a branch a reset abandoned, the chain did not end terminated,
 *               timed out or cancelled, no other execution used the id
 *   replay      every run replays with the current workflow code (no nondeterminism, no failure)
 *               (replayer.ts, checks/replay.ts)
 *   receipts    every receipt the workflow consumed: seq contiguous from 1, prevHash links (also
 *               across runs), hash recomputed from the body, digest recomputed from what history
 *               recorded, Ed25519 signature valid with the trusted receipt key (checks/receipts.ts)
 *   checkpoint  a completed workflow ends with a checkpoint receipt that its result names
 *               (receiptHead, checkpoint signature) and whose payload matches its status and reason;
 *               every run that continued as new ends with a checkpoint naming the next run
 *               (checks/checkpoint.ts)
 *   bindings    what receipts do not sign themselves is tied to what they do: step digests
 *               recomputed from the chain input; requests naming the step's workload, action,
 *               resource and context; approvals in a request counted before it; executor activities
 *               scheduled only after an allowing decision (or break-glass) and a coordination grant,
 *               with exactly the step's input; recorded outcomes equal to what executors returned;
 *               sealed coordination requests and the verdicts coordinators signalled; the workflow
 *               result's step states, vote-update results and search attributes matching the receipts
 *               (checks/bindings.ts)
 *   decisions   every recorded decision re-evaluated from its recorded request with the bundle of
 *               its recorded digest is identical (canonical JSON), and the grace period and approval
 *               rules recorded with it are that bundle's; decisions made before policy ran (no
 *               request) are denies (checks/decisions.ts)
 *
 * Security: trust comes only from the caller's receipt JWKS and bundle lookup, never from the
 * history. Untrusted history is snapshotted into plain data and checked by guard clauses; a
 * malformed history is a failed check, never an exception.
 */

export {
  historyToJson,
  fetchChainHistories,
  listRunIdsOf,
  type ChainHistories,
  type ChainRun,
  type HistoryJson,
} from './history-fetch';
export { createReplayer, type Replayer, type ReplayOutcome } from './replayer';
export { verifySealJws, type JwsCheck } from './jws';
export { CheckName, formatReport, type VerifyCheck, type VerifyReport } from './report';
export type { BundleLookup } from './checks/decisions';
export type { RunReport } from './checks/runs';

/** What `verifyChain` needs. */
export interface VerifyChainInput {
  /** The chain's runs, first to last, in the stable JSON form (`historyToJson`). */
  histories?: readonly unknown[];
  /** A single-run chain's history (shorthand for `histories: [history]`). */
  history?: unknown;
  /**
   * Every run of the chain's workflow id (default: the list `fetchChainHistories` attached to
   * `histories`). Without it the `runs` check fails: resets and terminations cannot be excluded.
   */
  runs?: readonly ChainRun[];
  /** The chain id the history must belong to (default: the id in the history's input). */
  chainId?: string;
  /** GOVERNOR_HOME: default source of the trusted receipt key and of archived bundles. */
  home?: string;
  /** Trusted receipt public keys (default `<home>/keys/receipt.jwks.json`). */
  trustedReceiptJwks?: JSONWebKeySet;
  /** Bundles by digest (default: the bundle archive of `home`). */
  bundles?: BundleLookup;
  /** A replayer to reuse (and its cache); default a one-shot replayer on `workflowBundle`. */
  replayer?: Replayer;
  /** Workflow code to replay with (default: this package's `workflows/`, bundled on the fly). */
  workflowBundle?: WorkflowBundleOption;
  /** Payload codec of an encrypted history (`runtime/codec.ts`): payloads are decoded before any check. */
  codec?: PayloadCodec;
}

/**
 * Verifies one chain from its history: replay, receipts, checkpoint, bindings, decisions (see the
 * file comment). Never throws for a bad history: every problem is a failed check. Throws only for
 * a bad trusted key set (bad input of the caller).
 */
export async function verifyChain(input: VerifyChainInput): Promise<VerifyReport> {
  const raw = input.histories ?? (input.history !== undefined ? [input.history] : []);
  const codecProblems: string[] = [];
  const histories = await decodeHistories(raw, input.codec, codecProblems);
  const trusted = input.trustedReceiptJwks ?? loadPublicJwks(input.home, 'receipt');
  const keySet = trustedKeys(trusted);
  const bundles: BundleLookup =
    input.bundles ?? ((digest) => (input.home ? loadArchivedBundle(input.home, digest) : undefined));

  const runs = histories.map((h, i) => decodeRun(h, i));
  const history = new Problems();
  codecProblems.forEach((p) => history.add(p));
  runs.forEach((r) => r.problems.forEach((p) => history.add(p)));
  if (runs.length === 0) history.add('no history');
  linkSessionSteps(runs).forEach((p) => history.add(p));
  const chainId = input.chainId ?? runs[0]?.input?.chainId ?? null;
  checkRunLinks(runs, chainId, history);
  const runCodecProblems: string[] = [];
  const runList = await decodeRunList(input.runs ?? (raw as ChainHistories).runs, input.codec, runCodecProblems);
  runCodecProblems.forEach((p) => history.add(p));
  const runsChecked = checkRuns(chainId, histories, runList);

  const replayer =
    input.replayer ?? createReplayer(input.workflowBundle ? { workflowBundle: input.workflowBundle } : {});
  let replay: VerifyCheck;
  try {
    replay = await checkReplay(runs, chainId ?? 'governor-verify', replayer);
  } finally {
    if (!input.replayer) await replayer.close();
  }

  const receipts = await checkReceipts(runs, chainId, keySet);
  const checkpoint = checkCheckpoint(runs, receipts.chain);
  const slotSeals = await checkSlotSeals(runs, keySet);
  const bindings = checkBindings(runs, chainId, receipts.chain, checkpoint.status, slotSeals);
  const decisions = checkDecisions(runs, bundles);

  const checks: VerifyCheck[] = [
    history.check(
      CheckName.History,
      `${runs.length} run(s), ${runs.reduce((n, r) => n + r.events, 0)} events of chain ${chainId}`,
    ),
    runsChecked.check,
    replay,
    receipts.check,
    checkpoint.check,
    bindings,
    decisions.check,
  ];
  return {
    chainId,
    verdict: checks.every((c) => c.ok) ? 'verified' : 'failed',
    status: checkpoint.status,
    runs: runs.length,
    receipts: receipts.chain.length,
    decisions: decisions.count,
    bundleDigests: decisions.digests,
    ...(decisions.revocationLists.length > 0 ? { revocationLists: decisions.revocationLists } : {}),
    checks,
    runList: runsChecked.runs,
  };
}
