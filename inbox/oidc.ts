import * as oidc from 'openid-client';
import { ErrorCode, GovernorError } from '../contracts/errors';
import type { InboxOidc } from '../policies/manifest';
import type { InboxUser, PendingSignIn } from './sessions';

/**
 * OpenID Connect sign-in of the approval inbox: authorization code + PKCE (S256) with state and nonce,
 * through `openid-client` v6. Roles come from an ID-token claim mapped by the manifest. Security: the
 * client secret, codes and tokens never reach a log or an error message (errors name the step that failed).
 */

function isLoopback(url: URL): boolean {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}

/** Roles of the person: each value of the roles claim, mapped by `roleMap` (unmapped values grant nothing). */
export function mapRoles(claims: Record<string, unknown>, settings: InboxOidc): string[] {
  const raw = claims[settings.rolesClaim];
  const values = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.filter((v) => typeof v === 'string') : [];
  const roles = new Set<string>();
  for (const value of values) for (const role of settings.roleMap[value] ?? []) roles.add(role);
  return [...roles].sort();
}

/** Thrown when a sign-in fails: the message is safe to show (it never carries a code, token or secret). */
export class SignInError extends GovernorError {
  constructor(message: string) {
    super(ErrorCode.InvalidInput, message, 'sign-in');
  }
}

/** The inbox's relying party: discovery happens on first use (the inbox starts while the IdP is away). */
export class OidcSignIn {
  private config: Promise<oidc.Configuration> | undefined;

  constructor(
    readonly settings: InboxOidc,
    private readonly clientSecret: string | undefined,
  ) {
    const issuer = new URL(settings.issuer);
    if (issuer.protocol !== 'https:' && !isLoopback(issuer)) {
      throw new GovernorError(
        ErrorCode.InvalidInput,
        'inbox.oidc.issuer: must be https (http only on loopback)',
        'issuer',
      );
    }
  }

  private configuration(): Promise<oidc.Configuration> {
    if (!this.config) {
      const issuer = new URL(this.settings.issuer);
      const auth = this.clientSecret ? oidc.ClientSecretBasic(this.clientSecret) : oidc.None();
      this.config = oidc
        .discovery(issuer, this.settings.clientId, undefined, auth, {
          ...(issuer.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {}),
          timeout: 10,
        })
        .catch((err: unknown) => {
          this.config = undefined; // try again on the next sign-in
          throw new SignInError(`the identity provider's discovery failed (${safeCode(err)})`);
        });
    }
    return this.config;
  }

  /** Starts a sign-in: the IdP URL to send the browser to, and what to keep server-side until it returns. */
  async start(csrf: string, expiresAt: number): Promise<{ url: string; pending: PendingSignIn }> {
    const config = await this.configuration();
    const codeVerifier = oidc.randomPKCECodeVerifier();
    const pending: PendingSignIn = {
      state: oidc.randomState(),
      nonce: oidc.randomNonce(),
      codeVerifier,
      csrf,
      expiresAt,
    };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.settings.redirectUri,
      scope: this.settings.scopes.join(' '),
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state: pending.state,
      nonce: pending.nonce,
    });
    return { url: url.href, pending };
  }

  /** Finishes a sign-in from the callback URL: checks state, nonce and PKCE, redeems the code, maps the claims. */
  async finish(callbackUrl: URL, pending: PendingSignIn): Promise<InboxUser> {
    const config = await this.configuration();
    let claims: Record<string, unknown>;
    try {
      const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: pending.codeVerifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
      claims = { ...(tokens.claims() ?? {}) };
    } catch (err) {
      throw new SignInError(`the identity provider's answer was refused (${safeCode(err)})`);
    }
    const approver = claims[this.settings.approverClaim];
    if (typeof approver !== 'string' || approver.length === 0 || approver.length > 1024) {
      throw new SignInError(`the ID token has no usable ${this.settings.approverClaim} claim`);
    }
    const name = typeof claims.name === 'string' && claims.name ? claims.name : approver;
    return {
      approver,
      name: name.slice(0, 200),
      roles: mapRoles(claims, this.settings),
      idp: { iss: String(claims.iss), sub: String(claims.sub) },
      dev: false,
    };
  }
}

/**
 * A short, safe description of a sign-in failure: openid-client's error code (`OAUTH_INVALID_RESPONSE`,
 * a state mismatch…) or the IdP's `error` (`invalid_grant`), never its message (which may echo values).
 */
function safeCode(err: unknown): string {
  const e = err as { code?: unknown; error?: unknown; cause?: { error?: unknown } };
  const oauth = typeof e?.error === 'string' ? e.error : typeof e?.cause?.error === 'string' ? e.cause.error : '';
  const code = typeof e?.code === 'string' ? e.code : 'error';
  const text = oauth ? `${code}: ${oauth}` : code;
  return text.replace(/[^A-Za-z0-9_: -]/g, '').slice(0, 120);
}
