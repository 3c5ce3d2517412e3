import pino, { Logger as PinoLogger } from 'pino';
import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import { Runtime } from '@temporalio/worker';

/** Field names whose values must never reach a log line (tokens, secrets, raw payloads). */
const REDACT = [
  'credential',
  'attestation',
  'token',
  'jwt',
  'authorization',
  'apiKey',
  'api_key',
  'secret',
  'password',
  'privateKey',
  '*.credential',
  '*.attestation',
  '*.token',
  '*.jwt',
  '*.authorization',
  '*.apiKey',
  '*.secret',
  '*.password',
  '*.privateKey',
  'headers.authorization',
  '*.headers.authorization',
];

/** The governor's structured logger (JSON lines on stderr; `LOG_LEVEL` sets the level). */
export function createLogger(
  options: { level?: string; name?: string; destination?: pino.DestinationStream } = {},
): PinoLogger {
  return pino(
    {
      name: options.name ?? 'governor',
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      redact: { paths: REDACT, censor: '[redacted]' },
      base: { pid: process.pid },
    },
    options.destination ?? pino.destination(2),
  );
}

/** Adapts pino to Temporal's `Logger` so the SDK's own logs (and workflow `log`) are structured. */
export class PinoTemporalLogger implements Logger {
  constructor(private readonly pino: PinoLogger) {}

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    const method =
      level === 'TRACE'
        ? 'trace'
        : level === 'DEBUG'
          ? 'debug'
          : level === 'INFO'
            ? 'info'
            : level === 'WARN'
              ? 'warn'
              : 'error';
    this.pino[method](meta ?? {}, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}

let installed = false;

/**
 * Installs pino as Temporal's runtime logger; once per process (Temporal's Runtime is a singleton).
 * `sdkMetricsAddress`: also export the SDK's own worker metrics (Prometheus, e.g. `127.0.0.1:9465`).
 */
export function installRuntimeLogger(logger: PinoLogger, options: { sdkMetricsAddress?: string } = {}): void {
  if (installed) return;
  Runtime.install({
    logger: new PinoTemporalLogger(logger),
    telemetryOptions: {
      logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
      ...(options.sdkMetricsAddress
        ? { metrics: { prometheus: { bindAddress: options.sdkMetricsAddress, countersTotalSuffix: true } } }
        : {}),
    },
  });
  installed = true;
}
