import type { Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { CoordinatorState, PendingTie } from '../contracts/coordination';
import type { ChainState, StepState } from '../contracts/state';
import { SESSION_WORKFLOW_TYPE } from '../contracts/session';
import { WORKFLOW_TYPE } from '../contracts/status';
import type { Manifest } from '../policies/manifest';
import { CoordinationClient } from '../sdk/coordination';
import type { GovernorClient } from '../sdk/client';
import type { InboxUser } from './sessions';

/** What the inbox reads from Temporal: chains awaiting a person's roles, one chain in detail, open ties. */

/** A chain awaiting approval, as the inbox shows it. */
export interface PendingChain {
  chainId: string;
  state: ChainState;
  step: StepState;
  /** The step's input as the chain declared it (undefined when not in the start input, e.g. an agent session). */
  input?: unknown;
  summary?: string;
  owner?: string;
  /** Why the signed-in person may not vote (separation of duties, already voted), if so. */
  blocked?: string;
  /** The person may vote only through break-glass (holds the break-glass role, none of the eligible ones). */
  breakGlassOnly: boolean;
}

function quote(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** Roles that can act on a step: eligible roles, plus the break-glass role (for approval only). */
export function rolesFor(user: InboxUser, step: StepState, manifest: Manifest) {
  const eligible = user.roles.filter((r) => step.approval?.eligibleRoles.includes(r));
  const bg = manifest.approvals.breakGlassRole;
  return { eligible, breakGlass: eligible.length === 0 && bg !== undefined && user.roles.includes(bg) };
}

/** Chain ids awaiting any of the person's roles (any awaiting chain for the break-glass role), newest first. */
export async function awaitingChainIds(
  client: Client,
  taskQueue: string,
  user: InboxUser,
  manifest: Manifest,
  limit = 50,
): Promise<string[]> {
  if (user.roles.length === 0) return [];
  const clauses = [
    `(WorkflowType = ${quote(WORKFLOW_TYPE)} OR WorkflowType = ${quote(SESSION_WORKFLOW_TYPE)})`,
    `TaskQueue = ${quote(taskQueue)}`,
    `ExecutionStatus = 'Running'`,
    `GovernorStatus = 'AwaitingApproval'`,
  ];
  const bg = manifest.approvals.breakGlassRole;
  if (!(bg && user.roles.includes(bg))) clauses.push(`GovernorPendingRoles IN (${user.roles.map(quote).join(', ')})`);
  const ids: string[] = [];
  for await (const wf of client.workflow.list({ query: clauses.join(' AND ') })) {
    ids.push(wf.workflowId);
    if (ids.length >= limit) break;
  }
  return ids;
}

/** The chain's declared input (owner, summary, each step's input) from its first history event. */
async function startInput(client: Client, chainId: string): Promise<Record<string, unknown> | undefined> {
  try {
    const history = await client.workflow.getHandle(chainId).fetchHistory();
    const payloads = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads;
    const value = await decodeFromPayloadsAtIndex<unknown>(client.options.loadedDataConverter, 0, payloads);
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** One chain awaiting approval in detail, with what the person may do; undefined when nothing awaits approval. */
export async function pendingChain(
  gc: GovernorClient,
  chainId: string,
  user: InboxUser,
  manifest: Manifest,
): Promise<PendingChain | undefined> {
  const state = await gc.status(chainId);
  const step = state.steps.find((s) => s.approval?.outcome === 'pending');
  if (!step?.approval) return undefined;
  const input = await startInput(gc.client, chainId);
  const chain = (input?.chain ?? {}) as { owner?: unknown; summary?: unknown; steps?: unknown };
  const declared = Array.isArray(chain.steps)
    ? (chain.steps as { id?: unknown; input?: unknown }[]).find((s) => s?.id === step.id)
    : undefined;
  const owner = typeof chain.owner === 'string' ? chain.owner : undefined;
  const { eligible, breakGlass } = rolesFor(user, step, manifest);
  let blocked: string | undefined;
  const owners = [state.workload, owner, manifest.owners[state.workload]].filter(Boolean);
  if (owners.includes(user.approver)) {
    blocked =
      `Separation of duties: you (${user.approver}) are the requesting workload or its owner, ` +
      'so you may not approve or deny its steps. Another approver must decide.';
  } else if (step.approval.verdicts.some((v) => v.counted && v.approver === user.approver)) {
    blocked = 'You have already voted on this step: each approver counts once.';
  } else if (eligible.length === 0 && !breakGlass) {
    blocked = `You hold none of the roles that may decide this step (${step.approval.eligibleRoles.join(', ')}).`;
  }
  return {
    chainId,
    state,
    step,
    input: declared?.input,
    summary: typeof chain.summary === 'string' ? chain.summary : undefined,
    owner,
    blocked,
    breakGlassOnly: breakGlass,
  };
}

/** An open tie the person can settle (holds its tie-breaker role), with its contenders side by side. */
export interface OpenTie {
  domain: string;
  tie: PendingTie;
  contenders: {
    requestId: string;
    chainId: string;
    stepId: string;
    workload?: string;
    action?: string;
    resource?: string;
    input?: unknown;
  }[];
}

/** `chainId/stepId` → its parts (the step id is after the last `/`). */
export function splitRequestId(requestId: string): { chainId: string; stepId: string } | undefined {
  const at = requestId.lastIndexOf('/');
  if (at <= 0 || at === requestId.length - 1) return undefined;
  return { chainId: requestId.slice(0, at), stepId: requestId.slice(at + 1) };
}

/** Open ties of the manifest's coordination domains whose tie-breaker role the person holds. */
export async function openTies(gc: GovernorClient, user: InboxUser, manifest: Manifest): Promise<OpenTie[]> {
  const cc = new CoordinationClient(gc.client, gc.taskQueue);
  const out: OpenTie[] = [];
  for (const domain of manifest.coordination.domains) {
    if (!user.roles.includes(domain.tieBreakerRole)) continue;
    let state: CoordinatorState;
    try {
      state = await cc.state(domain.name);
    } catch {
      continue; // no coordinator for this domain yet
    }
    for (const tie of state.ties) {
      if (!user.roles.includes(tie.role)) continue;
      const contenders = await Promise.all(
        tie.contenders.map(async (requestId) => {
          const parts = splitRequestId(requestId) ?? { chainId: requestId, stepId: '' };
          const chainState = await gc.status(parts.chainId).catch(() => undefined);
          const step = chainState?.steps.find((s) => s.id === parts.stepId);
          const input = await startInput(gc.client, parts.chainId);
          const steps = ((input?.chain as { steps?: unknown } | undefined)?.steps ?? []) as {
            id?: unknown;
            input?: unknown;
          }[];
          const declared = Array.isArray(steps) ? steps.find((s) => s?.id === parts.stepId) : undefined;
          return {
            requestId,
            ...parts,
            workload: chainState?.workload,
            action: step?.action,
            resource: step?.resource,
            input: declared?.input,
          };
        }),
      );
      out.push({ domain: domain.name, tie, contenders });
    }
  }
  return out;
}
