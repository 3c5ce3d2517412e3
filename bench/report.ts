import type { BenchResults } from './main';
import { round } from './stats';

/** The short markdown table for the README (also written to bench/results/latest.md). */
export function renderMarkdown(r: BenchResults): string {
  const rows: string[][] = [];
  const x = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : `${v}×`);
  const o = r.overhead;
  if (o) {
    rows.push([
      `End-to-end latency, ${o.steps}-step chain, p50${o.warmupPerKind > 5 ? ` (after ${o.warmupPerKind} warm-up chains)` : ''}`,
      `${o.governed.latencyMs.p50} ms`,
      `${o.plain.latencyMs.p50} ms`,
      x(o.p50Ratio),
      o.target,
    ]);
    rows.push([
      `End-to-end latency, ${o.steps}-step chain, p95`,
      `${o.governed.latencyMs.p95} ms`,
      `${o.plain.latencyMs.p95} ms`,
      x(o.p95Ratio),
      o.target,
    ]);
  }
  if (o?.lean) {
    rows.push([
      'Diagnostic: governed against the plain workflow on a worker of its own (a bundle without the governor), p50',
      `${o.governed.latencyMs.p50} ms`,
      `${o.lean.latencyMs.p50} ms`,
      x(o.leanP50Ratio),
      '—',
    ]);
  }
  if (o) {
    rows.push([
      'Diagnostic: plain workflow plus 2 trivial local activities per step (the governed shape before `governStep`), p50',
      `${o.shaped.latencyMs.p50} ms`,
      `${o.plain.latencyMs.p50} ms`,
      x(o.shapedP50Ratio),
      '—',
    ]);
  }
  const t = r.throughput;
  if (t) {
    rows.push([
      `Throughput, ${t.steps}-step chains/s (${t.concurrency} in flight)`,
      `${t.governed.chainsPerSecond}`,
      `${t.plain.chainsPerSecond}`,
      x(t.ratio),
      t.target,
    ]);
  }
  const d = r.decision;
  if (d) {
    rows.push([
      'Decision, full authorize path (credential + attestation + Cedar), p50 / p99',
      `${d.p50Micros} / ${d.p99Micros} µs`,
      '—',
      '—',
      'p99 < 1 ms',
    ]);
    rows.push([
      'Cedar alone, preparsed vs re-parse per call, p50 / p99',
      `${d.cedar.preparsed.p50Micros} / ${d.cedar.preparsed.p99Micros} µs`,
      `${d.cedar.reparsePerCall.p50Micros} / ${d.cedar.reparsePerCall.p99Micros} µs`,
      `re-parse ${d.cedar.reparseRatio}× slower`,
      'p99 < 100 µs',
    ]);
  }
  const ops = r.operations;
  if (ops) {
    rows.push([
      'authorize with tracing + metrics + decision log on vs off, p50 / p99',
      `${ops.on.p50Micros} / ${ops.on.p99Micros} µs`,
      `${ops.off.p50Micros} / ${ops.off.p99Micros} µs`,
      `${ops.p50OverheadPercent} % at p50`,
      `≤ ${ops.targetPercent} % at p50`,
    ]);
    const e = ops.endToEnd;
    if (e)
      rows.push([
        `Governed ${e.steps}-step chain end to end, worker with tracing + metrics + decision log on vs off, p50 / p95`,
        `${e.on.latencyMs.p50} / ${e.on.latencyMs.p95} ms`,
        `${e.off.latencyMs.p50} / ${e.off.latencyMs.p95} ms`,
        `${e.p50OverheadPercent} % at p50 (${x(e.p50Ratio)}; p95 ${x(e.p95Ratio)})`,
        `≤ ${e.targetPercent} % at p50`,
      ]);
  }
  const s = r.scaling;
  if (s) {
    for (const row of s.rows) {
      const runs = row.governedRuns && row.governedRuns > 1 ? ` in ${row.governedRuns} runs via continue-as-new` : '';
      const events = row.governedHistoryEvents
        ? ` (${row.governedHistoryEvents.toLocaleString('en-US')} events${runs})`
        : '';
      rows.push([
        `Time per step, ${row.steps.toLocaleString('en-US')}-step chain${events}`,
        `${row.governedMsPerStep} ms`,
        `${row.plainMsPerStep} ms`,
        x(row.ratio),
        'flat',
      ]);
    }
    if (s.memory) {
      const m = s.memory;
      rows.push([
        `Worker RSS growth, ${m.governed.chains.toLocaleString('en-US')} chains waiting (governed: for approval; plain: for a signal)`,
        `${m.governed.rssDeltaMiB} MiB (${m.governed.rssKiBPerChain} KiB/chain)`,
        `${m.plain.rssDeltaMiB} MiB (${m.plain.rssKiBPerChain} KiB/chain)`,
        x(m.rssRatio),
        '—',
      ]);
    }
    if (s.history) {
      const h = s.history;
      rows.push([
        `\`governor verify\` per 1,000 history events (${h.steps.toLocaleString('en-US')}-step chain, ${h.runs} run(s), ${h.events.toLocaleString('en-US')} events; fetch ${h.perThousandEvents.fetchMs} ms + verify ${h.perThousandEvents.verifyMs} ms)`,
        `${h.perThousandEvents.totalMs} ms`,
        `replay alone ${h.perThousandEvents.replayAloneMs} ms`,
        '—',
        '—',
      ]);
    }
  }
  const ss = r.session;
  if (ss) {
    const ps = ss.proposeStep;
    rows.push([
      `Agent session: \`proposeStep\` round trip of an allowed no-op step vs a plain Temporal update running the same activity, p50 / p99`,
      `${ps.governed.latencyMs.p50} / ${ps.governed.latencyMs.p99} ms`,
      `${ps.plain.latencyMs.p50} / ${ps.plain.latencyMs.p99} ms`,
      `${x(ps.p50Ratio)} / ${x(ps.p99Ratio)}`,
      ps.target,
    ]);
    const gw = ss.gateway;
    rows.push([
      `MCP \`tools/call\` (\`read_file\`, mcp-server-filesystem) through \`governor mcp\` (Streamable HTTP) vs a direct MCP client call, p50 / p99`,
      `${gw.viaGateway.latencyMs.p50} / ${gw.viaGateway.latencyMs.p99} ms`,
      `${gw.direct.latencyMs.p50} / ${gw.direct.latencyMs.p99} ms`,
      `+${gw.addedMs.p50} / +${gw.addedMs.p99} ms`,
      gw.target,
    ]);
  }
  const ev = r.evidence;
  if (ev?.inProcess) {
    const e = ev.inProcess;
    rows.push([
      'Execution grant per service step: mint (governor) + verify (service), p50',
      `${round(e.grantMint.p50Micros + e.grantVerify.p50Micros)} µs`,
      '—',
      '—',
      `mint ${e.grantMint.p50Micros} µs, verify ${e.grantVerify.p50Micros} µs`,
    ]);
  }
  if (ev?.log) {
    const l = ev.log;
    rows.push([
      `Transparency log append per chain through the log workflow (${l.chains} chains): one at a time p50 / concurrent, amortised`,
      `${l.appendOneAtATimeMs.p50} / ${l.appendConcurrentPerChainMs} ms`,
      '—',
      '—',
      `log history ${l.logHistory.events} events, ${Math.round(l.logHistory.bytes / 1024)} KiB for ${l.logHistory.leaves} leaves`,
    ]);
    rows.push([
      '`verify --proof` of a one-step chain with its inclusion proof vs without, p50',
      `${l.verifyProofMs.withAnchor} ms`,
      `${l.verifyProofMs.withoutAnchor} ms`,
      x(l.verifyAnchorRatio),
      '—',
    ]);
  }
  const st = r.stockDevServer;
  if (st) {
    rows.push([
      `Same 10-step comparison on a stock dev server (transfer queue limited to 20 reads/s), p50`,
      `${st.governedP50Ms} ms`,
      `${st.plainP50Ms} ms`,
      x(st.p50Ratio),
      'not comparable: ~100 ms/step floor',
    ]);
  }
  const header = ['Figure', 'Governed', 'Baseline (same run)', 'Ratio', 'Target'];
  const lines = [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((cells) => `| ${cells.join(' | ')} |`),
  ];
  const m = r.machine;
  lines.push(
    '',
    `${r.mode === 'quick' ? 'Quick run' : 'Run'} of ${r.date.slice(0, 10)} on ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.temporalCli.split('\n')[0]}, Temporal TS SDK ${m.temporalSdk}, Cedar ${m.cedar}: ` +
      `dev server (in memory, ${Object.entries(r.setup.serverDynamicConfig)
        .map(([k, v]) => `${k}=${v}`)
        .join(
          ', ',
        )}), the governor worker and the load generator on the same machine; 1-minute load ${m.loadAverageAtStart} at start. ` +
      'Baselines are plain Temporal workflows running the same no-op `execute` activity on the same worker ' +
      "(in the governor's workflow bundle; the lean baseline on a second worker in the same process, with a bundle of the baselines alone). " +
      'Reproduce with `npm run bench` (`npm run -s bench -- --json`, `-- --quick`).',
  );
  if (r.errors.length)
    lines.push('', `Phases that failed: ${r.errors.map((e) => `${e.phase} (${e.message})`).join('; ')}`);
  return `${lines.join('\n')}\n`;
}
