// Texts from a corpus file, for corpus statistics (ModelSession.corpus):
//   .txt    one text per non-empty line
//   .jsonl  one JSON object per non-empty line, the text in `field` ("text")
// A file that is not one of these (binary, empty, no text field) gets a
// HeadscopeError (code bad_file) naming the file and what is wrong, with the
// line where it applies. The CLI and the page share it.
import { HeadscopeError } from './errors.mjs';

export const CORPUS_FORMATS = ['txt', 'jsonl'];

// The format from a file name's extension, or null.
export function corpusFormat(name) {
  const ext = /\.([a-z0-9]+)$/i.exec(String(name))?.[1]?.toLowerCase();
  return CORPUS_FORMATS.includes(ext) ? ext : null;
}

// {texts, format, lines}: at most `limit` texts, in file order.
export function parseCorpus(name, content, { field = 'text', limit = Infinity, format = corpusFormat(name) } = {}) {
  const bad = (message) => new HeadscopeError(`${name}: ${message}`, 'bad_file');
  if (!format) throw bad(`not a corpus file: give .txt (one text per line) or .jsonl (a "${field}" field per line)`);
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
