import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  APPROVAL_AUDIENCE,
  APPROVAL_TYP,
  ATTESTATION_TYP,
  CREDENTIAL_TYP,
  DEV_APPROVER,
  DEV_ATTESTER,
  DEV_ISSUER,
  GOVERNOR_AUDIENCE,
  devImageDigest,
  keyPaths,
} from '../../identity';

/**
 * Token-forging helpers shared by the unit (identity-hostile, hostile-fuzz) and integration
 * (hostile-tokens) tests. Tokens are crafted by hand with node:crypto, so a test controls every
 * header and claim byte; nothing here goes through jose's signer.
 */

/** base64url of the JSON of `value` (no padding). */
export const b64u = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A compact JWS over exactly `header` and `claims`, signed with an Ed25519 key. */
export function signEd25519(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key: crypto.KeyObject,
): string {
  const input = `${b64u(header)}.${b64u(claims)}`;
  return `${input}.${crypto.sign(null, Buffer.from(input), key).toString('base64url')}`;
}

export function privateKeyOf(jwk: crypto.JsonWebKey): crypto.KeyObject {
  return crypto.createPrivateKey({ key: jwk, format: 'jwk' });
}

/** The private JWK (with its `kid`) of a dev key pair in `home` (`governor keys init`). */
export function devPrivateJwk(
  home: string,
  name: 'issuer' | 'attester' | 'approver',
): crypto.JsonWebKey & { kid: string } {
  return JSON.parse(fs.readFileSync(keyPaths(home, name).privateKeyPath, 'utf8')) as crypto.JsonWebKey & {
    kid: string;
  };
}

/** A server standing in for attacker-hosted keys (`jku`, `x5u`): a verifier must never call it; it counts requests. */
export interface Canary {
  url: string;
  /** Requests received so far. */
  requests(): number;
  reset(): void;
  close(): Promise<void>;
}

/** Starts a canary on 127.0.0.1 that serves `jwks` to anyone who asks (and counts who did). */
export async function startCanary(jwks: unknown): Promise<Canary> {
  let count = 0;
  const server = http.createServer((_req, res) => {
    count += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests: () => count,
    reset: () => {
      count = 0;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An attacker's Ed25519 key pair and its public JWK (what `jwk`, `jku` and `x5u` headers would hand over). */
export function attackerKey(): { privateKey: crypto.KeyObject; publicJwk: crypto.JsonWebKey } {
  const pair = crypto.generateKeyPairSync('ed25519');
  return { privateKey: pair.privateKey, publicJwk: pair.publicKey.export({ format: 'jwk' }) };
}

export type TokenKind = 'credential' | 'attestation' | 'approval';

/** What each kind is signed with, and its `typ`. */
export const KIND_SIGNER = {
  credential: { key: 'issuer', typ: CREDENTIAL_TYP },
  attestation: { key: 'attester', typ: ATTESTATION_TYP },
  approval: { key: 'approver', typ: APPROVAL_TYP },
} as const satisfies Record<TokenKind, { key: 'issuer' | 'attester' | 'approver'; typ: string }>;

/** What an approval vote is for, and the roles its signer claims (default `sre-lead`). */
export interface VoteTarget {
  chainId: string;
  stepId: string;
  stepDigest: string;
  roles?: string[];
}

/** Valid claims of each kind at `nowS` (epoch seconds), with overrides (`undefined` deletes a claim). */
export function claimsFor(
  kind: TokenKind,
  nowS: number,
  sub: string,
  overrides: Record<string, unknown> = {},
  vote?: VoteTarget,
): Record<string, unknown> {
  const base: Record<string, unknown> =
    kind === 'credential'
      ? { iss: DEV_ISSUER, sub, aud: GOVERNOR_AUDIENCE, iat: nowS, exp: nowS + 300, jti: crypto.randomUUID() }
      : kind === 'attestation'
        ? {
            iss: DEV_ATTESTER,
            sub,
            iat: nowS,
            exp: nowS + 300,
            imageDigest: devImageDigest(sub),
            trustZone: 'trusted',
            environment: 'dev',
          }
        : {
            iss: DEV_APPROVER,
            sub,
            aud: APPROVAL_AUDIENCE,
            iat: nowS,
            exp: nowS + 300,
            jti: crypto.randomUUID(),
            roles: vote?.roles ?? ['sre-lead'],
            chainId: vote?.chainId ?? 'chain-1',
            stepId: vote?.stepId ?? 'step-1',
            stepDigest: vote?.stepDigest ?? 'a'.repeat(64),
            decision: 'approve',
          };
  const claims = { ...base, ...overrides };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return claims;
}

/** Inputs of `forgeHostile`. */
export interface ForgeContext {
  home: string;
  kind: TokenKind;
  /** Evaluation time the token is aimed at (epoch seconds). */
  nowS: number;
  sub: string;
  /** Base URL of the canary server (`jku`/`x5u` point there). */
  canaryUrl: string;
  attacker: { privateKey: crypto.KeyObject; publicJwk: crypto.JsonWebKey };
  /** For approvals: the chain, step and step digest the vote names, and the signer's roles. */
  vote?: VoteTarget;
  /** Bytes above which a token is refused (the manifest's `credential.maxTokenBytes`, default 8192). */
  maxTokenBytes?: number;
}

/**
 * The hostile variants every kind is tried with. Each names the rejection reason a verifier must give
 * (without the `<kind> ` prefix). `kinds` restricts a variant to the kinds where it is a defect: an
 * attestation has no audience (the manifest's attesters have none) and its `exp` is optional (its age is
 * bounded by `iat` and the attester's `maxAge`), so those two rows are credential/approval only.
 */
export const HOSTILE_VARIANTS = [
  { name: 'alg none', reason: /is unsigned \(alg none\)/ },
  { name: "HS256 keyed with the signer's public key", reason: /algorithm not allowed/ },
  { name: 'algorithm outside the allow-list (RS256)', reason: /algorithm not allowed/ },
  { name: 'missing exp', reason: /missing required claim "exp"/, kinds: ['credential', 'approval'] },
  { name: 'missing exp and older than maxAge', reason: /is stale/, kinds: ['attestation'] },
  { name: 'expired', reason: /expired/ },
  { name: 'nbf in the future', reason: /not yet valid/ },
  { name: 'wrong iss', reason: /issuer not trusted/ },
  { name: 'wrong aud', reason: /audience mismatch/, kinds: ['credential', 'approval'] },
  { name: 'wrong typ', reason: /type not accepted/ },
  { name: 'unknown crit', reason: /has unsupported critical header parameters/ },
  { name: 'embedded jwk', reason: /header "jwk" is not accepted/ },
  { name: 'jku to the canary', reason: /header "jku" is not accepted/ },
  { name: 'x5u to the canary', reason: /header "x5u" is not accepted/ },
  { name: 'kid not in the JWKS', reason: /signing key not found/ },
  { name: 'oversized', reason: /exceeds \d+ bytes/ },
] as const satisfies readonly { name: string; reason: RegExp; kinds?: readonly TokenKind[] }[];
export type HostileVariant = (typeof HOSTILE_VARIANTS)[number]['name'];

/** The variants that apply to `kind`, as `[name, reason]` rows for `it.each`. */
export function hostileRows(kind: TokenKind): [HostileVariant, RegExp][] {
  return HOSTILE_VARIANTS.filter((v) => !('kinds' in v) || (v.kinds as readonly TokenKind[]).includes(kind)).map(
    (v) => [v.name, v.reason],
  );
}

/**
 * Forges one hostile token of `ctx.kind`. Every variant except the ones about the signer is signed
 * with the REAL key of the kind's signer, so the only defect is the one the variant names.
 */
export function forgeHostile(variant: HostileVariant, ctx: ForgeContext): string {
  const { kind, nowS, sub } = ctx;
  const signer = devPrivateJwk(ctx.home, KIND_SIGNER[kind].key);
  const header = { alg: 'EdDSA', kid: signer.kid, typ: KIND_SIGNER[kind].typ };
  const claims = (overrides: Record<string, unknown> = {}) => claimsFor(kind, nowS, sub, overrides, ctx.vote);
  const real = (h: Record<string, unknown>, c: Record<string, unknown> = claims()) =>
    signEd25519({ ...header, ...h }, c, privateKeyOf(signer));
  const attackerSigned = (h: Record<string, unknown>) =>
    signEd25519({ ...header, ...h }, claims(), ctx.attacker.privateKey);
  switch (variant) {
    case 'alg none':
      // A non-empty "signature": approval messages must look like a compact JWS to reach the verifier at all.
      return `${b64u({ ...header, alg: 'none' })}.${b64u(claims())}.${kind === 'approval' ? 'c2ln' : ''}`;
    case "HS256 keyed with the signer's public key": {
      const input = `${b64u({ ...header, alg: 'HS256' })}.${b64u(claims())}`;
      return `${input}.${crypto.createHmac('sha256', Buffer.from(signer.x!, 'base64url')).update(input).digest('base64url')}`;
    }
    case 'algorithm outside the allow-list (RS256)': {
      const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      const input = `${b64u({ ...header, alg: 'RS256' })}.${b64u(claims())}`;
      return `${input}.${crypto.sign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url')}`;
    }
    case 'missing exp':
      return real({}, claims({ exp: undefined }));
    case 'missing exp and older than maxAge':
      return real({}, claims({ exp: undefined, iat: nowS - 86_400 }));
    case 'expired':
      return real({}, claims({ iat: nowS - 600, exp: nowS - 300 }));
    case 'nbf in the future':
      return real({}, claims({ nbf: nowS + 3600 }));
    case 'wrong iss':
      return real({}, claims({ iss: 'https://evil.example/issuer' }));
    case 'wrong aud':
      return real({}, claims({ aud: 'someone-else' }));
    case 'wrong typ':
      return real({ typ: kind === 'credential' ? 'at+jwt' : 'JWT' });
    case 'unknown crit':
      return real({ crit: ['urn:example:unknown'], 'urn:example:unknown': true });
    case 'embedded jwk':
      return attackerSigned({ jwk: { ...ctx.attacker.publicJwk }, kid: undefined });
    case 'jku to the canary':
      return attackerSigned({ jku: `${ctx.canaryUrl}/jwks.json`, kid: 'attacker' });
    case 'x5u to the canary':
      return attackerSigned({ x5u: `${ctx.canaryUrl}/cert.pem`, kid: 'attacker' });
    case 'kid not in the JWKS':
      return real({ kid: 'not-in-the-jwks' });
    case 'oversized':
      return real({}, claims({ pad: 'x'.repeat((ctx.maxTokenBytes ?? 8192) + 100) }));
  }
}
