import fs from 'node:fs';
import path from 'node:path';

/** Self time of the worker process, grouped by where the code lives, from V8 `.cpuprofile` files. */
export interface ProfileSummary {
  files: string[];
  /** Sampled ms per group across all threads (main thread + workflow thread). */
  byGroup: Record<string, number>;
  /** The hottest functions by self time. */
  top: { fn: string; where: string; ms: number }[];
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  samples: number[];
  timeDeltas: number[];
}

// First match wins: more specific paths first.
const GROUPS: [RegExp, string][] = [
  [/node_modules\/jose\//, 'jose (token verify/sign)'],
  [/cedar-wasm|wasm:\/\//, 'cedar-wasm'],
  [/node_modules\/zod\//, 'zod'],
  [/\/activities\/identity\//, 'governor: identity'],
  [/\/activities\//, 'governor: activities'],
  [/\/policies\//, 'governor: policies'],
  [/workflow-bundle|\/workflows\/|governed-chain/, 'workflow code (sandbox)'],
  [/@temporalio\/worker/, 'temporal worker (JS)'],
  [/@temporalio\/(workflow|common|proto)|protobufjs|long\//, 'temporal sdk/proto (JS)'],
  [/node_modules\//, 'other node_modules'],
  [/^node:|^internal\//, 'node internals'],
];

const NATIVE: Record<string, string> = {
  '(garbage collector)': 'GC',
  '(idle)': 'idle',
  '(program)': 'native/program (incl. Rust core)',
  runInContext: 'workflow sandbox entry (vm runInContext, per activation)',
  postMessage: 'worker-thread messaging (postMessage)',
};

function group(url: string, fn: string): string {
  if (!url) return NATIVE[fn] ?? 'native: other';
  for (const [re, name] of GROUPS) if (re.test(url)) return name;
  return 'other JS';
}

/** Summarizes every `.cpuprofile` in `dir`. */
export function summarizeProfiles(dir: string, topN = 15): ProfileSummary {
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')) : [];
  const byGroup = new Map<string, number>();
  const byFn = new Map<string, { fn: string; where: string; ms: number }>();
  for (const file of files) {
    const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
    for (const [id, us] of selfUs) {
      const node = nodes.get(id);
      if (!node) continue;
      const { functionName, url, lineNumber } = node.callFrame;
      const g = group(url, functionName);
      byGroup.set(g, (byGroup.get(g) ?? 0) + us / 1000);
      if (g === 'idle') continue;
      const where = url
        ? `${url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, 'dist/')}:${lineNumber + 1}`
        : '(native)';
      const key = `${functionName}@${where}`;
      const entry = byFn.get(key) ?? { fn: functionName || '(anonymous)', where, ms: 0 };
      entry.ms += us / 1000;
      byFn.set(key, entry);
    }
  }
  const sortedGroups = Object.fromEntries(
    [...byGroup.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round(v)]),
  );
  const top = [...byFn.values()]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, topN)
    .map((e) => ({ ...e, ms: Math.round(e.ms) }));
  return { files, byGroup: sortedGroups, top };
}
