/**
 * A workflow registered under the governed chain's type by a rogue worker (not the governor): it completes
 * at once with whatever result it is given, e.g. a real chain's checkpoint copied under another chain id.
 * Bundled only by the transparency log test, to show the log refuses to anchor it.
 */
export async function governedChainWorkflow(input: { forged: unknown }): Promise<unknown> {
  return input.forged;
}
