// Downloads from the hub are kept in the Cache API so the next visit loads
// the model without the network. The cache name carries a version: a change
// to what is stored (or how) bumps it and old entries are dropped. Entries are
// keyed by the request URL, which holds repo, revision and file name
// (<endpoint>/<repo>/resolve/<revision>/<file>), plus the byte range for the
// ranged weight downloads. A revision such as 'main' can move; "clear cache"
// removes everything.

export const CACHE_NAME = 'headscope-models-v2';
const CACHE_PREFIX = 'headscope-models-';

function cacheStorage() {
  // The Cache API exists only in secure contexts (https, localhost, 127.0.0.1).
  return typeof caches !== 'undefined' ? caches : null;
}

// Deletes caches of older versions. Failures are not errors: caching is an
// optimisation.
export async function dropOldCaches() {
  const storage = cacheStorage();
  if (!storage) return;
  try {
    for (const name of await storage.keys()) if (name.startsWith(CACHE_PREFIX) && name !== CACHE_NAME) await storage.delete(name);
  } catch {
    // ignore
  }
}

function rangeOf(headers) {
  if (!headers) return null;
  if (typeof headers.get === 'function') return headers.get('Range');
  for (const [name, value] of Object.entries(headers)) if (name.toLowerCase() === 'range') return value;
  return null;
}

// The cache key of a request: its URL, plus the byte range for a Range
// request (as a query parameter: the Cache API ignores fragments). The
// loader asks for the same ranges of the same file on every visit (header,
// then the weight tensors), so ranged downloads are cached as well.
export function cacheKey(url, range) {
  if (!range) return String(url);
  const u = new URL(String(url));
  u.searchParams.set('headscope-range', range.replace(/^bytes=/, '').replace(/\s+/g, ''));
  return u.href;
}

// A fetch for wasm/sources.mjs that answers from the cache when it can and
// stores complete 200 (or, for Range requests, 206) responses as they stream
// past. The Cache API refuses 206 responses, so partial content is stored as
// a 200 response with its Content-Range header and turned back into a 206
// on the way out. onEvent({type: 'hit'|'stored'|'store-failed', url,
// message}) reports what happened.
export function cachingFetch({ fetchImpl = globalThis.fetch, onEvent = () => {} } = {}) {
  const storage = cacheStorage();
  if (!storage) return fetchImpl;
  let cachePromise = null;
  const open = () => (cachePromise ??= storage.open(CACHE_NAME));
  const pending = new Set();
  const fetchFn = async (url, init = {}) => {
    const range = rangeOf(init.headers);
    const key = cacheKey(url, range);
    let cache = null;
    try {
      cache = await open();
      const hit = await cache.match(key);
      if (hit) {
        onEvent({ type: 'hit', url: key, range: Boolean(range) });
        return range ? new Response(hit.body, { status: 206, statusText: 'Partial Content', headers: hit.headers }) : hit;
      }
    } catch {
      cache = null;
    }
    const response = await fetchImpl(url, init);
    const complete = range ? response.status === 206 && response.headers.get('Content-Range') : response.status === 200;
    if (cache && complete && !response.headers.get('Vary')?.includes('*')) {
      // The copy is consumed as the original streams; a cancelled download
      // aborts the fetch, which fails this put, so partial files are never
      // stored.
      const copy = response.clone();
      const put = cache.put(key, new Response(copy.body, { status: 200, headers: new Headers(copy.headers) })).then(
        () => onEvent({ type: 'stored', url: key }),
        (error) => onEvent({ type: 'store-failed', url: key, message: error?.message || String(error) }),
      );
      pending.add(put);
      put.finally(() => pending.delete(put));
    }
    return response;
  };
  // Resolves when every store started so far has finished (or failed).
  fetchFn.settled = () => Promise.allSettled([...pending]);
  return fetchFn;
}

// {entries, bytes} of what the current cache holds (bytes from the stored
// Content-Length headers).
export async function cacheSummary() {
  const storage = cacheStorage();
  if (!storage) return { available: false, entries: 0, bytes: 0 };
  const cache = await storage.open(CACHE_NAME);
  const requests = await cache.keys();
  let bytes = 0;
  for (const request of requests) {
    const response = await cache.match(request);
    bytes += Number(response?.headers.get('Content-Length')) || 0;
  }
  return { available: true, entries: requests.length, bytes };
}

// Drops every entry whose URL starts with prefix (a model folder whose load
// failed: a fixed file at the same revision must not be shadowed by the
// broken copy).
export async function forgetPrefix(prefix) {
  const storage = cacheStorage();
  if (!storage) return 0;
  try {
    const cache = await storage.open(CACHE_NAME);
    let n = 0;
    for (const request of await cache.keys()) {
      if (request.url.startsWith(prefix) && (await cache.delete(request))) n++;
    }
    return n;
  } catch {
    return 0;
  }
}

export async function clearCache() {
  const storage = cacheStorage();
  if (storage) await storage.delete(CACHE_NAME);
}
