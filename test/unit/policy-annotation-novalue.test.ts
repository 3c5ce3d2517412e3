import path from 'node:path';
import { analyseBundle, loadBundle } from '../../policies/bundle';

// Found by the Cedar fuzz test (seed -191496239): a `//` inserted after `@escalate` leaves an annotation without a
// value, which Cedar gives as null; the bundle analysis threw a TypeError instead of a located error.
test('an annotation without a value (@escalate) is refused with a located error, not a TypeError', () => {
  const loaded = loadBundle(path.join(__dirname, '../../policies/default'));
  const files = loaded.files.map((f) => ({ path: f.path, content: f.content }));
  const target = files.find((f) => /@escalate\("/.test(f.content))!;
  const content = target.content.replace(/@escalate\("/, '@escalate//("');
  const result = analyseBundle(
    files.map((f) => (f.path === target.path ? { path: f.path, content } : f)),
    'annotation without a value',
  );
  expect(result.bundle).toBeUndefined();
  expect(result.issues).toContainEqual(
    expect.objectContaining({ severity: 'error', file: target.path, message: expect.stringMatching(/@escalate/) }),
  );
});
