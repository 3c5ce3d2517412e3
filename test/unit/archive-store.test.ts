import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { archiveKeyOf } from '../../contracts/archive';
import { archiveFromEnv, DirectoryArchive, openArchive, S3Archive } from '../../audit/archive';

/*
 * The proof archive's stores (audit/archive.ts) without Temporal: location parsing and its refusals, safe
 * keys, create-only directory writes under a race, and the S3 requests as a server sees them (SigV4-signed,
 * path-style, conditional create, no credential anywhere but the signature's key id).
 */

const creds = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI-secret' };

describe('archive locations', () => {
  it('defaults to <home>/archive, turns off with GOVERNOR_ARCHIVE=off, and parses s3:// locations', () => {
    expect((archiveFromEnv('/tmp/home', {}) as DirectoryArchive).location).toBe('/tmp/home/archive');
    expect(archiveFromEnv('/tmp/home', { GOVERNOR_ARCHIVE: 'off' })).toBeUndefined();
    expect(archiveFromEnv('/tmp/home', { GOVERNOR_ARCHIVE: '/srv/proofs' })!.location).toBe('/srv/proofs');
    const s3 = archiveFromEnv('/tmp/home', { GOVERNOR_ARCHIVE: 's3://governor-proofs/prod/eu/', ...creds })!;
    expect(s3).toBeInstanceOf(S3Archive);
    expect(s3.location).toBe('s3://governor-proofs/prod/eu');
    expect(s3.where('c1.proof.json')).toBe('s3://governor-proofs/prod/eu/c1.proof.json');
  });

  it('refuses S3 without credentials, bad buckets, prefixes with .., and endpoints carrying credentials, naming no secret', () => {
    expect(() => openArchive('s3://governor-proofs', {})).toThrow(/set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
    expect(() => openArchive('s3://Bad_Bucket', creds)).toThrow(/not a bucket name/);
    expect(() => openArchive('s3://governor-proofs/a/../b', creds)).toThrow(/no '\.\.'/);
    expect(() => openArchive('s3://governor-proofs//a', creds)).toThrow(/segments/);
    let message = '';
    try {
      openArchive('s3://governor-proofs', {
        ...creds,
        GOVERNOR_ARCHIVE_S3_ENDPOINT: 'http://user:hunter2@127.0.0.1:9000',
      });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/without credentials/);
    expect(message).not.toContain('hunter2');
  });

  it('takes only chain ids that are safe object keys', () => {
    expect(archiveKeyOf('chain-1:abc@x.y_z')).toBe('chain-1:abc@x.y_z.proof.json');
    for (const bad of [
      '',
      '..',
      'a..b',
      '../x',
      '/etc/passwd',
      'a/b',
      'a\\b',
      '.hidden',
      'a b',
      'x'.repeat(129),
      'é',
    ]) {
      expect(archiveKeyOf(bad)).toBeUndefined();
    }
  });
});

describe('directory archive', () => {
  it('creates an object once under a race, leaves no temp file, and never follows a planted symlink', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'governor-archive-unit-'));
    const store = new DirectoryArchive(dir);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => store.putIfAbsent('c1.proof.json', Buffer.from(`writer ${i}\n`))),
    );
    expect(results.filter((r) => r === 'written')).toHaveLength(1);
    expect(results.filter((r) => r === 'exists')).toHaveLength(7);
    expect(fs.readdirSync(dir)).toEqual(['c1.proof.json']);
    const winner = results.indexOf('written');
    expect((await store.get('c1.proof.json'))!.toString()).toBe(`writer ${winner}\n`);
    expect(await store.get('c2.proof.json')).toBeUndefined();
    fs.symlinkSync('/etc/hostname', path.join(dir, 'c3.proof.json'));
    await expect(store.get('c3.proof.json')).rejects.toThrow(/not a regular file/);
    expect(await store.putIfAbsent('c3.proof.json', Buffer.from('x'))).toBe('exists');
    await expect(store.get('../c1.proof.json')).rejects.toThrow(/leaves the archive/);
  });
});

describe('S3 archive requests', () => {
  it('signs path-style requests with SigV4, creates only (If-None-Match: *), and sends no secret', async () => {
    const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
    const objects = new Map<string, string>();
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        if (req.method === 'PUT') {
          if (req.headers['if-none-match'] === '*' && objects.has(req.url!)) res.writeHead(412).end();
          else {
            objects.set(req.url!, body);
            res.writeHead(200).end();
          }
        } else if (objects.has(req.url!)) res.writeHead(200).end(objects.get(req.url!));
        else res.writeHead(404).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const store = openArchive('s3://governor-proofs/prod', {
        ...creds,
        AWS_REGION: 'eu-central-1',
        GOVERNOR_ARCHIVE_S3_ENDPOINT: `http://127.0.0.1:${port}/`,
      });
      expect(await store.get('chain:1.proof.json')).toBeUndefined();
      expect(await store.putIfAbsent('chain:1.proof.json', Buffer.from('{"a":1}'))).toBe('written');
      expect(await store.putIfAbsent('chain:1.proof.json', Buffer.from('{"a":2}'))).toBe('exists');
      expect((await store.get('chain:1.proof.json'))!.toString()).toBe('{"a":1}');
      expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([
        'GET /governor-proofs/prod/chain%3A1.proof.json',
        'PUT /governor-proofs/prod/chain%3A1.proof.json',
        'PUT /governor-proofs/prod/chain%3A1.proof.json',
        'GET /governor-proofs/prod/chain%3A1.proof.json',
      ]);
      for (const r of seen) {
        expect(r.headers.authorization).toMatch(
          /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-central-1\/s3\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/,
        );
        expect(r.headers['x-amz-content-sha256']).toMatch(/^[0-9a-f]{64}$|^UNSIGNED-PAYLOAD$/);
        expect(JSON.stringify(r)).not.toContain(creds.AWS_SECRET_ACCESS_KEY);
      }
      expect(seen[1]!.headers['if-none-match']).toBe('*');
      expect(seen[1]!.headers.authorization).toMatch(/SignedHeaders=[^,]*if-none-match/);
    } finally {
      server.close();
    }
  });
});
