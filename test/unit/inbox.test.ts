import { InboxOidc, InboxSection } from '../../policies/manifest';
import { mapRoles } from '../../inbox/oidc';
import { esc } from '../../inbox/html';
import { sameSecret, SessionStore } from '../../inbox/sessions';

const oidc = InboxOidc.parse({
  issuer: 'https://login.example.com',
  clientId: 'inbox',
  redirectUri: 'https://inbox.example.com/auth/callback',
  roleMap: { sre: ['sre-lead'], ops: ['sre-lead', 'dba'] },
});

describe('inbox: roles from ID-token claims', () => {
  it('maps each mapped value of the roles claim, list or string; unmapped values grant nothing', () => {
    expect(mapRoles({ groups: ['sre', 'ops', 'admins'] }, oidc)).toEqual(['dba', 'sre-lead']);
    expect(mapRoles({ groups: 'sre' }, oidc)).toEqual(['sre-lead']);
    expect(mapRoles({ groups: ['admins', 42, { sre: true }] }, oidc)).toEqual([]);
    expect(mapRoles({}, oidc)).toEqual([]);
    // Prototype keys are not role names.
    expect(mapRoles({ groups: ['constructor', '__proto__', 'toString'] }, oidc)).toEqual([]);
  });
});

describe('inbox: manifest section', () => {
  it('is strict: no inline client secret, no unknown key, no non-http issuer; defaults are explicit', () => {
    const base = { issuer: 'https://idp.example', clientId: 'c', redirectUri: 'https://inbox.example/auth/callback' };
    expect(InboxOidc.safeParse({ ...base, clientSecret: 'shh' }).success).toBe(false);
    expect(InboxOidc.safeParse({ ...base, issuer: 'ftp://idp.example' }).success).toBe(false);
    expect(InboxOidc.safeParse({ ...base, clientSecretEnv: 'not a name' }).success).toBe(false);
    expect(InboxOidc.parse(base)).toMatchObject({ approverClaim: 'sub', rolesClaim: 'groups', roleMap: {} });
    expect(InboxSection.parse({})).toEqual({ sessionTtl: '8h' });
  });
});

describe('inbox: escaping and sessions', () => {
  it('escapes every character that could open markup or an attribute', () => {
    expect(esc(`<script>"x"&'y'\`</script>`)).toBe('&#60;script&#62;&#34;x&#34;&#38;&#39;y&#39;&#96;&#60;/script&#62;');
  });

  it('expires sessions, takes a pending sign-in once, and compares secrets strictly', () => {
    let now = 1_000;
    const store = new SessionStore(60_000, () => now);
    const { id, session } = store.signIn({ approver: 'alice', name: 'Alice', roles: ['sre-lead'], dev: false });
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(store.sessions.get(id)).toBe(session);
    now += 60_000;
    expect(store.sessions.get(id)).toBeUndefined();

    const pending = store.pending.put({ state: 's', nonce: 'n', codeVerifier: 'v', csrf: 'c', expiresAt: now + 10 });
    expect(store.pending.take(pending)?.state).toBe('s');
    expect(store.pending.take(pending)).toBeUndefined();

    expect(sameSecret('abc', 'abc')).toBe(true);
    expect(sameSecret('abc', 'abd')).toBe(false);
    expect(sameSecret('', '')).toBe(false);
    expect(sameSecret(undefined, 'abc')).toBe(false);
  });
});
