import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';

/**
 * Copies the default bundle to a temp folder, applies `patch` to its parsed manifest, then replaces
 * text in (or adds) the given files.
 */
export function defaultBundleWith(
  patch: (manifest: Record<string, unknown>) => void,
  files: Record<string, string | ((text: string) => string)> = {},
): string {
  const src = path.join(__dirname, '..', '..', 'policies', 'default');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-bundle-'));
  fs.cpSync(src, dir, { recursive: true });
  const file = path.join(dir, 'manifest.yaml');
  const manifest = parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  patch(manifest);
  fs.writeFileSync(file, stringify(manifest));
  for (const [name, change] of Object.entries(files)) {
    const target = path.join(dir, name);
    const next = typeof change === 'string' ? change : change(fs.readFileSync(target, 'utf8'));
    fs.writeFileSync(target, next);
  }
  return dir;
}
