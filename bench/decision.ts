import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { importJWK, jwtVerify, type CryptoKey, type JWK } from 'jose';
import { createActivities } from '../activities';
import { authorizeAction, type AuthorizeInput } from '../activities/authorize';
import { loadPublicJwks, verifyAttestation, verifyCredential } from '../identity';
import { PolicyStore } from '../activities/policy-store';
import { GENESIS_HASH } from '../contracts/receipt';
import { requestContext } from '../policies/context';
import { defaultPoliciesDir } from '../workers/worker';
import { credentials, WORKLOAD } from './chains';
import { round, summarize, type Summary } from './stats';

/** p50/p99 of one in-process operation, in microseconds. */
export interface MicroFigure {
  p50Micros: number;
  p99Micros: number;
  meanMicros: number;
}

/** Results of the in-process decision benchmark. */
export interface DecisionResults {
  iterations: number;
  /** Full authorize path: credential + attestation verification + Cedar decision (authorizeAction). */
  p50Micros: number;
  p99Micros: number;
  /** What the `authorize` local activity runs per step: the full path plus signing its receipt. */
  authorizeActivity: MicroFigure;
  /** `recordReceipt`: canonical JSON, SHA-256, one Ed25519 signature. */
  recordReceipt: MicroFigure;
  breakdown: { verifyCredential: MicroFigure; verifyAttestation: MicroFigure; engineDecide: MicroFigure };
  cedar: {
    /** `statefulIsAuthorized` against the preparsed default bundle (what the engine does). */
    preparsed: MicroFigure;
    /** `isAuthorized` with the policy text in every call (Cedar re-parses each time). */
    reparsePerCall: MicroFigure;
    /** reparse p50 / preparsed p50. */
    reparseRatio: number;
  };
  /** The signature check inside each token verification: WebCrypto (what jose uses) vs node:crypto sync. */
  ed25519Verify: { joseJwtVerify: MicroFigure; webcrypto: MicroFigure; nodeSync: MicroFigure };
}

function micro(s: Summary): MicroFigure {
  return { p50Micros: round(s.p50), p99Micros: round(s.p99), meanMicros: round(s.mean) };
}

/** Times `fn` `iterations` times after `warmup` untimed calls; microseconds per call. */
async function time(iterations: number, warmup: number, fn: () => unknown): Promise<Summary> {
  for (let i = 0; i < warmup; i++) await fn();
  const sample: number[] = new Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    sample[i] = Number(process.hrtime.bigint() - t0) / 1e3;
  }
  return summarize(sample);
}

/** The in-process decision benchmark (no Temporal): full authorize path, its parts, and Cedar alone. */
export async function benchDecision(
  home: string,
  iterations: number,
  progress: (m: string) => void,
): Promise<DecisionResults> {
  const store = new PolicyStore();
  const active = store.activateDir(defaultPoliciesDir());
  const manifest = active.bundle.manifest;
  const { credential, attestation } = await credentials(home);
  const input: AuthorizeInput = {
    chainId: 'bench-decision',
    stepId: 's1',
    kind: 'step',
    workload: WORKLOAD,
    action: 'deploy',
    resource: { type: 'Environment', id: 'staging' },
    context: {},
    credential,
    attestation,
    prev: { seq: 0, hash: GENESIS_HASH },
  };
  const warmup = Math.min(500, iterations);
  const check = await authorizeAction(store, home, input, new Date());
  if (check.decision.effect !== 'allow')
    throw new Error(`bench decision request is not allowed: ${check.decision.reason ?? ''}`);

  progress(`decision: full authorize path × ${iterations}`);
  const full = await time(iterations, warmup, () => authorizeAction(store, home, input, new Date()));
  const activities = createActivities({ policies: store, home });
  const activity = await time(iterations, warmup, () => activities.authorize(input));
  const receipt = await time(iterations, warmup, () =>
    activities.recordReceipt({
      chainId: 'bench-decision',
      stepId: 's1',
      kind: 'execution',
      payload: { status: 'completed', outcome: { executor: 'noop', idempotencyKey: 'bench-decision/s1' } },
      prev: input.prev,
    }),
  );

  progress('decision: breakdown');
  const now = new Date();
  const vCred = await time(iterations, warmup, () => verifyCredential(credential, manifest, { now, home }));
  const claims = await verifyAttestation(attestation, manifest, { now, home, expectedSubject: WORKLOAD });
  const vAtt = await time(iterations, warmup, () =>
    verifyAttestation(attestation, manifest, { now, home, expectedSubject: WORKLOAD }),
  );
  const request = check.request!;
  const decide = await time(iterations, warmup, () => active.engine.decide(request));

  progress('decision: Cedar preparsed vs re-parse per call');
  const staticPolicies = Object.fromEntries(active.bundle.policies.map((p) => [p.id, p.text]));
  const setId = `bench/${active.bundle.digest}/${Date.now()}`;
  const parsed = cedar.preparsePolicySet(setId, { staticPolicies });
  if (parsed.type === 'failure') throw new Error('bench: Cedar rejected the default bundle');
  const call = {
    principal: { type: 'Workload', id: WORKLOAD },
    action: { type: 'Action', id: 'deploy' },
    resource: { type: 'Environment', id: 'staging' },
    context: {
      ...(requestContext({}, claims) as Record<string, cedar.CedarValueJson>),
      now: { __extn: { fn: 'datetime', arg: request.now } },
      nowEpochSeconds: Math.floor(Date.parse(request.now) / 1000),
    },
    entities: [],
  };
  const expectAllow = (a: cedar.AuthorizationAnswer): void => {
    if (a.type !== 'success' || a.response.decision !== 'allow')
      throw new Error(`bench: Cedar did not allow the bench request: ${JSON.stringify(a)}`);
  };
  expectAllow(cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: setId }));
  expectAllow(cedar.isAuthorized({ ...call, policies: { staticPolicies } }));
  const preparsed = await time(iterations, warmup, () =>
    cedar.statefulIsAuthorized({ ...call, preparsedPolicySetId: setId }),
  );
  const reparse = await time(Math.max(200, Math.floor(iterations / 5)), Math.min(100, warmup), () =>
    cedar.isAuthorized({ ...call, policies: { staticPolicies } }),
  );

  progress('decision: Ed25519 verify, WebCrypto vs node:crypto');
  const jwks = loadPublicJwks(home, 'issuer');
  const jwk = jwks.keys[0] as JWK;
  const webKey = (await importJWK(jwk, 'EdDSA')) as CryptoKey;
  const nodeKey: KeyObject = createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
  const [h, p, sig] = credential.split('.') as [string, string, string];
  const signingInput = Buffer.from(`${h}.${p}`);
  const signature = Buffer.from(sig, 'base64url');
  if (!nodeVerify(null, signingInput, nodeKey, signature))
    throw new Error('bench: node:crypto rejected the credential signature');
  const jose = await time(iterations, warmup, () => jwtVerify(credential, webKey, { algorithms: ['EdDSA'] }));
  const web = await time(iterations, warmup, () => crypto.subtle.verify('Ed25519', webKey, signature, signingInput));
  const sync = await time(iterations, warmup, () => nodeVerify(null, signingInput, nodeKey, signature));

  return {
    iterations,
    p50Micros: round(full.p50),
    p99Micros: round(full.p99),
    authorizeActivity: micro(activity),
    recordReceipt: micro(receipt),
    breakdown: { verifyCredential: micro(vCred), verifyAttestation: micro(vAtt), engineDecide: micro(decide) },
    cedar: {
      preparsed: micro(preparsed),
      reparsePerCall: micro(reparse),
      reparseRatio: Math.round((reparse.p50 / preparsed.p50) * 10) / 10,
    },
    ed25519Verify: { joseJwtVerify: micro(jose), webcrypto: micro(web), nodeSync: micro(sync) },
  };
}
