// Forward-pass benchmark, wasm under node: the twin of bench_forward.cpp on
// the checkpoint it wrote (12 layers, d 768, 12 heads).
//   node tests/bench/bench_wasm.mjs DIR [--tokens 128] [--repeats 5]
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { directorySource, loadHeadscope } from '../../wasm/node.mjs';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { tokens: { type: 'string', default: '128' }, repeats: { type: 'string', default: '5' } } });
const dir = positionals[0];
const tokens = Number(values.tokens);
const repeats = Number(values.repeats);

const core = await loadHeadscope();
const session = core.createSession();
let start = performance.now();
const info = await session.load(directorySource(dir));
const loadSeconds = (performance.now() - start) / 1000;

const ids = Array.from({ length: tokens }, (_, t) => (t * 7919) % info.d_vocab);
const times = [];
for (let r = 0; r < repeats + 1; r++) {
  start = performance.now();
  session.run(ids);
  if (r > 0) times.push((performance.now() - start) / 1000);
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
const d = info.d_model;
const flops = 2 * info.n_layer * (12 * tokens * d * d + 2 * tokens * tokens * d);
console.log(`wasm load: ${loadSeconds.toFixed(3)} s`);
console.log(`wasm forward (${tokens} tokens, median of ${repeats}, patterns + loss): ${median.toFixed(3)} s, ${(tokens / median).toFixed(0)} tokens/s, ${(flops / median / 1e9).toFixed(1)} GFLOP/s`);
