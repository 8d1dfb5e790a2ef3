// Head behaviour and interventions through the wasm API: ablation and
// gradient importance against the Hugging Face oracle, detectors against
// the TransformerLens rules, edits that change nothing at alpha 0 and undo
// exactly.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { directorySource, HeadscopeError, loadHeadscope } from '../../wasm/node.mjs';
import { oracleDir, oracleIds, readNpy, worstMismatch } from './support.mjs';

const core = await loadHeadscope();

async function session(name) {
  const s = core.createSession();
  await s.load(directorySource(oracleDir(name)));
  return s;
}

for (const name of ['gpt2', 'gpt_neox']) {
  test(`${name}: leave-one-out and gradient importance in wasm match the oracle`, async () => {
    const s = await session(name);
    const ids = oracleIds(name);
    const imp = s.importance(ids);
    const loo = readNpy(path.join(oracleDir(name), 'loss_zero_ablate_each_head.npy')).data;
    const grad = readNpy(path.join(oracleDir(name), 'head_importance_abs_grad.npy')).data;
    let worst = worstMismatch(imp.leaveOneOutLoss, loo);
    assert.ok(worst.maxError < 1e-4, `leave-one-out off by ${worst.maxError} at ${worst.index}`);
    worst = worstMismatch(imp.gradientImportance, grad);
    assert.ok(worst.maxError < 1e-4, `gradient importance off by ${worst.maxError} at ${worst.index}`);
    const ablated = s.ablate(ids, [1, 4 + 3]);
    const { loss_ablate_L0H1_L1H3: expected } = JSON.parse(fs.readFileSync(path.join(oracleDir(name), 'ablation.json'), 'utf8'));
    assert.ok(Math.abs(ablated.loss - expected) < 1e-4, `${ablated.loss} vs ${expected}`);
    assert.equal(ablated.patternChange[1], 1);  // L0H1's own pattern went to 0 from rows summing to 1
    s.dispose();
  });
}

test('detectors score a repeated sequence: induction heads on the second half, a score per head in [0, 1]', async () => {
  const s = await session('gpt2');
  const ids = [127, 5, 17, 42, 7, 99, 3, 5, 17, 42, 7, 99, 3];
  const b = s.behavior(ids);
  for (const key of ['previousTokenScore', 'duplicateTokenScore', 'inductionScore', 'entropy']) {
    assert.equal(b[key].length, 8, key);
  }
  assert.ok(b.inductionScore.every((x) => x >= 0 && x <= 1));
  assert.equal(b.role.length, 8);
  // mul mode without exclusions: score = sum(A o D) / T; recompute one head from the patterns.
  const run = s.run(ids);
  const T = ids.length;
  let expected = 0;
  for (let i = 1; i < T; i++) expected += run.patterns[(0 * T + i) * T + i - 1];  // L0H0, previous token
  assert.ok(Math.abs(b.previousTokenScore[0] - expected / T) < 1e-6, `${b.previousTokenScore[0]} vs ${expected / T}`);
  const abs = s.behavior(ids, { measure: 'abs', excludeBos: true });
  assert.equal(abs.measure, 'abs');
  s.dispose();
});

test('the induction test reports per-head scores and the loss on both halves', async () => {
  const s = await session('gpt2');
  const t = s.inductionTest({ seqLen: 10, batch: 2, seed: 1 });
  assert.equal(t.score.length, 8);
  assert.ok(Number.isFinite(t.lossFirstHalf) && Number.isFinite(t.lossSecondHalf));
  assert.deepEqual(s.inductionTest({ seqLen: 10, batch: 2, seed: 1 }).score, t.score);
  s.dispose();
});

test('an OV edit with alpha 0 changes nothing, a real edit changes the loss, and undo restores it exactly', async () => {
  const s = await session('llama');
  const ids = oracleIds('llama');
  const base = s.run(ids).loss;
  const zero = s.addOvEdit({ kind: 'rank_one', layer: 0, head: 1, component: 0, alpha: 0, side: 'write' });
  assert.equal(s.run(ids).loss, base);
  const real = s.addOvEdit({ kind: 'remove_component', layer: 1, head: 2, component: 0, alpha: 1 });
  assert.notEqual(s.run(ids).loss, base);
  assert.equal(s.edits().length, 2);
  s.undoEdit(real.id);
  s.undoEdit(zero.id);
  assert.equal(s.run(ids).loss, base);
  assert.throws(() => s.undoEdit(99), /no edit with id 99/);
  assert.throws(() => s.addOvEdit({ kind: 'rank_one', layer: 0, head: 1, side: 'up' }), (e) => e instanceof HeadscopeError && /read.*write/.test(e.message));
  s.dispose();
});

test('merging two heads reports the loss next to pruning either, and the merge is an undoable edit', async () => {
  const s = await session('gpt2');
  const ids = oracleIds('gpt2');
  const report = s.evaluateMerge(ids, { layer: 0, headA: 0, headB: 1 });
  for (const key of ['lossBase', 'lossPruneA', 'lossPruneB', 'lossMerged']) assert.ok(Number.isFinite(report[key]), key);
  assert.ok(report.truncationError >= 0 && report.truncationError < 1);
  const base = s.run(ids).loss;
  const { id } = s.addMerge({ layer: 0, headA: 0, headB: 1, patternHead: report.bestPatternHead });
  assert.ok(Math.abs(s.run(ids).loss - report.lossMerged) < 1e-5);
  s.undoEdit(id);
  assert.equal(s.run(ids).loss, base);
  s.dispose();
});

test('a pruning curve starts at the base loss and removes every head', async () => {
  const s = await session('gpt_neox');
  const ids = oracleIds('gpt_neox');
  const curve = s.pruningCurve(ids, { nRandom: 2, seed: 3 });
  assert.equal(curve.nRemoved[0], 0);
  assert.equal(curve.nRemoved.at(-1), 8);
  assert.ok(Math.abs(curve.loss[0] - s.run(ids).loss) < 1e-5);
  assert.equal(curve.randomLossMean.length, curve.loss.length);
  s.dispose();
});

test('BERT: the masked-LM loss in wasm matches numpy, and BERT-like models are masked by default', async (t) => {
  const ref = process.env.HEADSCOPE_MLM_REF;
  if (!ref) return t.skip('HEADSCOPE_MLM_REF is not set (ctest sets it: reference.mlm)');
  const s = core.createSession();
  await s.load(directorySource(path.join(ref, 'model')));
  const ids = Array.from(readNpy(path.join(ref, 'ids.npy')).data, Number);
  const labels = Array.from(readNpy(path.join(ref, 'labels.npy')).data, Number);
  const want = readNpy(path.join(ref, 'token_loss.npy')).data;
  const a = s.ablate(ids, [], { labels });
  assert.equal(a.objective, 'masked_token');
  assert.ok(worstMismatch(a.tokenLossBase, want).maxError <= 1e-5, JSON.stringify(worstMismatch(a.tokenLossBase, want)));
  const imp = s.importance(ids, { labels });
  assert.ok(Math.abs(imp.loss - readNpy(path.join(ref, 'loss.npy')).data[0]) <= 1e-5);
  // This checkpoint has no tokenizer: without labels the objective is the
  // same-position one, and says so.
  assert.equal(s.ablate(ids, []).objective, 'same_token');
  // With a tokenizer that has a mask token, the session masks 15 % of the
  // ordinary tokens itself (seeded), never a special one.
  s.tokenizer = { maskId: 127, specialIds: [ids[0], ids[ids.length - 1]], dispose() {} };
  const masked = s.importance(ids, { maskSeed: 3 });
  assert.equal(masked.objective, 'masked_token');
  const ordinary = ids.filter((id) => id !== ids[0] && id !== ids[ids.length - 1]).length;
  assert.equal(masked.maskedPositions.length, Math.max(1, Math.round(0.15 * ordinary)));
  assert.ok(masked.maskedPositions.every((p) => ids[p] !== ids[0] && ids[p] !== ids[ids.length - 1]));
  assert.deepEqual(s.importance(ids, { maskSeed: 3 }).maskedPositions, masked.maskedPositions);
  s.dispose();
});
