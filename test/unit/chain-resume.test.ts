import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ChainResume, readResume } from '../../workflows/chain/input';

/**
 * The typed `resume` a continued chain reads (workflows/chain/input.ts): the resumes the governor wrote
 * in recorded histories parse and are used as received; anything else is refused naming the field.
 */
const histories = path.join(__dirname, '..', 'replay', 'histories');
const recordedResume = (file: string): unknown => {
  const saved = JSON.parse(fs.readFileSync(path.join(histories, file), 'utf8')) as {
    events: { workflowExecutionStartedEventAttributes?: { input: { payloads: { data: string }[] } } }[];
  };
  const data = saved.events[0]!.workflowExecutionStartedEventAttributes!.input.payloads[0]!.data;
  return (JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { resume?: unknown }).resume;
};

describe('the resume of a continued chain', () => {
  const continued = [
    'continued-as-new-last-run.json',
    'v2-continued-as-new-last-run.json',
    'v1-continued-as-new-last-run.json',
  ];
  it.each(continued)('parses the resume recorded in %s, kept as received', (file) => {
    const resume = recordedResume(file) as Parameters<typeof readResume>[0];
    expect(resume).toBeDefined();
    expect(ChainResume.safeParse(resume).success).toBe(true);
    expect(readResume(resume)).toBe(resume);
  });

  it('is absent in a run that continues nothing', () => {
    expect(readResume(undefined)).toBeUndefined();
    expect(readResume(null)).toBeUndefined();
  });

  it('refuses a step state the governor never writes, naming the field, as a non-retryable invalid input', () => {
    // A resume with its step states unpacked (recorded before the lean-chain patch packed them).
    const resume = recordedResume('v2-continued-as-new-last-run.json') as { steps: Record<string, unknown>[] };
    const bad = { ...resume, steps: [{ ...resume.steps[0], status: 'teleported' }, ...resume.steps.slice(1)] };
    let thrown: unknown;
    try {
      readResume(bad as Parameters<typeof readResume>[0]);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ApplicationFailure);
    expect(thrown).toMatchObject({
      type: 'GOVERNOR_INVALID_INPUT',
      nonRetryable: true,
      message: expect.stringMatching(/^invalid workflow input: resume\.steps\[0\]\.status: /),
    });
    expect((thrown as Error).message).not.toContain('teleported');
  });
});
