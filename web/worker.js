// The Web Worker that owns the wasm core. The page never touches the module:
// it sends {id, type, args} and receives, for the same id, any number of
// {type: 'progress', progress} messages and then exactly one
// {type: 'result', result} or {type: 'error', error: {name, message}}.
// The first message the worker sends is {type: 'ready'} or
// {type: 'error', id: null} if the module failed to start.
import createHeadscopeModule from './headscope_core.mjs';
import { createHeadscope } from '../wasm/headscope.mjs';

const wasmUrl = new URL('./headscope_core.wasm', import.meta.url);
const corePromise = createHeadscope(createHeadscopeModule, { wasmUrl });

const handlers = {
  singularValues(core, { matrix, rows, cols }) {
    return { values: core.singularValues(matrix, rows, cols) };
  },
};

function errorPayload(error) {
  return { name: error && error.name ? error.name : 'Error', message: String(error && error.message ? error.message : error) };
}

corePromise.then(
  () => self.postMessage({ type: 'ready' }),
  (error) => self.postMessage({ type: 'error', id: null, error: errorPayload(error) }),
);

self.onmessage = async (event) => {
  const { id, type, args } = event.data;
  try {
    const core = await corePromise;
    const handler = Object.hasOwn(handlers, type) ? handlers[type] : null;
    if (!handler) throw new Error(`unknown request type ${JSON.stringify(type)}`);
    const progress = (value) => self.postMessage({ id, type: 'progress', progress: value });
    const result = await handler(core, args || {}, progress);
    self.postMessage({ id, type: 'result', result });
  } catch (error) {
    self.postMessage({ id, type: 'error', error: errorPayload(error) });
  }
};
