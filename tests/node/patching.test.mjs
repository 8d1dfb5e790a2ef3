// Activation and path patching and direct logit attribution through the
// wasm API and the CLI: the numbers against the float64 numpy reference
// (tests/reference/patching_reference.py), the IOI-style pair on the
// built-in model, and the messages for pairs and answers that cannot work.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import { directorySource, HeadscopeError, loadHeadscope } from '../../wasm/node.mjs';
import { oracleDir, readNpy, repoRoot, worstMismatch } from './support.mjs';

const core = await loadHeadscope();
const builtin = path.join(repoRoot, 'public', 'models', 'headscope-tiny');
const IOI = {
  clean: 'When Mary and John went to the park, John gave the ball to',
  corrupt: 'When Mary and John went to the park, Mary gave the ball to',
  answer: ' Mary',
  wrong: ' John',
};

// NaN where the reference has NaN (no path), compared elsewhere.
function assertClose(actual, expected, tol, what) {
  const a = Array.from(actual, (x) => (Number.isNaN(x) ? 1e300 : x));
  const e = Array.from(expected, (x) => (Number.isNaN(x) ? 1e300 : x));
  const worst = worstMismatch(a, e);
  assert.ok(worst.maxError <= tol, `${what}: ${JSON.stringify(worst)}`);
}

test('patching in wasm matches the numpy reference', async (t) => {
  const ref = process.env.HEADSCOPE_PATCHING_REF;
  if (!ref) return t.skip('HEADSCOPE_PATCHING_REF is not set (ctest sets it: reference.patching)');
  for (const name of ['gpt2', 'gpt_neox', 'llama']) {
    const s = core.createSession();
    await s.load(directorySource(oracleDir(name)));
    const dir = path.join(ref, name);
    const ids = (file) => Array.from(readNpy(path.join(dir, file)).data, Number);
    const [answer, wrong] = ids('metric.npy');
    const clean = ids('clean_ids.npy');
    const corrupt = ids('corrupt_ids.npy');
    const want = (file) => readNpy(path.join(dir, file)).data;
    const heads = await s.patch(clean, corrupt, { answer, wrong });
    assert.deepEqual(Array.from(heads.shape), [s.info.nLayer, s.info.nHead]);
    assertClose(heads.value, want('heads_denoise.npy'), 1e-5, `${name} heads`);
    const k = await s.patch(clean, corrupt, { target: 'k', answer, wrong });
    assertClose(k.value, want('k_denoise.npy'), 1e-5, `${name} k (per KV head)`);
    const v = await s.patch(clean, corrupt, { target: 'v', direction: 'noise', answer, wrong });
    assertClose(v.value, want('v_noise.npy'), 1e-5, `${name} v noising`);
    const receivers = await s.pathPatch(clean, corrupt, { answer, wrong, receivers: ['L1H2:q', 'L1G1:k'] });
    assertClose(receivers.value, want('path_receivers.npy'), 1e-5, `${name} path to receivers`);
    const dla = await s.dla(clean, { answer, wrong });
    assertClose(dla.heads, want('dla_heads.npy'), 1e-5, `${name} DLA`);
    s.dispose();
  }
});

test('the IOI pair on the built-in model: answers by text, identities, predictions', async () => {
  const s = core.createSession();
  await s.load(directorySource(builtin));
  const r = await s.patch(IOI.clean, IOI.corrupt, { answer: IOI.answer, wrong: IOI.wrong, target: 'resid' });
  assert.equal(r.answerText, ' Mary');
  assert.equal(r.wrongText, ' John');
  const T = r.cleanTokens.length;
  assert.deepEqual(Array.from(r.shape), [s.info.nLayer, T]);
  // Positions before the changed name are the same in both texts; so is the
  // residual at the last position of layer 0 (the same token).
  const changed = r.cleanTokens.findIndex((tok, i) => tok !== r.corruptTokens[i]);
  for (let p = 0; p < changed; p++) assert.ok(Math.abs(r.effect[p]) < 1e-5);
  assert.ok(Math.abs(r.effect[T - 1]) < 1e-5);
  // Read at the changed position itself, its clean residual at any layer
  // gives the clean metric (nothing later reaches it).
  const there = await s.patch(IOI.clean, IOI.corrupt, { answer: IOI.answer, wrong: IOI.wrong, target: 'resid', position: changed });
  for (let l = 0; l < s.info.nLayer; l++) {
    assert.ok(Math.abs(there.effect[l * T + changed] - 1) < 1e-4, `layer ${l}: ${there.effect[l * T + changed]}`);
  }
  const dla = await s.dla(IOI.clean, { answer: IOI.answer, wrong: IOI.wrong });
  assert.ok(Math.abs(dla.total[T - 1] - r.clean) < 1e-4);
  const top = await s.predictions(IOI.clean, { k: 5 });
  assert.equal(top.length, 5);
  for (let i = 1; i < 5; i++) assert.ok(top[i].logit <= top[i - 1].logit);
  assert.ok(top.every((p) => p.prob > 0 && p.prob < 1 && typeof p.text === 'string'));

  await assert.rejects(s.patch('When Mary went', 'When Mary and John went', { answer: IOI.answer }),
    (e) => e instanceof HeadscopeError && /same token length/.test(e.message) && /is 5 tokens and the corrupted one 7/.test(e.message));
  await assert.rejects(s.patch(IOI.clean, IOI.corrupt, { answer: 'Mary and' }),
    (e) => e instanceof HeadscopeError && /not one/.test(e.message));
  await assert.rejects(s.pathPatch(IOI.clean, IOI.corrupt, { answer: IOI.answer, receivers: ['L0H1:q'] }), /layer 0/);
  await assert.rejects(s.pathPatch(IOI.clean, IOI.corrupt, { answer: IOI.answer, receivers: ['L1H1:k'] }), /key or value/);
  s.dispose();
});

test('CLI: patch and dla write labelled JSON', () => {
  const flags = process.execArgv.filter((flag) => flag.startsWith('--experimental-wasm-'));
  const cli = (...args) => spawnSync(process.execPath, [...flags, path.join(repoRoot, 'wasm', 'cli.mjs'), ...args], { encoding: 'utf8' });
  const pair = ['--clean', IOI.clean, '--corrupt', IOI.corrupt, '--answer', IOI.answer, '--wrong', IOI.wrong];
  let out = cli('patch', builtin, ...pair);
  assert.equal(out.status, 0, out.stderr);
  let r = JSON.parse(out.stdout);
  assert.equal(r.what, 'heads');
  assert.deepEqual(r.axes, ['layer', 'head']);
  assert.equal(r.effect.length, 2);
  assert.equal(r.effect[0].length, 4);
  assert.match(r.normalisation, /0 = corrupted, 1 = clean/);
  out = cli('patch', builtin, ...pair, '--what', 'path', '--receiver', 'L1H0:q');
  assert.equal(out.status, 0, out.stderr);
  r = JSON.parse(out.stdout);
  assert.deepEqual(r.receivers, ['L1H0:q']);
  assert.equal(r.effect[1][0], null);  // NaN: no path from the receiver's own layer
  out = cli('dla', builtin, '--text', IOI.clean, '--answer', IOI.answer, '--wrong', IOI.wrong);
  assert.equal(out.status, 0, out.stderr);
  r = JSON.parse(out.stdout);
  assert.equal(r.heads.length, 2);
  assert.equal(r.total.length, r.tokens.length);
  out = cli('patch', builtin, '--clean', 'When Mary went', '--corrupt', 'When Mary and John went', '--answer', IOI.answer);
  assert.notEqual(out.status, 0);
  assert.match(out.stderr, /same token length/);
  out = cli('patch', builtin, ...pair, '--what', 'heads', '--receiver', 'L1H0:q');
  assert.match(out.stderr, /--receiver needs --what path/);
});
