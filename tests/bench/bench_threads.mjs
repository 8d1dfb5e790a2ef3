// The wasm core on one thread and on several (issues 20 and 22): the page's
// JS API under node, the build without threads against the threaded build
// (core/parallel.hpp), on a random GPT-2-small-shaped checkpoint (written
// once to build/bench/gpt2-small-f32, with tests/node/support.mjs):
//   forward_ms    a 128-token forward with patterns and the loss
//   geometry_ms   the weight geometry's one pass (spectra, redundancy, composition)
//   corpus_ms     a corpus pass over 64 texts of 128 tokens (every detector and
//                 statistic, 1000 bootstrap resamples)
// Wall time (the threads' CPU time would add up), median of --repeats, the
// two builds alternating so that both meet the same machine. Also the wasm
// memory after each build's work. Prints `RESULT key value` lines.
//
//   node --experimental-wasm-relaxed-simd tests/bench/bench_threads.mjs [--threads 2] [--repeats 3]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { directorySource, loadHeadscope } from '../../wasm/node.mjs';
import { writeRandomGpt2 } from '../node/support.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const threads = option('--threads', 2), repeats = option('--repeats', 3);
const dir = path.join(root, 'build', 'bench', 'gpt2-small-f32');
if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
  console.log(`writing a random GPT-2-small-shaped checkpoint to ${dir}`);
  writeRandomGpt2(dir, { nLayer: 12, d: 768, nHead: 12, vocab: 50257, positions: 1024 });
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const time = (f) => {
  const t = performance.now();
  f();
  return performance.now() - t;
};
const timeAsync = async (f) => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};

const ids = Array.from({ length: 128 }, (_, t) => (t * 7919) % 50257);
// Texts with repeats (a random prefix, then part of it again), as bench_corpus.cpp.
let state = 7;
const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
const texts = Array.from({ length: 64 }, () => {
  const t = Array.from({ length: 64 }, () => next() % 50257);
  return [...t, ...t];
});

const builds = {};
for (const n of [1, threads]) {
  const core = await loadHeadscope(undefined, { threads: n });
  const session = core.createSession();
  await session.load(directorySource(dir));
  // Warm-up: V8 tiers the kernels up during the first calls.
  session.run(ids);
  session.weightGeometry({ baselineSamples: 20 });
  builds[n] = { core, session, forward: [], geometry: [], corpus: [] };
}
for (let r = 0; r < repeats; r++) {
  for (const n of [1, threads]) {
    const b = builds[n];
    b.forward.push(time(() => b.session.run(ids)));
    b.geometry.push(time(() => b.session.weightGeometry({ baselineSamples: 20 })));
    b.corpus.push(await timeAsync(() => b.session.corpus(texts, { maxTokens: 128, prependBos: false })));
  }
}
for (const n of [1, threads]) {
  const b = builds[n];
  const label = `threads${n}`;
  console.log(`${b.core.wasmFile}, ${b.core.threads} thread(s): forward ${median(b.forward).toFixed(0)} ms, ` +
    `geometry ${median(b.geometry).toFixed(0)} ms, corpus ${median(b.corpus).toFixed(0)} ms, ` +
    `wasm memory ${(b.core.module.HEAPU8.buffer.byteLength / 1e6).toFixed(0)} MB`);
  for (const key of ['forward', 'geometry', 'corpus']) console.log(`RESULT ${label}.${key}_ms ${median(b[key]).toFixed(1)}`);
  console.log(`RESULT ${label}.memory_mb ${(b.core.module.HEAPU8.buffer.byteLength / 1e6).toFixed(1)}`);
}
for (const key of ['forward', 'geometry', 'corpus']) {
  console.log(`speed-up with ${threads} threads, ${key}: ${(median(builds[1][key]) / median(builds[threads][key])).toFixed(2)}x`);
}
process.exit(0);
