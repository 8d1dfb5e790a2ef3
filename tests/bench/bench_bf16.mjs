// Issue 22's numbers for a model of today's size in 16 bits: a
// Qwen2.5-0.5B-shaped BF16 checkpoint (the real config, random weights),
// through the page's JS API in wasm (one thread, as the page runs it today):
//   load_s           local files to a loaded model (wall)
//   weight_bytes     what the weights take in wasm memory (model info)
//   memory_load      wasm memory after the load (its peak: wasm memory never shrinks)
//   first_forward_s  the first 128-token forward (V8 tiers the kernels up during it)
//   forward_s        a 128-token forward after it: patterns, hidden states, logits, loss (CPU time, median)
//   memory_forward   wasm memory after the forwards
//   geometry_s       the full weight geometry: OV and QK spectra of all 336 heads (CPU time)
// and, with --torch, the same forward in PyTorch float32 on one thread
// (tests/bench/torch_qwen.py). Prints `RESULT key value` lines.
//
//   node tests/bench/bench_bf16.mjs [--torch] [--repeats N] [--wasm-dir DIR]
//
// The checkpoint (988 MB) is written once to build/bench/qwen25-05b-bf16.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { directorySource, loadHeadscope } from '../../wasm/node.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const torch = args.includes('--torch');
const repeats = Number(args[args.indexOf('--repeats') + 1]) || 3;
const wasmDir = args.includes('--wasm-dir') ? args[args.indexOf('--wasm-dir') + 1] : undefined;
const dir = path.join(root, 'build', 'bench', 'qwen25-05b-bf16');

// Qwen/Qwen2.5-0.5B's config.json (the fields headscope reads).
const CONFIG = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864,
  num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, max_position_embeddings: 32768,
  rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, use_sliding_window: false, max_window_layers: 24,
  tie_word_embeddings: true, vocab_size: 151936, hidden_act: 'silu', bos_token_id: 151643, torch_dtype: 'bfloat16',
};

function shapes() {
  const { hidden_size: d, intermediate_size: m, num_hidden_layers: L, vocab_size: V } = CONFIG;
  const kv = (d / CONFIG.num_attention_heads) * CONFIG.num_key_value_heads;
  const out = [['model.embed_tokens.weight', [V, d]]];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    out.push([`${p}input_layernorm.weight`, [d]], [`${p}post_attention_layernorm.weight`, [d]],
      [`${p}self_attn.q_proj.weight`, [d, d]], [`${p}self_attn.q_proj.bias`, [d]],
      [`${p}self_attn.k_proj.weight`, [kv, d]], [`${p}self_attn.k_proj.bias`, [kv]],
      [`${p}self_attn.v_proj.weight`, [kv, d]], [`${p}self_attn.v_proj.bias`, [kv]],
      [`${p}self_attn.o_proj.weight`, [d, d]],
      [`${p}mlp.gate_proj.weight`, [m, d]], [`${p}mlp.up_proj.weight`, [m, d]], [`${p}mlp.down_proj.weight`, [d, m]]);
  }
  out.push(['model.norm.weight', [d]]);
  return out;
}

// BF16 values: norms 1, the rest uniform with std 0.02 (an LCG: deterministic).
function writeCheckpoint() {
  if (fs.existsSync(path.join(dir, 'model.safetensors'))) return;
  fs.mkdirSync(dir, { recursive: true });
  const header = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of shapes()) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const fd = fs.openSync(path.join(dir, 'model.safetensors'), 'w');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(text.length));
  fs.writeSync(fd, prefix);
  fs.writeSync(fd, Buffer.from(text));
  let seed = 2026;
  const f = new Float32Array(1);
  const bits = new Uint32Array(f.buffer);
  for (const [name, shape] of shapes()) {
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Uint16Array(n);
    const norm = /layernorm|norm\.weight/.test(name);
    for (let i = 0; i < n; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      f[0] = norm ? 1 : ((seed / 4294967296) - 0.5) * 0.07;
      out[i] = bits[0] >>> 16;
    }
    fs.writeSync(fd, new Uint8Array(out.buffer));
  }
  fs.closeSync(fd);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG, null, 1));
}

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const result = (key, value) => console.log(`RESULT ${key} ${value}`);

writeCheckpoint();
const tokens = 128;
const ids = Array.from({ length: tokens }, (_, i) => (i * 7919 + 13) % CONFIG.vocab_size);
fs.writeFileSync(path.join(dir, 'ids.json'), JSON.stringify(ids));

const core = await loadHeadscope(wasmDir);
const session = core.createSession();
let t0 = performance.now();
const info = await session.load(directorySource(dir));
result('wasm.load_s', ((performance.now() - t0) / 1000).toFixed(2));
const fileBytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
result('checkpoint_bytes', fileBytes);
result('wasm.weight_bytes', info.weightBytes);
result('wasm.memory_load', core.module.HEAPU8.buffer.byteLength);
// The first run includes V8's tiering up of the kernels (the page pays it
// once): timed apart.
let c0 = cpu();
session.run(ids, { wantLogits: true });
result('wasm.first_forward_s', (cpu() - c0).toFixed(3));
const times = [];
let loss;
for (let r = 0; r < repeats; r++) {
  c0 = cpu();
  loss = session.run(ids, { wantLogits: true }).loss;
  times.push(cpu() - c0);
}
result('wasm.forward_s', median(times).toFixed(3));
result('wasm.loss', loss.toFixed(5));
result('wasm.memory_forward', core.module.HEAPU8.buffer.byteLength);
t0 = cpu();
const spectra = session.spectra();
result('wasm.geometry_s', (cpu() - t0).toFixed(2));
result('wasm.heads', spectra.nLayer * spectra.nHead);
result('wasm.memory_geometry', core.module.HEAPU8.buffer.byteLength);
session.dispose();

if (torch) {
  const out = spawnSync('/usr/bin/python3', [path.join(root, 'tests', 'bench', 'torch_qwen.py'), dir, '--repeats', String(repeats)], {
    encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' },
  });
  process.stdout.write(out.stdout);
  if (out.status !== 0) process.stderr.write(out.stderr);
}
