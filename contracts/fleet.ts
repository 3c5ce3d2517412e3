import { z } from 'zod';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

/**
 * The fleet registry (DESIGN §11): one long-running workflow per namespace that every governor worker
 * reports to (which bundle digest and version it enforces) and that holds the fleet's declared ACTIVE
 * bundle. Sandbox-safe. Names here are recorded in history: never rename them.
 *
 * Trust: the active bundle changes only by the `activateFleetBundle` update, and only to a bundle whose
 * `bundle.sig` (version 2: digest, version and issue time) verifies with the trusted policy-signing
 * keys; the registry verifies it in an activity, and every worker verifies the declared statement again
 * before it enforces it. Heartbeats are self-reports, informational only: they never change the active
 * bundle, and each worker enforces the declared digest on its own decisions whatever any heartbeat says.
 */

/**
 * Task queue of the namespace-wide registries (this fleet registry and the revocation registry): every
 * governor worker also polls it (workers/worker.ts), whatever its own task queue, so the registries run
 * as long as any governor worker of the namespace runs.
 */
export const GOVERNOR_CONTROL_TASK_QUEUE = 'governor-control';

/** Workflow type of the fleet registry. */
export const FLEET_REGISTRY_TYPE = 'governorFleetWorkflow';

/**
 * Workflow id of the fleet registry: one per namespace (the namespace is the client's) and control task
 * queue — `governor-fleet` on the default one, `governor-fleet@<queue>` on another (separate fleets sharing
 * a namespace, e.g. tests with their own keys).
 */
export function fleetRegistryId(controlTaskQueue: string = GOVERNOR_CONTROL_TASK_QUEUE): string {
  return controlTaskQueue === GOVERNOR_CONTROL_TASK_QUEUE ? 'governor-fleet' : `governor-fleet@${controlTaskQueue}`;
}

/** The control task queue of this process: GOVERNOR_CONTROL_TASK_QUEUE, else the default (not for workflow code). */
export function controlTaskQueueFromEnv(env: Record<string, string | undefined>): string {
  return env.GOVERNOR_CONTROL_TASK_QUEUE || GOVERNOR_CONTROL_TASK_QUEUE;
}

/** Memo key of the registry's published state ({@link FleetMemo}); workers read it with DescribeWorkflowExecution. */
export const FLEET_MEMO = 'governorFleet';

const Hash = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex characters');
const Time = z.string().min(1).max(40);
const Text = z.string().min(1).max(200);

/** What a governor worker reports, periodically (signal {@link fleetHeartbeatSignal}). */
export const WorkerHeartbeat = z.strictObject({
  /** Stable for the worker process's life: `<host>:<pid>:<task queue>:<random>`. */
  workerId: Text,
  host: Text,
  pid: z
    .int()
    .min(0)
    .max(2 ** 31),
  taskQueue: Text,
  /** The governor build the worker runs (GOVERNOR_BUILD_ID, else the package version). */
  buildId: Text,
  /** When the worker process started (ISO-8601, its own clock). */
  startedAt: Time,
  /** Digest of the bundle it enforces (absent: none is valid, so it denies everything). */
  digest: Hash.optional(),
  /** The signed version of that bundle (absent: unsigned, or signed before versions). */
  version: z.int().min(1).optional(),
  /** Manifest name of that bundle. */
  bundleName: Text.optional(),
  /** Its signature check on that worker (`valid`, `unsigned`, …; absent when not checked). */
  signature: z.string().min(1).max(20).optional(),
  /** When the worker sent this report (its own clock, ISO-8601): the registry's `lastSeen`. */
  sentAt: Time,
});
export type WorkerHeartbeat = z.infer<typeof WorkerHeartbeat>;

/**
 * A worker as the registry keeps it: its last heartbeat, and when it first and last reported (the
 * workers' clocks: workflow code reads no clock).
 */
export interface FleetWorker extends WorkerHeartbeat {
  firstSeen: string;
  lastSeen: string;
}

/** Input of `activateFleetBundle`: the bundle's digest and its `bundle.sig`, and who activates it. */
export const ActivateFleetBundleInput = z.strictObject({
  digest: Hash,
  signature: z
    .string()
    .min(1)
    .max(16 * 1024),
  by: Text.optional(),
});
export type ActivateFleetBundleInput = z.infer<typeof ActivateFleetBundleInput>;

/** The fleet's declared active bundle: the signed statement (digest + `bundle.sig`) and what it verified to. */
export const FleetActivation = z.strictObject({
  digest: Hash,
  /** The signed version (required for a fleet activation). */
  version: z.int().min(1),
  /** The signed issue time. */
  issuedAt: Time,
  /** Policy-signing key that signed it. */
  kid: z.string().min(1).max(200),
  /** The `bundle.sig` text: every worker verifies it again before it enforces the digest. */
  signature: z
    .string()
    .min(1)
    .max(16 * 1024),
  /** Who activated it (as the operator said). */
  by: Text.optional(),
  /** When the registry accepted it (the verifying activity's clock, ISO-8601). */
  at: Time,
});
export type FleetActivation = z.infer<typeof FleetActivation>;

/** The registry's memo: `recovering` until a run has rebuilt its active bundle from every earlier run. */
export const FleetMemo = z.strictObject({
  v: z.literal(1),
  state: z.enum(['recovering', 'ready']),
  active: FleetActivation.optional(),
});
export type FleetMemo = z.infer<typeof FleetMemo>;

/** What the `fleetStatus` query answers. */
export interface FleetStatus {
  state: 'recovering' | 'ready';
  active?: FleetActivation;
  /** Every worker heard from in the last {@link FLEET_FORGET_MS}, by id. */
  workers: FleetWorker[];
  /** The last activations, oldest first (at most {@link FLEET_ACTIVATION_HISTORY}). */
  activations: FleetActivation[];
}

/** A registry run's argument: what its previous run carried across continue-as-new (the active bundle is verified again). */
export const FleetRegistryInput = z.strictObject({
  v: z.literal(1),
  active: FleetActivation.optional(),
  workers: z.array(z.unknown()).max(10_000).optional(),
  activations: z.array(FleetActivation).max(100).optional(),
});
export type FleetRegistryInput = z.infer<typeof FleetRegistryInput>;

/** Workers unheard of for this long leave the registry's list (they long stopped being live). */
export const FLEET_FORGET_MS = 24 * 60 * 60_000;
/** How many activations the registry keeps in its status. */
export const FLEET_ACTIVATION_HISTORY = 20;

/** Heartbeat of one worker (fire and forget; invalid ones are dropped). */
export const fleetHeartbeatSignal = defineSignal<[WorkerHeartbeat]>('fleetHeartbeat');
/** Declares the fleet's active bundle; rejected unless validly signed and newer than the active one. */
export const activateFleetBundleUpdate = defineUpdate<FleetStatus, [ActivateFleetBundleInput]>('activateFleetBundle');
/** The registry's view: active bundle, workers, activations. */
export const fleetStatusQuery = defineQuery<FleetStatus>('fleetStatus');

/** Input of the `verifyFleetActivation` activity. */
export interface VerifyFleetActivationInput {
  digest: string;
  signature: string;
}

/** Result of `verifyFleetActivation`: the verified version and issue time, or why the statement is refused. */
export type VerifyFleetActivationResult =
  | { ok: true; digest: string; version: number; issuedAt: string; kid: string; verifiedAt: string }
  | { ok: false; reason: string };

/** Input of the `recoverFleet` activity (run at the start of every registry run). */
export interface RecoverFleetInput {
  workflowId: string;
  runId: string;
  carried?: FleetActivation;
}

/** Result of `recoverFleet`: the newest validly signed active bundle found in every earlier run and the carried input. */
export interface RecoverFleetResult {
  active?: FleetActivation;
  /** Statements that did not verify (forged, unsigned, untrusted key). Never accepted. */
  rejected: number;
}
