/**
 * Which modules a workflow execution evaluates. The SDK evaluates the bundle's modules again for every
 * execution, and building zod schemas is most of that cost: the entry point loads a workflow type's
 * modules only when it runs, and a chain does not load the coordinator's or a session's schemas.
 * Each check records the modules that are actually required (a recording `jest.doMock`).
 */
const WATCHED = [
  'governed-chain',
  'session',
  'revocation-registry',
  'coordinator',
  'credential-claim',
  'notify',
  'archive',
  'fleet-registry',
  'transparency-log',
].map((m) => `../../workflows/${m}`);
const CONTRACTS = ['coordination', 'session', 'transparency', 'revocation', 'fleet', 'chain', 'slot-verdict'].map(
  (m) => `../../contracts/${m}`,
);

/** The watched modules that requiring `entry` loads, in a fresh module registry. */
function loadedBy(entry: string): string[] {
  const loaded: string[] = [];
  jest.resetModules();
  for (const m of [...WATCHED, ...CONTRACTS]) {
    jest.doMock(m, () => {
      loaded.push(m.replace('../../', ''));
      return jest.requireActual(m);
    });
  }
  jest.isolateModules(() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- through the recording mocks
    require(entry);
  });
  for (const m of [...WATCHED, ...CONTRACTS]) jest.dontMock(m);
  return loaded.sort();
}

describe('workflow module loading', () => {
  it('the entry point loads no workflow type and no schema module until a workflow runs', () => {
    expect(loadedBy('../../workflows')).toEqual([]);
  });

  it('exports every workflow type under its recorded name, as a function of that name', () => {
    const entry = jest.requireActual<Record<string, unknown>>('../../workflows');
    expect(Object.keys(entry).sort()).toEqual(
      [
        'coordinatorWorkflow',
        'credentialClaimWorkflow',
        'governedChainWorkflow',
        'governedSessionWorkflow',
        'governorArchiveWorkflow',
        'governorArchiverWorkflow',
        'governorFleetWorkflow',
        'governorNotifyWorkflow',
        'revocationRegistryWorkflow',
        'transparencyLogWorkflow',
      ].sort(),
    );
    for (const [name, fn] of Object.entries(entry)) {
      expect(typeof fn).toBe('function');
      expect((fn as () => unknown).name).toBe(name);
    }
  });

  it('each export runs the workflow of its name from its own module', async () => {
    const modules: Record<string, string[]> = {
      'governed-chain': ['governedChainWorkflow'],
      session: ['governedSessionWorkflow'],
      'revocation-registry': ['revocationRegistryWorkflow'],
      coordinator: ['coordinatorWorkflow'],
      'credential-claim': ['credentialClaimWorkflow'],
      notify: ['governorNotifyWorkflow'],
      archive: ['governorArchiveWorkflow', 'governorArchiverWorkflow'],
      'fleet-registry': ['governorFleetWorkflow'],
      'transparency-log': ['transparencyLogWorkflow'],
    };
    jest.resetModules();
    for (const [module, names] of Object.entries(modules)) {
      // The real module exports each name as a function (what the stand-in below replaces).
      const real = jest.requireActual<Record<string, unknown>>(`../../workflows/${module}`);
      for (const name of names) expect(typeof real[name]).toBe('function');
      jest.doMock(`../../workflows/${module}`, () =>
        Object.fromEntries(
          names.map((name) => [name, (...args: unknown[]) => Promise.resolve({ module, name, args })]),
        ),
      );
    }
    let entry: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- through the stand-in modules
      entry = require('../../workflows');
    });
    for (const [module, names] of Object.entries(modules))
      for (const name of names)
        await expect(entry[name]!('input', 2)).resolves.toEqual({ module, name, args: ['input', 2] });
    for (const module of Object.keys(modules)) jest.dontMock(`../../workflows/${module}`);
  });

  it("a chain loads the chain's schemas and a slot verdict's, not the coordinator's, a session's or the registries'", () => {
    expect(loadedBy('../../workflows/governed-chain')).toEqual([
      'contracts/chain',
      'contracts/slot-verdict',
      'workflows/governed-chain',
    ]);
  });

  it('the coordinator and a session do load their own schemas (the recording sees a load)', () => {
    expect(loadedBy('../../workflows/coordinator')).toEqual(
      expect.arrayContaining(['contracts/coordination', 'workflows/coordinator']),
    );
    expect(loadedBy('../../workflows/session')).toEqual(
      expect.arrayContaining(['contracts/session', 'workflows/session', 'workflows/governed-chain']),
    );
  });
});
