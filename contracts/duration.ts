/** Durations written as `90s`, `30m`, `2h`, `1d` (manifest and policy annotations). Sandbox-safe. */
export const DURATION_PATTERN = /^\d+(ms|s|m|h|d)$/;

/** Parses a duration (`30m`) to milliseconds; throws on anything else. */
export function durationMs(value: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  if (!m) throw new Error(`invalid duration "${value}"`);
  const unit = m[2] as 'ms' | 's' | 'm' | 'h' | 'd';
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit];
}
