import { randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Server-side sessions of the approval inbox. The cookie holds only a random id (256 bits); who the person
 * is, their roles and the session's CSRF token stay here. Security: ids and CSRF tokens are secrets: never
 * log them or put them in an error.
 */

/** Who signed in, as the inbox signs votes for them. */
export interface InboxUser {
  /** The vote's `sub` (the approver; separation of duties compares it with the workload and its owner). */
  approver: string;
  /** Shown on the page. */
  name: string;
  roles: string[];
  /** The IdP issuer and subject (absent for development sign-in). */
  idp?: { iss: string; sub: string };
  /** Signed in through the development sign-in. */
  dev: boolean;
}

export interface InboxSession {
  user: InboxUser;
  csrf: string;
  signedInAt: number;
  expiresAt: number;
}

/** A sign-in in progress: the PKCE verifier, state and nonce (OIDC), or only a CSRF token (development form). */
export interface PendingSignIn {
  state: string;
  nonce: string;
  codeVerifier: string;
  csrf: string;
  expiresAt: number;
}

/** 32 random bytes, base64url. */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time comparison of two strings (false when either is missing or their lengths differ). */
export function sameSecret(a: string | undefined, b: string | undefined): boolean {
  if (typeof a !== 'string' || typeof b !== 'string' || a.length === 0) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const MAX_ENTRIES = 10_000;

/** Entries by random id, each with an expiry; expired entries are dropped when read and on every write. */
class ExpiringStore<T extends { expiresAt: number }> {
  private readonly entries = new Map<string, T>();

  constructor(private readonly now: () => number) {}

  put(value: T): string {
    this.sweep();
    // Bounded: the oldest entry goes first (Map keeps insertion order).
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    const id = randomToken();
    this.entries.set(id, value);
    return id;
  }

  get(id: string | undefined): T | undefined {
    if (!id) return undefined;
    const value = this.entries.get(id);
    if (!value) return undefined;
    if (value.expiresAt <= this.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return value;
  }

  /** Reads and removes (one-time use). */
  take(id: string | undefined): T | undefined {
    const value = this.get(id);
    if (id) this.entries.delete(id);
    return value;
  }

  delete(id: string | undefined): void {
    if (id) this.entries.delete(id);
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, v] of this.entries) if (v.expiresAt <= now) this.entries.delete(id);
  }
}

/** Sessions and sign-ins in progress, in memory (a restart signs everyone out). */
export class SessionStore {
  readonly sessions: ExpiringStore<InboxSession>;
  readonly pending: ExpiringStore<PendingSignIn>;

  constructor(
    readonly ttlMs: number,
    readonly now: () => number = Date.now,
  ) {
    this.sessions = new ExpiringStore(now);
    this.pending = new ExpiringStore(now);
  }

  /** Starts a session for `user`; returns its id (the cookie value) and the session. */
  signIn(user: InboxUser): { id: string; session: InboxSession } {
    const now = this.now();
    const session = { user, csrf: randomToken(), signedInAt: now, expiresAt: now + this.ttlMs };
    return { id: this.sessions.put(session), session };
  }
}
