import { z } from 'zod';
import { GovernedChainInput } from './chain';

/**
 * The JSON Schema (draft 2020-12) of `governedChainWorkflow`'s input, generated from the zod schemas
 * so services in other languages validate exactly what the governor accepts.
 */
export function chainInputJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(GovernedChainInput, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...schema,
    $id: 'https://temporal-governor.dev/schemas/chain-input.schema.json',
    title: 'governedChainWorkflow input',
    description: 'The single argument of the governedChainWorkflow workflow type (task queue "governor" by default). Generated from contracts/chain.ts: run `npm run schema`.',
  };
}

/** The committed file's text (stable key order, trailing newline). */
export function chainInputJsonSchemaText(): string {
  return `${JSON.stringify(chainInputJsonSchema(), null, 2)}\n`;
}
