import { eventually } from '../harness/eventually';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { authorizeAction, type AuthorizeInput } from '../../activities/authorize';
import { initKeys, issueAttestation, issueCredential, loadPrivateKey } from '../../identity';
import { PolicyStore } from '../../activities/policy-store';
import { ErrorCode } from '../../contracts/errors';
import { GENESIS_HASH } from '../../contracts/receipt';
import { loadBundle } from '../../policies/bundle';
import { bundleArchiveDir, loadArchivedBundle } from '../../policies/bundle-archive';
import { canonicalJson, sha256Hex } from '../../policies/engine';
import { signBundleDir, SIGNATURE_FILE } from '../../policies/signing';
import { watchPolicyBundle, type PolicyWatcher, type WatchLogger } from '../../workers/policy-watch';
import { addStagingFreeze, copyBundle, DEFAULT_BUNDLE_DIR, editBundleFile } from '../harness/policy';

const WORKLOAD = 'agent:release-bot';
let home: string;
let foreignHome: string;

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'governor-store-home-'));
  foreignHome = mkdtempSync(join(tmpdir(), 'governor-store-foreign-'));
  await initKeys(home);
  await initKeys(foreignHome, { names: ['policy-signing'] });
});

const sign = async (dir: string, from = home) => signBundleDir(dir, await loadPrivateKey(from, 'policy-signing'));

async function input(overrides: Partial<AuthorizeInput> = {}): Promise<AuthorizeInput> {
  return {
    chainId: 'chain-1',
    stepId: 's1',
    kind: 'step',
    workload: WORKLOAD,
    action: 'deploy',
    resource: { type: 'Environment', id: 'staging' },
    context: {},
    credential: await issueCredential({ home, sub: WORKLOAD }),
    attestation: await issueAttestation({ home, sub: WORKLOAD }),
    prev: { seq: 0, hash: GENESIS_HASH },
    ...overrides,
  };
}

describe('PolicyStore activation', () => {
  it('with requireSigned activates only a validly signed bundle; a refused one leaves the old one active', async () => {
    const store = new PolicyStore({ home, requireSigned: true });
    const good = copyBundle();
    await sign(good);
    const active = await store.activateFrom(good);
    expect(active.signature).toMatchObject({ status: 'valid' });

    const unsigned = copyBundle();
    addStagingFreeze(unsigned);
    await expect(store.activateFrom(unsigned)).rejects.toMatchObject({
      code: ErrorCode.PolicyError,
      message: expect.stringContaining('(unsigned)'),
    });

    const tampered = copyBundle();
    await sign(tampered);
    addStagingFreeze(tampered);
    await expect(store.activateFrom(tampered)).rejects.toMatchObject({
      message: expect.stringContaining('(tampered)'),
    });

    const untrusted = copyBundle();
    addStagingFreeze(untrusted);
    await sign(untrusted, foreignHome);
    await expect(store.activateFrom(untrusted)).rejects.toMatchObject({
      message: expect.stringContaining('(untrusted)'),
    });

    expect(store.current()!.bundle.digest).toBe(active.bundle.digest);
    expect(store.activations().map((a) => a.digest)).toEqual([active.bundle.digest]);
    // The synchronous path cannot check signatures, so a store that requires them refuses it.
    expect(() => store.activateDir(tampered)).toThrow(
      expect.objectContaining({
        code: ErrorCode.PolicyError,
        message: expect.stringContaining('signature not checked'),
      }),
    );
  });

  it('refuses to start at all without trusted keys when signatures are required', async () => {
    const store = new PolicyStore({ home: mkdtempSync(join(tmpdir(), 'governor-store-empty-')), requireSigned: true });
    await expect(store.activateFrom(DEFAULT_BUNDLE_DIR)).rejects.toMatchObject({
      code: ErrorCode.KeysMissing,
      message: expect.stringContaining('policy-signing.jwks.json'),
    });
    expect(store.current()).toBeUndefined();
  });

  it('archives every activated bundle by digest, so old decisions can be re-evaluated', async () => {
    const archiveHome = mkdtempSync(join(tmpdir(), 'governor-store-archive-'));
    await initKeys(archiveHome, { names: ['policy-signing'] });
    const store = new PolicyStore({ home: archiveHome });
    const dir = copyBundle();
    const first = await store.activateFrom(dir);
    addStagingFreeze(dir);
    const second = await store.activateFrom(dir);
    expect(second.bundle.digest).not.toBe(first.bundle.digest);
    rmSync(dir, { recursive: true, force: true });
    for (const digest of [first.bundle.digest, second.bundle.digest])
      expect(loadArchivedBundle(archiveHome, digest).digest).toBe(digest);
    expect(store.activations().map((a) => a.digest)).toEqual([first.bundle.digest, second.bundle.digest]);
    // Signatures are checked when trusted keys exist, even if not required, and reported.
    expect(second.signature).toMatchObject({ status: 'unsigned' });
  });

  it('denies every decision while no valid bundle is loaded', async () => {
    const store = new PolicyStore({ home });
    await expect(store.activateFrom(join(tmpdir(), 'no-such-bundle'))).rejects.toMatchObject({
      code: ErrorCode.InvalidInput,
    });
    const result = await authorizeAction(store, home, await input(), new Date());
    expect(result.decision).toMatchObject({
      effect: 'deny',
      reason: 'no valid policy bundle is loaded',
      bundleDigest: '',
    });
    expect(result.request).toBeUndefined();
  });
});

describe('shadow mode', () => {
  const freezeDir = (() => {
    const dir = copyBundle();
    addStagingFreeze(dir);
    return dir;
  })();

  it('evaluates the candidate beside the active bundle and marks a difference, without enforcing it', async () => {
    const store = new PolicyStore({ home });
    store.activateDir(DEFAULT_BUNDLE_DIR);
    const shadow = store.setShadowDir(freezeDir);
    const result = await authorizeAction(store, home, await input(), new Date());
    expect(result.decision.effect).toBe('allow');
    expect(result.decision.bundleDigest).toBe(loadBundle(DEFAULT_BUNDLE_DIR).digest);
    expect(result.shadow).toEqual({
      bundleDigest: shadow.bundle.digest,
      effect: 'deny',
      differs: true,
      determiningPolicies: ['deploy-staging-freeze'],
      annotations: {
        'deploy-staging-freeze': { id: 'deploy-staging-freeze', reason: 'release freeze: no deployments to staging' },
      },
      errors: [],
      reason: 'denied by deploy-staging-freeze (release freeze: no deployments to staging)',
    });

    const same = await authorizeAction(
      store,
      home,
      await input({ resource: { type: 'Environment', id: 'dev' } }),
      new Date(),
    );
    expect(same.shadow).toMatchObject({ effect: 'allow', differs: false });
  });

  it('treats other escalation requirements as a difference, and skips a candidate identical to the active bundle', async () => {
    const quorum = copyBundle();
    editBundleFile(quorum, 'deployments.cedar', '@quorum("2")', '@quorum("3")');
    const store = new PolicyStore({ home });
    store.activateDir(DEFAULT_BUNDLE_DIR);
    store.setShadowDir(quorum);
    const prod = await authorizeAction(
      store,
      home,
      await input({ resource: { type: 'Environment', id: 'prod' } }),
      new Date(),
    );
    expect(prod.decision.escalation?.quorum).toBe(2);
    expect(prod.shadow).toMatchObject({ effect: 'escalate', differs: true, escalation: { quorum: 3 } });

    store.setShadowDir(DEFAULT_BUNDLE_DIR);
    expect((await authorizeAction(store, home, await input(), new Date())).shadow).toBeUndefined();
    store.setShadow(undefined);
    expect(store.shadow()).toBeUndefined();
  });

  it('records the shadow block in the decision receipt and logs the difference through the activity logger', async () => {
    const store = new PolicyStore({ home });
    store.activateDir(DEFAULT_BUNDLE_DIR);
    store.setShadowDir(freezeDir);
    const logged: { level: LogLevel; message: string; meta?: LogMetadata }[] = [];
    const logger: Logger = {
      log: (level, message, meta) => logged.push({ level, message, meta }),
      trace: (m, meta) => logged.push({ level: 'TRACE', message: m, meta }),
      debug: (m, meta) => logged.push({ level: 'DEBUG', message: m, meta }),
      info: (m, meta) => logged.push({ level: 'INFO', message: m, meta }),
      warn: (m, meta) => logged.push({ level: 'WARN', message: m, meta }),
      error: (m, meta) => logged.push({ level: 'ERROR', message: m, meta }),
    };
    const activities = createActivities({ policies: store, home });
    const env = new MockActivityEnvironment(undefined, { logger });
    const result = (await env.run(activities.authorize, await input())) as Awaited<
      ReturnType<typeof activities.authorize>
    >;
    expect(result.decision.effect).toBe('allow');
    expect(result.shadow).toMatchObject({ differs: true, effect: 'deny' });
    // The receipt's digest covers a payload that includes the shadow block.
    const extra = 'stepDigest' in result ? { stepDigest: (result as { stepDigest: unknown }).stepDigest } : {};
    const withShadow = { request: result.request, decision: result.decision, shadow: result.shadow, ...extra };
    const withoutShadow = { request: result.request, decision: result.decision, ...extra };
    expect(result.receipt.digest).toBe(sha256Hex(canonicalJson(withShadow)));
    expect(result.receipt.digest).not.toBe(sha256Hex(canonicalJson(withoutShadow)));
    const warn = logged.find((l) => l.message === 'shadow policy bundle decides differently');
    expect(warn).toMatchObject({
      level: 'WARN',
      meta: {
        chainId: 'chain-1',
        stepId: 's1',
        enforced: { effect: 'allow' },
        shadow: { effect: 'deny', determiningPolicies: ['deploy-staging-freeze'] },
      },
    });
    expect(JSON.stringify(warn)).not.toContain((await input()).credential.slice(0, 40));
  });
});

describe('live rollout: the policy watcher', () => {
  const watchers: PolicyWatcher[] = [];
  afterAll(() => watchers.forEach((w) => w.close()));

  function recordingLogger(): WatchLogger & { lines: { level: string; msg: string; obj: Record<string, unknown> }[] } {
    const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
    const at = (level: string) => (obj: object, msg: string) =>
      lines.push({ level, msg, obj: obj as Record<string, unknown> });
    return { lines, info: at('info'), warn: at('warn'), error: at('error') };
  }

  it('activates a changed bundle, rejects an invalid one (the old stays active, logged once) and recovers', async () => {
    const dir = copyBundle();
    const store = new PolicyStore({ home });
    const first = await store.activateFrom(dir);
    const logger = recordingLogger();
    const watcher = watchPolicyBundle({ dir, store, logger, debounceMs: 30, pollIntervalMs: 100 });
    watchers.push(watcher);
    await expect(watcher.check()).resolves.toEqual({ kind: 'unchanged' });

    addStagingFreeze(dir);
    await eventually('the changed bundle to be active', () => store.current()!.bundle.digest !== first.bundle.digest, {
      timeoutMs: 5000,
      intervalMs: 20,
    });
    const second = store.current()!.bundle.digest;
    expect(second).toBe(loadBundle(dir).digest);
    expect(logger.lines).toContainEqual(
      expect.objectContaining({
        level: 'info',
        msg: 'policy bundle activated (live rollout)',
        obj: expect.objectContaining({ digest: second, previous: first.bundle.digest }),
      }),
    );

    editBundleFile(dir, 'freeze.cedar', 'forbid (', 'forbid ((');
    await eventually('the rejection to be logged', () => logger.lines.some((l) => l.level === 'error'), {
      timeoutMs: 5000,
      intervalMs: 20,
    });
    for (let i = 0; i < 3; i++) await watcher.check(); // polled again: the same broken bundle is not logged again
    expect(store.current()!.bundle.digest).toBe(second);
    const errors = logger.lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      msg: 'new policy bundle rejected; the current one stays active',
      obj: { active: second, reason: expect.stringContaining('freeze.cedar:') },
    });

    // Fixed again: the same content as `second`, so nothing new to roll out, and no further error.
    editBundleFile(dir, 'freeze.cedar', 'forbid ((', 'forbid (');
    await expect(watcher.check()).resolves.toEqual({ kind: 'unchanged' });
    expect(store.current()!.bundle.digest).toBe(second);
    expect(logger.lines.filter((l) => l.level === 'error')).toHaveLength(1);
    expect(archivedOf(home)).toEqual(expect.arrayContaining([first.bundle.digest, second]));
  });

  function archivedOf(h: string): string[] {
    return existsSync(bundleArchiveDir(h)) ? readdirSync(bundleArchiveDir(h)) : [];
  }

  it('with requireSigned, rolls out only a re-signed bundle: an edit without a new signature is refused as tampered', async () => {
    const dir = copyBundle();
    await sign(dir);
    const store = new PolicyStore({ home, requireSigned: true });
    const first = await store.activateFrom(dir);
    const logger = recordingLogger();
    const watcher = watchPolicyBundle({ dir, store, logger, debounceMs: 30, pollIntervalMs: 0 });
    watchers.push(watcher);

    addStagingFreeze(dir);
    await expect(watcher.check()).resolves.toMatchObject({
      kind: 'rejected',
      reason: expect.stringContaining('(tampered)'),
    });
    expect(store.current()!.bundle.digest).toBe(first.bundle.digest);

    await sign(dir);
    const outcome = await watcher.check();
    expect(outcome).toEqual({ kind: 'activated', digest: loadBundle(dir).digest, previous: first.bundle.digest });
    expect(store.current()!.signature).toMatchObject({ status: 'valid' });
    expect(readFileSync(join(bundleArchiveDir(home), loadBundle(dir).digest, SIGNATURE_FILE), 'utf8')).toBe(
      readFileSync(join(dir, SIGNATURE_FILE), 'utf8'),
    );
  });

  it('replaces the shadow candidate when its directory changes', async () => {
    const dir = copyBundle();
    const store = new PolicyStore({ home });
    store.activateDir(DEFAULT_BUNDLE_DIR);
    store.setShadowDir(dir);
    const watcher = watchPolicyBundle({ dir, store, role: 'shadow', pollIntervalMs: 0 });
    watchers.push(watcher);
    addStagingFreeze(dir);
    await expect(watcher.check()).resolves.toMatchObject({ kind: 'activated', digest: loadBundle(dir).digest });
    expect(store.shadow()!.bundle.digest).toBe(loadBundle(dir).digest);
    expect(store.current()!.bundle.digest).toBe(loadBundle(DEFAULT_BUNDLE_DIR).digest);
  });

  it('closes itself on the next poll once told to stop', async () => {
    let stop = false;
    const watcher = watchPolicyBundle({
      dir: copyBundle(),
      store: new PolicyStore(),
      pollIntervalMs: 20,
      shouldStop: () => stop,
    });
    watchers.push(watcher);
    expect(watcher.closed).toBe(false);
    stop = true;
    await eventually('the watcher to close', () => watcher.closed, { timeoutMs: 1000, intervalMs: 20 });
    expect(watcher.closed).toBe(true);
  });

  it('notices a bundle directory that vanishes and comes back (polling)', async () => {
    const dir = copyBundle();
    const store = new PolicyStore({ home });
    const first = await store.activateFrom(dir);
    const watcher = watchPolicyBundle({ dir, store, pollIntervalMs: 0 });
    watchers.push(watcher);
    const saved = readFileSync(join(dir, 'manifest.yaml'), 'utf8');
    rmSync(join(dir, 'manifest.yaml'));
    await expect(watcher.check()).resolves.toMatchObject({
      kind: 'rejected',
      reason: expect.stringContaining('manifest.yaml: missing'),
    });
    writeFileSync(join(dir, 'manifest.yaml'), saved.replace('defaultQuorum: 1', 'defaultQuorum: 2'));
    await expect(watcher.check()).resolves.toMatchObject({ kind: 'activated', previous: first.bundle.digest });
  });
});
