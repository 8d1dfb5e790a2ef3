// Loads the wasm core under node (the CLI and the node tests). The Emscripten
// module is built for web and worker only; under node it gets its bytes as
// wasmBinary, which also sidesteps Emscripten 3.1.6's fetch-by-path bug.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import { coreScript, coreWasmFile } from './features.mjs';
import { createHeadscope, HeadscopeError } from './headscope.mjs';
import { readSlices } from './sources.mjs';

export { Headscope, HeadscopeError } from './headscope.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

export function wasmBuildDir() {
  return process.env.HEADSCOPE_WASM_DIR || path.resolve(here, '..', 'build', 'wasm', 'wasm');
}

// threads > 1: the threaded build, its work shared over that many threads.
export async function loadHeadscope(dir = wasmBuildDir(), { threads = 1 } = {}) {
  const threaded = threads > 1;
  const script = path.join(dir, coreScript(threaded));
  // The relaxed-SIMD build where this node runs it (node 20 needs
  // --experimental-wasm-relaxed-simd) and it was built; else SIMD128 only.
  const preferred = path.join(dir, coreWasmFile({ threaded }));
  const binary = fs.existsSync(preferred) ? preferred : path.join(dir, coreWasmFile({ threaded, relaxed: false }));
  if (!fs.existsSync(script) || !fs.existsSync(binary)) {
    throw new Error(`headscope: no wasm build in ${dir}; build it first (see README)`);
  }
  const { default: factory } = await import(pathToFileURL(script).href);
  const core = await createHeadscope(factory, { wasmBinary: fs.readFileSync(binary), wasmFile: path.basename(binary), spawnTokenizer: spawnTokenizerThread, threads });
  // The module's pthreads (node Workers, all started by now) must not keep
  // the process alive.
  const pool = core.module.PThread;
  if (pool) for (const worker of [...pool.unusedWorkers, ...pool.runningWorkers]) worker.unref();
  return core;
}

// A tokenizer thread (wasm/tokenizer_thread.mjs) that does not keep the
// process alive.
export function spawnTokenizerThread() {
  const worker = new Worker(new URL('./tokenizer_thread.mjs', import.meta.url));
  return {
    postMessage: (message) => worker.postMessage(message),
    onMessage: (handler) => {
      worker.on('message', handler);
      worker.on('error', (error) => handler({ fatal: String(error?.message ?? error) }));
      worker.unref();  // after the listeners: attaching one refs the worker's port again
    },
    terminate: () => worker.terminate(),
  };
}

// A model folder on disk as a source (see wasm/sources.mjs): ranges only,
// so only the bytes a load reads are read.
export function directorySource(dir) {
  const file = (name) => path.join(dir, name);
  return {
    label: dir,
    async text(name) {
      return fs.existsSync(file(name)) ? fs.readFileSync(file(name), 'utf8') : null;
    },
    async range(name, start, into, options = {}) {
      if (!fs.existsSync(file(name))) return null;
      const handle = await fs.promises.open(file(name), 'r');
      try {
        const { size } = await handle.stat();
        return await readSlices(name, size, start, into, async (offset, n, view) => {
          for (let done = 0; done < n;) {
            const { bytesRead } = await handle.read(view, done, n - done, offset + done);
            if (bytesRead === 0) throw new HeadscopeError(`${name}: the file ended while it was read`, 'bad_file');
            done += bytesRead;
          }
        }, options);
      } finally {
        await handle.close();
      }
    },
  };
}
