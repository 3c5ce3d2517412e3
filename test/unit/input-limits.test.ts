import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { z } from 'zod';
import { loadChainFile } from '../../sdk/chain-file';
import { GovernorClient } from '../../sdk/client';
import { Chain } from '../../contracts/chain';
import { ErrorCode, GovernorError } from '../../contracts/errors';
import {
  findTooDeep,
  findTooLarge,
  formatBytes,
  formatPath,
  jsonTextTooDeep,
  MAX_JSON_DEPTH,
  MAX_WORKFLOW_INPUT_BYTES,
  nonFiniteNumber,
  utf8Length,
} from '../../contracts/limits';

/**
 * Issue 14, item 5: bad input to `run` and to votes is refused by the client before anything is
 * sent, with the limit and the field in the message — a 20 MB input, 20,000 levels of nesting, YAML
 * tags outside the core schema, oversized tokens. "Nothing sent" is observed on a real loopback
 * listener that the client's (lazy) connection would dial: it must see no connection at all.
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-limits-'));
const write = (name: string, text: string): string => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
};
const step = (input: unknown = {}) => ({
  id: 'a',
  action: 'notify',
  resource: { type: 'Channel', id: 'releases' },
  executor: { type: 'noop' },
  input,
});
const chainWith = (input: unknown) => ({ workload: 'agent:release-bot', steps: [step(input)] });
/** A credential-shaped placeholder (never verified here: the client refuses before sending). */
const token = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

/** `depth` arrays nested in one another around `leaf`, built without recursion. */
function nested(depth: number, leaf: unknown = 1): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = { x: v };
  return v;
}

/** The error `fn` throws (or rejects with); fails when it does not throw. */
async function caught(fn: () => unknown): Promise<GovernorError> {
  try {
    await fn();
  } catch (err) {
    return err as GovernorError;
  }
  throw new Error('expected an error');
}

// A loopback listener standing in for the Temporal frontend: every connection attempt is counted.
let listener: net.Server;
let connections = 0;
let gc: GovernorClient;
let connection: Connection;
beforeAll(async () => {
  listener = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address() as net.AddressInfo;
  connection = Connection.lazy({ address: `127.0.0.1:${port}` });
  gc = new GovernorClient(new Client({ connection }), 'governor-limits');
});
afterAll(async () => {
  await connection.close();
  await new Promise((resolve) => listener.close(resolve));
  expect(connections).toBe(0);
});

describe('limits (contracts/limits.ts)', () => {
  it('finds 20,000 levels of nesting without recursion and names the path, elided', () => {
    const issue = findTooDeep({ steps: [step(nested(20_000))] });
    expect(issue?.message).toBe(`nests deeper than ${MAX_JSON_DEPTH} levels (the limit for a chain document)`);
    // root, steps, [0], input, then x… down to level 65
    expect(issue?.path.slice(0, 4)).toEqual(['steps', 0, 'input', 'x']);
    expect(issue?.path).toHaveLength(MAX_JSON_DEPTH);
    expect(formatPath(issue!.path)).toBe('steps.0.input.x.x.x.x.x.x.x.…(52 more).x.x');
    expect(findTooDeep(nested(MAX_JSON_DEPTH))).toBeUndefined();
    expect(findTooDeep(nested(MAX_JSON_DEPTH + 1))).toMatchObject({ path: Array(MAX_JSON_DEPTH).fill('x') });
    expect(jsonTextTooDeep(`{"a":"[[[[",${'['.repeat(64)}${']'.repeat(64)}}`)).toEqual({ offset: 11 + 64, depth: 65 });
    expect(jsonTextTooDeep(`{"a":"\\"[[[[[",${'['.repeat(63)}${']'.repeat(63)}}`)).toBeUndefined();
  });

  it('finds a non-finite number (1e400 from another SDK) in the same walk, with its path; JSON numbers pass', () => {
    const raw = JSON.parse('{"steps":[{"input":{"ok":[1,-0,1e308],"deep":{"a":[2,{"n":-1e400}]}}}]}') as unknown;
    expect(findTooDeep(raw, MAX_JSON_DEPTH, nonFiniteNumber)).toEqual({
      path: ['steps', 0, 'input', 'deep', 'a', 1, 'n'],
      message:
        'not a JSON value: it is a non-finite number (JSON has strings, finite numbers, booleans, null, arrays and plain objects)',
    });
    expect(findTooDeep(raw)).toBeUndefined(); // without the leaf check, only depth
    expect(
      findTooDeep({ steps: [1, 'x', null, true, [1.5, { n: 0 }]] }, MAX_JSON_DEPTH, nonFiniteNumber),
    ).toBeUndefined();
    // Too deep is still found, whichever comes first in the walk.
    expect(findTooDeep({ a: nested(MAX_JSON_DEPTH + 1) }, MAX_JSON_DEPTH, nonFiniteNumber)?.message).toMatch(
      /nests deeper/,
    );
  });

  it('one walk, then zod sees no non-finite number: a megabyte of them deep in a step input is refused at the first', () => {
    // 2,900 copies of 1e400 under 57 levels each (about 1 MB of JSON). zod's union alone refuses every copy at every
    // level (seconds of a workflow task); the walk stops at the first (the count of leaves looked at is the measure).
    let text = '1e400';
    for (let i = 0; i < 57; i++) text = `{"a":${text}}`;
    const raw = JSON.parse(`{"steps":[{"input":{"v":[${Array(2900).fill(text).join(',')}]}}]}`) as unknown;
    let leaves = 0;
    const issue = findTooDeep(raw, MAX_JSON_DEPTH, (leaf) => {
      leaves++;
      return nonFiniteNumber(leaf);
    });
    expect(formatPath(issue!.path)).toBe('steps.0.input.v.0.a.a.a.a.a.…(50 more).a.a');
    expect(leaves).toBe(1);
  });

  it('measures JSON in UTF-8 bytes and names the field that makes it large', () => {
    expect(utf8Length('aé€😀')).toBe(1 + 2 + 3 + 4);
    expect(formatBytes(MAX_WORKFLOW_INPUT_BYTES)).toBe('1,048,576 bytes (1 MiB)');
    const issue = findTooLarge(
      { chain: chainWith({ small: 1, blob: 'x'.repeat(2 * 1024 * 1024) }) },
      MAX_WORKFLOW_INPUT_BYTES,
      'the input',
    );
    expect(issue?.path).toEqual(['chain', 'steps', 0, 'input', 'blob']);
    expect(issue?.message).toMatch(
      /^the input is 2,097,\d{3} bytes \(2\.0 MiB\) as JSON; the limit is 1,048,576 bytes \(1 MiB\); most of it is chain\.steps\.0\.input\.blob \(2,097,154 bytes \(2\.0 MiB\)\)$/,
    );
    expect(findTooLarge(chainWith({ blob: 'x' }), MAX_WORKFLOW_INPUT_BYTES, 'the input')).toBeUndefined();
  });

  it('guards a zod schema when run before it (the pattern for contracts/chain.ts): no stack overflow', () => {
    // Unguarded, zod's z.json() recurses once per level.
    expect(() => Chain.safeParse(chainWith(nested(20_000)))).toThrow(RangeError);
    const Guarded = z
      .unknown()
      .check((ctx) => {
        const issue = findTooDeep(ctx.value);
        if (issue) ctx.issues.push({ code: 'custom', path: issue.path, message: issue.message, input: ctx.value });
      })
      .pipe(Chain);
    const result = Guarded.safeParse(chainWith(nested(20_000)));
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((i) => [formatPath(i.path as (string | number)[]), i.message])).toEqual([
      ['steps.0.input.x.x.x.x.x.x.x.…(52 more).x.x', 'nests deeper than 64 levels (the limit for a chain document)'],
    ]);
    expect(Guarded.safeParse(chainWith({ a: 1 })).success).toBe(true);
  });
});

describe('chain files (sdk/chain-file.ts)', () => {
  it('refuses a 20 MB file before reading it, naming the limit', async () => {
    const file = write('big.json', JSON.stringify(chainWith({ blob: 'x'.repeat(20 * 1024 * 1024) })));
    const err = await caught(() => loadChainFile(file));
    expect(err).toMatchObject({ code: ErrorCode.InvalidInput, field: 'file' });
    expect(err.message).toBe(
      `${file}: the chain file is ${formatBytes(fs.statSync(file).size)}; the limit is 2,097,152 bytes (2 MiB) (nothing was sent)`,
    );
  });

  it('refuses 20,000 levels of nesting in JSON and in YAML (flow and block) with the field path, not a stack overflow', async () => {
    // JSON.stringify itself recurses: the deep file is written as text.
    const json = write(
      'deep.json',
      JSON.stringify(chainWith('@@')).replace('"@@"', `${'{"x":'.repeat(20_000)}1${'}'.repeat(20_000)}`),
    );
    const j = await caught(() => loadChainFile(json));
    expect(j).toMatchObject({ code: ErrorCode.InvalidInput, field: 'steps.0.input.x.x.x.x.x.x.x.…(52 more).x.x' });
    expect(j.message).toBe(
      `${json}: steps.0.input.x.x.x.x.x.x.x.…(52 more).x.x: nests deeper than 64 levels (the limit for a chain document)`,
    );

    const flow = write(
      'deep-flow.yaml',
      `workload: agent:release-bot\nsteps:\n  - id: a\n    action: notify\n    resource: { type: Channel, id: releases }\n    executor: { type: noop }\n    input:\n      x: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`,
    );
    const f = await caught(() => loadChainFile(flow));
    expect(f.code).toBe(ErrorCode.InvalidInput);
    expect(f.message).toMatch(
      new RegExp(
        `^${escape(flow)}: steps\\.0\\.input\\.x\\.0\\.0\\.0\\.0\\.0\\.0\\.…\\(52 more\\)\\.0\\.0 \\(line 8, column \\d+\\): nests deeper than 64 levels`,
      ),
    );

    const block = write(
      'deep-block.yaml',
      `workload: agent:release-bot\nsteps:\n  - id: a\n    action: notify\n    resource: { type: Channel, id: releases }\n    executor: { type: noop }\n    input:\n      x:\n${Array.from({ length: 200 }, (_, i) => `${' '.repeat(8 + 2 * i)}k:`).join('\n')} 1\n`,
    );
    const b = await caught(() => loadChainFile(block));
    expect(b.message).toMatch(
      new RegExp(
        `^${escape(block)}: steps\\.0\\.input\\.x\\.k\\.k\\.k\\.k\\.k\\.k\\.…\\(52 more\\)\\.k\\.k \\(line \\d+, column \\d+\\): nests deeper than 64 levels`,
      ),
    );
  });

  it('refuses YAML tags outside the core schema, naming the tag and its line', async () => {
    const base =
      'workload: agent:release-bot\nsteps:\n  - id: a\n    action: notify\n    resource: { type: Channel, id: releases }\n    executor: { type: noop }\n';
    for (const [tagged, tag] of [
      ["    input: { f: !!js/function 'function () { return 1 }' }\n", '!!js/function'],
      ['    input: { f: !foo bar }\n', '!foo'],
      ['    input: { f: !!binary aGVsbG8= }\n', '!!binary'],
      ['    input: { f: !!timestamp 2001-12-14 }\n', '!!timestamp'],
    ] as const) {
      const file = write('tagged.yaml', base + tagged);
      const err = await caught(() => loadChainFile(file));
      expect({ tag, code: err.code, message: err.message }).toEqual({
        tag,
        code: ErrorCode.InvalidInput,
        message: `${file}: line 7, column 17: YAML tag ${tag} is not allowed: chain files use the YAML core schema (!!str, !!int, !!float, !!bool, !!null, !!map, !!seq)`,
      });
    }
    // Core tags are fine, and so are the shipped examples.
    expect(
      loadChainFile(write('core.yaml', `${base}    input: { n: !!str 5, m: !!int "7" }\n`)).steps[0]!.input,
    ).toEqual({ n: '5', m: 7 });
    for (const name of ['deploy-staging.yaml', 'deploy-prod.yaml', 'drop-prod-table.yaml'])
      expect(loadChainFile(path.join(__dirname, '..', '..', 'examples', 'chains', name)).steps.length).toBeGreaterThan(
        0,
      );
    const dup = await caught(() => loadChainFile(write('dup.yaml', `${base}workload: other\n`)));
    expect(dup.message).toMatch(/: not valid YAML \(line 7, column 1\): Map keys must be unique/);
  });
});

describe('GovernorClient refuses before sending', () => {
  const creds = { credential: token, attestation: token };

  it('a 20 MB input: names the limit and the field', async () => {
    const err = await caught(() => gc.start(chainWith({ blob: 'x'.repeat(20 * 1024 * 1024) }), creds));
    expect(err).toMatchObject({ code: ErrorCode.InvalidInput, field: 'steps.0.input.blob' });
    expect(err.message).toMatch(
      /^the workflow input is 20,97\d,\d{3} bytes \(20\.0 MiB\) as JSON; the limit is 1,048,576 bytes \(1 MiB\); most of it is steps\.0\.input\.blob \(20,971,522 bytes \(20\.0 MiB\)\) \(nothing was sent\)$/,
    );
  });

  it('20,000 levels of nesting: names the field path, no stack overflow', async () => {
    const err = await caught(() => gc.start(chainWith(nested(20_000)), creds));
    expect(err).toMatchObject({ code: ErrorCode.InvalidInput, field: 'steps.0.input.x.x.x.x.x.x.x.…(52 more).x.x' });
    expect(err.message).toBe(
      'steps.0.input.x.x.x.x.x.x.x.…(52 more).x.x: nests deeper than 64 levels (the limit for a chain document) (nothing was sent)',
    );
  });

  it('oversized and malformed tokens: credential, attestation, votes', async () => {
    const long = 'a'.repeat(20_000);
    expect(await caught(() => gc.start(chainWith({}), { credential: long, attestation: token }))).toMatchObject({
      field: 'credential',
      message: 'credential: is 20,000 characters; the limit is 16,384 (16 KiB) (nothing was sent)',
    });
    expect(await caught(() => gc.start(chainWith({}), { credential: token, attestation: long }))).toMatchObject({
      field: 'attestation',
    });
    expect(await caught(() => gc.submitApproval('chain-1', long))).toMatchObject({
      code: ErrorCode.InvalidInput,
      field: 'token',
      message: 'token: is 20,000 characters; the limit is 16,384 (16 KiB) (nothing was sent)',
    });
    expect(await caught(() => gc.signalVote('chain-1', long, 'approve'))).toMatchObject({ field: 'token' });
    expect(await caught(() => gc.signalVote('chain-1', 'not a jws', 'deny'))).toMatchObject({
      field: 'token',
      message: 'token: must be a compact JWS (header.payload.signature) (nothing was sent)',
    });
    expect(await caught(() => gc.submitApproval('chain-1', 42 as unknown as string))).toMatchObject({
      field: 'token',
      message: 'token: must be a string (a compact JWS) (nothing was sent)',
    });
    expect(await caught(() => gc.refreshCredential('chain-1', { credential: long }))).toMatchObject({
      field: 'credential',
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
