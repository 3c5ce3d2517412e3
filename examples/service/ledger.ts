import fs from 'node:fs';
import path from 'node:path';

/** One side effect the example service performed. */
export interface LedgerEntry {
  idempotencyKey: string;
  action: string;
  resource: string;
  at: string;
}

/**
 * The example service's record of what it executed, keyed by idempotency key: a retried activity
 * with a key already in the ledger returns the first result instead of acting again. Persisted as
 * JSON lines (append + fsync) so a crash never loses a recorded effect.
 */
export class Ledger {
  private readonly entries = new Map<string, LedgerEntry>();
  /** How many times an already-executed key was asked for again (retries that were absorbed). */
  duplicatesAbsorbed = 0;

  constructor(private readonly file?: string) {
    if (file && fs.existsSync(file)) {
      for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        const entry = JSON.parse(line) as LedgerEntry;
        this.entries.set(entry.idempotencyKey, entry);
      }
    }
  }

  /** Records the effect once; returns the existing entry when the key was already executed. */
  executeOnce(entry: LedgerEntry): { entry: LedgerEntry; duplicate: boolean } {
    const existing = this.entries.get(entry.idempotencyKey);
    if (existing) {
      this.duplicatesAbsorbed++;
      return { entry: existing, duplicate: true };
    }
    if (this.file) {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      const fd = fs.openSync(this.file, 'a');
      fs.writeSync(fd, `${JSON.stringify(entry)}\n`);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    }
    this.entries.set(entry.idempotencyKey, entry);
    return { entry, duplicate: false };
  }

  /** Every executed effect, in order. */
  all(): LedgerEntry[] {
    return [...this.entries.values()];
  }

  has(idempotencyKey: string): boolean {
    return this.entries.has(idempotencyKey);
  }
}
