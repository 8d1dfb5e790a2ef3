// Bundles the page's ES modules (the explorer, its worker, embed.html and the
// <headscope-view> element) into public/dist/ with esbuild and copies the
// wasm core (headscope_core.mjs and its two builds, headscope_core.wasm and
// headscope_core_fma.wasm, and the same two with threads with their glue and
// pthread script: wasm/features.mjs) from the Emscripten build beside them.
// Usage: node web/build.mjs [--wasm-dir DIR]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argIndex = process.argv.indexOf('--wasm-dir');
const wasmDir = argIndex > 0 ? process.argv[argIndex + 1] : process.env.HEADSCOPE_WASM_DIR || path.join(root, 'build', 'wasm', 'wasm');
const dist = path.join(root, 'public', 'dist');

fs.mkdirSync(dist, { recursive: true });
for (const file of ['headscope_core.mjs', 'headscope_core.wasm', 'headscope_core_fma.wasm', 'headscope_core_threads.mjs',
  'headscope_core_threads.worker.js', 'headscope_core_threads.wasm', 'headscope_core_threads_fma.wasm']) {
  const from = path.join(wasmDir, file);
  if (!fs.existsSync(from)) {
    console.error(`web/build.mjs: ${from} is missing; build the wasm module first`);
    process.exit(1);
  }
  fs.copyFileSync(from, path.join(dist, file));
}

const result = await esbuild.build({
  entryPoints: {
    boot: path.join(root, 'web', 'boot', 'boot.js'),
    main: path.join(root, 'web', 'boot', 'main.js'),
    worker: path.join(root, 'web', 'worker', 'worker.js'),
    tokenizer_worker: path.join(root, 'web', 'worker', 'tokenizer_worker.js'),
    embed: path.join(root, 'web', 'boot', 'embed.js'),
    element: path.join(root, 'web', 'boot', 'element.js'),
    // Loaded by the page and the worker only when they read a parquet corpus.
    parquet: path.join(root, 'wasm', 'corpus_parquet.mjs'),
  },
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  sourcemap: true,
  minify: true,
  logLevel: 'warning',
  metafile: true,
  // The Emscripten module (headscope_core.mjs, imported by the worker) is
  // bundled from the copy beside the bundles: one download fewer before the
  // worker can start the core. (The .wasm is fetched and compiled by the
  // worker itself, see compileWasm.)
  plugins: [{
    name: 'headscope-core',
    setup(build) {
      build.onResolve({ filter: /^\.\/headscope_core\.mjs$/ }, () => ({ path: path.join(dist, 'headscope_core.mjs') }));
    },
  }],
});
// The worker shares policy with the page only through web/shared/ and its
// protocol: a page module in its bundle is an error.
const workerInputs = Object.keys(result.metafile.outputs[path.relative(process.cwd(), path.join(dist, 'worker.js'))]?.inputs || {});
const pageModules = workerInputs.filter((input) => {
  const file = path.relative(root, path.resolve(process.cwd(), input));
  return file.startsWith(`web${path.sep}`) && !/^web[\\/](worker|shared)[\\/]/.test(file);
});
if (!workerInputs.length || pageModules.length) {
  console.error(`web/build.mjs: the worker imports page modules: ${pageModules.join(', ') || '(no metafile entry for worker.js)'}`);
  process.exit(1);
}
console.log(`bundled web/ into ${path.relative(root, dist)}/`);
