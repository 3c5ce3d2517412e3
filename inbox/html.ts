import type { VoteVerdict } from '../contracts/approval';
import type { OpenTie, PendingChain } from './chains';
import type { InboxSession } from './sessions';

/**
 * Server-rendered pages of the approval inbox. Every value is escaped; every control has a stable `id` or
 * `name` and a label (the browser test and assistive technology rely on them). Element ids are stable API:
 * extend, never rename.
 */

/** HTML-escapes text and attribute values. */
export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A DOM id fragment for a chain id (ids may hold any character; the fragment is stable for a given id). */
export function domId(value: string): string {
  return value.replace(/[^A-Za-z0-9_-]/g, '_');
}

export interface PageContext {
  session?: InboxSession;
  /** Development sign-in is in use: labelled on every page. */
  devSignIn: boolean;
  temporalUiUrl?: string;
  namespace: string;
}

/** The page frame: banner (development sign-in), who is signed in, sign-out form. */
export function layout(ctx: PageContext, title: string, body: string): string {
  const s = ctx.session;
  const who = s
    ? `<p id="signed-in-as">Signed in as <strong>${esc(s.user.name)}</strong> (${esc(s.user.approver)}) · roles: <span id="my-roles">${esc(s.user.roles.join(', ') || 'none')}</span></p>
<form method="post" action="/auth/logout" id="sign-out-form"><input type="hidden" name="csrf" value="${esc(s.csrf)}"><button type="submit" id="sign-out" name="sign-out">Sign out</button></form>`
    : '';
  const dev = ctx.devSignIn
    ? '<p id="dev-banner" class="dev" role="note">Development sign-in: not for production. Anyone can pick any name and role here.</p>'
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · Governor approval inbox</title><link rel="stylesheet" href="/inbox.css"><script src="/inbox.js" defer></script></head>
<body><header>${dev}<h1><a href="/">Approval inbox</a></h1>${who}</header><main id="main">${body}</main></body></html>`;
}

export function uiLink(ctx: PageContext, chainId: string): string {
  if (!ctx.temporalUiUrl) return '';
  const href = `${ctx.temporalUiUrl.replace(/\/$/, '')}/namespaces/${encodeURIComponent(ctx.namespace)}/workflows/${encodeURIComponent(chainId)}`;
  return `<a class="ui-link" href="${esc(href)}" rel="noreferrer">Open in the Temporal UI</a>`;
}

function json(value: unknown): string {
  return esc(JSON.stringify(value, null, 2) ?? 'undefined');
}

function verdictRow(v: VoteVerdict): string {
  const what = v.counted ? (v.decision === 'deny' ? 'denied' : 'approved') : 'rejected';
  const why = v.counted ? v.reason : v.reason;
  return `<li class="verdict ${v.counted ? 'counted' : 'rejected'}"><strong>${esc(v.approver ?? 'unknown')}</strong> ${esc(what)}${
    v.roles?.length ? ` as ${esc(v.roles.join(', '))}` : ''
  }${v.repeat ? ' (repeat)' : ''}${v.breakGlass ? ' <em>break-glass</em>' : ''}${why ? `: “${esc(why)}”` : ''}${
    v.justification ? ` — justification: “${esc(v.justification)}”` : ''
  }</li>`;
}

/** The deadline: a `<time>` the small script counts down; without script the absolute time stays readable. */
function deadline(at: string | undefined, written: string): string {
  if (!at) return `within ${esc(written)} of escalation`;
  const ms = Date.parse(at) - Date.now();
  const left = ms <= 0 ? 'passed' : `${Math.floor(ms / 60_000)} min ${Math.floor((ms % 60_000) / 1000)} s left`;
  return `<time class="countdown" datetime="${esc(at)}" data-deadline="${esc(at)}">${esc(left)}</time> (at ${esc(at)})`;
}

/** One chain awaiting approval, with its vote form (or why the person may not vote). */
export function chainCard(ctx: PageContext, c: PendingChain, breakGlassRole: string | undefined): string {
  const a = c.step.approval!;
  const d = c.step.decision;
  const id = domId(c.chainId);
  const action = `/chains/${encodeURIComponent(c.chainId)}/vote`;
  const votes = a.verdicts.length
    ? `<ul class="votes">${a.verdicts.map(verdictRow).join('')}</ul>`
    : '<p>No votes yet.</p>';
  const form = c.blocked
    ? `<p class="blocked" id="blocked-${id}" role="note">${esc(c.blocked)}</p>
<p><button type="button" disabled aria-describedby="blocked-${id}" id="approve-${id}">Approve</button>
<button type="button" disabled aria-describedby="blocked-${id}" id="deny-${id}">Deny</button></p>`
    : `<form method="post" action="${esc(action)}" class="vote" id="vote-form-${id}">
<input type="hidden" name="csrf" value="${esc(ctx.session?.csrf)}">
<input type="hidden" name="stepId" value="${esc(c.step.id)}">
<input type="hidden" name="stepDigest" value="${esc(a.stepDigest)}">
<label for="reason-${id}">Reason (recorded with your vote)</label>
<textarea id="reason-${id}" name="reason" maxlength="1000" rows="2"></textarea>
${
  c.breakGlassOnly
    ? `<p class="breakglass">You hold only the break-glass role (${esc(breakGlassRole)}): an approval is a break-glass approval, reviewed after the fact.</p>
<label for="justification-${id}">Break-glass justification (required, 10+ characters)</label>
<textarea id="justification-${id}" name="justification" maxlength="1000" rows="2" required minlength="10"></textarea>`
    : ''
}
<p><button type="submit" name="decision" value="approve" id="approve-${id}">Approve</button>
${c.breakGlassOnly ? '' : `<button type="submit" name="decision" value="deny" id="deny-${id}">Deny</button>`}</p>
</form>`;
  return `<article class="chain" id="chain-${id}" data-chain-id="${esc(c.chainId)}" aria-labelledby="title-${id}">
<h2 id="title-${id}"><a href="/chains/${esc(encodeURIComponent(c.chainId))}">${esc(c.summary ?? c.chainId)}</a></h2>
<dl>
<dt>Chain</dt><dd><code>${esc(c.chainId)}</code> ${uiLink(ctx, c.chainId)}</dd>
<dt>Workload</dt><dd class="workload">${esc(c.state.workload)}${c.owner ? ` (owner ${esc(c.owner)})` : ''}</dd>
<dt>Would run</dt><dd class="would-run"><code>${esc(c.step.action)}</code> on <code>${esc(c.step.resource)}</code> (step ${esc(c.step.id)})</dd>
<dt>Input</dt><dd><pre class="input">${c.input === undefined ? 'not declared at the start (agent session step)' : json(c.input)}</pre></dd>
<dt>Policy reason</dt><dd class="policy-reason">${esc(d?.reason ?? '')}</dd>
<dt>Determining policies</dt><dd class="policies">${esc((d?.determiningPolicies ?? []).join(', '))}</dd>
<dt>Needs</dt><dd class="still-needed">${esc(a.stillNeeded)} more approval(s) from ${esc(a.eligibleRoles.join(' or '))} (quorum ${esc(a.quorum)})</dd>
<dt>Deadline</dt><dd class="deadline">${deadline(a.deadlineAt, a.deadline)}; then the step is denied</dd>
</dl>
<h3>Votes so far</h3>${votes}
${form}
</article>`;
}

/** An open tie: both contenders side by side and the pick form. */
export function tieCard(ctx: PageContext, t: OpenTie): string {
  const id = `${domId(t.domain)}-${domId(t.tie.tieId)}`;
  const action = `/ties/${encodeURIComponent(t.domain)}/${encodeURIComponent(t.tie.tieId)}/pick`;
  const cols = t.contenders
    .map(
      (c, i) => `<div class="contender" id="contender-${id}-${i}">
<h3><label><input type="radio" name="winner" value="${esc(c.requestId)}" ${i === 0 ? 'required' : ''}> ${esc(c.requestId)}</label></h3>
<p>${esc(c.workload ?? '?')}: <code>${esc(c.action ?? '?')}</code> on <code>${esc(c.resource ?? '?')}</code> ${uiLink(ctx, c.chainId)}</p>
<pre class="input">${c.input === undefined ? '' : json(c.input)}</pre></div>`,
    )
    .join('');
  return `<article class="tie" id="tie-${id}" aria-labelledby="tie-title-${id}">
<h2 id="tie-title-${id}">Tie in ${esc(t.domain)}: which goes first?</h2>
<p>Decide by ${deadline(t.tie.deadlineAt, t.tie.deadline)}, else every contender is rejected.</p>
<form method="post" action="${esc(action)}" id="pick-form-${id}">
<input type="hidden" name="csrf" value="${esc(ctx.session?.csrf)}">
<fieldset><legend>Contenders</legend><div class="side-by-side">${cols}</div></fieldset>
<label for="pick-reason-${id}">Reason</label><textarea id="pick-reason-${id}" name="reason" maxlength="1000" rows="2"></textarea>
<p><button type="submit" name="choice" value="winner" id="pick-${id}">Pick the selected contender</button>
<button type="submit" name="choice" value="neither" id="neither-${id}" formnovalidate>Neither (reject all)</button></p>
</form></article>`;
}

/** The result of a vote or pick, announced at once. */
export function verdictBanner(counted: boolean, text: string): string {
  return `<div id="verdict" class="${counted ? 'ok' : 'refused'}" role="status" aria-live="polite"><p>${esc(text)}</p></div>`;
}

export const CSS = `body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:0 1rem;line-height:1.4}
header{border-bottom:1px solid #ccc}h1 a{color:inherit;text-decoration:none}.dev{background:#fff3cd;border:2px solid #b58100;padding:.5rem;font-weight:bold}
.chain,.tie{border:1px solid #bbb;border-radius:6px;padding:1rem;margin:1rem 0}dt{font-weight:bold}dd{margin:0 0 .5rem 0;overflow-wrap:anywhere}
pre{white-space:pre-wrap;background:#f5f5f5;padding:.5rem;overflow-x:auto}textarea,input[type=text]{width:100%;box-sizing:border-box;font-size:1rem}
button{font-size:1rem;padding:.6rem 1.2rem;margin:.25rem .25rem .25rem 0;min-height:44px}button[disabled]{opacity:.6}
.blocked{background:#eee;padding:.5rem;border-left:4px solid #777}#verdict.ok{background:#e6f4ea;border-left:4px solid #1e7e34;padding:.5rem}
#verdict.refused,.error{background:#fdecea;border-left:4px solid #b00020;padding:.5rem}.side-by-side{display:flex;flex-wrap:wrap;gap:1rem}
.contender{flex:1 1 18rem;border:1px solid #ddd;padding:.5rem}.verdict.rejected{color:#8a1c1c}:focus{outline:3px solid #1a73e8}`;

/** Counts each `<time data-deadline>` down; the page reads fine without it. */
export const JS = `(function(){function tick(){document.querySelectorAll('time[data-deadline]').forEach(function(t){var ms=Date.parse(t.getAttribute('data-deadline'))-Date.now();t.textContent=ms<=0?'passed':Math.floor(ms/60000)+' min '+Math.floor(ms%60000/1000)+' s left';});}tick();setInterval(tick,1000);})();`;
