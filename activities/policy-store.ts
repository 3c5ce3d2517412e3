import { durationMs } from '../policies/manifest';
import { loadBundle, type LoadedBundle } from '../policies/bundle';
import { PolicyEngine } from '../policies/engine';

/** The active policy bundle with its preparsed engine. */
export interface ActiveBundle {
  bundle: LoadedBundle;
  engine: PolicyEngine;
  gracePeriodMs: number;
}

/**
 * Holds the worker's active bundle, preparsed once. With no valid bundle, `current()` is undefined
 * and every decision is deny.
 */
export class PolicyStore {
  private active?: ActiveBundle;

  /** Loads and activates the bundle in `dir` (throws on an invalid bundle; the old one stays active). */
  activateDir(dir: string): ActiveBundle {
    return this.activate(loadBundle(dir));
  }

  /** Activates an already loaded bundle. */
  activate(bundle: LoadedBundle): ActiveBundle {
    const next: ActiveBundle = { bundle, engine: PolicyEngine.fromBundle(bundle), gracePeriodMs: durationMs(bundle.manifest.credential.gracePeriod) };
    this.active = next;
    return next;
  }

  /** The active bundle, or undefined when none is valid. */
  current(): ActiveBundle | undefined {
    return this.active;
  }
}
