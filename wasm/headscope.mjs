// The idiomatic JS API over the raw Embind module. The raw binding returns
// {ok, error, ...} objects; this wrapper turns failures into a thrown
// HeadscopeError and hides the module's memory management. It knows nothing
// of where the module comes from: the worker (browser) and wasm/node.mjs
// (node: CLI and tests) hand it the Emscripten factory and the wasm bytes or
// URL.
import { HeadscopeError } from './errors.mjs';
import { TextTokenizer, gpt2TokenizerJson } from './tokenizer.mjs';

export { HeadscopeError };

function unwrap(result) {
  if (!result || result.ok !== true) {
    if (result && typeof result.error === 'string') throw new HeadscopeError(result.error, result.code);
    throw new HeadscopeError('unknown error in the core', 'engine_stopped');
  }
  delete result.ok;
  return result;
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

// Names of the weight files of a checkpoint: the shards listed by
// model.safetensors.index.json, or model.safetensors.
async function weightFileNames(source, signal) {
  const indexText = await source.text('model.safetensors.index.json', { signal });
  if (indexText === null) return ['model.safetensors'];
  const index = parseJson(indexText, 'model.safetensors.index.json');
  if (!index || typeof index.weight_map !== 'object' || index.weight_map === null) {
    throw new HeadscopeError('model.safetensors.index.json: no weight_map object', 'bad_file');
  }
  const names = [...new Set(Object.values(index.weight_map))];
  for (const name of names) {
    if (typeof name !== 'string' || !/^[\w.-]+\.safetensors$/.test(name)) {
      throw new HeadscopeError(`model.safetensors.index.json: ${JSON.stringify(name)} is not a shard file name`, 'bad_file');
    }
  }
  return names.sort();
}

async function loadTokenizer(source, signal) {
  const json = await source.text('tokenizer.json', { signal });
  const configText = await source.text('tokenizer_config.json', { signal }).catch(() => null);
  const config = configText ? parseJson(configText, 'tokenizer_config.json') : {};
  try {
    if (json !== null) return new TextTokenizer(parseJson(json, 'tokenizer.json'), config);
    const vocab = await source.text('vocab.json', { signal });
    const merges = vocab === null ? null : await source.text('merges.txt', { signal });
    if (vocab !== null && merges !== null) return new TextTokenizer(gpt2TokenizerJson(parseJson(vocab, 'vocab.json'), merges), config);
  } catch (error) {
    if (error instanceof HeadscopeError) throw error;
    throw new HeadscopeError(`tokenizer.json: cannot be read (${error.message})`, 'bad_file');
  }
  return null;
}

// Checkpoint entries that are registered buffers, not weights (SPEC §2.0):
// causal masks and rotary caches. A ranged download skips them.
const BUFFER_TENSOR = /(^|\.)(attn\.bias|attn\.masked_bias|attention\.bias|attention\.masked_bias|rotary_emb\.inv_freq)$/;

// Downloads a .safetensors file with Range requests: its header, then only
// the weight tensors (adjacent ones in one request), assembled into a valid
// safetensors file in a JS buffer. Returns null when the source cannot do
// ranges, so the caller falls back to a whole download.
// keep(names) -> the subset to download (all weights when absent).
async function loadRanged(module, source, name, { signal, onProgress, keep }) {
  const prefix = new Uint8Array(8);
  const fileSize = await source.range(name, 0, prefix, { signal });
  if (fileSize === null) return null;
  const headerSize = Number(new DataView(prefix.buffer).getBigUint64(0, true));
  if (!Number.isFinite(fileSize) || headerSize > 100_000_000 || 8 + headerSize > fileSize) {
    throw new HeadscopeError(`${name}: header length ${headerSize} does not fit in a file of ${fileSize} bytes`, 'bad_file');
  }
  const head = new Uint8Array(8 + headerSize);
  head.set(prefix);
  await source.range(name, 8, head.subarray(8), { signal });
  const parsed = unwrap(module.parse_safetensors_header(head, fileSize, name));
  let wanted = JSON.parse(parsed.tensors).filter((t) => !BUFFER_TENSOR.test(t.name)).sort((a, b) => a.begin - b.begin);
  if (keep) {
    const kept = new Set(keep(wanted.map((t) => t.name)));
    wanted = wanted.filter((t) => kept.has(t.name));
  }

  // The new header lists the wanted tensors back to back, in file order.
  const header = {};
  const metadata = JSON.parse(parsed.metadata);
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of wanted) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.end - t.begin] };
    offset += t.end - t.begin;
  }
  let headerText = JSON.stringify(header);
  headerText += ' '.repeat((8 - (new TextEncoder().encode(headerText).length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(headerText);
  const total = 8 + headerBytes.length + offset;

  const view = new Uint8Array(total);
  new DataView(view.buffer, view.byteOffset).setBigUint64(0, BigInt(headerBytes.length), true);
  view.set(headerBytes, 8);
  const dataStart = 8 + headerBytes.length;
  const fileDataStart = 8 + headerSize;
  let loaded = 0;
  for (let i = 0; i < wanted.length;) {
    let j = i + 1;
    while (j < wanted.length && wanted[j].begin === wanted[j - 1].end) j++;  // coalesce adjacent tensors
    const begin = wanted[i].begin;
    const length = wanted[j - 1].end - begin;
    const into = view.subarray(dataStart + Number(header[wanted[i].name].data_offsets[0]), dataStart + Number(header[wanted[i].name].data_offsets[0]) + length);
    await source.range(name, fileDataStart + begin, into, {
      signal,
      onChunk: (n) => {
        loaded += n;
        onProgress?.({ file: name, loaded, total: offset });
      },
    });
    i = j;
  }
  return view;
}

// The first 8 + N bytes of a safetensors file (fewer when the file is that
// short or its N is nonsense: the core's parser reports either).
function headerOf(bytes) {
  if (bytes.length < 8) return bytes;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return bytes.subarray(0, n < BigInt(bytes.length - 8) ? 8 + Number(n) : bytes.length);
}

// One loaded model: its description, its tokenizer (when the checkpoint has
// one) and the forward pass.
export class ModelSession {
  constructor(module) {
    this.module = module;
    this.raw = new module.Session();
    this.info = null;
    this.tokenizer = null;
  }

  // source: see wasm/sources.mjs. onProgress({file, loaded, total, filesDone, filesTotal}).
  // attentionOnly: only the attention weights and the blocks' norms (weight
  // geometry without running text; ranged downloads fetch nothing else).
  async load(source, { onProgress, signal, attentionOnly = false } = {}) {
    this.info = null;
    throwIfCancelled(signal);
    // The small files are requested together; their problems are reported
    // in this order (a missing config.json first).
    const settled = await Promise.allSettled([source.text('config.json', { signal }), loadTokenizer(source, signal), weightFileNames(source, signal)]);
    if (settled[0].status === 'fulfilled' && settled[0].value === null) throw new HeadscopeError(`${source.label}: config.json is missing`, 'missing_file');
    const [configText, tokenizer, names] = settled.map((s) => {
      if (s.status === 'rejected') throw s.reason;
      return s.value;
    });
    const keep = attentionOnly ? (tensorNames) => JSON.parse(unwrap(this.module.attention_tensors(configText, JSON.stringify(tensorNames))).names) : null;
    // Each file's bytes stay in a JS buffer (outside wasm memory, which never
    // shrinks); the core gets the headers, then copies each tensor from here
    // straight into the model's weights, and the buffers are dropped after.
    const files = new Map();
    try {
      for (const [i, name] of names.entries()) {
        throwIfCancelled(signal);
        const progress = (p) => onProgress?.({ ...p, filesDone: i, filesTotal: names.length });
        let bytes = source.range ? await loadRanged(this.module, source, name, { signal, onProgress: progress, keep }) : null;
        if (bytes === null) bytes = await source.bytes(name, (size) => new Uint8Array(size), { signal, onProgress: progress });
        if (bytes === null) {
          throw new HeadscopeError(`${source.label}: ${name} is missing (headscope reads .safetensors weights, not pytorch_model.bin)`, 'missing_weights');
        }
        files.set(name, bytes);
        unwrap(this.raw.add_file(name, headerOf(bytes), bytes.length));
      }
      throwIfCancelled(signal);
    } catch (error) {
      this.raw.clear_files();
      throw error;
    }
    const read = (name, offset, view) => {
      const bytes = files.get(name);
      if (!bytes || offset + view.length > bytes.length) return `bytes [${offset}, ${offset + view.length}) are not in the file`;
      view.set(bytes.subarray(offset, offset + view.length));
      return undefined;
    };
    const result = this.raw.load(configText, read, { attention_only: attentionOnly });
    files.clear();
    this.info = JSON.parse(unwrap(result).info);
    this.tokenizer = tokenizer;
    if (tokenizer?.vocabSize && tokenizer.vocabSize > this.info.d_vocab) {
      this.info.warnings.push(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's embedding has ${this.info.d_vocab} rows: ids past ${this.info.d_vocab - 1} cannot be run`);
    }
    return this.info;
  }

  // Token ids for the core: integers below d_vocab, else a HeadscopeError.
  // (Before a load, the core reports that no model is loaded.)
  ids(values) {
    if (!this.info) return checkedIndices(values, 2 ** 31, 'token id', 'ids are below 2^31');
    const vocab = this.info.d_vocab;
    return checkedIndices(values, vocab, 'token id', `this model's ids are 0 to ${vocab - 1}`);
  }

  // Flat head indices l*H + h for the core: integers below n_layer * n_head.
  heads(values) {
    if (!this.info) return checkedIndices(values, 2 ** 31, 'head index', 'indices are below 2^31');
    const n = this.info.n_layer * this.info.n_head;
    return checkedIndices(values, n, 'head index', `this model's heads are 0 to ${n - 1} (layer * n_head + head)`);
  }

  // Text to token ids. prependBos: put the model's BOS token first, as
  // TransformerLens does by default (ignored when the tokenizer's own
  // template already starts with it).
  tokenize(text, { prependBos = false, addSpecialTokens = true } = {}) {
    if (!this.tokenizer) throw new HeadscopeError('this model has no tokenizer.json (or vocab.json + merges.txt): pass token ids', 'no_tokenizer');
    const { ids, tokens } = this.tokenizer.encode(text, { addSpecialTokens });
    const bos = this.info?.bos_token_id ?? -1;
    if (prependBos && bos >= 0 && ids[0] !== bos) {
      ids.unshift(bos);
      tokens.unshift(this.tokenizer.tokenText(bos));
    }
    return { ids, tokens };
  }

  // ids: token ids. Returns {nLayer, nHead, nTokens, patterns: Float32Array
  // [L, H, T, T], tokenLoss: Float32Array [T-1], loss, hidden?, logits?}.
  run(ids, { headGate, wantHidden = false, wantLogits = false } = {}) {
    const options = { want_hidden: wantHidden, want_logits: wantLogits };
    if (headGate) options.head_gate = Array.from(headGate);
    const r = unwrap(this.raw.run(this.ids(ids), options));
    return {
      nLayer: r.n_layer, nHead: r.n_head, nTokens: r.n_tokens,
      patterns: r.patterns, tokenLoss: r.token_loss, loss: r.loss, hidden: r.hidden, logits: r.logits,
    };
  }

  // ---- Weight geometry. Every call names its weight variant: 'raw' (as
  // loaded) or 'processed' (TransformerLens fold_ln, centring, value-bias
  // folding; pre-LN models only). onProgress(fraction) reports progress of
  // the all-pairs computations.

  // OV and QK spectra of every head: {variant, n_layer, n_head, d_head,
  // top_k, qk_ignores_rotary, ov: {sigma [L,H,dh], frobenius [L,H],
  // effective_rank, top1_share, topk_share}, qk: {...}}.
  spectra({ variant = 'raw', topK = 4, onProgress } = {}) {
    return unwrap(this.raw.geometry_spectra(variant, topK, onProgress));
  }

  // Subspace overlap ||Q_i^T Q_j||_F^2 / d_head for every pair of heads,
  // kind 'Q' | 'K' | 'V' (read) or 'O' (write): {overlap [N,N], rank [N]}.
  redundancy({ variant = 'raw', kind = 'O', onProgress } = {}) {
    return unwrap(this.raw.geometry_redundancy(variant, kind, onProgress));
  }

  // Q-, K-, V-composition scores [L,H,L,H] (l1 < l2, others 0) and the
  // random-matrix baseline {mean, std} for the same shapes.
  composition({ variant = 'raw', baselineSamples = 300, onProgress } = {}) {
    return unwrap(this.raw.geometry_composition(variant, baselineSamples, onProgress));
  }

  // The three above in one pass (the core's weight_geometry): {spectra,
  // redundancy (kind 'O'), composition}, the same numbers as spectra(),
  // redundancy() and composition(), about 10% faster than the three calls.
  weightGeometry({ variant = 'raw', topK = 4, baselineSamples = 300, onProgress } = {}) {
    const r = unwrap(this.raw.geometry_weights(variant, topK, baselineSamples, onProgress));
    return { spectra: unwrap(r.spectra), redundancy: unwrap(r.redundancy), composition: unwrap(r.composition) };
  }

  // The most redundant head pairs by write (O) and OV read (V) overlap.
  mergeCandidates({ variant = 'raw', topN = 10, onProgress } = {}) {
    const r = unwrap(this.raw.geometry_merge_candidates(variant, topN, onProgress));
    return { variant: r.variant, pairs: JSON.parse(r.pairs) };
  }

  // Tokens read (embedding rows aligned with U_k) and written (unembedding
  // columns aligned with V_k) by the head's top OV singular directions; each
  // token score carries its text when the model has a tokenizer.
  ovReadout(layer, head, { variant = 'raw', directions = 3, topN = 8 } = {}) {
    const r = unwrap(this.raw.geometry_readout(variant, layer, head, directions, topN));
    const named = (list) => list.map((t) => ({ ...t, text: this.tokenizer ? this.tokenizer.tokenText(t.token) : null }));
    return {
      variant: r.variant,
      directions: JSON.parse(r.directions).map((d) => ({
        sigma: d.sigma, readTop: named(d.read_top), readBottom: named(d.read_bottom),
        writeTop: named(d.write_top), writeBottom: named(d.write_bottom),
      })),
    };
  }

  // Principal angles (radians, ascending) and overlap between two heads'
  // subspaces: a = {layer, head, kind}, b likewise.
  pairGeometry(a, b, { variant = 'raw' } = {}) {
    return unwrap(this.raw.geometry_pair(variant, a.layer, a.head, a.kind, b.layer, b.head, b.kind));
  }

  // OV copying scores from the eigenvalues of W_E W_OV W_U (computed in the
  // small space): {copying_score [L,H], positive_fraction [L,H]}.
  copying({ variant = 'raw', onProgress } = {}) {
    return unwrap(this.raw.geometry_copying(variant, onProgress));
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
    return JSON.parse(unwrap(this.raw.behavior(this.ids(ids), options)).json);
  }

  // The standard induction test: [BOS] + R + R, R random ids (SPEC §5.6):
  // per-head induction score and the loss on each half.
  inductionTest({ seqLen = 50, batch = 10, seed = 0, onProgress } = {}) {
    return JSON.parse(unwrap(this.raw.induction_probe(seqLen, batch, seed, onProgress)).json);
  }

  // Ablates the heads (flat indices l*H + h) with mode 'zero' or 'mean'.
  ablate(ids, heads, { mode = 'zero' } = {}) {
    return unwrap(this.raw.ablate(this.ids(ids), this.heads(heads), mode));
  }

  // Michel et al. gradient importance |dL/dxi_h| and leave-one-out loss change.
  importance(ids, { mode = 'zero', onProgress } = {}) {
    return unwrap(this.raw.importance(this.ids(ids), mode, onProgress));
  }

  // Loss as heads are removed in importance order, next to random orders.
  pruningCurve(ids, { order = 'gradient', mode = 'zero', step = 1, nRandom = 3, seed = 0, onProgress } = {}) {
    return JSON.parse(unwrap(this.raw.pruning(this.ids(ids), { order, mode, step, n_random: nRandom, seed }, onProgress)).json);
  }

  // OV edits, in TransformerLens's row-vector convention (x W_OV: U is the
  // read side, V the write side). kind 'rank_one': W_OV -= alpha u_k u_k^T
  // with u_k the singular vector on `side`; 'remove_component':
  // W_OV -= alpha sigma_k u_k v_k^T. Returns {id, edits}.
  addOvEdit({ kind = 'rank_one', layer, head, component = 0, alpha = 1, side = 'write' }) {
    const r = unwrap(this.raw.add_ov_edit(kind, layer, head, component, alpha, side));
    return { id: r.id, edits: JSON.parse(r.edits) };
  }

  // Replaces heads a and b of a layer by one head (their summed OV at its best
  // rank-d_head approximation, with the pattern of patternHead).
  addMerge({ layer, headA, headB, patternHead = headA }) {
    const r = unwrap(this.raw.add_merge(layer, headA, headB, patternHead));
    return { id: r.id, edits: JSON.parse(r.edits) };
  }

  undoEdit(id) {
    return JSON.parse(unwrap(this.raw.undo_edit(id)).edits);
  }

  edits() {
    return JSON.parse(unwrap(this.raw.list_edits()).edits);
  }

  // Loss after merging two heads, next to pruning either or both.
  evaluateMerge(ids, { layer, headA, headB, onProgress }) {
    return JSON.parse(unwrap(this.raw.evaluate_merge(this.ids(ids), layer, headA, headB, onProgress)).json);
  }

  dispose() {
    this.raw.delete();
  }
}

export class Headscope {
  // wasmFile: which build of the core runs (wasm/features.mjs), when known.
  constructor(module, wasmFile = null) {
    this.module = module;
    this.wasmFile = wasmFile;
  }

  createSession() {
    return new ModelSession(this.module);
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
// build's file name, reported as headscope.wasmFile.
export async function createHeadscope(factory, options = {}) {
  const moduleOptions = {};
  if (options.wasmBinary) moduleOptions.wasmBinary = options.wasmBinary;
  if (options.wasmUrl) moduleOptions.locateFile = () => String(options.wasmUrl);
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
  return new Headscope(module, options.wasmFile ?? null);
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
