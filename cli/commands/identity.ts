import path from 'node:path';
import type { Command } from 'commander';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import { initKeys, issueAttestation, issueCredential } from '../../identity';
import { ROTATABLE_KEYS, rotateKey, type RotatableKind } from '../../identity/keys';
import { Exit, type CommandContext } from '../context';

/** `governor keys init`, `governor token issue`, `governor attest issue`: development key material. */

/** `--ttl`: whole seconds, 1 s to one day. */
export function parseTtl(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 86_400) {
    throw new GovernorError(ErrorCode.InvalidInput, '--ttl: must be whole seconds between 1 and 86400', '--ttl');
  }
  return n;
}

interface IssueOpts {
  sub: string;
  ttl: string;
}

/**
 * `<group> issue` (`token issue`, `attest issue`): a development JWT for a workload (`--sub`, `--ttl`, plus
 * the options `extra` adds), printed alone, or with `--json` as `{ token, sub, …fields }`.
 */
function issueCommand<O extends IssueOpts>(
  group: Command,
  ctx: CommandContext,
  spec: {
    description: string;
    extra: (cmd: Command) => Command;
    issue: (opts: O, home: string, ttlSeconds: number) => Promise<string>;
    /** More JSON fields besides `token` and `sub`. */
    fields?: (ttlSeconds: number) => Record<string, unknown>;
  },
): void {
  const cmd = group
    .command('issue')
    .description(spec.description)
    .requiredOption('--sub <workload>', 'workload (subject)')
    .option('--ttl <seconds>', 'lifetime in seconds', '900');
  spec.extra(cmd).action(async (opts: O) => {
    const ttlSeconds = parseTtl(opts.ttl);
    const jwt = await spec.issue(opts, ctx.home(), ttlSeconds);
    ctx.out().print(jwt, { token: jwt, sub: opts.sub, ...spec.fields?.(ttlSeconds) });
    ctx.setExit(Exit.Ok);
  });
}

/** Adds `governor keys init`, `governor token issue` and `governor attest issue`. */
export function registerIdentityCommands(program: Command, ctx: CommandContext): void {
  const keys = program.command('keys').description('development key material');
  keys
    .command('init')
    .description(
      'create issuer, attester, approver, receipt and policy-signing keys (and JWKS) under <GOVERNOR_HOME>/keys',
    )
    .option('--force', 'replace existing keys (refused for keys that signed evidence: use `keys rotate`)')
    .action(async (opts: { force?: boolean }) => {
      const result = await initKeys(ctx.home(), { force: Boolean(opts.force) });
      const created = result.created.length ? ` (created: ${result.created.join(', ')})` : ' (already present, kept)';
      ctx.out().print(`keys in ${result.dir}${created}`, result);
      ctx.setExit(Exit.Ok);
    });

  keys
    .command('rotate')
    .description(
      'rotate the receipt, approver or policy-signing key: a new key signs from now on, the old public key ' +
        'stays in the JWKS with its validity window so what it signed still verifies',
    )
    .argument('<kind>', `one of ${Object.keys(ROTATABLE_KEYS).join(', ')}`)
    .option(
      '--key-file <file>',
      'the private key lives in this file (given to workers by reference), not under <GOVERNOR_HOME>/keys; the JWKS stays there',
    )
    .action(async (kind: string, opts: { keyFile?: string }) => {
      if (!Object.hasOwn(ROTATABLE_KEYS, kind)) {
        throw new GovernorError(
          ErrorCode.InvalidInput,
          `keys rotate: kind must be one of ${Object.keys(ROTATABLE_KEYS).join(', ')}`,
          'kind',
        );
      }
      const result = await rotateKey(
        ctx.home(),
        ROTATABLE_KEYS[kind as RotatableKind],
        new Date(),
        opts.keyFile ? { privateKeyPath: path.resolve(opts.keyFile) } : {},
      );
      ctx.out().print(`${result.name}: ${result.kid} signs from now on; ${result.retiredKid} retired`, result);
      ctx.setExit(Exit.Ok);
    });

  const token = program.command('token').description('development credentials');
  issueCommand<IssueOpts & { audience: string }>(token, ctx, {
    description: 'issue a development credential (JWT-SVID shape) for a workload',
    extra: (cmd) => cmd.option('--audience <aud>', 'audience', 'temporal-governor'),
    issue: (opts, home, ttlSeconds) => issueCredential({ home, sub: opts.sub, audience: opts.audience, ttlSeconds }),
    fields: (ttlSeconds) => ({ ttlSeconds }),
  });

  type AttestOpts = IssueOpts & { trustZone: string; environment: string; imageDigest?: string };
  const attest = program.command('attest').description('development attestations');
  issueCommand<AttestOpts>(attest, ctx, {
    description: 'issue a development runtime attestation for a workload',
    extra: (cmd) =>
      cmd
        .option('--trust-zone <zone>', 'trust zone', 'trusted')
        .option('--environment <env>', 'environment', 'dev')
        .option('--image-digest <digest>', 'image digest (sha256:…)'),
    issue: (opts, home, ttlSeconds) =>
      issueAttestation({
        home,
        sub: opts.sub,
        trustZone: opts.trustZone,
        environment: opts.environment,
        imageDigest: opts.imageDigest,
        ttlSeconds,
      }),
  });
}
