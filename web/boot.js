// Starts the explorer's worker as soon as the page's <head> is read, before
// the explorer's bundle (main.js) has downloaded and built the page: the
// worker then compiles the wasm core, and fetches the built-in model when the
// link opens it, in the meantime. main.js adopts this worker (see
// HeadscopeClient); messages it sends before that are kept for it.
import { parseHash } from './state.js';

const { state } = parseHash(location.hash, location.origin);
export const workerUrl = new URL(`./worker.js${state.model === 'builtin' ? '?prefetch=builtin' : ''}`, import.meta.url);
const worker = new Worker(workerUrl, { type: 'module' });
const early = [];
worker.onmessage = (event) => early.push(['message', event]);
worker.onerror = (event) => early.push(['error', event]);
globalThis.headscopeEarlyWorker = { url: workerUrl.href, worker, early };
