// `npm run test:cluster`: the suite on a real Temporal cluster (PostgreSQL, separate frontend, history,
// matching and worker processes; runtime/cluster.ts) with a fleet of governor worker processes. Not part
// of `jest` (jest.config.js): it builds the pinned server on first use and needs PostgreSQL from Debian.
const base = require('./jest.config.js');
const unit = base.projects.find((p) => p.displayName === 'unit');

module.exports = {
  testTimeout: 40 * 60_000,
  reporters: base.reporters,
  projects: [{ ...unit, displayName: 'cluster', testMatch: ['<rootDir>/test/cluster/**/*.test.ts'] }],
};
