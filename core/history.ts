/*
 * Names the governor's workflows record in Temporal history, as `governor verify` and `policy diff`
 * read them back. Recorded in history: never renamed (the worker registers the same names:
 * activities/index.ts, contracts/*). Sandbox-safe.
 */

/** Marker name of local activity results written by Temporal's Core SDK (TypeScript, Python, .NET, Ruby). */
export const LOCAL_ACTIVITY_MARKER = 'core_local_activity';
/** Marker the SDK records for `patched()` (Core SDK format). */
export const PATCH_MARKER = 'core_patch';

/** The governor's activity types. */
export const Activity = {
  /** Re-verifies identity and evaluates policy (a local activity). */
  authorize: 'authorize',
  /** Checks one approval vote (a local activity). */
  verifyApproval: 'verifyApproval',
  /** Signs a receipt of the chain (a local activity). */
  recordReceipt: 'recordReceipt',
  /** Runs a built-in executor. */
  execute: 'execute',
  /** Decision and built-in execution in one activity: its result holds an `authorize` result and maybe an `execute` one. */
  governStep: 'governStep',
  /** Asks a domain's coordinator for a slot. */
  requestSlot: 'requestSlot',
} as const;

/** The governor's local activities (results recorded as `LOCAL_ACTIVITY_MARKER` markers). */
export const GOVERNOR_LOCAL_ACTIVITIES: readonly string[] = [Activity.authorize, Activity.verifyApproval, Activity.recordReceipt];

/** Signal a domain's coordinator sends a chain with its slot verdict. */
export const SLOT_VERDICT_SIGNAL = 'slotVerdict';
