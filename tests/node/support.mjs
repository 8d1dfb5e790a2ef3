// Helpers shared by the node tests: fixture paths, .npy reading, a
// comparison that reports the worst mismatch with its index, and the tests'
// one pseudo-random generator.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseNpy } from '../../wasm/npy.mjs';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixturesDir = process.env.HEADSCOPE_FIXTURES || path.resolve(repoRoot, '..', 'shared', 'fixtures');
export const oracleDir = (name) => path.join(fixturesDir, 'hf-oracle', name);
export const ORACLE_MODELS = ['gpt2', 'gpt_neox', 'llama', 'bert', 'gpt_neo', 'opt'];

export function readNpy(file) {
  return parseNpy(fs.readFileSync(file));
}

export function oracleIds(name) {
  return Array.from(readNpy(path.join(oracleDir(name), 'input_ids.npy')).data);
}

// Returns {maxError, index} of |actual - expected|; throws on length mismatch.
export function worstMismatch(actual, expected) {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != expected ${expected.length}`);
  let maxError = 0;
  let index = -1;
  for (let i = 0; i < actual.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= maxError)) {
      maxError = error;
      index = i;
    }
  }
  return { maxError, index, actual: actual[index], expected: expected[index] };
}

export function tempDir(prefix = 'headscope-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Copies a fixture model folder (config + weights only) to a temp dir and
// lets the caller change it.
export function copyModel(name, edit = () => {}) {
  const dir = tempDir();
  for (const file of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(oracleDir(name), file), path.join(dir, file));
  edit(dir);
  return dir;
}

// The tensors GPT2LMHeadModel saves (no `transformer.` prefix, Conv1D weights
// [in, out], tied embeddings unless `lmHead`), as [name, shape] in file order.
export function gpt2TensorShapes({ nLayer, d, vocab, positions, lmHead = false }) {
  const M = 4 * d;
  const shapes = [['wte.weight', [vocab, d]], ['wpe.weight', [positions, d]], ['ln_f.weight', [d]], ['ln_f.bias', [d]]];
  for (let l = 0; l < nLayer; l++) {
    const p = `h.${l}.`;
    shapes.push([`${p}ln_1.weight`, [d]], [`${p}ln_1.bias`, [d]], [`${p}ln_2.weight`, [d]], [`${p}ln_2.bias`, [d]],
      [`${p}attn.c_attn.weight`, [d, 3 * d]], [`${p}attn.c_attn.bias`, [3 * d]],
      [`${p}attn.c_proj.weight`, [d, d]], [`${p}attn.c_proj.bias`, [d]],
      [`${p}mlp.c_fc.weight`, [d, M]], [`${p}mlp.c_fc.bias`, [M]],
      [`${p}mlp.c_proj.weight`, [M, d]], [`${p}mlp.c_proj.bias`, [d]]);
  }
  if (lmHead) shapes.push(['lm_head.weight', [vocab, d]]);
  return shapes;
}

// The start of a safetensors file holding `shapes` back to back as `dtype`
// (F32 or BF16): the 8-byte length and the JSON header padded to 8 bytes;
// dataBytes is what follows.
export function safetensorsHead(shapes, { metadata, dtype = 'F32' } = {}) {
  const header = metadata ? { __metadata__: metadata } : {};
  const bytesPer = { F32: 4, BF16: 2 }[dtype];
  let offset = 0;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1) * bytesPer;
    header[name] = { dtype, shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(text.length));
  return { head: Buffer.concat([prefix, Buffer.from(text)]), dataBytes: offset };
}

// A deterministic pseudo-random GPT-2 checkpoint in dir (weights uniform in
// ±0.1, norm weights near 1); `lmHead` adds lm_head.weight (a copy of wte)
// and unties the config; `bf16` stores every tensor as BF16 (the float32
// values' upper halves). Returns the tensor bytes.
export function writeRandomGpt2(dir, { nLayer, d, nHead, vocab, positions, lmHead = false, bf16 = false, seed = 7 }) {
  const shapes = gpt2TensorShapes({ nLayer, d, vocab, positions, lmHead });
  const values = new Map();
  const next = lcg(seed);
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (name === 'lm_head.weight') {
      values.set(name, values.get('wte.weight'));
      continue;
    }
    const v = new Float32Array(n);
    const norm = /ln_.\.weight|ln_f\.weight/.test(name);
    for (let i = 0; i < n; i++) {
      const u = next() / 4294967296 - 0.5;
      v[i] = norm ? 1 + u * 0.2 : u * 0.2;
    }
    values.set(name, v);
  }
  fs.mkdirSync(dir, { recursive: true });
  const upperHalves = (v) => Buffer.from(Uint16Array.from(new Uint32Array(v.buffer), (b) => b >>> 16).buffer);
  const { head, dataBytes } = safetensorsHead(shapes, { dtype: bf16 ? 'BF16' : 'F32' });
  fs.writeFileSync(path.join(dir, 'model.safetensors'),
    Buffer.concat([head, ...shapes.map(([name]) => (bf16 ? upperHalves(values.get(name)) : Buffer.from(values.get(name).buffer)))]));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    model_type: 'gpt2', n_layer: nLayer, n_embd: d, n_head: nHead, n_positions: positions, vocab_size: vocab, tie_word_embeddings: !lmHead,
  }));
  return dataBytes;
}

// A deterministic stream of 32-bit integers (the ANSI C linear congruential
// generator): the same numbers on every machine and node version.
export function lcg(seed) {
  let state = seed >>> 0;
  return () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
}

// The built-in model with its pre-tokenizer behind a Split on a pattern that
// backtracks without end on a sentence that ends in a full stop.
export const CATASTROPHIC = '^(\\w+\\s?)+$';
export const SENTENCE = 'The quick brown fox jumps over the lazy dog near the old mill.';
export function hostileTokenizerModel() {
  const builtin = path.join(repoRoot, 'public', 'models', 'headscope-tiny');
  const dir = tempDir('headscope-regex-');
  for (const file of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(builtin, file), path.join(dir, file));
  const json = JSON.parse(fs.readFileSync(path.join(builtin, 'tokenizer.json'), 'utf8'));
  json.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: CATASTROPHIC }, behavior: 'Isolated', invert: false }, json.pre_tokenizer] };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  return dir;
}

// The gpt2 fixture with every weight pushed to ±3e38 (signs kept): finite
// weights whose forward pass overflows float32.
export function overflowingModel() {
  return copyModel('gpt2', (dir) => {
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    for (const [name, tensor] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      if (tensor.dtype !== 'F32') throw new Error(`overflowingModel: ${name} is ${tensor.dtype}`);
      for (let at = 8 + n + tensor.data_offsets[0]; at < 8 + n + tensor.data_offsets[1]; at += 4) {
        bytes.writeFloatLE(bytes.readFloatLE(at) < 0 ? -3e38 : 3e38, at);
      }
    }
    fs.writeFileSync(file, bytes);
  });
}
