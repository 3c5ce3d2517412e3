/**
 * Patch ids of the governor's workflows. Each is recorded in history as a marker when a run takes
 * the patched path, and `governor verify` reads them to know which behaviour a run followed: never
 * rename one. Sandbox-safe.
 */

/** `governedChainWorkflow`: built-in steps decided and run in one activity (`governStep`). */
export const GOVERN_STEP_PATCH = 'govern-step-in-one-activity';

/**
 * `governedChainWorkflow`'s trust-boundary behaviour: the workflow parses its own input with the chain
 * schema (defaults applied, `resume` only from its own signed continue-as-new), upserts
 * `GovernorWorkload`, records a verdict for every malformed vote, answers `submitApproval` after the
 * vote's consequences are decided, fails closed when a coordination request or its receipt fails, and
 * orders compensations on coordinated resources through the coordinator.
 */
export const VALIDATED_INPUT_PATCH = 'validated-input';

/**
 * `coordinatorWorkflow`: input and messages validated in the sandbox; grant times and open ties carried
 * across continue-as-new (holders and ties time out on schedule); verdicts carry their signed receipt.
 */
export const COORDINATOR_VALIDATION_PATCH = 'coordinator-validated-input-carried-deadlines';

/** `revocationRegistryWorkflow`: a signed, append-only revocation log recovered by every run. */
export const SIGNED_REVOCATIONS_PATCH = 'revocation-registry-signed-log';

/**
 * `governedChainWorkflow`: when the re-authorization after an approval finds only the attestation
 * outdated (stale or expired while people decided), the chain waits in `AwaitingAttestation` up to the
 * grace period for a fresh one (`refreshCredential`) instead of denying at once.
 */
export const AWAIT_FRESH_ATTESTATION_PATCH = 'await-fresh-attestation';

/**
 * `governedChainWorkflow` doing less per chain (issue 15, performance): when the chain's last step runs
 * outright in `governStep`, that activity also signs the chain's final checkpoint (no separate
 * `recordReceipt` local activity after the loop); search attributes set in the same workflow task are
 * upserted in one command, and at start only those the run does not already carry; continue-as-new
 * carries the step states packed (`resume.packedSteps`), and the chain's result leaves out what every
 * step repeats.
 */
export const LEAN_CHAIN_PATCH = 'lean-chain-folded-checkpoint';

/**
 * `governedChainWorkflow`: a declared step whose id ends in `.compensation` (the governed id of a step's
 * compensation, so its idempotency key would make the real compensation a duplicate) is refused at input.
 */
export const RESERVED_COMPENSATION_ID_PATCH = 'reserved-compensation-step-ids';

/**
 * `governedChainWorkflow` and `governedSessionWorkflow`: when the manifest has webhooks
 * (`notifications.webhooks`, reported by `authorize` with an escalation), the run starts a detached
 * `governorNotifyWorkflow` (parent close: abandon) when a step starts waiting for approval, on each
 * counted vote, and at its outcome. Only the start is awaited, never the delivery.
 */
export const WEBHOOK_NOTIFY_PATCH = 'webhook-notifications';

/**
 * `governedChainWorkflow` and `governedSessionWorkflow`: every execution that leaves the governor carries
 * an execution grant (contracts/grant.ts). Before a service activity or MCP tool call the workflow runs the
 * `mintGrant` local activity and passes the grant in the activity input (`ServiceActivityInput.grant`); the
 * `execute` activity of an http step receives what its grant binds (`ExecuteInput.grant`).
 */
export const EXECUTION_GRANT_PATCH = 'execution-grants';

/**
 * `governedChainWorkflow` and `governedSessionWorkflow`: when the chain (or session) closes with its final
 * checkpoint, the run starts a detached `governorArchiveWorkflow` (workflow id `governor-archive:<chainId>`,
 * parent close: abandon), which waits until the chain's execution is closed and exports its sealed proof to
 * the proof archive (contracts/archive.ts). Only the start is awaited; a failed start is logged and ignored.
 */
export const ARCHIVE_PROOF_PATCH = 'archive-proof-on-close';

/**
 * `governedChainWorkflow` and `governedSessionWorkflow`, steps run by a service activity or an MCP tool call
 * (issue 15/16, performance): the `authorize` local activity also mints the execution grant when it allows
 * the step outright (no `mintGrant` local activity when that decision's receipt is still the head as the
 * step runs), and a session step's execution receipt (`recordReceipt`) also digests the executor's output
 * (no `sessionOutput` local activity). Declared chains of built-in executors never take this path.
 */
export const FOLDED_REMOTE_STEP_PATCH = 'remote-step-grant-and-output-folded';

/**
 * `governedChainWorkflow` and `governedSessionWorkflow` (issue 15 performance, issue 20 item 3): a closing
 * run starts no archive workflow of its own; the task queue's archiver (`governorArchiverWorkflow`) finds
 * closed chains in visibility and exports their proofs in batches, each anchored in the transparency log.
 */
export const ARCHIVE_BY_SWEEPER_PATCH = 'archive-by-sweeper';

/**
 * `governedChainWorkflow` with one patch marker where it recorded three (issue 15, performance: each marker
 * also costs the server a `TemporalChangeVersion` search-attribute upsert). A run that records this id takes
 * the paths of {@link VALIDATED_INPUT_PATCH}, {@link LEAN_CHAIN_PATCH} and {@link GOVERN_STEP_PATCH} and
 * records none of those three; runs recorded before it replay as they ran. `governor verify` reads it as
 * implying `validated-input`.
 */
export const ONE_MARKER_CHAIN_PATCH = 'chain-patches-in-one-marker';

/**
 * `governedChainWorkflow` and `governedSessionWorkflow`: every patch a new run takes, decided by one marker
 * in the run's first workflow task, before anything is awaited. A run that records this id takes the paths
 * of {@link ONE_MARKER_CHAIN_PATCH} (chains), {@link EXECUTION_GRANT_PATCH}, {@link FOLDED_REMOTE_STEP_PATCH},
 * {@link WEBHOOK_NOTIFY_PATCH}, {@link AWAIT_FRESH_ATTESTATION_PATCH}, {@link RESERVED_COMPENSATION_ID_PATCH}
 * and {@link ARCHIVE_BY_SWEEPER_PATCH}, and records none of them; runs recorded before replay as they ran.
 *
 * Why at the start: a `patched()` call after a local activity could make a history unreplayable. When a
 * query reaches the worker while a local activity runs, SDK core (TypeScript SDK 1.24) may complete the
 * workflow task with the activity's marker and hand the activity's result to the workflow only in the next
 * task. On replay the result comes in the first of those tasks, so the code reaches its next `patched()` one
 * task early, before core has announced that task's marker, and replay fails with `[TMPRL1100] Non-deprecated
 * patch marker encountered … but there is no corresponding change command`. Every later query of the run
 * failed, and so would `governor verify`. Seen: a denied chain polled by `governor run --wait`, whose
 * `archive-by-sweeper` marker followed the final checkpoint's local activity. New `patched()` ids of these
 * workflows belong here too: a new marker id for the set, never a `patched()` call after an await.
 */
export const PATCHES_AT_START = 'patches-decided-at-start';
