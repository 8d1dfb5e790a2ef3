// The threaded wasm build (headscope_core_threads.mjs: the core's pool of
// pthreads, core/parallel.hpp) gives the same bits as the build without
// threads: a forward whose products are split over the threads, and the
// weight geometry whose heads and pair blocks are. On a one-core machine
// the threaded build runs one thread and the comparison still holds.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';

import { directorySource, loadHeadscope } from '../../wasm/node.mjs';
import { tempDir, writeRandomGpt2 } from './support.mjs';

const dir = tempDir('headscope-threads-');
writeRandomGpt2(dir, { nLayer: 3, d: 256, nHead: 8, vocab: 1000, positions: 128 });
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const ids = Array.from({ length: 96 }, (_, i) => (i * 37 + 11) % 1000);

async function results(threads) {
  const core = await loadHeadscope(undefined, { threads });
  const session = core.createSession();
  await session.load(directorySource(dir));
  const run = session.run(ids, { wantLogits: true, wantHidden: true });
  const geometry = session.weightGeometry({ baselineSamples: 20 });
  session.dispose();
  return { core, run, geometry };
}

const bits = (array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength);

test('the threaded build runs as many threads as asked, up to the cores', async () => {
  const { core } = await results(2);
  assert.match(core.wasmFile, /^headscope_core_threads(_fma)?\.wasm$/);
  assert.equal(core.threads, Math.min(2, os.cpus().length));
});

test('a forward and the weight geometry have the same bits with 2 threads as without threads', async () => {
  const one = await results(1);
  const two = await results(2);
  assert.match(one.core.wasmFile, /^headscope_core(_fma)?\.wasm$/);
  for (const key of ['patterns', 'logits', 'hidden']) {
    assert.ok(one.run[key].length > 0, key);
    assert.ok(bits(one.run[key]).equals(bits(two.run[key])), `${key} differ`);
  }
  assert.equal(Object.is(one.run.loss, two.run.loss), true);
  const a = one.geometry, b = two.geometry;
  for (const [name, x, y] of [
    ['OV spectra', a.spectra.ov.sigma, b.spectra.ov.sigma],
    ['QK spectra', a.spectra.qk.sigma, b.spectra.qk.sigma],
    ['write redundancy', a.redundancy.overlap, b.redundancy.overlap],
    ['K-composition', a.composition.k, b.composition.k],
    ['K-composition null', a.composition.nullK, b.composition.nullK],
  ]) {
    assert.ok(x.length > 0, name);
    assert.ok(bits(x).equals(bits(y)), `${name} differ`);
  }
});
