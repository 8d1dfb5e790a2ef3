// The idiomatic JS API over the raw Embind module. The raw binding returns
// {ok, error, ...} objects; this wrapper turns failures into a thrown
// HeadscopeError and hides the module's memory management. It knows nothing
// of where the module comes from: the worker (browser) and wasm/node.mjs
// (node: CLI and tests) hand it the Emscripten factory and the wasm bytes or
// URL. Every result of the core passes through unwrap(): errors become a
// HeadscopeError, field names become camelCase (wasm/names.mjs); lists of
// numbers are typed arrays, as the core hands them over (wasm/session.hpp).
import { HeadscopeError } from './errors.mjs';
import { camelKeys } from './names.mjs';
import { ThreadTokenizer, gpt2TokenizerJson } from './tokenizer.mjs';

export { HeadscopeError };

function unwrap(result) {
  if (!result || result.ok !== true) {
    if (result && typeof result.error === 'string') throw new HeadscopeError(result.error, result.code);
    throw new HeadscopeError('unknown error in the core', 'engine_stopped');
  }
  delete result.ok;
  return camelKeys(result);
}

// Integers in [0, limit) as an Int32Array: the one conversion of ids and
// head indices for the core. Embind would wrap 2^32 + 5 to 5; here anything
// outside the range is an error naming the value and its position.
function checkedIndices(values, limit, what, range) {
  const list = Array.from(values ?? []);
  const out = new Int32Array(list.length);
  for (const [i, v] of list.entries()) {
    if (!Number.isSafeInteger(v) || v < 0 || v >= limit) {
      throw new HeadscopeError(`${what} ${String(v).slice(0, 40)} at position ${i} is out of range: ${range}`);
    }
    out[i] = v;
  }
  return out;
}

// The raw binding's calls, with a C++ exception that escapes the core (it
// only throws on a failed allocation: the module is built without exception
// catching, so JS receives the exception's address, a number) turned into
// words. The module is of no more use after it (code out_of_memory).
function guarded(raw) {
  return new Proxy(raw, {
    get(target, key) {
      const value = target[key];
      if (typeof value !== 'function') return value;
      return (...args) => {
        try {
          return value.apply(target, args);
        } catch (error) {
          if (typeof error === 'number' || (error instanceof WebAssembly.RuntimeError && /memory/i.test(error.message))) {
            throw new HeadscopeError(`the core ran out of memory in ${String(key)}: this model or text needs more than the browser's wasm memory (4 GB)`, 'out_of_memory');
          }
          throw error;
        }
      };
    },
  });
}

// Sources check the signal as they read; between reads, so does the load.
function throwIfCancelled(signal) {
  if (signal?.aborted) throw new HeadscopeError('load cancelled', 'cancelled');
}

function parseJson(text, name) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HeadscopeError(`${name}: not valid JSON (${error.message})`, 'bad_file');
  }
}

// Names of the weight files of a checkpoint: the shards that
// model.safetensors.index.json lists (checked by the core), or
// model.safetensors.
async function weightFileNames(module, source, signal) {
  const indexText = await source.text('model.safetensors.index.json', { signal });
  if (indexText === null) return ['model.safetensors'];
  return unwrap(module.safetensors_index_shards(indexText)).shards;
}

// The model's tokenizer in a thread of its own (spawnTokenizer, see
// wasm/tokenizer.mjs), or null when the folder has none.
async function loadTokenizer(source, signal, spawnTokenizer) {
  const json = await source.text('tokenizer.json', { signal });
  const configText = await source.text('tokenizer_config.json', { signal }).catch(() => null);
  const config = configText ? parseJson(configText, 'tokenizer_config.json') : {};
  let tokenizerJson = null;
  if (json !== null) {
    tokenizerJson = parseJson(json, 'tokenizer.json');
  } else {
    const vocab = await source.text('vocab.json', { signal });
    const merges = vocab === null ? null : await source.text('merges.txt', { signal });
    if (vocab !== null && merges !== null) tokenizerJson = gpt2TokenizerJson(parseJson(vocab, 'vocab.json'), merges);
  }
  if (tokenizerJson === null) return null;
  const tokenizer = new ThreadTokenizer(spawnTokenizer, tokenizerJson, config);
  // For the masked-LM objective: the mask token's id and the special tokens
  // that are never masked.
  const added = Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens : [];
  const maskName = typeof config.mask_token === 'string' ? config.mask_token : config.mask_token?.content ?? '[MASK]';
  tokenizer.maskId = added.find((t) => t.content === maskName)?.id ?? null;
  tokenizer.specialIds = added.filter((t) => t.special).map((t) => t.id);
  try {
    return await tokenizer.start();
  } catch (error) {
    tokenizer.dispose();
    if (error instanceof HeadscopeError) throw error;
    throw new HeadscopeError(`tokenizer.json: cannot be read (${error.message})`, 'bad_file');
  }
}

// A weight file's first 8 + N bytes read by Range requests, and the file's
// size; null when the source cannot serve ranges (then the file is read
// whole). The core checks N before anything is allocated for it.
async function rangedHeader(module, source, name, signal) {
  if (!source.range) return null;
  const prefix = new Uint8Array(8);
  const size = await source.range(name, 0, prefix, { signal });
  if (size === null) return null;
  const n = unwrap(module.safetensors_header_length(prefix, size, name)).length;
  const header = new Uint8Array(8 + n);
  header.set(prefix);
  await source.range(name, 8, header.subarray(8), { signal });
  return { header, size };
}

// Byte ranges of the files kept in JS for the core's reader: name ->
// [{begin, bytes}] sorted by begin (a file read whole is one chunk at 0).
class FileChunks {
  constructor() {
    this.byName = new Map();
  }

  has(name) {
    return this.byName.has(name);
  }

  add(name, begin, bytes) {
    const list = this.byName.get(name) ?? [];
    list.push({ begin, bytes });
    list.sort((a, b) => a.begin - b.begin);
    this.byName.set(name, list);
  }

  // Copies bytes [offset, offset + view.length) of `name` into view; a
  // message when they were not fetched.
  read(name, offset, view) {
    const list = this.byName.get(name) ?? [];
    let lo = 0;
    let hi = list.length - 1;
    while (lo < hi) {  // the last chunk that begins at or before offset
      const mid = (lo + hi + 1) >> 1;
      if (list[mid].begin <= offset) lo = mid;
      else hi = mid - 1;
    }
    const chunk = list[lo];
    if (!chunk || chunk.begin > offset || offset + view.length > chunk.begin + chunk.bytes.length) {
      return `bytes [${offset}, ${offset + view.length}) were not fetched`;
    }
    view.set(chunk.bytes.subarray(offset - chunk.begin, offset - chunk.begin + view.length));
    return undefined;
  }
}

// One loaded model: its description, its tokenizer (when the checkpoint has
// one) and the forward pass.
export class ModelSession {
  // spawnTokenizer: starts a tokenizer thread (wasm/tokenizer.mjs ThreadTokenizer).
  constructor(module, spawnTokenizer) {
    this.spawnTokenizer = spawnTokenizer;
    this.module = guarded(module);
    this.raw = guarded(new module.Session());
    this.info = null;
    this.tokenizer = null;
  }

  // source: see wasm/sources.mjs. onProgress(fraction, {file, loaded, total,
  // filesDone, filesTotal}), the one shape of every progress report here.
  // attentionOnly: only the attention weights and the blocks' norms (weight
  // geometry without running text; ranged downloads fetch nothing else).
  async load(source, { onProgress, signal, attentionOnly = false } = {}) {
    this.info = null;
    throwIfCancelled(signal);
    // The small files are requested together; their problems are reported
    // in this order (a missing config.json first).
    const settled = await Promise.allSettled([source.text('config.json', { signal }), loadTokenizer(source, signal, this.spawnTokenizer), weightFileNames(this.module, source, signal)]);
    if (settled[0].status === 'fulfilled' && settled[0].value === null) throw new HeadscopeError(`${source.label}: config.json is missing`, 'missing_file');
    const [configText, tokenizer, names] = settled.map((s) => {
      if (s.status === 'rejected') throw s.reason;
      return s.value;
    });
    // 1. Every file's header, parsed by the core (once). A source without
    // Range requests gives the whole file here.
    const chunks = new FileChunks();
    const report = (detail) => onProgress?.((detail.filesDone + (detail.total ? detail.loaded / detail.total : 0)) / (detail.filesTotal || 1), detail);
    try {
      for (const [i, name] of names.entries()) {
        throwIfCancelled(signal);
        const progress = (p) => report({ ...p, filesDone: i, filesTotal: names.length });
        let head = await rangedHeader(this.module, source, name, signal);
        if (head === null) {
          const bytes = source.bytes ? await source.bytes(name, (size) => new Uint8Array(size), { signal, onProgress: progress }) : null;
          if (bytes === null) {
            throw new HeadscopeError(`${source.label}: ${name} is missing (headscope reads .safetensors weights, not pytorch_model.bin)`, 'missing_weights');
          }
          const n = unwrap(this.module.safetensors_header_length(bytes.subarray(0, 8), bytes.length, name)).length;
          head = { header: bytes.subarray(0, 8 + n), size: bytes.length };
          chunks.add(name, 0, bytes);
        }
        unwrap(this.raw.add_file(name, head.header, head.size));
      }
      // 2. The bytes the load will read (the core's plan: no registered
      // buffers; with attentionOnly, the attention tensors alone), adjacent
      // tensors in one request. Each range stays in a JS buffer (outside wasm
      // memory, which never shrinks) until the core has copied it.
      const plan = unwrap(this.raw.read_plan(configText, { attention_only: attentionOnly })).files;
      for (const [i, { name, ranges }] of plan.entries()) {
        if (chunks.has(name)) continue;
        let total = 0;
        for (let k = 0; k < ranges.length; k += 2) total += ranges[k + 1] - ranges[k];
        let loaded = 0;
        for (let k = 0; k < ranges.length; k += 2) {
          throwIfCancelled(signal);
          const bytes = new Uint8Array(ranges[k + 1] - ranges[k]);
          await source.range(name, ranges[k], bytes, {
            signal,
            onChunk: (n) => {
              loaded += n;
              report({ file: name, loaded, total, filesDone: i, filesTotal: plan.length });
            },
          });
          chunks.add(name, ranges[k], bytes);
        }
      }
      throwIfCancelled(signal);
    } catch (error) {
      this.raw.clear_files();
      throw error;
    }
    // 3. The core reads the tensors from the chunks.
    const result = this.raw.load(configText, (name, offset, view) => chunks.read(name, offset, view), { attention_only: attentionOnly });
    this.info = unwrap(result).info;
    this.tokenizer?.dispose();
    this.tokenizer = tokenizer;
    if (tokenizer?.vocabSize && tokenizer.vocabSize > this.info.dVocab) {
      this.info.warnings.push(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's embedding has ${this.info.dVocab} rows: ids past ${this.info.dVocab - 1} cannot be run`);
    }
    return this.info;
  }

  // Token ids for the core: integers below dVocab, else a HeadscopeError.
  // (Before a load, the core reports that no model is loaded.)
  ids(values) {
    if (!this.info) return checkedIndices(values, 2 ** 31, 'token id', 'ids are below 2^31');
    const vocab = this.info.dVocab;
    return checkedIndices(values, vocab, 'token id', `this model's ids are 0 to ${vocab - 1}`);
  }

  // Flat head indices l*H + h for the core: integers below nLayer * nHead.
  heads(values) {
    if (!this.info) return checkedIndices(values, 2 ** 31, 'head index', 'indices are below 2^31');
    const n = this.info.nLayer * this.info.nHead;
    return checkedIndices(values, n, 'head index', `this model's heads are 0 to ${n - 1} (layer * nHead + head)`);
  }

  // Text to token ids. prependBos: put the model's BOS token first, as
  // TransformerLens does by default (ignored when the tokenizer's own
  // template already starts with it).
  // Async: the tokenizer runs in its own thread, with a time budget.
  async tokenize(text, { prependBos = false, addSpecialTokens = true } = {}) {
    if (!this.tokenizer) throw new HeadscopeError('this model has no tokenizer.json (or vocab.json + merges.txt): pass token ids', 'no_tokenizer');
    const { ids, tokens } = await this.tokenizer.encode(text, { addSpecialTokens });
    const bos = this.info?.bosTokenId ?? -1;
    if (prependBos && bos >= 0 && ids[0] !== bos) {
      ids.unshift(bos);
      tokens.unshift(...(await this.tokenizer.tokenTexts([bos])));
    }
    return { ids, tokens };
  }

  // Each id's display text ('#id' without a tokenizer).
  async tokenTexts(ids) {
    if (!this.tokenizer) return Array.from(ids, (id) => `#${id}`);
    return this.tokenizer.tokenTexts(ids);
  }

  // ids: token ids. Returns {nLayer, nHead, nTokens, patterns: Float32Array
  // [L, H, T, T], tokenLoss: Float32Array [T-1], loss, hidden?, logits?}.
  run(ids, { headGate, wantHidden = false, wantLogits = false } = {}) {
    const options = { want_hidden: wantHidden, want_logits: wantLogits };
    if (headGate) options.head_gate = Array.from(headGate);
    return unwrap(this.raw.run(this.ids(ids), options));
  }

  // ---- Weight geometry. Every call names its weight variant: 'raw' (as
  // loaded) or 'processed' (TransformerLens fold_ln, centring, value-bias
  // folding; pre-LN models only). onProgress(fraction) reports progress of
  // the all-pairs computations.

  // OV and QK spectra of every head: {variant, nLayer, nHead, dHead, topK,
  // qkIgnoresRotary, ov: {sigma [L,H,dh], frobenius [L,H], effectiveRank,
  // top1Share, topkShare}, qk: {...}}.
  spectra({ variant = 'raw', topK = 4, onProgress } = {}) {
    return unwrap(this.raw.geometry_spectra(variant, topK, onProgress));
  }

  // Subspace overlap ||Q_i^T Q_j||_F^2 / d_head for every pair of heads,
  // kind 'Q' | 'K' | 'V' (read) or 'O' (write): {overlap [N,N], rank [N],
  // levels (redundancyLevels: its chance level and the model's own spread)}.
  redundancy({ variant = 'raw', kind = 'O', onProgress } = {}) {
    return this.withLevels(unwrap(this.raw.geometry_redundancy(variant, kind, onProgress)), kind);
  }

  withLevels(r, kind) {
    const { nHead, nKvHead, dModel, dHead } = this.info;
    const group = nHead / Math.max(1, nKvHead || nHead);  // query heads per K/V head
    const shared = (kind === 'K' || kind === 'V') && group > 1
      ? (i, j) => Math.floor(i / nHead) === Math.floor(j / nHead) && Math.floor((i % nHead) / group) === Math.floor((j % nHead) / group)
      : undefined;
    return { ...r, levels: redundancyLevels(r, dModel, dHead, shared) };
  }

  // Q-, K-, V-composition scores [L,H,L,H] (l1 < l2, others 0); their
  // empirical null nullQ/K/V (the same scores of pairs l1 >= l2, self 0);
  // significance {fdr, q, k, v: {null: {n, mean, q95, q99, q999}, gaps,
  // nTests, p [L,H,L,H], resolvable, nFlagged, threshold}} (each pair's
  // empirical p-value, Benjamini-Hochberg at level fdr: core
  // composition_null.hpp); and the random-matrix baseline {mean, std} of the
  // same shapes, a reference level only.
  composition({ variant = 'raw', baselineSamples = 300, fdr = 0.05, onProgress } = {}) {
    return unwrap(this.raw.geometry_composition(variant, baselineSamples, fdr, onProgress));
  }

  // The three above in one pass (the core's weight_geometry): {spectra,
  // redundancy (kind 'O'), composition}, the same numbers as spectra(),
  // redundancy() and composition(), about 10% faster than the three calls.
  weightGeometry({ variant = 'raw', topK = 4, baselineSamples = 300, fdr = 0.05, onProgress } = {}) {
    const r = unwrap(this.raw.geometry_weights(variant, topK, baselineSamples, fdr, onProgress));
    return { spectra: unwrap(r.spectra), redundancy: this.withLevels(unwrap(r.redundancy), 'O'), composition: unwrap(r.composition) };
  }

  // The most redundant head pairs by write (O) and OV read (V) overlap.
  mergeCandidates({ variant = 'raw', topN = 10, onProgress } = {}) {
    return unwrap(this.raw.geometry_merge_candidates(variant, topN, onProgress));
  }

  // Tokens read (embedding rows aligned with U_k) and written (unembedding
  // columns aligned with V_k) by the head's top OV singular directions; each
  // token score carries its text when the model has a tokenizer.
  async ovReadout(layer, head, { variant = 'raw', directions = 3, topN = 8 } = {}) {
    const r = unwrap(this.raw.geometry_readout(variant, layer, head, directions, topN));
    const lists = r.directions.flatMap((d) => [d.readTop, d.readBottom, d.writeTop, d.writeBottom]);
    const ids = lists.flatMap((list) => list.map((t) => t.token));
    const texts = this.tokenizer ? await this.tokenizer.tokenTexts(ids) : null;
    let next = 0;
    const named = (list) => list.map((t) => ({ ...t, text: texts ? texts[next++] : null }));
    return {
      variant: r.variant,
      directions: r.directions.map((d) => ({
        sigma: d.sigma, readTop: named(d.readTop), readBottom: named(d.readBottom),
        writeTop: named(d.writeTop), writeBottom: named(d.writeBottom),
      })),
    };
  }

  // Principal angles (radians, ascending) and overlap between two heads'
  // subspaces: a = {layer, head, kind}, b likewise.
  pairGeometry(a, b, { variant = 'raw' } = {}) {
    return unwrap(this.raw.geometry_pair(variant, a.layer, a.head, a.kind, b.layer, b.head, b.kind));
  }

  // OV copying scores from the eigenvalues of W_E W_OV W_U (computed in the
  // small space): {copyingScore [L,H], positiveFraction [L,H]}.
  copying({ variant = 'raw', onProgress } = {}) {
    return unwrap(this.raw.geometry_copying(variant, onProgress));
  }

  // Full circuits (core/full_circuits.hpp) of `heads` (flat indices l*H+h;
  // empty: every head): ARENA's diagonal tests of the full OV
  // circuit W_E OV W_U (does the head copy the token it attends to?) and the
  // token QK circuit W_E QK W_E^T (does a query token score its own copies
  // first?), exact for vocabularies up to maxRows tokens, else on a seeded
  // sample of maxRows: {variant, dVocab, heads, nRows, sampled, seed, ov:
  // {top1, top5, medianRank, meanRank} per head, qk: the same, chance:
  // {top1, top5, meanRank}}.
  fullCircuits({ variant = 'raw', heads = [], maxRows = 1024, seed = 0, onProgress } = {}) {
    const r = unwrap(this.raw.geometry_full_circuits(variant, this.heads(heads), maxRows, seed, onProgress));
    return { ...r, chance: { top1: 1 / r.dVocab, top5: Math.min(1, 5 / r.dVocab), meanRank: (r.dVocab - 1) / 2 } };
  }

  // The positional QK circuit (learned positions only): the causal softmax of
  // W_pos QK W_pos^T times the attention scale over the first maxPositions
  // positions, per head: {nPositions, heads, patterns [heads, P, P],
  // previous, current (mean attention to the previous / same position),
  // previousChance (uniform attention's)}.
  positionalCircuit({ variant = 'raw', heads = [], maxPositions = 64 } = {}) {
    return unwrap(this.raw.geometry_positional(variant, this.heads(heads), maxPositions));
  }

  // ---- Behaviour and interventions. Every call runs with the edits in
  // force (see addOvEdit, addMerge); run() too.

  // Role detectors on a text's token ids (TransformerLens detect_head:
  // measure 'mul' | 'abs', excludeBos, excludeCurrentToken), pattern
  // statistics (sink, current token, entropy, offsets), Kovaleva classes and
  // one role label per head with its confidence. All arrays are [L, H] flat.
  behavior(ids, { measure = 'mul', excludeBos = false, excludeCurrentToken = false, threshold = 0.4, probeInduction } = {}) {
    const options = { measure, exclude_bos: excludeBos, exclude_current_token: excludeCurrentToken, threshold };
    if (probeInduction) options.probe_induction = Array.from(probeInduction);
    return unwrap(this.raw.behavior(this.ids(ids), options));
  }

  // Head statistics over a corpus (the core's corpus_stats): every
  // detector score and pattern statistic per text, summarised per head by
  // its mean over texts, a percentile-bootstrap interval at `level` and its
  // chance level (uniform attention on the same texts); how often each role
  // labels the head; the dominant offset most texts agree on. texts:
  // strings (tokenized here, BOS first when prependBos; a string is cut to
  // 64 characters per token first, so one huge line cannot stall the
  // tokenizer) or id arrays; each is cut to maxTokens ids. Progress: the
  // tokenizing is the first tenth. Also each head's top `examples` (the core's
  // RoleExample: where it does the role most texts give it most strongly) as
  // topExamples [L*H] lists of {text, query, key, weight, start, tokens}:
  // the tokens of positions start .. query + 2 (display texts), the key
  // among them.
  async corpus(texts, { maxTokens = 128, resamples = 1000, level = 0.95, seed = 0, prependBos = true, measure = 'mul', excludeBos = false, excludeCurrentToken = false, threshold = 0.4, examples = 5, onProgress } = {}) {
    const options = { max_tokens: maxTokens, resamples, level, seed, measure, exclude_bos: excludeBos, exclude_current_token: excludeCurrentToken, threshold, examples };
    const progress = onProgress ? (f) => onProgress(0.1 + 0.9 * f, { what: 'corpus' }) : undefined;
    // One id more than the window, so that the core counts the texts it cuts.
    const ids = await this.corpusIds(texts, { limit: maxTokens + 1, prependBos, onProgress });
    const r = unwrap(this.raw.corpus(ids, options, progress));
    const { examplePositions: where, exampleWeights: weights, examplesPerHead: k } = r;
    delete r.examplePositions;
    delete r.exampleWeights;
    const windows = [];
    for (let e = 0; e < weights.length; e++) {
      const [text, query, key] = where.subarray(3 * e, 3 * e + 3);
      if (text < 0) continue;
      const start = Math.max(0, Math.min(key, query) - 3);
      windows.push({ e, text, query, key, start, ids: ids[text].slice(start, Math.min(r.nTokens[text], Math.max(key, query) + 3)) });
    }
    const unique = [...new Set(windows.flatMap((w) => Array.from(w.ids)))];
    const names = new Map((await this.tokenTexts(unique)).map((name, i) => [unique[i], name]));
    r.topExamples = Array.from({ length: r.nLayer * r.nHead }, () => []);
    for (const w of windows) {
      r.topExamples[Math.floor(w.e / k)].push({ text: w.text, query: w.query, key: w.key, weight: weights[w.e], start: w.start, tokens: Array.from(w.ids, (id) => names.get(id)) });
    }
    return r;
  }

  // Head importance over a corpus (the core's corpus_importance): Michel et
  // al.'s E_x |dL/dxi_h| and its per-layer normalisation, the mean
  // leave-one-out loss change with its interval (leaveOneOut: L * H
  // forwards per text), and a pruning curve whose order is chosen on the
  // even-indexed texts and measured on the odd-indexed ones, next to
  // nRandom random orders (their min-max band). Texts as in corpus(). The
  // loss: lossInput's, text by text (BERT-like models: the masked-LM loss,
  // text t masked with seed + t).
  async corpusImportance(texts, { maxTokens = 128, resamples = 1000, level = 0.95, seed = 0, prependBos = true, leaveOneOut = true, mode = 'zero', nRandom = 5, onProgress } = {}) {
    const inputs = (await this.corpusIds(texts, { limit: maxTokens, prependBos, onProgress })).map((ids, t) => this.lossInput(ids, { maskSeed: seed + t }));
    const ids = inputs.map((input) => input.ids);
    const options = { max_tokens: maxTokens, resamples, level, seed, leave_one_out: leaveOneOut, mode, n_random: nRandom };
    if (inputs.some((input) => input.labels)) options.labels = inputs.map((input) => input.labels);
    const progress = onProgress ? (f) => onProgress(0.1 + 0.9 * f, { what: 'corpus importance' }) : undefined;
    return unwrap(this.raw.corpus_importance(ids, options, progress));
  }

  // The corpus calls' texts as id arrays of at most `limit` ids (the first
  // tenth of their progress).
  async corpusIds(texts, { limit, prependBos, onProgress }) {
    const ids = [];
    for (const [i, text] of texts.entries()) {
      if (typeof text === 'string') {
        const tokens = (await this.tokenize(text.slice(0, limit * 64), { prependBos })).ids;
        ids.push(this.ids(tokens.slice(0, limit)));
      } else {
        ids.push(this.ids(Array.from(text).slice(0, limit)));
      }
      onProgress?.((0.1 * (i + 1)) / texts.length, { what: 'tokenizing', done: i + 1, total: texts.length });
    }
    return ids;
  }

  // The standard induction test: [BOS] + R + R, R random ids (SPEC §5.6):
  // per-head induction score and the loss on each half.
  inductionTest({ seqLen = 50, batch = 10, seed = 0, onProgress } = {}) {
    return unwrap(this.raw.induction_probe(seqLen, batch, seed, onProgress));
  }

  // The loss the behaviour calls measure on `ids`. BERT-like models
  // (bidirectional, with an MLM head, a tokenizer with a mask token): the
  // masked-LM objective, on the ids with a seeded 15 % of the ordinary
  // tokens replaced by the mask (the core's mask_tokens: never a special
  // token, at least one); `labels` given: those (Hugging Face's convention,
  // -100 where not masked, the ids already masked by the caller); mask
  // false: never masked (a per-token view of the text as typed, whose loss
  // is then the same-position one). Otherwise the core's automatic
  // objective. {ids, labels, masked}: the input to run, the labels or null,
  // the masked positions or null.
  lossInput(ids, { labels = null, maskSeed = 0, mask = true } = {}) {
    ids = this.ids(ids);
    if (labels) return { ids, labels: Int32Array.from(labels), masked: null };
    const t = this.tokenizer;
    if (!mask || this.info?.causal || !this.info?.hasLmHead || t?.maskId == null) return { ids, labels: null, masked: null };
    const m = unwrap(this.module.mask_tokens(ids, t.maskId, t.specialIds, maskSeed));
    return { ids: m.ids, labels: m.labels, masked: m.positions };
  }

  // Ablates the heads (flat indices l*H + h) with mode 'zero' or 'mean'.
  // The objective: lossInput's (maskedPositions in the result when masked).
  ablate(ids, heads, { mode = 'zero', labels = null, maskSeed = 0, mask = true } = {}) {
    const input = this.lossInput(ids, { labels, maskSeed, mask });
    return withMasked(unwrap(this.raw.ablate(input.ids, this.heads(heads), mode, input.labels)), input);
  }

  // Michel et al. gradient importance |dL/dxi_h| and leave-one-out loss change.
  importance(ids, { mode = 'zero', labels = null, maskSeed = 0, onProgress } = {}) {
    const input = this.lossInput(ids, { labels, maskSeed });
    return withMasked(unwrap(this.raw.importance(input.ids, mode, input.labels, onProgress)), input);
  }

  // Loss as heads are removed in importance order, next to random orders.
  // step 0: 10 % of the heads at a time; normalize, reestimate (gradient
  // order): Michel's per-layer normalisation and run_bertology's
  // re-estimation after each step (core/interventions.hpp PruningOptions).
  pruningCurve(ids, { order = 'gradient', mode = 'zero', step = 0, nRandom = 3, seed = 0, normalize = true, reestimate = true, labels = null, maskSeed = 0, onProgress } = {}) {
    const input = this.lossInput(ids, { labels, maskSeed });
    return withMasked(unwrap(this.raw.pruning(input.ids, { order, mode, step, n_random: nRandom, seed, normalize, reestimate }, input.labels, onProgress)), input);
  }

  // ---- Causal evidence (core/patching.hpp): a clean and a corrupted text
  // of one token length. Texts are tokenized as tokenize() with prependBos,
  // or given as id arrays. answer, wrong: token ids, or texts of exactly one
  // token (answerToken). metric: 'logit_diff' (logit(answer) - logit(wrong);
  // no wrong: the answer's logit) or 'loss' (-log p(answer)), at `position`
  // (-1: the last). Effects are normalised, 0 = the corrupted run's metric,
  // 1 = the clean run's. Each result carries the texts' tokens (cleanTokens,
  // corruptTokens) and the answers' texts.

  // One text or id array as {ids, tokens}.
  async textIds(text, prependBos) {
    if (typeof text === 'string') {
      const t = await this.tokenize(text, { prependBos });
      return { ids: this.ids(t.ids), tokens: t.tokens };
    }
    const ids = this.ids(text);
    return { ids, tokens: await this.tokenTexts(ids) };
  }

  // The clean and corrupted texts, tokenized; a message naming both lengths
  // and the first difference when they are not of one length.
  async patchPair(clean, corrupt, prependBos) {
    const a = await this.textIds(clean, prependBos);
    const b = await this.textIds(corrupt, prependBos);
    if (a.ids.length !== b.ids.length) {
      let i = 0;
      while (i < Math.min(a.ids.length, b.ids.length) && a.ids[i] === b.ids[i]) i++;
      throw new HeadscopeError(`the clean text is ${a.ids.length} tokens and the corrupted one ${b.ids.length}: patching needs texts of the same token length (they first differ at token ${i}: ${JSON.stringify(a.tokens[i] ?? '')} vs ${JSON.stringify(b.tokens[i] ?? '')})`, 'invalid_argument');
    }
    return { clean: a, corrupt: b };
  }

  // A token id: an id is checked; a text must tokenize to exactly one token
  // (without special tokens; GPT-2-style vocabularies mark a leading space:
  // ' Mary', not 'Mary').
  async answerToken(value, what = 'answer') {
    if (typeof value === 'number') return this.ids([value])[0];
    if (typeof value !== 'string' || value === '') throw new HeadscopeError(`the ${what} token is missing: give a token id or a one-token text`, 'invalid_argument');
    const { ids, tokens } = await this.tokenize(value, { addSpecialTokens: false });
    if (ids.length !== 1) {
      throw new HeadscopeError(`the ${what} ${JSON.stringify(value)} is ${ids.length} tokens (${tokens.map((t) => JSON.stringify(t)).join(' ')}), not one: pick a one-token ${what}`, 'invalid_argument');
    }
    return ids[0];
  }

  // The metric options for the core, the answers resolved.
  async metricOptions({ metric = 'logit_diff', answer, wrong = null, position = -1 }) {
    if (!Number.isSafeInteger(position) || position < -1) throw new HeadscopeError(`position ${String(position).slice(0, 40)}: give -1 (the last token) or a token index`);
    const a = await this.answerToken(answer, 'answer');
    const w = wrong === null || wrong === undefined || wrong === '' ? -1 : await this.answerToken(wrong, 'wrong answer');
    const [answerText, wrongText] = await this.tokenTexts(w >= 0 ? [a, w] : [a]);
    return { options: { metric, answer: a, wrong: w, position }, texts: { answerText, wrongText: wrongText ?? null } };
  }

  // Activation patching: target 'heads' [L,H], 'heads_by_position' [L,H,T],
  // 'resid' [L,T], 'q' [L,H], 'k' | 'v' [L,G] (per KV head); direction
  // 'denoise' (clean into corrupted) or 'noise' (corrupted into clean).
  // {target, direction, metric, answer, wrong, position, clean, corrupt,
  // shape, value, effect, cleanTokens, corruptTokens, answerText, wrongText}.
  async patch(clean, corrupt, { target = 'heads', direction = 'denoise', prependBos = true, onProgress, ...metric } = {}) {
    const pair = await this.patchPair(clean, corrupt, prependBos);
    const m = await this.metricOptions(metric);
    const r = unwrap(this.raw.patch(pair.clean.ids, pair.corrupt.ids, { ...m.options, target, direction }, onProgress));
    return { ...r, ...m.texts, cleanTokens: pair.clean.tokens, corruptTokens: pair.corrupt.tokens };
  }

  // Path patching from every sender head (ARENA's definition, see the
  // core): to the logits (receivers []) or to receiver inputs 'L9H9:q',
  // 'L9G2:k' (keys and values per KV head). {receivers, clean, corrupt,
  // value [L,H], effect [L,H] (NaN: no path), ...as patch}.
  async pathPatch(clean, corrupt, { receivers = [], prependBos = true, onProgress, ...metric } = {}) {
    const pair = await this.patchPair(clean, corrupt, prependBos);
    const m = await this.metricOptions(metric);
    const r = unwrap(this.raw.path_patch(pair.clean.ids, pair.corrupt.ids, { ...m.options, receivers: Array.from(receivers, String) }, onProgress));
    return { ...r, ...m.texts, cleanTokens: pair.clean.tokens, corruptTokens: pair.corrupt.tokens };
  }

  // Direct logit attribution of one text for logit(answer) - logit(wrong):
  // {heads [L,H,T], attnBias [L,T], editPaths [L,T], mlp [L,T], embed [T],
  // bias [T], total [T], position, tokens, answerText, wrongText}; the parts
  // sum to total at every position.
  async dla(text, { prependBos = true, ...metric } = {}) {
    const t = await this.textIds(text, prependBos);
    const m = await this.metricOptions(metric);
    return { ...unwrap(this.raw.dla(t.ids, m.options)), ...m.texts, tokens: t.tokens };
  }

  // The k most likely next tokens at `position` (-1: the last) of a text:
  // [{id, text, logit, prob}], for picking answers.
  async predictions(text, { position = -1, k = 5, prependBos = true } = {}) {
    const t = await this.textIds(text, prependBos);
    const r = this.run(t.ids, { wantLogits: true });
    if (!r.logits?.length) throw new HeadscopeError('this model has no LM head: it predicts no tokens', 'invalid_argument');
    const V = r.logits.length / r.nTokens;
    const p = position < 0 ? r.nTokens - 1 : Math.min(position, r.nTokens - 1);
    const row = r.logits.subarray(p * V, (p + 1) * V);
    let top = -Infinity;
    for (const x of row) top = Math.max(top, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - top);
    const best = Array.from(row.keys()).sort((i, j) => row[j] - row[i]).slice(0, k);
    const texts = await this.tokenTexts(best);
    return best.map((id, i) => ({ id, text: texts[i], logit: row[id], prob: Math.exp(row[id] - top) / sum }));
  }

  // OV edits, in TransformerLens's row-vector convention (x W_OV = x U
  // diag(sigma) V^T: U is the read side, V the write side; papers in column
  // vectors write W_OV^T, whose u_k is our V_k). kind 'remove_component'
  // (the default): W_OV -= alpha sigma_k U_k V_k^T (alpha 1: the head no
  // longer maps U_k to V_k); 'rank_one_scaled': W_OV -= alpha sigma_k u u^T
  // with u the k-th singular vector on `side`; 'rank_one': the same with an
  // absolute alpha (the seed's literal formula; it adds a path from u to
  // u). variant: the weights whose SVD defines "component k" ('raw', or
  // 'processed', as the page displays them). Returns {id, edits}.
  addOvEdit({ kind = 'remove_component', layer, head, component = 0, alpha = 1, side = 'write', variant = 'raw' }) {
    return unwrap(this.raw.add_ov_edit(kind, layer, head, component, alpha, side, variant));
  }

  // Replaces heads a and b of a layer by one head (their summed OV at its best
  // rank-d_head approximation, with the pattern of patternHead).
  addMerge({ layer, headA, headB, patternHead = headA }) {
    return unwrap(this.raw.add_merge(layer, headA, headB, patternHead));
  }

  undoEdit(id) {
    return unwrap(this.raw.undo_edit(id)).edits;
  }

  edits() {
    return unwrap(this.raw.list_edits()).edits;
  }

  // Loss after merging two heads, next to pruning either or both.
  evaluateMerge(ids, { layer, headA, headB, labels = null, maskSeed = 0, onProgress }) {
    const input = this.lossInput(ids, { labels, maskSeed });
    return withMasked(unwrap(this.raw.evaluate_merge(input.ids, layer, headA, headB, input.labels, onProgress)), input);
  }

  dispose() {
    this.tokenizer?.dispose();
    this.raw.delete();
  }
}

// A behaviour result with the positions its masked-LM objective masked.
function withMasked(result, input) {
  return input.masked ? { ...result, maskedPositions: Array.from(input.masked) } : result;
}

// What a redundancy overlap is worth, beside the matrix r ({overlap [N,N],
// rank [N]}) of a model with residual width dModel and head width dHead:
//   chance           [N,N] the isotropic level, the mean overlap of two
//                    uniformly random subspaces of the heads' ranks in the
//                    residual stream: r_i r_j / (dModel dHead)
//   chanceFullRank   the same for two full-rank heads: dHead / dModel
//   pairs            this model's own overlaps over its pairs of different
//                    heads (i < j) that do not share their weights
//                    (shared(i, j): the K or V heads of one GQA group are
//                    the same subspace): {n, median, p90, p95, p99}. Real
//                    heads share the residual stream's anisotropy and overlap
//                    more than random subspaces; a pair stands out when it
//                    stands out from these.
export function redundancyLevels({ overlap, rank }, dModel, dHead, shared = () => false) {
  const n = rank.length;
  const chance = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) chance[i * n + j] = (rank[i] * rank[j]) / (dModel * dHead);
  const kept = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (!shared(i, j)) kept.push(overlap[i * n + j]);
  const values = Float64Array.from(kept).sort();
  // Linear interpolation between order statistics (numpy's default).
  const quantile = (q) => {
    if (!values.length) return NaN;
    const at = q * (values.length - 1);
    const lo = Math.floor(at);
    const hi = Math.min(lo + 1, values.length - 1);
    return values[lo] + (at - lo) * (values[hi] - values[lo]);
  };
  return {
    chance, chanceFullRank: dHead / dModel,
    pairs: { n: values.length, median: quantile(0.5), p90: quantile(0.9), p95: quantile(0.95), p99: quantile(0.99) },
  };
}

// What to say when a forward pass overflowed float32 (weights near 3e38, or
// activations that grow past it): how many attention weights are NaN or
// infinite, and whether the loss is (a run of one token has no loss). null
// when everything is finite. run: {patterns, tokenLoss, loss}.
export function nonFiniteWarning({ patterns, tokenLoss, loss }) {
  let bad = 0;
  for (let i = 0; i < patterns.length; i++) if (!Number.isFinite(patterns[i])) bad++;
  const lossBad = tokenLoss?.length > 0 && !Number.isFinite(loss);
  if (!bad && !lossBad) return null;
  const parts = [];
  if (bad) parts.push(`${bad} of ${patterns.length} attention weights`);
  if (lossBad) parts.push('the loss');
  const plural = bad > 1 || parts.length > 1;
  return `the forward pass overflowed: ${parts.join(' and ')} ${plural ? 'are' : 'is'} NaN or infinite (the weights or activations exceed float32's range)`;
}

export class Headscope {
  // wasmFile: which build of the core runs (wasm/features.mjs), when known.
  // threads: how many threads its work is shared over (startThreads).
  constructor(module, wasmFile = null, spawnTokenizer = null) {
    this.module = module;
    this.wasmFile = wasmFile;
    this.spawnTokenizer = spawnTokenizer;
    this.threads = 1;
  }

  createSession() {
    return new ModelSession(this.module, this.spawnTokenizer);
  }

  // The threaded build: shares the work over n threads from now on, starting
  // the pthreads it does not have yet (a page starts them after its first
  // run, which their loading would otherwise delay). Call it between calls
  // of the core. Returns the count in force (1 without the threaded build).
  async startThreads(n) {
    const pool = this.module.PThread;
    if (!pool || !(n > 1)) return this.threads;
    const missing = n - 1 - pool.unusedWorkers.length - pool.runningWorkers.length;
    await Promise.all(Array.from({ length: Math.max(0, missing) }, () => new Promise((resolve) => {
      pool.allocateUnusedWorker();
      pool.loadWasmModuleToWorker(pool.unusedWorkers[pool.unusedWorkers.length - 1], resolve);
    })));
    this.threads = this.module.set_thread_count(n);
    return this.threads;
  }

  // Singular values (descending) of a rows x cols row-major matrix.
  singularValues(matrix, rows, cols) {
    return unwrap(this.module.singular_values(Array.from(matrix), rows, cols)).values;
  }
}

// factory: the Emscripten module factory (createHeadscopeModule).
// options: {wasmBinary} (bytes), {wasmUrl} (where headscope_core.wasm is
// served) or {wasmModule} (a WebAssembly.Module, or a promise of one, e.g.
// compiled while the factory's script was still loading); {wasmFile}: the
// build's file name, reported as headscope.wasmFile; {spawnTokenizer}: starts
// a tokenizer thread, {postMessage, onMessage, terminate} (wasm/node.mjs and
// web/worker/worker.js give one; see wasm/tokenizer.mjs); {threads}: with the
// threaded build's factory (headscope_core_threads.mjs), how many threads
// share the work (threads - 1 pthreads started before it returns; default
// 1; see Headscope.startThreads).
export async function createHeadscope(factory, options = {}) {
  const threads = Math.max(1, Math.floor(Number(options.threads) || 1));
  const moduleOptions = {};
  if (options.wasmBinary) moduleOptions.wasmBinary = options.wasmBinary;
  // (The threaded build also locates its pthreads' script, beside the glue.)
  if (options.wasmUrl) moduleOptions.locateFile = (file, prefix) => (file.endsWith('.wasm') ? String(options.wasmUrl) : prefix + file);
  let failed;
  const failure = new Promise((resolve, reject) => {
    failed = reject;
  });
  if (options.wasmModule) {
    // Emscripten's hook: instantiate it ourselves and hand the instance back.
    moduleOptions.instantiateWasm = (imports, receiveInstance) => {
      Promise.resolve(options.wasmModule)
        .then(async (compiled) => receiveInstance(await WebAssembly.instantiate(compiled, imports), compiled))
        .catch((error) => failed(new HeadscopeError(`the wasm core could not start (${error.message})`, 'engine_stopped')));
      return {};
    };
  }
  const module = await Promise.race([factory(moduleOptions), failure]);
  const core = new Headscope(module, options.wasmFile ?? null, options.spawnTokenizer ?? null);
  await core.startThreads(threads);  // (a build without threads stays at 1)
  return core;
}

// Fetches and compiles the wasm core from `url` (streaming where the server
// sends application/wasm). Starting this before the Emscripten script loads
// overlaps the two downloads.
export async function compileWasm(url, fetchImpl = globalThis.fetch) {
  const response = await fetchImpl(url);
  if (!response.ok) throw new HeadscopeError(`${url}: HTTP ${response.status}`, 'engine_stopped');
  if (WebAssembly.compileStreaming && /^application\/wasm\b/.test(response.headers.get('Content-Type') || '')) {
    return WebAssembly.compileStreaming(response);
  }
  return WebAssembly.compile(await response.arrayBuffer());
}
