// Issue 8's memory target: wasm memory after loading a checkpoint through the
// page's JS API (wasm/headscope.mjs, here via wasm/node.mjs), divided by the
// bytes of the tensors the model reads. Wasm memory never shrinks, so its size
// after the load is the load's peak, and what the tab keeps.
//
//   node tests/bench/bench_memory.mjs [checkpoint dir] [--wasm-dir DIR]
//
// The default checkpoint is the random GPT-2-small one of tests/bench/run.sh
// (build/bench/gpt2-random, 124M parameters, F32, tied embeddings); it is
// written here (same names and shapes, other random values) when missing.
// Prints `RESULT wasm.load_memory_ratio x` and friends for run.sh's table.
// Then the weight-only target: the checkpoint served over HTTP (Range
// requests, as the hub serves it) and loaded with attention weights only;
// bytes transferred / bytes of the attention tensors (c_attn, c_proj).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startServer } from '../browser/harness.mjs';
import { directorySource, loadHeadscope } from '../../wasm/node.mjs';
import { urlSource } from '../../wasm/sources.mjs';
import { gpt2TensorShapes, safetensorsHead } from '../node/support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
let dir = path.join(root, 'build', 'bench', 'gpt2-random');
let wasmDir;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--wasm-dir') wasmDir = args[++i];
  else dir = args[i];
}

// A GPT-2-small-shaped F32 checkpoint with N(0, 0.02) weights (the tensors
// GPT2LMHeadModel saves, tied embeddings: no lm_head).
function writeGpt2Random(out) {
  const L = 12, d = 768, V = 50257, P = 1024;
  const shapes = gpt2TensorShapes({ nLayer: L, d, vocab: V, positions: P });
  fs.mkdirSync(out, { recursive: true });
  const fd = fs.openSync(path.join(out, 'model.safetensors'), 'w');
  fs.writeSync(fd, safetensorsHead(shapes, { metadata: { format: 'pt' } }).head);
  let seed = 12345;
  for (const [name, shape] of shapes) {
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const isNorm = /ln_.\.weight|ln_f\.weight/.test(name);
    for (let i = 0; i < values.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      values[i] = isNorm ? 1 : ((seed / 4294967296) - 0.5) * 0.07;  // uniform, std 0.02
    }
    fs.writeSync(fd, new Uint8Array(values.buffer));
  }
  fs.closeSync(fd);
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify({
    model_type: 'gpt2', n_layer: L, n_embd: d, n_head: 12, n_positions: P, vocab_size: V,
    activation_function: 'gelu_new', layer_norm_epsilon: 1e-5,
  }));
}

// Bytes of the tensors a model reads: every tensor of every .safetensors file
// (a checkpoint written for a model holds nothing else; buffers such as
// attn.bias would be skipped by the loader and are not counted).
const BUFFER_TENSOR = /(^|\.)(attn\.bias|attn\.masked_bias|attention\.bias|attention\.masked_bias|rotary_emb\.inv_freq)$/;
// The JSON header of a .safetensors file.
function readHeader(file) {
  const fd = fs.openSync(file, 'r');
  const prefix = Buffer.alloc(8);
  fs.readSync(fd, prefix, 0, 8, 0);
  const text = Buffer.alloc(Number(prefix.readBigUInt64LE(0)));
  fs.readSync(fd, text, 0, text.length, 8);
  fs.closeSync(fd);
  return JSON.parse(text.toString('utf8'));
}

function tensorBytes(folder) {
  let total = 0;
  for (const name of fs.readdirSync(folder).filter((n) => n.endsWith('.safetensors'))) {
    for (const [key, t] of Object.entries(readHeader(path.join(folder, name)))) {
      if (key !== '__metadata__' && !BUFFER_TENSOR.test(key)) total += t.data_offsets[1] - t.data_offsets[0];
    }
  }
  return total;
}

if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
  console.log(`writing a random GPT-2-small checkpoint to ${dir}`);
  writeGpt2Random(dir);
}
const hs = await loadHeadscope(wasmDir);
const memory = () => hs.module.HEAPU8.buffer.byteLength;
const before = memory();
const session = hs.createSession();
const t0 = performance.now();
const info = await session.load(directorySource(dir));
const seconds = (performance.now() - t0) / 1000;
const after = memory();
const needed = tensorBytes(dir);
const MB = (x) => (x / 1e6).toFixed(1);
// A forward pass checks that the model works (and shows what a run adds).
const ids = Array.from({ length: 128 }, (_, i) => (i * 7919) % info.dVocab);
const run = session.run(ids, { wantLogits: true });
const afterRun = memory();
console.log(`checkpoint ${dir}: ${info.modelType}, ${info.nLayer} layers, d ${info.dModel}, vocab ${info.dVocab}`);
console.log(`tensor bytes needed          ${MB(needed)} MB`);
console.log(`wasm memory before load      ${MB(before)} MB`);
console.log(`wasm memory after load (peak) ${MB(after)} MB = ${(after / needed).toFixed(3)} x tensor bytes`);
console.log(`wasm memory after a 128-token run with logits ${MB(afterRun)} MB = ${(afterRun / needed).toFixed(3)} x (loss ${run.loss.toFixed(4)})`);
console.log(`load time ${seconds.toFixed(2)} s (wall)`);
console.log(`RESULT wasm.load_memory_mb ${MB(after)}`);
console.log(`RESULT wasm.load_memory_ratio ${(after / needed).toFixed(4)}`);
console.log(`RESULT wasm.run_memory_ratio ${(afterRun / needed).toFixed(4)}`);
session.dispose();

// Attention weights only, over HTTP with Range requests, in a fresh module.
const server = await startServer(dir);
const hsLight = await loadHeadscope(wasmDir);
const light = hsLight.createSession();
const t1 = performance.now();
await light.load(urlSource(server.url), { attentionOnly: true });
const lightSeconds = (performance.now() - t1) / 1000;
const transferred = server.requests.filter((r) => r.url.endsWith('.safetensors')).reduce((sum, r) => sum + (r.bytes || 0), 0);
let attentionBytes = 0;
for (const [key, t] of Object.entries(readHeader(path.join(dir, 'model.safetensors')))) {
  if (/\.attn\.(c_attn|c_proj)\.(weight|bias)$/.test(key)) attentionBytes += t.data_offsets[1] - t.data_offsets[0];
}
const lightMemory = hsLight.module.HEAPU8.buffer.byteLength;
console.log(`attention weights only over HTTP: ${MB(transferred)} MB of .safetensors transferred for ${MB(attentionBytes)} MB of attention tensors = ${(transferred / attentionBytes).toFixed(4)} x; wasm memory ${MB(lightMemory)} MB; ${lightSeconds.toFixed(2)} s`);
console.log(`RESULT wasm.attention_only_transfer_ratio ${(transferred / attentionBytes).toFixed(4)}`);
light.dispose();
await server.close();
