import type { Client } from '@temporalio/client';
import { canonicalJson, sha256Hex } from '../../core/canonical';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { GovernedSessionInput, NULL_OUTPUT_DIGEST, ProposeOutcome } from '../../contracts/session';
import { requestContext } from '../../policies/context';
import { Manifest } from '../../policies/manifest';
import { GovernorClient } from '../../sdk/client';

/*
 * Agent sessions without a server: the SDK refuses bad input before sending anything, the session
 * summary reaches policy only for session steps, and the contracts' constants are what they claim.
 */

/** A client whose every call to the server fails the test: nothing may be sent. */
const offline = new GovernorClient(
  new Proxy({} as Client, {
    get() {
      throw new Error('the SDK tried to reach the server');
    },
  }),
);

const step = { id: 'a', action: 'fs.read', resource: { type: 'File', id: 'notes' }, executor: { type: 'noop' } };
const tokens = { credential: 'h.e.s', attestation: 'h.e.s' };

async function refused(p: Promise<unknown>): Promise<GovernorError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GovernorError);
  expect((err as GovernorError).code).toBe(ErrorCode.InvalidInput);
  return err as GovernorError;
}

describe('GovernorClient sessions refuse bad input before sending', () => {
  it.each([
    ['no credential', { workload: 'agent:x', attestation: 'h.e.s' }, 'credential'],
    ['a bad workload', { workload: 'not valid!', ...tokens }, 'workload'],
    ['duplicate declared ids', { workload: 'agent:x', steps: [step, step], ...tokens }, 'steps[1].id'],
    [
      'a declared context.session',
      { workload: 'agent:x', steps: [{ ...step, context: { session: {} } }], ...tokens },
      'steps[0].context.session',
    ],
  ])('openSession with %s', async (_what, options, field) => {
    const err = await refused(offline.openSession(options as never));
    expect(err.field).toBe(field);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
  });

  it.each([
    ['no credential', { step }, 'credential'],
    ['no resource', { step: { ...step, resource: undefined }, credential: 'h.e.s' }, 'step.resource'],
    [
      'an unknown executor',
      { step: { ...step, executor: { type: 'shell' } }, credential: 'h.e.s' },
      'step.executor.type',
    ],
    [
      'its own context.session',
      { step: { ...step, context: { session: 1 } }, credential: 'h.e.s' },
      'step.context.session',
    ],
    [
      'an oversize input',
      { step: { ...step, input: { blob: 'x'.repeat(300_000) } }, credential: 'h.e.s' },
      'step.input.blob',
    ],
  ])('proposeStep with %s', async (_what, proposal, field) => {
    const err = await refused(offline.proposeStep('s', proposal as never));
    expect(err.field).toBe(field);
  });

  it('awaitStep and closeSession', async () => {
    expect((await refused(offline.awaitStep('s', '', { credential: 'h.e.s' }))).field).toBe('stepId');
    expect((await refused(offline.awaitStep('s', 'a', {} as never))).field).toBe('credential');
    expect((await refused(offline.closeSession('s', { reason: 'x'.repeat(501) }))).field).toBe('reason');
  });
});

describe('session contracts', () => {
  it('the output digest of no output is the digest of canonical null', () => {
    expect(NULL_OUTPUT_DIGEST).toBe(sha256Hex(canonicalJson(null)));
  });

  it('a session may open with no step; the outcome schema keeps to its four shapes', () => {
    const input = GovernedSessionInput.parse({ chainId: 's', chain: { workload: 'agent:x' }, ...tokens });
    expect(input.chain.steps).toEqual([]);
    expect(ProposeOutcome.safeParse({ outcome: 'executed', stepId: 'a' }).success).toBe(false);
    expect(ProposeOutcome.safeParse({ outcome: 'maybe', stepId: 'a' }).success).toBe(false);
  });

  it('the manifest session section has defaults and limits', () => {
    const base = {
      version: 1,
      name: 't',
      trustedIssuers: [{ issuer: 'i', audience: 'a', jwks: { keys: [] } }],
      trustedAttesters: [{ issuer: 'i', jwks: { keys: [] } }],
    };
    expect(Manifest.parse(base).session).toEqual({ idleTimeout: '30m', maxOutputBytes: 65_536 });
    expect(Manifest.safeParse({ ...base, session: { idleTimeout: 'soon' } }).success).toBe(false);
    expect(Manifest.safeParse({ ...base, session: { maxOutputBytes: -1 } }).success).toBe(false);
  });
});

describe('context.session reaches policy only for session steps', () => {
  const attestation = { imageDigest: 'sha256:x', trustZone: 'trusted', environment: 'dev' };

  it('a declared chain step keeps its own context unchanged (no summary)', () => {
    expect(requestContext({ session: 'own', a: 1 }, attestation)).toEqual({ session: 'own', a: 1, attestation });
  });

  it("a session step's own session key is replaced by the governor's summary", () => {
    const summary = { steps: 2, actions: { 'fs.delete': 2 } };
    expect(requestContext({ session: { steps: 0 }, a: 1 }, attestation, undefined, summary)).toEqual({
      a: 1,
      attestation,
      session: summary,
    });
  });
});
