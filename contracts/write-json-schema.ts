import fs from 'node:fs';
import path from 'node:path';
import { PUBLISHED_SCHEMAS, publishedJsonSchemaText } from './json-schema';

// `npm run schema`: regenerates the committed JSON Schemas (contracts/*.schema.json) from the zod schemas.
const dir = path.join(__dirname, '..', '..', 'contracts').replace(`${path.sep}dist${path.sep}`, path.sep);
for (const published of PUBLISHED_SCHEMAS) {
  const target = path.join(dir, published.file);
  fs.writeFileSync(target, publishedJsonSchemaText(published));
  process.stdout.write(`wrote ${target}\n`);
}
