import { Command } from 'commander';
import { exitCodeFor } from '../../cli/cli';
import { registerVerifyCommands } from '../../cli/commands/verify';

/** Outcome of an in-process `governor --json verify …`: the exit code, the JSON it printed, the error it threw. */
export interface VerifyCliResult {
  code: number;
  json: Record<string, unknown>;
  error?: unknown;
}

/**
 * Runs `governor --json verify <args>` in process with `home` as GOVERNOR_HOME and the prebuilt test
 * bundle; `env` is set for the call and restored after it, `codecKeys` is the codec key file (if any).
 */
export async function runVerifyCli(
  args: string[],
  options: { home: string; env?: Record<string, string>; codecKeys?: string },
): Promise<VerifyCliResult> {
  let code = -1;
  const printed: unknown[] = [];
  const program = new Command('governor').option('--json').exitOverride();
  registerVerifyCommands(program, {
    out: () => ({ json: true, print: (_human, data) => printed.push(data) }),
    setExit: (c) => (code = c),
    home: () => options.home,
    workflowBundle: { codePath: process.env.GOVERNOR_TEST_BUNDLE! },
    codecKeys: () => options.codecKeys,
  });
  const env = options.env ?? {};
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    await program.parseAsync(['node', 'governor', '--json', 'verify', ...args]);
    return { code, json: printed[0] as Record<string, unknown> };
  } catch (err) {
    return { code: exitCodeFor(err), json: {}, error: err };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
