import { jwsHeader, jwsPayload, notAnApprovalVote } from '../../core/jws-header';

const b64u = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const token = (header: unknown) => `${b64u(header)}.${b64u({ sub: 'x' })}.c2ln`;

describe('jwsHeader (sandbox-safe, what the submitApproval validator reads)', () => {
  it('decodes what Buffer encodes, UTF-8 included', () => {
    const header = { alg: 'EdDSA', kid: 'k-ü-€-𝄞', typ: 'approval+jwt' };
    expect(jwsHeader(token(header))).toEqual(header);
  });

  it.each([
    ['not base64url', '!!!.e30.c2ln'],
    ['not JSON', `${b64u('not json')}.e30.c2ln`],
    ['a JSON array', token([1, 2])],
    ['a JSON string', token('"JWT"')],
    ['invalid UTF-8', `${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}.e30.c2ln`],
    ['no segment', '.e30.c2ln'],
  ])('gives undefined for %s', (_name, t) => {
    expect(jwsHeader(t)).toBeUndefined();
  });
});

describe('notAnApprovalVote', () => {
  it('accepts the approval media types, case-insensitively', () => {
    for (const typ of ['approval+jwt', 'application/approval+jwt', 'Approval+JWT']) {
      expect(notAnApprovalVote(token({ alg: 'EdDSA', typ }))).toBeUndefined();
    }
  });

  it('names a workload credential, an attestation, a missing typ and an unreadable header', () => {
    expect(notAnApprovalVote(token({ alg: 'EdDSA', typ: 'JWT' }))).toMatch(
      /^token: not an approval vote: its header has typ "jwt" \(a workload credential\?\), a vote has typ "approval\+jwt"; issue one with `governor approve/,
    );
    expect(notAnApprovalVote(token({ alg: 'EdDSA', typ: 'attestation+jwt' }))).toMatch(
      /typ "attestation\+jwt", a vote/,
    );
    expect(notAnApprovalVote(token({ alg: 'EdDSA' }))).toMatch(/its header has no typ \(a workload credential\?\)/);
    expect(notAnApprovalVote('@@@.e30.c2ln')).toBe('token: not an approval vote (its header is not base64url JSON)');
  });
});

describe('jwsPayload (the session validator reads the unverified sub)', () => {
  it('decodes the claims, UTF-8 included, and nothing that is not a JSON object', () => {
    expect(jwsPayload(`${b64u({ alg: 'EdDSA' })}.${b64u({ sub: 'agent:bøt-€' })}.c2ln`)).toEqual({
      sub: 'agent:bøt-€',
    });
    expect(jwsPayload(`${b64u({ alg: 'EdDSA' })}.${b64u('[1]')}.c2ln`)).toBeUndefined();
    expect(jwsPayload('e30')).toBeUndefined();
    expect(jwsPayload(`e30.${'A'.repeat(16_385)}.c2ln`)).toBeUndefined();
  });
});
