// The idiomatic JS API over the raw Embind module. The raw binding returns
// {ok, error, ...} objects; this wrapper turns failures into a thrown
// HeadscopeError and hides the module's memory management. It knows nothing
// of where the module comes from: the worker (browser) and wasm/node.mjs
// (node: CLI and tests) hand it the Emscripten factory and the wasm bytes or
// URL.
import { TextTokenizer, gpt2TokenizerJson } from './tokenizer.mjs';

export class HeadscopeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'HeadscopeError';
  }
}

function unwrap(result) {
  if (!result || result.ok !== true) {
    throw new HeadscopeError(result && typeof result.error === 'string' ? result.error : 'unknown error in the core');
  }
  delete result.ok;
  return result;
}

function parseJson(text, name) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HeadscopeError(`${name}: not valid JSON (${error.message})`);
  }
}

// Names of the weight files of a checkpoint: the shards listed by
// model.safetensors.index.json, or model.safetensors.
async function weightFileNames(source, signal) {
  const indexText = await source.text('model.safetensors.index.json', { signal });
  if (indexText === null) return ['model.safetensors'];
  const index = parseJson(indexText, 'model.safetensors.index.json');
  if (!index || typeof index.weight_map !== 'object' || index.weight_map === null) {
    throw new HeadscopeError('model.safetensors.index.json: no weight_map object');
  }
  const names = [...new Set(Object.values(index.weight_map))];
  for (const name of names) {
    if (typeof name !== 'string' || !/^[\w.-]+\.safetensors$/.test(name)) {
      throw new HeadscopeError(`model.safetensors.index.json: ${JSON.stringify(name)} is not a shard file name`);
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
    throw new HeadscopeError(`tokenizer.json: cannot be read (${error.message})`);
  }
  return null;
}

// One loaded model: its description, its tokenizer (when the checkpoint has
// one) and the forward pass.
export class ModelSession {
  constructor(module) {
    this.raw = new module.Session();
    this.info = null;
    this.tokenizer = null;
  }

  // source: see wasm/sources.mjs. onProgress({file, loaded, total, filesDone, filesTotal}).
  async load(source, { onProgress, signal } = {}) {
    this.info = null;
    const configText = await source.text('config.json', { signal });
    if (configText === null) throw new HeadscopeError(`${source.label}: config.json is missing`);
    const tokenizer = await loadTokenizer(source, signal);
    const names = await weightFileNames(source, signal);
    for (const [i, name] of names.entries()) {
      const bytes = await source.bytes(name, (size) => unwrap(this.raw.file_buffer(name, size)).view, {
        signal,
        onProgress: (p) => onProgress?.({ ...p, filesDone: i, filesTotal: names.length }),
      });
      if (bytes === null) {
        this.raw.clear_files();
        throw new HeadscopeError(`${source.label}: ${name} is missing (headscope reads .safetensors weights, not pytorch_model.bin)`);
      }
    }
    this.info = JSON.parse(unwrap(this.raw.load(configText)).info);
    this.tokenizer = tokenizer;
    if (tokenizer?.vocabSize && tokenizer.vocabSize > this.info.d_vocab) {
      this.info.warnings.push(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's embedding has ${this.info.d_vocab} rows: ids past ${this.info.d_vocab - 1} cannot be run`);
    }
    return this.info;
  }

  // Text to token ids. prependBos: put the model's BOS token first, as
  // TransformerLens does by default (ignored when the tokenizer's own
  // template already starts with it).
  tokenize(text, { prependBos = false, addSpecialTokens = true } = {}) {
    if (!this.tokenizer) throw new HeadscopeError('this model has no tokenizer.json (or vocab.json + merges.txt): pass token ids');
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
    const r = unwrap(this.raw.run(Array.from(ids), options));
    return {
      nLayer: r.n_layer, nHead: r.n_head, nTokens: r.n_tokens,
      patterns: r.patterns, tokenLoss: r.token_loss, loss: r.loss, hidden: r.hidden, logits: r.logits,
    };
  }

  dispose() {
    this.raw.delete();
  }
}

export class Headscope {
  constructor(module) {
    this.module = module;
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
// options: {wasmBinary} (bytes) or {wasmUrl} (where headscope_core.wasm is served).
export async function createHeadscope(factory, options = {}) {
  const moduleOptions = {};
  if (options.wasmBinary) moduleOptions.wasmBinary = options.wasmBinary;
  if (options.wasmUrl) moduleOptions.locateFile = () => String(options.wasmUrl);
  const module = await factory(moduleOptions);
  return new Headscope(module);
}
