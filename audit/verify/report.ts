import type { RunReport } from './checks/runs';

/** One check of a verification. */
export interface VerifyCheck {
  name: string;
  ok: boolean;
  /** One line: what was checked, or the first problems found. */
  detail: string;
  /** Every problem found (failed checks only). */
  problems?: string[];
}

/** The outcome of verifying one chain: one entry per check and the verdict. */
export interface VerifyReport {
  chainId: string | null;
  verdict: 'verified' | 'failed';
  /** The chain's final status (from its checkpoint), `Running`, or how its workflow ended. */
  status: string | null;
  runs: number;
  receipts: number;
  decisions: number;
  /** Bundle digests the recorded decisions name (enforced and shadow), sorted. */
  bundleDigests: string[];
  /** Revocation lists the recorded decisions saw (`<registry> seq <n> head <hash>`), sorted; absent when none names one. */
  revocationLists?: string[];
  checks: VerifyCheck[];
  /** Every run of the chain's workflow id, with its status and how it relates to the chain (empty without a run list). */
  runList: RunReport[];
}

/** Names of the checks, in report order. */
export const CheckName = {
  Proof: 'proof',
  Seal: 'seal',
  ReceiptKey: 'receipt-key',
  Bundles: 'bundles',
  History: 'history',
  Runs: 'runs',
  Replay: 'replay',
  Receipts: 'receipts',
  Checkpoint: 'checkpoint',
  Bindings: 'bindings',
  Decisions: 'decisions',
} as const;

/** Collects a check's problems; the detail lists the first few. */
export class Problems {
  readonly list: string[] = [];
  add(message: string): void {
    this.list.push(message);
  }
  get ok(): boolean {
    return this.list.length === 0;
  }
  check(name: string, okDetail: string): VerifyCheck {
    if (this.ok) return { name, ok: true, detail: okDetail };
    const shown = this.list.slice(0, 3).join('; ');
    const detail = this.list.length > 3 ? `${shown}; and ${this.list.length - 3} more` : shown;
    return { name, ok: false, detail, problems: [...this.list] };
  }
}

/** One line per check, then the verdict. */
export function formatReport(report: VerifyReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = report.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(width)}  ${c.detail}`);
  if (report.revocationLists?.length)
    lines.push(`revocation list(s) the decisions saw: ${report.revocationLists.join('; ')}`);
  lines.push(
    `${report.verdict === 'verified' ? 'verified' : 'NOT VERIFIED'}: chain ${report.chainId ?? '(unknown)'}` +
      ` (${report.status ?? 'status unknown'}; ${report.runs} run(s), ${report.receipts} receipt(s), ${report.decisions} decision(s))`,
  );
  // Every run of the workflow id, when there is more than the chain's one.
  if ((report.runList ?? []).length > 1 || report.runList?.some((r) => !r.lineage)) {
    for (const r of report.runList) lines.push(`  run ${r.runId}  ${r.status.padEnd(14)}  ${r.detail}`);
  }
  return lines.join('\n');
}
