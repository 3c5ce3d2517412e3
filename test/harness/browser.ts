import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type BrowserContext, type Page } from 'puppeteer-core';

/**
 * Headless Chromium for the browser tests: Debian's `chromium` package (installed by `.ci/run`), driven
 * by puppeteer-core 24.x (the last line that runs on Node 20), which downloads no browser of its own.
 * `CHROMIUM_PATH` names another binary.
 */
export function chromiumPath(): string {
  const candidate = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!fs.existsSync(candidate))
    throw new Error(
      `Chromium not found at ${candidate}: install Debian's chromium (.ci/run does) or set CHROMIUM_PATH`,
    );
  return candidate;
}

export interface TestBrowser {
  browser: Browser;
  /** A fresh incognito-like context: its own cookies, so each signed-in person is separate. */
  context(): Promise<BrowserContext>;
  /** A new page in a fresh context, with the default timeouts of the tests. */
  page(): Promise<Page>;
  close(): Promise<void>;
}

/**
 * Launches headless Chromium with a throwaway profile. As root (CI containers) Chromium refuses to
 * start without `--no-sandbox`; it is added then, and only then.
 */
export async function launchBrowser(options: { timeoutMs?: number } = {}): Promise<TestBrowser> {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-chromium-'));
  const args = [
    '--disable-dev-shm-usage', // small /dev/shm in containers
    '--disable-gpu',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-extensions',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--metrics-recording-only',
    '--password-store=basic',
    '--use-mock-keychain',
  ];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  const timeoutMs = options.timeoutMs ?? 30_000;
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: chromiumPath(),
      headless: true,
      userDataDir,
      args,
      timeout: timeoutMs,
      // The test's own process handles SIGINT/SIGTERM (jest); puppeteer closes the browser on exit.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (err) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  }
  const contexts: BrowserContext[] = [];
  const context = async () => {
    const c = await browser.createBrowserContext();
    contexts.push(c);
    return c;
  };
  return {
    browser,
    context,
    async page() {
      const p = await (await context()).newPage();
      p.setDefaultTimeout(timeoutMs);
      p.setDefaultNavigationTimeout(timeoutMs);
      return p;
    },
    async close() {
      try {
        await browser.close();
      } finally {
        fs.rmSync(userDataDir, { recursive: true, force: true });
      }
    },
  };
}
