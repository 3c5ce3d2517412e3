import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { ErrorCode, GovernorError, isGovernorError } from '../contracts/errors';
import { DEFAULT_TASK_QUEUE } from '../contracts/status';
import { connectWorker, loadTemporalSettings } from '../runtime/connection';
import { startDevServer, type DevServer } from '../workers/dev-server';
import { createLogger, installRuntimeLogger } from '../runtime/logger';
import { projectRoot, resolveTemporalCli } from '../workers/temporal-cli';
import { createGovernorWorker, defaultPoliciesDir } from '../workers/worker';
import { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { initKeys, issueApproval, issueAttestation, issueCredential } from '../identity';
import { TERMINAL_STATUSES, type ChainStatus } from '../contracts/status';
import type { ChainState } from '../contracts/state';
import { connectClient } from '../runtime/connection';
import { loadChainFile } from '../sdk/chain-file';
import { GovernorClient, type ChainExecution } from '../sdk/client';
import { registerPolicyCommands } from './commands/policy';
import { registerVerifyCommands } from './commands/verify';
import { registerCodecCommands } from './commands/codec';
import { CODEC_KEYS_ENV, loadCodec } from '../runtime/codec';

/** Exit codes (DESIGN §6). */
export const Exit = { Ok: 0, BadInput: 1, Denied: 2, Unreachable: 3 } as const;

/** Output helper: human text or one JSON document (`--json`). */
export interface Out {
  json: boolean;
  print(human: string, data?: unknown): void;
  error(message: string, data?: Record<string, unknown>): void;
}

/**
 * Human output shows chain data (resource ids, reasons) that a submitter chose: control characters
 * (terminal escapes, carriage returns) are shown as `\uXXXX` so they cannot rewrite what an approver sees.
 */
export function terminalSafe(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function makeOut(json: boolean): Out {
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

/** Maps an error to the CLI exit code. */
export function exitCodeFor(err: unknown): number {
  if (isGovernorError(err) && err.code === ErrorCode.TemporalUnreachable) return Exit.Unreachable;
  return Exit.BadInput;
}

/** GOVERNOR_HOME: keys and state (default `.governor` in the working directory). */
export function governorHome(): string {
  return path.resolve(process.env.GOVERNOR_HOME ?? '.governor');
}

function waitForShutdown(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

interface ServerOpts { ip: string; port: string; uiPort: string; db: string; headless?: boolean; installOnly?: boolean }

function parsePort(value: string, field: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new GovernorError(ErrorCode.InvalidInput, `${field}: must be a port number 1-65535`, field);
  return n;
}

async function runServer(opts: ServerOpts, out: Out): Promise<DevServer> {
  const home = governorHome();
  return startDevServer({
    ip: opts.ip,
    port: parsePort(opts.port, '--port'),
    uiPort: parsePort(opts.uiPort, '--ui-port'),
    dbFile: path.resolve(opts.db || path.join(home, 'temporal.db')),
    headless: opts.headless,
    logFile: path.join(home, 'temporal-server.log'),
    onProgress: (m) => process.stderr.write(`${m}\n`),
  }).then((server) => {
    out.print(`Temporal dev server on ${server.address}${server.uiUrl ? `, UI ${server.uiUrl}` : ''} (pid ${server.pid})`, {
      address: server.address,
      uiUrl: server.uiUrl ?? null,
      pid: server.pid,
    });
    return server;
  });
}

/** Worker options shared by `worker` and `up`. */
interface WorkerOpts {
  taskQueue: string;
  policies: string;
  requireSignedPolicy?: boolean;
  policyTrustJwks?: string;
  shadowPolicies?: string;
  watchPolicies?: boolean;
}

function workerOptions(cmd: Command): Command {
  return cmd
    .option('--policies <dir>', 'policy bundle folder', process.env.GOVERNOR_POLICIES ?? defaultPoliciesDir())
    .option('--require-signed-policy', 'refuse unsigned, tampered or untrusted bundles', process.env.GOVERNOR_REQUIRE_SIGNED_POLICY === 'true')
    .option('--policy-trust-jwks <file>', 'trusted policy-signing keys (default <GOVERNOR_HOME>/keys/policy-signing.jwks.json)')
    .option('--shadow-policies <dir>', 'candidate bundle evaluated beside the active one, never enforced')
    .option('--no-watch-policies', 'do not pick up bundle changes without a restart');
}

async function runWorker(opts: WorkerOpts, out: Out, addressOverride?: string, dataConverter?: DataConverter, serverEndpoints: string[] = []): Promise<{ stop(): Promise<void> }> {
  const logger = createLogger({ name: 'governor-worker' });
  installRuntimeLogger(logger);
  const settings = loadTemporalSettings(addressOverride ? { address: addressOverride } : {});
  const connection = await connectWorker(settings);
  const { worker } = await createGovernorWorker({
    connection,
    namespace: settings.namespace,
    taskQueue: opts.taskQueue,
    policiesDir: path.resolve(opts.policies),
    requireSignedPolicy: Boolean(opts.requireSignedPolicy),
    ...(opts.policyTrustJwks ? { policyTrustJwks: path.resolve(opts.policyTrustJwks) } : {}),
    ...(opts.shadowPolicies ? { shadowPoliciesDir: path.resolve(opts.shadowPolicies) } : {}),
    watchPolicies: opts.watchPolicies !== false,
    home: governorHome(),
    logger,
    ...(dataConverter ? { dataConverter } : {}),
    // Temporal's own endpoints are never http executor targets (SECURITY.md, "Confused deputy").
    http: { protectedAddresses: [settings.address, ...serverEndpoints, ...(process.env.GOVERNOR_HTTP_PROTECTED ?? '').split(',').map((a) => a.trim()).filter(Boolean)] },
  });
  const running = worker.run();
  out.print(`governor worker connected to ${settings.address} (namespace ${settings.namespace}, task queue ${opts.taskQueue}${dataConverter ? ', payload encryption on' : ''})`, {
    address: settings.address,
    namespace: settings.namespace,
    taskQueue: opts.taskQueue,
    payloadEncryption: Boolean(dataConverter),
  });
  return {
    async stop() {
      // Temporal's Runtime also reacts to SIGINT/SIGTERM by shutting workers down itself.
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    },
  };
}

/** Builds the commander program; every action resolves to an exit code. */
export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('governor')
    .description('Temporal Governor: governed execution of agent and service action chains on Temporal')
    .option('--json', 'machine-readable output')
    .option('--codec-keys <file>', `payload encryption key file (default $${CODEC_KEYS_ENV}; encryption is off when neither is set)`)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const out = (): Out => makeOut(Boolean(program.opts().json));
  // Payload encryption: the same key file for the worker, every client command and verify.
  const codecKeys = (): string | undefined => (program.opts().codecKeys as string | undefined) || process.env[CODEC_KEYS_ENV] || undefined;
  const dataConverter = (): DataConverter | undefined => {
    const file = codecKeys();
    return file ? loadCodec(file).dataConverter : undefined;
  };
  const client = (taskQueue: string): Promise<GovernorClient> => governorClient(taskQueue, dataConverter());
  registerPolicyCommands(program, { out, setExit, home: governorHome, codecKeys });
  registerVerifyCommands(program, { out, setExit, home: governorHome, codecKeys });
  registerCodecCommands(program, { out, setExit, home: governorHome, codecKeys, waitForShutdown });

  program
    .command('server')
    .description('start the local Temporal dev server (SQLite under .governor/, UI on :8233, governor search attributes)')
    .option('--ip <ip>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--db <file>', 'SQLite file (default <GOVERNOR_HOME>/temporal.db)', '')
    .option('--headless', 'no Web UI')
    .option('--install-only', 'only make sure the pinned Temporal CLI is available, then exit')
    .action(async (opts: ServerOpts) => {
      if (opts.installOnly) {
        const binary = resolveTemporalCli({ onProgress: (m) => process.stderr.write(`${m}\n`) });
        out().print(`temporal CLI: ${binary}`, { path: binary });
        return setExit(Exit.Ok);
      }
      const server = await runServer(opts, out());
      const signal = await waitForShutdown();
      process.stderr.write(`${signal}: stopping Temporal dev server…\n`);
      await server.stop();
      setExit(Exit.Ok);
    });

  const workerCommand = program
    .command('worker')
    .description('run the governor worker (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* apply)')
    .option('--task-queue <name>', 'task queue', process.env.GOVERNOR_TASK_QUEUE ?? DEFAULT_TASK_QUEUE);
  workerOptions(workerCommand)
    .action(async (opts: WorkerOpts) => {
      const worker = await runWorker(opts, out(), undefined, dataConverter());
      const signal = await waitForShutdown();
      process.stderr.write(`${signal}: draining worker…\n`);
      await worker.stop();
      setExit(Exit.Ok);
    });

  const upCommand = program
    .command('up')
    .description('server + worker together (the embedded default); creates development keys on first start')
    .option('--port <port>', 'frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--task-queue <name>', 'task queue', DEFAULT_TASK_QUEUE);
  workerOptions(upCommand)
    .action(async (opts: WorkerOpts & { port: string; uiPort: string }) => {
      const o = out();
      const keys = await initKeys(governorHome());
      if (keys.created.length > 0) process.stderr.write(`created development keys in ${keys.dir}\n`);
      const converter = dataConverter(); // a bad key file fails before the server starts
      const server = await runServer({ ip: '127.0.0.1', port: opts.port, uiPort: opts.uiPort, db: '' }, o);
      let worker;
      try {
        worker = await runWorker(opts, o, server.address, converter, [`localhost:${opts.uiPort}`, server.httpAddress]);
      } catch (err) {
        await server.stop();
        throw err;
      }
      if (!o.json) {
        process.stdout.write(
          [
            '',
            `Temporal UI:  ${server.uiUrl}`,
            'Try next:',
            '  npx governor demo                         # allowed, denied and escalated example chains',
            '  npx governor run examples/chains/deploy-staging.yaml --as agent:release-bot --wait',
            '  npx governor list',
            'Ctrl-C stops the worker and the server; state persists in .governor/.',
            '',
          ].join('\n'),
        );
      }
      const signal = await waitForShutdown();
      process.stderr.write(`${signal}: stopping…\n`);
      await worker.stop();
      await server.stop();
      setExit(Exit.Ok);
    });

  const keys = program.command('keys').description('development key material');
  keys
    .command('init')
    .description('create issuer, attester, approver, receipt and policy-signing keys (and JWKS) under <GOVERNOR_HOME>/keys')
    .option('--force', 'replace existing keys')
    .action(async (opts: { force?: boolean }) => {
      const result = await initKeys(governorHome(), { force: Boolean(opts.force) });
      out().print(`keys in ${result.dir}${result.created.length ? ` (created: ${result.created.join(', ')})` : ' (already present, kept)'}`, result);
      setExit(Exit.Ok);
    });

  const token = program.command('token').description('development credentials');
  token
    .command('issue')
    .description('issue a development credential (JWT-SVID shape) for a workload')
    .requiredOption('--sub <workload>', 'workload (subject)')
    .option('--ttl <seconds>', 'lifetime in seconds', '900')
    .option('--audience <aud>', 'audience', 'temporal-governor')
    .action(async (opts: { sub: string; ttl: string; audience: string }) => {
      const ttlSeconds = parseTtl(opts.ttl);
      const jwt = await issueCredential({ home: governorHome(), sub: opts.sub, audience: opts.audience, ttlSeconds });
      out().print(jwt, { token: jwt, sub: opts.sub, ttlSeconds });
      setExit(Exit.Ok);
    });

  const attest = program.command('attest').description('development attestations');
  attest
    .command('issue')
    .description('issue a development runtime attestation for a workload')
    .requiredOption('--sub <workload>', 'workload (subject)')
    .option('--trust-zone <zone>', 'trust zone', 'trusted')
    .option('--environment <env>', 'environment', 'dev')
    .option('--image-digest <digest>', 'image digest (sha256:…)')
    .option('--ttl <seconds>', 'lifetime in seconds', '900')
    .action(async (opts: { sub: string; trustZone: string; environment: string; imageDigest?: string; ttl: string }) => {
      const jwt = await issueAttestation({ home: governorHome(), sub: opts.sub, trustZone: opts.trustZone, environment: opts.environment, imageDigest: opts.imageDigest, ttlSeconds: parseTtl(opts.ttl) });
      out().print(jwt, { token: jwt, sub: opts.sub });
      setExit(Exit.Ok);
    });

  program
    .command('run <file>')
    .description('start a chain from a YAML or JSON file')
    .option('--token <jwt>', 'the workload credential')
    .option('--attestation <jwt>', 'the workload attestation (with --token)')
    .option('--as <workload>', 'issue a local development credential and attestation for this workload')
    .option('--chain-id <id>', 'chain (workflow) id')
    .option('--task-queue <name>', 'governor task queue', process.env.GOVERNOR_TASK_QUEUE ?? DEFAULT_TASK_QUEUE)
    .option('--wait', 'follow progress until the chain ends')
    .action(async (file: string, opts: { token?: string; attestation?: string; as?: string; chainId?: string; taskQueue: string; wait?: boolean }) => {
      const o = out();
      const chain = loadChainFile(file);
      const creds = await credentialsFor(opts, chain.workload);
      const gc = await client(opts.taskQueue);
      const handle = await gc.start(chain, { ...creds, chainId: opts.chainId });
      if (!opts.wait) {
        o.print(`started chain ${handle.workflowId}`, { chainId: handle.workflowId, runId: handle.firstExecutionRunId, status: 'Running' });
        return setExit(Exit.Ok);
      }
      const { state, execution } = await follow(gc, handle.workflowId, o);
      setExit(execution?.notClean ? Exit.Denied : exitForStatus(state.status));
    });

  program
    .command('status <chainId>')
    .description('show a chain: every step with its decision, and what is pending; exit 2 when it was denied, failed, revoked, or did not end cleanly (terminated, timed out, cancelled, superseded by a reset)')
    .option('--run <runId>', 'a given run of the chain (default: its latest)')
    .action(async (chainId: string, opts: { run?: string }) => {
      const gc = await client(DEFAULT_TASK_QUEUE);
      // How the run stands on the server first: a terminated or reset run still answers the query with what it said last.
      const execution = await gc.execution(chainId, opts.run);
      const state = await gc.status(chainId, execution.runId);
      const shown = execution.notClean ? (execution.resetTo ? 'Reset' : execution.status) : state.status;
      out().print(formatStatus(state, execution), { ...state, status: shown, workflowStatus: state.status, execution });
      setExit(execution.notClean ? Exit.Denied : exitForStatus(state.status));
    });

  program
    .command('list')
    .description('list chains (backed by search attributes)')
    .option('--status <status>', 'Running, AwaitingApproval, AwaitingCredential, Completed, Denied, Failed, Revoked')
    .option('--workload <sub>', 'workload')
    .option('--awaiting-approval', 'chains waiting for approvers, with the roles still needed')
    .option('--break-glass', 'chains a break-glass approval let through (after-the-fact review)')
    .option('--limit <n>', 'at most n chains', '50')
    .action(async (opts: { status?: string; workload?: string; awaitingApproval?: boolean; breakGlass?: boolean; limit: string }) => {
      const statuses = ['Running', 'AwaitingApproval', 'AwaitingCredential', 'Completed', 'Denied', 'Failed', 'Revoked'];
      if (opts.status && !statuses.includes(opts.status)) throw new GovernorError(ErrorCode.InvalidInput, `--status: must be one of ${statuses.join(', ')}`, '--status');
      if (opts.awaitingApproval && opts.status && opts.status !== 'AwaitingApproval') throw new GovernorError(ErrorCode.InvalidInput, '--awaiting-approval conflicts with --status', '--status');
      const gc = await client(DEFAULT_TASK_QUEUE);
      const chains = await gc.list({ status: opts.awaitingApproval ? 'AwaitingApproval' : opts.status, workload: opts.workload, breakGlass: opts.breakGlass, limit: Number(opts.limit) || 50 });
      const lines = chains.map(
        (c) =>
          `${c.chainId.padEnd(56)} ${c.status.padEnd(18)} ${c.executionStatus.padEnd(14)} ${(c.workload ?? '').padEnd(24)} ${c.startTime}${c.pendingRoles.length ? `  needs: ${c.pendingRoles.join(', ')}` : ''}${c.breakGlass ? '  BREAK-GLASS' : ''}`,
      );
      out().print(lines.length ? lines.join('\n') : '(no chains)', { chains });
      setExit(Exit.Ok);
    });

  for (const vote of ['approve', 'deny'] as const) {
    program
      .command(`${vote} <chainId>`)
      .description(`${vote} the step of a chain awaiting approval (exit 0 when the vote counted, 1 when rejected)`)
      .option('--step <id>', 'the step the vote is for (default: the step awaiting approval)')
      .option('--token <jwt>', 'a signed approval token')
      .option('--as <sub>', 'issue a local development approval token for this approver')
      .option('--roles <roles>', 'with --as: comma-separated roles')
      .option('--reason <text>', 'reason recorded with the vote')
      .option('--justification <text>', 'break-glass justification (required for a break-glass approval)')
      .action(async (chainId: string, opts: { step?: string; token?: string; as?: string; roles?: string; reason?: string; justification?: string }) => {
        const o = out();
        const gc = await client(DEFAULT_TASK_QUEUE);
        let token = opts.token;
        if (token && opts.as) throw new GovernorError(ErrorCode.InvalidInput, '--token and --as are exclusive', '--as');
        if (!token) {
          if (!opts.as) throw new GovernorError(ErrorCode.InvalidInput, '--token or --as <sub> --roles <r,…> is required', '--token');
          const roles = (opts.roles ?? '').split(',').map((r) => r.trim()).filter(Boolean);
          if (roles.length === 0) throw new GovernorError(ErrorCode.InvalidInput, '--roles: at least one role is required with --as', '--roles');
          const state = await gc.status(chainId);
          const pending = state.steps.find((st) => st.approval?.outcome === 'pending');
          if (!pending?.approval) throw new GovernorError(ErrorCode.InvalidInput, `chain ${chainId} has no step awaiting approval`, 'chainId');
          if (opts.step && opts.step !== pending.id) throw new GovernorError(ErrorCode.InvalidInput, `--step: step ${opts.step} is not awaiting approval (${pending.id} is)`, '--step');
          token = await issueApproval({
            home: governorHome(),
            sub: opts.as,
            roles,
            chainId,
            stepId: pending.id,
            stepDigest: pending.approval.stepDigest,
            decision: vote,
            reason: opts.reason,
            justification: opts.justification,
          });
        }
        const result = await gc.submitApproval(chainId, token);
        const v = result.verdict;
        const human = v.counted
          ? `vote counted: ${v.approver} ${v.decision}${v.breakGlass ? ' (BREAK-GLASS)' : ''}; approved by ${result.approval.approvedBy.map((a) => a.approver).join(', ') || 'nobody'}; still needed: ${result.approval.stillNeeded}`
          : `vote rejected: ${v.reason}`;
        o.print(human, { chainId, counted: v.counted, verdict: v, approval: result.approval });
        setExit(v.counted ? Exit.Ok : Exit.BadInput);
      });
  }

  program
    .command('revoke')
    .description('revoke one chain (--chain) or a workload and all its running chains (--workload)')
    .option('--chain <id>', 'chain id')
    .option('--workload <sub>', 'workload subject')
    .option('--reason <text>', 'why (recorded in receipts and status)', 'revoked by operator')
    .option('--by <who>', 'who revokes (recorded)')
    .action(async (opts: { chain?: string; workload?: string; reason: string; by?: string }) => {
      if (Boolean(opts.chain) === Boolean(opts.workload)) throw new GovernorError(ErrorCode.InvalidInput, 'exactly one of --chain or --workload is required', '--chain');
      const gc = await client(process.env.GOVERNOR_TASK_QUEUE ?? DEFAULT_TASK_QUEUE);
      if (opts.chain) {
        await gc.status(opts.chain); // NotFound → exit 1 naming the chain
        await gc.revoke(opts.chain, { reason: opts.reason, by: opts.by });
        out().print(`revoked chain ${opts.chain}`, { chainId: opts.chain, revoked: true });
      } else {
        const r = await gc.revokeWorkload({ workload: opts.workload!, reason: opts.reason, by: opts.by });
        out().print(`revoked workload ${opts.workload}; running chains signalled: ${r.chains.join(', ') || 'none'}`, { workload: opts.workload, chains: r.chains, revocations: r.revocations });
      }
      setExit(Exit.Ok);
    });

  program
    .command('demo')
    .description('run the example chains (allowed, denied, escalated) as agent:release-bot')
    .option('--task-queue <name>', 'governor task queue', process.env.GOVERNOR_TASK_QUEUE ?? DEFAULT_TASK_QUEUE)
    .action(async (opts: { taskQueue: string }) => {
      const o = out();
      const gc = await client(opts.taskQueue);
      const examples = path.join(projectRoot(), 'examples', 'chains');
      const results: { file: string; chainId: string; status: string; reason?: string; pendingRoles?: string[] }[] = [];
      for (const name of ['deploy-staging.yaml', 'drop-prod-table.yaml', 'deploy-prod.yaml']) {
        const chain = loadChainFile(path.join(examples, name));
        const creds = await credentialsFor({ as: chain.workload }, chain.workload);
        const handle = await gc.start(chain, creds);
        const state = await settle(gc, handle.workflowId);
        results.push({ file: name, chainId: handle.workflowId, status: state.status, reason: state.reason, pendingRoles: state.pendingRoles });
        if (!o.json) {
          process.stdout.write(`${name.padEnd(22)} ${state.status.padEnd(17)} ${handle.workflowId}${state.reason ? `  (${state.reason})` : ''}\n`);
          if (state.status === 'AwaitingApproval') {
            process.stdout.write(`  needs ${state.pendingRoles?.join(', ')}: npx governor approve ${handle.workflowId} --as alice --roles sre-lead (and a second approver)\n`);
          }
        }
      }
      if (o.json) o.print('', { results });
      else process.stdout.write("Open the Temporal UI (http://localhost:8233) to read each chain's history.\n");
      setExit(Exit.Ok);
    });

  return program;
}

function parseTtl(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 86_400) throw new GovernorError(ErrorCode.InvalidInput, '--ttl: must be whole seconds between 1 and 86400', '--ttl');
  return n;
}

async function credentialsFor(opts: { token?: string; attestation?: string; as?: string }, workload: string): Promise<{ credential: string; attestation: string }> {
  if (opts.token) {
    if (opts.as) throw new GovernorError(ErrorCode.InvalidInput, '--token and --as are exclusive', '--as');
    if (!opts.attestation) throw new GovernorError(ErrorCode.InvalidInput, '--attestation: required with --token', '--attestation');
    return { credential: opts.token, attestation: opts.attestation };
  }
  const sub = opts.as ?? workload;
  const home = governorHome();
  return {
    credential: await issueCredential({ home, sub }),
    attestation: await issueAttestation({ home, sub }),
  };
}

async function governorClient(taskQueue: string, dataConverter?: DataConverter): Promise<GovernorClient> {
  const settings = loadTemporalSettings();
  const connection = await connectClient(settings);
  return new GovernorClient(new Client({ connection, namespace: settings.namespace, ...(dataConverter ? { dataConverter } : {}) }), taskQueue);
}

function exitForStatus(status: ChainStatus): number {
  return status === 'Denied' || status === 'Failed' || status === 'Revoked' ? Exit.Denied : Exit.Ok;
}

/** Human rendering of a chain state (`shownStatus`: the status to print when the execution did not end cleanly). */
export function formatState(state: ChainState, shownStatus: string = state.status): string {
  const lines = [`chain ${state.chainId}  workload ${state.workload}  status ${shownStatus}${state.pending && shownStatus === state.status ? `  pending: ${state.pending}` : ''}`];
  if (state.reason) lines.push(`reason: ${state.reason}`);
  for (const s of state.steps) {
    const d = s.decision;
    const why = d && d.effect !== 'allow' ? ` [${d.determiningPolicies.join(', ') || d.errors.join('; ')}]` : '';
    lines.push(`  ${s.id.padEnd(20)} ${s.action.padEnd(14)} ${s.resource.padEnd(32)} ${s.status.padEnd(12)} ${d ? d.effect : ''}${why}${s.error ? ` — ${s.error}` : ''}`);
    const a = s.approval;
    if (a) {
      lines.push(`      approval ${a.outcome}: ${a.quorum} of ${a.eligibleRoles.join('/')} by ${a.deadlineAt ?? a.deadline}; approved by ${a.approvedBy.map((x) => `${x.approver} (${x.roles.join(',')})`).join(', ') || 'nobody yet'}; still needed: ${a.stillNeeded}`);
      for (const v of a.verdicts) lines.push(`        vote ${v.seq} via ${v.via}: ${v.counted ? 'counted' : 'rejected'}${v.approver ? ` ${v.approver}` : ''}${v.decision ? ` ${v.decision}` : ''}${v.repeat ? ' (repeat)' : ''}${v.breakGlass ? ' BREAK-GLASS' : ''} — ${v.reason}`);
    }
    if (s.breakGlass) lines.push(`      break-glass by ${s.breakGlass.approver}: ${s.breakGlass.justification}`);
    const c = s.coordination;
    if (c) {
      lines.push(`      coordination ${c.domain}: ${c.status}${c.position !== undefined ? `, place ${c.position} in the queue` : ''}${c.order !== undefined ? `, order ${c.order}` : ''}${c.conflictWith ? `, conflict with ${c.conflictWith}` : ''}${c.version !== undefined ? `, resource version ${c.version}` : ''}${c.reason ? ` — ${c.reason}` : ''}`);
    }
    if (d && d.effect !== 'allow') for (const [id, ann] of Object.entries(d.annotations)) lines.push(`      ${id}: ${Object.entries(ann).map(([k, v]) => `@${k}("${v}")`).join(' ')}`);
  }
  if (state.policyDigest) lines.push(`policy bundle ${state.policyDigest}`);
  return lines.join('\n');
}

/** `status`: the chain state, and how its run stands on the server when that is not what the workflow says. */
export function formatStatus(state: ChainState, execution: ChainExecution): string {
  const shown = execution.notClean ? (execution.resetTo ? 'Reset' : execution.status) : state.status;
  const lines = [formatState(state, shown)];
  if (execution.resetTo) {
    lines.push(`reset: run ${execution.runId} was reset by an operator into run ${execution.resetTo}; it is not the chain's latest run (the workflow last reported ${state.status})`);
  } else if (execution.notClean) {
    lines.push(`execution ${execution.status}: the chain did not end cleanly; its workflow was stopped outside the governor (it last reported ${state.status}${state.pending ? `, pending: ${state.pending}` : ''})`);
  }
  if (execution.resetFrom) {
    lines.push(`reset: this run was made by an operator's reset of run ${execution.resetFrom.runId} at event ${execution.resetFrom.eventId}; \`governor verify ${state.chainId}\` checks that no step ran in both`);
  }
  return lines.join('\n');
}

/** Polls a chain until it ends or waits for a person (approval or credential). */
async function settle(gc: GovernorClient, chainId: string): Promise<ChainState> {
  for (let failures = 0; ; ) {
    try {
      const state = await gc.status(chainId);
      if (TERMINAL_STATUSES.includes(state.status) || state.status === 'AwaitingApproval' || state.status === 'AwaitingCredential') return state;
    } catch (err) {
      if (isGovernorError(err) || ++failures > 100) throw err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function follow(gc: GovernorClient, chainId: string, o: Out): Promise<{ state: ChainState; execution?: ChainExecution }> {
  let last = '';
  let failures = 0;
  for (;;) {
    let state: ChainState;
    try {
      state = await gc.status(chainId);
      failures = 0;
    } catch (err) {
      // A chain whose first workflow task has not run yet cannot answer queries: retry briefly.
      if (isGovernorError(err) || ++failures > 100) throw err;
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    const line = `${state.status} ${state.steps.map((s) => `${s.id}:${s.status}`).join(' ')}`;
    if (line !== last && !o.json) process.stdout.write(`${chainId}: ${terminalSafe(line)}\n`);
    last = line;
    if (TERMINAL_STATUSES.includes(state.status)) {
      o.print(formatState(state), { chainId, status: state.status, reason: state.reason ?? null, state });
      return { state };
    }
    // Terminated, timed out or reset outside the governor: the workflow will never say so itself.
    const execution = await gc.execution(chainId, undefined, { resetFrom: false });
    if (execution.notClean) {
      const shown = execution.resetTo ? 'Reset' : execution.status;
      o.print(formatStatus(state, execution), { chainId, status: shown, reason: state.reason ?? null, state, execution });
      return { state, execution };
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** CLI entry point: returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let code: number = Exit.Ok;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? Exit.Ok : Exit.BadInput;
    }
    const json = argv.includes('--json');
    makeOut(json).error((err as Error).message, isGovernorError(err) ? { code: err.code, field: err.field } : undefined);
    return exitCodeFor(err);
  }
}
