// Starts the explorer's worker as soon as the page's <head> is read, before
// the explorer's bundle (main.js) has downloaded and built the page: the
// worker then fetches the built-in model when the link opens it, in the
// meantime. main.js adopts this worker (see HeadscopeClient); messages it
// sends before that are kept for it.
// The wasm core is compiled here and posted to the worker: a worker starts
// ~100 ms after it is created (in headless Chromium here, while main.js
// builds the page), and the compile (~70 ms) then runs meanwhile instead of
// after. If it fails here, the worker compiles it and reports the problem.
// When the link opens the built-in model as it is, the worker is also asked
// to load it and run the link's text (`warmup`), which the page's first two
// requests then find done.
import { coreWasmFile } from '../wasm/features.mjs';
import { EXAMPLES, MAX_TOKENS, workerUrlFor } from './models.js';
import { parseHash } from './state.js';

const { state } = parseHash(location.hash, location.origin);
export const workerUrl = workerUrlFor(state.model, import.meta.url, { moduleFromPage: true });
const worker = new Worker(workerUrl, { type: 'module' });
const wasmFile = coreWasmFile();
WebAssembly.compileStreaming(fetch(new URL(`./${wasmFile}`, import.meta.url))).then(
  (module) => worker.postMessage({ type: 'wasm-module', file: wasmFile, module }),
  () => worker.postMessage({ type: 'wasm-module', file: wasmFile, module: null }),
);
const early = [];
worker.onmessage = (event) => early.push(['message', event]);
worker.onerror = (event) => early.push(['error', event]);
globalThis.headscopeEarlyWorker = { url: workerUrl.href, worker, early };
if (state.model === 'builtin' && state.parts === 'all' && !state.edits.length && !state.ablate.length) {
  // id 0: no request of the page's client has it, so the reply is ignored.
  const first = { text: state.text ?? EXAMPLES[0].text, prependBos: state.bos, maxTokens: MAX_TOKENS };
  worker.postMessage({ id: 0, type: 'warmup', args: { first } });
}
