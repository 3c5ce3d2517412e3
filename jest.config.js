// Three projects: pure unit tests; integration tests that share one real Temporal dev server started by
// test/harness/global-setup.ts (and stopped by global-teardown.ts); workflow tests (test/workflow/): the
// workflows with fake activities, each file on its own dev server.
// jose v6 is ESM-only: Node 20.19 loads it with require(esm), but jest's module system does not,
// so jest transforms it to CommonJS like our own TypeScript.
const swc = [
  '@swc/jest',
  { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } },
];
const transform = { '^.+\\.ts$': swc, '^.+/node_modules/(jose|openid-client|oauth4webapi)/.+\\.js$': swc };
const transformIgnorePatterns = ['/node_modules/(?!(jose|openid-client|oauth4webapi)/)'];

module.exports = {
  testTimeout: 60_000,
  // jest's summary, then one plain closing line (`tests: N passed, N failed`) for CI logs.
  reporters: ['default', '<rootDir>/test/harness/summary-reporter.js'],
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      transform,
      transformIgnorePatterns,
      testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      transform,
      transformIgnorePatterns,
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      // The transparency log's scale test (1,000 chains, ≈ 6.5–7 min here) runs in its own CI stage
      // (.ci/run npm-test-tlog): `npm run test:tlog`.
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/integration/transparency-log.test.ts'],
      globalSetup: '<rootDir>/test/harness/global-setup.ts',
      globalTeardown: '<rootDir>/test/harness/global-teardown.ts',
    },
    {
      // Workflow code with fake activities; each file starts its own dev server (test/workflow/env.ts).
      displayName: 'workflow',
      testEnvironment: 'node',
      transform,
      transformIgnorePatterns,
      testMatch: ['<rootDir>/test/workflow/**/*.test.ts'],
    },
  ],
};
