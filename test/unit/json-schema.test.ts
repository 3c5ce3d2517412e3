import fs from 'node:fs';
import path from 'node:path';
import { chainInputJsonSchemaText } from '../../contracts/json-schema';

describe('the committed JSON Schema of the chain input', () => {
  it('is exactly what the zod schemas generate (run `npm run schema` after changing contracts/chain.ts)', () => {
    const committed = fs.readFileSync(path.join(__dirname, '..', '..', 'contracts', 'chain-input.schema.json'), 'utf8');
    expect(committed).toBe(chainInputJsonSchemaText());
  });

  it('describes the fields other SDKs must send, strictly', () => {
    const schema = JSON.parse(chainInputJsonSchemaText()) as { required: string[]; additionalProperties: boolean; properties: Record<string, { properties?: Record<string, unknown> }> };
    expect(schema.required).toEqual(expect.arrayContaining(['chainId', 'chain', 'credential', 'attestation']));
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties.chain!.properties!)).toEqual(expect.arrayContaining(['workload', 'owner', 'steps']));
  });
});
