import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { SEARCH_ATTRIBUTES_FOR_CLI } from '../../contracts/search-attributes';
import { TEMPORAL_SERVER_VERSION } from '../../runtime/cluster';

// Docker cannot run on the development machines, so the production topology is checked as data.
const root = path.join(__dirname, '..', '..');
const compose = parse(fs.readFileSync(path.join(root, 'docker-compose.yml'), 'utf8')) as {
  services: Record<
    string,
    {
      image?: string;
      build?: { dockerfile: string };
      environment?: Record<string, string>;
      depends_on?: Record<string, { condition: string }> | string[];
      command?: string[];
    }
  >;
};

describe('docker-compose.yml', () => {
  const services = compose.services;

  it('has the production services', () => {
    expect(Object.keys(services).sort()).toEqual([
      'governor-worker',
      'postgresql',
      'temporal',
      'temporal-admin-tools',
      'temporal-schema',
      'temporal-ui',
    ]);
  });

  it('pins every image by an explicit version tag (no latest)', () => {
    for (const [name, svc] of Object.entries(services)) {
      expect(svc.image).toBeDefined();
      const tag = svc.image!.split(':')[1];
      expect({ name, tag }).toEqual({ name, tag: expect.stringMatching(/^\d+\.\d+(\.\d+)?[\w.-]*$/) });
    }
  });

  it('runs Temporal on PostgreSQL', () => {
    expect(services.temporal!.environment!.DB).toBe('postgres12');
    expect(services.temporal!.environment!.POSTGRES_SEEDS).toBe('postgresql');
    expect(services.temporal!.depends_on).toHaveProperty('postgresql');
  });

  it('sets up the schemas with the SQL tool of the same server version, as `governor cluster up` does', () => {
    const schema = services['temporal-schema']!;
    expect(schema.image).toBe(services.temporal!.image!.replace('temporalio/server', 'temporalio/admin-tools'));
    const script = schema.command!.join(' ');
    expect(script).toContain('setup-schema -v 0.0');
    expect(script).toContain('update-schema -d "/etc/temporal/schema/postgresql/v12/$$dir/versioned"');
    expect(script).toContain('temporal_visibility:visibility');
    expect(services.temporal!.depends_on).toHaveProperty('temporal-schema');
    // The version `governor cluster up` builds (runtime/cluster.ts), which the pinned CLI embeds.
    expect(services.temporal!.image).toBe(`temporalio/server:${TEMPORAL_SERVER_VERSION.slice(1)}`);
  });

  it('wires the UI and the worker to the Temporal frontend through environment variables', () => {
    expect(services['temporal-ui']!.environment!.TEMPORAL_ADDRESS).toBe('temporal:7233');
    const worker = services['governor-worker']!;
    expect(worker.environment!.TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(worker.environment!.TEMPORAL_NAMESPACE).toBe('default');
    expect(worker.build!.dockerfile).toBe('Dockerfile');
    expect(fs.existsSync(path.join(root, 'Dockerfile'))).toBe(true);
    expect(worker.depends_on).toHaveProperty('temporal-admin-tools');
  });

  it('registers every governor search attribute with its type', () => {
    const script = services['temporal-admin-tools']!.command!.join(' ');
    for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES_FOR_CLI)) expect(script).toContain(`${name}=${type}`);
  });

  it('builds the worker image from a pinned base and runs `governor worker`', () => {
    const dockerfile = fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
    expect(bases.length).toBeGreaterThan(0);
    for (const base of bases) expect(base).toMatch(/^node:\d+\.\d+/);
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "bin\/governor.js", "worker"\]/);
  });
});
