// The tokenizer's thread under node (worker_threads): see wasm/text_tokenizer.mjs.
import { parentPort } from 'node:worker_threads';

import { serveTokenizer } from './text_tokenizer.mjs';

serveTokenizer(parentPort, (port, handler) => port.on('message', handler));
