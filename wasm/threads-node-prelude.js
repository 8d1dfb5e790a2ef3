// Put before the threaded build's Emscripten glue (--extern-pre-js). Under
// node, Emscripten 3.1.6's ES-module glue still calls require() and reads
// __dirname, which an ES module does not have; this gives it both. In a
// browser the condition is false and nothing is imported.
const __hs_node = typeof process == 'object' && typeof process.versions == 'object' && typeof process.versions.node == 'string';
const require = __hs_node ? (await import('module')).createRequire(import.meta.url) : undefined;
const __dirname = __hs_node ? (await import('path')).dirname((await import('url')).fileURLToPath(import.meta.url)) : undefined;
