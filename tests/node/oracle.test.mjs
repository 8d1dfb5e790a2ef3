// The forward pass in wasm against Hugging Face transformers' own outputs for
// the six fixture models: attentions within 1e-5, hidden states and logits
// within 1e-4 (the same tolerances as the native tests).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { directorySource, loadHeadscope } from '../../wasm/node.mjs';
import { ORACLE_MODELS, oracleDir, oracleIds, readNpy, worstMismatch } from './support.mjs';

const core = await loadHeadscope();

function expectClose(actual, expected, tolerance, what) {
  const worst = worstMismatch(actual, expected);
  assert.ok(worst.maxError <= tolerance,
    `${what}: worst |error| ${worst.maxError} at flat index ${worst.index} (got ${worst.actual}, want ${worst.expected}); tolerance ${tolerance}`);
  return worst.maxError;
}

for (const name of ORACLE_MODELS) {
  test(`${name} matches the Hugging Face oracle in wasm`, async () => {
    const session = core.createSession();
    const info = await session.load(directorySource(oracleDir(name)));
    const run = session.run(oracleIds(name), { wantHidden: true, wantLogits: true });
    assert.deepEqual([run.nLayer, run.nHead, run.nTokens], [info.nLayer, info.nHead, 12]);
    expectClose(run.patterns, readNpy(path.join(oracleDir(name), 'attentions.npy')).data, 1e-5, 'attentions');
    expectClose(run.hidden, readNpy(path.join(oracleDir(name), 'hidden_states.npy')).data, 1e-4, 'hidden states');
    const logitsFile = path.join(oracleDir(name), 'logits.npy');
    if (fs.existsSync(logitsFile)) expectClose(run.logits, readNpy(logitsFile).data, 1e-4, 'logits');
    session.dispose();
  });
}

// Families without an oracle fixture: their float64 numpy forwards
// (tests/reference/families_reference.py), hub-style folders.
for (const name of ['qwen3', 'smollm3', 'olmo2', 'gemma', 'gemma2', 'gemma3', 'phi3', 'phi3_short', 'stablelm', 'stablelm_parallel']) test(`${name} matches its numpy forward in wasm`, async (t) => {
  const ref = process.env.HEADSCOPE_FAMILIES_REF;
  if (!ref) return t.skip('HEADSCOPE_FAMILIES_REF is not set (ctest sets it: reference.families)');
  const dir = path.join(ref, name);
  const session = core.createSession();
  const info = await session.load(directorySource(dir));
  assert.equal(info.family, 'llama');
  const ids = Array.from(readNpy(path.join(dir, 'input_ids.npy')).data, Number);
  const run = session.run(ids, { wantHidden: true, wantLogits: true });
  expectClose(run.patterns, readNpy(path.join(dir, 'attentions.npy')).data, 1e-5, 'attentions');
  expectClose(run.hidden, readNpy(path.join(dir, 'hidden_states.npy')).data, 1e-4, 'hidden states');
  expectClose(run.logits, readNpy(path.join(dir, 'logits.npy')).data, 1e-4, 'logits');
  const spectra = session.spectra();
  assert.equal(spectra.qkIgnoresQkNorm, ['qwen3', 'olmo2', 'gemma3', 'stablelm_parallel'].includes(name));
  assert.equal(spectra.qkIgnoresSoftcap, name === 'gemma2');
  assert.equal(spectra.ovIgnoresPostNorm, ['olmo2', 'gemma2', 'gemma3'].includes(name));
  session.dispose();
});

for (const name of ['gpt2', 'gpt_neox']) {
  test(`${name} head ablations match the oracle's head_mask losses and logits in wasm`, async () => {
    const session = core.createSession();
    const info = await session.load(directorySource(oracleDir(name)));
    const ids = oracleIds(name);
    const { loss, loss_ablate_L0H1_L1H3: lossAblated } = JSON.parse(fs.readFileSync(path.join(oracleDir(name), 'ablation.json'), 'utf8'));
    assert.ok(Math.abs(session.run(ids).loss - loss) < 1e-4);
    const perHead = readNpy(path.join(oracleDir(name), 'loss_zero_ablate_each_head.npy')).data;
    const H = info.nHead;
    const gate = new Array(info.nLayer * H).fill(1);
    for (let i = 0; i < gate.length; i++) {
      gate[i] = 0;
      const got = session.run(ids, { headGate: gate }).loss;
      assert.ok(Math.abs(got - perHead[i]) < 1e-4, `L${Math.floor(i / H)}H${i % H}: ${got} vs ${perHead[i]}`);
      gate[i] = 1;
    }
    gate[0 * H + 1] = 0;
    gate[1 * H + 3] = 0;
    const both = session.run(ids, { headGate: gate, wantLogits: true });
    if (lossAblated !== undefined) assert.ok(Math.abs(both.loss - lossAblated) < 1e-4);
    expectClose(both.logits, readNpy(path.join(oracleDir(name), 'logits_ablate_L0H1_L1H3.npy')).data, 1e-4, 'ablated logits');
    session.dispose();
  });
}
