// The idiomatic JS API over the raw Embind module. The raw binding returns
// {ok, error, ...} objects; this wrapper turns failures into a thrown
// HeadscopeError and hides the module's memory management. It knows nothing
// of where the module comes from: the worker (browser) and wasm/node.mjs
// (node: CLI and tests) hand it the Emscripten factory and the wasm bytes or
// URL.

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

export class Headscope {
  constructor(module) {
    this.module = module;
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
