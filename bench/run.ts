import v8 from 'node:v8';

/*
 * Entry of `npm run bench`. Node 20's V8 (11.3) intermittently aborts with "Fatal error … unreachable
 * code" in Deoptimizer::DoComputeBuiltinContinuation when a Turbofan-inlined JS→Wasm call (cedar-wasm)
 * deoptimizes lazily; in this bench it killed 6 of 8 decision-phase runs, and 0 of 8 with inlining off.
 * The flag must be set before any code is optimized, so it is set here, before the bench is loaded.
 * `--v8-defaults` keeps V8's defaults (to reproduce the crash).
 */
if (!process.argv.includes('--v8-defaults')) v8.setFlagsFromString('--no-turbo-inline-js-wasm-calls');

void import('./main');
