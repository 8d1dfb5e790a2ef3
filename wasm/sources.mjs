// Where a model's files come from. A source answers `text(name)` and
// `bytes(name, sink)` for file names such as "config.json" or
// "model-00001-of-00002.safetensors", returning null when the file does not
// exist (so optional files can be probed), and throwing a HeadscopeError
// naming the file otherwise (code 'network', or 'cancelled'). `bytes` streams into `sink(size)`, which returns the
// Uint8Array to fill (a JS buffer: the core copies tensors out of it at load).
//
//   urlSource(base)            any static server (files at base + name)
//   hubSource(repo, revision)  https://huggingface.co/{repo}/resolve/{revision}/{name}
//   fileListSource(files)      File objects dropped on the page or picked
import { HeadscopeError } from './errors.mjs';
import { isRepoId } from './ids.mjs';

export const HUB_ENDPOINT = 'https://huggingface.co';

async function readBody(response, name, sink, onProgress, signal) {
  const length = Number(response.headers.get('Content-Length'));
  if (!response.body || !Number.isFinite(length) || length <= 0 || response.headers.get('Content-Encoding')) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    const target = sink(bytes.length);
    target.set(bytes);
    onProgress?.({ file: name, loaded: bytes.length, total: bytes.length });
    return target;
  }
  const target = sink(length);
  const reader = response.body.getReader();
  let loaded = 0;
  for (;;) {
    if (signal?.aborted) {
      await reader.cancel();
      throw new HeadscopeError('download cancelled', 'cancelled');
    }
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.length > length) throw new HeadscopeError(`${name}: server sent more bytes than its Content-Length (${length})`, 'network');
    target.set(value, loaded);
    loaded += value.length;
    onProgress?.({ file: name, loaded, total: length });
  }
  if (loaded !== length) throw new HeadscopeError(`${name}: download ended after ${loaded} of ${length} bytes`, 'network');
  return target;
}

function describeStatus(name, response) {
  const code = response.headers.get('X-Error-Code');
  if (response.status === 401 || response.status === 403 || code === 'GatedRepo' || code === 'RepoNotFound') {
    return `${name}: the server refused access (HTTP ${response.status}); the repository may be private, gated, or may not exist`;
  }
  return `${name}: HTTP ${response.status} ${response.statusText}`.trim();
}

// options.ranges = false: never use Range requests (whole files only).
export function urlSource(base, { fetchImpl = globalThis.fetch, label = base, headers = {}, ranges = true } = {}) {
  const root = String(base).endsWith('/') ? String(base) : `${base}/`;
  const url = (name) => new URL(name, root).href;
  async function get(name, signal) {
    let response;
    try {
      response = await fetchImpl(url(name), { signal, headers });
    } catch (error) {
      if (signal?.aborted) throw new HeadscopeError('download cancelled', 'cancelled');
      throw new HeadscopeError(`${name}: network error fetching ${url(name)} (${error.message})`, 'network');
    }
    if (response.status === 404) return null;
    if (!response.ok) throw new HeadscopeError(describeStatus(name, response), 'network');
    return response;
  }
  const source = {
    label,
    async text(name, { signal } = {}) {
      const response = await get(name, signal);
      return response ? response.text() : null;
    },
    // Reads bytes [start, start + into.length) of a file into `into`.
    // Returns the file's total size, or null when the server does not honour
    // Range requests (it answered 200 with the whole file) or has no such
    // file: the caller then falls back to bytes().
    async range(name, start, into, { signal, onChunk } = {}) {
      let response;
      try {
        response = await fetchImpl(url(name), { signal, headers: { ...headers, Range: `bytes=${start}-${start + into.length - 1}` } });
      } catch (error) {
        if (signal?.aborted) throw new HeadscopeError('download cancelled', 'cancelled');
        throw new HeadscopeError(`${name}: network error fetching ${url(name)} (${error.message})`, 'network');
      }
      if (response.status === 200 || response.status === 404) {
        await response.body?.cancel();
        return null;
      }
      if (response.status !== 206) throw new HeadscopeError(describeStatus(name, response), 'network');
      const total = Number(/\/(\d+)$/.exec(response.headers.get('Content-Range') || '')?.[1]);
      const reader = response.body.getReader();
      let loaded = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded + value.length > into.length) throw new HeadscopeError(`${name}: server sent more than the ${into.length} bytes asked for at ${start}`, 'network');
        into.set(value, loaded);
        loaded += value.length;
        onChunk?.(value.length);
      }
      if (loaded !== into.length) throw new HeadscopeError(`${name}: asked for ${into.length} bytes at ${start}, got ${loaded}`, 'network');
      return total;
    },
    async bytes(name, sink, { onProgress, signal } = {}) {
      const response = await get(name, signal);
      return response ? readBody(response, name, sink, onProgress, signal) : null;
    },
  };
  if (!ranges) delete source.range;
  return source;
}

// A fetch that answers the first plain GET of each of `urls` from a request
// started now, and everything else from `fetchImpl`. A page that knows which
// model it will open can so download it while the wasm core is still
// compiling. A prefetch that failed is retried as an ordinary fetch; the
// asker's abort signal aborts the prefetch (its headers and its body).
export function prefetchingFetch(urls, fetchImpl = globalThis.fetch) {
  const pending = new Map();
  for (const url of urls) {
    const controller = new AbortController();
    const response = fetchImpl(url, { signal: controller.signal });
    response.catch(() => {});  // reported (or retried) when it is asked for
    pending.set(String(url), { response, controller });
  }
  return (url, init = {}) => {
    const key = String(url);
    const early = pending.get(key);
    const plain = !init.headers || !Object.keys(init.headers).some((h) => h.toLowerCase() === 'range');
    if (!early || !plain) return fetchImpl(url, init);
    pending.delete(key);
    const { signal } = init;
    if (signal?.aborted) early.controller.abort();
    else signal?.addEventListener('abort', () => early.controller.abort(), { once: true });
    return early.response.catch((error) => (signal?.aborted ? Promise.reject(error) : fetchImpl(url, init)));
  };
}

export function hubSource(repo, revision = 'main', { endpoint = HUB_ENDPOINT, token, fetchImpl } = {}) {
  if (!isRepoId(repo)) throw new HeadscopeError(`"${String(repo).slice(0, 80)}" is not a Hugging Face repository id (expected owner/name)`, 'invalid_argument');
  const base = `${endpoint.replace(/\/$/, '')}/${repo}/resolve/${encodeURIComponent(revision)}/`;
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return urlSource(base, { fetchImpl, label: `${repo}@${revision}`, headers });
}

// files: File/Blob objects with .name (a folder drop gives paths; the base name is used).
export function fileListSource(files) {
  const byName = new Map();
  for (const file of files) byName.set(String(file.name).split('/').pop(), file);
  return {
    label: 'local files',
    names: () => [...byName.keys()],
    async text(name) {
      const file = byName.get(name);
      return file ? file.text() : null;
    },
    async bytes(name, sink, { onProgress } = {}) {
      const file = byName.get(name);
      if (!file) return null;
      const target = sink(file.size);
      // In 16 MB slices: a whole-file arrayBuffer() would hold the file twice.
      const step = 1 << 24;
      for (let offset = 0; offset < file.size; offset += step) {
        const end = Math.min(file.size, offset + step);
        target.set(new Uint8Array(await file.slice(offset, end).arrayBuffer()), offset);
        onProgress?.({ file: name, loaded: end, total: file.size });
      }
      if (file.size === 0) onProgress?.({ file: name, loaded: 0, total: 0 });
      return target;
    },
  };
}
