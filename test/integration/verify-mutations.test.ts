import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initKeys, issueApproval, loadPrivateKey, loadPublicJwks } from '../../identity';
import { buildProof, sealProof, verifyProof, type Proof } from '../../audit/proof';
import { createReplayer, fetchChainHistories, verifyChain, type Replayer } from '../../audit/verify';
import type { ChainResult } from '../../contracts/state';
import { loadArchivedBundle } from '../../policies/bundle-archive';
import { loadBundle } from '../../policies/bundle';
import { canonicalJson } from '../../core/canonical';
import { defaultBundleWith } from '../harness/bundles';
import { setupGoverned, WORKLOAD, type Governed } from '../harness/governed';

/**
 * 1,000 random mutations of an exported proof (seeded PRNG) must every one be detected: modify a
 * leaf, delete a key or element, reorder an array, truncate a string or array — anywhere in the proof
 * and inside the decoded history payloads — swap a bundle for another bundle's files, swap the
 * receipt key. The proof comes from a real chain that used two bundles (a rollout while it awaited
 * approval), a service step with compensation, an escalation with two votes and a built-in step.
 */

const SEED = 0x5eed_0007;
const MUTATIONS = 1000;
const KINDS = ['modify', 'delete', 'reorder', 'truncate', 'swap-bundle', 'swap-key'] as const;
type Kind = (typeof KINDS)[number];
const WEIGHTS: Record<Kind, number> = {
  modify: 0.3,
  delete: 0.2,
  reorder: 0.14,
  truncate: 0.2,
  'swap-bundle': 0.08,
  'swap-key': 0.08,
};

let g: Governed;
let replayer: Replayer;
let proof: Proof;
let trusted: ReturnType<typeof loadPublicJwks>;
let foreignBundles: { path: string; content: string }[][];
let stranger: { jwks: ReturnType<typeof loadPublicJwks>; signer: Awaited<ReturnType<typeof loadPrivateKey>> };
let sameHomeOtherKey: ReturnType<typeof loadPublicJwks>;
let sealedReceipts: number;

const bundleA = defaultBundleWith((m) => {
  m.name = 'verify-mutations-a';
});
const bundleB = defaultBundleWith((m) => {
  m.name = 'verify-mutations-b';
});

beforeAll(async () => {
  g = await setupGoverned({ policiesDir: bundleA });
  replayer = createReplayer({ workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! } });
  const chain = {
    workload: WORKLOAD,
    owner: 'team-release',
    steps: [
      g.serviceStep(
        'build',
        'deploy',
        { type: 'Environment', id: 'staging' },
        { compensation: { action: 'rollback', executor: { type: 'noop' } } },
      ),
      g.serviceStep('deploy', 'deploy', { type: 'Environment', id: 'prod' }),
      { id: 'announce', action: 'notify', resource: { type: 'Channel', id: 'releases' }, executor: { type: 'noop' } },
    ],
  };
  const handle = await g.gc.start(chain, await g.creds());
  const waiting = await g.waitFor(handle.workflowId, (s) => s.status === 'AwaitingApproval');
  // A policy rollout while the chain waits: the re-authorization after quorum uses bundle B.
  await g.governor.policies.activateFrom(bundleB);
  const digest = waiting.steps[1]!.approval!.stepDigest;
  for (const sub of ['alice', 'carol']) {
    await g.gc.submitApproval(
      handle.workflowId,
      await issueApproval({
        home: g.home,
        sub,
        roles: ['sre-lead'],
        chainId: handle.workflowId,
        stepId: 'deploy',
        stepDigest: digest,
        decision: 'approve',
      }),
    );
  }
  const result = (await handle.result()) as ChainResult;
  expect(result.status).toBe('Completed');
  sealedReceipts = result.receiptHead.seq;

  const histories = await fetchChainHistories(g.client, handle.workflowId);
  const report = await verifyChain({ histories, chainId: handle.workflowId, home: g.home, replayer });
  expect(report.checks.filter((c) => !c.ok)).toEqual([]);
  expect(report.bundleDigests).toHaveLength(2);
  const bundles = (d: string) => loadArchivedBundle(g.home, d);
  proof = await buildProof({
    chainId: handle.workflowId,
    histories,
    bundleDigests: report.bundleDigests,
    bundles,
    receiptKeys: loadPublicJwks(g.home, 'receipt'),
    signer: await loadPrivateKey(g.home, 'receipt'),
  });
  trusted = loadPublicJwks(g.home, 'receipt');

  // Swap material: the shipped default bundle and a payments-deadline variant (valid bundles, other digests).
  foreignBundles = [
    loadBundle(path.join(__dirname, '..', '..', 'policies', 'default')),
    loadBundle(
      defaultBundleWith(() => undefined, {
        'payments.cedar': (t) => t.replace(/@deadline\("[^"]+"\)/g, '@deadline("1s")'),
      }),
    ),
  ].map((b) => b.files.map((f) => ({ path: f.path, content: f.content })));
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-stranger-'));
  await initKeys(home, { names: ['receipt'] });
  stranger = { jwks: loadPublicJwks(home, 'receipt'), signer: await loadPrivateKey(home, 'receipt') };
  sameHomeOtherKey = loadPublicJwks(g.home, 'issuer');
}, 120_000);

afterAll(async () => {
  await replayer?.close();
  await g?.stop();
});

// ---- a seeded PRNG and JSON-tree helpers ----------------------------------------------------

/** mulberry32: small, fast, deterministic. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Container = Json[] | { [k: string]: Json };
interface Node {
  parent: Container | undefined;
  key: string | number | undefined;
  value: Json;
  /** Dotted path with array indices as `[]` (for the summary of what only the seal covers). */
  path: string;
}

function nodes(root: Json): Node[] {
  const out: Node[] = [];
  const walk = (value: Json, parent: Container | undefined, key: string | number | undefined, path: string): void => {
    out.push({ parent, key, value, path });
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, value, i, `${path}[]`));
    else if (value !== null && typeof value === 'object')
      for (const [k, v] of Object.entries(value)) walk(v, value, k, path ? `${path}.${k}` : k);
  };
  walk(root, undefined, undefined, '');
  return out;
}

function set(node: Node, value: Json): void {
  (node.parent as Record<string | number, Json>)[node.key!] = value;
}

const isBase64Json = (s: string): boolean => {
  try {
    const text = Buffer.from(s, 'base64').toString('utf8');
    return (
      s.length > 0 &&
      Buffer.from(text, 'utf8').toString('base64') === s &&
      /^[[{"]/.test(text) &&
      (JSON.parse(text) as unknown) !== undefined
    );
  } catch {
    return false;
  }
};

/** Applies one structural mutation of `kind` somewhere in `root`; the mutated node's path, or undefined when no node fits. */
function mutateTree(
  root: Json,
  kind: Exclude<Kind, 'swap-bundle' | 'swap-key'>,
  rnd: () => number,
): string | undefined {
  const all = nodes(root).filter((n) => n.parent !== undefined);
  const pick = <T>(list: T[]): T | undefined => (list.length === 0 ? undefined : list[Math.floor(rnd() * list.length)]);
  switch (kind) {
    case 'modify': {
      const n = pick(all.filter((x) => x.value === null || typeof x.value !== 'object'));
      if (!n) return undefined;
      const v = n.value;
      if (typeof v === 'string') {
        const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=-_:. ';
        const i = Math.floor(rnd() * (v.length + 1));
        let c = alphabet[Math.floor(rnd() * alphabet.length)]!;
        if (c === v[i]) c = c === 'x' ? 'y' : 'x';
        set(n, v.length === 0 ? c : `${v.slice(0, i)}${c}${v.slice(i + 1)}`);
      } else if (typeof v === 'number') set(n, rnd() < 0.5 ? v + 1 : v === 0 ? -1 : -v);
      else if (typeof v === 'boolean') set(n, !v);
      else set(n, rnd() < 0.5 ? 0 : '');
      return n.path;
    }
    case 'delete': {
      const n = pick(all);
      if (!n) return undefined;
      if (Array.isArray(n.parent)) n.parent.splice(n.key as number, 1);
      else delete (n.parent as Record<string, Json>)[n.key as string];
      return n.path;
    }
    case 'reorder': {
      const n = pick(
        all.filter((x) => Array.isArray(x.value) && new Set(x.value.map((e) => canonicalJson(e))).size > 1),
      );
      if (!n) return undefined;
      const arr = n.value as Json[];
      for (;;) {
        const i = Math.floor(rnd() * arr.length);
        const j = Math.floor(rnd() * arr.length);
        if (canonicalJson(arr[i]) !== canonicalJson(arr[j])) {
          [arr[i], arr[j]] = [arr[j]!, arr[i]!];
          return n.path;
        }
      }
    }
    case 'truncate': {
      const n = pick(
        all.filter(
          (x) => (typeof x.value === 'string' && x.value.length > 0) || (Array.isArray(x.value) && x.value.length > 0),
        ),
      );
      if (!n) return undefined;
      const v = n.value as string | Json[];
      const keep = Math.floor(rnd() * v.length);
      set(n, v.slice(0, keep) as Json);
      return n.path;
    }
  }
}

/**
 * One mutation of `kind`: in one region of the proof (histories, bundles, receipt keys or its
 * top-level fields); in the histories, half the time inside a decoded JSON payload (then re-encoded
 * as canonical base64), so tampering with what history *means* is exercised, not only its bytes.
 */
async function mutate(
  p: Proof,
  kind: Kind,
  rnd: () => number,
): Promise<{ mutated: Record<string, unknown>; where: string }> {
  const m = structuredClone(p) as unknown as Record<string, Json>;
  const digests = Object.keys(p.bundles);
  if (kind === 'swap-bundle') {
    const bundles = m.bundles as Record<string, Json>;
    const variant = Math.floor(rnd() * 3);
    const target = digests[Math.floor(rnd() * digests.length)]!;
    if (variant === 0) {
      const other = digests.find((d) => d !== target)!;
      bundles[target] = structuredClone(p.bundles[other]!) as Json;
      return { mutated: m, where: 'a bundle replaced by the other bundle of the proof' };
    }
    if (variant === 1) {
      const [a, b] = digests as [string, string];
      [bundles[a], bundles[b]] = [bundles[b]!, bundles[a]!];
      return { mutated: m, where: 'the two bundles swapped' };
    }
    bundles[target] = foreignBundles[Math.floor(rnd() * foreignBundles.length)]! as unknown as Json;
    return { mutated: m, where: 'a bundle replaced by a foreign bundle' };
  }
  if (kind === 'swap-key') {
    const variant = Math.floor(rnd() * 3);
    if (variant === 0) {
      m.receiptKeys = structuredClone(stranger.jwks) as unknown as Json;
      return { mutated: m, where: "receipt key replaced by another governor's" };
    }
    if (variant === 1) {
      m.receiptKeys = structuredClone(sameHomeOtherKey) as unknown as Json;
      return { mutated: m, where: 'receipt key replaced by another key of the same governor' };
    }
    // The forger's version: swap the key and re-seal the whole proof with it.
    m.receiptKeys = structuredClone(stranger.jwks) as unknown as Json;
    const { seal: _seal, ...content } = m as unknown as Proof;
    return {
      mutated: (await sealProof(content, stranger.signer)) as unknown as Record<string, unknown>,
      where: 'receipt key swapped and the proof re-sealed with it',
    };
  }
  const r = rnd();
  if (r < 0.6) {
    const histories = m.histories as Json[];
    const payloads = nodes(histories).filter(
      (n) => n.key === 'data' && typeof n.value === 'string' && isBase64Json(n.value),
    );
    if (rnd() < 0.5 && payloads.length > 0) {
      const n = payloads[Math.floor(rnd() * payloads.length)]!;
      const decoded = JSON.parse(Buffer.from(n.value as string, 'base64').toString('utf8')) as Json;
      const box: Json = { v: decoded };
      const at = mutateTree(box, kind, rnd);
      if (at) {
        set(n, Buffer.from(JSON.stringify((box as { v?: Json }).v ?? null), 'utf8').toString('base64'));
        return { mutated: m, where: `histories${n.path} → payload ${at.replace(/^v\.?/, '')}` };
      }
    }
    const at = mutateTree(histories, kind, rnd);
    if (at) return { mutated: m, where: `histories${at}` };
  } else if (r < 0.75) {
    const at = mutateTree(m.bundles!, kind, rnd);
    if (at) return { mutated: m, where: `bundles.${at.replace(/^[0-9a-f]{64}/, '<digest>')}` };
  } else if (r < 0.85) {
    const at = mutateTree(m.receiptKeys!, kind, rnd);
    if (at) return { mutated: m, where: `receiptKeys.${at}` };
  }
  // The top-level fields: delete any of them, or change format, chainId, exportedAt or the seal.
  if (kind === 'delete') {
    const keys = Object.keys(m);
    const key = keys[Math.floor(rnd() * keys.length)]!;
    delete m[key];
    return { mutated: m, where: key };
  }
  if (kind === 'reorder') {
    // The top-level scalars hold no array: reorder one in the histories (there always is one).
    const at = mutateTree(m.histories!, kind, rnd);
    return { mutated: m, where: `histories${at ?? ''}` };
  }
  const scalars = { format: m.format!, chainId: m.chainId!, exportedAt: m.exportedAt!, seal: m.seal! } as Record<
    string,
    Json
  >;
  const at = mutateTree(scalars, kind, rnd);
  return { mutated: { ...m, ...scalars }, where: at ?? '' };
}

describe('1,000 random mutations of an exported proof', () => {
  it('the unmutated proof verifies offline', async () => {
    const report = await verifyProof(JSON.parse(JSON.stringify(proof)), { trustedReceiptJwks: trusted, replayer });
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report).toMatchObject({ verdict: 'verified', receipts: sealedReceipts, runs: 1, status: 'Completed' });
    expect(report.bundleDigests).toHaveLength(2);
  });

  it('detects every one of them', async () => {
    const rnd = prng(SEED);
    const original = canonicalJson(proof);
    const counts = Object.fromEntries(KINDS.map((k) => [k, { total: 0, detected: 0, beyondSeal: 0 }])) as Record<
      Kind,
      { total: number; detected: number; beyondSeal: number }
    >;
    const byCheck: Record<string, number> = {};
    const undetected: { kind: Kind; where: string }[] = [];
    /** Where the mutations that only the seal caught were made (history metadata no receipt covers). */
    const sealOnly: Record<string, number> = {};
    const started = Date.now();
    for (let i = 0; i < MUTATIONS; i++) {
      let x = rnd();
      const kind = KINDS.find((k) => (x -= WEIGHTS[k]) < 0) ?? 'modify';
      let mutated: Record<string, unknown>;
      let where: string;
      do ({ mutated, where } = await mutate(proof, kind, rnd));
      while (canonicalJson(mutated) === original); // a no-op is not a mutation
      // Through JSON text, exactly as a proof file would be read.
      const report = await verifyProof(JSON.parse(JSON.stringify(mutated)), { trustedReceiptJwks: trusted, replayer });
      const failed = report.checks.filter((c) => !c.ok).map((c) => c.name);
      counts[kind].total++;
      if (report.verdict === 'failed' && failed.length > 0) counts[kind].detected++;
      else undetected.push({ kind, where });
      if (failed.some((n) => n !== 'seal')) counts[kind].beyondSeal++;
      else sealOnly[where] = (sealOnly[where] ?? 0) + 1;
      for (const n of failed) byCheck[n] = (byCheck[n] ?? 0) + 1;
      if (kind === 'swap-bundle') expect(failed).toContain('bundles');
      if (kind === 'swap-key') expect(failed).toContain('receipt-key');
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const lines = KINDS.map(
      (k) =>
        `${k.padEnd(12)} ${String(counts[k].detected).padStart(4)} / ${String(counts[k].total).padStart(4)} detected (${counts[k].beyondSeal} also by a check other than the seal)`,
    );
    console.log(
      [
        `${MUTATIONS} mutations (seed ${SEED.toString(16)}) in ${seconds} s`,
        ...lines,
        `failed checks: ${Object.entries(byCheck)
          .map(([n, c]) => `${n} ${c}`)
          .join(', ')}`,
        `caught by the seal alone, most frequent places: ${Object.entries(sealOnly)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 12)
          .map(([w, c]) => `${w.replace(/^histories\[\]\.events\[\]\./, '')} ${c}`)
          .join(', ')}`,
      ].join('\n'),
    );
    expect(undetected).toEqual([]);
    expect(KINDS.map((k) => counts[k].total).reduce((a, b) => a + b, 0)).toBe(MUTATIONS);
    for (const k of KINDS) expect(counts[k].total).toBeGreaterThan(0);
  }, 600_000);
});
