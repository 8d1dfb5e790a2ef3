// Where a model's files come from. A source answers, for file names such as
// "config.json" or "model-00001-of-00002.safetensors":
//   text(name)                     the file's text
//   range(name, start, into)       bytes [start, start + into.length) into the
//                                  Uint8Array `into`; returns the file's size
//   bytes(name, sink)              the whole file, streamed into sink(size),
//                                  which returns the Uint8Array to fill (for
//                                  servers that refuse Range requests)
// Each returns null when the file does not exist (so optional files can be
// probed) — range also when the server answers without a range — and throws
// a HeadscopeError naming the file otherwise (code 'network', 'bad_file' or
// 'cancelled'). The bytes land in JS buffers; the core copies the tensors
// out of them when it loads.
//
//   urlSource(base)            any static server (files at base + name)
//   hubSource(repo, revision)  https://huggingface.co/{repo}/resolve/{revision}/{name}
//   fileListSource(files)      File objects dropped on the page or picked
import { HeadscopeError } from './errors.mjs';
import { isRepoId } from './ids.mjs';

export const HUB_ENDPOINT = 'https://huggingface.co';

// A request that receives nothing (headers or body bytes) for this long
// fails with code 'network' instead of waiting forever.
export const STALL_MS = 60_000;

function describeStatus(name, response) {
  const code = response.headers.get('X-Error-Code');
  if (response.status === 401 || response.status === 403 || code === 'GatedRepo' || code === 'RepoNotFound') {
    return `${name}: the server refused access (HTTP ${response.status}); the repository may be private or gated (accept its licence on huggingface.co and give an access token: the page's token field, or HF_TOKEN for the CLI), or may not exist`;
  }
  return `${name}: HTTP ${response.status} ${response.statusText}`.trim();
}

// One request of file `name`: the response (null for a 404) and `read()`,
// which streams its body into `into` (or, when into is a function, into the
// Uint8Array into(size) returns) and returns the bytes read. The caller's
// signal cancels it; STALL_MS without data fails it; a body that ends early
// or runs long is an error naming both sizes.
async function request(fetchImpl, href, name, { signal, headers, stallMs }) {
  if (typeof fetchImpl !== 'function') {
    throw new HeadscopeError(`${name}: this JavaScript runtime has no fetch (node 18 or later, without --no-experimental-fetch)`, 'network');
  }
  const controller = new AbortController();
  const cancel = () => controller.abort();
  if (signal?.aborted) controller.abort();
  signal?.addEventListener('abort', cancel, { once: true });
  let timer = null;
  let stalled = false;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      controller.abort();
    }, stallMs);
    timer.unref?.();  // node: a pending timer does not keep the process alive
  };
  const settle = () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
  };
  const failure = (error, what) => {
    settle();
    if (signal?.aborted) return new HeadscopeError('download cancelled', 'cancelled');
    if (error instanceof HeadscopeError) return error;  // e.g. a host the fetch may not reach
    if (stalled) return new HeadscopeError(`${name}: no data from ${new URL(href).host} for ${Math.round(stallMs / 1000)} s`, 'network');
    return new HeadscopeError(`${name}: ${what} (${error.message})`, 'network');
  };
  arm();
  let response;
  try {
    // No Referer: the page's address is none of the model host's business.
    response = await fetchImpl(href, { signal: controller.signal, headers, referrerPolicy: 'no-referrer' });
  } catch (error) {
    throw failure(error, `network error fetching ${href}`);
  }
  clearTimeout(timer);  // read() arms it again for the body
  if (!response.ok) {
    settle();
    await response.body?.cancel().catch(() => {});
    if (response.status === 404) return { response: null };
    return { response };
  }
  const read = async (into, onChunk) => {
    const declared = Number(response.headers.get('Content-Length'));
    const known = Number.isFinite(declared) && declared >= 0 && !response.headers.get('Content-Encoding') && response.headers.has('Content-Length');
    if (typeof into === 'function') {
      if (!known || !response.body) {
        let bytes;
        arm();
        try {
          bytes = new Uint8Array(await response.arrayBuffer());
        } catch (error) {
          throw failure(error, 'the download broke off');
        }
        settle();
        const target = into(bytes.length);
        target.set(bytes);
        onChunk?.(bytes.length, bytes.length);
        return target;
      }
      into = into(declared);
    }
    const reader = response.body.getReader();
    let loaded = 0;
    for (;;) {
      let chunk;
      arm();
      try {
        chunk = await reader.read();
      } catch (error) {
        throw failure(error, `the download broke off after ${loaded} of ${into.length} bytes`);
      }
      if (chunk.done) break;
      if (loaded + chunk.value.length > into.length) {
        settle();
        await reader.cancel().catch(() => {});
        throw new HeadscopeError(`${name}: the server sent more than the ${into.length} bytes it announced`, 'network');
      }
      into.set(chunk.value, loaded);
      loaded += chunk.value.length;
      onChunk?.(chunk.value.length, into.length);
    }
    settle();
    if (loaded !== into.length) throw new HeadscopeError(`${name}: the download ended after ${loaded} of ${into.length} bytes`, 'network');
    return into;
  };
  return { response, read };
}

// options.ranges = false: never use Range requests (whole files only).
// stallMs: see STALL_MS.
export function urlSource(base, { fetchImpl = globalThis.fetch, label = base, headers = {}, ranges = true, stallMs = STALL_MS } = {}) {
  const root = String(base).endsWith('/') ? String(base) : `${base}/`;
  const url = (name) => new URL(name, root).href;
  const source = {
    label,
    async text(name, { signal } = {}) {
      const { response, read } = await request(fetchImpl, url(name), name, { signal, headers, stallMs });
      if (!response) return null;
      if (!response.ok) throw new HeadscopeError(describeStatus(name, response), 'network');
      return new TextDecoder().decode(await read((size) => new Uint8Array(size)));
    },
    // Null when the server does not honour Range requests (it answered 200
    // with the whole file) or has no such file: the caller then falls back
    // to bytes().
    async range(name, start, into, { signal, onChunk } = {}) {
      const { response, read } = await request(fetchImpl, url(name), name, {
        signal, stallMs, headers: { ...headers, Range: `bytes=${start}-${start + into.length - 1}` },
      });
      if (!response) return null;
      if (response.status === 200) {
        await response.body?.cancel().catch(() => {});
        return null;
      }
      if (response.status !== 206) throw new HeadscopeError(describeStatus(name, response), 'network');
      const total = Number(/\/(\d+)$/.exec(response.headers.get('Content-Range') || '')?.[1]);
      await read(into, (n) => onChunk?.(n));
      return total;
    },
    async bytes(name, sink, { onProgress, signal } = {}) {
      const { response, read } = await request(fetchImpl, url(name), name, { signal, headers, stallMs });
      if (!response) return null;
      if (!response.ok) throw new HeadscopeError(describeStatus(name, response), 'network');
      let loaded = 0;
      return read(sink, (n, total) => {
        loaded += n;
        onProgress?.({ file: name, loaded, total });
      });
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
    const response = fetchImpl(url, { signal: controller.signal, referrerPolicy: 'no-referrer' });
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

// A fetch that adds `Authorization: Bearer token` to requests to `origin`
// and to nothing else: redirects are followed by hand, and a hop to another
// origin (the hub sends downloads to its CDN with signed URLs) goes without
// the header. Browsers answer redirect: 'manual' with an opaque response
// whose target they hide; there the request is repeated with redirect:
// 'follow', which the Fetch standard makes drop Authorization when the
// redirect crosses origins.
export function authorizedFetch(fetchImpl, origin, token) {
  return async (input, init = {}) => {
    let href = String(input instanceof URL ? input.href : input?.url ?? input);
    for (let hop = 0; hop < 10; hop++) {
      const mine = new URL(href).origin === origin;
      const headers = { ...init.headers };
      if (mine) headers.Authorization = `Bearer ${token}`;
      const response = await fetchImpl(href, { ...init, headers, redirect: mine ? 'manual' : 'follow' });
      if (!mine) return response;
      if (response.type === 'opaqueredirect') return fetchImpl(href, { ...init, headers, redirect: 'follow' });
      const location = response.headers.get('Location');
      if (![301, 302, 303, 307, 308].includes(response.status) || !location) return response;
      await response.body?.cancel().catch(() => {});
      href = new URL(location, href).href;
    }
    throw new HeadscopeError(`${href}: too many redirects`, 'network');
  };
}

// token: a Hugging Face access token (gated or private repositories), sent
// only to the endpoint's origin.
export function hubSource(repo, revision = 'main', { endpoint = HUB_ENDPOINT, token, fetchImpl = globalThis.fetch } = {}) {
  if (!isRepoId(repo)) throw new HeadscopeError(`"${String(repo).slice(0, 80)}" is not a Hugging Face repository id (expected owner/name)`, 'invalid_argument');
  const base = `${endpoint.replace(/\/$/, '')}/${repo}/resolve/${encodeURIComponent(revision)}/`;
  const fetcher = token ? authorizedFetch(fetchImpl, new URL(base).origin, token) : fetchImpl;
  return urlSource(base, { fetchImpl: fetcher, label: `${repo}@${revision}` });
}

// Reads bytes [start, start + into.length) of a local file of `size` bytes
// in 16 MB slices, `slice(offset, n, view)` reading each; the signal is
// checked between slices, so a cancel stops a large read at once.
export async function readSlices(name, size, start, into, slice, { signal, onChunk } = {}) {
  if (start + into.length > size) {
    throw new HeadscopeError(`${name}: the file ends at byte ${size}, before byte ${start + into.length}`, 'bad_file');
  }
  const step = 1 << 24;
  for (let done = 0; done < into.length;) {
    if (signal?.aborted) throw new HeadscopeError('load cancelled', 'cancelled');
    const n = Math.min(step, into.length - done);
    await slice(start + done, n, into.subarray(done, done + n));
    done += n;
    onChunk?.(n);
  }
  return size;
}

// files: File/Blob objects with .name (a folder drop gives paths; the base
// name is used). Local files answer ranges: only what the load reads is read.
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
    async range(name, start, into, options = {}) {
      const file = byName.get(name);
      if (!file) return null;
      return readSlices(name, file.size, start, into, async (offset, n, view) => {
        view.set(new Uint8Array(await file.slice(offset, offset + n).arrayBuffer()));
      }, options);
    },
  };
}
