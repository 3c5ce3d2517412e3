/* Small helpers of the verifier: untrusted values are snapshotted and read through guard clauses. */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** An error message on one line, at most 300 characters (messages come from parsers fed untrusted input). */
export function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** A digest shortened for a report line. */
export function short(digest: string): string {
  return digest.length > 12 ? `${digest.slice(0, 12)}…` : digest || '(none)';
}
