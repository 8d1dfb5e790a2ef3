// Texts from a corpus file, for corpus statistics (ModelSession.corpus):
//   .txt      one text per non-empty line
//   .jsonl    one JSON object per non-empty line, the text in `field` ("text")
//   .parquet  the string column `field`: corpus_parquet.mjs (hyparquet; over
//             HTTP only the row groups the wanted rows need travel), e.g. a
//             Hugging Face dataset's parquet files (datasetParquetUrl). The
//             page loads it only when a parquet corpus is read (its own
//             bundle, dist/parquet.js: hyparquet's decoders are large)
// A file that is not one of these (binary, empty, no text field) gets a
// HeadscopeError (code bad_file) naming the file and what is wrong, with the
// line or column where it applies. The CLI and the page share it.
import { HeadscopeError } from './errors.mjs';
import { isRepoId } from './ids.mjs';

export const CORPUS_FORMATS = ['txt', 'jsonl', 'parquet'];

// The format from a file name's extension, or null.
export function corpusFormat(name) {
  const ext = /\.([a-z0-9]+)$/i.exec(String(name))?.[1]?.toLowerCase();
  return CORPUS_FORMATS.includes(ext) ? ext : null;
}

// {texts, format, lines}: at most `limit` texts, in file order.
export function parseCorpus(name, content, { field = 'text', limit = Infinity, format = corpusFormat(name) } = {}) {
  const bad = (message) => new HeadscopeError(`${name}: ${message}`, 'bad_file');
  if (!format || format === 'parquet') throw bad(`not a text corpus file: give .txt (one text per line) or .jsonl (a "${field}" field per line)${format ? '; a .parquet file is read by corpus_parquet.mjs' : ', or .parquet'}`);
  if (content.includes('\u0000')) throw bad('looks binary (it holds NUL bytes), not text');
  const replaced = content.length ? (content.match(/\uFFFD/g)?.length ?? 0) / content.length : 0;
  if (replaced > 0.01) throw bad('is not UTF-8 text');
  const lines = content.split(/\r?\n/);
  const texts = [];
  for (let i = 0; i < lines.length && texts.length < limit; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    if (format === 'txt') {
      texts.push(line);
      continue;
    }
    let record;
    try {
      record = JSON.parse(line);
    } catch {
      throw bad(`line ${i + 1} is not JSON`);
    }
    if (!record || typeof record !== 'object' || Array.isArray(record)) throw bad(`line ${i + 1} is not a JSON object`);
    const text = record[field];
    if (typeof text !== 'string') {
      const fields = Object.keys(record).slice(0, 8).join(', ');
      throw bad(`line ${i + 1} has no text field "${field}" (its fields: ${fields || 'none'})`);
    }
    if (text.trim()) texts.push(text);
  }
  if (!texts.length) throw bad('has no texts (every line is empty)');
  return { texts, format, lines: lines.length };
}

// The parquet file of a Hugging Face dataset's split, as the hub's
// converter publishes it (branch refs/convert/parquet:
// {config}/{split}/0000.parquet, the first shard, or the shard-th), or
// `path` at `revision`.
export function datasetParquetUrl(repo, { config = 'default', split = 'train', revision = 'refs/convert/parquet', path = null, endpoint = 'https://huggingface.co', shard = 0 } = {}) {
  if (!isRepoId(repo)) throw new HeadscopeError(`"${String(repo).slice(0, 80)}" is not a Hugging Face dataset id (expected owner/name)`, 'invalid_argument');
  const segment = (s) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(s);
  if (!path && (!segment(config) || !segment(split))) throw new HeadscopeError(`dataset config and split are names (letters, digits, . _ -): got "${String(config).slice(0, 40)}", "${String(split).slice(0, 40)}"`, 'invalid_argument');
  const file = path ?? `${config}/${split}/${String(shard).padStart(4, '0')}.parquet`;
  if (file.split('/').some((part) => !part || part === '.' || part === '..')) throw new HeadscopeError(`"${file.slice(0, 80)}" is not a file path in a repository`, 'invalid_argument');
  return `${endpoint.replace(/\/$/, '')}/datasets/${repo}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}
