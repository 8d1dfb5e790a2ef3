// The Web Worker that owns the wasm core. The page never touches the module:
// it sends {id, type, args} and receives, for the same id, any number of
// {type: 'progress', progress} messages and then exactly one
// {type: 'result', result} or {type: 'error', error: {name, message}}.
// The first message the worker sends is {type: 'ready'} or
// {type: 'error', id: null} if the module failed to start.
//
// Requests:
//   loadModel {spec, files?, endpoint?}  spec: {kind: 'builtin'|'hub'|'url'|'files', repo, revision, url}
//   cancelLoad {}                         aborts the load in progress (it fails with 'download cancelled')
//   analyze {text?, ids?, prependBos, maxTokens, headGate?, baselineKey?}
//   cacheInfo {} / clearCache {}
// Loading builds a new session and swaps it in only when it succeeded, so a
// failed or cancelled load leaves the previous model usable.
import createHeadscopeModule from './headscope_core.mjs';
import { createHeadscope, HeadscopeError } from '../wasm/headscope.mjs';
import { fileListSource, hubSource, urlSource } from '../wasm/sources.mjs';
import { cacheSummary, cachingFetch, clearCache, dropOldCaches } from './cache.js';
import { BUILTIN } from './models.js';
import { allowedHubEndpoint, allowedModelUrl, isRepoIdText } from './state.js';

const wasmUrl = new URL('./headscope_core.wasm', import.meta.url);
const corePromise = createHeadscope(createHeadscopeModule, { wasmUrl });
const pageOrigin = self.location.origin;

let session = null;      // the loaded ModelSession
let loadController = null;
let modelGeneration = 0; // bumps on every successful load

// Progress at most every 100 ms (and always the last one of a file).
function throttled(progress) {
  let last = 0;
  return (p) => {
    const now = performance.now();
    if (now - last < 100 && p.loaded !== p.total) return;
    last = now;
    progress(p);
  };
}

function makeSource(spec, files, endpoint, onCacheEvent) {
  switch (spec?.kind) {
    case 'builtin':
      return urlSource(new URL(`../${BUILTIN.path}`, import.meta.url).href, { label: BUILTIN.title });
    case 'hub': {
      if (!isRepoIdText(String(spec.repo))) throw new HeadscopeError(`"${String(spec.repo).slice(0, 80)}" is not a Hugging Face repository id (expected owner/name)`);
      let hubEndpoint;
      if (endpoint) {
        hubEndpoint = allowedHubEndpoint(endpoint, pageOrigin);
        if (!hubEndpoint) throw new HeadscopeError('the hub endpoint must be this page\'s origin or the loopback interface');
      }
      const fetchImpl = cachingFetch({ onEvent: onCacheEvent });
      return hubSource(spec.repo, spec.revision || 'main', { endpoint: hubEndpoint, fetchImpl });
    }
    case 'url': {
      const base = allowedModelUrl(String(spec.url), pageOrigin);
      if (!base) throw new HeadscopeError('model URLs must use https: (or be on this page\'s own server)');
      return urlSource(base, { label: base });
    }
    case 'files':
      if (!files?.length) throw new HeadscopeError('no files were given');
      return fileListSource(files);
    default:
      throw new HeadscopeError('unknown kind of model source');
  }
}

function parseIds(text, vocab) {
  const parts = String(text).split(/[\s,]+/).filter(Boolean);
  if (!parts.length) throw new HeadscopeError('this model has no tokenizer: type token ids separated by spaces, e.g. 5 17 42');
  const ids = parts.map(Number);
  const bad = parts.findIndex((p, i) => !/^\d+$/.test(p) || ids[i] >= vocab);
  if (bad >= 0) {
    throw new HeadscopeError(`this model has no tokenizer, so the text is read as token ids; "${parts[bad].slice(0, 20)}" is not an id between 0 and ${vocab - 1}`);
  }
  return ids;
}

const handlers = {
  async loadModel(core, { spec, files, endpoint }, progress) {
    loadController?.abort();
    const controller = new AbortController();
    loadController = controller;
    const cacheEvents = { files: new Set(), failures: [] };
    const onCacheEvent = (e) => {
      if (e.type === 'hit') cacheEvents.files.add(new URL(e.url).pathname.split('/').pop());
      if (e.type === 'store-failed') cacheEvents.failures.push(e.message);
    };
    const source = makeSource(spec, files, endpoint, onCacheEvent);
    const next = core.createSession();
    try {
      const info = await next.load(source, { signal: controller.signal, onProgress: throttled(progress) });
      if (controller.signal.aborted) throw new HeadscopeError('download cancelled');
      session?.dispose();
      session = next;
      modelGeneration++;
      return {
        info: { ...info, label: source.label, hasTokenizer: Boolean(next.tokenizer), generation: modelGeneration },
        cache: { files: [...cacheEvents.files] },
      };
    } catch (error) {
      next.dispose();
      if (controller.signal.aborted) throw new HeadscopeError('download cancelled');
      if (spec?.kind === 'builtin' && /config\.json is missing/.test(error.message)) {
        throw new HeadscopeError('built-in model not yet available: this copy of headscope has no model in models/; load one from the list, a repo id, a URL or your own files');
      }
      throw error;
    } finally {
      if (loadController === controller) loadController = null;
    }
  },

  cancelLoad() {
    const had = Boolean(loadController);
    loadController?.abort();
    return { cancelled: had };
  },

  // Tokenizes (or parses ids) and runs the model; with a head gate, also
  // returns the ungated baseline unless the page already has it (baselineKey
  // = the ids it has a baseline for).
  analyze(core, { text, ids: givenIds, prependBos = true, maxTokens = 256, headGate, baselineKey }) {
    if (!session) throw new HeadscopeError('no model is loaded');
    const info = session.info;
    let ids;
    let tokens;
    if (givenIds) {
      ids = Array.from(givenIds);
      tokens = ids.map((id) => (session.tokenizer ? session.tokenizer.tokenText(id) : `#${id}`));
    } else if (session.tokenizer) {
      ({ ids, tokens } = session.tokenize(String(text ?? ''), { prependBos }));
    } else {
      ids = parseIds(text, info.d_vocab);
      tokens = ids.map((id) => `#${id}`);
    }
    const limit = Math.min(maxTokens, info.n_ctx || maxTokens);
    const truncated = ids.length > limit ? ids.length : 0;
    if (truncated) {
      ids = ids.slice(0, limit);
      tokens = tokens.slice(0, limit);
    }
    if (!ids.length) {
      return { ids, tokens, truncated, nTokens: 0, nLayer: info.n_layer, nHead: info.n_head, empty: true, generation: modelGeneration };
    }
    const gated = headGate && Array.from(headGate).some((g) => g !== 1);
    const run = session.run(ids, gated ? { headGate } : {});
    let baseline = null;
    if (gated && baselineKey !== ids.join(',')) {
      const b = session.run(ids);
      baseline = { patterns: b.patterns, tokenLoss: b.tokenLoss, loss: b.loss };
    }
    return {
      ids, tokens, truncated, generation: modelGeneration,
      nLayer: run.nLayer, nHead: run.nHead, nTokens: run.nTokens,
      patterns: run.patterns, tokenLoss: run.tokenLoss, loss: run.loss, gated: Boolean(gated), baseline,
    };
  },

  // Weight geometry of the loaded model (wasm/headscope.mjs): what is one of
  // spectra | copying | redundancy | composition | merges | readout | pair.
  // Every call names its weight variant. Progress: {fraction}.
  geometry(core, { what, variant = 'raw', kind = 'O', layer = 0, head = 0, a, b, topN = 10, directions = 3 }, progress) {
    if (!session) throw new HeadscopeError('no model is loaded');
    let last = -1;
    const onProgress = (fraction) => {
      if (fraction - last >= 0.02 || fraction >= 1) {
        last = fraction;
        progress({ what, fraction });
      }
    };
    let result;
    switch (what) {
      case 'spectra': result = session.spectra({ variant, topK: 4, onProgress }); break;
      case 'copying': result = session.copying({ variant, onProgress }); break;
      case 'redundancy': result = session.redundancy({ variant, kind, onProgress }); break;
      case 'composition': result = session.composition({ variant, onProgress }); break;
      case 'merges': result = session.mergeCandidates({ variant, topN, onProgress }); break;
      case 'readout': result = session.ovReadout(layer, head, { variant, directions, topN }); break;
      case 'pair': result = session.pairGeometry(a, b, { variant }); break;
      default: throw new HeadscopeError(`unknown geometry request ${JSON.stringify(String(what)).slice(0, 40)}`);
    }
    return { ...result, generation: modelGeneration };
  },

  cacheInfo() {
    return cacheSummary();
  },

  // Simulates an abort of the module (tests of the recovery path).
  simulateAbort() {
    throw new WebAssembly.RuntimeError('Aborted(simulated for a test)');
  },

  async clearCache() {
    await clearCache();
    return cacheSummary();
  },
};

// An abort of the wasm module (out of memory, a trap) leaves it unusable:
// such errors are marked fatal and the page starts a new worker.
let dead = false;
let deadReason = '';
function errorPayload(error) {
  const message = String(error && error.message ? error.message : error);
  const fatal = dead || error instanceof WebAssembly.RuntimeError || /^Aborted\(|out of memory|Cannot enlarge memory/i.test(message);
  if (fatal && !dead) {
    dead = true;
    deadReason = message;
  }
  return { name: error && error.name ? error.name : 'Error', message, fatal };
}

// Typed arrays in a result (up to three levels deep) are transferred, not
// copied.
function transferables(result) {
  const list = [];
  const scan = (object, depth) => {
    if (!object || typeof object !== 'object' || depth > 3) return;
    for (const value of Object.values(object)) {
      if (ArrayBuffer.isView(value)) {
        if (!list.includes(value.buffer)) list.push(value.buffer);
      } else if (value && typeof value === 'object' && !Array.isArray(value)) {
        scan(value, depth + 1);
      }
    }
  };
  scan(result, 0);
  return list;
}

corePromise.then(
  () => {
    self.postMessage({ type: 'ready' });
    dropOldCaches();
  },
  (error) => self.postMessage({ type: 'error', id: null, error: errorPayload(error) }),
);

self.onmessage = async (event) => {
  const { id, type, args } = event.data;
  try {
    if (dead) throw new Error(`the wasm core stopped after an earlier abort (${deadReason})`);
    const core = await corePromise;
    const handler = Object.hasOwn(handlers, type) ? handlers[type] : null;
    if (!handler) throw new Error(`unknown request type ${JSON.stringify(type)}`);
    const progress = (value) => self.postMessage({ id, type: 'progress', progress: value });
    const result = await handler(core, args || {}, progress);
    self.postMessage({ id, type: 'result', result }, transferables(result));
  } catch (error) {
    self.postMessage({ id, type: 'error', error: errorPayload(error) });
  }
};
