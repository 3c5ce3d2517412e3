import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { NotificationEvent } from '../contracts/notification';
import { ErrorCode } from '../contracts/errors';
import { SESSION_WORKFLOW_TYPE } from '../contracts/session';
import { WORKFLOW_TYPE } from '../contracts/status';
import type { Webhook } from '../policies/manifest';
import type { PolicyStore } from './policy-store';

/*
 * The `notify` activity (DESIGN §10, README "Notifications"): POSTs one event to every webhook of the
 * active manifest that asked for it. Each request is signed with HMAC-SHA256 under the webhook's secret,
 * which only this activity reads (from the worker's environment or a file): it is never in the event,
 * in history or in a log. It runs in a detached notification workflow, so a receiver that is down, slow
 * or failing never holds up or fails the chain.
 */

/** Header of the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. */
export const SIGNATURE_HEADER = 'X-Governor-Signature';
/** Header of the idempotency key: SHA-256 (hex) of the event's key, the same on every retry and replay. */
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
/** Header naming the event (`waiting`, `vote`, `outcome`). */
export const EVENT_HEADER = 'X-Governor-Event';

/** How long one request may take, connection to last byte: a hanging receiver costs one attempt this long. */
export const WEBHOOK_TIMEOUT_MS = 5_000;
const MAX_SECRET_BYTES = 8192;
const DEFAULT_TEMPORAL_UI = 'http://localhost:8233';

export interface NotifyDeps {
  policies: PolicyStore;
  /** GOVERNOR_HOME: relative secret files resolve against it. */
  home: string;
  /** Where `secret.env`, GOVERNOR_INBOX_URL and GOVERNOR_TEMPORAL_UI_URL are read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Per-request timeout (default {@link WEBHOOK_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** What one `notify` did: webhooks that took the event now, before (an earlier attempt), or never asked for it. */
export interface NotifyResult {
  delivered: number;
  alreadyDelivered: number;
  notSubscribed: number;
}

/** The signature header value of `body` at `t` (unix seconds). */
export function signWebhook(secret: string, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/**
 * Verifies a signature header against the raw body (what a receiver does; README "Notifications"):
 * constant-time comparison, and a timestamp within `toleranceSeconds` of `nowSeconds` against replays.
 */
export function verifyWebhook(
  secret: string,
  header: string | undefined,
  body: string,
  nowSeconds = Math.floor(Date.now() / 1000),
  toleranceSeconds = 300,
): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds || typeof parts.v1 !== 'string') return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  const given = Buffer.from(parts.v1);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The `Idempotency-Key` of an event. */
export function idempotencyKeyOf(event: Pick<NotificationEvent, 'key'>): string {
  return createHash('sha256').update(event.key).digest('hex');
}

/** Where a message links to: the approval inbox (if known) and the chain's page in the Temporal UI. */
export interface Links {
  inbox?: string;
  temporal: string;
}

export function linksFor(hook: Webhook, event: NotificationEvent, namespace: string, env: NodeJS.ProcessEnv): Links {
  const inboxBase = hook.inboxUrl ?? (env.GOVERNOR_INBOX_URL || undefined);
  const ui = (hook.temporalUiUrl ?? (env.GOVERNOR_TEMPORAL_UI_URL || DEFAULT_TEMPORAL_UI)).replace(/\/+$/, '');
  const chain = encodeURIComponent(event.chainId);
  // `{chainId}` in the inbox URL (also as the URL parser percent-encodes it) becomes the chain's id.
  const inbox = inboxBase?.replace(/\{chainId\}|%7BchainId%7D/g, chain);
  return {
    ...(inbox ? { inbox } : {}),
    temporal: `${ui}/namespaces/${encodeURIComponent(namespace)}/workflows/${chain}`,
  };
}

/** The request body for `hook`: the event as JSON, or a Slack-compatible message. */
export function webhookBody(hook: Webhook, event: NotificationEvent, links: Links, sentAt: Date): string {
  if (hook.format === 'slack') return JSON.stringify(slackMessage(event, links));
  return JSON.stringify({ id: idempotencyKeyOf(event), ...event, links, sentAt: sentAt.toISOString() });
}

/** Slack mrkdwn: `&`, `<`, `>` escaped (they delimit links and mentions). */
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** A Slack `blocks` message (incoming webhooks, chat.postMessage): a header, the facts, and link buttons. */
export function slackMessage(event: NotificationEvent, links: Links): { text: string; blocks: unknown[] } {
  const what = event.step ? `${event.step.action} on ${event.step.resource}` : event.chainId;
  const title =
    event.event === 'waiting'
      ? `Approval needed: ${what}`
      : event.event === 'vote'
        ? `${event.vote?.approver ?? 'An approver'} voted ${event.vote?.decision ?? ''}: ${what}`
        : `${event.kind === 'session' ? 'Session' : 'Chain'} ${event.outcome?.status ?? 'ended'}: ${event.workload}`;
  const facts: string[] = [`*Workload:* ${esc(event.workload)}`, `*Chain:* \`${esc(event.chainId)}\``];
  if (event.step)
    facts.push(`*Step:* \`${esc(event.step.id)}\` — ${esc(event.step.action)} on ${esc(event.step.resource)}`);
  const a = event.approval;
  if (a && event.event !== 'outcome') {
    facts.push(`*Still needed:* ${a.stillNeeded} of ${a.quorum} from ${esc(a.roles.join(' or '))}`);
    if (a.approvedBy.length > 0) facts.push(`*Approved by:* ${esc(a.approvedBy.join(', '))}`);
    facts.push(`*Deadline:* ${esc(a.deadlineAt ?? a.deadline)}`);
  }
  if (event.vote?.reason) facts.push(`*Reason:* ${esc(clip(event.vote.reason, 500))}`);
  if (event.outcome?.reason) facts.push(`*Reason:* ${esc(clip(event.outcome.reason, 500))}`);
  const buttons: unknown[] = [];
  if (links.inbox)
    buttons.push({
      type: 'button',
      text: { type: 'plain_text', text: 'Open the approval inbox' },
      url: links.inbox,
      ...(event.event === 'waiting' ? { style: 'primary' } : {}),
    });
  buttons.push({ type: 'button', text: { type: 'plain_text', text: 'Open in Temporal UI' }, url: links.temporal });
  return {
    text: clip(title, 300),
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clip(title, 150) } },
      { type: 'section', text: { type: 'mrkdwn', text: clip(facts.join('\n'), 3000) } },
      { type: 'actions', elements: buttons },
    ],
  };
}

/** A webhook's secret, or why it is not available (naming the field, never the value). */
export function readWebhookSecret(
  hook: Webhook,
  index: number,
  home: string,
  env: NodeJS.ProcessEnv,
): { ok: true; value: string } | { ok: false; reason: string } {
  const field = `notifications.webhooks[${index}].secret`;
  let value: string | undefined;
  if (hook.secret.env !== undefined) {
    value = env[hook.secret.env];
    if (!value) return { ok: false, reason: `${field}: environment variable ${hook.secret.env} is unset or empty` };
  } else {
    const file = path.resolve(home, hook.secret.file!);
    try {
      if (fs.statSync(file).size > MAX_SECRET_BYTES)
        return { ok: false, reason: `${field}: file is larger than ${MAX_SECRET_BYTES} bytes` };
      value = fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch {
      return { ok: false, reason: `${field}: file ${hook.secret.file} cannot be read` };
    }
  }
  if (value === '' || value.length > MAX_SECRET_BYTES || /[\r\n\0]/.test(value))
    return { ok: false, reason: `${field}: the secret is empty, too long or contains CR, LF or NUL` };
  return { ok: true, value };
}

/** The webhook as logs and errors name it: index and origin only (a Slack webhook's path is itself a secret). */
const label = (hook: Webhook, index: number): string => `webhook ${index} (${new URL(hook.url).origin})`;

/**
 * Why this notification must not be sent, or undefined: it is sent only for the notification workflow a
 * governed chain (or session) of this task queue started as its child, about that chain. Anyone who may
 * start workflows in the namespace can start `governorNotifyWorkflow` with an event of their own; without
 * this check the worker would sign it with the webhook secret and receivers would take it as the
 * governor's.
 */
async function notStartedByItsChain(ctx: Context, event: NotificationEvent): Promise<string | undefined> {
  const self = ctx.info.workflowExecution;
  if (!self) return 'it was not started by a workflow';
  const described = await ctx.client.workflow.getHandle(self.workflowId, self.runId).describe();
  const parent = described.parentExecution;
  if (!parent) return 'it was not started by a governed chain';
  if (parent.workflowId !== event?.chainId) return 'it names another chain than the one that started it';
  const chain = await ctx.client.workflow.getHandle(parent.workflowId, parent.runId ?? undefined).describe();
  if ((chain.type !== WORKFLOW_TYPE && chain.type !== SESSION_WORKFLOW_TYPE) || chain.taskQueue !== ctx.info.taskQueue)
    return "the workflow that started it is not a governed chain of this worker's task queue";
  return undefined;
}

/** The `notify` activity. */
export function createNotifyActivities(deps: NotifyDeps) {
  const env = deps.env ?? process.env;
  const timeoutMs = deps.timeoutMs ?? WEBHOOK_TIMEOUT_MS;

  /** Sends `event` to every webhook that asked for it and has not taken it yet (earlier attempts heartbeat what they sent). */
  async function notify(event: NotificationEvent): Promise<NotifyResult> {
    const ctx = Context.current();
    const forged = await notStartedByItsChain(ctx, event);
    if (forged) {
      ctx.log.warn('notification refused', { reason: forged });
      throw ApplicationFailure.nonRetryable(
        `notification refused: ${forged}; nothing was sent`,
        ErrorCode.InvalidInput,
      );
    }
    const hooks = deps.policies.current()?.bundle.manifest.notifications.webhooks ?? [];
    const before = ctx.info.heartbeatDetails;
    const done = new Set<number>(Array.isArray(before) ? before.filter((n): n is number => typeof n === 'number') : []);
    const result: NotifyResult = { delivered: 0, alreadyDelivered: 0, notSubscribed: 0 };
    const failures: string[] = [];
    let retryable = false;
    const key = idempotencyKeyOf(event);
    // Every webhook at once: one attempt takes at most the request timeout, however many there are.
    const send = async (hook: Webhook, index: number): Promise<void> => {
      if (!hook.events.includes(event.event)) {
        result.notSubscribed++;
        return;
      }
      if (done.has(index)) {
        result.alreadyDelivered++;
        return;
      }
      const secret = readWebhookSecret(hook, index, deps.home, env);
      if (!secret.ok) {
        // A configuration error: retried (the operator may set the variable), reported without the value.
        failures.push(`${label(hook, index)}: secret not available: ${secret.reason}`);
        retryable = true;
        return;
      }
      const now = new Date();
      const t = Math.floor(now.getTime() / 1000);
      const body = webhookBody(hook, event, linksFor(hook, event, ctx.info.workflowNamespace ?? 'default', env), now);
      try {
        const res = await fetch(hook.url, {
          method: 'POST',
          redirect: 'manual',
          signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), ctx.cancellationSignal]),
          headers: {
            'content-type': 'application/json',
            'user-agent': 'temporal-governor-webhook/1',
            [EVENT_HEADER]: event.event,
            [IDEMPOTENCY_HEADER]: key,
            [SIGNATURE_HEADER]: signWebhook(secret.value, t, body),
          },
          body,
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) {
          done.add(index);
          result.delivered++;
          ctx.heartbeat([...done]);
          return;
        }
        failures.push(`${label(hook, index)} answered HTTP ${res.status}`);
        // 4xx other than 408/429 will not change on retry; the rest (5xx, 3xx, 408, 429) may.
        retryable ||= !(res.status >= 400 && res.status < 500) || res.status === 408 || res.status === 429;
      } catch (err) {
        const why = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : 'request failed';
        failures.push(`${label(hook, index)}: ${why}`);
        retryable = true;
      }
    };
    await Promise.all(hooks.map((hook, index) => send(hook, index)));
    if (failures.length > 0) {
      const message = `notification ${event.event} of ${event.chainId} not delivered: ${failures.join('; ')}`;
      ctx.log.warn(message, { chainId: event.chainId, event: event.event, attempt: ctx.info.attempt });
      throw ApplicationFailure.create({ type: 'WebhookNotDelivered', message, nonRetryable: !retryable });
    }
    return result;
  }

  return { notify };
}

export type NotifyActivities = ReturnType<typeof createNotifyActivities>;
