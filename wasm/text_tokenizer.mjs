// The tokenizer thread's side (see wasm/tokenizer.mjs): Hugging Face's own JS
// implementation (@huggingface/tokenizers) reading a tokenizer.json, and the
// request loop the model's thread talks to.
import { Tokenizer } from '@huggingface/tokenizers';

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

// The tokenizer thread's side: answers {id, type, ...} requests on `port`
// (postMessage and a message handler: addMessageHandler(port, fn) attaches
// one to a Worker scope or a worker_threads port alike).
//   init    {json, config}           -> {vocabSize}
//   encode  {text, addSpecialTokens} -> {ids, tokens}
//   texts   {ids}                    -> {texts}: each id's display text
export function serveTokenizer(port, addMessageHandler) {
  let tokenizer = null;
  addMessageHandler(port, ({ id, type, ...args }) => {
    try {
      let result;
      if (type === 'init') {
        tokenizer = new TextTokenizer(args.json, args.config);
        result = { vocabSize: tokenizer.vocabSize };
      } else if (!tokenizer) {
        throw new Error('the tokenizer thread has no tokenizer');
      } else if (type === 'encode') {
        result = tokenizer.encode(args.text, { addSpecialTokens: args.addSpecialTokens });
      } else if (type === 'texts') {
        result = { texts: args.ids.map((t) => tokenizer.tokenText(t)) };
      } else {
        throw new Error(`unknown request ${String(type).slice(0, 40)}`);
      }
      port.postMessage({ id, result });
    } catch (error) {
      port.postMessage({ id, error: String(error?.message ?? error) });
    }
  });
}
