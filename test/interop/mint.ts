import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { issueApproval, issueAttestation, issueCredential } from '../../identity';
import { GovernedChainInput } from '../../contracts/chain';
import { canonicalJson, sha256Hex } from '../../core/canonical';

/**
 * Tokens for the Go interop test (test/interop/go), minted with the dev keys of a governor home the
 * way a real identity provider, attester and approval service would issue them: one fresh credential
 * per chain (its `jti` binds to the first chain presenting it), an attestation for the workload, and
 * approval votes bound to the escalated chain's step and step digest. Written to a JSON file the Go
 * test reads (GOVERNOR_INTEROP_TOKENS).
 */

export const INTEROP_WORKLOAD = 'agent:release-bot';

/** A credential and attestation for one chain. */
export interface ChainTokens {
  credential: string;
  attestation: string;
}

export interface InteropTokens {
  /** Prefix of every chain id of the run (malformed chains: `<prefix>-bad-<case>`). */
  prefix: string;
  workload: string;
  /** examples/chains/deploy-staging.yaml, started exactly as docs/other-sdks.md shows (`chain`: the file, to compare with the doc's). */
  staging: ChainTokens & { chainId: string; chain: unknown };
  /** examples/chains/deploy-prod.yaml: escalates to two sre-lead approvals under the default bundle. */
  prod: ChainTokens & {
    chainId: string;
    chain: unknown;
    stepId: string;
    /** The digest the status query must show for the step (the votes below name it). */
    stepDigest: string;
    /** An sre-lead vote sent by the `approve` signal, and another sent by the `submitApproval` update. */
    signalVote: string;
    updateVote: string;
  };
  /** Fresh tokens for each malformed start (valid, so only the malformed field can be the reason for the refusal). */
  malformed: ChainTokens[];
  /**
   * Chains the Go test starts at once and polls with the `status` query while they close
   * (`<prefix>-polled-NN`): alternately examples/chains/drop-prod-table.yaml (denied by the default
   * bundle) and examples/chains/deploy-staging.yaml (completes), each with its own tokens.
   */
  polled: PolledChain[];
}

/** One chain of the polled set: its id, the chain (an example file), the status it must end in, its tokens. */
export interface PolledChain extends ChainTokens {
  chainId: string;
  chain: unknown;
  expect: 'Denied' | 'Completed';
}

/** Mints the tokens of one interop run; chain ids are `<prefix>-staging` and `<prefix>-prod`. */
export async function mintInteropTokens(
  home: string,
  prefix: string,
  malformedCount = 16,
  polledCount = 40,
): Promise<InteropTokens> {
  const fresh = async (): Promise<ChainTokens> => ({
    credential: await issueCredential({ home, sub: INTEROP_WORKLOAD }),
    attestation: await issueAttestation({ home, sub: INTEROP_WORKLOAD }),
  });
  const example = (name: string): unknown =>
    parseYaml(fs.readFileSync(path.join(__dirname, '..', '..', 'examples', 'chains', name), 'utf8'));
  const prodChain = example('deploy-prod.yaml');
  const prodId = `${prefix}-prod`;
  const prodTokens = await fresh();
  const stepId = 'deploy';
  const stepDigest = approvalStepDigest(prodId, prodChain, stepId);
  const vote = (sub: string) =>
    issueApproval({
      home,
      sub,
      roles: ['sre-lead'],
      chainId: prodId,
      stepId,
      stepDigest,
      decision: 'approve',
      reason: `approved from Go by ${sub}`,
    });
  return {
    prefix,
    workload: INTEROP_WORKLOAD,
    staging: { chainId: `${prefix}-staging`, chain: example('deploy-staging.yaml'), ...(await fresh()) },
    prod: {
      chainId: prodId,
      chain: prodChain,
      stepId,
      stepDigest,
      ...prodTokens,
      signalVote: await vote('alice'),
      updateVote: await vote('carol'),
    },
    malformed: await Promise.all(Array.from({ length: malformedCount }, fresh)),
    polled: await Promise.all(
      Array.from({ length: polledCount }, async (_, i): Promise<PolledChain> => {
        const denied = i % 2 === 1;
        return {
          chainId: `${prefix}-polled-${String(i).padStart(2, '0')}`,
          chain: example(denied ? 'drop-prod-table.yaml' : 'deploy-staging.yaml'),
          expect: denied ? 'Denied' : 'Completed',
          ...(await fresh()),
        };
      }),
    ),
  };
}

/**
 * The step digest an approval vote must carry (activities/index.ts `authorize`): SHA-256 of the canonical
 * JSON of the step as the workflow authorizes it, after the input schema's defaults are applied.
 */
export function approvalStepDigest(chainId: string, chain: unknown, stepId: string): string {
  const parsed = GovernedChainInput.parse({ chainId, chain, credential: 'x', attestation: 'x' });
  const step = parsed.chain.steps.find((s) => s.id === stepId);
  if (!step) throw new Error(`no step ${stepId} in the chain`);
  return sha256Hex(
    canonicalJson({
      chainId,
      stepId,
      action: step.action,
      resource: step.resource,
      context: step.context,
      binding: { input: step.input, executor: step.executor },
    }),
  );
}
