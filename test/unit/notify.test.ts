import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  idempotencyKeyOf,
  linksFor,
  readWebhookSecret,
  signWebhook,
  slackMessage,
  verifyWebhook,
  webhookBody,
} from '../../activities/notify';
import { subscribedEvents, type NotificationEvent } from '../../contracts/notification';
import { Webhook } from '../../policies/manifest';

const event: NotificationEvent = {
  event: 'waiting',
  key: 'chain-1/deploy/waiting',
  kind: 'chain',
  chainId: 'chain 1/<x>',
  workload: 'agent:<bot>&co',
  step: { id: 'deploy', action: 'deploy', resource: 'Environment::"prod"' },
  approval: {
    roles: ['sre-lead'],
    quorum: 2,
    stillNeeded: 2,
    approvedBy: [],
    deadline: '30m',
    deadlineAt: '2026-01-01T00:30:00.000Z',
    outcome: 'pending',
  },
};
const hook = (extra: Record<string, unknown> = {}): Webhook =>
  Webhook.parse({ url: 'https://hooks.example.test/a/SECRETPATH', secret: { env: 'HOOK_SECRET' }, ...extra });

describe('webhook signatures', () => {
  it('verifies with the secret within the tolerance, and not with another secret, another body, or a stale timestamp', () => {
    const body = '{"a":1}';
    const header = signWebhook('s3cret', 1_000_000, body);
    expect(header).toMatch(/^t=1000000,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook('s3cret', header, body, 1_000_100)).toBe(true);
    expect(verifyWebhook('other', header, body, 1_000_100)).toBe(false);
    expect(verifyWebhook('s3cret', header, '{"a":2}', 1_000_100)).toBe(false);
    expect(verifyWebhook('s3cret', header, body, 1_000_301)).toBe(false);
    expect(verifyWebhook('s3cret', undefined, body, 1_000_100)).toBe(false);
    expect(verifyWebhook('s3cret', 't=1000000,v1=00', body, 1_000_100)).toBe(false);
  });

  it('keys an event by its key only: stable, and different for another event', () => {
    const { approval: _ignored, ...withoutApproval } = event;
    expect(idempotencyKeyOf(event)).toBe(idempotencyKeyOf(withoutApproval));
    expect(idempotencyKeyOf(event)).not.toBe(idempotencyKeyOf({ key: 'chain-1/outcome' }));
  });
});

describe('webhook messages', () => {
  it('links the inbox ({chainId} filled in) and the chain in the Temporal UI', () => {
    const links = linksFor(
      hook({ inboxUrl: 'https://inbox.example.test/c/{chainId}', temporalUiUrl: 'https://ui.example.test/' }),
      event,
      'prod ns',
      {},
    );
    expect(links).toEqual({
      inbox: 'https://inbox.example.test/c/chain%201%2F%3Cx%3E',
      temporal: 'https://ui.example.test/namespaces/prod%20ns/workflows/chain%201%2F%3Cx%3E',
    });
    // Defaults: GOVERNOR_INBOX_URL, GOVERNOR_TEMPORAL_UI_URL, else the local UI and no inbox.
    expect(linksFor(hook(), event, 'default', {})).toEqual({
      temporal: 'http://localhost:8233/namespaces/default/workflows/chain%201%2F%3Cx%3E',
    });
    expect(
      linksFor(hook(), event, 'default', {
        GOVERNOR_INBOX_URL: 'https://in.example.test/',
        GOVERNOR_TEMPORAL_UI_URL: 'https://t.example.test',
      }),
    ).toEqual({
      inbox: 'https://in.example.test/',
      temporal: 'https://t.example.test/namespaces/default/workflows/chain%201%2F%3Cx%3E',
    });
  });

  it('escapes Slack mrkdwn and adds a primary inbox button to a waiting message', () => {
    const m = slackMessage(event, { inbox: 'https://i.test/', temporal: 'https://t.test/' });
    const section = (m.blocks[1] as { text: { text: string } }).text.text;
    expect(section).toContain('*Workload:* agent:&lt;bot&gt;&amp;co');
    expect(section).not.toContain('<bot>');
    expect(section).toContain('*Still needed:* 2 of 2 from sre-lead');
    expect(m.blocks[2]).toEqual({
      type: 'actions',
      elements: [
        {
          type: 'button',
          text: { type: 'plain_text', text: 'Open the approval inbox' },
          url: 'https://i.test/',
          style: 'primary',
        },
        { type: 'button', text: { type: 'plain_text', text: 'Open in Temporal UI' }, url: 'https://t.test/' },
      ],
    });
    const outcome = slackMessage(
      { ...event, event: 'outcome', outcome: { status: 'Denied', reason: 'no' } },
      {
        temporal: 'https://t.test/',
      },
    );
    expect((outcome.blocks[0] as { text: { text: string } }).text.text).toBe('Chain Denied: agent:<bot>&co');
    expect((outcome.blocks[2] as { elements: unknown[] }).elements).toHaveLength(1);
  });

  it('sends the event itself as json, with its id and links', () => {
    const body = JSON.parse(webhookBody(hook(), event, { temporal: 'https://t.test/' }, new Date(0))) as Record<
      string,
      unknown
    >;
    expect(body).toMatchObject({ ...event, id: idempotencyKeyOf(event), links: { temporal: 'https://t.test/' } });
    expect(body.sentAt).toBe('1970-01-01T00:00:00.000Z');
  });

  it('reports the events some webhook asked for, in order', () => {
    expect(subscribedEvents([])).toEqual([]);
    expect(subscribedEvents([hook({ events: ['outcome'] }), hook({ events: ['waiting'] })])).toEqual([
      'waiting',
      'outcome',
    ]);
    expect(subscribedEvents([hook()])).toEqual(['waiting', 'vote', 'outcome']);
  });
});

describe('webhook secrets', () => {
  it('reads an env secret or a file (trailing newline dropped) and names the field, never the value, when missing', () => {
    expect(readWebhookSecret(hook(), 0, '/nonexistent', { HOOK_SECRET: 'abc' })).toEqual({ ok: true, value: 'abc' });
    const missing = readWebhookSecret(hook(), 3, '/nonexistent', {});
    expect(missing).toEqual({
      ok: false,
      reason: 'notifications.webhooks[3].secret: environment variable HOOK_SECRET is unset or empty',
    });
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-notify-'));
    fs.writeFileSync(path.join(home, 'hook.secret'), 'from-file\n');
    expect(readWebhookSecret(hook({ secret: { file: 'hook.secret' } }), 0, home, {})).toEqual({
      ok: true,
      value: 'from-file',
    });
    fs.writeFileSync(path.join(home, 'bad.secret'), 'two\nlines\n');
    const bad = readWebhookSecret(hook({ secret: { file: 'bad.secret' } }), 1, home, {});
    expect(bad.ok).toBe(false);
    expect(JSON.stringify(bad)).not.toContain('lines');
    expect(readWebhookSecret(hook({ secret: { file: 'absent' } }), 0, home, {})).toEqual({
      ok: false,
      reason: 'notifications.webhooks[0].secret: file absent cannot be read',
    });
  });

  it('refuses other schemes, credentials in the url and inline secrets in the manifest', () => {
    const issues = (v: unknown) =>
      Webhook.safeParse(v).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(issues({ url: 'ftp://h.test/x', secret: { env: 'A' } })).toEqual([
      'url: must be an http:// or https:// URL',
    ]);
    expect(issues({ url: 'file:///etc/passwd', secret: { env: 'A' } })).toEqual([
      'url: must be an http:// or https:// URL',
    ]);
    expect(issues({ url: 'https://u:p@h.test/x', secret: { env: 'A' } })).toEqual([
      'url: must not carry credentials (user:password@)',
    ]);
    expect(issues({ url: 'https://h.test/x', secret: 'inline' })).toHaveLength(1);
    expect(issues({ url: 'https://h.test/x', secret: { env: 'A', file: 'b' } })).toEqual([
      'secret: exactly one of env or file is required',
    ]);
    expect(issues({ url: 'https://h.test/x', secret: { env: 'A' }, format: 'teams' })).toHaveLength(1);
  });
});
