// ESLint: type-aware rules everywhere, and a deterministic boundary around workflows/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'http', 'http2', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers', 'tls', 'url', 'util', 'v8', 'vm', 'worker_threads', 'zlib'];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.governor/**', '.tools/**', 'coverage/**', 'bin/**', '*.config.js', 'test/harness/summary-reporter.js', 'eslint.config.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox and is replayed: no I/O, clocks or randomness.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...nodeBuiltins.flatMap((m) => [{ name: m, message: 'workflows/ is deterministic: no Node built-ins' }, { name: `node:${m}`, message: 'workflows/ is deterministic: no Node built-ins' }]),
            { name: 'pino', message: 'workflows/ log with `log` from @temporalio/workflow' },
            { name: 'jose', message: 'verify tokens in an activity, never in a workflow' },
            { name: '@temporalio/client', message: 'workflows/ cannot use the client' },
            { name: '@temporalio/worker', message: 'workflows/ cannot use the worker' },
            { name: '@temporalio/activity', message: 'workflows/ cannot use the activity context' },
          ],
          patterns: [
            { group: ['../activities', '../activities/*', '**/activities/**'], allowTypeImports: true, message: 'workflows/ may import only types from activities/' },
            { group: ['../workers/*', '../sdk/*', '../cli/*', '../audit/*', '../runtime/*', '../identity/*', '../policies/*'], message: 'workflows/ may import only contracts/, core/ and other workflows/' },
          ],
        },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'no clocks in workflows: use workflow time from an activity result or timers' },
        { object: 'Math', property: 'random', message: 'no randomness in workflows' },
        { object: 'crypto', property: 'randomUUID', message: 'no randomness in workflows (uuid4() from @temporalio/workflow if needed)' },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'no clocks in workflows' },
        { selector: "CallExpression[callee.name='setTimeout']", message: 'use sleep()/condition() from @temporalio/workflow' },
        { selector: "CallExpression[callee.name='setInterval']", message: 'use sleep() from @temporalio/workflow' },
      ],
      'no-restricted-globals': ['error', { name: 'process', message: 'no process in workflows' }, { name: 'fetch', message: 'no I/O in workflows' }, { name: 'require', message: 'no dynamic requires in workflows' }],
    },
  },
);
