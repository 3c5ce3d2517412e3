/**
 * Reads the protected header (and claims) of a compact JWS without verifying it: sandbox-safe (no Buffer, atob or
 * TextDecoder), so the workflow's update validator can refuse a token of the wrong kind before it
 * reaches history. Never a basis for trust: the signature is verified by an activity.
 */

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The media types (`typ`) an approval vote may carry (RFC 8725 §3.11 explicit typing). */
export const APPROVAL_TOKEN_TYPES: readonly string[] = ['approval+jwt', 'application/approval+jwt'];

/** The decoded protected header, or undefined when the first segment is not base64url JSON of an object. */
export function jwsHeader(token: string): Record<string, unknown> | undefined {
  return jsonSegment(token.split('.', 1)[0] ?? '', 4096);
}

/** The decoded payload (claims), unverified, or undefined when the second segment is not base64url JSON of an object. */
export function jwsPayload(token: string): Record<string, unknown> | undefined {
  return jsonSegment(token.split('.', 2)[1] ?? '', 16_384);
}

function jsonSegment(segment: string, maxLength: number): Record<string, unknown> | undefined {
  if (!segment || segment.length > maxLength) return undefined;
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of segment) {
    const n = BASE64URL.indexOf(c);
    if (n < 0) return undefined;
    value = (value << 6) | n;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >> bits) & 0xff);
    }
  }
  try {
    // Percent-encoding the bytes lets decodeURIComponent do strict UTF-8 decoding (it throws on invalid input).
    const text = decodeURIComponent(bytes.map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''));
    const json: unknown = JSON.parse(text);
    return json && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Why `token` cannot be an approval vote (its header's `typ`), or undefined when its header says it is one. */
export function notAnApprovalVote(token: string): string | undefined {
  const header = jwsHeader(token);
  if (!header) return 'token: not an approval vote (its header is not base64url JSON)';
  const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : undefined;
  if (typ !== undefined && APPROVAL_TOKEN_TYPES.includes(typ)) return undefined;
  const shown = typ === undefined ? 'no typ' : `typ ${JSON.stringify(typ.slice(0, 40))}`;
  const hint = typ === undefined || ['jwt', 'jose', 'application/jwt'].includes(typ) ? ' (a workload credential?)' : '';
  return (
    `token: not an approval vote: its header has ${shown}${hint}, a vote has typ "approval+jwt"; ` +
    'issue one with `governor approve <chainId> --as <you> --roles <r> --print-token`'
  );
}
