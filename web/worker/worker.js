// The Web Worker that owns the wasm core: it answers the requests of
// protocol.js (the page never touches the module). Loading builds a new
// session and swaps it in only when it succeeded, so a failed or cancelled
// load leaves the previous model usable. It imports the protocol, the policy
// it shares with the page (../shared/) and the wasm API, nothing of the page.
import createHeadscopeModule from './headscope_core.mjs';
import { cacheSummary, cachingFetch, clearCache, dropOldCaches, forgetPrefix } from './cache.js';
import { MAX_TOKENS } from './protocol.js';
import { parseEdit } from '../shared/edits.js';
import { BUILTIN, CORPORA, allowedHubEndpoint, allowedModelUrl, trustedOrigin } from '../shared/sources.js';
import { parseCorpus } from '../../wasm/corpus_files.mjs';
import { MAX_THREADS, coreScript, coreWasmFile, threadsSupported } from '../../wasm/features.mjs';
import { compileWasm, createHeadscope, HeadscopeError, nonFiniteWarning } from '../../wasm/headscope.mjs';
import { parseTokenIds } from '../../wasm/ids.mjs';
import { HUB_ENDPOINT, fileListSource, hubSource, prefetchingFetch, urlSource } from '../../wasm/sources.mjs';

// The worker fetches and compiles the wasm itself (streaming) as soon as it
// starts (the relaxed-SIMD build where the browser runs it, wasm/features.mjs);
// the Emscripten glue is bundled into this script (web/build.mjs). Where the
// page is cross-origin isolated (SharedArrayBuffer; web/serve.sh sends the
// headers) it runs the threaded build instead, on every core: its glue stays
// a file of its own beside this one (its pthreads load it by URL).
// The marks (headscope:worker-*) time a first visit's steps: the page
// timings test prints them (tests/browser/builtin.test.mjs).
performance.mark('headscope:worker-started');
self.postMessage({ type: 'started' });
const threaded = threadsSupported();
const threads = threaded ? Math.min(navigator.hardwareConcurrency, MAX_THREADS) : 1;
const wasmFile = coreWasmFile({ threaded });
const wasmModule = compileWasm(new URL(`./${wasmFile}`, import.meta.url));
wasmModule.then(() => performance.mark('headscope:worker-compiled'), () => {});  // errors: reported through corePromise
// The tokenizer runs in a worker of its own (wasm/tokenizer.mjs): a pattern
// in a user's tokenizer.json that never ends cannot stop this one. The first
// is started now, so that its script loads while the core compiles.
const newTokenizerWorker = () => new Worker(new URL('./tokenizer_worker.js', import.meta.url), { type: 'module' });
let spareTokenizerWorker = newTokenizerWorker();
function spawnTokenizerWorker() {
  const worker = spareTokenizerWorker ?? newTokenizerWorker();
  spareTokenizerWorker = null;
  return {
    postMessage: (message) => worker.postMessage(message),
    onMessage: (handler) => {
      worker.onmessage = (event) => handler(event.data);
      worker.onerror = (event) => handler({ fatal: event.message || 'could not start' });
    },
    terminate: () => worker.terminate(),
  };
}
const factory = threaded
  ? import(/* the glue's own file */ new URL(`./${coreScript(true)}`, import.meta.url).href).then((m) => m.default)
  : Promise.resolve(createHeadscopeModule);
const corePromise = factory.then((f) => createHeadscope(f, { wasmModule, wasmFile, spawnTokenizer: spawnTokenizerWorker }));
// The threaded build's pthreads start once the first request is answered
// (after the warm-up's first run): loading them while the page starts
// delayed its first patterns by ~200 ms on 2 cores.
let threadsStarted = false;
function startThreads(core) {
  if (threadsStarted || threads <= 1) return;
  threadsStarted = true;
  core.startThreads(threads).catch((error) => console.warn(`headscope: the core stays on one thread (${error.message})`));
}
const pageOrigin = self.location.origin;

// The page starts the worker with ?prefetch=builtin when it will open the
// built-in model: its files then download while the core compiles.
const builtinBase = new URL(`../${BUILTIN.path}`, import.meta.url).href;
const builtinFetch = new URL(self.location.href).searchParams.get('prefetch') === 'builtin'
  ? prefetchingFetch(['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json', 'model.safetensors'].map((f) => new URL(f, builtinBase).href))
  : globalThis.fetch;

let session = null;      // the loaded ModelSession
let currentEdits = [];   // descriptors (shared/edits.js) of the edits in the session, in order
let loadController = null;
let modelGeneration = 0; // bumps on every successful load

// The loaded session, for the requests that need one.
function needSession() {
  if (!session) throw new HeadscopeError('no model is loaded', 'no_model');
  return session;
}

// A request's progress in the protocol's one shape, {what, fraction, ...}:
// at most every 100 ms, and always the end of a step (fraction 1, or a
// file's last bytes). Returns the core's callback, onProgress(fraction).
function reporter(send, what) {
  let last = -Infinity;
  return (fraction, detail = {}) => {
    const now = performance.now();
    if (now - last < 100 && fraction < 1 && detail.loaded !== detail.total) return;
    last = now;
    send({ what, fraction, ...detail });
  };
}

// fetch limited to the origins this load may reach: shared/sources.js
// trustedOrigin, the hub endpoint in use and the origins the viewer
// confirmed. A request elsewhere, or a redirect that ends elsewhere, fails
// with code not_allowed (the page applies the same rule before it asks; this
// is the check a static host cannot make with headers).
function guardedFetch(fetchImpl, allowed) {
  const check = (href) => {
    const url = new URL(href);
    if (!allowed(url.origin)) throw new HeadscopeError(`${url.host} is not a host this page may fetch from (the viewer did not confirm it)`, 'not_allowed');
  };
  return async (input, init) => {
    check(typeof input === 'string' || input instanceof URL ? String(input) : input.url);
    const response = await fetchImpl(input, init);
    if (response.url) check(response.url);
    return response;
  };
}

// confirmed: origins the viewer confirmed for this load (control/app.js).
// token: the viewer's Hugging Face access token, for the hub itself only
// (never a test endpoint or a URL model).
function makeSource(spec, files, endpoint, onCacheEvent, confirmed = [], token = '') {
  const allowedOrigins = (extra) => (origin) => trustedOrigin(origin, pageOrigin) || origin === extra || confirmed.includes(origin);
  switch (spec?.kind) {
    case 'builtin':
      // Small and on this server: whole files, no Range requests.
      return urlSource(builtinBase, { label: BUILTIN.title, fetchImpl: builtinFetch, ranges: false });
    case 'hub': {
      let hubEndpoint;
      if (endpoint) {
        hubEndpoint = allowedHubEndpoint(endpoint, pageOrigin);
        if (!hubEndpoint) throw new HeadscopeError('the hub endpoint must be this page\'s origin or the loopback interface', 'not_allowed');
      }
      const caching = cachingFetch({ onEvent: onCacheEvent });
      const fetchImpl = guardedFetch(caching, allowedOrigins(hubEndpoint && new URL(hubEndpoint).origin));
      const source = hubSource(spec.repo, spec.revision || 'main', { endpoint: hubEndpoint, fetchImpl, token: hubEndpoint ? '' : token });
      // The folder's URL, to forget its cached files if the load fails
      // once the cache's writes have settled.
      source.base = `${(hubEndpoint || HUB_ENDPOINT).replace(/\/$/, '')}/${spec.repo}/resolve/${encodeURIComponent(spec.revision || 'main')}/`;
      source.cacheSettled = caching.settled;
      return source;
    }
    case 'url': {
      const base = allowedModelUrl(String(spec.url), pageOrigin);
      if (!base) throw new HeadscopeError('model URLs must use https: (or be on this page\'s own server)', 'not_allowed');
      const allowed = allowedOrigins(null);
      if (!allowed(new URL(base).origin)) throw new HeadscopeError(`${new URL(base).host}: loading from this host needs the viewer's confirmation`, 'not_allowed');
      return urlSource(base, { label: base, fetchImpl: guardedFetch(globalThis.fetch.bind(globalThis), allowed) });
    }
    case 'files':
      if (!files?.length) throw new HeadscopeError('no files were given');
      return fileListSource(files);
    default:
      throw new HeadscopeError('unknown kind of model source');
  }
}

// Re-makes the session's edits from descriptors; returns the problems.
function applyEdits(descriptors) {
  for (const e of session.edits()) session.undoEdit(e.id);
  currentEdits = [];
  const errors = [];
  for (const text of descriptors) {
    const e = parseEdit(text);
    try {
      if (!e) throw new HeadscopeError('not an edit');
      if (e.type === 'merge') session.addMerge({ layer: e.layer, headA: e.headA, headB: e.headB, patternHead: e.patternHead });
      else session.addOvEdit({ kind: e.kind, layer: e.layer, head: e.head, component: e.component, alpha: e.alpha, side: e.side, variant: e.variant });
      currentEdits.push(text);
    } catch (error) {
      errors.push(`${String(text).slice(0, 40)}: ${error.message}`);
    }
  }
  return errors;
}

// Runs fn on the model without its edits, then puts them back.
function withoutEdits(fn) {
  const saved = currentEdits;
  for (const e of session.edits()) session.undoEdit(e.id);
  try {
    return fn();
  } finally {
    applyEdits(saved);
  }
}

function parseIds(text, vocab) {
  const { ids, bad } = parseTokenIds(text, vocab);
  if (ids?.length === 0) throw new HeadscopeError('this model has no tokenizer: type token ids separated by spaces, e.g. 5 17 42', 'no_tokenizer');
  if (!ids) throw new HeadscopeError(`this model has no tokenizer, so the text is read as token ids; "${bad.slice(0, 20)}" is not an id between 0 and ${vocab - 1}`);
  return ids;
}

// Tokenizes (or parses ids) and runs the model with the edits in force (see
// the analyze request).
async function runText({ text, ids: givenIds, prependBos = true, maxTokens = MAX_TOKENS, ablate = [], mode = 'zero', baselineKey }) {
  const info = needSession().info;
  let ids;
  let tokens;
  if (givenIds) {
    ids = Array.from(givenIds);
    tokens = await session.tokenTexts(ids);
  } else if (session.tokenizer) {
    ({ ids, tokens } = await session.tokenize(String(text ?? ''), { prependBos }));
  } else {
    ids = parseIds(text, info.dVocab);
    tokens = ids.map((id) => `#${id}`);
  }
  const limit = Math.min(maxTokens, info.nCtx || maxTokens);
  const truncated = ids.length > limit ? ids.length : 0;
  if (truncated) {
    ids = ids.slice(0, limit);
    tokens = tokens.slice(0, limit);
  }
  const base = { ids, tokens, truncated, generation: modelGeneration, editsKey: currentEdits.join(';') };
  if (!ids.length) return { ...base, nTokens: 0, nLayer: info.nLayer, nHead: info.nHead, empty: true };
  const heads = Array.from(ablate).filter((i) => Number.isInteger(i) && i >= 0 && i < info.nLayer * info.nHead);
  let result;
  if (heads.length) {
    // The text as typed, never masked: its patterns and per-token losses
    // line up with its tokens (BERT: the same-position loss, and it says so).
    const a = session.ablate(ids, heads, { mode, mask: false });
    let baseline = { tokenLoss: a.tokenLossBase, loss: a.lossBase };
    if (baselineKey !== `${ids.join(',')}|${currentEdits.join(';')}`) baseline = { ...baseline, patterns: session.run(ids).patterns };
    result = {
      ...base, nLayer: info.nLayer, nHead: info.nHead, nTokens: ids.length,
      patterns: a.patterns, tokenLoss: a.tokenLoss, loss: a.loss, objective: a.objective,
      gated: true, ablated: heads, mode, patternChange: a.patternChange, baseline,
    };
  } else {
    const run = session.run(ids);
    result = { ...base, nLayer: run.nLayer, nHead: run.nHead, nTokens: run.nTokens, patterns: run.patterns, tokenLoss: run.tokenLoss, loss: run.loss, gated: false, baseline: null };
  }
  if (currentEdits.length) {
    const plain = withoutEdits(() => session.run(ids));
    result.unedited = { loss: plain.loss, tokenLoss: plain.tokenLoss };
  }
  result.warning = nonFiniteWarning(result);
  return result;
}

// The page's first two requests, answered before they are asked. web/boot/boot.js
// sends `warmup` when the link opens the built-in model as it is (no edits,
// no ablations), with the first text: the worker loads the built-in model
// and runs that text while the page is still being built; the page's
// loadModel of the built-in model and its first analyze of that text then
// take the results instead of waiting for them.
let warm = null;  // a promise of {loaded, generation, key, result} | null
let loadTicket = 0;  // bumps with every loadModel and cancelLoad: the newest wins

function firstRunKey({ text, prependBos, maxTokens, ids, ablate }) {
  if (ids || ablate?.length) return null;
  return JSON.stringify([String(text ?? ''), Boolean(prependBos ?? true), Number(maxTokens ?? MAX_TOKENS)]);
}

// The parquet reader (wasm/corpus_parquet.mjs), bundled on its own beside
// this script and loaded the first time a dataset is read.
const PARQUET_BUNDLE = new URL('./parquet.js', import.meta.url).href;

// A corpus request's texts: a built-in corpus by name (fetched from this
// server), a hub dataset's split {dataset, config, split, endpoint?} (its
// parquet read by ranges, from the hub or a test endpoint only), or the
// texts the page read from the viewer's file.
async function corpusTexts(name, texts, maxTexts, dataset = null) {
  let list = texts;
  if (dataset) {
    let endpoint = HUB_ENDPOINT;
    if (dataset.endpoint) {
      endpoint = allowedHubEndpoint(dataset.endpoint, pageOrigin);
      if (!endpoint) throw new HeadscopeError('the hub endpoint must be this page\'s origin or the loopback interface', 'not_allowed');
    }
    const fetchImpl = guardedFetch(globalThis.fetch, (origin) => trustedOrigin(origin, pageOrigin) || origin === new URL(endpoint).origin);
    const { datasetTexts } = await import(PARQUET_BUNDLE);
    list = (await datasetTexts(dataset.repo, { config: dataset.config, split: dataset.split, endpoint, limit: maxTexts, fetchImpl })).texts;
  } else if (name !== null) {
    if (!Object.hasOwn(CORPORA, name)) throw new HeadscopeError(`no built-in corpus named ${JSON.stringify(String(name)).slice(0, 40)}`, 'invalid_argument');
    const response = await fetch(new URL(`../${CORPORA[name].path}`, import.meta.url));
    if (!response.ok) throw new HeadscopeError(`the built-in corpus ${name} is not on this server (HTTP ${response.status})`, 'missing_file');
    list = parseCorpus(CORPORA[name].path, await response.text()).texts;
  }
  if (!Array.isArray(list) || !list.length || !list.every((t) => typeof t === 'string')) throw new HeadscopeError('a corpus is a list of texts', 'invalid_argument');
  return list.slice(0, maxTexts);
}

const handlers = {
  warmup(core, { first = {} }) {
    warm = handlers.loadModel(core, { spec: { kind: 'builtin' } }, () => {}).then(async (loaded) => {
      let result = null;
      performance.mark('headscope:worker-model-loaded');
      try {
        result = await runText(first);
        performance.mark('headscope:worker-first-run');
      } catch (error) {
        errorPayload(error);  // an abort of the module must still be noticed; the page's analyze reports the rest
      }
      return { loaded, generation: modelGeneration, key: result ? firstRunKey(first) : null, result };
    }, (error) => {
      errorPayload(error);  // the page's own loadModel reports the problem
      return null;
    });
    return {};
  },

  async loadModel(core, { spec, files, endpoint, attentionOnly = false, confirmedOrigins = [], token = '' }, progress) {
    const ticket = ++loadTicket;
    if (warm && spec?.kind === 'builtin' && !attentionOnly) {
      // The warm-up's load is this one: wait for it rather than start again.
      const pending = warm;
      const done = await pending.catch(() => null);
      if (ticket !== loadTicket) throw new HeadscopeError('download cancelled', 'cancelled');  // a newer load or a cancel came meanwhile
      if (done?.loaded && warm === pending && done.generation === modelGeneration && !loadController) {
        const { loaded } = done;
        done.loaded = null;  // adopted once
        return loaded;
      }
    } else {
      warm = null;  // another model: the warm-up's load (if still running) is aborted below
    }
    loadController?.abort();
    const controller = new AbortController();
    loadController = controller;
    const cacheEvents = { files: new Set(), failures: [] };
    const onCacheEvent = (e) => {
      if (e.type === 'hit') cacheEvents.files.add(new URL(e.url).pathname.split('/').pop());
      if (e.type === 'store-failed') cacheEvents.failures.push(e.message);
    };
    const source = makeSource(spec, files, endpoint, onCacheEvent, Array.isArray(confirmedOrigins) ? confirmedOrigins.map(String) : [], String(token || ''));
    const next = core.createSession();
    try {
      const info = await next.load(source, { signal: controller.signal, onProgress: reporter(progress, 'download'), attentionOnly: Boolean(attentionOnly) });
      if (controller.signal.aborted) throw new HeadscopeError('download cancelled', 'cancelled');
      session?.dispose();
      session = next;
      currentEdits = [];
      modelGeneration++;
      return {
        info: { ...info, label: source.label, hasTokenizer: Boolean(next.tokenizer), generation: modelGeneration, threads },
        cache: { files: [...cacheEvents.files] },
      };
    } catch (error) {
      next.dispose();
      if (spec?.kind === 'hub' && source.base) {
        await source.cacheSettled?.();
        await forgetPrefix(source.base);
      }
      if (controller.signal.aborted) throw new HeadscopeError('download cancelled', 'cancelled');
      if (spec?.kind === 'builtin' && error.code === 'missing_file') {
        throw new HeadscopeError('built-in model not yet available: this copy of headscope has no model in models/; load one from the list, a repo id, a URL or your own files', 'missing_file');
      }
      throw error;
    } finally {
      if (loadController === controller) loadController = null;
    }
  },

  cancelLoad() {
    const had = Boolean(loadController);
    loadTicket++;  // a load waiting for the warm-up gives up too
    loadController?.abort();
    return { cancelled: had };
  },

  // Tokenizes (or parses ids) and runs the model with the edits in force.
  // ablate: flat head indices to ablate (mode 'zero' | 'mean'): the run then
  // comes from the core's ablation, which also gives the loss without it and
  // how much each head's pattern changed; the unablated patterns are added
  // unless the page already has them (baselineKey = the ids it has them for).
  // With edits in force, `unedited` holds the loss of the model without them.
  async analyze(core, args) {
    if (warm) {
      const done = await warm.catch(() => null);
      warm = null;  // one answer: its buffers are transferred
      if (done && done.generation === modelGeneration && !currentEdits.length && done.key !== null && done.key === firstRunKey(args)) return done.result;
    }
    return runText(args);
  },

  // Puts the core's edit list in step with the page's descriptors (shared/edits.js):
  // every edit is re-made from its descriptor, in order. Descriptors that do
  // not fit the model are skipped and reported.
  setEdits(core, { edits = [] }) {
    needSession();
    const errors = applyEdits(edits);
    return { applied: currentEdits, errors, edits: session.edits() };
  },

  // Role detectors and pattern statistics for the ids (edits in force).
  behavior(core, { ids, measure = 'mul', excludeBos = false, excludeCurrentToken = false, probeInduction }) {
    return { ...needSession().behavior(ids, { measure, excludeBos, excludeCurrentToken, probeInduction }), generation: modelGeneration, editsKey: currentEdits.join(';') };
  },

  inductionTest(core, { seqLen = 50, batch = 10, seed = 0 }, progress) {
    return { ...needSession().inductionTest({ seqLen, batch, seed, onProgress: reporter(progress, 'induction test') }), generation: modelGeneration };
  },

  importance(core, { ids, mode = 'zero' }, progress) {
    return { ...needSession().importance(ids, { mode, onProgress: reporter(progress, 'importance') }), generation: modelGeneration };
  },

  pruning(core, { ids, order = 'gradient', mode = 'zero', step = 0, nRandom = 3, seed = 0, normalize = true, reestimate = true }, progress) {
    return { ...needSession().pruningCurve(ids, { order, mode, step, nRandom, seed, normalize, reestimate, onProgress: reporter(progress, 'pruning curve') }), generation: modelGeneration };
  },

  // Head statistics over a corpus: a built-in one by name (fetched from this
  // server) or the texts the page read from the viewer's file.
  async corpus(core, { name = null, texts = null, dataset = null, maxTexts = 64, maxTokens = 128, resamples = 1000, seed = 0, measure = 'mul', excludeBos = false, excludeCurrentToken = false }, progress) {
    const list = await corpusTexts(name, texts, maxTexts, dataset);
    const result = await needSession().corpus(list, { maxTokens, resamples, seed, measure, excludeBos, excludeCurrentToken, onProgress: reporter(progress, 'corpus') });
    return { ...result, texts: list, generation: modelGeneration };  // texts: for the examples' links
  },

  // Head importance over a corpus (the same texts as `corpus`).
  async corpusImportance(core, { name = null, texts = null, dataset = null, maxTexts = 64, maxTokens = 128, resamples = 1000, seed = 0, mode = 'zero', nRandom = 5 }, progress) {
    const list = await corpusTexts(name, texts, maxTexts, dataset);
    const result = await needSession().corpusImportance(list, { maxTokens, resamples, seed, mode, nRandom, onProgress: reporter(progress, 'corpus importance') });
    return { ...result, generation: modelGeneration };
  },

  // Causal evidence between a clean and a corrupted text (edits in force).
  async patch(core, { clean, corrupt, prependBos = true, target = 'heads', direction = 'denoise', receivers = [], metric = 'logit_diff', answer, wrong = null, position = -1 }, progress) {
    const s = needSession();
    const common = { prependBos, metric, answer, wrong, position, onProgress: reporter(progress, target === 'path' ? 'path patching' : 'activation patching') };
    const result = target === 'path'
      ? await s.pathPatch(clean, corrupt, { ...common, receivers })
      : await s.patch(clean, corrupt, { ...common, target, direction });
    return { ...result, target, generation: modelGeneration };
  },

  async dla(core, { text, prependBos = true, answer, wrong = null, position = -1 }) {
    return { ...(await needSession().dla(text, { prependBos, answer, wrong, position })), generation: modelGeneration };
  },

  async predictions(core, { text, prependBos = true, k = 8 }) {
    return { predictions: await needSession().predictions(text, { prependBos, k }), generation: modelGeneration };
  },

  evaluateMerge(core, { ids, layer, headA, headB }, progress) {
    return { ...needSession().evaluateMerge(ids, { layer, headA, headB, onProgress: reporter(progress, 'merge') }), generation: modelGeneration };
  },

  // Weight geometry of the loaded model (wasm/headscope.mjs), in the weight
  // variant the request names. Nothing is kept here: the page keeps each
  // answer for the model's generation (control/app.js), and asks for the
  // spectra, the write redundancy and the composition together ('weights':
  // the core's one pass over the heads).
  async geometry(core, { what, variant = 'raw', kind = 'O', layer = 0, head = 0, a, b, topN = 10, directions = 3, heads = [], maxRows = 1024, maxPositions = 64 }, progress) {
    const s = needSession();
    const onProgress = reporter(progress, what === 'weights' ? 'weight geometry' : what);
    let result;
    switch (what) {
      case 'weights': result = s.weightGeometry({ variant, topK: 4, onProgress }); break;
      case 'copying': result = s.copying({ variant, onProgress }); break;
      case 'redundancy': result = s.redundancy({ variant, kind, onProgress }); break;
      case 'merges': result = s.mergeCandidates({ variant, topN, onProgress }); break;
      case 'readout': result = await s.ovReadout(layer, head, { variant, directions, topN }); break;
      case 'pair': result = s.pairGeometry(a, b, { variant }); break;
      case 'circuits': result = s.fullCircuits({ variant, heads, maxRows, onProgress }); break;
      case 'positional': result = s.positionalCircuit({ variant, heads, maxPositions }); break;
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
// The engine's own words are read here, once, into a code.
function errorPayload(error) {
  const message = String(error && error.message ? error.message : error);
  const fatal = dead || error instanceof WebAssembly.RuntimeError || /^Aborted\(|out of memory|Cannot enlarge memory/i.test(message);
  if (fatal && !dead) {
    dead = true;
    deadReason = message;
  }
  let code = typeof error?.code === 'string' ? error.code : 'engine_stopped';
  if (fatal) code = /memory/i.test(message) ? 'out_of_memory' : 'engine_stopped';
  return { name: error && error.name ? error.name : 'Error', message, code, fatal };
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
    performance.mark('headscope:worker-core-ready');
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
    if (type === 'warmup') warm?.finally(() => startThreads(core));
    else startThreads(core);
  } catch (error) {
    self.postMessage({ id, type: 'error', error: errorPayload(error) });
  }
};
