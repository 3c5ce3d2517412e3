import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { PUBLISHED_SCHEMAS, publishedJsonSchema } from '../../contracts/json-schema';

/*
 * The published JSON Schemas (contracts/*.schema.json) compiled by an independent validator: ajv
 * (draft 2020-12, strict mode). ajv and ajv-formats are already in node_modules (through
 * @temporalio/worker's webpack); they are only used by tests.
 */

let compiled: { ajv: Ajv2020; validators: Map<string, ValidateFunction> } | undefined;

function load(): { ajv: Ajv2020; validators: Map<string, ValidateFunction> } {
  if (!compiled) {
    const ajv = new Ajv2020({ strict: true, allErrors: true });
    addFormats(ajv);
    compiled = {
      ajv,
      validators: new Map(PUBLISHED_SCHEMAS.map((p) => [p.file, ajv.compile(publishedJsonSchema(p))])),
    };
  }
  return compiled;
}

/** The ajv instance the schemas are compiled with (to check a schema itself). */
export function schemaAjv(): Ajv2020 {
  return load().ajv;
}

/** The validation errors of `doc` against `contracts/<file>` (`[]`: valid), as `<instancePath> <message>`. */
export function schemaErrors(file: string, doc: unknown): string[] {
  const validate = load().validators.get(file);
  if (!validate) throw new Error(`no published schema ${file}`);
  return validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message ?? ''}`);
}

/** True when `doc` is valid against `contracts/<file>`. */
export function schemaOk(file: string, doc: unknown): boolean {
  return schemaErrors(file, doc).length === 0;
}
