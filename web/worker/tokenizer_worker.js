// The tokenizer's own worker, started by worker.js: a tokenizer.json's
// patterns run here, where the model's worker can stop them (wasm/tokenizer.mjs).
import { serveTokenizer } from '../../wasm/text_tokenizer.mjs';

serveTokenizer(self, (scope, handler) => scope.addEventListener('message', (event) => handler(event.data)));
