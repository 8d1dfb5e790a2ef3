// Weight geometry in wasm against numpy/scipy computed on the explicit
// matrices (tests/reference/geometry_reference.py, run by ctest as the
// reference.geometry fixture), for the fixture models, raw and processed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { directorySource, HeadscopeError, loadHeadscope } from '../../wasm/node.mjs';
import { fixturesDir, oracleDir, readNpy, repoRoot, worstMismatch } from './support.mjs';

const referenceDir = process.env.HEADSCOPE_GEOMETRY_REF || path.join(repoRoot, 'build', 'native', 'tests', 'reference', 'geometry');
const core = await loadHeadscope();

function expectClose(actual, file, tolerance, what, pick = (x) => x.data) {
  const expected = pick(readNpy(file));
  const worst = worstMismatch(actual, expected);
  assert.ok(worst.maxError <= tolerance,
    `${what}: worst |error| ${worst.maxError} at flat index ${worst.index} (got ${worst.actual}, want ${worst.expected}); tolerance ${tolerance}`);
}

// Column c of a [..., 4] metrics array (frobenius, effective rank, top-1 share, top-k share).
const column = (c) => (array) => array.data.filter((_, i) => i % 4 === c);

for (const name of ['gpt2', 'gpt_neox', 'llama']) {
  for (const variant of ['raw', 'processed']) {
    test(`${name} (${variant}): spectra, redundancy, composition and copying in wasm match numpy/scipy`, async () => {
      const ref = path.join(referenceDir, 'models', `fixture_${name}`, `ref_${variant}`);
      assert.ok(fs.existsSync(ref), `no reference values in ${ref}: run ctest (reference.geometry) first`);
      const session = core.createSession();
      await session.load(directorySource(oracleDir(name)));

      const spectra = session.spectra({ variant, topK: 4 });
      assert.equal(spectra.variant, variant);
      for (const circuit of ['ov', 'qk']) {
        expectClose(spectra[circuit].sigma, path.join(ref, `${circuit}_sigma.npy`), 1e-5, `${circuit} singular values`);
        expectClose(spectra[circuit].frobenius, path.join(ref, `${circuit}_metrics.npy`), 1e-5, `${circuit} norms`, column(0));
        expectClose(spectra[circuit].effectiveRank, path.join(ref, `${circuit}_metrics.npy`), 1e-5, `${circuit} effective rank`, column(1));
        expectClose(spectra[circuit].top1Share, path.join(ref, `${circuit}_metrics.npy`), 1e-5, `${circuit} top-1 share`, column(2));
      }
      for (const kind of ['Q', 'K', 'V', 'O']) {
        expectClose(session.redundancy({ variant, kind }).overlap, path.join(ref, `red_${kind}.npy`), 1e-5, `${kind} redundancy`);
      }
      const comp = session.composition({ variant, baselineSamples: 50 });
      for (const k of ['q', 'k', 'v']) {
        expectClose(comp[k], path.join(ref, `comp_${k}.npy`), 1e-5, `${k}-composition`);
        expectClose(comp[`null${k.toUpperCase()}`], path.join(ref, `compnull_${k}.npy`), 1e-5, `${k}-composition null`);
        const t = comp.significance[k];
        assert.equal(t.nTests + t.null.n + comp.nLayer * comp.nHead, (comp.nLayer * comp.nHead) ** 2, 'every ordered pair: a test, a null pair or a self-pair');
        assert.ok(Array.from(t.p).every((p, at) => (Math.floor(Math.floor(at / (comp.nLayer * comp.nHead)) / comp.nHead) < Math.floor((at % (comp.nLayer * comp.nHead)) / comp.nHead) ? p > 0 && p <= 1 : Number.isNaN(p))));
      }
      assert.equal(comp.significance.fdr, 0.05);
      assert.ok(comp.baseline.mean > 0 && comp.baseline.mean < 1 && comp.baseline.std > 0);
      expectClose(session.copying({ variant }).copyingScore, path.join(ref, 'copy_score.npy'), 1e-5, 'OV copying score');
      // Full circuits: the diagonal tests on every token (a few near-ties may
      // order differently in float: 4 / V), the positional circuit (GPT-2).
      const full = session.fullCircuits({ variant });
      assert.equal(full.sampled, false);
      for (const c of ['ov', 'qk']) {
        expectClose(full[c].top1, path.join(ref, `diag_${c}.npy`), 4 / full.dVocab, `${c} diagonal top-1`, column(0));
        expectClose(full[c].meanRank, path.join(ref, `diag_${c}.npy`), 4 / full.dVocab, `${c} diagonal mean rank`, column(3));
      }
      if (name === 'gpt2') {
        const pos = session.positionalCircuit({ variant, maxPositions: 16 });
        expectClose(pos.previous, path.join(ref, 'pos_previous.npy'), 1e-5, 'positional previous-token attention');
        expectClose(pos.patterns.subarray(0, 256), path.join(ref, 'pos_pattern_L0H0.npy'), 1e-5, 'positional pattern of L0H0');
      } else {
        assert.throws(() => session.positionalCircuit({ variant }), /no learned positional embeddings \(rotary/);
      }
      // The one-pass call: the same numbers as the three calls, exactly.
      const all = session.weightGeometry({ variant, topK: 4, baselineSamples: 50 });
      assert.deepEqual(all.spectra, spectra);
      assert.deepEqual(all.redundancy, session.redundancy({ variant, kind: 'O' }));
      assert.deepEqual(all.composition, comp);
      session.dispose();
    });
  }
}

test('geometry calls report progress and reject bad arguments with a clear message', async () => {
  const session = core.createSession();
  assert.throws(() => session.spectra(), /no model is loaded/);
  await session.load(directorySource(oracleDir('gpt2')));
  const seen = [];
  session.redundancy({ kind: 'O', onProgress: (f) => { seen.push(f); } });
  assert.ok(seen.length > 0 && seen.at(-1) <= 1);
  assert.throws(() => session.redundancy({ kind: 'X' }), (e) => e instanceof HeadscopeError && /Q, K, V, O/.test(e.message));
  assert.throws(() => session.spectra({ variant: 'folded' }), /raw.*processed/);
  assert.throws(() => session.redundancy({ kind: 'O', onProgress: () => false }), /cancelled/);
  assert.throws(() => session.weightGeometry({ onProgress: () => false }), /cancelled/);
  assert.throws(() => session.weightGeometry({ variant: 'folded' }), /raw.*processed/);
  assert.throws(() => session.pairGeometry({ layer: 0, head: 9, kind: 'O' }, { layer: 1, head: 0, kind: 'O' }), /head|range/i);
  const pair = session.pairGeometry({ layer: 0, head: 1, kind: 'O' }, { layer: 0, head: 1, kind: 'O' });
  assert.ok(Math.abs(pair.overlap - 1) < 1e-6 && pair.theta.every((t) => t < 1e-3), JSON.stringify(pair));
  session.dispose();
});

test('BERT (post-LN) refuses the processed variant but analyses raw weights', async () => {
  const session = core.createSession();
  await session.load(directorySource(oracleDir('bert')));
  assert.throws(() => session.spectra({ variant: 'processed' }), /pre-LN/);
  assert.equal(session.spectra({ variant: 'raw' }).ov.sigma.length, 2 * 4 * 16);
  session.dispose();
});

test('redundancy stands beside its chance level: random heads sit at it, a trained model\'s heads above it', async () => {
  // Untrained fixtures (Gaussian weights: uniformly random subspaces): the
  // mean overlap of their pairs is the isotropic level r_i r_j / (d_model d_head).
  for (const name of ['gpt2', 'gpt_neox', 'opt', 'gpt_neo', 'bert']) {
    const session = core.createSession();
    const info = await session.load(directorySource(oracleDir(name)));
    for (const kind of ['Q', 'K', 'V', 'O']) {
      const r = session.redundancy({ kind });
      const { chance, chanceFullRank, pairs } = r.levels;
      const N = r.rank.length;
      assert.equal(chanceFullRank, info.dHead / info.dModel);
      const values = [];
      let mean = 0;
      let level = 0;
      for (let i = 0; i < N; i++) {
        for (let j = 0; j < N; j++) assert.equal(chance[i * N + j], (r.rank[i] * r.rank[j]) / (info.dModel * info.dHead));
        for (let j = i + 1; j < N; j++) {
          values.push(r.overlap[i * N + j]);
          mean += r.overlap[i * N + j] / (N * (N - 1) / 2);
          level += chance[i * N + j] / (N * (N - 1) / 2);
        }
      }
      assert.ok(Math.abs(mean - level) < 0.02, `${name} ${kind}: mean overlap ${mean} vs chance ${level}`);
      // The model's own spread, as numpy.quantile gives it (linear interpolation).
      values.sort((a, b) => a - b);
      const q = (p) => values[Math.floor(p * (values.length - 1))] + (p * (values.length - 1) % 1) * (values[Math.ceil(p * (values.length - 1))] - values[Math.floor(p * (values.length - 1))]);
      assert.equal(pairs.n, values.length);
      for (const [key, p] of [['median', 0.5], ['p90', 0.9], ['p95', 0.95], ['p99', 0.99]]) assert.ok(Math.abs(pairs[key] - q(p)) < 1e-12, `${name} ${kind} ${key}`);
    }
    session.dispose();
  }
  // A trained model (stories260K, Llama, GQA 8 query heads over 4 K/V heads):
  // its heads share the residual stream's anisotropy, so the median pair
  // overlaps more than random subspaces would; pairs that share a K/V head
  // (the same subspace) are not counted in its spread.
  const session = core.createSession();
  const info = await session.load(directorySource(path.join(fixturesDir, 'real', 'stories260K')));
  for (const kind of ['Q', 'K', 'V', 'O']) {
    const { levels } = session.redundancy({ kind });
    const N = info.nLayer * info.nHead;
    const shared = kind === 'K' || kind === 'V' ? info.nLayer * info.nKvHead * ((info.nHead / info.nKvHead) * (info.nHead / info.nKvHead - 1) / 2) : 0;
    assert.equal(levels.pairs.n, N * (N - 1) / 2 - shared, kind);
    assert.ok(levels.pairs.median > 1.1 * levels.chanceFullRank, `${kind}: median ${levels.pairs.median} vs chance ${levels.chanceFullRank}`);
    assert.ok(levels.pairs.p99 < 0.5, `${kind}: p99 ${levels.pairs.p99}: shared K/V pairs left out`);
  }
  session.dispose();
});

test('full circuits on a sample of tokens: stated, seeded, and a head out of range is refused', async () => {
  const session = core.createSession();
  await session.load(directorySource(oracleDir('gpt2')));
  const a = session.fullCircuits({ heads: [1, 5], maxRows: 32, seed: 3 });
  assert.equal(a.sampled, true);
  assert.equal(a.nRows, 32);
  assert.deepEqual(Array.from(a.heads), [1, 5]);
  assert.deepEqual(session.fullCircuits({ heads: [1, 5], maxRows: 32, seed: 3 }), a);
  assert.notDeepEqual(session.fullCircuits({ heads: [1, 5], maxRows: 32, seed: 4 }).ov.meanRank, a.ov.meanRank);
  assert.ok(a.chance.top1 === 1 / 128 && a.chance.meanRank === 127 / 2);
  assert.throws(() => session.fullCircuits({ heads: [99] }), HeadscopeError);
  session.dispose();
});
