import { z } from 'zod';
import { CoordinatorInput } from '../../contracts/coordination';
import { MAX_LISTED_ISSUES, formatIssuePath, invalidInputMessage } from '../../contracts/issues';

describe('formatIssuePath / invalidInputMessage', () => {
  it('writes keys with dots and indexes in brackets, with an optional prefix', () => {
    expect(formatIssuePath({ path: ['state', 'queue', 0, 'requestId'] })).toBe('state.queue[0].requestId');
    expect(formatIssuePath({ path: ['steps', 2, 'executor', 'timeoutMs'] }, 'chain')).toBe(
      'chain.steps[2].executor.timeoutMs',
    );
    expect(formatIssuePath({ path: [0, 'a'] }, 'list')).toBe('list[0].a');
    expect(formatIssuePath({ path: [] })).toBe('(root)');
    expect(formatIssuePath({ path: [] }, 'submission')).toBe('submission');
  });

  it('names every zod issue by its path, joined by "; ", without the value given', () => {
    const secret = 'eyJhbGciOiJFZERTQSJ9.c2VjcmV0LXRva2Vu.c2ln';
    const parsed = z
      .strictObject({ name: z.string(), items: z.array(z.strictObject({ id: z.int() })) })
      .safeParse({ name: 7, items: [{ id: 1 }, { id: secret }], extra: true });
    expect(parsed.success).toBe(false);
    const message = invalidInputMessage(parsed.error!);
    expect(message).toBe(
      'name: Invalid input: expected string, received number; items[1].id: Invalid input: expected number, received string; (root): Unrecognized key: "extra"',
    );
    expect(message).not.toContain(secret);
  });

  it('lists at most MAX_LISTED_ISSUES issues and counts the rest', () => {
    const parsed = z.array(z.string()).safeParse(Array.from({ length: MAX_LISTED_ISSUES + 3 }, (_, i) => i));
    const parts = invalidInputMessage(parsed.error!, 'ids').split('; ');
    expect(parts).toHaveLength(MAX_LISTED_ISSUES + 1);
    expect(parts[0]).toBe('ids[0]: Invalid input: expected string, received number');
    expect(parts[MAX_LISTED_ISSUES]).toBe('and 3 more issue(s)');
  });

  it('names the deep field of an invalid coordinator carry', () => {
    const parsed = CoordinatorInput.safeParse({
      domain: 'd',
      carry: {
        head: { seq: 0, hash: 'h' },
        inbox: [{ kind: 'release', release: { chainId: 'c', stepId: 's', completed: 'yes' } }],
        queue: [],
        versions: {},
        recent: [],
        decided: [],
        counters: { batch: 0, order: 0, tie: 0, grant: 0 },
        runs: 1,
      },
    });
    expect(invalidInputMessage(parsed.error!)).toBe(
      'carry.inbox[0].release.completed: Invalid input: expected boolean, received string',
    );
  });
});
