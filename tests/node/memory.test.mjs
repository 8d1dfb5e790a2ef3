// Loading keeps the checkpoint's bytes out of wasm memory (issue 8): the
// module's memory after loading a mid-size random GPT-2 (F32, tied
// embeddings, ~58 MB of tensors) stays within 1.1 x the tensor bytes plus a
// fixed allowance, and the tied unembedding read in place (W_U left empty)
// gives the logits of the same weights loaded with an explicit lm_head.
// A size test, not a timing test; tests/bench/bench_memory.mjs measures
// GPT-2 small.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { directorySource, loadHeadscope } from '../../wasm/node.mjs';
import { tempDir, worstMismatch, writeRandomGpt2 } from './support.mjs';

const L = 6, d = 384, H = 6, V = 10000, P = 256;

// The checkpoint of these tests (support.mjs writeRandomGpt2); its tensor bytes.
const writeCheckpoint = (dir, options = {}) => writeRandomGpt2(dir, { nLayer: L, d, nHead: H, vocab: V, positions: P, ...options });

test('wasm memory after loading a tied GPT-2 stays within 1.1 x its tensor bytes + 24 MB', async () => {
  const dir = tempDir();
  try {
    const tensorBytes = writeCheckpoint(dir);
    assert.ok(tensorBytes > 50e6 && tensorBytes < 70e6, `${tensorBytes}`);
    const core = await loadHeadscope();  // a fresh module: its memory holds this model only
    const session = core.createSession();
    await session.load(directorySource(dir));
    const memory = core.module.HEAPU8.buffer.byteLength;
    // 24 MB: the module's static data and stack, and one growth step (<= 16 MB).
    const limit = 1.1 * tensorBytes + 24 * 2 ** 20;
    assert.ok(memory <= limit,
      `wasm memory ${(memory / 1e6).toFixed(1)} MB after loading ${(tensorBytes / 1e6).toFixed(1)} MB of tensors (limit ${(limit / 1e6).toFixed(1)} MB)`);
    session.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a tied unembedding gives the logits and patterns of the same weights with an explicit lm_head', async () => {
  const tiedDir = tempDir();
  const untiedDir = tempDir();
  try {
    writeCheckpoint(tiedDir);
    writeCheckpoint(untiedDir, { lmHead: true });
    const core = await loadHeadscope();
    const tied = core.createSession();
    const untied = core.createSession();
    await tied.load(directorySource(tiedDir));
    await untied.load(directorySource(untiedDir));
    const ids = Array.from({ length: 20 }, (_, i) => (i * 7919 + 13) % V);
    const a = tied.run(ids, { wantLogits: true });
    const b = untied.run(ids, { wantLogits: true });
    assert.equal(a.logits.length, ids.length * V);
    assert.ok(worstMismatch(a.patterns, b.patterns).maxError === 0, 'patterns differ');
    let scale = 0;
    for (const x of b.logits) scale = Math.max(scale, Math.abs(x));
    const worst = worstMismatch(a.logits, b.logits);
    assert.ok(worst.maxError <= 1e-5 * scale,
      `logits: worst |error| ${worst.maxError} at ${worst.index} (${worst.actual} vs ${worst.expected}), max |logit| ${scale}`);
    assert.ok(Math.abs(a.loss - b.loss) <= 1e-5, `loss ${a.loss} vs ${b.loss}`);
    tied.dispose();
    untied.dispose();
  } finally {
    fs.rmSync(tiedDir, { recursive: true, force: true });
    fs.rmSync(untiedDir, { recursive: true, force: true });
  }
});

test('a BF16 checkpoint keeps its MLPs and embeddings in 16 bits: its wasm memory is its weights\' 16-bit bytes, ~60 % of the F32 load\'s', async () => {
  const dir = tempDir();
  const f32Dir = tempDir();
  try {
    const tensorBytes = writeCheckpoint(dir, { bf16: true });
    writeCheckpoint(f32Dir);
    const core = await loadHeadscope();  // fresh modules: each memory holds one model
    const session = core.createSession();
    const info = await session.load(directorySource(dir));
    const memory = core.module.HEAPU8.buffer.byteLength;
    // The weights in memory: attention float32 (25 % of this GPT-2's values), the rest 16-bit.
    assert.ok(info.weightBytes < 1.3 * tensorBytes && info.weightBytes > tensorBytes, `${info.weightBytes} vs ${tensorBytes}`);
    const limit = 1.05 * info.weightBytes + 24 * 2 ** 20;
    assert.ok(memory <= limit, `wasm memory ${(memory / 1e6).toFixed(1)} MB for ${(info.weightBytes / 1e6).toFixed(1)} MB of weights (limit ${(limit / 1e6).toFixed(1)} MB)`);
    const f32Core = await loadHeadscope();
    const f32Session = f32Core.createSession();
    const f32Info = await f32Session.load(directorySource(f32Dir));
    assert.ok(info.weightBytes < 0.65 * f32Info.weightBytes, `${info.weightBytes} vs ${f32Info.weightBytes} in float32`);
    // It runs: the logits of BF16-rounded weights stay close to the float32 ones.
    const ids = Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % V);
    const a = session.run(ids, { wantLogits: true }), b = f32Session.run(ids, { wantLogits: true });
    assert.ok(Math.abs(a.loss - b.loss) < 0.05, `loss ${a.loss} (BF16) vs ${b.loss}`);
    session.dispose();
    f32Session.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(f32Dir, { recursive: true, force: true });
  }
});
