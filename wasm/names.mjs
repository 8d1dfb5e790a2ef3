// Field names. The core's are snake_case (its C++ structs, the CLI's JSON,
// TransformerLens's names: n_layer, effective_rank); the JS API's are
// camelCase (nLayer, effectiveRank). headscope.mjs renames every core result
// once (camelKeys); the CLI renames what it writes back (snakeKeys). Only
// keys that look like identifiers change: a head label ('L0H1') stays as it
// is. Typed arrays and other non-plain objects pass through untouched.
const SNAKE = /^[a-z][a-z0-9]*(_[a-z0-9]+)+$/;
const CAMEL = /^[a-z][a-z0-9]*([A-Z][a-z0-9]*)+$/;

export const camelName = (name) => (SNAKE.test(name) ? name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase()) : name);
export const snakeName = (name) => (CAMEL.test(name) ? name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : name);

function renameKeys(value, rename) {
  if (Array.isArray(value)) return value.map((item) => renameKeys(item, rename));
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [rename(key), renameKeys(item, rename)]));
}

export const camelKeys = (value) => renameKeys(value, camelName);
export const snakeKeys = (value) => renameKeys(value, snakeName);

// JSON as headscope writes it, in the CLI's files and the page's exports:
// the core's snake_case names, typed arrays as plain arrays.
export function toJson(value, indent) {
  return JSON.stringify(snakeKeys(value), (key, item) => (ArrayBuffer.isView(item) ? Array.from(item) : item), indent);
}
