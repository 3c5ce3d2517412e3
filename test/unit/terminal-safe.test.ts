import { terminalSafe } from '../../cli/cli';

describe('terminalSafe (human CLI output of submitter-chosen text)', () => {
  it('shows terminal escapes and carriage returns as \\u escapes, keeps newlines and tabs', () => {
    // A resource id that would erase the line an approver reads and print "safe" instead.
    expect(terminalSafe('Channel::"ops\u001b[2K\rsafe"\n\tnext')).toBe('Channel::"ops\\u001b[2K\\u000dsafe"\n\tnext');
    expect(terminalSafe('a\u0007b\u009bc\u2028d')).toBe('a\\u0007b\\u009bc\\u2028d');
    expect(terminalSafe('plain text: ünïcode ✓')).toBe('plain text: ünïcode ✓');
  });
});
