import type { Client } from '@temporalio/client';
import type { PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { WORKFLOW_TYPE } from '../../contracts/status';
import { SESSION_WORKFLOW_TYPE } from '../../contracts/session';
import { decodeJsonPayloads, ENCRYPTED_ENCODING } from '../../runtime/codec';
import { isRecord, oneLine } from './util';

/*
 * A chain's histories: their stable JSON form, fetching every run of the chain from Temporal (the only
 * part of the verifier that needs a `Client`), and decoding encrypted payloads with the codec.
 */

/** A workflow history in its stable JSON form (protobufjs proto3 JSON of `temporal.api.history.v1.History`). */
export type HistoryJson = Record<string, unknown>;

/** One run of a chain's workflow id, as `fetchChainHistories` lists it (and a proof carries it). */
export interface ChainRun {
  runId: string;
  /** Position of the run in the chain's lineage (the verified `histories`); absent for a run outside it. */
  lineage?: number;
  /** History (stable JSON form) of a run outside the lineage (a lineage run's history is `histories[lineage]`). */
  history?: HistoryJson;
}

/** The stable JSON form of a history (what proofs embed and `verifyChain` reads). */
export function historyToJson(history: unknown): HistoryJson {
  const message = temporal.api.history.v1.History.fromObject(history as Record<string, unknown>);
  return JSON.parse(JSON.stringify(message.toJSON())) as HistoryJson;
}

/** A chain's lineage histories, first to last, with every run of its workflow id attached (`runs`, not enumerable). */
export type ChainHistories = HistoryJson[] & { readonly runs?: readonly ChainRun[] };

/**
 * Fetches the chain's lineage, first to last: the latest run, then each run it continued from
 * (`continuedExecutionRunId`); and attaches as `runs` every run of the workflow id (resets,
 * terminated runs, other executions), listed with `WorkflowId = '<chainId>'`, with the histories of
 * those outside the lineage. Throws NotFound for an unknown chain, TemporalUnreachable when the
 * server stops answering.
 */
export async function fetchChainHistories(
  client: Client,
  chainId: string,
  maxRuns = 10_000,
  /** Every run id of the workflow id, newest first, when the caller listed them already (`listRunIdsOf`). */
  listedRunIds?: readonly string[],
  /**
   * The workflow id's newest run, when the caller has listed it (the archiver's sweep lists closed chains and their
   * run lists): the lineage is read from it without a describe, and its type is checked in its history.
   */
  latestRunId?: string,
): Promise<ChainHistories> {
  const runs: HistoryJson[] = [];
  const lineageIds: string[] = [];
  const others: ChainRun[] = [];
  try {
    const notAChain = (type: unknown): GovernorError =>
      new GovernorError(
        ErrorCode.InvalidInput,
        `workflow ${chainId} is a ${String(type)}, not a governed chain`,
        'chainId',
      );
    let runId: string | undefined = latestRunId;
    if (runId === undefined) {
      const described = await client.workflow.getHandle(chainId).describe();
      if (described.type !== WORKFLOW_TYPE && described.type !== SESSION_WORKFLOW_TYPE) throw notAChain(described.type);
      runId = described.runId;
    }
    while (runId) {
      if (runs.length >= maxRuns)
        throw new GovernorError(ErrorCode.InvalidInput, `chain ${chainId} has more than ${maxRuns} runs`, 'chainId');
      const json = historyToJson(await client.workflow.getHandle(chainId, runId).fetchHistory());
      const started = startedAttributes(json);
      if (runs.length === 0 && latestRunId !== undefined) {
        // Not described: the newest run's own history says what it is.
        const type = (started?.workflowType as { name?: unknown } | undefined)?.name;
        if (type !== WORKFLOW_TYPE && type !== SESSION_WORKFLOW_TYPE) throw notAChain(type);
      }
      runs.unshift(json);
      lineageIds.unshift(runId);
      const previous = started?.continuedExecutionRunId;
      runId = typeof previous === 'string' && previous.length > 0 ? previous : undefined;
    }
    // Oldest first (the server lists newest first); runs of the lineage are read above.
    const listed = [...(listedRunIds ?? (await listRunIds(client, chainId, maxRuns)))].reverse();
    for (const id of listed.filter((r) => !lineageIds.includes(r))) {
      if (runs.length + others.length >= maxRuns)
        throw new GovernorError(ErrorCode.InvalidInput, `chain ${chainId} has more than ${maxRuns} runs`, 'chainId');
      others.push({ runId: id, history: historyToJson(await client.workflow.getHandle(chainId, id).fetchHistory()) });
    }
  } catch (err) {
    throw temporalError(err, chainId);
  }
  const all: ChainRun[] = [...others, ...lineageIds.map((runId, lineage) => ({ runId, lineage }))];
  Object.defineProperty(runs, 'runs', { value: all, enumerable: false });
  return runs;
}

/** The run list from the server: every run id of `workflowId` (newest first, as listed), bounded. */
export async function listRunIds(client: Client, workflowId: string, maxRuns: number): Promise<string[]> {
  const ids: string[] = [];
  const query = `WorkflowId = '${workflowId.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  for await (const wf of client.workflow.list({ query })) {
    if (wf.workflowId !== workflowId) continue;
    if (!ids.includes(wf.runId)) ids.push(wf.runId);
    if (ids.length > maxRuns) break;
  }
  return ids;
}

/**
 * Every run id of each workflow id, newest first (as `listRunIds` lists them), in one visibility query per 50 ids
 * instead of one per id: the archiver's sweep lists its batch's runs this way. An id with more than `maxRuns` runs
 * is left out (its caller lists it alone, and refuses it there).
 */
export async function listRunIdsOf(
  client: Client,
  workflowIds: readonly string[],
  maxRuns: number,
): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const quote = (id: string): string => `'${id.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  const ids = [...new Set(workflowIds)];
  for (let i = 0; i < ids.length; i += 50) {
    const chunk = ids.slice(i, i + 50);
    for (const id of chunk) out.set(id, []);
    for await (const wf of client.workflow.list({ query: `WorkflowId IN (${chunk.map(quote).join(', ')})` })) {
      const runs = out.get(wf.workflowId);
      if (runs && runs.length <= maxRuns && !runs.includes(wf.runId)) runs.push(wf.runId);
    }
  }
  for (const [id, runs] of out) if (runs.length > maxRuns) out.delete(id);
  return out;
}

function temporalError(err: unknown, chainId: string): unknown {
  if (err instanceof GovernorError) return err;
  const e = err as { name?: string; code?: number; message?: string };
  if (e?.name === 'WorkflowNotFoundError' || e?.code === 5)
    return new GovernorError(ErrorCode.NotFound, `no chain ${chainId}`, 'chainId');
  if (e?.code === 14 || e?.code === 4)
    return new GovernorError(
      ErrorCode.TemporalUnreachable,
      `cannot reach Temporal: ${e.message ?? 'unavailable'}`,
      'TEMPORAL_ADDRESS',
    );
  return err;
}

function startedAttributes(json: HistoryJson): Record<string, unknown> | undefined {
  const events = json.events;
  if (!Array.isArray(events) || !isRecord(events[0])) return undefined;
  const attrs = events[0].workflowExecutionStartedEventAttributes;
  return isRecord(attrs) ? attrs : undefined;
}

const ENCRYPTED_BASE64 = Buffer.from(ENCRYPTED_ENCODING).toString('base64');

/**
 * Decodes every encrypted payload of each history with `codec` (a run that does not decode stays as
 * it is and its problem is recorded); without a codec, an encrypted history is named as such.
 */
export async function decodeHistories(
  histories: readonly unknown[],
  codec: PayloadCodec | undefined,
  problems: string[],
): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const [i, h] of histories.entries()) {
    if (!codec) {
      if (JSON.stringify(h ?? null).includes(ENCRYPTED_BASE64))
        problems.push(
          `run ${i + 1}: payloads are encrypted (${ENCRYPTED_ENCODING}): verify with the codec key file (--codec-keys or GOVERNOR_CODEC_KEYS)`,
        );
      out.push(h);
      continue;
    }
    try {
      out.push(await decodeJsonPayloads(h, codec));
    } catch (err) {
      problems.push(`run ${i + 1}: ${oneLine((err as Error).message)}`);
      out.push(h);
    }
  }
  return out;
}

/** The run list with the histories of runs outside the lineage decoded like the lineage's. */
export async function decodeRunList(
  runs: readonly ChainRun[] | undefined,
  codec: PayloadCodec | undefined,
  problems: string[],
): Promise<ChainRun[] | undefined> {
  if (!Array.isArray(runs)) return undefined;
  const out: ChainRun[] = [];
  for (const run of runs as readonly ChainRun[]) {
    if (run?.history === undefined) {
      out.push(run);
      continue;
    }
    const own: string[] = [];
    const [history] = await decodeHistories([run.history], codec, own);
    own.forEach((p) => problems.push(p.replace(/^run 1:/, `run ${String(run.runId)}:`)));
    out.push({ ...run, history: history as HistoryJson });
  }
  return out;
}
