// ESLint: type-aware rules everywhere, a deterministic boundary around workflows/, and the import
// boundaries between the products (service SDK, audit library, shared runtime and protocol core).
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Globals no workflow code may use (`require` is allowed in `workflows/index.ts`, with a literal path). */
const workflowGlobals = [
  { name: 'process', message: 'no process in workflows' },
  { name: 'fetch', message: 'no I/O in workflows' },
];
/** Syntax no workflow code may use. */
const workflowSyntax = [
  { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'no clocks in workflows' },
  {
    selector: "CallExpression[callee.name='setTimeout']",
    message: 'use sleep()/condition() from @temporalio/workflow',
  },
  { selector: "CallExpression[callee.name='setInterval']", message: 'use sleep() from @temporalio/workflow' },
];
// Every Node built-in by its bare name ('fs', 'fs/promises', '_http_agent', …); `node:` specifiers,
// including the scheme-only ones (node:test, node:sqlite), are refused by one pattern below.
const nodeBuiltins = builtinModules.filter((m) => !m.startsWith('node:'));

/** `no-restricted-imports` patterns refusing relative imports of the given top-level folders. */
const folders = (names, message) => ({ regex: `^(\\.\\./)+(${names.join('|')})(/|$)`, message });

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.governor/**',
      '.tools/**',
      'coverage/**',
      'bin/**',
      '*.config.js',
      'test/harness/summary-reporter.js',
      // A plain-Node upstream MCP server the gateway's tests spawn (no build step).
      'test/fixtures/mcp/*.js',
      // A plain-Node Temporal client the relay test spawns and kills mid-list.
      'test/fixtures/relay/*.js',
      // The test IdP (oidc-provider is ESM-only): plain Node, spawned by test/harness/oidc-idp.ts.
      'test/harness/oidc-idp-server.mjs',
      'eslint.config.mjs',
    ],
  },
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
            ...nodeBuiltins.map((name) => ({ name, message: 'workflows/ is deterministic: no Node built-ins' })),
            { name: 'pino', message: 'workflows/ log with `log` from @temporalio/workflow' },
            { name: 'jose', message: 'verify tokens in an activity, never in a workflow' },
            { name: '@temporalio/client', message: 'workflows/ cannot use the client' },
            { name: '@temporalio/worker', message: 'workflows/ cannot use the worker' },
            { name: '@temporalio/activity', message: 'workflows/ cannot use the activity context' },
          ],
          patterns: [
            { regex: '^node:', message: 'workflows/ is deterministic: no Node built-ins' },
            // At any depth (workflows/chain/, workflows/coordinator/ import with ../../).
            {
              group: ['**/activities', '**/activities/**'],
              allowTypeImports: true,
              message: 'workflows/ may import only types from activities/',
            },
            {
              group: [
                '**/workers',
                '**/workers/**',
                '**/sdk/**',
                '**/cli/**',
                '**/audit/**',
                '**/runtime/**',
                '**/identity',
                '**/identity/**',
                '**/policies/**',
              ],
              message: 'workflows/ may import only contracts/, core/ and other workflows/',
            },
            // core/ modules that need Node (crypto) or jose; the sandbox-safe ones (step, history) are allowed.
            {
              group: ['**/core/canonical', '**/core/digests', '**/core/receipts'],
              allowTypeImports: true,
              message: 'this core/ module is not sandbox-safe',
            },
          ],
        },
      ],
      'no-restricted-properties': [
        'error',
        {
          object: 'Date',
          property: 'now',
          message: 'no clocks in workflows: use workflow time from an activity result or timers',
        },
        { object: 'Math', property: 'random', message: 'no randomness in workflows' },
        {
          object: 'crypto',
          property: 'randomUUID',
          message: 'no randomness in workflows (uuid4() from @temporalio/workflow if needed)',
        },
      ],
      'no-restricted-syntax': ['error', ...workflowSyntax],
      'no-restricted-globals': [
        'error',
        ...workflowGlobals,
        { name: 'require', message: 'no dynamic requires in workflows' },
      ],
    },
  },
  {
    // The entry point loads each workflow type's modules only when that workflow runs: a `require` of a
    // literal path inside each exported function (webpack bundles it like an import), nothing computed.
    files: ['workflows/index.ts'],
    rules: {
      '@typescript-eslint/no-require-imports': 'off',
      'no-restricted-globals': ['error', ...workflowGlobals],
      'no-restricted-syntax': [
        'error',
        ...workflowSyntax,
        {
          selector: "Identifier[name='require']:not(CallExpression[arguments.0.type='Literal'] > Identifier.callee)",
          message: 'workflows/index.ts: only require() of a literal path',
        },
        {
          // A sibling workflow module only: never activities, Node built-ins or anything outside workflows/.
          selector: "CallExpression[callee.name='require'] > Literal.arguments:not([value=/^\\.\\/[a-z][a-z-]*$/])",
          message: "workflows/index.ts: only require('./<workflow module>')",
        },
      ],
    },
  },
  {
    // The service SDK is what services embed: no worker, activity, identity (private keys), audit or CLI code.
    files: ['sdk/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            folders(
              ['activities', 'workers', 'identity', 'audit', 'cli'],
              'sdk/ may not import worker, activity, identity, audit or CLI code',
            ),
          ],
        },
      ],
    },
  },
  {
    // The audit library checks what the worker recorded; it must not share the worker's code path.
    files: ['audit/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [folders(['activities', 'workers'], 'audit/ may not import worker or activity code')] },
      ],
    },
  },
  {
    // Shared runtime (codec, connection, logger) and the protocol core sit below every product.
    files: ['runtime/**/*.ts', 'core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            folders(
              ['activities', 'workers', 'sdk', 'cli', 'audit'],
              'runtime/ and core/ may not import the products built on them',
            ),
          ],
        },
      ],
    },
  },
);
