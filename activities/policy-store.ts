import path from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { ErrorCode, GovernorError } from '../contracts/errors';
import { durationMs } from '../policies/manifest';
import { loadBundle, type LoadedBundle } from '../policies/bundle';
import { archiveBundle } from '../policies/bundle-archive';
import { PolicyEngine } from '../policies/engine';
import { loadSignedBundle, readTrustedKeys, SignatureStatus, type SignatureCheck } from '../policies/signing';
import { keyPaths } from '../identity';

/** The active policy bundle with its preparsed engine. */
export interface ActiveBundle {
  bundle: LoadedBundle;
  engine: PolicyEngine;
  gracePeriodMs: number;
  /** The signature check made when it was activated (absent when signatures were not checked). */
  signature?: SignatureCheck;
  /** When this worker activated it (ISO-8601). */
  activatedAt?: string;
}

/** A candidate bundle evaluated beside the active one on every decision, never enforced (shadow mode). */
export interface ShadowBundle {
  bundle: LoadedBundle;
  engine: PolicyEngine;
}

/** One activation, in order (the worker's rollout history). */
export interface Activation {
  digest: string;
  source: string;
  activatedAt: string;
  signature?: SignatureStatus;
}

/** Options of a PolicyStore. */
export interface PolicyStoreOptions {
  /**
   * GOVERNOR_HOME. Every activated bundle is archived under `<home>/bundles/<digest>/` (and
   * activation fails when it cannot be archived); trusted keys default to its
   * `keys/policy-signing.jwks.json`. Without it nothing is archived.
   */
  home?: string;
  /** Refuse any bundle without a valid signature from a trusted policy-signing key. */
  requireSigned?: boolean;
  /**
   * JWKS file of the trusted policy-signing keys (public). Default: `<home>/keys/policy-signing.jwks.json`.
   * Read at every activation, so a rotated trust file applies to the next bundle.
   */
  trustedKeysFile?: string;
  /** Injectable clock (activation times). */
  clock?: () => Date;
}

/**
 * Holds the worker's active bundle (and an optional shadow candidate), preparsed once. With no valid
 * bundle, `current()` is undefined and every decision is deny. Activation is all-or-nothing: a bundle
 * that fails to load, to verify (when signatures are required) or to be archived leaves the previous
 * one active.
 */
export class PolicyStore {
  private active?: ActiveBundle;
  private shadowBundle?: ShadowBundle;
  private readonly log: Activation[] = [];
  // Preparsed Cedar sets cannot be freed: reuse the engine when a digest comes back (rollback).
  private readonly engines = new Map<string, PolicyEngine>();
  // Rollback protection: the highest signed bundle version this store activated or was told of (fleet).
  private versionFloor = 0;
  private versionFloorSource = '';
  readonly options: Readonly<PolicyStoreOptions>;

  constructor(options: PolicyStoreOptions = {}) {
    this.options = { ...options };
  }

  /** True when only validly signed bundles may become active. */
  get requireSigned(): boolean {
    return this.options.requireSigned === true;
  }

  /**
   * Loads and activates the bundle in `dir` (throws on an invalid bundle; the old one stays active).
   * Synchronous, so it cannot check signatures: a store that requires them refuses it (use `activateFrom`).
   */
  activateDir(dir: string): ActiveBundle {
    return this.activate(loadBundle(dir));
  }

  /**
   * Activates an already loaded bundle. With `requireSigned`, `signature` must be a valid check of this
   * very digest. Archives it first (when the store has a home).
   */
  activate(bundle: LoadedBundle, signature?: SignatureCheck, signatureText?: string): ActiveBundle {
    if (this.requireSigned && (signature?.status !== SignatureStatus.Valid || signature.digest !== bundle.digest)) {
      throw new GovernorError(
        ErrorCode.PolicyError,
        `policy bundle ${bundle.source} refused: a signed bundle is required (${signature ? `${signature.status}: ${signature.message}` : 'signature not checked'})`,
        'bundle.sig',
      );
    }
    const same = this.active !== undefined && this.active.bundle.digest === bundle.digest;
    const valid = signature?.status === SignatureStatus.Valid && signature.digest === bundle.digest;
    const version = valid ? signature.version : undefined;
    // Rollback protection: a validly signed bundle older than the highest version this worker activated
    // or saw declared by its fleet is refused (so is a signature from before versions, once versions are
    // in use). An unsigned bundle on a store that does not require signatures is a development setup:
    // there the fleet's digest check is what refuses it.
    if (!same && valid && this.versionFloor > 0 && (version === undefined || version < this.versionFloor)) {
      throw new GovernorError(
        ErrorCode.PolicyError,
        `policy bundle ${bundle.source} refused (rollback): ${version === undefined ? 'its signature carries no version' : `version ${version}`} is older than version ${this.versionFloor} (${this.versionFloorSource})`,
        'bundle.sig',
      );
    }
    if (same && this.active) {
      // Same content (a touched file, a re-signed bundle): nothing to roll out; keep the newer check.
      if (signature) this.active.signature = signature;
      return this.active;
    }
    const engine = this.engineFor(bundle);
    if (this.options.home !== undefined) archiveBundle(this.options.home, bundle, signatureText);
    if (version !== undefined) this.raiseVersionFloor(version, 'activated by this worker');
    const activatedAt = (this.options.clock?.() ?? new Date()).toISOString();
    const next: ActiveBundle = {
      bundle,
      engine,
      gracePeriodMs: durationMs(bundle.manifest.credential.gracePeriod),
      ...(signature ? { signature } : {}),
      activatedAt,
    };
    this.active = next;
    this.log.push({
      digest: bundle.digest,
      source: bundle.source,
      activatedAt,
      ...(signature ? { signature: signature.status } : {}),
    });
    return next;
  }

  /**
   * Reads `dir` once, checks the signature against the trusted keys (required or not: when they are
   * available the result is kept and logged), archives and activates. Throws — leaving the old bundle
   * active — on an invalid bundle, or when signatures are required and it is unsigned, tampered or
   * untrusted, or no trusted keys can be read.
   */
  async activateFrom(dir: string): Promise<ActiveBundle> {
    const signed = await this.loadFrom(dir);
    return this.activate(signed.bundle, signed.check, signed.signature);
  }

  /** Reads and checks (but does not activate) the bundle in `dir` under this store's signature rules. */
  async loadFrom(dir: string): Promise<Awaited<ReturnType<typeof loadSignedBundle>>> {
    const trusted = this.trustedKeys();
    return loadSignedBundle(path.resolve(dir), { ...(trusted ? { trusted } : {}), requireSigned: this.requireSigned });
  }

  /** The highest signed bundle version this store activated or was told of (0: none). */
  get highestVersion(): number {
    return this.versionFloor;
  }

  /** Raises the rollback floor (never lowers it): bundles signed with an older version are refused from now on. */
  raiseVersionFloor(version: number, source: string): void {
    if (version > this.versionFloor) {
      this.versionFloor = version;
      this.versionFloorSource = source;
    }
  }

  /** The active bundle, or undefined when none is valid. */
  current(): ActiveBundle | undefined {
    return this.active;
  }

  /** Sets (or clears, with undefined) the shadow candidate. Never enforced; need not be signed. */
  setShadow(bundle: LoadedBundle | undefined): ShadowBundle | undefined {
    if (bundle === undefined) {
      this.shadowBundle = undefined;
      return undefined;
    }
    const next = { bundle, engine: this.engineFor(bundle) };
    if (this.options.home !== undefined) archiveBundle(this.options.home, bundle);
    this.shadowBundle = next;
    return next;
  }

  /** Loads the bundle in `dir` as the shadow candidate (throws on an invalid bundle; the old shadow stays). */
  setShadowDir(dir: string): ShadowBundle {
    return this.setShadow(loadBundle(path.resolve(dir)))!;
  }

  /** The shadow candidate, if any. */
  shadow(): ShadowBundle | undefined {
    return this.shadowBundle;
  }

  /** Every activation of this store, oldest first. */
  activations(): readonly Activation[] {
    return [...this.log];
  }

  /**
   * The trusted policy-signing keys: the configured file, else `<home>/keys/policy-signing.jwks.json`.
   * Undefined when neither is available and signatures are not required; throws KeysMissing when required.
   */
  trustedKeys(): JSONWebKeySet | undefined {
    const file =
      this.options.trustedKeysFile ??
      (this.options.home !== undefined ? keyPaths(this.options.home, 'policy-signing').jwksPath : undefined);
    if (file === undefined) {
      if (this.requireSigned) {
        throw new GovernorError(
          ErrorCode.KeysMissing,
          'signed policy is required but no trusted policy-signing JWKS is configured',
          'policyTrustJwks',
        );
      }
      return undefined;
    }
    try {
      return readTrustedKeys(file);
    } catch (err) {
      if (this.requireSigned || this.options.trustedKeysFile !== undefined) throw err;
      return undefined; // optional, and the home has no policy-signing key: signatures are just not checked
    }
  }

  private engineFor(bundle: LoadedBundle): PolicyEngine {
    let engine = this.engines.get(bundle.digest);
    if (!engine) {
      engine = PolicyEngine.fromBundle(bundle);
      this.engines.set(bundle.digest, engine);
    }
    return engine;
  }
}
