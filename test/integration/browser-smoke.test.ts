import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { launchBrowser, type TestBrowser } from '../harness/browser';

// The browser harness on its own: Debian's Chromium, headless, driven by puppeteer-core, against a tiny
// page on loopback. Besides "it starts", this pins the premise the inbox's forged-vote test rests on: a
// page of another origin on the same host (another port: same site) makes the browser send the
// victim's SameSite cookie with a form POST, so only the CSRF token (not the cookie's SameSite) can
// refuse that vote; and an HttpOnly cookie is invisible to page scripts.

interface Seen {
  method: string;
  url: string;
  cookie: string | undefined;
  origin: string | undefined;
  body: string;
}

function listen(handler: http.RequestListener): Promise<{ server: http.Server; origin: string }> {
  const server = http.createServer(handler);
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }),
    );
  });
}

let b: TestBrowser;
let site: { server: http.Server; origin: string };
let other: { server: http.Server; origin: string };
const seen: Seen[] = [];

beforeAll(async () => {
  site = await listen((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, cookie: req.headers.cookie, origin: req.headers.origin, body });
      if (req.url === '/login') {
        res.writeHead(302, { location: '/', 'set-cookie': 'sid=s3cret; HttpOnly; SameSite=Strict; Path=/' });
        return res.end();
      }
      if (req.method === 'POST') {
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<!doctype html><title>posted</title><p id="r">received</p>');
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        '<!doctype html><title>tiny</title><h1>Tiny page</h1>' +
          '<form method="post" action="/vote"><input name="reason" id="reason"><button id="go">Send</button></form>',
      );
    });
  });
  other = await listen((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(
      `<!doctype html><title>elsewhere</title><form id="f" method="post" action="${site.origin}/vote">` +
        '<input name="decision" value="approve"></form><script>document.getElementById("f").submit()</script>',
    );
  });
  b = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await b?.close();
  site?.server.close();
  other?.server.close();
});

describe('headless Chromium (browser harness)', () => {
  it('signs in with an HttpOnly cookie, types into a form and posts it, and takes a PNG screenshot', async () => {
    const page = await b.page();
    await page.goto(`${site.origin}/login`);
    expect(await page.$eval('h1', (h) => h.textContent)).toBe('Tiny page');
    // HttpOnly: the page's scripts do not see the session cookie, the browser holds it.
    expect(await page.evaluate('document.cookie')).toBe('');
    expect((await page.browserContext().cookies()).map((c) => [c.name, c.httpOnly, c.sameSite])).toEqual([
      ['sid', true, 'Strict'],
    ]);

    await page.type('#reason', 'looks good');
    await Promise.all([page.waitForNavigation(), page.click('#go')]);
    expect(await page.$eval('#r', (p) => p.textContent)).toBe('received');
    const post = seen.find((s) => s.method === 'POST')!;
    expect(post).toMatchObject({ url: '/vote', cookie: 'sid=s3cret', origin: site.origin, body: 'reason=looks+good' });

    const png = Buffer.from(await page.screenshot({ type: 'png' }));
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
  });

  it("a page of another origin on the same host posts with the victim's SameSite cookie (so CSRF tokens are needed)", async () => {
    const page = await b.page();
    await page.goto(`${site.origin}/login`);
    seen.length = 0;
    await page.goto(other.origin); // its script submits the form at once
    await page.waitForFunction("document.title === 'posted'");
    const forged = seen.find((s) => s.method === 'POST')!;
    expect(forged.origin).toBe(other.origin);
    expect(forged.cookie).toBe('sid=s3cret');
  });
});
