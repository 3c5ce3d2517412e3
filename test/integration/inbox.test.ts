import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { loadChainFile } from '../../sdk/chain-file';
import { loadBundle } from '../../policies/bundle';
import { defaultPoliciesDir } from '../../workers/worker';
import { InboxSection, type Manifest } from '../../policies/manifest';
import { startInbox, type Inbox } from '../../inbox/server';
import type { ChainState } from '../../contracts/state';
import { defaultBundleWith } from '../harness/bundles';
import { eventually } from '../harness/eventually';
import { setupGoverned, type Governed } from '../harness/governed';
import { CookieBrowser, inputValue, type Page } from '../harness/inbox-client';
import { freePort, startTestIdp, type TestIdp } from '../harness/oidc-idp';
import { makeTestCerts } from '../harness/grpc-front';
import https from 'node:https';
import http from 'node:http';
import fs from 'node:fs';

// The approval inbox against the real dev server and a real OpenID Provider (oidc-provider) on loopback:
// sign-in through the authorization-code + PKCE flow with plain HTTP requests, votes counted by the
// governed chain, and every hostile request refused with nothing recorded.

const CLIENT_ID = 'governor-inbox';
const CLIENT_SECRET = randomBytes(24).toString('base64url');
const PASSWORD = 'correct horse battery staple';
const accounts = {
  alice: { password: PASSWORD, claims: { name: 'Alice', groups: ['sre'] } },
  bob: { password: PASSWORD, claims: { name: 'Bob', groups: ['sre', 'staff'] } },
  carol: { password: PASSWORD, claims: { name: 'Carol', groups: ['finance'] } },
  // The manifest's break-glass role (security-officer): may approve any waiting step, with a justification.
  sam: { password: PASSWORD, claims: { name: 'Sam', groups: ['security'] } },
  // The deploy chain's declared owner: holds the role, but separation of duties forbids the vote.
  'team-release': { password: PASSWORD, claims: { name: 'Release team', groups: ['sre'] } },
};

let g: Governed;
let idp: TestIdp;
let inbox: Inbox;
let manifest: Manifest;
const logs: string[] = [];

beforeAll(async () => {
  g = await setupGoverned();
  const port = await freePort();
  const redirectUri = `http://127.0.0.1:${port}/auth/callback`;
  idp = await startTestIdp({
    clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [redirectUri] }],
    accounts,
  });
  manifest = {
    ...loadBundle(defaultPoliciesDir()).manifest,
    inbox: InboxSection.parse({
      oidc: {
        issuer: idp.issuer,
        clientId: CLIENT_ID,
        clientSecretEnv: 'INBOX_TEST_SECRET',
        redirectUri,
        scopes: ['openid', 'profile', 'groups'],
        rolesClaim: 'groups',
        roleMap: { sre: ['sre-lead'], finance: ['finance-approver'], security: ['security-officer'] },
      },
    }),
  };
  inbox = await startInbox({
    client: g.client,
    taskQueue: g.taskQueue,
    manifest,
    home: g.home,
    port,
    clientSecret: CLIENT_SECRET,
    temporalUiUrl: 'http://localhost:8233',
    log: (line) => logs.push(line),
  });
});

afterAll(async () => {
  await inbox?.close();
  await idp?.stop();
  await g?.stop();
});

/** Signs in through the IdP's form; returns the browser and the inbox page it lands on. */
async function signIn(user: keyof typeof accounts): Promise<{ browser: CookieBrowser; page: Page; ms: number }> {
  const started = Date.now();
  const browser = new CookieBrowser();
  const login = await browser.go(`${inbox.url}/auth/login`);
  expect(login.url.startsWith(`${idp.issuer}/interaction/`)).toBe(true);
  const page = await browser.go(login.url + '/login', { form: { login: user, password: PASSWORD } });
  expect(page.url).toBe(`${inbox.url}/`);
  expect(page.status).toBe(200);
  expect(page.html).toContain('id="signed-in-as"');
  return { browser, page, ms: Date.now() - started };
}

/** Starts the example production deploy (escalates: two sre-lead approvals) and waits for AwaitingApproval. */
async function escalatedDeploy(): Promise<string> {
  const chain = loadChainFile(path.join(__dirname, '..', '..', 'examples', 'chains', 'deploy-prod.yaml'));
  const handle = await g.gc.start(chain, await g.creds(chain.workload));
  await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
  return handle.workflowId;
}

const cardId = (chainId: string) => `chain-${chainId.replace(/[^A-Za-z0-9_-]/g, '_')}`;

/** The inbox page once it lists the chain (visibility is eventually consistent). */
async function pageListing(browser: CookieBrowser, chainId: string): Promise<Page> {
  return eventually(`inbox to list ${chainId}`, async () => {
    const page = await browser.go(`${inbox.url}/`);
    return page.html.includes(`id="${cardId(chainId)}"`) ? page : undefined;
  });
}

async function votes(chainId: string): Promise<ChainState['steps'][number]['approval']> {
  return (await g.gc.status(chainId)).steps[0]!.approval;
}

function voteForm(page: Page, chainId: string, decision = 'approve', reason = 'looks right') {
  const within = `vote-form-${cardId(chainId).slice('chain-'.length)}`;
  return {
    csrf: inputValue(page.html, 'csrf', within)!,
    stepId: inputValue(page.html, 'stepId', within)!,
    stepDigest: inputValue(page.html, 'stepDigest', within)!,
    decision,
    reason,
  };
}

const voteUrl = (chainId: string) => `${inbox.url}/chains/${encodeURIComponent(chainId)}/vote`;

describe('approval inbox with OIDC sign-in (real IdP, real server)', () => {
  it('two approvers sign in at the IdP and approve an escalated production deploy to Completed', async () => {
    const chainId = await escalatedDeploy();

    const alice = await signIn('alice');
    const t0 = Date.now();
    const page = await pageListing(alice.browser, chainId);
    expect(page.html).toContain('id="my-roles">sre-lead<');
    const card = page.html.slice(page.html.indexOf(`id="${cardId(chainId)}"`));
    // What would run, why, who is needed, by when, and where to read more.
    expect(card).toContain('<code>deploy</code> on <code>Environment::&#34;prod&#34;</code>');
    expect(card).toContain('&#34;version&#34;: &#34;1.4.2&#34;');
    expect(card).toMatch(/class="policy-reason">[^<]+</);
    expect(card).toMatch(/class="policies">[^<]+</);
    expect(card).toContain('2 more approval(s) from sre-lead');
    expect(card).toContain('data-deadline="');
    expect(card).toContain(`http://localhost:8233/namespaces/default/workflows/${encodeURIComponent(chainId)}`);

    const v0 = Date.now();
    const first = await alice.browser.go(voteUrl(chainId), {
      form: voteForm(page, chainId, 'approve', 'change window ok'),
    });
    const voteMs = Date.now() - v0;
    const signInToVoteMs = alice.ms + (Date.now() - t0);
    expect(first.status).toBe(200);
    expect(first.html).toContain('Your approve vote counted. Still needed: 1.');
    expect(first.html).toContain('role="status"');

    const bob = await signIn('bob');
    const bobPage = await pageListing(bob.browser, chainId);
    // Alice's vote and reason are shown to the next approver.
    expect(bobPage.html).toContain('<strong>alice</strong> approved as sre-lead: “change window ok”');
    const second = await bob.browser.go(voteUrl(chainId), { form: voteForm(bobPage, chainId, 'approve', 'verified') });
    expect(second.html).toContain('Your approve vote counted. The step is approved.');

    const done = await g.waitFor(chainId, (s) => s.status === 'Completed');
    expect(done.steps[0]!.approval!.approvedBy.map((a) => a.approver).sort()).toEqual(['alice', 'bob']);
    // Sign-in to a counted vote, measured (README, "Approval inbox").
    process.stdout.write(
      `inbox: sign-in to counted vote ${signInToVoteMs} ms (IdP sign-in ${alice.ms} ms, vote POST to verdict ${voteMs} ms)\n`,
    );
    expect(signInToVoteMs).toBeGreaterThan(0);

    // The vote carries the IdP issuer and subject: the chain's history holds the signed token.
    const history = JSON.stringify(await g.client.workflow.getHandle(chainId).fetchHistory());
    const payloads = [...history.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) =>
      Buffer.from(m[1]!, 'base64').toString('utf8'),
    );
    const tokens = payloads
      .flatMap((p) => [...p.matchAll(/eyJ[A-Za-z0-9_-]+\.(eyJ[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+/g)])
      .map((m) => JSON.parse(Buffer.from(m[1]!, 'base64url').toString()) as Record<string, unknown>);
    const aliceVote = tokens.find((c) => c.sub === 'alice' && c.decision === 'approve');
    expect(aliceVote?.idp).toEqual({ iss: idp.issuer, sub: 'alice' });
    // …and so do the verdict and its signed receipt (the verifyApproval result).
    const judged = payloads
      .filter((p) => p.startsWith('{'))
      .map((p) => JSON.parse(p) as { verdict?: { approver?: string; idp?: unknown }; receipt?: { kind?: string } })
      .find((r) => r.verdict?.approver === 'alice' && r.receipt?.kind === 'approval');
    expect(judged?.verdict?.idp).toEqual({ iss: idp.issuer, sub: 'alice' });
  });

  it('a person without an eligible role sees nothing to approve, and a forged vote from them is refused', async () => {
    const chainId = await escalatedDeploy();
    const alice = await signIn('alice');
    const alicePage = await pageListing(alice.browser, chainId); // visible to the role, so visibility caught up
    const carol = await signIn('carol');
    expect(carol.page.html).toContain('id="my-roles">finance-approver<');
    const page = await carol.browser.go(`${inbox.url}/`);
    expect(page.html).toContain('id="nothing-to-approve"');
    expect(page.html).not.toContain(chainId);
    // Nor by the chain's own URL: what would run is shown to its approvers only.
    expect(alicePage.html).toContain('1.4.2'); // the deploy's input, shown to an approver
    const direct = await carol.browser.go(`${inbox.url}/chains/${encodeURIComponent(chainId)}`);
    expect(direct.status).toBe(403);
    expect(direct.html).toContain('its details are shown to its approvers only');
    expect(direct.html).not.toContain('1.4.2');
    const before = await votes(chainId);
    const forged = { ...voteForm(alicePage, chainId), csrf: inputValue(page.html, 'csrf')! };
    const res = await carol.browser.go(voteUrl(chainId), { form: forged });
    expect(res.status).toBe(403);
    expect(res.html).toContain('You hold none of the roles that may decide this step (sre-lead)');
    expect(await votes(chainId)).toEqual(before);
  });

  it('break-glass: the security officer sees the waiting chain, must justify, and the vote counts as break-glass', async () => {
    const chainId = await escalatedDeploy();
    const sam = await signIn('sam');
    const page = await pageListing(sam.browser, chainId);
    const id = cardId(chainId).slice('chain-'.length);
    expect(page.html).toContain(`id="justification-${id}"`);
    // Without a justification the vote does not count, and the step still waits.
    const bare = await sam.browser.go(voteUrl(chainId), { form: voteForm(page, chainId) });
    expect(bare.html).toContain('break-glass approval requires a justification');
    expect((await votes(chainId))!.verdicts.filter((v) => v.counted)).toEqual([]);
    expect((await g.gc.status(chainId)).status).toBe('AwaitingApproval');
    const again = await sam.browser.go(`${inbox.url}/chains/${encodeURIComponent(chainId)}`);
    const justified = await sam.browser.go(voteUrl(chainId), {
      form: { ...voteForm(again, chainId), justification: 'INC-4711: production outage, fix must ship now' },
    });
    expect(justified.status).toBe(200);
    const done = await g.waitFor(chainId, (s) => s.status === 'Completed');
    const counted = done.steps[0]!.approval!.verdicts.filter((v) => v.counted);
    expect(counted).toEqual([
      expect.objectContaining({
        approver: 'sam',
        breakGlass: true,
        justification: 'INC-4711: production outage, fix must ship now',
        idp: { iss: idp.issuer, sub: 'sam' },
      }),
    ]);
    expect(done.steps[0]!.approval!.outcome).toBe('break-glass');
  });

  it("refuses the requester's owner (separation of duties), explaining the disabled buttons", async () => {
    const chainId = await escalatedDeploy();
    const owner = await signIn('team-release');
    const page = await pageListing(owner.browser, chainId);
    const card = page.html.slice(page.html.indexOf(`id="${cardId(chainId)}"`));
    expect(card).toContain('Separation of duties: you (team-release) are the requesting workload or its owner');
    expect(card).toMatch(/<button type="button" disabled aria-describedby="blocked-[^"]+" id="approve-/);
    expect(card).not.toContain('name="stepDigest"');
    const alice = await signIn('alice');
    const form = voteForm(await pageListing(alice.browser, chainId), chainId);
    const before = await votes(chainId);
    const res = await owner.browser.go(voteUrl(chainId), {
      form: { ...form, csrf: inputValue(page.html, 'csrf', 'sign-out-form')! },
    });
    expect(res.status).toBe(403);
    expect(res.html).toContain('Separation of duties');
    expect(res.html).toContain('nothing was recorded');
    expect(await votes(chainId)).toEqual(before);
  });

  it('refuses forged vote POSTs: no CSRF token, another session’s token or cookie, forged or expired session', async () => {
    const chainId = await escalatedDeploy();
    const alice = await signIn('alice');
    const bob = await signIn('bob');
    const alicePage = await pageListing(alice.browser, chainId);
    const bobPage = await pageListing(bob.browser, chainId);
    const aliceForm = voteForm(alicePage, chainId);
    const bobCsrf = voteForm(bobPage, chainId).csrf;
    const before = await votes(chainId);
    expect(before!.verdicts).toEqual([]);

    const { csrf: _dropped, ...noCsrf } = aliceForm;
    const missing = await alice.browser.go(voteUrl(chainId), { form: noCsrf });
    expect([missing.status, missing.html]).toEqual([403, expect.stringContaining('missing its CSRF token')]);

    const crossed = await alice.browser.go(voteUrl(chainId), { form: { ...aliceForm, csrf: bobCsrf } });
    expect(crossed.status).toBe(403);

    // Bob's session cookie with Alice's token (a page of hers replayed through his browser).
    const otherSession = await bob.browser.go(voteUrl(chainId), { form: aliceForm });
    expect(otherSession.status).toBe(403);

    const forger = new CookieBrowser();
    forger.setCookie(inbox.url, 'governor_inbox', randomBytes(32).toString('base64url'));
    const forged = await forger.go(voteUrl(chainId), { form: aliceForm });
    expect([forged.status, forged.html]).toEqual([
      401,
      expect.stringContaining('not signed in, or the session expired'),
    ]);

    // An expired session: the store's clock says it ended.
    const sessionId = alice.browser.cookie(inbox.url, 'governor_inbox')!;
    inbox.sessions.sessions.get(sessionId)!.expiresAt = Date.now() - 1;
    const expired = await alice.browser.go(voteUrl(chainId), { form: aliceForm });
    expect(expired.status).toBe(401);

    expect(await votes(chainId)).toEqual(before);
    // Bob's session still works: the refusals did not spend it.
    const ok = await bob.browser.go(voteUrl(chainId), { form: voteForm(bobPage, chainId) });
    expect(ok.html).toContain('Your approve vote counted. Still needed: 1.');
  });

  it('refuses a callback with a tampered state or code, or without its sign-in cookie: no session is made', async () => {
    const atCallback = (next: string) => next.startsWith(`${inbox.url}/auth/callback`);
    const begin = async () => {
      const browser = new CookieBrowser();
      const login = await browser.go(`${inbox.url}/auth/login`);
      const cb = await browser.go(login.url + '/login', { form: { login: 'alice', password: PASSWORD } }, atCallback);
      return { browser, callback: new URL(cb.url) };
    };
    for (const [what, param, value] of [
      ['state', 'state', 'tampered-state-value'],
      ['code', 'code', 'tampered-code-value'],
    ] as const) {
      const { browser, callback } = await begin();
      callback.searchParams.set(param, value);
      const res = await browser.go(callback.href);
      expect([what, res.status]).toEqual([what, 400]);
      expect(res.html).toContain('the identity provider&#39;s answer was refused');
      expect(res.html).not.toContain(value);
      expect(browser.cookie(inbox.url, 'governor_inbox')).toBeUndefined();
    }
    // A genuine callback replayed from another browser (no sign-in cookie): refused.
    const { callback } = await begin();
    const thief = new CookieBrowser();
    const stolen = await thief.go(callback.href);
    expect(stolen.status).toBe(400);
    expect(stolen.html).toContain('this sign-in expired or was started elsewhere');
    expect(thief.cookie(inbox.url, 'governor_inbox')).toBeUndefined();
    // A wrong password never reaches the inbox.
    const browser = new CookieBrowser();
    const login = await browser.go(`${inbox.url}/auth/login`);
    const wrong = await browser.go(login.url + '/login', { form: { login: 'alice', password: 'nope' } });
    expect(wrong.html).toContain('wrong username or password');
  });

  it('refuses oversized, malformed and non-form bodies before reading a vote', async () => {
    const chainId = await escalatedDeploy();
    const alice = await signIn('alice');
    const form = voteForm(await pageListing(alice.browser, chainId), chainId);
    const before = await votes(chainId);
    const big = await alice.browser.go(voteUrl(chainId), {
      form: { ...form, reason: 'x'.repeat(20_000) },
    });
    expect(big.status).toBe(413);
    const json = await alice.browser.go(voteUrl(chainId), {
      body: JSON.stringify(form),
      headers: { 'content-type': 'application/json' },
    });
    expect(json.status).toBe(415);
    const twice = await alice.browser.go(voteUrl(chainId), { form: { ...form, decision: ['approve', 'deny'] } });
    expect([twice.status, twice.html]).toEqual([400, expect.stringContaining('field decision: given more than once')]);
    const bad = await alice.browser.go(voteUrl(chainId), { form: { ...form, decision: 'maybe' } });
    expect(bad.status).toBe(400);
    const stale = await alice.browser.go(voteUrl(chainId), { form: { ...form, stepDigest: 'f'.repeat(64) } });
    expect([stale.status, stale.html]).toEqual([409, expect.stringContaining('the step changed')]);
    const longReason = await alice.browser.go(voteUrl(chainId), { form: { ...form, reason: 'y'.repeat(1001) } });
    expect(longReason.status).toBe(400);
    expect(await votes(chainId)).toEqual(before);
  });

  it('sets HttpOnly SameSite cookies and keeps secrets out of logs and pages', async () => {
    const browser = new CookieBrowser();
    const login = await browser.go(`${inbox.url}/auth/login`);
    const done = await browser.go(login.url + '/login', { form: { login: 'bob', password: PASSWORD } });
    const inboxCookies = done.setCookies.filter((c) => c.startsWith('governor_inbox'));
    expect(inboxCookies.length).toBeGreaterThan(0);
    for (const c of inboxCookies) {
      expect(c).toMatch(/; HttpOnly/);
      expect(c).toMatch(/; SameSite=Lax/);
      expect(c).not.toMatch(/; Secure/); // plain http on loopback here; Secure when served over TLS
    }
    const sessionId = browser.cookie(inbox.url, 'governor_inbox')!;
    const csrf = inputValue(done.html, 'csrf')!;
    const text = logs.join('\n');
    expect(text).toContain('GET /auth/callback 303');
    for (const secret of [CLIENT_SECRET, sessionId, csrf, PASSWORD]) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/code=|state=|eyJ/);
    expect(done.html).not.toContain(sessionId);
    expect(done.html).not.toContain(CLIENT_SECRET);
  });
});

describe('development sign-in', () => {
  it('works without an IdP, labelled on every page, and is refused when NODE_ENV=production', async () => {
    const plain = loadBundle(defaultPoliciesDir()).manifest;
    await expect(
      startInbox({ client: g.client, taskQueue: g.taskQueue, manifest: plain, home: g.home, nodeEnv: 'production' }),
    ).rejects.toThrow('NODE_ENV=production refuses the development sign-in');

    const dev = await startInbox({
      client: g.client,
      taskQueue: g.taskQueue,
      manifest: plain,
      home: g.home,
      nodeEnv: 'development',
    });
    try {
      const chainId = await escalatedDeploy();
      const browser = new CookieBrowser();
      const form = await browser.go(`${dev.url}/`);
      expect(form.html).toContain('id="dev-banner"');
      expect(form.html).toContain('Development sign-in');
      // Without the sign-in form's CSRF token: refused.
      const noToken = await new CookieBrowser().go(`${dev.url}/auth/dev`, {
        form: { name: 'dave', roles: 'sre-lead' },
      });
      expect(noToken.status).toBe(403);
      // An unknown role: refused.
      const csrf = inputValue(form.html, 'csrf')!;
      const unknown = await browser.go(`${dev.url}/auth/dev`, { form: { csrf, name: 'dave', roles: 'root' } });
      expect(unknown.status).toBe(400);
      const again = await browser.go(`${dev.url}/`);
      const page = await browser.go(`${dev.url}/auth/dev`, {
        form: { csrf: inputValue(again.html, 'csrf')!, name: 'dave', roles: ['sre-lead'] },
      });
      expect(page.html).toContain('id="dev-banner"');
      expect(page.html).toContain('Signed in as <strong>dave</strong>');
      const listed = await eventually('dev inbox to list the chain', async () => {
        const p = await browser.go(`${dev.url}/`);
        return p.html.includes(`id="${cardId(chainId)}"`) ? p : undefined;
      });
      expect(listed.html).toContain('id="dev-banner"');
      const voted = await browser.go(`${dev.url}/chains/${encodeURIComponent(chainId)}/vote`, {
        form: voteForm(listed, chainId),
      });
      expect(voted.html).toContain('Your approve vote counted. Still needed: 1.');
      expect(voted.html).toContain('id="dev-banner"');
      // Sign out (CSRF-checked) ends the session.
      const out = await browser.go(`${dev.url}/auth/logout`, {
        form: { csrf: inputValue(voted.html, 'csrf', 'sign-out-form')! },
      });
      expect(out.html).toContain('id="dev-sign-in-form"');
      expect(browser.cookie(dev.url, 'governor_inbox')).toBeUndefined();
    } finally {
      await dev.close();
    }
  });
});

describe('ties in the inbox', () => {
  // Staging deploys (no approval needed) of two equal authorities in one domain: a tie for sre-lead.
  const tieBundle = defaultBundleWith((m) => {
    m.coordination = {
      domains: [
        {
          name: 'cluster:staging',
          resources: ['Environment::"staging"'],
          conflicts: [['deploy', 'deploy']],
          onConflict: 'reject',
          batchingWindow: '1s',
          tieBreakerRole: 'sre-lead',
          decisionDeadline: '60s',
        },
      ],
      authority: { workloads: { 'agent:peer-a': 5, 'agent:peer-b': 5 }, default: 0 },
    };
  });

  it('over TLS every cookie it sets is Secure (and over plain HTTP none is)', async () => {
    const plain = loadBundle(defaultPoliciesDir()).manifest;
    const certs = makeTestCerts();
    const served = await startInbox({
      client: g.client,
      taskQueue: g.taskQueue,
      manifest: plain,
      home: g.home,
      nodeEnv: 'development',
      tls: { key: fs.readFileSync(certs.serverKey), cert: fs.readFileSync(certs.serverCert) },
    });
    const cookiesOf = (url: string, ca?: Buffer) =>
      new Promise<string[]>((resolve, reject) => {
        const get = url.startsWith('https:') ? https.get : http.get;
        get(url, ca ? { ca } : {}, (res) => {
          res.resume();
          resolve(res.headers['set-cookie'] ?? []);
        }).on('error', reject);
      });
    try {
      expect(served.url).toMatch(/^https:/);
      const secure = await cookiesOf(`${served.url}/`, fs.readFileSync(certs.caCert));
      expect(secure.length).toBeGreaterThan(0); // the development sign-in form's login cookie
      for (const c of secure) expect(c).toMatch(/; HttpOnly; SameSite=Lax; .*Secure/);
      const dev = await startInbox({
        client: g.client,
        taskQueue: g.taskQueue,
        manifest: plain,
        home: g.home,
        nodeEnv: 'development',
      });
      try {
        const insecure = await cookiesOf(`${dev.url}/`);
        expect(insecure.length).toBeGreaterThan(0);
        for (const c of insecure) expect(c).not.toMatch(/Secure/);
      } finally {
        await dev.close();
      }
    } finally {
      await served.close();
      fs.rmSync(certs.dir, { recursive: true, force: true });
    }
  });

  it('shows a tie to the tie-breaker role with both contenders side by side, and settles it with a pick', async () => {
    const t = await setupGoverned({ policiesDir: tieBundle });
    const dev = await startInbox({
      client: t.client,
      taskQueue: t.taskQueue,
      manifest: loadBundle(tieBundle).manifest,
      home: t.home,
      nodeEnv: 'development',
    });
    try {
      const deploy = (workload: string, version: string) => ({
        workload,
        steps: [t.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'staging' }, { input: { version } })],
      });
      const [a, b] = await Promise.all([
        t.gc.start(deploy('agent:peer-a', '2.0.0'), await t.creds('agent:peer-a')),
        t.gc.start(deploy('agent:peer-b', '3.0.0'), await t.creds('agent:peer-b')),
      ]);
      const signIn = async (name: string, roles: string[]) => {
        const browser = new CookieBrowser();
        const form = await browser.go(`${dev.url}/`);
        await browser.go(`${dev.url}/auth/dev`, { form: { csrf: inputValue(form.html, 'csrf')!, name, roles } });
        return browser;
      };
      // Someone without the tie-breaker role sees no tie.
      const dba = await signIn('dana', ['dba']);
      const sally = await signIn('sally', ['sre-lead']);
      const page = await eventually('the inbox to show the tie', async () => {
        const p = await sally.go(`${dev.url}/`);
        return p.html.includes('id="ties-heading"') ? p : undefined;
      });
      const tie = page.html.slice(page.html.indexOf('<article class="tie"'));
      for (const [id, version] of [
        [a.workflowId, '2.0.0'],
        [b.workflowId, '3.0.0'],
      ] as const) {
        expect(tie).toContain(`value="${id}/deploy"`);
        expect(tie).toContain(`&#34;version&#34;: &#34;${version}&#34;`);
      }
      expect(tie).toContain('<code>deploy</code> on <code>Environment::&#34;staging&#34;</code>');
      expect((await dba.go(`${dev.url}/`)).html).not.toContain('id="ties-heading"');

      const action = /<form method="post" action="([^"]+)" id="pick-form-/
        .exec(tie)![1]!
        .replace(/&#(\d+);/g, (_m, d: string) => String.fromCharCode(Number(d)));
      // A pick without the CSRF token is refused.
      const forged = await sally.go(`${dev.url}${action}`, {
        form: { choice: 'winner', winner: `${b.workflowId}/deploy` },
      });
      expect(forged.status).toBe(403);
      const picked = await sally.go(`${dev.url}${action}`, {
        form: {
          csrf: inputValue(page.html, 'csrf')!,
          choice: 'winner',
          winner: `${b.workflowId}/deploy`,
          reason: 'newer',
        },
      });
      expect(picked.html).toContain(`Tie settled: ${b.workflowId}/deploy goes first`);
      const [ra, rb] = await Promise.all([t.gc.result(a.workflowId), t.gc.result(b.workflowId)]);
      expect(rb.status).toBe('Completed');
      expect(ra.status).toBe('Denied');
    } finally {
      await dev.close();
      await t.stop();
    }
  });
});
