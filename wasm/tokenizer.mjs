// Tokenization with Hugging Face's own JS implementation
// (@huggingface/tokenizers) reading tokenizer.json. GPT-2's legacy
// vocab.json + merges.txt are turned into the equivalent tokenizer.json
// (byte-level BPE, SPEC §3.7) and read the same way.
import { Tokenizer } from '@huggingface/tokenizers';

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

export class TextTokenizer {
  // tokenizerJson: the parsed tokenizer.json; config: tokenizer_config.json or {}.
  constructor(tokenizerJson, config = {}) {
    this.tokenizer = new Tokenizer(tokenizerJson, config || {});
    this.vocabSize = this.tokenizer.model?.vocab?.length ?? this.tokenizer.model?.tokens_to_ids?.size ?? null;
  }

  // {ids, tokens}: tokens are display strings, one per id (byte-level
  // pieces decoded to text, so " the" rather than "Ġthe").
  encode(text, { addSpecialTokens = true } = {}) {
    const encoding = this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens });
    const ids = Array.from(encoding.ids, Number);
    const tokens = ids.map((id) => this.tokenizer.decode([id], { skip_special_tokens: false }));
    return { ids, tokens };
  }

  decode(ids) {
    return this.tokenizer.decode(ids, { skip_special_tokens: false });
  }

  tokenText(id) {
    return this.tokenizer.decode([id], { skip_special_tokens: false });
  }
}
