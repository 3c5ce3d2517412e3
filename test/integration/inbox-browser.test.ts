import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Page } from 'puppeteer-core';
import type { ChainResult, ChainState } from '../../contracts/state';
import { GovernorStatusKey } from '../../contracts/search-attributes';
import { launchBrowser, type TestBrowser } from '../harness/browser';
import { defaultBundleWith } from '../harness/bundles';
import { eventually } from '../harness/eventually';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';
import { freePort, startTestIdp, type TestIdp } from '../harness/oidc-idp';
import { inboxAvailable, startInboxForTest, type TestInbox } from '../harness/inbox';

/*
 * The approval inbox in a real browser (issue 17 item 3): the real dev server, a governor worker, the
 * inbox, and oidc-provider as the IdP, all on loopback; headless Chromium signs in through the real
 * authorization-code + PKCE flow by typing into the IdP's sign-in form.
 *
 * People (IdP accounts; `groups` maps to governor roles in the manifest):
 *   alice, carol  sre        → sre-lead: the two approvals deploy-prod needs
 *   bob           viewers    → no governor role: sees nothing to approve
 *   team-release  sre        → sre-lead, but the chain's declared owner: separation of duties refuses
 *   dave          sre        → sre-lead, the victim of the forged posts (never votes himself)
 *
 * Screenshots of the inbox go to GOVERNOR_SCREENSHOTS_DIR when set (`npm run screenshots` writes
 * docs/images/); a plain test run writes nothing into the repository.
 */

const SCREENSHOTS = process.env.GOVERNOR_SCREENSHOTS_DIR;
const CLIENT = { client_id: 'governor-inbox', client_secret: 'inbox-test-secret-0123456789' };
const SECRET_ENV = 'GOVERNOR_TEST_INBOX_CLIENT_SECRET';
const PEOPLE: Record<string, { password: string; groups: string[]; name: string }> = {
  alice: { password: 'alice-pw', groups: ['sre'], name: 'Alice Approver' },
  carol: { password: 'carol-pw', groups: ['sre'], name: 'Carol Approver' },
  bob: { password: 'bob-pw', groups: ['viewers'], name: 'Bob Viewer' },
  'team-release': { password: 'owner-pw', groups: ['sre'], name: 'Release Team' },
  dave: { password: 'dave-pw', groups: ['sre'], name: 'Dave Approver' },
};

let g: Governed;
let idp: TestIdp;
let inbox: TestInbox;
let b: TestBrowser;
let chainId: string;
let attacker: { server: http.Server; origin: string; form: (fields: Record<string, string>) => void };
const timings: Record<string, number> = {};
/** When each page's sign-in began (the first inbox page's navigation start, in the browser's clock). */
const signInStartedAt = new WeakMap<Page, number>();

const deployProd = () => ({
  workload: WORKLOAD,
  owner: 'team-release',
  summary: 'release-bot deploys web 1.4.2 to production',
  steps: [
    {
      id: 'deploy',
      action: 'deploy',
      resource: { type: 'Environment', id: 'prod' },
      input: { service: 'web', version: '1.4.2' },
      executor: { type: 'noop' },
    },
  ],
});

/** DOM id fragment of a chain id, as the inbox writes it (inbox/html.ts domId). */
const domId = (value: string) => value.replace(/[^A-Za-z0-9_-]/g, '_');

/** A page on another origin of the same host (same site: the browser sends SameSite cookies along). */
function startAttacker(): Promise<typeof attacker> {
  let fields: Record<string, string> = {};
  let target = '';
  const server = http.createServer((_req, res) => {
    const inputs = Object.entries(fields)
      .map(([k, v]) => `<input type="hidden" name="${k}" value="${v.replace(/"/g, '&quot;')}">`)
      .join('');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      `<!doctype html><title>Win a prize</title><form id="f" method="post" action="${target}">${inputs}</form>` +
        '<script>document.getElementById("f").submit()</script>',
    );
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        server,
        origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        form: (f) => {
          const { action, ...rest } = f;
          target = action!;
          fields = rest;
        },
      }),
    ),
  );
}

async function status(): Promise<ChainState> {
  return g.gc.status(chainId);
}

/** The votes the chain recorded (every verdict, counted or rejected). */
async function verdicts() {
  return (await status()).steps[0]!.approval!.verdicts;
}

/**
 * Signs `who` in on a fresh browser context: the inbox sends the browser to the IdP, the test types
 * the username and password into the IdP's form, the IdP redirects back with a code the inbox redeems
 * (PKCE). Resolves on the inbox page, signed in.
 */
async function signIn(who: string): Promise<Page> {
  const page = await b.page();
  await page.goto(`${inbox.url}/`);
  signInStartedAt.set(page, (await navigationTimes(page)).start);
  if (!(await page.$('#login'))) {
    // The inbox shows a sign-in control first (rather than redirecting at once).
    await Promise.all([page.waitForNavigation(), page.click('#sign-in')]);
  }
  expect(new URL(page.url()).origin).toBe(idp.issuer);
  await page.type('#login', who);
  await page.type('#password', PEOPLE[who]!.password);
  await Promise.all([page.waitForNavigation(), page.click('#idp-submit')]);
  await page.waitForSelector('#signed-in-as');
  expect(new URL(page.url()).origin).toBe(inbox.url);
  expect(await page.$eval('#signed-in-as', (e) => e.textContent)).toContain(who);
  return page;
}

/**
 * Adds a form with these fields to the page and submits it (a POST the page's own controls would not
 * make); resolves with the response once the browser has loaded it.
 */
async function submitForm(page: Page, action: string, fields: Record<string, string>) {
  const script = `(() => {
    const f = document.createElement('form');
    f.method = 'post';
    f.action = ${JSON.stringify(action)};
    for (const [name, value] of Object.entries(${JSON.stringify(fields)})) {
      const i = document.createElement('input');
      i.type = 'hidden'; i.name = name; i.value = value;
      f.appendChild(i);
    }
    document.body.appendChild(f);
    f.submit();
  })()`;
  const [response] = await Promise.all([page.waitForNavigation(), page.evaluate(script)]);
  return { status: response!.status() };
}

async function shot(page: Page, name: string, selector?: string, fullPage = true): Promise<void> {
  if (!SCREENSHOTS) return;
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`) as `${string}.png`;
  const el = selector ? await page.$(selector) : null;
  if (el) await el.screenshot({ path: file });
  else await page.screenshot({ path: file, fullPage });
}

/** In the browser's clock (epoch ms): when the current page's navigation started and when it finished loading. */
async function navigationTimes(page: Page): Promise<{ start: number; end: number }> {
  return (await page.evaluate(`(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return { start: performance.timeOrigin, end: performance.timeOrigin + (n.loadEventEnd || n.responseEnd) };
  })()`)) as { start: number; end: number };
}

/**
 * Types a reason into the chain's vote form on the current page (the inbox list or the chain's own
 * page) and clicks Approve; returns the verdict shown (`<class>: <text>`) and when its page loaded.
 */
async function approve(page: Page, reason: string): Promise<{ verdict: string; voteMs: number; shownAt: number }> {
  const id = domId(chainId);
  await page.type(`#reason-${id}`, reason);
  await Promise.all([page.waitForNavigation(), page.click(`#approve-${id}`)]);
  await page.waitForSelector('#verdict');
  const t = await navigationTimes(page);
  const verdict = await page.$eval('#verdict', (e) => `${e.className}: ${e.textContent}`);
  return { verdict, voteMs: Math.round(t.end - t.start), shownAt: t.end };
}

beforeAll(async () => {
  if (!inboxAvailable()) return;
  const inboxPort = await freePort();
  const inboxUrl = `http://127.0.0.1:${inboxPort}`;
  idp = await startTestIdp({
    clients: [{ ...CLIENT, redirect_uris: [`${inboxUrl}/auth/callback`] }],
    accounts: Object.fromEntries(
      Object.entries(PEOPLE).map(([id, p]) => [
        id,
        { password: p.password, claims: { name: p.name, groups: p.groups } },
      ]),
    ),
  });
  const bundleDir = defaultBundleWith((m) => {
    m.inbox = {
      oidc: {
        issuer: idp.issuer,
        clientId: CLIENT.client_id,
        clientSecretEnv: SECRET_ENV,
        redirectUri: `${inboxUrl}/auth/callback`,
        scopes: ['openid', 'profile', 'groups'],
        rolesClaim: 'groups',
        roleMap: { sre: ['sre-lead'] },
      },
      approverIssuer: 'https://governor.local/dev-approver',
    };
  });
  process.env[SECRET_ENV] = CLIENT.client_secret;
  g = await setupGoverned({ policiesDir: bundleDir });
  inbox = await startInboxForTest({ g, policiesDir: bundleDir, port: inboxPort });
  attacker = await startAttacker();
  b = await launchBrowser();
  const handle = await g.gc.start(deployProd(), await g.creds());
  chainId = handle.workflowId;
  await g.waitFor(chainId, (s) => s.status === 'AwaitingApproval');
  // The list reads visibility (GovernorPendingRoles): wait until the chain is listed there.
  await eventually('the chain in visibility as AwaitingApproval', async () => {
    const d = await g.client.workflow.getHandle(chainId).describe();
    return d.typedSearchAttributes.get(GovernorStatusKey) === 'AwaitingApproval';
  });
}, 120_000);

afterAll(async () => {
  await b?.close();
  attacker?.server.close();
  await inbox?.stop();
  await g?.stop();
  await idp?.stop();
  delete process.env[SECRET_ENV];
  if (Object.keys(timings).length) console.log(`inbox browser timings (ms): ${JSON.stringify(timings)}`);
});

(inboxAvailable() ? describe : describe.skip)(
  'approval inbox in headless Chromium, signed in at a real OIDC provider',
  () => {
    it('a person without an approver role signs in and sees nothing to approve', async () => {
      const page = await signIn('bob');
      expect(await page.$eval('#my-roles', (e) => e.textContent)).toBe('none');
      expect(await page.$(`#chain-${domId(chainId)}`)).toBeNull();
      expect(await page.$$('article.chain')).toHaveLength(0);
      // Going to the chain's page directly does not offer a vote either.
      const direct = await page.goto(`${inbox.url}/chains/${encodeURIComponent(chainId)}`);
      expect(direct?.status()).toBe(403); // the chain's details are for its approvers only
      expect(await page.content()).not.toContain('1.4.2');
      expect(await page.$(`#vote-form-${domId(chainId)}`)).toBeNull();
      expect(await verdicts()).toEqual([]);
    });

    it("the requester's owner sees the chain with the buttons disabled and why; a forced POST is refused", async () => {
      const before = await verdicts();
      const page = await signIn('team-release');
      const id = domId(chainId);
      await page.waitForSelector(`#chain-${id}`);
      await page.goto(`${inbox.url}/chains/${encodeURIComponent(chainId)}`);
      expect(await page.$eval(`#approve-${id}`, (e) => e.hasAttribute('disabled'))).toBe(true);
      expect(await page.$eval(`#approve-${id}`, (e) => e.getAttribute('aria-describedby'))).toBe(`blocked-${id}`);
      expect(await page.$eval(`#blocked-${id}`, (e) => e.textContent)).toMatch(/Separation of duties/);
      await shot(page, 'inbox-separation-of-duties', `#chain-${id}`);

      // Forced: a form the page never offered, with the owner's own session and CSRF token (read from the
      // sign-out form), submitted from the inbox's own page (same origin: only the inbox's check refuses it).
      const csrf = await page.$eval('#sign-out-form input[name=csrf]', (e) => e.getAttribute('value') ?? '');
      const forced = await submitForm(page, `/chains/${encodeURIComponent(chainId)}/vote`, {
        csrf,
        stepId: 'deploy',
        stepDigest: (await status()).steps[0]!.approval!.stepDigest,
        decision: 'approve',
        reason: 'forced',
      });
      expect(forced.status).toBe(403);
      expect(await page.$eval('#error', (e) => e.textContent)).toMatch(/Separation of duties.*nothing was recorded/);
      expect(await page.$('#verdict')).toBeNull();
      const after = await status();
      expect(after.steps[0]!.approval!.approvedBy).toEqual([]);
      expect(after.steps[0]!.approval!.stillNeeded).toBe(2);
      expect(after.steps[0]!.approval!.verdicts).toEqual(before);
    });

    it('alice signs in and approves from the inbox: the vote counts at once (1 still needed)', async () => {
      const page = await signIn('alice');
      const id = domId(chainId);
      await page.waitForSelector(`#chain-${id}`);
      await shot(page, 'inbox-list');
      expect(await page.$eval(`#chain-${id} .would-run`, (e) => e.textContent)).toMatch(/deploy.*Environment::"prod"/);
      expect(await page.$eval(`#chain-${id} .input`, (e) => e.textContent)).toContain('1.4.2');
      expect(await page.$eval(`#chain-${id} .still-needed`, (e) => e.textContent)).toMatch(/^2 more/);
      // One click from the inbox list: the card carries the vote form.
      const { verdict, voteMs, shownAt } = await approve(page, 'release notes checked');
      timings.aliceSignInToCountedVote = Math.round(shownAt - signInStartedAt.get(page)!);
      timings.aliceClickToVerdict = voteMs;
      expect(verdict).toBe('ok: Your approve vote counted. Still needed: 1.');
      await shot(page, 'inbox-verdict', undefined, false);
      const a = (await status()).steps[0]!.approval!;
      expect(a.approvedBy).toEqual([{ approver: 'alice', roles: ['sre-lead'] }]);
      expect(a.stillNeeded).toBe(1);
      expect(a.verdicts.at(-1)).toMatchObject({ counted: true, approver: 'alice', reason: 'release notes checked' });
    });

    it('a forged vote POST from another origin without the CSRF token is refused and records nothing', async () => {
      const page = await signIn('dave'); // the victim, signed in; the attacker page rides on his cookie
      const before = await verdicts();
      const digest = (await status()).steps[0]!.approval!.stepDigest;
      attacker.form({
        action: `${inbox.url}/chains/${encodeURIComponent(chainId)}/vote`,
        stepId: 'deploy',
        stepDigest: digest,
        decision: 'approve',
        reason: 'forged',
      });
      const posted = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/vote'));
      await page.goto(attacker.origin); // its script submits the form at once
      const response = await posted;
      expect(response.request().headers().origin).toBe(attacker.origin);
      // 403 for the missing token, not 401: the browser did send dave's session cookie (same site).
      expect(response.status()).toBe(403);
      await page.waitForSelector('#error');
      expect(await page.$eval('#error', (e) => e.textContent)).toMatch(/CSRF token.*nothing was recorded/);
      expect(await page.$('#verdict')).toBeNull();
      expect(await verdicts()).toEqual(before);
    });

    it("a vote POST with another user's session (and the poster's own CSRF token) is refused and records nothing", async () => {
      // dave's session cookie and carol's CSRF token: the token must belong to the session that posts.
      const dave = await signIn('dave');
      const carol = await signIn('carol');
      const carolCsrf = await carol.$eval('#sign-out-form input[name=csrf]', (e) => e.getAttribute('value') ?? '');
      const daveCookie = (await dave.browserContext().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
      const before = await verdicts();
      const digest = (await status()).steps[0]!.approval!.stepDigest;
      const res = await fetch(`${inbox.url}/chains/${encodeURIComponent(chainId)}/vote`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: daveCookie, origin: inbox.url },
        body: new URLSearchParams({ csrf: carolCsrf, stepId: 'deploy', stepDigest: digest, decision: 'approve' }),
      });
      expect(res.status).toBe(403);
      expect(await res.text()).toMatch(/CSRF token/);
      expect(await verdicts()).toEqual(before);
    });

    it('carol approves too: the chain ends Completed', async () => {
      const page = await signIn('carol');
      const id = domId(chainId);
      await page.goto(`${inbox.url}/chains/${encodeURIComponent(chainId)}`);
      // alice's vote is on the page, with her reason.
      expect(await page.$eval(`#chain-${id} .votes`, (e) => e.textContent)).toMatch(
        /alice approved.*release notes checked/,
      );
      await shot(page, 'inbox-chain-detail', `#chain-${id}`);
      const { verdict, voteMs, shownAt } = await approve(page, 'canary is green');
      timings.carolSignInToCountedVote = Math.round(shownAt - signInStartedAt.get(page)!);
      timings.carolClickToVerdict = voteMs;
      expect(verdict).toBe('ok: Your approve vote counted. The step is approved.');
      const result = (await g.client.workflow.getHandle(chainId).result()) as ChainResult;
      expect(result.status).toBe('Completed');
      const final = await status();
      expect(final.status).toBe('Completed');
      expect(final.steps[0]!.approval!.approvedBy.map((a) => a.approver)).toEqual(['alice', 'carol']);
      expect(final.steps[0]!.status).toBe('completed');
    });
  },
);
