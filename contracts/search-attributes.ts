import { defineSearchAttributeKey } from '@temporalio/common';

/**
 * Custom search attributes (DESIGN §5). The names are recorded in Temporal's visibility store and in
 * history: never rename them.
 */
export const GovernorStatusKey = defineSearchAttributeKey('GovernorStatus', 'KEYWORD');
export const GovernorWorkloadKey = defineSearchAttributeKey('GovernorWorkload', 'KEYWORD');
export const GovernorPendingRolesKey = defineSearchAttributeKey('GovernorPendingRoles', 'KEYWORD_LIST');
export const GovernorPolicyDigestKey = defineSearchAttributeKey('GovernorPolicyDigest', 'KEYWORD');
/** Set when a break-glass approval let a step through: such chains are reviewed after the fact. */
export const GovernorBreakGlassKey = defineSearchAttributeKey('GovernorBreakGlass', 'BOOL');
/** Set when a shadow (candidate) bundle decided differently from the enforced one for some step. */
export const GovernorShadowDiffersKey = defineSearchAttributeKey('GovernorShadowDiffers', 'BOOL');

/** name → Temporal CLI type, as passed to `temporal server start-dev --search-attribute`. */
export const SEARCH_ATTRIBUTES_FOR_CLI: Readonly<Record<string, 'Keyword' | 'KeywordList' | 'Bool'>> = {
  GovernorStatus: 'Keyword',
  GovernorWorkload: 'Keyword',
  GovernorPendingRoles: 'KeywordList',
  GovernorPolicyDigest: 'Keyword',
  GovernorBreakGlass: 'Bool',
  GovernorShadowDiffers: 'Bool',
};
