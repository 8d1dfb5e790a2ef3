// Texts from parquet files, for corpus statistics: the loader of
// corpus_files.mjs's .parquet format, in a module of its own so that the
// page loads hyparquet (and its decompressors) only when a parquet corpus
// is read: web/build.mjs bundles it as dist/parquet.js, which the page and
// the worker import when they need it; the CLI imports it directly.
import { asyncBufferFromUrl, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';

import { datasetParquetUrl } from './corpus_files.mjs';
import { HeadscopeError } from './errors.mjs';

// {texts, format, rows}: the first `limit` non-empty strings of column
// `field` of a parquet file. file: hyparquet's AsyncBuffer ({byteLength,
// slice(start, end)}: a File's slices, an ArrayBuffer, asyncBufferFromUrl).
export async function parquetTexts(name, file, { field = 'text', limit = Infinity } = {}) {
  const bad = (message) => new HeadscopeError(`${name}: ${message}`, 'bad_file');
  let metadata;
  try {
    // The footer from the last 64 kB (hyparquet reads more if it is longer).
    metadata = await parquetMetadataAsync(file, { initialFetchSize: 1 << 16 });
  } catch (error) {
    if (error instanceof HeadscopeError) throw error;
    throw bad(`is not a parquet file (${error.message})`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  if (!columns.includes(field)) throw bad(`has no column "${field}" (its columns: ${columns.slice(0, 12).join(', ') || 'none'})`);
  const rows = Number(metadata.num_rows);
  const texts = [];
  // Row groups at a time, until `limit` texts (empty rows skipped).
  for (let start = 0; start < rows && texts.length < limit;) {
    const end = Math.min(rows, start + Math.max(64, (limit - texts.length) * 2));
    let data;
    try {
      data = await parquetReadObjects({ file, metadata, columns: [field], rowStart: start, rowEnd: end, compressors });
    } catch (error) {
      if (error instanceof HeadscopeError) throw error;
      throw bad(`cannot be read (${error.message})`);
    }
    for (const row of data) {
      const text = row[field];
      if (typeof text !== 'string') throw bad(`column "${field}" does not hold text (row ${start + 1}: ${typeof text})`);
      if (text.trim() && texts.length < limit) texts.push(text);
    }
    start = end;
  }
  if (!texts.length) throw bad(`has no texts in column "${field}"`);
  return { texts, format: 'parquet', rows };
}

// A parquet file over HTTP as hyparquet's AsyncBuffer, read by Range
// requests through fetchImpl (the worker's is guarded). A missing file, a
// gated dataset or a server without ranges is named here.
export async function parquetOverHttp(url, fetchImpl = globalThis.fetch) {
  let response;
  try {
    response = await fetchImpl(url, { headers: { Range: 'bytes=0-0' }, referrerPolicy: 'no-referrer' });
  } catch (error) {
    if (error instanceof HeadscopeError) throw error;
    throw new HeadscopeError(`${url}: cannot be reached (${error.message})`, 'network');
  }
  await response.body?.cancel().catch(() => {});
  if (response.status === 404 || response.status === 401) throw new HeadscopeError(`${url}: no such dataset file (HTTP ${response.status}: a missing or gated dataset, config or split)`, 'missing_file');
  if (response.status !== 206) throw new HeadscopeError(`${url}: the server answered HTTP ${response.status} to a Range request (parquet is read by ranges)`, 'network');
  const byteLength = Number(/\/(\d+)$/.exec(response.headers.get('Content-Range') || '')?.[1]);
  if (!Number.isFinite(byteLength)) throw new HeadscopeError(`${url}: no file size in the Range answer`, 'network');
  return asyncBufferFromUrl({ url, byteLength, fetch: fetchImpl, requestInit: { referrerPolicy: 'no-referrer' } });
}

// {texts, format, rows, files}: the first `limit` texts of a Hugging Face
// dataset's split as the hub's converter publishes it, shard after shard
// (0000.parquet, 0001.parquet, ...) until there are enough or the next
// shard is not there; a missing first shard is an error (no such dataset,
// config or split). `path`: one file of the repository instead.
// options: datasetParquetUrl's, and field, limit, fetchImpl.
export async function datasetTexts(repo, { field = 'text', limit = Infinity, fetchImpl = globalThis.fetch, ...where } = {}) {
  const texts = [], files = [];
  let rows = 0;
  for (let shard = 0; texts.length < limit; shard++) {
    const url = datasetParquetUrl(repo, { ...where, shard });
    let file;
    try {
      file = await parquetOverHttp(url, fetchImpl);
    } catch (error) {
      if (shard > 0 && error.code === 'missing_file') break;  // the split has no more shards
      throw error;
    }
    const part = await parquetTexts(url, file, { field, limit: limit - texts.length });
    texts.push(...part.texts);
    rows += part.rows;
    files.push(url);
    if (where.path) break;
  }
  return { texts, format: 'parquet', rows, files };
}
