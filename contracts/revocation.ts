import { z } from 'zod';

/** Workload revocations, kept by one registry workflow per governor task queue. Sandbox-safe. */

/** Workflow type of the revocation registry. Recorded: never rename. */
export const REVOCATION_REGISTRY_TYPE = 'revocationRegistryWorkflow';

/**
 * Workflow id of the revocation registry of the governor deployment serving `taskQueue` (every
 * worker of a deployment polls the same queue, so they share one list).
 */
export function revocationRegistryId(taskQueue: string): string {
  return `governor-revocations:${taskQueue}`;
}

/**
 * Workflow id of the namespace-wide revocation registry (DESIGN §11): one list for every governor task
 * queue of the namespace, run on the control task queue (`GOVERNOR_CONTROL_TASK_QUEUE`, default
 * `governor-control`: id `governor-revocations`; another control queue is another fleet, id
 * `governor-revocations@<queue>`). The per-queue registries (`revocationRegistryId`) came before it;
 * workers carry their revocations over.
 */
export function namespaceRevocationRegistryId(controlTaskQueue: string = 'governor-control'): string {
  return controlTaskQueue === 'governor-control' ? 'governor-revocations' : `governor-revocations@${controlTaskQueue}`;
}

/**
 * Name of a registry's log: `<namespace>/<registry workflow id>`. Entries carry it, so an entry of
 * another registry (another queue, or the same queue in another namespace) never verifies here.
 */
export function revocationLogName(namespace: string, registryWorkflowId: string): string {
  return `${namespace}/${registryWorkflowId}`;
}

export { SIGNED_REVOCATIONS_PATCH } from './patches';

/** `typ` of a revocation entry's JWS: no receipt or other governor signature can pass for one. */
export const REVOCATION_TYP = 'governor-revocation+jws';

const Hash = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex characters');

/** Input of a workload revocation (the `revokeWorkload` update), validated by the client and again inside the registry. */
export const RevokeWorkloadInput = z.strictObject({
  workload: z.string().min(1).max(128),
  reason: z.string().min(1).max(500),
  by: z.string().min(1).max(200).optional(),
});
export type RevokeWorkloadInput = z.infer<typeof RevokeWorkloadInput>;

/**
 * One revoked workload in the registry's list. Entries written before signed lists (legacy) carry
 * only `workload`, `reason`, `by` and `seq`.
 */
export interface Revocation extends RevokeWorkloadInput {
  /** Position in the registry's log (1 for the first revocation). */
  seq: number;
}

/** The signed part of a revocation entry: what `hash` covers. */
export const RevocationBody = z.strictObject({
  v: z.literal(1),
  /** The log the entry belongs to (`revocationLogName`): an entry of another registry never verifies here. */
  registry: z.string().min(1).max(600),
  seq: z.int().min(1),
  workload: z.string().min(1).max(128),
  reason: z.string().min(1).max(500),
  by: z.string().min(1).max(200).optional(),
  /** When the governor signed it (ISO-8601, the signing activity's clock). */
  at: z.string().min(1).max(40),
  /** Hash of the previous entry (`GENESIS_HASH` for the first): the log is a hash chain, append-only. */
  prevHash: Hash,
});
export type RevocationBody = z.infer<typeof RevocationBody>;

/** A signed revocation entry: the body, its SHA-256 over canonical JSON, and an EdDSA JWS (receipt key, `typ` {@link REVOCATION_TYP}) over that hash. */
export const SignedRevocation = RevocationBody.extend({
  hash: Hash,
  signature: z.string().min(1).max(2000),
});
export type SignedRevocation = z.infer<typeof SignedRevocation>;

/**
 * Which revocation list a decision saw: the log's name (`revocationLogName`), the number of entries
 * and the hash of the last one (`GENESIS_HASH` when empty). Recorded in the decision and its receipt.
 */
export const RevocationListRef = z.strictObject({ registry: z.string(), seq: z.int().min(0), head: Hash });
export type RevocationListRef = z.infer<typeof RevocationListRef>;

/**
 * The registry's state as returned by `revokeWorkload` and the `revocations` query: revoked
 * workloads by subject (signed entries in a signed registry), and the list's head.
 */
export interface RevocationList {
  revoked: Record<string, Revocation | SignedRevocation>;
  /** Entries in the log (signed registries only). */
  seq?: number;
  /** Hash of the last entry (signed registries only). */
  head?: string;
}

/** Memo key of the registry's list state (`RevocationListState`); the entries are under `revoked`. */
export const REVOCATION_STATE_MEMO = 'revocationList';

/**
 * The registry's published state (memo {@link REVOCATION_STATE_MEMO}). `recovering` until the run has
 * rebuilt its list from every earlier source; `authorize` denies until it reads `ready`.
 */
export const RevocationListState = z.strictObject({
  v: z.literal(1),
  registry: z.string(),
  state: z.enum(['recovering', 'ready']),
  seq: z.int().min(0),
  head: Hash,
});
export type RevocationListState = z.infer<typeof RevocationListState>;

/** Input a signed registry run receives: the log its previous run carried across continue-as-new. */
export const SignedRegistryInput = z.strictObject({ v: z.literal(1), entries: z.array(SignedRevocation).max(100_000) });
export type SignedRegistryInput = z.infer<typeof SignedRegistryInput>;

/** Input a registry written before signed lists carried across continue-as-new. */
export const LegacyRegistryInput = z.strictObject({
  revoked: z.record(
    z.string(),
    z.object({
      workload: z.string().min(1).max(128),
      reason: z.string().min(1).max(500),
      by: z.string().max(200).optional(),
      seq: z.number(),
    }),
  ),
});
export type LegacyRegistryInput = z.infer<typeof LegacyRegistryInput>;

/** What the registry accepts as its first argument: nothing, a signed log, or (once, when migrating) a legacy list. */
export type RegistryInput = SignedRegistryInput | LegacyRegistryInput | undefined;

/** Parses the registry's argument; an object with `revoked` is a legacy list, anything else must be a signed log (errors name the field). */
export function parseRegistryInput(
  raw: unknown,
):
  | ReturnType<typeof SignedRegistryInput.safeParse>
  | ReturnType<typeof LegacyRegistryInput.safeParse>
  | { success: true; data: undefined } {
  if (raw === undefined || raw === null) return { success: true, data: undefined };
  if (typeof raw === 'object' && 'revoked' in raw) return LegacyRegistryInput.safeParse(raw);
  return SignedRegistryInput.safeParse(raw);
}

/** Input of the `recoverRevocations` activity (run at the start of every signed registry run). */
export interface RecoverRevocationsInput {
  /** The log's name (`revocationLogName`). */
  registry: string;
  /** The registry's workflow id (its earlier runs are read). */
  workflowId: string;
  /** The registry's run doing the recovery (excluded from the previous runs it reads). */
  runId: string;
  /** The log carried by the previous run (continue-as-new); every entry is verified like any other. */
  carried?: SignedRevocation[];
  /**
   * Unsigned revocations carried from a legacy registry run: only passed when this run continued as
   * new from one (the server says so, the starter cannot), so they are signed into the log.
   */
  legacy?: RevokeWorkloadInput[];
}

/** Result of `recoverRevocations`: the log the run starts from, and what the recovery found. */
export interface RecoverRevocationsResult {
  entries: SignedRevocation[];
  /** Entries that did not verify (forged, of another registry, malformed), by source. Never accepted. */
  rejected: number;
  /** Revocations found outside the longest chain (another branch, a legacy list), signed anew at its end. */
  restored: number;
  /** Where entries came from: `carried`, `run <runId>`, `file`. */
  sources: string[];
}

/** Input of the `signRevocation` activity: the next entry of the log (everything but `v`, `at`, `hash`, `signature`). */
export const SignRevocationInput = RevocationBody.omit({ v: true, at: true });
export type SignRevocationInput = z.infer<typeof SignRevocationInput>;

/** Signal asking a registry started before signed lists to continue as new (and so become a signed one). No argument. Recorded: never rename. */
export const MIGRATE_REVOCATIONS_SIGNAL = 'migrateRevocationRegistry';
