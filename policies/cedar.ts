import v8 from 'node:v8';

// Node 20's optimizing compiler intermittently aborts the process ("Fatal error … unreachable
// code") when it deoptimizes an inlined JS→Wasm call into cedar-wasm (seen in 6 of 8 benchmark
// runs). Turning that inlining off before cedar-wasm loads avoided it in every run since.
v8.setFlagsFromString('--no-turbo-inline-js-wasm-calls');

// eslint-disable-next-line @typescript-eslint/no-require-imports
const cedar = require('@cedar-policy/cedar-wasm/nodejs') as typeof import('@cedar-policy/cedar-wasm/nodejs');

/** The Cedar WebAssembly bindings, loaded after the V8 flag above is set. */
export default cedar;
