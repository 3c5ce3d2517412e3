import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { loadCodec, writeKeyFile } from '../../runtime/codec';
import {
  checkToken,
  CODEC_TOKEN_ENV,
  readTokenFile,
  startCodecServer,
  writeTokenFile,
  type CodecOidcOptions,
} from '../../workers/codec-server';
import { createLogger } from '../../runtime/logger';

/** What the CLI passes to `registerCodecCommands`. */
export interface CodecCommandContext {
  out: () => { json: boolean; print(human: string, data?: unknown): void };
  setExit: (code: number) => void;
  home: () => string;
  /** The key file from `--codec-keys` / GOVERNOR_CODEC_KEYS, if any. */
  codecKeys: () => string | undefined;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM). */
  waitForShutdown: () => Promise<string>;
}

/** Default key file and token file under GOVERNOR_HOME. */
export function defaultCodecFiles(home: string): { keys: string; token: string } {
  return { keys: path.join(home, 'keys', 'codec-keys.json'), token: path.join(home, 'keys', 'codec-token') };
}

/** Adds `governor codec keygen` and `governor codec-server`. */
export function registerCodecCommands(program: Command, ctx: CodecCommandContext): void {
  const codec = program.command('codec').description('payload encryption (AES-256-GCM) keys');
  codec
    .command('keygen')
    .description(
      'create a codec key file (or, with --rotate, add a new primary key and keep the old ones) and a codec server token',
    )
    .option('--file <path>', 'key file (default <GOVERNOR_HOME>/keys/codec-keys.json)')
    .option(
      '--token-file <path>',
      'codec server token, created when missing (default <GOVERNOR_HOME>/keys/codec-token)',
    )
    .option('--rotate', 'add a new key to an existing file and make it the primary')
    .action((opts: { file?: string; tokenFile?: string; rotate?: boolean }) => {
      const defaults = defaultCodecFiles(ctx.home());
      const keys = writeKeyFile(opts.file ?? defaults.keys, { rotate: Boolean(opts.rotate) });
      const token = writeTokenFile(opts.tokenFile ?? defaults.token);
      ctx
        .out()
        .print(
          [
            `codec keys ${keys.created ? 'created' : 'rotated'}: ${keys.file} (primary ${keys.primary}; keys ${keys.keyIds.join(', ')})`,
            `codec server token: ${token.file}${token.created ? ' (created)' : ' (kept)'}`,
            `turn encryption on with GOVERNOR_CODEC_KEYS=${keys.file} (worker and clients alike)`,
          ].join('\n'),
          {
            keyFile: keys.file,
            primary: keys.primary,
            keyIds: keys.keyIds,
            created: keys.created,
            tokenFile: token.file,
            tokenCreated: token.created,
          },
        );
      ctx.setExit(0);
    });

  program
    .command('codec-server')
    .description('serve the payload codec to the Temporal UI and CLI (POST /encode, /decode; bearer token required)')
    .option('--port <port>', 'port', '8081')
    .option('--host <ip>', 'address to bind', '127.0.0.1')
    .option('--keys <file>', 'codec key file (default --codec-keys / GOVERNOR_CODEC_KEYS)')
    .option(
      '--token-file <file>',
      `bearer token file (default ${CODEC_TOKEN_ENV}, else <GOVERNOR_HOME>/keys/codec-token)`,
    )
    .option('--ui-origin <origin...>', 'Temporal UI origin(s) allowed by CORS', ['http://localhost:8233'])
    .option(
      '--oidc-issuer <iss>',
      "also accept Temporal UI users' access tokens from this OIDC issuer (with --oidc-audience, --oidc-jwks, --oidc-role)",
    )
    .option('--oidc-audience <aud>', 'audience the access tokens must name')
    .option('--oidc-jwks <file>', "the identity provider's JWKS (a local file; never fetched per request)")
    .option(
      '--oidc-role <claim=value>',
      'the claim (string or list) that must contain the value, e.g. groups=governor-auditors',
    )
    .action(
      async (opts: {
        port: string;
        host: string;
        keys?: string;
        tokenFile?: string;
        uiOrigin: string[];
        oidcIssuer?: string;
        oidcAudience?: string;
        oidcJwks?: string;
        oidcRole?: string;
      }) => {
        const port = Number(opts.port);
        if (!Number.isInteger(port) || port < 1 || port > 65535)
          throw new GovernorError(ErrorCode.InvalidInput, '--port: must be a port number 1-65535', '--port');
        const keyFile = opts.keys ?? ctx.codecKeys();
        if (!keyFile)
          throw new GovernorError(
            ErrorCode.InvalidInput,
            '--keys: a codec key file is required (or GOVERNOR_CODEC_KEYS)',
            '--keys',
          );
        for (const origin of opts.uiOrigin) {
          let parsed: URL | undefined;
          try {
            parsed = new URL(origin);
          } catch {
            parsed = undefined;
          }
          if (!parsed || parsed.origin !== origin)
            throw new GovernorError(
              ErrorCode.InvalidInput,
              `--ui-origin: ${JSON.stringify(origin)} is not an origin (scheme://host[:port])`,
              '--ui-origin',
            );
        }
        const envToken = process.env[CODEC_TOKEN_ENV];
        const token = opts.tokenFile
          ? readTokenFile(opts.tokenFile)
          : envToken !== undefined && envToken !== ''
            ? checkToken(envToken, CODEC_TOKEN_ENV)
            : readTokenFile(defaultCodecFiles(ctx.home()).token);
        const { codec } = loadCodec(keyFile);
        const logger = createLogger({ name: 'governor-codec-server' });
        const oidc = oidcOptions(opts);
        const server = await startCodecServer({
          codec,
          token,
          port,
          host: opts.host,
          corsOrigins: opts.uiOrigin,
          logger,
          ...(oidc ? { oidc } : {}),
        });
        ctx.out().print(`codec server on ${server.url} (POST /encode, /decode; CORS for ${opts.uiOrigin.join(', ')})`, {
          url: server.url,
          corsOrigins: opts.uiOrigin,
        });
        const signal = await ctx.waitForShutdown();
        process.stderr.write(`${signal}: stopping codec server…\n`);
        await server.close();
        ctx.setExit(0);
      },
    );
}

/** The `--oidc-*` options as CodecOidcOptions: all four or none; errors name the option. */
export function oidcOptions(opts: {
  oidcIssuer?: string;
  oidcAudience?: string;
  oidcJwks?: string;
  oidcRole?: string;
}): CodecOidcOptions | undefined {
  const given = {
    '--oidc-issuer': opts.oidcIssuer,
    '--oidc-audience': opts.oidcAudience,
    '--oidc-jwks': opts.oidcJwks,
    '--oidc-role': opts.oidcRole,
  };
  const present = Object.entries(given).filter(([, v]) => v !== undefined && v !== '');
  if (present.length === 0) return undefined;
  const missing = Object.entries(given).find(([, v]) => v === undefined || v === '');
  if (missing)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `${missing[0]}: required with ${present.map(([k]) => k).join(', ')}`,
      missing[0],
    );
  const role = /^([A-Za-z0-9_:./-]{1,128})=(.{1,256})$/.exec(opts.oidcRole!);
  if (!role)
    throw new GovernorError(
      ErrorCode.InvalidInput,
      '--oidc-role: expected <claim>=<value>, e.g. groups=governor-auditors',
      '--oidc-role',
    );
  let jwks: unknown;
  try {
    jwks = JSON.parse(fs.readFileSync(path.resolve(opts.oidcJwks!), 'utf8'));
  } catch (err) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      `--oidc-jwks: cannot read a JSON file at ${opts.oidcJwks} (${(err as NodeJS.ErrnoException).code ?? 'not JSON'})`,
      '--oidc-jwks',
    );
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (
    !Array.isArray(keys) ||
    keys.length === 0 ||
    keys.some(
      (k) => typeof k !== 'object' || k === null || typeof (k as { kty?: unknown }).kty !== 'string' || 'd' in k,
    )
  ) {
    throw new GovernorError(
      ErrorCode.InvalidInput,
      '--oidc-jwks: must be a JWKS ({"keys": [...]}) of public keys',
      '--oidc-jwks',
    );
  }
  return {
    issuer: opts.oidcIssuer!,
    audience: opts.oidcAudience!,
    jwks: jwks as CodecOidcOptions['jwks'],
    role: { claim: role[1]!, value: role[2]! },
  };
}
