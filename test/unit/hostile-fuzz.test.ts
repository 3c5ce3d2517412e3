import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  APPROVAL_AUDIENCE,
  DEV_APPROVER,
  DEV_ATTESTER,
  DEV_ISSUER,
  GOVERNOR_AUDIENCE,
  initKeys,
  issueApproval,
  issueAttestation,
  issueCredential,
  verifyApproval,
  verifyAttestation,
  verifyCredential,
} from '../../identity';
import { formatIssues, GovernedChainInput } from '../../contracts/chain';
import type { AuthzRequest } from '../../contracts/decision';
import { ErrorCode, isGovernorError } from '../../contracts/errors';
import { analyseBundle, loadBundle, loadBundleFromFiles, type BundleFile } from '../../policies/bundle';
import cedar from '../../policies/cedar';
import { PolicyEngine } from '../../policies/engine';
import { Manifest } from '../../policies/manifest';
import { DEFAULT_BUNDLE_DIR } from '../harness/policy';
import {
  attackerKey,
  b64u,
  claimsFor,
  devPrivateJwk,
  KIND_SIGNER,
  privateKeyOf,
  signEd25519,
  type TokenKind,
} from '../harness/hostile-tokens';

/**
 * Fuzzing of everything the governor parses from untrusted or operator input (issue #8): tokens,
 * chain specs, manifests and Cedar policy text. Each property says what may happen — a clear
 * rejection, or an acceptance that is provably legitimate — and fails on anything else (a crash, a
 * foreign exception, a forged acceptance, an allow where Cedar errored).
 *
 * Runs per property: FUZZ_RUNS (default 200); `npm run test:slow` runs 10,000. A failure prints
 * fast-check's seed and shrunk counterexample; re-run with FUZZ_SEED=<seed> to reproduce.
 */

const RUNS = runsFromEnv();
const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : undefined;
const params = (scale = 1): { numRuns: number; seed?: number } => ({
  numRuns: Math.max(1, Math.round(RUNS * scale)),
  ...(SEED !== undefined ? { seed: SEED } : {}),
});
/** Jest's per-test limit (a hang guard, not an assertion about speed): generous per run. */
const LIMIT = Math.max(60_000, RUNS * 50);
/**
 * What counterexamples of every property may carry; it must never appear in an error message. Not an
 * identifier (`+`, `/`): a chain's ids are names, and naming a duplicated step id is by design.
 */
const SECRET = 'SECRET+c4n4ry/9f3e1d2c7b6a';

function runsFromEnv(): number {
  const raw = process.env.FUZZ_RUNS;
  if (raw === undefined || raw === '') return 200;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`FUZZ_RUNS must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** Counts, per property, how many generated cases took each path (printed in slow runs; also asserted). */
const tallies = new Map<string, Map<string, number>>();
function tally(property: string, outcome: string): void {
  const t = tallies.get(property) ?? new Map<string, number>();
  t.set(outcome, (t.get(outcome) ?? 0) + 1);
  tallies.set(property, t);
}
afterAll(() => {
  if (process.env.FUZZ_REPORT) {
    const lines = [...tallies].map(
      ([p, t]) =>
        `${p}: ${[...t]
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`,
    );
    process.stderr.write(`fuzz runs per property: ${RUNS}\n${lines.join('\n')}\n`);
  }
});

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

const NOW = new Date('2030-01-01T00:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;
const SUB = 'svc';
const KINDS: readonly TokenKind[] = ['credential', 'attestation', 'approval'];
const INVALID_CODE: Record<TokenKind, string> = {
  credential: ErrorCode.CredentialInvalid,
  attestation: ErrorCode.AttestationInvalid,
  approval: ErrorCode.ApprovalInvalid,
};

let home: string;
let otherHome: string;
let manifest: Manifest;
/** Every token each kind's verifier may accept: the validly signed originals, byte for byte. */
const originals: Record<TokenKind, Set<string>> = {
  credential: new Set(),
  attestation: new Set(),
  approval: new Set(),
};
/** Tokens to start mutations from or splice segments out of: the originals plus forged and cross-kind ones. */
let pool: string[] = [];

function verify(kind: TokenKind, token: string): Promise<unknown> {
  if (kind === 'credential') return verifyCredential(token, manifest, { now: NOW, home });
  if (kind === 'attestation') return verifyAttestation(token, manifest, { now: NOW, home, expectedSubject: SUB });
  return verifyApproval(token, manifest, { now: NOW, home });
}

/** Verifies and classifies: 'accepted' or the rejection reason. Anything but a GovernorError of the kind's code fails. */
async function outcome(
  kind: TokenKind,
  token: string,
): Promise<{ accepted: true; value: Record<string, unknown> } | { accepted: false; reason: string }> {
  try {
    const value = (await verify(kind, token)) as Record<string, unknown>;
    return { accepted: true, value };
  } catch (err) {
    if (!isGovernorError(err))
      throw new Error(
        `${kind} verification threw a non-GovernorError: ${String((err as Error)?.name)}: ${String((err as Error)?.message)}`,
      );
    expect(err.code).toBe(INVALID_CODE[kind]);
    expect(err.message).toMatch(new RegExp(`^${kind} `));
    // Never echo the token or any sizeable piece of it.
    for (const piece of [token, ...token.split('.')].filter((p) => p.length >= 12))
      expect(err.message).not.toContain(piece);
    return { accepted: false, reason: err.message };
  }
}

const B64U = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64uChar = fc.constantFrom(...B64U.split(''));
const anyChar = fc.oneof(
  b64uChar,
  fc.constantFrom('.', '=', '+', '/', ' ', '\n', '\u0000', 'é', '\u{1F600}', '%', '"'),
);

/** Values a hostile header or claim may take. */
const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    'none',
    'None',
    'NONE',
    'HS256',
    'RS256',
    'ES256',
    'EdDSA',
    'Ed25519',
    'PS256',
    '',
    null,
    true,
    0,
    -1,
    1e308,
    2 ** 53,
    1.5,
    ['EdDSA'],
    {},
    'JWT',
    'jwt',
    'JOSE',
    'attestation+jwt',
    'approval+jwt',
    'application/jwt',
    'at+jwt',
    DEV_ISSUER,
    DEV_ATTESTER,
    DEV_APPROVER,
    GOVERNOR_AUDIENCE,
    APPROVAL_AUDIENCE,
    [GOVERNOR_AUDIENCE, 'x'],
    [APPROVAL_AUDIENCE],
    SUB,
    'admin',
    NOW_S,
    NOW_S - 10,
    NOW_S + 10,
    NOW_S + 3600,
    NOW_S - 86_400,
    String(NOW_S),
    ['sre-lead'],
    [],
    ['x'.repeat(65)],
    'approve',
    'deny',
    'sha256:' + 'a'.repeat(64),
    'http://127.0.0.1:1/jwks.json',
    ['exp'],
    ['b64'],
    SECRET,
  ),
  fc.jsonValue({ maxDepth: 2 }),
);
const headerKey = fc.constantFrom(
  'alg',
  'typ',
  'kid',
  'crit',
  'jku',
  'x5u',
  'jwk',
  'x5c',
  'b64',
  'cty',
  'zip',
  'enc',
  '__proto__',
  'constructor',
  'x',
);
const claimKey = fc.constantFrom(
  'iss',
  'sub',
  'aud',
  'exp',
  'nbf',
  'iat',
  'jti',
  'imageDigest',
  'trustZone',
  'environment',
  'roles',
  'chainId',
  'stepId',
  'stepDigest',
  'decision',
  'reason',
  'justification',
  '__proto__',
  'x',
);

type JsonEdit =
  { op: 'set'; key: string; value: unknown } | { op: 'delete'; key: string } | { op: 'replace'; value: unknown };
const jsonEdit = (keys: fc.Arbitrary<string>): fc.Arbitrary<JsonEdit> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('set' as const), key: keys, value: hostileJson }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('delete' as const), key: keys }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('replace' as const), value: hostileJson }) },
  );

function applyJsonEdits(json: Record<string, unknown>, edits: readonly JsonEdit[]): unknown {
  let out: unknown = { ...json };
  for (const e of edits) {
    if (e.op === 'replace') out = e.value;
    else if (typeof out === 'object' && out !== null && !Array.isArray(out)) {
      if (e.op === 'set')
        Object.defineProperty(out, e.key, { value: e.value, enumerable: true, configurable: true, writable: true });
      else delete (out as Record<string, unknown>)[e.key];
    }
  }
  return out;
}

const encodeJson = (value: unknown): string => Buffer.from(JSON.stringify(value) ?? 'null').toString('base64url');
function decodeSegment(segment: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** One mutation of a token. Data, not closures, so fast-check can shrink and print counterexamples. */
type TokenMutation =
  | { op: 'replaceChar'; at: number; ch: string }
  | { op: 'insertChar'; at: number; ch: string }
  | { op: 'deleteRange'; at: number; length: number }
  | { op: 'truncate'; at: number }
  | { op: 'toggleCase'; at: number }
  | { op: 'segmentEnd'; segment: number; ch: string }
  | { op: 'splice'; segment: number; from: number }
  | { op: 'segments'; layout: number[] }
  | { op: 'pad'; segment: number; padding: string }
  | { op: 'standardBase64'; segment: number }
  | { op: 'header'; edits: JsonEdit[] }
  | { op: 'payload'; edits: JsonEdit[] }
  | { op: 'random'; text: string };

const tokenMutation: fc.Arbitrary<TokenMutation> = fc.oneof(
  fc.record({ op: fc.constant('replaceChar' as const), at: fc.nat(), ch: anyChar }),
  fc.record({ op: fc.constant('insertChar' as const), at: fc.nat(), ch: anyChar }),
  fc.record({ op: fc.constant('deleteRange' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('toggleCase' as const), at: fc.nat() }),
  // The last character of a segment carries padding bits: a target of base64url malleability.
  fc.record({ op: fc.constant('segmentEnd' as const), segment: fc.integer({ min: 0, max: 2 }), ch: b64uChar }),
  fc.record({ op: fc.constant('splice' as const), segment: fc.integer({ min: 0, max: 2 }), from: fc.nat() }),
  fc.record({
    op: fc.constant('segments' as const),
    layout: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 0, maxLength: 6 }),
  }),
  fc.record({
    op: fc.constant('pad' as const),
    segment: fc.integer({ min: 0, max: 2 }),
    padding: fc.constantFrom('=', '==', '==='),
  }),
  fc.record({ op: fc.constant('standardBase64' as const), segment: fc.integer({ min: 0, max: 2 }) }),
  fc.record({
    op: fc.constant('header' as const),
    edits: fc.array(jsonEdit(headerKey), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    op: fc.constant('payload' as const),
    edits: fc.array(jsonEdit(claimKey), { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    op: fc.constant('random' as const),
    text: fc.oneof(
      fc.string({ maxLength: 64 }),
      fc.string({ unit: 'binary', maxLength: 64 }),
      fc.stringMatching(/^[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{1,300}\.[A-Za-z0-9_-]{0,90}$/),
      fc
        .tuple(fc.jsonValue({ maxDepth: 2 }), fc.jsonValue({ maxDepth: 2 }), fc.stringMatching(/^[A-Za-z0-9_-]{0,90}$/))
        .map(([h, p, s]) => `${encodeJson(h)}.${encodeJson(p)}.${s}`),
    ),
  }),
);

/** Mostly one mutation (so most tokens stay close enough to valid to reach the signature check), sometimes a few. */
const tokenMutations = fc.oneof(
  { weight: 3, arbitrary: tokenMutation.map((m) => [m]) },
  { weight: 1, arbitrary: fc.array(tokenMutation, { minLength: 2, maxLength: 3 }) },
);

function mutateToken(token: string, m: TokenMutation): string {
  const at = (n: number) => (token.length === 0 ? 0 : n % (token.length + 1));
  const segs = token.split('.');
  const seg = (i: number) => Math.min(i, segs.length - 1);
  const withSegment = (i: number, value: string) => segs.map((s, j) => (j === seg(i) ? value : s)).join('.');
  switch (m.op) {
    case 'replaceChar': {
      const i = at(m.at) % Math.max(1, token.length);
      return token.slice(0, i) + m.ch + token.slice(i + 1);
    }
    case 'insertChar':
      return token.slice(0, at(m.at)) + m.ch + token.slice(at(m.at));
    case 'deleteRange':
      return token.slice(0, at(m.at)) + token.slice(at(m.at) + m.length);
    case 'truncate':
      return token.slice(0, at(m.at));
    case 'toggleCase': {
      const i = at(m.at) % Math.max(1, token.length);
      const c = token.charAt(i);
      const t = c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
      return token.slice(0, i) + t + token.slice(i + 1);
    }
    case 'segmentEnd': {
      const s = segs[seg(m.segment)]!;
      return withSegment(m.segment, s.length === 0 ? m.ch : s.slice(0, -1) + m.ch);
    }
    case 'splice': {
      const donor = pool[m.from % pool.length]!.split('.');
      return withSegment(m.segment, donor[Math.min(m.segment, donor.length - 1)]!);
    }
    case 'segments':
      return m.layout.map((i) => segs[Math.min(i, segs.length - 1)]).join('.');
    case 'pad':
      return withSegment(m.segment, segs[seg(m.segment)]! + m.padding);
    case 'standardBase64':
      return withSegment(m.segment, Buffer.from(segs[seg(m.segment)]!, 'base64url').toString('base64'));
    case 'header':
      return [encodeJson(applyJsonEdits(decodeSegment(segs[0]!), m.edits)), ...segs.slice(1)].join('.');
    case 'payload':
      return [segs[0], encodeJson(applyJsonEdits(decodeSegment(segs[1] ?? ''), m.edits)), ...segs.slice(2)].join('.');
    case 'random':
      return m.text;
  }
}

beforeAll(async () => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-fuzz-'));
  otherHome = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-fuzz-other-'));
  await initKeys(home);
  await initKeys(otherHome);
  manifest = Manifest.parse({
    version: 1,
    name: 'hostile-fuzz',
    trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/issuer.jwks.json' } }],
    trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' } }],
    trustedApprovers: [{ issuer: DEV_APPROVER, jwks: { file: 'keys/approver.jwks.json' } }],
  });
  const vote = {
    sub: 'alice',
    roles: ['sre-lead'],
    chainId: 'chain-1',
    stepId: 'step-1',
    stepDigest: 'a'.repeat(64),
    decision: 'approve' as const,
    now: NOW,
  };
  originals.credential.add(await issueCredential({ home, sub: SUB, now: NOW }));
  originals.attestation.add(await issueAttestation({ home, sub: SUB, now: NOW }));
  originals.approval.add(await issueApproval({ home, ...vote, reason: 'looks fine' }));
  // Hand-crafted but validly signed: typ absent (allowed for credentials), an aud array.
  const issuer = devPrivateJwk(home, 'issuer');
  originals.credential.add(
    signEd25519(
      { alg: 'EdDSA', kid: issuer.kid },
      claimsFor('credential', NOW_S, SUB, { aud: ['other', GOVERNOR_AUDIENCE] }),
      privateKeyOf(issuer),
    ),
  );
  const attacker = attackerKey();
  pool = [
    ...KINDS.flatMap((k) => [...originals[k]]),
    await issueCredential({ home: otherHome, sub: SUB, now: NOW }),
    await issueApproval({ home: otherHome, ...vote }),
    signEd25519(
      { alg: 'EdDSA', kid: 'attacker', typ: 'JWT' },
      claimsFor('credential', NOW_S, SUB),
      attacker.privateKey,
    ),
    `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u(claimsFor('credential', NOW_S, SUB))}.`,
  ];
  // Control: every original verifies as its own kind (so "accepted" below is reachable).
  for (const k of KINDS) for (const t of originals[k]) await expect(verify(k, t)).resolves.toBeDefined();
});

afterAll(() => {
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(otherHome, { recursive: true, force: true });
});

describe('fuzzed tokens', () => {
  it(
    "mutated, spliced and random tokens: rejected with the kind's own error, or byte-identical to a validly signed original",
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.nat(), fc.constantFrom(...KINDS), tokenMutations, async (from, kind, mutations) => {
          const token = mutations.reduce(mutateToken, pool[from % pool.length]!);
          const result = await outcome(kind, token);
          tally('tokens', result.accepted ? 'accepted' : result.reason.replace(/"[^"]*"/g, '"…"'));
          if (result.accepted) expect(originals[kind].has(token)).toBe(true);
        }),
        params(),
      );
    },
    LIMIT,
  );

  it(
    'header and claim edits re-signed with the real key: accepted only when every checked rule holds',
    async () => {
      const signers = Object.fromEntries(KINDS.map((k) => [k, devPrivateJwk(home, KIND_SIGNER[k].key)])) as Record<
        TokenKind,
        ReturnType<typeof devPrivateJwk>
      >;
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...KINDS),
          fc.array(jsonEdit(headerKey), { maxLength: 2 }),
          fc.array(jsonEdit(claimKey), { maxLength: 3 }),
          async (kind, headerEdits, claimEdits) => {
            const signer = signers[kind];
            const header = applyJsonEdits({ alg: 'EdDSA', kid: signer.kid, typ: KIND_SIGNER[kind].typ }, headerEdits);
            const claims = applyJsonEdits(
              claimsFor(kind, NOW_S, SUB, {}, { chainId: 'chain-1', stepId: 'step-1', stepDigest: 'a'.repeat(64) }),
              claimEdits,
            );
            const input = `${encodeJson(header)}.${encodeJson(claims)}`;
            const token = `${input}.${crypto.sign(null, Buffer.from(input), privateKeyOf(signer)).toString('base64url')}`;
            const result = await outcome(kind, token);
            tally('re-signed', result.accepted ? 'accepted' : result.reason.replace(/"[^"]*"/g, '"…"'));
            if (!result.accepted) return;
            // Necessary conditions of an acceptance (verify.ts's contract), checked independently of jose.
            const h = header as Record<string, unknown>;
            const c = claims as Record<string, unknown>;
            expect(h.alg).toBe('EdDSA');
            for (const name of ['jku', 'x5u', 'jwk', 'x5c', 'crit']) expect(Object.hasOwn(h, name)).toBe(false);
            expect(h.kid === undefined || h.kid === signer.kid).toBe(true);
            const typ = typeof h.typ === 'string' ? h.typ.toLowerCase() : h.typ;
            if (kind === 'credential')
              expect([undefined, 'jwt', 'jose', 'application/jwt', 'application/jose']).toContain(typ);
            else expect([`${kind}+jwt`, `application/${kind}+jwt`]).toContain(typ);
            expect(c.iss).toBe(
              kind === 'credential' ? DEV_ISSUER : kind === 'attestation' ? DEV_ATTESTER : DEV_APPROVER,
            );
            expect(typeof c.sub === 'string' && c.sub.length > 0).toBe(true);
            if (kind === 'attestation') expect(c.sub).toBe(SUB);
            expect(typeof c.iat === 'number' && c.iat <= NOW_S + 5).toBe(true);
            if (kind !== 'attestation' || c.exp !== undefined)
              expect(typeof c.exp === 'number' && c.exp > NOW_S - 5).toBe(true);
            if (c.nbf !== undefined) expect(typeof c.nbf === 'number' && c.nbf <= NOW_S + 5).toBe(true);
            if (kind !== 'attestation') {
              const audience = kind === 'credential' ? GOVERNOR_AUDIENCE : APPROVAL_AUDIENCE;
              expect(c.aud === audience || (Array.isArray(c.aud) && c.aud.includes(audience))).toBe(true);
            }
            if (kind === 'approval') {
              expect(['approve', 'deny']).toContain(c.decision);
              expect(Array.isArray(c.roles) && c.roles.length > 0).toBe(true);
            }
            // What the verifier returns is what was signed.
            expect(result.value.sub).toBe(c.sub);
            expect(result.value.iss).toBe(c.iss);
          },
        ),
        params(),
      );
      expect(tallies.get('re-signed')?.get('accepted') ?? 0).toBeGreaterThan(0);
    },
    LIMIT,
  );
});

describe('token regressions found by fuzzing', () => {
  /** Another spelling of `segment` that decodes to the same bytes (the last character's unused bits set). */
  function respelled(segment: string): string {
    const bytes = Buffer.from(segment, 'base64url');
    for (const ch of B64U) {
      const other = segment.slice(0, -1) + ch;
      if (other !== segment && Buffer.from(other, 'base64url').equals(bytes)) return other;
    }
    throw new Error('test setup: segment has no unused bits');
  }

  it.each(KINDS)(
    'a %s whose signature is spelled non-canonically (same bytes) is malformed, not accepted',
    async (kind) => {
      const token = [...originals[kind]][0]!;
      const [h, p, sig] = token.split('.') as [string, string, string];
      const other = respelled(sig); // an Ed25519 signature is 64 bytes: 86 characters, the last with 4 unused bits
      expect(Buffer.from(other, 'base64url').equals(Buffer.from(sig, 'base64url'))).toBe(true);
      await expect(verify(kind, `${h}.${p}.${other}`)).rejects.toMatchObject({
        code: INVALID_CODE[kind],
        message: `${kind} is malformed`,
      });
      await expect(verify(kind, token)).resolves.toBeDefined();
    },
  );

  it('padding or a standard-base64 alphabet in any segment is malformed', async () => {
    const token = [...originals.credential][0]!;
    const segs = token.split('.');
    for (let i = 0; i < 3; i++) {
      for (const variant of [segs[i]! + '=', Buffer.from(segs[i]!, 'base64url').toString('base64')]) {
        if (variant === segs[i]) continue;
        const mutated = segs.map((s, j) => (j === i ? variant : s)).join('.');
        await expect(verifyCredential(mutated, manifest, { now: NOW, home })).rejects.toMatchObject({
          code: ErrorCode.CredentialInvalid,
        });
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Chain specs
// ---------------------------------------------------------------------------------------------

const VALID_CHAIN_INPUT = {
  chainId: 'chain-1',
  chain: {
    workload: 'agent:release-bot',
    owner: 'team-release',
    summary: 'deploy then notify',
    steps: [
      {
        id: 'deploy',
        action: 'deploy',
        resource: { type: 'Environment', id: 'staging' },
        input: { version: '1.2.3', replicas: 3 },
        context: { ticket: 'OPS-1' },
        executor: {
          type: 'http',
          method: 'POST',
          url: 'http://127.0.0.1:9/deploy',
          headers: { 'x-trace': 'abc' },
          body: { a: [1, 2] },
          timeoutMs: 1000,
        },
        compensation: { action: 'rollback', executor: { type: 'noop' } },
        coordination: { priority: 5, plannedVersion: 2 },
      },
      {
        id: 'notify',
        action: 'notify',
        resource: { type: 'Channel', id: 'releases' },
        executor: { type: 'activity', taskQueue: 'svc', activityType: 'perform', heartbeatTimeoutMs: 500 },
      },
    ],
  },
  credential: 'aaa.bbb.ccc',
  attestation: 'aaa.bbb.ccc',
  options: { continueAsNewAfterSteps: 10 },
};

/** Every path (to objects, arrays and leaves) of a JSON value. */
function pathsOf(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...pathsOf(v, [...prefix, i])));
  else if (typeof value === 'object' && value !== null)
    for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]));
  return out;
}

type TreeEdit =
  | { op: 'set'; target: number; value: unknown }
  | { op: 'delete'; target: number }
  | { op: 'addKey'; target: number; key: string; value: unknown }
  | { op: 'duplicate'; target: number }
  | { op: 'wrap'; target: number };

const treeValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    SECRET,
    `http://${SECRET}.example/x`,
    `${SECRET}::x`,
    '',
    ' ',
    'x'.repeat(2000),
    -1,
    0,
    1.5,
    1e21,
    2 ** 53 + 2,
    null,
    true,
    [],
    {},
    'noop',
    'http',
    'activity',
    'GET',
    'Environment',
    'Db::Table',
    'bad type',
    'deploy',
    'a b',
    'ftp://host/x',
    'javascript:alert(1)',
    [SECRET],
  ),
  fc.jsonValue({ maxDepth: 3 }),
);
const treeKey = fc.constantFrom(
  'id',
  'type',
  'steps',
  'executor',
  'resume',
  'extra',
  SECRET,
  '__proto__',
  'constructor',
  'toString',
  '',
);
const treeEdit: fc.Arbitrary<TreeEdit> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), target: fc.nat(), value: treeValue }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('delete' as const), target: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('addKey' as const), target: fc.nat(), key: treeKey, value: treeValue }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), target: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('wrap' as const), target: fc.nat() }) },
);

/** Applies edits to a deep copy of `root` (paths are re-collected after each edit). */
function applyTreeEdits(root: unknown, edits: readonly TreeEdit[]): unknown {
  let doc: unknown = structuredClone(root);
  for (const e of edits) {
    const paths = pathsOf(doc);
    const target = paths[e.target % paths.length]!;
    const parentPath = target.slice(0, -1);
    const last = target[target.length - 1];
    const parent = parentPath.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], doc) as
      Record<string | number, unknown> | unknown[] | undefined;
    const current = target.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], doc);
    const put = (value: unknown) => {
      if (last === undefined) doc = value;
      else Object.defineProperty(parent, last, { value, enumerable: true, configurable: true, writable: true });
    };
    if (e.op === 'set') put(structuredClone(e.value));
    else if (e.op === 'wrap') put([current]);
    else if (e.op === 'delete') {
      if (last === undefined) doc = undefined;
      else if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete (parent as Record<string, unknown>)[last];
    } else if (e.op === 'duplicate') {
      if (Array.isArray(parent)) parent.splice(Number(last), 0, structuredClone(current));
      else if (Array.isArray(current)) current.push(structuredClone(current[0]));
    } else if (typeof current === 'object' && current !== null && !Array.isArray(current)) {
      Object.defineProperty(current, e.key, {
        value: structuredClone(e.value),
        enumerable: true,
        configurable: true,
        writable: true,
      });
    }
  }
  return doc;
}

/** The chain schema's contract: a rejection names a field for each problem and echoes no value; an acceptance is a fixed point. */
function checkChainInput(input: unknown, property: string): void {
  const parsed = GovernedChainInput.safeParse(input);
  if (!parsed.success) {
    tally(property, 'rejected');
    const text = formatIssues(parsed.error);
    expect(parsed.error.issues.length).toBeGreaterThan(0);
    const rootIsObject = typeof input === 'object' && input !== null && !Array.isArray(input);
    for (const issue of parsed.error.issues) {
      expect(issue.message.length).toBeGreaterThan(0);
      // Only a root that is not an object at all, or unknown root keys (named in the message), may lack a path.
      if (issue.path.length === 0) {
        if (rootIsObject) expect(issue.code).toBe('unrecognized_keys');
        else expect(issue.code).toBe('invalid_type');
      }
    }
    // Never echoes submitted values (keys may be named: they are the field).
    expect(text.length).toBeGreaterThan(0);
    // Never echoes submitted values. Keys may be named (in the path, or as an unknown key): they are the field.
    for (const issue of parsed.error.issues) expect(withoutKeyNames(issue.message)).not.toContain(SECRET);
    return;
  }
  tally(property, 'accepted');
  const again = GovernedChainInput.safeParse(parsed.data);
  expect(again.success).toBe(true);
  expect(again.data).toEqual(parsed.data);
  // Structurally valid: travels as JSON unchanged, unique step ids, 1..1000 steps. JSON has one zero: a -0 (which
  // `z.json()` accepts, and `===` equals 0) arrives as 0, and canonical digests write both as `0`.
  expect(JSON.parse(JSON.stringify(parsed.data))).toEqual(withPositiveZero(parsed.data));
  const ids = parsed.data.chain.steps.map((s) => s.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids.length).toBeGreaterThanOrEqual(1);
}

/** A deep copy with every -0 written as 0 (what JSON makes of it); everything else as it was. */
function withPositiveZero(value: unknown): unknown {
  if (Object.is(value, -0)) return 0;
  if (Array.isArray(value)) return value.map(withPositiveZero);
  if (typeof value === 'object' && value !== null)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withPositiveZero(v)]));
  return value;
}

/** Error text minus the lines that name unknown keys: a key is the field, so naming it is the point. */
function withoutKeyNames(text: string): string {
  return text
    .split('\n')
    .filter((line) => !/Unrecognized keys?: /.test(line))
    .join('\n');
}

describe('fuzzed chain specs', () => {
  it('regression found by fuzzing: a duplicate step id is named by path, its value never echoed (even when invalid)', () => {
    const step = VALID_CHAIN_INPUT.chain.steps[1]!;
    const input = {
      ...VALID_CHAIN_INPUT,
      chain: {
        ...VALID_CHAIN_INPUT.chain,
        steps: [
          { ...step, id: SECRET },
          { ...step, id: SECRET },
        ],
      },
    };
    const parsed = GovernedChainInput.safeParse(input);
    expect(parsed.success).toBe(false);
    const text = formatIssues(parsed.error!);
    expect(text).toContain('chain.steps.1.id: duplicate step id (same as steps.0.id)');
    expect(text).not.toContain(SECRET);
  });

  it('control: the valid chain input is accepted', () => {
    expect(GovernedChainInput.safeParse(VALID_CHAIN_INPUT).success).toBe(true);
  });

  it(
    'mutations of a valid chain input: a rejection naming each bad field, or an input that re-validates unchanged',
    () => {
      fc.assert(
        fc.property(fc.array(treeEdit, { minLength: 1, maxLength: 4 }), (edits) => {
          checkChainInput(applyTreeEdits(VALID_CHAIN_INPUT, edits), 'chain-mutations');
        }),
        params(),
      );
      // Both sides of the property were exercised.
      expect(tallies.get('chain-mutations')?.get('accepted') ?? 0).toBeGreaterThan(0);
      expect(tallies.get('chain-mutations')?.get('rejected') ?? 0).toBeGreaterThan(0);
    },
    LIMIT,
  );

  it(
    'random values and objects: rejected with field paths, never a crash',
    () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.anything({
              withNullPrototype: true,
              withMap: true,
              withSet: true,
              withBigInt: true,
              withDate: true,
              withTypedArray: true,
              withSparseArray: true,
              withBoxedValues: true,
              withObjectString: true,
            }),
            fc.record({
              chainId: fc.anything(),
              chain: fc.record({ workload: fc.anything(), steps: fc.array(fc.anything(), { maxLength: 3 }) }),
              credential: fc.anything(),
              attestation: fc.anything(),
            }),
          ),
          (input) => checkChainInput(input, 'chain-random'),
        ),
        params(),
      );
    },
    LIMIT,
  );
});

// ---------------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------------

const DEFAULT_MANIFEST = fs.readFileSync(path.join(DEFAULT_BUNDLE_DIR, 'manifest.yaml'), 'utf8');
// A minimal schema and policy so each run checks the manifest, not the default policies.
const TINY_SCHEMA =
  'entity Workload;\nentity Thing;\naction "act" appliesTo { principal: [Workload], resource: [Thing] };\n';
const TINY_POLICY = '@id("p")\npermit (principal, action == Action::"act", resource);\n';

/** Hostile YAML constructs inserted as whole lines. */
const YAML_SNIPPETS = [
  'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]',
  '<<: 1',
  '<<: *nowhere',
  '<<: [1, 2]',
  'x: !!binary aGVsbG8=',
  'x: !!set { a, b }',
  'x: !!omap [ a: 1 ]',
  'x: !!js/function "function(){}"',
  'x: !unknown 1',
  'version: 1',
  'version: 2',
  'name: ""',
  '__proto__: { polluted: true }',
  'constructor: { prototype: { polluted: true } }',
  `name: ${SECRET}`,
  '\t- tab',
  '---',
  '...',
  '%YAML 1.2',
  '? [complex, key]\n: value',
  'x: 0x1F',
  'x: .inf',
  'x: -.nan',
  'x: 1e400',
  `x: ${'['.repeat(2000)}${']'.repeat(2000)}`,
  'trustedIssuers: []',
  'credential: { maxTokenBytes: 1 }',
  'credential: { clockToleranceSeconds: 3600 }',
  'credential: { gracePeriod: forever }',
  `approvals: { breakGlassRole: ${SECRET} }`,
  'approverRoles: { "": {} }',
  'trustedApprovers: [{ issuer: x, jwks: { file: a, uri: "https://x" } }]',
  'trustedIssuers: [{ issuer: i, audience: a, jwks: { uri: "file:///etc/passwd" } }]',
];

type TextEdit =
  | { op: 'replaceChar'; at: number; ch: string }
  | { op: 'insert'; at: number; text: string }
  | { op: 'deleteRange'; at: number; length: number }
  | { op: 'deleteLine'; line: number }
  | { op: 'duplicateLine'; line: number }
  | { op: 'swapLines'; a: number; b: number }
  | { op: 'indent'; line: number; by: number }
  | { op: 'insertLine'; line: number; text: string };

const textEdit = (alphabet: string[], snippets: string[]): fc.Arbitrary<TextEdit> =>
  fc.oneof(
    fc.record({
      op: fc.constant('replaceChar' as const),
      at: fc.nat(),
      ch: fc.oneof(fc.constantFrom(...alphabet), fc.string({ minLength: 1, maxLength: 1 })),
    }),
    fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(),
      text: fc.oneof(fc.constantFrom(...alphabet), fc.string({ maxLength: 6 })),
    }),
    fc.record({ op: fc.constant('deleteRange' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 20 }) }),
    fc.record({ op: fc.constant('deleteLine' as const), line: fc.nat() }),
    fc.record({ op: fc.constant('duplicateLine' as const), line: fc.nat() }),
    fc.record({ op: fc.constant('swapLines' as const), a: fc.nat(), b: fc.nat() }),
    fc.record({ op: fc.constant('indent' as const), line: fc.nat(), by: fc.integer({ min: -4, max: 4 }) }),
    fc.record({ op: fc.constant('insertLine' as const), line: fc.nat(), text: fc.constantFrom(...snippets) }),
  );

function applyTextEdit(text: string, e: TextEdit): string {
  const at = (n: number) => n % (text.length + 1);
  const lines = text.split('\n');
  const line = (n: number) => n % lines.length;
  switch (e.op) {
    case 'replaceChar':
      return text.slice(0, at(e.at)) + e.ch + text.slice(at(e.at) + 1);
    case 'insert':
      return text.slice(0, at(e.at)) + e.text + text.slice(at(e.at));
    case 'deleteRange':
      return text.slice(0, at(e.at)) + text.slice(at(e.at) + e.length);
    case 'deleteLine':
      lines.splice(line(e.line), 1);
      return lines.join('\n');
    case 'duplicateLine':
      lines.splice(line(e.line), 0, lines[line(e.line)]!);
      return lines.join('\n');
    case 'swapLines': {
      const [a, b] = [line(e.a), line(e.b)];
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join('\n');
    }
    case 'indent': {
      const l = lines[line(e.line)]!;
      lines[line(e.line)] = e.by >= 0 ? ' '.repeat(e.by) + l : l.replace(new RegExp(`^ {0,${-e.by}}`), '');
      return lines.join('\n');
    }
    case 'insertLine':
      lines.splice(line(e.line), 0, e.text);
      return lines.join('\n');
  }
}

/** The loader's contract for a manifest: every problem a clear issue on manifest.yaml, or a manifest that re-validates unchanged. */
function checkManifestBundle(text: string, property: string): void {
  const files: BundleFile[] = [
    { path: 'manifest.yaml', content: text },
    { path: 'schema.cedarschema', content: TINY_SCHEMA },
    { path: 'p.cedar', content: TINY_POLICY },
  ];
  let result: ReturnType<typeof analyseBundle>;
  try {
    result = analyseBundle(files, 'fuzz');
  } catch (err) {
    throw new Error(
      `analyseBundle threw on a mutated manifest: ${String((err as Error)?.name)}: ${String((err as Error)?.message)}`,
    );
  }
  const errors = result.issues.filter((i) => i.severity === 'error');
  if (result.bundle) {
    tally(property, 'loaded');
    expect(errors).toEqual([]);
    const again = Manifest.safeParse(result.bundle.manifest);
    expect(again.success).toBe(true);
    expect(again.data).toEqual(result.bundle.manifest);
    expect(() => loadBundleFromFiles(files, 'fuzz')).not.toThrow();
    return;
  }
  tally(property, 'rejected');
  expect(errors.length).toBeGreaterThan(0);
  for (const issue of errors) {
    expect(issue.file).toBe('manifest.yaml');
    expect(issue.message.length).toBeGreaterThan(0);
    expect(withoutKeyNames(issue.message)).not.toContain(SECRET);
  }
  let thrown: unknown;
  try {
    loadBundleFromFiles(files, 'fuzz');
  } catch (err) {
    thrown = err;
  }
  expect(isGovernorError(thrown)).toBe(true);
  expect((thrown as { code: string }).code).toBe(ErrorCode.PolicyError);
  expect((thrown as Error).message).toContain('manifest.yaml');
}

const YAML_ALPHABET = [
  ':',
  '-',
  ' ',
  '\n',
  '{',
  '}',
  '[',
  ']',
  ',',
  '&',
  '*',
  '!',
  '#',
  '"',
  "'",
  '|',
  '>',
  '?',
  '%',
  '@',
  '`',
  '<<',
  '0',
  '1',
  'a',
  'z',
  '\t',
  '\r',
  '\uFEFF',
];

describe('fuzzed manifests', () => {
  it('control: the default manifest loads', () => {
    checkManifestBundle(DEFAULT_MANIFEST, 'manifest-control');
    expect(tallies.get('manifest-control')?.get('loaded')).toBe(1);
  });

  it(
    'mutated manifest YAML text: a clear error on manifest.yaml, or a manifest that re-validates',
    () => {
      fc.assert(
        fc.property(fc.array(textEdit(YAML_ALPHABET, YAML_SNIPPETS), { minLength: 1, maxLength: 4 }), (edits) => {
          checkManifestBundle(edits.reduce(applyTextEdit, DEFAULT_MANIFEST), 'manifest-text');
        }),
        params(),
      );
      expect(tallies.get('manifest-text')?.get('rejected') ?? 0).toBeGreaterThan(0);
    },
    LIMIT,
  );

  it(
    'mutated manifest objects: a clear error naming the field, or a manifest that re-validates',
    () => {
      const base = parseYaml(DEFAULT_MANIFEST) as unknown;
      fc.assert(
        fc.property(fc.array(treeEdit, { minLength: 1, maxLength: 4 }), (edits) => {
          const mutated = applyTreeEdits(base, edits);
          const parsed = Manifest.safeParse(mutated);
          if (!parsed.success) {
            for (const issue of parsed.error.issues) {
              expect(issue.message.length).toBeGreaterThan(0);
              if (issue.path.length === 0 && typeof mutated === 'object' && mutated !== null && !Array.isArray(mutated))
                expect(['unrecognized_keys', 'custom']).toContain(issue.code);
            }
            for (const issue of parsed.error.issues) expect(withoutKeyNames(issue.message)).not.toContain(SECRET);
          }
          let text: string;
          try {
            text = stringifyYaml(mutated ?? null);
          } catch {
            return; // not representable as YAML (the mutation made a cycle-free but odd value): nothing to load
          }
          checkManifestBundle(text, 'manifest-objects');
        }),
        params(),
      );
      expect(tallies.get('manifest-objects')?.get('loaded') ?? 0).toBeGreaterThan(0);
      expect(tallies.get('manifest-objects')?.get('rejected') ?? 0).toBeGreaterThan(0);
    },
    LIMIT,
  );
});

describe('manifest regressions found by fuzzing', () => {
  const load = (text: string) =>
    analyseBundle([
      { path: 'manifest.yaml', content: text },
      { path: 'schema.cedarschema', content: TINY_SCHEMA },
      { path: 'p.cedar', content: TINY_POLICY },
    ]);

  it('an alias bomb is an issue on manifest.yaml, not an exception', () => {
    const { bundle, issues } = load(`${YAML_SNIPPETS[0]}\n${DEFAULT_MANIFEST}`);
    expect(bundle).toBeUndefined();
    expect(issues).toEqual([
      {
        severity: 'error',
        file: 'manifest.yaml',
        message: 'YAML is not usable: too many aliases (resource exhaustion guard)',
      },
    ]);
  });

  it('an alias with no anchor is an issue on manifest.yaml, not an exception', () => {
    const { bundle, issues } = load(`${DEFAULT_MANIFEST}\nowners: *nowhere-${SECRET}\n`);
    expect(bundle).toBeUndefined();
    expect(issues).toEqual([
      { severity: 'error', file: 'manifest.yaml', message: 'YAML is not usable: an alias names no earlier anchor' },
    ]);
  });

  it('a YAML syntax error does not quote the offending text', () => {
    // yaml reports this as `Unexpected scalar token in YAML stream: "<the value>"`.
    const { issues } = load(`  - issuer: x\nname: ${SECRET}\n  audience: y\n`);
    expect(issues.length).toBeGreaterThan(0);
    for (const issue of issues) {
      expect(issue.message).toMatch(/^YAML syntax error: /);
      expect(issue.message).not.toContain(SECRET);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Cedar policy text
// ---------------------------------------------------------------------------------------------

const CEDAR_TOKENS = [
  'permit',
  'forbid',
  'when',
  'unless',
  'principal',
  'action',
  'resource',
  'context',
  '==',
  '!=',
  '<',
  '<=',
  '>',
  '>=',
  '&&',
  '||',
  '!',
  ' in ',
  ' has ',
  ' like ',
  ' is ',
  'if',
  'then',
  'else',
  'true',
  'false',
  '0',
  '-1',
  '9223372036854775807',
  '4611686018427387905',
  '"x"',
  '.',
  '(',
  ')',
  '{',
  '}',
  '[',
  ']',
  ';',
  ',',
  '*',
  '+',
  '-',
  '@id("x")',
  '@escalate("sre-lead")',
  '@quorum("0")',
  '@deadline("0s")',
  '@reason("r")',
  'context.rowCount',
  'context.amount',
  'context.attestation.trustZone',
  'context.approvals',
  '.contains(',
  '.containsAll(',
  'ip("1.2.3.4")',
  'decimal("1.0")',
  'datetime("x")',
  'duration("1h")',
  'context.rowCount * 4611686018427387905',
  'context.nowEpochSeconds',
  'context.now',
  'Action::"deploy"',
  'Workload::"x"',
  'Environment::"prod"',
  '//',
  '/*',
  '\n',
];
const CEDAR_SNIPPETS = [
  '@id("fuzz-forbid-erroring")\nforbid (principal, action, resource) when { context.rowCount * 4611686018427387905 > 0 };',
  '@id("fuzz-permit-all")\npermit (principal, action, resource);',
  '@id("fuzz-escalate")\n@escalate("sre-lead")\nforbid (principal, action, resource) when { context has rowCount && context.rowCount > 1 };',
  '@id("fuzz-template")\npermit (principal == ?principal, action, resource);',
  '@id("dup")\npermit (principal, action, resource);\n@id("dup")\nforbid (principal, action, resource);',
];

interface DefaultBundle {
  files: BundleFile[];
  cedarFiles: string[];
  requests: AuthzRequest[];
}
let defaults: DefaultBundle | undefined;
function defaultBundle(): DefaultBundle {
  if (defaults) return defaults;
  const loaded = loadBundle(DEFAULT_BUNDLE_DIR);
  defaults = {
    files: loaded.files.map((f) => ({ path: f.path, content: f.content })),
    cedarFiles: loaded.files.filter((f) => f.path.endsWith('.cedar')).map((f) => f.path),
    requests: loaded.tests.flatMap((t) => t.cases.map((c) => c.request)),
  };
  return defaults;
}

/** Request variations that make strict-validated policies error at run time (missing or overflowing attributes). */
type ContextEdit = { op: 'drop'; key: number } | { op: 'set'; key: string; value: unknown };
const contextEdit: fc.Arbitrary<ContextEdit> = fc.oneof(
  fc.record({ op: fc.constant('drop' as const), key: fc.nat() }),
  fc.record({
    op: fc.constant('set' as const),
    key: fc.constantFrom('rowCount', 'amount', 'currency', 'attestation', 'approvals', 'window', 'x'),
    value: fc.constantFrom<unknown>(
      2 ** 62,
      9007199254740991,
      -9007199254740991,
      0,
      10001,
      'EUR',
      '',
      true,
      {},
      [],
      { trustZone: 'trusted' },
      { count: 1 },
    ),
  }),
);

/** Engines per bundle digest: Cedar keeps every preparsed set for the life of the process. */
const engines = new Map<string, PolicyEngine | Error>();

describe('fuzzed Cedar policy text', () => {
  it(
    'mutated policies: rejected with a clear, located error, or a bundle whose decisions are fail-closed',
    () => {
      const { files, cedarFiles, requests } = defaultBundle();
      fc.assert(
        fc.property(
          fc.nat(),
          fc.array(textEdit(CEDAR_TOKENS, CEDAR_SNIPPETS), { minLength: 1, maxLength: 3 }),
          fc.array(fc.tuple(fc.nat(), fc.array(contextEdit, { maxLength: 2 })), { minLength: 1, maxLength: 3 }),
          (which, edits, probes) => {
            const target = cedarFiles[which % cedarFiles.length]!;
            const mutated = files.map((f) =>
              f.path === target ? { path: f.path, content: edits.reduce(applyTextEdit, f.content) } : f,
            );
            let result: ReturnType<typeof analyseBundle>;
            try {
              result = analyseBundle(mutated, 'fuzz');
            } catch (err) {
              throw new Error(
                `analyseBundle threw on mutated Cedar: ${String((err as Error)?.name)}: ${String((err as Error)?.message)}`,
              );
            }
            const errors = result.issues.filter((i) => i.severity === 'error');
            if (!result.bundle) {
              tally('cedar', 'rejected');
              expect(errors.length).toBeGreaterThan(0);
              for (const issue of errors) {
                expect(issue.message.length).toBeGreaterThan(0);
                expect([target, 'schema.cedarschema', 'manifest.yaml']).toContain(issue.file);
              }
              expect(() => loadBundleFromFiles(mutated, 'fuzz')).toThrow(
                expect.objectContaining({ code: ErrorCode.PolicyError }),
              );
              return;
            }
            expect(errors).toEqual([]);
            const bundle = result.bundle;
            let engine = engines.get(bundle.digest);
            if (engine === undefined) {
              try {
                engine = PolicyEngine.fromBundle(bundle);
              } catch (err) {
                if (!isGovernorError(err) || err.code !== ErrorCode.PolicyError) throw err;
                engine = err;
              }
              engines.set(bundle.digest, engine);
            }
            if (engine instanceof Error) {
              tally('cedar', 'loaded, engine refused');
              return;
            }
            const staticPolicies = Object.fromEntries(bundle.policies.map((p) => [p.id, p.text]));
            for (const [index, contextEdits] of probes) {
              const base = requests[index % requests.length]!;
              const context: Record<string, unknown> = { ...(base.context as Record<string, unknown>) };
              for (const e of contextEdits) {
                if (e.op === 'drop')
                  delete context[Object.keys(context)[e.key % Math.max(1, Object.keys(context).length)] ?? ''];
                else context[e.key] = e.value;
              }
              const request = { ...base, context } as AuthzRequest;
              const decision = engine.decide(request);
              // Independent oracle: stateless Cedar over the same policies and the context the engine builds.
              const answer = cedar.isAuthorized({
                principal: { type: 'Workload', id: request.principal.id },
                action: { type: 'Action', id: request.action },
                resource: request.resource,
                context: {
                  ...(context as Record<string, never>),
                  now: { __extn: { fn: 'datetime', arg: request.now } },
                  nowEpochSeconds: Math.floor(Date.parse(request.now) / 1000),
                },
                policies: { staticPolicies },
                entities: [],
              });
              const cedarErrored = answer.type === 'failure' || answer.response.diagnostics.errors.length > 0;
              const cedarAllows = answer.type === 'success' && answer.response.decision === 'allow';
              tally(
                'cedar',
                `loaded, ${cedarErrored ? 'cedar errored' : cedarAllows ? 'cedar allows' : 'cedar denies'} → ${decision.effect}`,
              );
              if (decision.errors.length > 0) expect(decision.effect).toBe('deny');
              if (cedarErrored) {
                expect(decision.effect).toBe('deny');
                expect(decision.errors.length).toBeGreaterThan(0);
              }
              // Never allow what Cedar does not allow cleanly; allow what it does.
              expect(decision.effect === 'allow').toBe(cedarAllows && !cedarErrored);
            }
          },
        ),
        params(),
      );
      const t = tallies.get('cedar')!;
      expect(t.get('rejected') ?? 0).toBeGreaterThan(0);
      expect([...t.keys()].some((k) => k.startsWith('loaded'))).toBe(true);
    },
    LIMIT,
  );
});
