import { statSync } from 'node:fs';
import path from 'node:path';
import type { DataConverter } from '@temporalio/common';

/**
 * What every command file shares: exit codes, the output helper and the context `buildProgram`
 * passes to each `register…Commands`. `cli.ts` re-exports `Exit`, `Out` and `terminalSafe`; they live
 * here so that the command files need not import the entry point that imports them.
 */

/** Exit codes (DESIGN §6). */
export const Exit = { Ok: 0, BadInput: 1, Denied: 2, Unreachable: 3 } as const;

/** Output helper: human text or one JSON document (`--json`). */
export interface Out {
  json: boolean;
  print(human: string, data?: unknown): void;
  error(message: string, data?: Record<string, unknown>): void;
}

/** What `buildProgram` passes to the command files (runtime, identity, chains). */
export interface CommandContext {
  out: () => Out;
  setExit: (code: number) => void;
  /** GOVERNOR_HOME: keys and state. */
  home: () => string;
  /** The payload codec of `--codec-keys` / GOVERNOR_CODEC_KEYS (undefined: encryption off). */
  dataConverter: () => DataConverter | undefined;
}

/**
 * Human output shows chain data (resource ids, reasons) that a submitter chose: control characters
 * (terminal escapes, carriage returns) are shown as `\uXXXX` so they cannot rewrite what an approver sees.
 */
export function terminalSafe(text: string): string {
  const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g, escape);
}

export function makeOut(json: boolean): Out {
  return {
    json,
    print(human, data) {
      process.stdout.write(json ? `${JSON.stringify(data ?? { message: human })}\n` : `${terminalSafe(human)}\n`);
    },
    error(message, data) {
      if (json) process.stdout.write(`${JSON.stringify({ error: message, ...(data ?? {}) })}\n`);
      process.stderr.write(`governor: ${terminalSafe(message)}\n`);
    },
  };
}

/**
 * GOVERNOR_HOME: keys and state. Without it, the nearest `.governor` directory in the working directory
 * or one of its parents (as git finds `.git`), so a command run from a subdirectory of the project uses
 * the project's keys instead of creating untrusted ones; with none, `.governor` in the working directory.
 */
export function governorHome(): string {
  if (process.env.GOVERNOR_HOME) return path.resolve(process.env.GOVERNOR_HOME);
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, '.governor');
    if (isDirectory(candidate)) return candidate;
    if (path.dirname(dir) === dir) return path.resolve('.governor');
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
