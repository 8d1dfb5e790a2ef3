// Tokenization as the model's thread sees it. Hugging Face's own JS
// implementation (@huggingface/tokenizers) reads tokenizer.json; GPT-2's
// legacy vocab.json + merges.txt are turned into the equivalent
// tokenizer.json (byte-level BPE, SPEC §3.7) and read the same way.
//
// A tokenizer.json carries regular expressions of its author's choosing, and
// one that backtracks without end would freeze whatever thread runs it. So
// the tokenizer runs in a thread of its own (a Worker in the browser,
// worker_threads under node; its side is wasm/text_tokenizer.mjs), and the
// model's thread talks to it through ThreadTokenizer, which stops the thread
// when a call outlives its time budget and starts a new one for the next.
// This module does not load the tokenizer library: the model's thread does
// not carry it.
import { HeadscopeError } from './errors.mjs';

export function gpt2TokenizerJson(vocab, mergesText) {
  // merges.txt: a "#version" header line, then one "a b" pair per line.
  const merges = mergesText.split('\n').filter((line, i) => line && !(i === 0 && line.startsWith('#version')));
  const added = Object.entries(vocab).filter(([token]) => token === '<|endoftext|>');
  return {
    version: '1.0',
    added_tokens: added.map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

// The regular expressions a tokenizer.json runs on text (its normalizer's and
// pre-tokenizer's Replace and Split patterns), for messages.
export function tokenizerPatterns(json) {
  const out = [];
  const visit = (node) => {
    if (!node || typeof node !== 'object') return;
    if (Array.isArray(node)) return node.forEach(visit);
    if (typeof node.pattern?.Regex === 'string') out.push(node.pattern.Regex);
    for (const key of ['normalizers', 'pretokenizers', 'normalizer', 'pre_tokenizer']) visit(node[key]);
  };
  visit(json?.normalizer);
  visit(json?.pre_tokenizer);
  return out;
}

// How long a call may take before its thread is stopped: a generous constant
// plus a time per character (real tokenizers take about a microsecond per
// character; a pattern that backtracks takes forever).
export function tokenizerBudgetMs(text = '') {
  return 2000 + 0.05 * text.length;
}

// The model thread's side. spawn() starts a tokenizer thread and returns
// {postMessage(message), onMessage(fn), terminate()}. Every call is async and
// has a time budget; past it, the thread is stopped, the call fails naming
// the tokenizer's patterns (code bad_file), and the next call starts a new
// thread with the same tokenizer.json.
export class ThreadTokenizer {
  constructor(spawn, json, config = {}) {
    this.spawn = spawn;
    this.json = json;
    this.config = config || {};
    this.patterns = tokenizerPatterns(json);
    this.vocabSize = null;
    this.thread = null;
    this.nextId = 1;
    this.pending = new Map();
  }

  // Starts the thread and builds the tokenizer there; resolves to this.
  async start() {
    ({ vocabSize: this.vocabSize } = await this.init());
    return this;
  }

  // Builds the tokenizer in the current thread.
  init() {
    return this.call('init', { json: this.json, config: this.config }, 30000, 'reading tokenizer.json');
  }

  async encode(text, { addSpecialTokens = true } = {}) {
    const value = String(text);
    return this.call('encode', { text: value, addSpecialTokens }, tokenizerBudgetMs(value), `a text of ${value.length} characters`);
  }

  // Each id's display text.
  async tokenTexts(ids) {
    return (await this.call('texts', { ids: Array.from(ids) }, tokenizerBudgetMs() + 0.1 * ids.length, `${ids.length} token texts`)).texts;
  }

  dispose() {
    this.thread?.terminate();
    this.thread = null;
  }

  // Stops the thread; every call waiting on it fails with `error`.
  fail(error) {
    this.dispose();
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.pending.clear();
  }

  async call(type, args, budgetMs, what) {
    if (!this.thread) {
      this.thread = this.spawn();
      this.thread.onMessage(({ id, result, error, fatal }) => {
        if (fatal !== undefined) {  // the thread itself failed
          this.fail(new HeadscopeError(`the tokenizer thread stopped (${fatal})`, 'engine_stopped'));
          return;
        }
        const entry = this.pending.get(id);
        if (!entry) return;
        this.pending.delete(id);
        clearTimeout(entry.timer);
        if (error !== undefined) entry.reject(new HeadscopeError(`tokenizer.json: ${error}`, 'bad_file'));
        else entry.resolve(result);
      });
      if (type !== 'init') await this.init();
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.fail(new HeadscopeError('tokenizer.json: the tokenizer was restarted', 'bad_file'));
        const patterns = this.patterns.length ? `; its pattern${this.patterns.length > 1 ? 's' : ''} ${this.patterns.map((p) => JSON.stringify(p.slice(0, 80))).join(', ')} may backtrack without end` : '';
        reject(new HeadscopeError(`tokenizer.json: the tokenizer took more than ${(budgetMs / 1000).toFixed(1)} s on ${what} and was stopped${patterns}`, 'bad_file'));
      }, budgetMs);
      this.pending.set(id, { resolve, reject, timer });
      this.thread.postMessage({ id, type, ...args });
    });
  }
}
