// Starts the explorer's worker as soon as the page's <head> is read, before
// the explorer's bundle (main.js) has downloaded and built the page: the
// worker then compiles the wasm core, and fetches the built-in model when the
// link opens it, in the meantime. main.js adopts this worker (see
// HeadscopeClient); messages it sends before that are kept for it.
// A worker only starts once the page's main thread is idle: in a trace of
// headless Chromium here it started ~120 ms after it was created, when
// main.js had built the page, and its compile, load and run came after that.
// So main.js waits for the worker's first message (`started`) before it
// builds the page (see `started` below).
// When the link opens the built-in model as it is, the worker is also asked
// to load it and run the link's text (`warmup`), which the page's first two
// requests then find done.
import { parseHash } from '../state/hash.js';
import { EXAMPLES } from '../state/models.js';
import { MAX_TOKENS, workerUrlFor } from '../worker/protocol.js';

const { state } = parseHash(location.hash, location.origin);
export const workerUrl = workerUrlFor(state.model, import.meta.url);
const worker = new Worker(workerUrl, { type: 'module' });
const early = [];
let markStarted;
const started = new Promise((resolve) => { markStarted = resolve; });
worker.onmessage = (event) => {
  markStarted();
  early.push(['message', event]);
};
worker.onerror = (event) => {
  markStarted();
  early.push(['error', event]);
};
globalThis.headscopeEarlyWorker = { url: workerUrl.href, worker, early, started };
if (state.model === 'builtin' && state.parts === 'all' && !state.edits.length && !state.ablate.length) {
  // id 0: no request of the page's client has it, so the reply is ignored.
  const first = { text: state.text ?? EXAMPLES[0].text, prependBos: state.bos, maxTokens: MAX_TOKENS };
  worker.postMessage({ id: 0, type: 'warmup', args: { first } });
}
