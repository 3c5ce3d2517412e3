import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
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
  initKeys,
  issueApproval,
  issueAttestation,
  issueCredential,
  loadPrivateKey,
  verifyApproval,
  verifyAttestation,
  verifyCredential,
} from '../../identity';
import { clearVerifiedTokenCache } from '../../identity/verify';
import { ApprovalSubmission, SubmitApprovalResult } from '../../contracts/approval';
import { GovernedChainInput } from '../../contracts/chain';
import { ApprovalClaims, AttestationClaims, CredentialClaims } from '../../contracts/identity-claims';
import { PUBLISHED_SCHEMAS, publishedJsonSchema, publishedJsonSchemaText } from '../../contracts/json-schema';
import { ChainResult, ChainState } from '../../contracts/state';
import { Manifest } from '../../policies/manifest';
import { schemaAjv, schemaErrors, schemaOk } from '../harness/published-schemas';

/*
 * The published JSON Schemas (contracts/*.schema.json): committed = generated, valid draft 2020-12 (ajv,
 * strict), and they agree with what the governor enforces: the zod schemas the workflow parses with, and
 * identity/verify.ts for token claims (real tokens signed with dev keys on both sides of each bound).
 */

const root = path.join(__dirname, '..', '..');
type Json = Record<string, unknown>;

const clone = <T>(v: T): T => structuredClone(v);

describe('the committed JSON Schemas', () => {
  it.each(PUBLISHED_SCHEMAS.map((p) => [p.file, p] as const))(
    '%s is exactly what the zod schemas generate (run `npm run schema`)',
    (file, published) => {
      const committed = fs.readFileSync(path.join(root, 'contracts', file), 'utf8');
      expect(committed).toBe(publishedJsonSchemaText(published));
    },
  );

  it('are valid draft 2020-12 schemas with an $id and a description each', () => {
    for (const p of PUBLISHED_SCHEMAS) {
      const s = publishedJsonSchema(p);
      expect(schemaAjv().validateSchema(s)).toBe(true);
      expect(s).toMatchObject({
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        $id: `https://temporal-governor.dev/schemas/${p.file}`,
      });
      expect(String(s.description).length).toBeGreaterThan(80);
    }
  });

  it('close every object of the input and output shapes (additionalProperties: false); token claims stay open', () => {
    const objects = (node: unknown, at: string, out: [string, unknown][] = []): [string, unknown][] => {
      if (Array.isArray(node)) node.forEach((n, i) => objects(n, `${at}/${i}`, out));
      else if (typeof node === 'object' && node !== null) {
        const o = node as Json;
        if (o.properties !== undefined) out.push([at, o.additionalProperties]);
        for (const [k, v] of Object.entries(o)) objects(v, `${at}/${k}`, out);
      }
      return out;
    };
    for (const p of PUBLISHED_SCHEMAS) {
      const found = objects(publishedJsonSchema(p), '');
      expect(found.length).toBeGreaterThan(0);
      const expected = p.file.endsWith('-claims.schema.json') ? {} : false;
      expect({ file: p.file, open: found.filter(([, a]) => JSON.stringify(a) !== JSON.stringify(expected)) }).toEqual({
        file: p.file,
        open: [],
      });
    }
  });
});

describe('chain-input.schema.json says what the workflow enforces', () => {
  const FILE = 'chain-input.schema.json';
  const schema = publishedJsonSchema(PUBLISHED_SCHEMAS.find((p) => p.file === FILE)!);
  const example = (name: string) =>
    parseYaml(fs.readFileSync(path.join(root, 'examples', 'chains', name), 'utf8')) as Json;
  const input = (chain: Json, extra: Json = {}): Json => ({
    chainId: 'deploy-42',
    chain,
    credential: 'header.payload.signature',
    attestation: 'header.payload.signature',
    ...extra,
  });
  const staging = () => input(example('deploy-staging.yaml'));
  const steps = (doc: Json) => (doc.chain as { steps: Json[] }).steps;

  it('accepts the example chains and steps with every executor, like the workflow', () => {
    const docs = [
      staging(),
      input(example('deploy-prod.yaml')),
      input(example('drop-prod-table.yaml')),
      input({
        workload: 'svc',
        steps: [
          {
            id: 'call',
            action: 'notify',
            resource: { type: 'Channel', id: 'ops' },
            executor: {
              type: 'http',
              url: 'https://hooks.example.com/x',
              method: 'PUT',
              headers: { 'x-a': 'b' },
              body: { n: [1, null, 'x'] },
            },
          },
        ],
      }),
      input(
        {
          workload: 'svc',
          steps: [
            {
              id: 'run',
              action: 'deploy',
              resource: { type: 'Db::Table', id: 'users' },
              executor: { type: 'activity', taskQueue: 'my-service', activityType: 'deploy', heartbeatTimeoutMs: 5000 },
              coordination: { priority: 3, plannedVersion: 0 },
            },
          ],
        },
        { options: { continueAsNewAfterSteps: 10 } },
      ),
    ];
    for (const doc of docs) {
      expect({ doc: doc.chain, errors: schemaErrors(FILE, doc) }).toEqual({ doc: doc.chain, errors: [] });
      expect(GovernedChainInput.safeParse(doc).success).toBe(true);
    }
  });

  // Every malformed input of issue #13 that JSON Schema can express, and a few more: refused by both.
  const malformed: [string, (doc: Json) => void, string][] = [
    ['unknown executor type', (d) => (steps(d)[0]!.executor = { type: 'ssh' }), 'chain.steps[0].executor.type'],
    ['numeric step id', (d) => (steps(d)[0]!.id = 7), 'chain.steps[0].id'],
    ['step id with a space', (d) => (steps(d)[0]!.id = 'de ploy'), 'chain.steps[0].id'],
    ['unknown top-level field', (d) => (d.priority = 'high'), '(root)'],
    ['unknown step field', (d) => (steps(d)[0]!.retries = 3), 'chain.steps[0]'],
    ['missing chain', (d) => delete d.chain, 'chain'],
    ['step without resource', (d) => delete steps(d)[0]!.resource, 'chain.steps[0].resource'],
    ['steps as a string', (d) => ((d.chain as Json).steps = 'deploy'), 'chain.steps'],
    ['no steps', (d) => ((d.chain as Json).steps = []), 'chain.steps'],
    [
      'timeoutMs "10s"',
      (d) => (steps(d)[0]!.executor = { type: 'http', url: 'https://a.example', timeoutMs: '10s' }),
      'chain.steps[0].executor.timeoutMs',
    ],
    [
      'timeoutMs below 100',
      (d) => (steps(d)[0]!.executor = { type: 'http', url: 'https://a.example', timeoutMs: 5 }),
      'chain.steps[0].executor.timeoutMs',
    ],
    [
      'an ftp:// URL',
      (d) => (steps(d)[0]!.executor = { type: 'http', url: 'ftp://a.example/x' }),
      'chain.steps[0].executor.url',
    ],
    [
      'a file: URL',
      (d) => (steps(d)[0]!.executor = { type: 'http', url: 'file:///etc/passwd' }),
      'chain.steps[0].executor.url',
    ],
    [
      'an unknown http method',
      (d) => (steps(d)[0]!.executor = { type: 'http', url: 'https://a.example', method: 'FETCH' }),
      'chain.steps[0].executor.method',
    ],
    [
      'a lower-case resource type',
      (d) => (steps(d)[0]!.resource = { type: 'environment', id: 'staging' }),
      'chain.steps[0].resource.type',
    ],
    [
      'an activity executor without a task queue',
      (d) => (steps(d)[0]!.executor = { type: 'activity', activityType: 'x' }),
      'chain.steps[0].executor.taskQueue',
    ],
    ['a chain id with a slash', (d) => (d.chainId = 'a/b'), 'chainId'],
    ['an empty credential', (d) => (d.credential = ''), 'credential'],
    [
      'a compensation with an unknown field',
      (d) => ((steps(d)[0]!.compensation as Json).when = 'always'),
      'chain.steps[0].compensation',
    ],
    [
      'resume with an unknown field',
      (d) => (d.resume = { nextStep: 1, head: { seq: 1, hash: 'x' }, steps: [], completed: [], runs: 1, skip: true }),
      'resume',
    ],
  ];
  it.each(malformed.map(([name, mutate, at]) => [name, at, mutate] as const))(
    'refuses %s, as the workflow does (at %s)',
    (_name, at, mutate) => {
      const doc = staging();
      mutate(doc);
      expect(schemaOk(FILE, doc)).toBe(false);
      const parsed = GovernedChainInput.safeParse(doc);
      expect(parsed.success).toBe(false);
      const paths = parsed.error!.issues.map(
        (i) =>
          i.path
            .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
            .join('')
            .replace(/^\./, '') || '(root)',
      );
      expect(paths).toContain(at);
    },
  );

  it('states in words what JSON Schema cannot: unique step ids, chainId = workflow id, resume only from the workflow itself', () => {
    const duplicate = staging();
    steps(duplicate)[1]!.id = 'deploy';
    expect(schemaOk(FILE, duplicate)).toBe(true); // not expressible in JSON Schema…
    expect(GovernedChainInput.safeParse(duplicate).success).toBe(false); // …refused by the workflow's parse
    expect(schema.description).toMatch(/step ids are unique/);
    expect(schema.description).toMatch(/`chainId` equals the workflow id/);
    expect(schema.description).toMatch(
      /`resume` is written only by the workflow itself .* refused in any run a client starts/,
    );
    expect(schema.description).toMatch(/GOVERNOR_INVALID_INPUT/);
    const resume = (schema.properties as Record<string, Json>).resume!;
    expect(resume).toMatchObject({ readOnly: true, description: expect.stringContaining('Never send it') });
  });

  it('has the defaults the workflow applies: a minimal input completed with them equals the zod parse', () => {
    const minimal = input({
      workload: 'svc',
      steps: [
        {
          id: 'a',
          action: 'deploy',
          resource: { type: 'Environment', id: 'staging' },
          executor: { type: 'noop' },
          compensation: { action: 'rollback', executor: { type: 'http', url: 'https://x.example' } },
        },
        {
          id: 'b',
          action: 'notify',
          resource: { type: 'Channel', id: 'c' },
          executor: { type: 'http', url: 'https://x.example/hook' },
        },
        {
          id: 'c',
          action: 'deploy',
          resource: { type: 'Environment', id: 'dev' },
          executor: { type: 'activity', taskQueue: 'q', activityType: 't' },
        },
      ],
    });
    const withDefaults = applyDefaults(schema, clone(minimal), schema);
    expect(withDefaults).not.toEqual(minimal);
    expect(withDefaults).toEqual(GovernedChainInput.parse(minimal));
    expect(schemaOk(FILE, withDefaults)).toBe(true);
  });
});

describe('status, result and submitApproval schemas', () => {
  const decision = {
    effect: 'escalate',
    determiningPolicies: ['prod-deploy-escalate'],
    annotations: { 'prod-deploy-escalate': { roles: 'sre-lead' } },
    errors: [],
    reason: 'production deploys need two sre-leads',
    escalation: { roles: ['sre-lead'], quorum: 2, deadline: '30m', policies: ['prod-deploy-escalate'] },
    bundleDigest: 'b'.repeat(64),
    inputDigest: 'i'.repeat(64),
    evaluatedAt: '2030-01-01T00:00:00.000Z',
  };
  const verdict = {
    seq: 1,
    via: 'approve-signal',
    counted: true,
    reason: 'approved',
    approver: 'alice',
    roles: ['sre-lead'],
    decision: 'approve',
  };
  const approval = {
    stepId: 'deploy',
    stepDigest: 'd'.repeat(64),
    roles: ['sre-lead'],
    eligibleRoles: ['sre-lead'],
    quorum: 2,
    deadline: '30m',
    deadlineAt: '2030-01-01T00:30:00.000Z',
    approvedBy: [{ approver: 'alice', roles: ['sre-lead'] }],
    stillNeeded: 1,
    verdicts: [verdict],
    outcome: 'pending',
  };
  const state = {
    chainId: 'deploy-42',
    workload: 'agent:release-bot',
    status: 'AwaitingApproval',
    pending: 'approval of deploy by sre-lead',
    currentStep: 'deploy',
    pendingRoles: ['sre-lead'],
    steps: [
      {
        id: 'deploy',
        action: 'deploy',
        resource: 'Environment::"prod"',
        status: 'awaiting-approval',
        decision,
        approval,
        coordination: { domain: 'cluster:prod-eu', requestId: 'r1', status: 'granted', order: 1 },
      },
      {
        id: 'announce',
        action: 'notify',
        resource: 'Channel::"releases"',
        status: 'completed',
        outcome: { executor: 'noop', idempotencyKey: 'deploy-42/announce' },
      },
    ],
    receiptHead: { seq: 2, hash: 'h'.repeat(64) },
    policyDigest: 'b'.repeat(64),
  };
  const result = {
    chainId: 'deploy-42',
    status: 'Completed',
    steps: state.steps,
    receiptHead: state.receiptHead,
    checkpoint: 'a.b.c',
  };

  const cases: [string, z.ZodType, Json, [string, (d: Json) => void][]][] = [
    [
      'chain-state.schema.json',
      ChainState,
      state,
      [
        ['an unknown status', (d) => (d.status = 'Paused')],
        ['an undocumented field', (d) => (d.extra = 1)],
        ['no receipt head', (d) => delete d.receiptHead],
        ['an unknown step status', (d) => ((d.steps as Json[])[0]!.status = 'waiting')],
        ['an unknown approval outcome', (d) => (((d.steps as Json[])[0]!.approval as Json).outcome = 'maybe')],
      ],
    ],
    [
      'chain-result.schema.json',
      ChainResult,
      result,
      [
        ['no chain id', (d) => delete d.chainId],
        ['an unknown status', (d) => (d.status = 'Done')],
        ['a step without a status', (d) => delete (d.steps as Json[])[1]!.status],
      ],
    ],
    [
      'submit-approval-input.schema.json',
      ApprovalSubmission,
      { token: 'aGVhZGVy.cGF5bG9hZA.c2ln' },
      [
        ['a token that is not a compact JWS', (d) => (d.token = 'not-a-jwt')],
        ['a numeric token', (d) => (d.token = 42)],
        ['no token', (d) => delete d.token],
        ['an extra field', (d) => (d.approver = 'alice')],
      ],
    ],
    [
      'submit-approval-result.schema.json',
      SubmitApprovalResult,
      {
        verdict,
        approval: {
          ...approval,
          approvedBy: [...approval.approvedBy, { approver: 'carol', roles: ['sre-lead'] }],
          stillNeeded: 0,
          outcome: 'approved',
        },
      },
      [
        ['no verdict', (d) => delete d.verdict],
        ['a verdict from an unknown channel', (d) => ((d.verdict as Json).via = 'email')],
        ['a negative stillNeeded', (d) => ((d.approval as Json).stillNeeded = -1)],
      ],
    ],
  ];
  it.each(cases)(
    '%s: the sample passes, each broken copy fails, exactly as the zod schema says',
    (file, zod, sample, broken) => {
      expect(schemaOk(file, sample)).toBe(true);
      expect(zod.safeParse(sample).success).toBe(true);
      for (const [name, mutate] of broken) {
        const doc = clone(sample);
        mutate(doc);
        expect({ name, schema: schemaOk(file, doc), zod: zod.safeParse(doc).success }).toEqual({
          name,
          schema: false,
          zod: false,
        });
      }
    },
  );
});

describe('token claim schemas agree with identity/verify.ts', () => {
  const NOW = new Date('2030-01-01T00:00:00.000Z');
  const NOW_S = NOW.getTime() / 1000;
  let home: string;
  let manifest: Manifest;

  beforeAll(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-claims-'));
    await initKeys(home);
    manifest = Manifest.parse({
      version: 1,
      name: 'claims-test',
      trustedIssuers: [{ issuer: DEV_ISSUER, audience: GOVERNOR_AUDIENCE, jwks: { file: 'keys/issuer.jwks.json' } }],
      trustedAttesters: [{ issuer: DEV_ATTESTER, jwks: { file: 'keys/attester.jwks.json' } }],
      trustedApprovers: [{ issuer: DEV_APPROVER, jwks: { file: 'keys/approver.jwks.json' } }],
    });
  });
  afterAll(() => {
    clearVerifiedTokenCache();
    fs.rmSync(home, { recursive: true, force: true });
  });

  async function sign(keyName: string, typ: string, claims: Json): Promise<string> {
    const signer = await loadPrivateKey(home, keyName);
    return new SignJWT(claims).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ }).sign(signer.key);
  }
  const accepted = (p: Promise<unknown>): Promise<boolean> =>
    p.then(
      () => true,
      () => false,
    );
  const long = (n: number) => 'x'.repeat(n);
  type Case = [string, (c: Json) => void, boolean];

  const credential = (): Json => ({
    iss: DEV_ISSUER,
    sub: 'agent:release-bot',
    aud: GOVERNOR_AUDIENCE,
    iat: NOW_S,
    exp: NOW_S + 900,
    jti: 'cred-1',
  });
  const credentialCases: Case[] = [
    ['as issued', () => {}, true],
    ['aud as a list', (c) => (c.aud = ['other', GOVERNOR_AUDIENCE]), true],
    ['an extra claim', (c) => (c.spiffe = 'spiffe://x'), true],
    ['nbf in the past', (c) => (c.nbf = NOW_S - 10), true],
    ['a 1024-character sub', (c) => (c.sub = long(1024)), true],
    ['no sub', (c) => delete c.sub, false],
    ['an empty sub', (c) => (c.sub = ''), false],
    ['a 1025-character sub', (c) => (c.sub = long(1025)), false],
    ['a numeric sub', (c) => (c.sub = 7), false],
    ['no iat', (c) => delete c.iat, false],
    ['exp as a string', (c) => (c.exp = String(NOW_S + 900)), false],
    ['no aud', (c) => delete c.aud, false],
    ['a numeric aud', (c) => (c.aud = 5), false],
    ['an empty aud list', (c) => (c.aud = []), false],
    ['a numeric jti', (c) => (c.jti = 42), false],
    ['no iss', (c) => delete c.iss, false],
  ];
  it.each(credentialCases)('credential %s: schema and verifyCredential agree', async (_name, mutate, ok) => {
    const claims = credential();
    mutate(claims);
    expect(schemaOk('credential-claims.schema.json', claims)).toBe(ok);
    expect(CredentialClaims.safeParse(claims).success).toBe(ok);
    expect(
      await accepted(verifyCredential(await sign('issuer', CREDENTIAL_TYP, claims), manifest, { now: NOW, home })),
    ).toBe(ok);
  });

  it('credential without jti: verifyCredential alone accepts it, the schema does not (authorize denies it under the default jtiReplay: bind-to-chain)', async () => {
    const claims = credential();
    delete claims.jti;
    expect(schemaOk('credential-claims.schema.json', claims)).toBe(false);
    expect(
      await accepted(verifyCredential(await sign('issuer', CREDENTIAL_TYP, claims), manifest, { now: NOW, home })),
    ).toBe(true);
    expect(manifest.credential.jtiReplay).toBe('bind-to-chain');
  });

  const attestation = (): Json => ({
    iss: DEV_ATTESTER,
    sub: 'agent:release-bot',
    iat: NOW_S,
    exp: NOW_S + 900,
    imageDigest: devImageDigest('agent:release-bot'),
    trustZone: 'trusted',
    environment: 'prod',
  });
  const attestationCases: Case[] = [
    ['as issued', () => {}, true],
    ['without exp', (c) => delete c.exp, true],
    ['an extra claim', (c) => (c.region = 'eu'), true],
    ['an image tag instead of a digest', (c) => (c.imageDigest = 'web:1.4.2'), false],
    ['a short digest', (c) => (c.imageDigest = 'sha256:abc'), false],
    ['an empty trustZone', (c) => (c.trustZone = ''), false],
    ['no environment', (c) => delete c.environment, false],
    ['no imageDigest', (c) => delete c.imageDigest, false],
    ['exp as a string', (c) => (c.exp = 'tomorrow'), false],
    ['a numeric trustZone', (c) => (c.trustZone = 1), false],
  ];
  it.each(attestationCases)('attestation %s: schema and verifyAttestation agree', async (_name, mutate, ok) => {
    const claims = attestation();
    mutate(claims);
    expect(schemaOk('attestation-claims.schema.json', claims)).toBe(ok);
    expect(AttestationClaims.safeParse(claims).success).toBe(ok);
    expect(
      await accepted(
        verifyAttestation(await sign('attester', ATTESTATION_TYP, claims), manifest, {
          now: NOW,
          home,
          expectedSubject: 'agent:release-bot',
        }),
      ),
    ).toBe(ok);
  });

  const vote = (): Json => ({
    iss: DEV_APPROVER,
    sub: 'alice',
    aud: APPROVAL_AUDIENCE,
    iat: NOW_S,
    exp: NOW_S + 900,
    jti: 'vote-1',
    roles: ['sre-lead'],
    chainId: 'deploy-42',
    stepId: 'deploy',
    stepDigest: 'd'.repeat(64),
    decision: 'approve',
  });
  const approvalCases: Case[] = [
    ['as issued', () => {}, true],
    ['a deny with a reason', (c) => Object.assign(c, { decision: 'deny', reason: 'change freeze' }), true],
    ['an empty reason', (c) => (c.reason = ''), true],
    ['a 1000-character justification', (c) => (c.justification = long(1000)), true],
    [
      '32 roles of 64 characters',
      (c) => (c.roles = Array.from({ length: 32 }, (_, i) => `${i}`.padEnd(64, 'r'))),
      true,
    ],
    ['a 1001-character reason', (c) => (c.reason = long(1001)), false],
    ['a numeric justification', (c) => (c.justification = 1), false],
    ['no roles', (c) => (c.roles = []), false],
    ['33 roles', (c) => (c.roles = Array.from({ length: 33 }, (_, i) => `r${i}`)), false],
    ['an empty role', (c) => (c.roles = ['sre-lead', '']), false],
    ['a 65-character role', (c) => (c.roles = [long(65)]), false],
    ['roles as a string', (c) => (c.roles = 'sre-lead'), false],
    ['decision "maybe"', (c) => (c.decision = 'maybe'), false],
    ['no decision', (c) => delete c.decision, false],
    ['no jti', (c) => delete c.jti, false],
    ['an empty chainId', (c) => (c.chainId = ''), false],
    ['no stepDigest', (c) => delete c.stepDigest, false],
    ['no aud', (c) => delete c.aud, false],
    ['no exp', (c) => delete c.exp, false],
  ];
  it.each(approvalCases)('approval %s: schema and verifyApproval agree', async (_name, mutate, ok) => {
    const claims = vote();
    mutate(claims);
    expect(schemaOk('approval-claims.schema.json', claims)).toBe(ok);
    expect(ApprovalClaims.safeParse(claims).success).toBe(ok);
    expect(
      await accepted(verifyApproval(await sign('approver', APPROVAL_TYP, claims), manifest, { now: NOW, home })),
    ).toBe(ok);
  });

  it('what no schema can check (signer, audience, clock) is refused by verify and named in the descriptions', async () => {
    const beyond: [string, string, Json, () => Promise<unknown>][] = [
      [
        'credential-claims.schema.json',
        'audience',
        { ...credential(), aud: 'someone-else' },
        async () =>
          verifyCredential(await sign('issuer', CREDENTIAL_TYP, { ...credential(), aud: 'someone-else' }), manifest, {
            now: NOW,
            home,
          }),
      ],
      [
        'credential-claims.schema.json',
        'expired',
        { ...credential(), exp: NOW_S - 60 },
        async () =>
          verifyCredential(await sign('issuer', CREDENTIAL_TYP, { ...credential(), exp: NOW_S - 60 }), manifest, {
            now: NOW,
            home,
          }),
      ],
      [
        'credential-claims.schema.json',
        'trusted issuer',
        { ...credential(), iss: 'https://elsewhere' },
        async () =>
          verifyCredential(
            await sign('issuer', CREDENTIAL_TYP, { ...credential(), iss: 'https://elsewhere' }),
            manifest,
            { now: NOW, home },
          ),
      ],
      [
        'attestation-claims.schema.json',
        'maxAge',
        { ...attestation(), iat: NOW_S - 3600 },
        async () =>
          verifyAttestation(
            await sign('attester', ATTESTATION_TYP, { ...attestation(), iat: NOW_S - 3600, exp: NOW_S + 60 }),
            manifest,
            { now: NOW, home, expectedSubject: 'agent:release-bot' },
          ),
      ],
      [
        'approval-claims.schema.json',
        'typ',
        vote(),
        async () => verifyApproval(await sign('approver', CREDENTIAL_TYP, vote()), manifest, { now: NOW, home }),
      ],
    ];
    for (const [file, rule, claims, verify] of beyond) {
      expect({ file, rule, schema: schemaOk(file, claims), verified: await accepted(verify()) }).toEqual({
        file,
        rule,
        schema: true,
        verified: false,
      });
      expect(String(publishedJsonSchema(PUBLISHED_SCHEMAS.find((p) => p.file === file)!).description)).toContain(rule);
    }
  });

  it('the dev issuer issues claims that satisfy the schemas', async () => {
    const payload = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Json;
    expect(
      schemaOk('credential-claims.schema.json', payload(await issueCredential({ home, sub: 'agent:release-bot' }))),
    ).toBe(true);
    expect(
      schemaOk('attestation-claims.schema.json', payload(await issueAttestation({ home, sub: 'agent:release-bot' }))),
    ).toBe(true);
    const token = await issueApproval({
      home,
      sub: 'alice',
      roles: ['sre-lead'],
      chainId: 'c',
      stepId: 's',
      stepDigest: 'd',
      decision: 'approve',
      reason: 'ok',
    });
    expect(schemaOk('approval-claims.schema.json', payload(token))).toBe(true);
    expect(schemaOk('submit-approval-input.schema.json', { token })).toBe(true);
  });
});

/** Fills in JSON Schema `default`s the way the workflow's parse does (the matching `oneOf` branch by its `type` const). */
function applyDefaults(schema: Json, value: unknown, rootSchema: Json): unknown {
  if (typeof schema.$ref === 'string') return applyDefaults(resolveRef(rootSchema, schema.$ref), value, rootSchema);
  if (Array.isArray(schema.oneOf) && typeof value === 'object' && value !== null) {
    const branch = (schema.oneOf as Json[]).find(
      (b) =>
        ((b.properties as Record<string, Json> | undefined)?.type?.const ?? Symbol('none')) === (value as Json).type,
    );
    return branch ? applyDefaults(branch, value, rootSchema) : value;
  }
  if (Array.isArray(value) && schema.items) return value.map((v) => applyDefaults(schema.items as Json, v, rootSchema));
  if (typeof value === 'object' && value !== null && schema.properties) {
    const o = value as Json;
    for (const [key, sub] of Object.entries(schema.properties as Record<string, Json>)) {
      if (o[key] === undefined && 'default' in sub) o[key] = structuredClone(sub.default);
      if (o[key] !== undefined) o[key] = applyDefaults(sub, o[key], rootSchema);
    }
  }
  return value;
}

function resolveRef(rootSchema: Json, ref: string): Json {
  return ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<Json>((node, key) => node[key] as Json, rootSchema);
}
