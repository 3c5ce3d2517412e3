import type * as Cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { BundlePolicy } from '../policies/bundle';
import cedar from '../policies/cedar';

/**
 * Which actions policy can never allow, decided cheaply and soundly from the bundle's text: Cedar denies
 * by default, so an action that no `permit` could apply to is never allowed. A permit applies unless its
 * action scope names other actions only (`action == A`, `action in [A, B]`); no action scope, or a
 * scope `in` anything when the schema declares action groups, counts as "might apply". The converse is not decided: an action some permit names
 * may still be denied always (by a forbid, or a condition never true); it gets no note.
 */

const uid = (e: Cedar.EntityUidJson): Cedar.TypeAndId => ('__entity' in e ? e.__entity : e);
const isAction = (e: Cedar.EntityUidJson, action: string): boolean =>
  /(^|::)Action$/.test(uid(e).type) && uid(e).id === action;

/** True when the schema may put actions in groups (`action a in [g]`): then `in` scopes are not read exactly. */
function hasActionGroups(schema: string): boolean {
  const code = schema.replace(/\/\/[^\n]*/g, '');
  return /\baction\b[^;{]*\bin\b/.test(code);
}

/** `(action) => true` when no permit of the bundle could ever apply to that action. */
export function neverAllowedActions(bundle: {
  policies: readonly BundlePolicy[];
  schema: string;
}): (action: string) => boolean {
  const { policies } = bundle;
  const groups = hasActionGroups(bundle.schema);
  const scopes: Cedar.ActionConstraint[] = [];
  let undecidable = false;
  for (const policy of policies) {
    if (policy.effect !== 'permit') continue;
    const parsed = cedar.policyToJson(policy.text);
    if (parsed.type !== 'success') {
      undecidable = true; // cannot read it: claim nothing
      continue;
    }
    scopes.push(parsed.json.action);
  }
  return (action: string): boolean => {
    if (undecidable) return false;
    return !scopes.some((scope) => {
      if (scope.op === 'All') return true;
      if (scope.op === '==') return 'slot' in scope || isAction(scope.entity, action);
      const entities = 'entity' in scope ? [scope.entity] : scope.entities;
      // `in [A, B]`: with action groups in the schema, any entity might be a group holding this action.
      return groups || entities.some((e) => isAction(e, action));
    });
  };
}

/** The note appended to the description of a tool the governor will always refuse. */
export function governorNote(reason: string): string {
  return `[Temporal Governor: ${reason}]`;
}
