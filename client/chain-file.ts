import fs from 'node:fs';
import { parse } from 'yaml';
import { Chain, formatIssues } from '../contracts/chain';
import { ErrorCode, GovernorError } from '../contracts/errors';

/** Reads a chain from a YAML or JSON file and validates it; errors name the file and the field. */
export function loadChainFile(file: string): Chain {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new GovernorError(ErrorCode.InvalidInput, `${file}: cannot read the chain file`, 'file');
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parse(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new GovernorError(ErrorCode.InvalidInput, `${file}: not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`, 'file');
  }
  const parsed = Chain.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new GovernorError(ErrorCode.InvalidInput, `${file}: invalid chain\n${formatIssues(parsed.error)}`, first ? first.path.join('.') : undefined);
  }
  return parsed.data;
}
