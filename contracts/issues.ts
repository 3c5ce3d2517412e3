/**
 * One way to name what is wrong with an input, for every workflow, handler and client. Sandbox-safe
 * (no imports): the workflows use it to word `GOVERNOR_INVALID_INPUT` failures.
 *
 * A path is written as code would reach the field: dots before keys, `[i]` for array indexes
 * (`carry.queue[0].requestId`, `chain.steps[2].resource`). Messages are zod's (or our schemas'),
 * which describe the expected shape and never echo the value given, so a secret sent in the wrong
 * field does not reach an error message or a log.
 */

/** What a zod issue (v3 or v4) has that we use. */
export interface InputIssue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** At most this many issues are listed; the rest are counted. */
export const MAX_LISTED_ISSUES = 10;

/**
 * The field path of `issue`: `prefix` (when given) then its keys and indexes, e.g.
 * `state.queue[0].requestId`. An issue about the whole value is named by `prefix`, or `(root)`.
 */
export function formatIssuePath(issue: Pick<InputIssue, 'path'>, prefix?: string): string {
  let out = prefix ?? '';
  for (const key of issue.path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(root)' : out;
}

/**
 * `path: message` for each issue, joined by "; " (at most {@link MAX_LISTED_ISSUES}, then how many
 * more), e.g. `carry.queue[0].requestId: Invalid input: expected string, received number`.
 */
export function invalidInputMessage(error: { readonly issues: readonly InputIssue[] }, prefix?: string): string {
  const listed = error.issues
    .slice(0, MAX_LISTED_ISSUES)
    .map((issue) => `${formatIssuePath(issue, prefix)}: ${issue.message}`);
  const more = error.issues.length - listed.length;
  if (more > 0) listed.push(`and ${more} more issue(s)`);
  return listed.length > 0 ? listed.join('; ') : `${prefix ?? '(root)'}: invalid`;
}

/** Key of the value an undecodable payload decodes to in the governor's workers (`runtime/payload-converter.ts`). */
export const UNDECODABLE_PAYLOAD = '__undecodablePayload';
