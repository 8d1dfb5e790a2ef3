// The built-in model (public/models/headscope-tiny, issue 7): its files load
// through the same path as hub checkpoints, its tokenizer is one
// @huggingface/tokenizers reads, and what its model card states is what the
// wasm core measures on the shipped weights (the trainer measured it natively
// with the same core, so the numbers must agree to float rounding).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { directorySource, loadHeadscope } from '../../wasm/node.mjs';
import { BUILTIN } from '../../web/shared/sources.js';
import { EXAMPLES } from '../../web/state/models.js';
import { lcg, repoRoot } from './support.mjs';

const dir = path.join(repoRoot, 'public', BUILTIN.path);
const card = JSON.parse(fs.readFileSync(path.join(dir, 'training.json'), 'utf8'));
const core = await loadHeadscope();

async function session() {
  const s = core.createSession();
  await s.load(directorySource(dir));
  return s;
}

test('the built-in model is a small GPT-2 with its files, its card and its curve', () => {
  for (const file of ['config.json', 'model.safetensors', 'tokenizer.json', 'README.md', 'training.json', 'curve.svg']) {
    assert.ok(fs.existsSync(path.join(dir, file)), `${file} is missing`);
  }
  const bytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
  assert.ok(bytes < 5e6, `model.safetensors is ${bytes} bytes (aim: under 5 MB)`);
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'gpt2');
  assert.ok(config.n_layer >= 2 && config.n_head >= 4, `${config.n_layer} layers x ${config.n_head} heads`);
  assert.ok(card.curve.length >= 10, 'the training curve has points');
  assert.equal(card.heads.length, config.n_layer * config.n_head);
});

test('the card\'s induction scores and losses are what the wasm core measures on the shipped weights', async () => {
  const s = await session();
  const t = s.inductionTest();  // the standard test: |R| = 50, 10 sequences, seed 0
  let worst = 0;
  for (const h of card.heads) worst = Math.max(worst, Math.abs(t.score[h.layer * s.info.nHead + h.index] - h.induction));
  assert.ok(worst < 1e-4, `induction scores differ from the card by up to ${worst}`);
  assert.ok(Math.abs(t.lossSecondHalf - card.final.induction_test_second_half_loss) < 1e-3,
    `repeat loss ${t.lossSecondHalf} vs card ${card.final.induction_test_second_half_loss}`);
  s.dispose();
});

test('the heads the card names do their job: an induction head matters more than any head outside the induction circuit', async () => {
  const s = await session();
  const H = s.info.nHead;
  const t = s.inductionTest();
  // In-context learning: the repeat is far easier than the first copy.
  assert.ok(t.lossSecondHalf < t.lossFirstHalf - 1, `repeat ${t.lossSecondHalf} vs first ${t.lossFirstHalf}`);
  const induction = card.heads.filter((h) => h.role === 'induction');
  assert.ok(induction.length > 0, 'the card names induction heads');
  for (const h of induction) assert.ok(h.induction >= 0.6, `${h.head}: induction score ${h.induction}`);
  // Through the wasm API, on other repeated random tokens ([BOS] + R + R, |R| = 40), one head
  // zero-ablated at a time: the strongest induction head costs clearly more than any head outside
  // the induction circuit (the circuit: the induction heads and the previous-token head they read
  // through K-composition, which costs the most of all: without it no induction head works).
  const next = lcg(12345);
  const r = Array.from({ length: 40 }, () => next() % (s.info.dVocab - 1));
  const ids = [s.info.bosTokenId, ...r, ...r];
  const repeatLoss = (result) => {
    const v = result.tokenLoss.slice(40, 80);  // predictions of the second copy's tokens
    return v.reduce((a, b) => a + b, 0) / v.length;
  };
  const base = repeatLoss(s.ablate(ids, []));
  const rise = card.heads.map((h) => repeatLoss(s.ablate(ids, [h.layer * H + h.index])) - base);
  const prev = card.heads.filter((h) => h.layer === 0).reduce((a, b) => (b.previous_token > a.previous_token ? b : a));
  const inCircuit = (h) => h.role === 'induction' || h === prev;
  const strongest = Math.max(...induction.map((h) => rise[h.layer * H + h.index]));
  const outside = Math.max(...card.heads.filter((h) => !inCircuit(h)).map((h) => rise[h.layer * H + h.index]));
  assert.ok(strongest > 0.5 && strongest > 3 * outside,
    `strongest induction head +${strongest.toFixed(3)} vs +${outside.toFixed(3)} outside the circuit (rises: ${rise.map((x) => x.toFixed(3))})`);
  assert.ok(rise[prev.index] > 2, `without ${prev.head} (previous-token ${prev.previous_token}): +${rise[prev.index]}`);
  const noInduction = repeatLoss(s.ablate(ids, induction.map((h) => h.layer * H + h.index)));
  assert.ok(noInduction > base + 2, `without the induction heads: ${noInduction} vs ${base}`);
  s.dispose();
});

test('the tokenizer reads the page\'s example texts into ids the model knows', async () => {
  const s = await session();
  for (const example of EXAMPLES) {
    const { ids } = await s.tokenize(example.text, { prependBos: true });
    assert.ok(ids.length > 10 && ids.every((id) => id >= 0 && id < s.info.dVocab), example.id);
    const run = s.run(ids);
    assert.ok(Number.isFinite(run.loss), example.id);
  }
  s.dispose();
});
