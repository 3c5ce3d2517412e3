import fs from 'node:fs';
import path from 'node:path';
import type { DecisionLogLine } from '../contracts/decision-log';

/**
 * The decision log (DESIGN §12): one JSON line per decision, to a file with size-based rotation and/or
 * an HTTP endpoint (batched, retried, bounded buffer). Its loss never changes a decision: `write` never
 * throws and never waits; a failed write or a dropped line is counted (`onError`, `onDropped`).
 */

/** Where decision lines go. */
export interface DecisionLogSink {
  readonly name: string;
  /** Never throws, never blocks on the network. */
  write(line: DecisionLogLine): void;
  /** Flushes what is buffered (best effort, bounded by the sink's retries). */
  close(): Promise<void>;
}

/** Counters a sink reports to (the worker's metrics). */
export interface SinkEvents {
  onError?: (sink: string) => void;
  onDropped?: (sink: string, lines: number) => void;
}

/** Options of the file sink. */
export interface FileSinkOptions extends SinkEvents {
  file: string;
  /** Rotate when the file would exceed this size (default 100 MiB). */
  maxBytes?: number;
  /** Rotated files kept: `<file>.1` (newest) … `<file>.<maxFiles>` (default 5). */
  maxFiles?: number;
  /** Longest a line waits in memory before it is appended (default 200 ms). */
  flushMs?: number;
  /** Lines waiting to be appended; beyond, the oldest are dropped and counted (default 10,000). */
  maxBuffer?: number;
}

/**
 * Appends lines to a file, rotating by size: `<file>` → `<file>.1` → … → `<file>.<maxFiles>` (the oldest
 * is removed). `write` only serializes the line into a bounded in-memory buffer; one appender at a time
 * writes the buffer out in batches (every `flushMs`, or at once when `batchLines` wait), so a decision
 * never waits on the disk. Each line is written whole, in order, once; `close()` writes what waits.
 */
export class FileDecisionSink implements DecisionLogSink {
  readonly name = 'file';
  private size: number;
  private readonly maxBytes: number;
  private readonly maxFiles: number;
  private readonly flushMs: number;
  private readonly maxBuffer: number;
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private static readonly batchLines = 512;

  constructor(private readonly options: FileSinkOptions) {
    this.maxBytes = options.maxBytes ?? 100 * 1024 * 1024;
    this.maxFiles = Math.max(1, options.maxFiles ?? 5);
    this.flushMs = options.flushMs ?? 200;
    this.maxBuffer = Math.max(1, options.maxBuffer ?? 10_000);
    fs.mkdirSync(path.dirname(options.file), { recursive: true });
    this.size = fileSize(options.file);
  }

  write(line: DecisionLogLine): void {
    try {
      this.pending.push(`${JSON.stringify(line)}\n`);
      if (this.pending.length > this.maxBuffer) {
        const over = this.pending.length - this.maxBuffer;
        this.pending.splice(0, over);
        this.options.onDropped?.(this.name, over);
      }
      if (this.pending.length >= FileDecisionSink.batchLines) this.kick();
      else if (!this.timer && !this.writing) {
        this.timer = setTimeout(() => this.kick(), this.flushMs);
        this.timer.unref();
      }
    } catch {
      this.options.onError?.(this.name);
    }
  }

  /** Starts appending unless an append is under way (which takes the rest when it ends). */
  private kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      if (this.pending.length > 0) this.kick();
    });
  }

  /** Appends every waiting line, rotating at `maxBytes` between lines. */
  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const lines = this.pending;
      this.pending = [];
      let chunk = '';
      let chunkLines = 0;
      let chunkBytes = 0;
      const flush = async (): Promise<void> => {
        if (chunkLines === 0) return;
        try {
          await fs.promises.appendFile(this.options.file, chunk, { mode: 0o640 });
          this.size += chunkBytes;
        } catch {
          this.options.onError?.(this.name);
          this.options.onDropped?.(this.name, chunkLines);
        }
        chunk = '';
        chunkLines = 0;
        chunkBytes = 0;
      };
      for (const text of lines) {
        const bytes = Buffer.byteLength(text);
        const used = this.size + chunkBytes;
        if (used > 0 && used + bytes > this.maxBytes) {
          await flush();
          try {
            this.rotate();
          } catch {
            this.options.onError?.(this.name);
          }
        }
        chunk += text;
        chunkLines++;
        chunkBytes += bytes;
      }
      await flush();
    }
  }

  private rotate(): void {
    const f = this.options.file;
    this.size = 0;
    fs.rmSync(`${f}.${this.maxFiles}`, { force: true });
    for (let i = this.maxFiles - 1; i >= 1; i--) {
      if (fs.existsSync(`${f}.${i}`)) fs.renameSync(`${f}.${i}`, `${f}.${i + 1}`);
    }
    if (fs.existsSync(f)) fs.renameSync(f, `${f}.1`);
  }

  /** Appends what waits now (resolves once it is written or counted lost). */
  async flush(): Promise<void> {
    while (this.writing || this.pending.length > 0) {
      if (!this.writing) this.kick();
      await this.writing;
    }
  }

  close(): Promise<void> {
    return this.flush();
  }
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** Options of the HTTP sink. */
export interface HttpSinkOptions extends SinkEvents {
  /** POSTed as `application/x-ndjson`, one batch per request. */
  url: string;
  /** Extra request headers (e.g. authorization): never logged. */
  headers?: Record<string, string>;
  /** Lines per request (default 500). */
  batchSize?: number;
  /** Longest a line waits before its batch is sent (default 1000 ms). */
  flushMs?: number;
  /** Lines kept while the endpoint is slow or down; beyond, the oldest are dropped (default 10,000). */
  maxBuffer?: number;
  /** Attempts per batch before it is dropped (default 5; backoff 200 ms doubling, at most 5 s). */
  maxAttempts?: number;
  /** Per request (default 5000 ms). */
  timeoutMs?: number;
}

/** Sends lines in batches to an HTTP endpoint, with retries and a bounded buffer. */
export class HttpDecisionSink implements DecisionLogSink {
  readonly name = 'http';
  private buffer: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private closed = false;
  private readonly batchSize: number;
  private readonly flushMs: number;
  private readonly maxBuffer: number;
  private readonly maxAttempts: number;
  private readonly timeoutMs: number;

  constructor(private readonly options: HttpSinkOptions) {
    const url = new URL(options.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('decision log url: http or https only');
    this.batchSize = options.batchSize ?? 500;
    this.flushMs = options.flushMs ?? 1000;
    this.maxBuffer = options.maxBuffer ?? 10_000;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 5);
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  write(line: DecisionLogLine): void {
    try {
      this.buffer.push(JSON.stringify(line));
      if (this.buffer.length > this.maxBuffer) {
        const over = this.buffer.length - this.maxBuffer;
        this.buffer.splice(0, over);
        this.options.onDropped?.(this.name, over);
      }
      if (this.buffer.length >= this.batchSize) this.kick();
      else if (!this.timer && !this.closed) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.kick();
        }, this.flushMs);
        this.timer.unref();
      }
    } catch {
      this.options.onError?.(this.name);
    }
  }

  /** Starts sending unless a send is under way (which picks up the rest when it ends). */
  private kick(): void {
    if (this.sending) return;
    this.sending = this.drain().finally(() => {
      this.sending = undefined;
      if (this.buffer.length > 0 && !this.closed) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, this.batchSize);
      if (!(await this.send(batch))) this.options.onDropped?.(this.name, batch.length);
    }
  }

  private async send(batch: string[]): Promise<boolean> {
    const body = `${batch.join('\n')}\n`;
    let delay = 200;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      try {
        const res = await fetch(this.options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', ...this.options.headers },
          body,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return true;
        this.options.onError?.(this.name);
        // A 4xx other than 408/429 will not succeed on retry.
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) return false;
      } catch {
        this.options.onError?.(this.name);
      }
      if (attempt < this.maxAttempts) {
        await new Promise((r) => setTimeout(r, delay).unref());
        delay = Math.min(delay * 2, 5000);
      }
    }
    return false;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sending) await this.sending;
    if (this.buffer.length > 0) await this.drain();
  }
}

/** Writes every line to each sink. */
export class DecisionLog {
  constructor(private readonly sinks: DecisionLogSink[]) {}

  get enabled(): boolean {
    return this.sinks.length > 0;
  }

  write(line: DecisionLogLine): void {
    for (const sink of this.sinks) sink.write(line);
  }

  async close(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close().catch(() => undefined)));
  }
}

/** Decision log settings (CLI flags or environment). */
export interface DecisionLogSettings {
  file?: string;
  maxBytes?: number;
  maxFiles?: number;
  url?: string;
  headers?: Record<string, string>;
}

/**
 * Settings from the environment: GOVERNOR_DECISION_LOG (file), GOVERNOR_DECISION_LOG_MAX_BYTES,
 * GOVERNOR_DECISION_LOG_FILES, GOVERNOR_DECISION_LOG_URL, GOVERNOR_DECISION_LOG_HEADERS (JSON object,
 * e.g. an authorization header; never logged).
 */
export function decisionLogSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): DecisionLogSettings {
  const int = (name: string): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: must be a positive integer`);
    return n;
  };
  let headers: Record<string, string> | undefined;
  if (env.GOVERNOR_DECISION_LOG_HEADERS) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(env.GOVERNOR_DECISION_LOG_HEADERS);
    } catch {
      parsed = undefined;
    }
    if (!parsed || typeof parsed !== 'object' || Object.values(parsed).some((v) => typeof v !== 'string'))
      throw new Error('GOVERNOR_DECISION_LOG_HEADERS: must be a JSON object of strings'); // the value is never echoed
    headers = parsed as Record<string, string>;
  }
  const maxBytes = int('GOVERNOR_DECISION_LOG_MAX_BYTES');
  const maxFiles = int('GOVERNOR_DECISION_LOG_FILES');
  return {
    ...(env.GOVERNOR_DECISION_LOG ? { file: env.GOVERNOR_DECISION_LOG } : {}),
    ...(env.GOVERNOR_DECISION_LOG_URL ? { url: env.GOVERNOR_DECISION_LOG_URL } : {}),
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    ...(maxFiles !== undefined ? { maxFiles } : {}),
    ...(headers ? { headers } : {}),
  };
}

/** The decision log of these settings (no sink: disabled). */
export function createDecisionLog(settings: DecisionLogSettings, events: SinkEvents = {}): DecisionLog {
  const sinks: DecisionLogSink[] = [];
  if (settings.file)
    sinks.push(
      new FileDecisionSink({
        file: path.resolve(settings.file),
        ...(settings.maxBytes !== undefined ? { maxBytes: settings.maxBytes } : {}),
        ...(settings.maxFiles !== undefined ? { maxFiles: settings.maxFiles } : {}),
        ...events,
      }),
    );
  if (settings.url)
    sinks.push(
      new HttpDecisionSink({
        url: settings.url,
        ...(settings.headers ? { headers: settings.headers } : {}),
        ...events,
      }),
    );
  return new DecisionLog(sinks);
}
