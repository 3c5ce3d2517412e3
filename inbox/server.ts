import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Client } from '@temporalio/client';
import { ErrorCode, GovernorError, isGovernorError } from '../contracts/errors';
import { APPROVAL_AUDIENCE, DEV_APPROVER, issueApproval } from '../identity';
import { durationMs, type Manifest } from '../policies/manifest';
import { GovernorClient } from '../sdk/client';
import { CoordinationClient } from '../sdk/coordination';
import { awaitingChainIds, openTies, pendingChain, rolesFor, splitRequestId } from './chains';
import { chainCard, CSS, esc, JS, layout, tieCard, verdictBanner, type PageContext } from './html';
import { OidcSignIn, SignInError } from './oidc';
import { randomToken, sameSecret, SessionStore, type InboxSession, type InboxUser } from './sessions';

/**
 * The approval inbox (DESIGN §10): a server-rendered web page (node:http) listing the chains awaiting the
 * signed-in person's roles, recording their votes signed with the approver key, and the ties they may settle.
 * Security: sessions are random ids kept server-side in HttpOnly, SameSite=Lax cookies (Secure over TLS);
 * every POST carries the session's CSRF token; bodies are bounded; codes, tokens, cookies and the client
 * secret never reach a log or a page.
 */

export interface InboxOptions {
  client: Client;
  taskQueue: string;
  manifest: Manifest;
  /** GOVERNOR_HOME holding `keys/approver.private.jwk.json` (the inbox signs votes with it). */
  home: string;
  namespace?: string;
  /** Base URL of the Temporal UI (links to each chain). */
  temporalUiUrl?: string;
  /** Default 127.0.0.1 and 0 (a free port). */
  host?: string;
  port?: number;
  /** Serve over TLS (cookies are then `Secure`). */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** The client secret (from the env variable the manifest names). */
  clientSecret?: string;
  /** Default process.env.NODE_ENV: `production` refuses the development sign-in. */
  nodeEnv?: string;
  /** One line per request (method, path without query, status); never headers, bodies or query strings. */
  log?: (line: string) => void;
}

export interface Inbox {
  url: string;
  server: http.Server;
  sessions: SessionStore;
  close(): Promise<void>;
}

/** Largest accepted request body (a vote form is well under 4 KiB). */
export const MAX_BODY_BYTES = 16 * 1024;
const SESSION_COOKIE = 'governor_inbox';
const LOGIN_COOKIE = 'governor_inbox_login';
const SIGN_IN_TTL_MS = 10 * 60_000;
const DEV_NAME = /^[A-Za-z0-9._@:+-]{1,64}$/;

/** Thrown for a request the inbox refuses: the status and a message safe to show. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at <= 0) continue;
    const name = part.slice(0, at).trim();
    if (!out.has(name)) out.set(name, part.slice(at + 1).trim());
  }
  return out;
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    req.resume();
    throw new Refusal(415, 'forms only: content-type must be application/x-www-form-urlencoded');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) {
    req.resume();
    throw new Refusal(413, `request body too large (at most ${MAX_BODY_BYTES} bytes)`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Refusal(413, `request body too large (at most ${MAX_BODY_BYTES} bytes)`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.includes('\uFFFD')) throw new Refusal(400, 'malformed form body (not UTF-8)');
  return new URLSearchParams(text);
}

/** One form field: present once, at most `max` characters. */
function field(form: URLSearchParams, name: string, max = 1000): string | undefined {
  const values = form.getAll(name);
  if (values.length > 1) throw new Refusal(400, `field ${name}: given more than once`);
  const v = values[0];
  if (v !== undefined && v.length > max) throw new Refusal(400, `field ${name}: at most ${max} characters`);
  return v;
}

/** Starts the inbox; resolves once it listens. */
export async function startInbox(options: InboxOptions): Promise<Inbox> {
  const manifest = options.manifest;
  const settings = manifest.inbox;
  const nodeEnv = options.nodeEnv ?? process.env.NODE_ENV;
  const oidc = settings?.oidc ? new OidcSignIn(settings.oidc, options.clientSecret) : undefined;
  if (!oidc && nodeEnv === 'production') {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      'the approval inbox has no identity provider (manifest inbox.oidc) and NODE_ENV=production refuses the development sign-in',
      'inbox.oidc',
    );
  }
  const devSignIn = !oidc;
  const sessions = new SessionStore(durationMs(settings?.sessionTtl ?? '8h'));
  const gc = new GovernorClient(options.client, options.taskQueue);
  const secure = Boolean(options.tls);
  const issuer = settings?.approverIssuer ?? DEV_APPROVER;
  const audience = manifest.trustedApprovers.find((a) => a.issuer === issuer)?.audience ?? APPROVAL_AUDIENCE;
  const log = options.log ?? (() => undefined);
  const allRoles = [
    ...new Set([
      ...Object.keys(manifest.approverRoles),
      ...(manifest.approvals.breakGlassRole ? [manifest.approvals.breakGlassRole] : []),
      ...manifest.coordination.domains.map((d) => d.tieBreakerRole),
    ]),
  ].sort();

  const cookie = (name: string, value: string, maxAgeS: number, path = '/') =>
    `${name}=${value}; Path=${path}; HttpOnly; SameSite=Lax; Max-Age=${maxAgeS}${secure ? '; Secure' : ''}`;

  const ctxFor = (session?: InboxSession): PageContext => ({
    session,
    devSignIn,
    temporalUiUrl: options.temporalUiUrl,
    namespace: options.namespace ?? 'default',
  });

  function send(
    res: http.ServerResponse,
    status: number,
    body: string,
    headers: Record<string, string | string[]> = {},
  ) {
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      'content-security-policy':
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      ...headers,
    });
    res.end(body);
  }

  const redirect = (res: http.ServerResponse, location: string, cookies: string[] = []) =>
    send(res, 303, '', { location, ...(cookies.length ? { 'set-cookie': cookies } : {}) });

  function sessionOf(req: http.IncomingMessage): { id?: string; session?: InboxSession } {
    const id = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    return { id, session: sessions.sessions.get(id) };
  }

  /** The session of a POST, its CSRF token checked. */
  function postSession(req: http.IncomingMessage, form: URLSearchParams): InboxSession {
    const { session } = sessionOf(req);
    if (!session) throw new Refusal(401, 'not signed in, or the session expired: sign in again (nothing was recorded)');
    if (!sameSecret(field(form, 'csrf', 200), session.csrf))
      throw new Refusal(403, 'the form is missing its CSRF token or carries another one (nothing was recorded)');
    return session;
  }

  function signInPage(res: http.ServerResponse, status = 200, problem?: string, cookies: string[] = []) {
    const err = problem ? `<p class="error" id="sign-in-error" role="alert">${esc(problem)}</p>` : '';
    if (oidc) {
      return send(
        res,
        status,
        layout(
          ctxFor(),
          'Sign in',
          `${err}<p>Sign in with your organisation's account to see what awaits your approval.</p>
<p><a id="sign-in" href="/auth/login" class="button">Sign in with ${esc(new URL(oidc.settings.issuer).host)}</a></p>`,
        ),
        cookies.length ? { 'set-cookie': cookies } : {},
      );
    }
    // Development sign-in: a CSRF token bound to a pending sign-in record (login CSRF).
    const csrf = randomToken();
    const id = sessions.pending.put({
      state: '',
      nonce: '',
      codeVerifier: '',
      csrf,
      expiresAt: Date.now() + SIGN_IN_TTL_MS,
    });
    const boxes = allRoles
      .map(
        (r, i) =>
          `<li><input type="checkbox" name="roles" value="${esc(r)}" id="role-${i}"> <label for="role-${i}">${esc(r)}</label></li>`,
      )
      .join('');
    send(
      res,
      status,
      layout(
        ctxFor(),
        'Development sign-in',
        `${err}<h2>Development sign-in</h2><form method="post" action="/auth/dev" id="dev-sign-in-form">
<input type="hidden" name="csrf" value="${esc(csrf)}">
<label for="dev-name">Your name (the approver recorded in votes)</label><input type="text" id="dev-name" name="name" required maxlength="64" pattern="[A-Za-z0-9._@:+\\-]{1,64}" autocomplete="username">
<fieldset><legend>Roles</legend><ul>${boxes}</ul></fieldset>
<button type="submit" id="dev-sign-in">Sign in (development)</button></form>`,
      ),
      { 'set-cookie': [...cookies, cookie(LOGIN_COOKIE, id, SIGN_IN_TTL_MS / 1000, '/auth')] },
    );
  }

  async function inboxPage(res: http.ServerResponse, session: InboxSession, banner = '', status = 200) {
    const ids = await awaitingChainIds(options.client, options.taskQueue, session.user, manifest);
    const chains = (
      await Promise.all(ids.map((id) => pendingChain(gc, id, session.user, manifest).catch(() => undefined)))
    ).filter((c) => c !== undefined);
    const ties = await openTies(gc, session.user, manifest);
    const ctx = ctxFor(session);
    const list = chains.length
      ? chains.map((c) => chainCard(ctx, c, manifest.approvals.breakGlassRole)).join('')
      : '<p id="nothing-to-approve">Nothing awaits your approval.</p>';
    const tieList = ties.length
      ? `<h2 id="ties-heading">Ties to settle</h2>${ties.map((t) => tieCard(ctx, t)).join('')}`
      : '';
    send(
      res,
      status,
      layout(
        ctx,
        'Inbox',
        `${banner}<section id="awaiting" aria-label="Awaiting your approval" data-count="${chains.length}">${list}</section>${tieList}`,
      ),
    );
  }

  async function chainPage(
    res: http.ServerResponse,
    session: InboxSession,
    chainId: string,
    banner = '',
    status = 200,
  ) {
    const ctx = ctxFor(session);
    let body: string;
    try {
      const c = await pendingChain(gc, chainId, session.user, manifest);
      const { eligible, breakGlass } = c
        ? rolesFor(session.user, c.step, manifest)
        : { eligible: [], breakGlass: false };
      if (c && eligible.length === 0 && !breakGlass) {
        // What would run (its input) is shown to the people who may decide it, not to every signed-in person.
        throw new Refusal(
          403,
          `You hold none of the roles that may decide this chain's step (${c.step.approval!.eligibleRoles.join(', ')}); its details are shown to its approvers only.`,
        );
      }
      if (c) body = chainCard(ctx, c, manifest.approvals.breakGlassRole);
      else {
        const state = await gc.status(chainId);
        body = `<p id="chain-status">Chain <code>${esc(chainId)}</code> is <strong id="chain-status-value">${esc(state.status)}</strong>: nothing awaits approval.</p>`;
      }
    } catch (err) {
      if (isGovernorError(err)) throw new Refusal(404, `no chain ${chainId}`);
      throw err;
    }
    send(res, status, layout(ctx, chainId, `${banner}${body}<p><a href="/" id="back">Back to the inbox</a></p>`));
  }

  async function vote(req: http.IncomingMessage, res: http.ServerResponse, chainId: string) {
    const form = await readForm(req);
    const session = postSession(req, form);
    const user = session.user;
    const decision = field(form, 'decision', 10);
    if (decision !== 'approve' && decision !== 'deny') throw new Refusal(400, 'decision must be approve or deny');
    const stepId = field(form, 'stepId', 256);
    const stepDigest = field(form, 'stepDigest', 256);
    const reason = field(form, 'reason') ?? '';
    const justification = field(form, 'justification') || undefined;
    const c = await pendingChain(gc, chainId, user, manifest).catch((err: unknown) => {
      if (isGovernorError(err)) throw new Refusal(404, `no chain ${chainId}`);
      throw err;
    });
    if (!c) throw new Refusal(409, 'this chain no longer awaits approval (nothing was recorded)');
    if (c.step.id !== stepId || c.step.approval!.stepDigest !== stepDigest)
      throw new Refusal(
        409,
        'the step changed since the page was shown: reload and decide again (nothing was recorded)',
      );
    if (c.blocked) throw new Refusal(403, `${c.blocked} (nothing was recorded)`);
    if (c.breakGlassOnly && decision === 'deny')
      throw new Refusal(403, 'the break-glass role may only approve (nothing was recorded)');
    const token = await issueApproval({
      home: options.home,
      sub: user.approver,
      roles: user.roles.slice(0, 32),
      chainId,
      stepId: c.step.id,
      stepDigest: c.step.approval!.stepDigest,
      decision,
      reason,
      ...(justification ? { justification } : {}),
      issuer,
      audience,
      ttlSeconds: 300,
      ...(user.idp ? { idp: user.idp } : {}),
    });
    const started = Date.now();
    const result = await gc.submitApproval(chainId, token);
    const v = result.verdict;
    const a = result.approval;
    let text: string;
    if (!v.counted) text = `Your vote was rejected: ${v.reason}`;
    else if (v.repeat) text = 'You had already voted: counted once.';
    else if (a.outcome === 'pending') text = `Your ${decision} vote counted. Still needed: ${a.stillNeeded}.`;
    else text = `Your ${decision} vote counted. The step is ${a.outcome}.`;
    log(
      `vote ${v.counted ? 'counted' : 'rejected'} chain=${chainId} approver=${user.approver} in ${Date.now() - started} ms`,
    );
    await chainPage(res, session, chainId, verdictBanner(v.counted && !v.repeat, text), v.counted ? 200 : 422);
  }

  async function pick(req: http.IncomingMessage, res: http.ServerResponse, domain: string, tieId: string) {
    const form = await readForm(req);
    const session = postSession(req, form);
    const user = session.user;
    const choice = field(form, 'choice', 10);
    if (choice !== 'winner' && choice !== 'neither') throw new Refusal(400, 'choice must be winner or neither');
    const cc = new CoordinationClient(gc.client, gc.taskQueue);
    const state = await cc.state(domain).catch(() => {
      throw new Refusal(404, `no coordination domain ${domain}`);
    });
    const tie = state.ties.find((t) => t.tieId === tieId);
    if (!tie?.digest) throw new Refusal(409, `tie ${tieId} is not open (nothing was recorded)`);
    if (!user.roles.includes(tie.role))
      throw new Refusal(403, `only the tie-breaker role ${tie.role} may settle this tie`);
    const named = choice === 'neither' ? tie.contenders[0]! : field(form, 'winner', 600);
    if (!named || !tie.contenders.includes(named)) throw new Refusal(400, 'winner: pick one of the contenders');
    const parts = splitRequestId(named);
    if (!parts) throw new Refusal(400, 'winner: not a contender');
    const token = await issueApproval({
      home: options.home,
      sub: user.approver,
      roles: user.roles.slice(0, 32),
      ...parts,
      stepDigest: tie.digest,
      decision: choice === 'neither' ? 'deny' : 'approve',
      reason: field(form, 'reason') ?? '',
      issuer,
      audience,
      ttlSeconds: 300,
      ...(user.idp ? { idp: user.idp } : {}),
    });
    const verdict = await cc.chooseWinner(domain, tieId, token);
    const text = !verdict.counted
      ? `Your choice was rejected: ${verdict.reason}`
      : verdict.decision === 'approve'
        ? `Tie settled: ${verdict.winner} goes first; the other contenders are rejected.`
        : 'Tie settled: neither goes; every contender is rejected.';
    await inboxPage(res, session, verdictBanner(verdict.counted, text), verdict.counted ? 200 : 422);
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://inbox.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/inbox.css')
      return send(res, 200, CSS, { 'content-type': 'text/css; charset=utf-8' });
    if (method === 'GET' && path === '/inbox.js')
      return send(res, 200, JS, { 'content-type': 'text/javascript; charset=utf-8' });
    if (method === 'GET' && path === '/healthz') return send(res, 200, 'ok', { 'content-type': 'text/plain' });

    if (method === 'GET' && path === '/auth/login') {
      if (!oidc) return signInPage(res);
      const csrf = randomToken();
      const { url: to, pending } = await oidc.start(csrf, Date.now() + SIGN_IN_TTL_MS);
      const id = sessions.pending.put(pending);
      return redirect(res, to, [cookie(LOGIN_COOKIE, id, SIGN_IN_TTL_MS / 1000, '/auth')]);
    }
    if (method === 'GET' && path === '/auth/callback') {
      if (!oidc) throw new Refusal(404, 'no identity provider is configured');
      const loginId = parseCookies(req.headers.cookie).get(LOGIN_COOKIE);
      const pending = sessions.pending.take(loginId); // one use, whatever the outcome
      const clear = cookie(LOGIN_COOKIE, '', 0, '/auth');
      if (!pending?.state)
        return signInPage(res, 400, 'this sign-in expired or was started elsewhere: sign in again', [clear]);
      const idpError = url.searchParams.get('error');
      if (idpError)
        return signInPage(
          res,
          400,
          `the identity provider refused the sign-in (${idpError.replace(/[^A-Za-z0-9_]/g, '').slice(0, 60)})`,
          [clear],
        );
      let user: InboxUser;
      try {
        user = await oidc.finish(new URL(`${oidc.settings.redirectUri}${url.search}`), pending);
      } catch (err) {
        if (err instanceof SignInError) return signInPage(res, 400, err.message, [clear]);
        throw err;
      }
      const { id } = sessions.signIn(user);
      log(`signed in approver=${user.approver} roles=${user.roles.join(',')}`);
      return redirect(res, '/', [clear, cookie(SESSION_COOKIE, id, Math.floor(sessions.ttlMs / 1000))]);
    }
    if (method === 'POST' && path === '/auth/dev') {
      const form = await readForm(req);
      if (!devSignIn) throw new Refusal(404, 'development sign-in is off: an identity provider is configured');
      if ((options.nodeEnv ?? process.env.NODE_ENV) === 'production')
        throw new Refusal(403, 'development sign-in is refused when NODE_ENV=production');
      const pending = sessions.pending.take(parseCookies(req.headers.cookie).get(LOGIN_COOKIE));
      if (!pending || !sameSecret(field(form, 'csrf', 200), pending.csrf))
        throw new Refusal(403, 'the sign-in form expired or is missing its CSRF token: sign in again');
      const name = field(form, 'name', 64) ?? '';
      if (!DEV_NAME.test(name)) throw new Refusal(400, 'name: 1 to 64 letters, digits or . _ @ : + -');
      const roles = form.getAll('roles');
      if (roles.length === 0 || roles.some((r) => !allRoles.includes(r)))
        throw new Refusal(400, `roles: choose at least one of ${allRoles.join(', ')}`);
      const { id } = sessions.signIn({ approver: name, name, roles: [...new Set(roles)].sort(), dev: true });
      log(`signed in (development) approver=${name}`);
      return redirect(res, '/', [
        cookie(LOGIN_COOKIE, '', 0, '/auth'),
        cookie(SESSION_COOKIE, id, Math.floor(sessions.ttlMs / 1000)),
      ]);
    }
    if (method === 'POST' && path === '/auth/logout') {
      const form = await readForm(req);
      postSession(req, form);
      sessions.sessions.delete(sessionOf(req).id);
      return redirect(res, '/', [cookie(SESSION_COOKIE, '', 0)]);
    }

    const chainMatch = /^\/chains\/([^/]{1,600})(\/vote)?$/.exec(path);
    const tieMatch = /^\/ties\/([^/]{1,300})\/([^/]{1,100})\/pick$/.exec(path);
    if (method === 'POST' && chainMatch?.[2]) return vote(req, res, decodeURIComponent(chainMatch[1]!));
    if (method === 'POST' && tieMatch)
      return pick(req, res, decodeURIComponent(tieMatch[1]!), decodeURIComponent(tieMatch[2]!));
    if (method !== 'GET' && method !== 'HEAD') throw new Refusal(405, 'method not allowed');

    const { session } = sessionOf(req);
    if (path === '/') return session ? inboxPage(res, session) : signInPage(res);
    if (chainMatch && !chainMatch[2]) {
      if (!session) return signInPage(res, 401, 'sign in to see this chain');
      return chainPage(res, session, decodeURIComponent(chainMatch[1]!));
    }
    throw new Refusal(404, 'not found');
  }

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!.slice(0, 200);
    route(req, res)
      .catch((err: unknown) => {
        const { session } = sessionOf(req);
        if (err instanceof Refusal) {
          if (!res.headersSent)
            send(
              res,
              err.status,
              layout(
                ctxFor(session),
                'Refused',
                `<p class="error" id="error" role="alert">${esc(err.message)}</p><p><a href="/">Back to the inbox</a></p>`,
              ),
            );
          else res.end();
          return;
        }
        // Never the error's text on the page: it may name internals. The log gets its kind only.
        log(
          `error ${req.method} ${path}: ${(err as Error)?.name ?? 'Error'}${isGovernorError(err) ? ` ${err.code}` : ''}`,
        );
        if (!res.headersSent) {
          const shown =
            err instanceof SignInError || isGovernorError(err)
              ? (err as Error).message
              : 'internal error: nothing was recorded; try again';
          send(
            res,
            500,
            layout(ctxFor(session), 'Error', `<p class="error" id="error" role="alert">${esc(shown)}</p>`),
          );
        } else res.end();
      })
      .finally(() => log(`${req.method} ${path} ${res.statusCode}`));
  };

  const server = options.tls
    ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler)
    : http.createServer(handler);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `${secure ? 'https' : 'http'}://${host}:${addr.port}`,
    server,
    sessions,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export { Refusal as InboxRefusal };
