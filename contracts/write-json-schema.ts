import fs from 'node:fs';
import path from 'node:path';
import { chainInputJsonSchemaText } from './json-schema';

// `npm run schema`: regenerates the committed JSON Schema from the zod schemas.
const target = path.join(__dirname, '..', '..', 'contracts', 'chain-input.schema.json').replace(`${path.sep}dist${path.sep}`, path.sep);
fs.writeFileSync(target, chainInputJsonSchemaText());
process.stdout.write(`wrote ${target}\n`);
