import fs from 'node:fs';
import path from 'node:path';

/**
 * docs/other-sdks.md shows the Go code CI runs (test/interop/go/governor.go, between its BEGIN and END
 * lines): the doc's Go block must be that region byte for byte, so the two cannot drift apart.
 */

const root = path.join(__dirname, '..', '..');
const BEGIN = '// BEGIN docs/other-sdks.md\n';
const END = '// END docs/other-sdks.md\n';

/** The marked region of the Go file, without the blank lines gofmt keeps before the END line. */
function goRegion(): string {
  const src = fs.readFileSync(path.join(root, 'test', 'interop', 'go', 'governor.go'), 'utf8');
  expect(src.split(BEGIN)).toHaveLength(2);
  expect(src.split(END)).toHaveLength(2);
  const region = src.slice(src.indexOf(BEGIN) + BEGIN.length, src.indexOf(END));
  return `${region.replace(/\n+$/, '')}\n`;
}

/** The fenced ```go blocks of the doc, each without its fences. */
function docGoBlocks(): string[] {
  const doc = fs.readFileSync(path.join(root, 'docs', 'other-sdks.md'), 'utf8');
  return [...doc.matchAll(/^```go\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

describe('docs/other-sdks.md', () => {
  it('shows exactly the Go code the interop test runs (test/interop/go/governor.go)', () => {
    const region = goRegion();
    expect(region).toContain('func StartChain(');
    expect(region).toContain('"governedChainWorkflow"');
    expect(docGoBlocks()).toEqual([region]);
  });

  it('links every published schema that exists', () => {
    const doc = fs.readFileSync(path.join(root, 'docs', 'other-sdks.md'), 'utf8');
    const linked = [...doc.matchAll(/\]\(\.\.\/contracts\/([a-z-]+\.schema\.json)\)/g)].map((m) => m[1]!);
    const published = fs.readdirSync(path.join(root, 'contracts')).filter((f) => f.endsWith('.schema.json'));
    expect([...new Set(linked)].sort()).toEqual(published.sort());
  });
});
