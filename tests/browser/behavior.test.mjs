// Behaviour and interventions in the page, read back and compared with the
// Hugging Face oracle (importance, ablation) and with the core's node API on
// the same model files (detectors, mean ablation, edits, merges, pruning, the
// induction probe).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { openPage, repoRoot } from './harness.mjs';
import { exportFile, openSite, oracleDir, runCount, screenshot, waitReady, waitRun, worstMismatch } from './fixtures.mjs';
import { parseNpy } from '../../wasm/npy.mjs';
import { directorySource, loadHeadscope } from '../../wasm/node.mjs';

const { site, browser } = await openSite();
const core = await loadHeadscope();

const ORACLE_IDS = [5, 17, 42, 7, 99, 3, 64, 23, 11, 88, 120, 31];
const TEXT = 'the cat sat on the mat and the cat sat on the mat';
const link = (params) => `${site.server.url}#${new URLSearchParams({ hub: '/hub', ...params })}`;
const close = (a, b, tol, what) => assert.ok(Math.abs(a - b) <= tol, `${what}: page ${a}, reference ${b}`);

async function nodeSession(repo) {
  const s = core.createSession();
  await s.load(directorySource(site.repoDir(repo)));
  return s;
}

async function pageLoss(page) {
  return Number(await page.getAttribute('#run-summary', 'data-loss'));
}

test('roles and detector scores on screen equal the core\'s, with every detector option', async () => {
  const { page, problems } = await openPage(browser.context, link({ model: 'test/tiny-gpt2', text: TEXT, view: 'head', head: 'L1H2' }));
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  const ids = await page.evaluate(() => window.headscope.store.state.run.ids);
  const s = await nodeSession('test/tiny-gpt2');
  const check = async (options, what) => {
    const expected = s.behavior(ids, options);
    await page.waitForFunction((m) => document.getElementById('head-pattern-stats').dataset.measure === m, expected.measure);
    const stats = await page.$$eval('#head-pattern-stats dt', (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent, dt.nextElementSibling.dataset.value])));
    const i = 1 * 4 + 2;
    close(Number(stats['previous-token score']), expected.previousTokenScore[i], 1e-12, `${what} previous-token`);
    close(Number(stats['duplicate-token score']), expected.duplicateTokenScore[i], 1e-12, `${what} duplicate-token`);
    close(Number(stats['induction score']), expected.inductionScore[i], 1e-12, `${what} induction`);
    close(Number(stats['entropy (nats)']), expected.entropy[i], 1e-12, `${what} entropy`);
    close(Number(stats['BOS sink mass']), expected.firstTokenMass[i], 1e-12, `${what} sink`);
    assert.equal(stats['Kovaleva class'], expected.patternClass[i]);
    assert.equal(await page.getAttribute('#head-role', 'data-role'), expected.role[i]);
    const scores = await page.$$eval('#head-role-scores .partner', (p) => p.map((x) => Number(x.dataset.value)));
    scores.forEach((v, k) => close(v, expected.roleScores[i * 6 + k], 1e-12, `${what} role score ${k}`));
    return expected;
  };
  await page.waitForSelector('#head-role[data-role]');
  await check({}, 'mul');
  await page.check('#head-behavior input[data-flag=abs]');
  await page.check('#head-behavior input[data-flag=nobos]');
  await check({ measure: 'abs', excludeBos: true }, 'abs, exclude BOS');
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('detect'), 'abs,nobos');
  await screenshot(page, 'head-behaviour', { fullPage: true });

  // The overview's badges and a detector metric, for every head.
  await page.click('#tab-overview');
  await page.selectOption('#metric-select', 'previous_token');
  await page.waitForFunction(() => document.querySelector('#overview-grid .head-cell').dataset.metric);
  const expected = s.behavior(ids, { measure: 'abs', excludeBos: true });
  const cells = await page.$$eval('#overview-grid .head-cell', (c) => c.map((x) => [Number(x.dataset.metric), x.dataset.role]));
  cells.forEach(([v, role], i) => {
    close(v, expected.previousTokenScore[i], 1e-12, `head ${i} previous-token`);
    assert.equal(role, expected.role[i]);
  });
  s.dispose();
  assert.deepEqual(problems, []);
  await page.close();
});

test('importance and leave-one-out on screen match the oracle; pruning and the induction probe match the core', async () => {
  const grad = parseNpy(fs.readFileSync(path.join(oracleDir('gpt2'), 'head_importance_abs_grad.npy'))).data;
  const loo = parseNpy(fs.readFileSync(path.join(oracleDir('gpt2'), 'loss_zero_ablate_each_head.npy'))).data;
  const { page, problems } = await openPage(browser.context, link({ model: 'test/ids-gpt2', text: ORACLE_IDS.join(' '), bos: '0', view: 'model' }));
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  await page.waitForSelector('#importance-note[data-ready=zero]', { timeout: 30000 });
  const g = JSON.parse((await exportFile(page, '#importance-gradient', 'json')).bytes);
  let worst = worstMismatch(g.values, Array.from(grad));
  assert.ok(worst.maxError < 1e-4, `gradient importance vs oracle: ${JSON.stringify(worst)}`);
  const l = JSON.parse((await exportFile(page, '#importance-loo', 'json')).bytes);
  worst = worstMismatch(l.loss, Array.from(loo));
  assert.ok(worst.maxError < 1e-4, `leave-one-out loss vs oracle: ${JSON.stringify(worst)}`);

  const s = await nodeSession('test/ids-gpt2');
  await page.click('#pruning-run');
  await page.waitForSelector('#pruning-curve[data-ready]');
  const curve = JSON.parse((await exportFile(page, '#pruning-card', 'json')).bytes);
  const expected = s.pruningCurve(ORACLE_IDS, { order: 'gradient', mode: 'zero', nRandom: 3, seed: 0 });  // the page's default: Michel's order
  assert.deepEqual(curve.order, Array.from(expected.order));
  assert.match(await page.textContent('#pruning-note'), /^order: gradient importance, per-layer normalised, re-estimated every 10 % \(Michel et al\.\); 1 head a step; zero ablation/);
  assert.ok(worstMismatch(curve.loss, expected.loss).maxError < 1e-9);
  assert.equal(await page.$$eval('#pruning-curve path[data-series]', (p) => p.length), 5, 'importance order, three random orders, their mean');

  await page.waitForSelector('#probe-note[data-ready]', { timeout: 30000 });
  const probe = JSON.parse((await exportFile(page, '#induction-scores', 'json')).bytes);
  const t = s.inductionTest({ seqLen: 31, batch: 10, seed: 0 });
  assert.equal(probe.seq_len, 31);
  assert.ok(worstMismatch(probe.values, t.score).maxError < 1e-12);
  assert.match(await page.textContent('#probe-note'), new RegExp(`loss ${t.lossFirstHalf.toFixed(3)} on the first copy → ${t.lossSecondHalf.toFixed(3)} on the repeat`));
  await screenshot(page, 'model-behaviour', { fullPage: true });
  s.dispose();
  assert.deepEqual(problems, []);
  await page.close();
});

test('mean ablation: the loss equals the core\'s', async () => {
  const { page, problems } = await openPage(browser.context, link({ model: 'test/ids-gpt2', text: ORACLE_IDS.join(' '), bos: '0', ablate: 'L0H1,L1H2', view: 'interventions' }));
  await waitReady(page);
  const s = await nodeSession('test/ids-gpt2');
  close(await pageLoss(page), s.ablate(ORACLE_IDS, [1, 6], { mode: 'zero' }).loss, 1e-9, 'zero ablation');
  const n = await runCount(page);
  await page.check('#mode-mean');
  await waitRun(page, n);
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('mode'), 'mean');
  close(await pageLoss(page), s.ablate(ORACLE_IDS, [1, 6], { mode: 'mean' }).loss, 1e-9, 'mean ablation');
  assert.match(await page.textContent('#run-summary'), /with 2 heads mean-ablated/);
  s.dispose();
  assert.deepEqual(problems, []);
  await page.close();
});

test('OV edits: α = 0 changes nothing, α changes the loss as the core says, removal restores it exactly, the link keeps them; old links keep their meaning', async () => {
  const { page, problems } = await openPage(browser.context, link({ model: 'test/ids-gpt2', text: ORACLE_IDS.join(' '), bos: '0', view: 'interventions', head: 'L1H3' }));
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  const clean = await page.getAttribute('#run-summary', 'data-loss');
  // α = 0: the same loss, bit for bit.
  await page.fill('#edit-alpha-value', '0');
  await page.fill('#edit-component', '2');
  let n = await runCount(page);
  await page.click('#edit-add');
  await waitRun(page, n);
  // The default: remove component k of the processed weights (the ones on display).
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('edits'), 'rm:L1H3:k1:a0:p');
  assert.equal(await page.getAttribute('#run-summary', 'data-loss'), clean);
  assert.equal(await page.getAttribute('#run-summary', 'data-unedited-loss'), clean);
  // Drag α to 1.5 (the row's own slider).
  n = await runCount(page);
  await page.$eval('#edit-list .edit-alpha', (slider) => {
    slider.value = '1.5';
    slider.dispatchEvent(new Event('input', { bubbles: true }));
  });
  await page.waitForFunction(() => /a1\.5/.test(location.hash));
  await waitRun(page, n);
  await page.waitForFunction((c) => document.getElementById('run-summary').dataset.loss !== c, clean);
  const s = await nodeSession('test/ids-gpt2');
  s.addOvEdit({ kind: 'remove_component', layer: 1, head: 3, component: 1, alpha: 1.5, variant: 'processed' });
  const expected = s.run(ORACLE_IDS).loss;
  close(await pageLoss(page), expected, 1e-9, 'remove-component edit α 1.5');
  assert.match(await page.textContent('#edit-list'), /L1H3: W_OV −= 1\.5·σ2·U2V2ᵀ \(processed weights\)/);
  assert.match(await page.textContent('#edit-kind-note'), /no longer maps U2/);
  await page.waitForFunction(() => /component 2 of L1H3 \(processed weights/.test(document.getElementById('edit-direction').textContent));
  assert.match(await page.textContent('#run-summary'), /with 1 edit/);
  await screenshot(page, 'edits');
  // The link carries the edit: a new tab shows the same loss.
  const second = await openPage(browser.context, page.url());
  await waitReady(second.page);
  close(await pageLoss(second.page), expected, 1e-9, 'edit restored from the link');
  await second.page.close();
  // Remove it: the original loss exactly.
  n = await runCount(page);
  await page.click('#edit-list .remove');
  await waitRun(page, n);
  assert.equal(await page.getAttribute('#run-summary', 'data-loss'), clean);
  // A link made before the σ-scaled form: r1 keeps its absolute α on raw weights.
  const old = await openPage(browser.context, link({ model: 'test/ids-gpt2', text: ORACLE_IDS.join(' '), bos: '0', view: 'interventions', head: 'L1H3', edits: 'r1:L1H3:k1:a1.5:w' }));
  await waitReady(old.page);
  const legacy = await nodeSession('test/ids-gpt2');
  legacy.addOvEdit({ kind: 'rank_one', layer: 1, head: 3, component: 1, alpha: 1.5, side: 'write', variant: 'raw' });
  close(await pageLoss(old.page), legacy.run(ORACLE_IDS).loss, 1e-9, 'a link with the absolute rank-one edit');
  assert.match(await old.page.textContent('#edit-list'), /W_OV −= 1\.5·V2V2ᵀ \(absolute α, write side, raw weights\)/);
  legacy.dispose();
  await old.page.close();
  s.dispose();
  assert.deepEqual([...problems, ...second.problems, ...old.problems], []);
  await page.close();
});

test('merging two heads: the report, then the merged model\'s loss equals the report; removing the merge restores the loss', async () => {
  const { page, problems } = await openPage(browser.context, link({ model: 'test/ids-gpt2', text: ORACLE_IDS.join(' '), bos: '0', view: 'interventions', head: 'L0H0' }));
  await waitReady(page);
  const clean = await page.getAttribute('#run-summary', 'data-loss');
  await page.selectOption('#merge-b', '1');
  await page.click('#merge-evaluate');
  await page.waitForSelector('#merge-report-table');
  const s = await nodeSession('test/ids-gpt2');
  const report = s.evaluateMerge(ORACLE_IDS, { layer: 0, headA: 0, headB: 1 });
  const rows = await page.$$eval('#merge-report-table tbody tr', (r) => r.map((x) => Number(x.dataset.value)));
  [report.lossBase, report.lossPruneA, report.lossPruneB, report.lossPruneBoth, report.lossMergedPatternA, report.lossMergedPatternB]
    .forEach((v, k) => close(rows[k], v, 1e-9, `merge report row ${k}`));
  let n = await runCount(page);
  await page.click('#merge-apply');
  await waitRun(page, n);
  close(await pageLoss(page), report.lossMerged, 1e-5, 'merged loss');
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('edits'), `mg:L0H0+H1:p${report.bestPatternHead}`);
  n = await runCount(page);
  await page.click('#edit-list .remove');
  await waitRun(page, n);
  assert.equal(await page.getAttribute('#run-summary', 'data-loss'), clean);
  s.dispose();
  assert.deepEqual(problems, []);
  await page.close();
});

test('a permalink to a corpus view runs it and shows the CLI\'s numbers, intervals and chance levels', async () => {
  const { page, problems } = await openPage(browser.context, link({ model: 'test/tiny-gpt2', view: 'model', corpus: 'stories:12:48' }));
  await page.setViewportSize({ width: 1280, height: 900 });
  await waitReady(page);
  await page.waitForSelector('#corpus-note[data-ready="12"]', { timeout: 60000 });
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'headscope-corpus-')));
  execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', path.join(repoRoot, 'wasm', 'cli.mjs'), 'corpus', site.repoDir('test/tiny-gpt2'), '--texts', '12', '--tokens', '48', '--importance', '--out', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  const cli = JSON.parse(fs.readFileSync(path.join(dir, 'corpus.json'), 'utf8'));
  assert.ok(cli.corpus.truncated > 0);
  assert.ok(
    (await page.textContent('#corpus-note')).includes(`built-in stories (corpora/stories.txt): 12 texts, each cut to its first 48 tokens (BOS included; ${cli.corpus.truncated} were longer); intervals: percentile bootstrap of the mean over texts, 1000 resamples, seed 0`),
    await page.textContent('#corpus-note'));
  for (const [value, statistic] of [['previousTokenScore', 'previous_token_score'], ['inductionScore', 'induction_score'], ['firstTokenMass', 'first_token_mass']]) {
    await page.selectOption('#corpus-statistic', value);
    const shown = JSON.parse((await exportFile(page, '#corpus-figure', 'json')).bytes);
    assert.equal(shown.texts, 12);
    assert.equal(shown.max_tokens, 48);
    cli.heads.forEach((h, i) => {
      const want = h.statistics[statistic];
      close(shown.values[i], want.mean, 1e-6, `${statistic} ${h.head} mean`);
      close(shown.lo[i], want.lo, 1e-6, `${statistic} ${h.head} lo`);
      close(shown.hi[i], want.hi, 1e-6, `${statistic} ${h.head} hi`);
      close(shown.chance[i], want.chance, 1e-9, `${statistic} ${h.head} chance`);
    });
  }
  // The roles table: the role most texts give each head, as the CLI counts it.
  const rows = await page.$$eval('#corpus-roles tbody tr', (tr) => tr.map((r) => [r.dataset.head, r.dataset.role, Number(r.dataset.share)]));
  rows.forEach(([head, role, share], i) => {
    assert.equal(head, cli.heads[i].head);
    close(share, cli.heads[i].role_share[role], 1e-12, `${head} ${role}`);
    assert.ok(Object.values(cli.heads[i].role_share).every((s) => s <= share + 1e-12), `${head}: ${role} is the most frequent role`);
  });
  // The selected head's top examples are the CLI's.
  const shownExamples = await page.$$eval('#corpus-examples li', (li) => li.map((x) => [Number(x.dataset.text), Number(x.dataset.query), Number(x.dataset.key)]));
  assert.deepEqual(shownExamples, cli.heads[0].top_examples.map((e) => [e.text, e.query, e.key]));
  assert.ok(shownExamples.length > 0);
  // Importance over the same texts: Michel's expectation, leave-one-out, the held-out curve.
  await page.click('#corpus-importance-run');
  await page.waitForSelector('#corpus-importance-note[data-ready="12"]', { timeout: 120000 });
  const grad = JSON.parse((await exportFile(page, '#corpus-gradient', 'json')).bytes);
  const looShown = JSON.parse((await exportFile(page, '#corpus-loo', 'json')).bytes);
  cli.importance.heads.forEach((h, i) => {
    close(grad.values[i], h.gradient_normalized, 1e-5, `${h.head} normalised importance`);
    close(looShown.values[i], h.leave_one_out.mean, 1e-5, `${h.head} leave-one-out`);
    close(looShown.lo[i], h.leave_one_out.lo, 1e-5, `${h.head} leave-one-out lo`);
  });
  const curve = JSON.parse((await exportFile(page, '#corpus-card .figure-head:has(#corpus-importance-run)', 'json')).bytes);
  curve.pruning_loss.forEach((v, k) => close(v, cli.importance.pruning.loss[k], 1e-5, `held-out pruning step ${k}`));
  // A file of the viewer's runs too, and the link no longer names a corpus.
  const file = path.join(dir, 'mine.jsonl');
  fs.writeFileSync(file, '{"text": "the cat sat on the mat"}\n{"text": "the dog sat on the log"}\n');
  await page.setInputFiles('#corpus-file', file);
  await page.waitForFunction(() => /mine\.jsonl: 2 texts/.test(document.getElementById('corpus-note').textContent));
  await page.click('#corpus-run');
  await page.waitForSelector('#corpus-note[data-ready="2"]');
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('corpus'), null);
  // A bad file is named, and the page stays usable.
  const bad = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(bad, '{"body": "no text here"}\n');
  await page.setInputFiles('#corpus-file', bad);
  await page.waitForFunction(() => /bad\.jsonl: line 1 has no text field "text"/.test(document.getElementById('corpus-note').textContent));
  assert.equal(await page.evaluate(() => document.body.dataset.status), 'ready');
  await screenshot(page, 'corpus-view', { fullPage: true });
  // An example is a click away from the head view on its text.
  const example = await page.$eval('#corpus-examples li', (li) => Number(li.dataset.text));
  await page.click('#corpus-examples li button');
  await page.waitForFunction(() => window.headscope.store.state.view === 'head');
  assert.equal(await page.evaluate(() => window.headscope.store.state.text), ['the cat sat on the mat', 'the dog sat on the log'][example]);
  // The head view puts the corpus' statistics beside the text's.
  await page.waitForSelector('#head-corpus-stats h4');
  assert.match(await page.textContent('#head-corpus-stats h4'), /Over the corpus: mine\.jsonl \(your file\), 2 texts of at most 48 tokens/);
  const corpusPrev = await page.$eval('#head-corpus-stats dd', (dd) => ({ mean: Number(dd.dataset.value), lo: Number(dd.dataset.lo), hi: Number(dd.dataset.hi) }));
  assert.ok(corpusPrev.lo <= corpusPrev.mean && corpusPrev.mean <= corpusPrev.hi, JSON.stringify(corpusPrev));
  assert.deepEqual(problems, []);
  await page.close();
});

test('the overview colours heads by a statistic over the corpus from a permalink, as the CLI\'s means', async () => {
  const { page, problems } = await openPage(browser.context, link({ model: 'test/tiny-gpt2', metric: 'induction', over: 'corpus', corpus: 'stories:12:48' }));
  await waitReady(page);
  await page.waitForFunction(() => /mean over built-in stories/.test(document.querySelector('#view-overview .metric-legend')?.textContent || ''), null, { timeout: 60000 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'headscope-corpus-'));
  execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', path.join(repoRoot, 'wasm', 'cli.mjs'), 'corpus', site.repoDir('test/tiny-gpt2'), '--texts', '12', '--tokens', '48', '--out', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  const cli = JSON.parse(fs.readFileSync(path.join(dir, 'corpus.json'), 'utf8'));
  const grid = JSON.parse((await exportFile(page, '#overview-grid .figure-head:first-child', 'json')).bytes);
  assert.equal(grid.metric.id, 'induction');
  assert.match(grid.metric.basis, /^mean over built-in stories \(corpora\/stories\.txt\), 12 texts$/);
  cli.heads.forEach((h, i) => close(grid.metric.values[i], h.statistics.induction_score.mean, 1e-6, `${h.head} induction mean`));
  // Back to this text: the text's own scores, and the link says so.
  await page.selectOption('#metric-over', 'text');
  await page.waitForFunction(() => /on this text/.test(document.querySelector('#view-overview .metric-legend')?.textContent || ''));
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('over'), null);
  const text = JSON.parse((await exportFile(page, '#overview-grid .figure-head:first-child', 'json')).bytes);
  assert.equal(text.metric.basis, 'on this text');
  assert.notDeepEqual(text.metric.values, grid.metric.values);
  // A weight metric has no corpus mean: the switch is off for it.
  await page.selectOption('#metric-select', 'ov_erank');
  assert.equal(await page.isDisabled('#metric-over'), true);
  assert.deepEqual(problems, []);
  await page.close();
});

test('a corpus from a Hugging Face dataset (permalink) and from a local parquet file, as the CLI reads them', async () => {
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  const stories = fs.readFileSync(path.join(repoRoot, 'public', 'corpora', 'stories.txt'), 'utf8').split('\n').filter((l) => l.trim());
  const rows = Array.from({ length: 4000 }, (_, i) => (i < 8 ? stories[i] : `${stories[i % stories.length]} (${i})`));
  const table = Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'text', data: rows, type: 'STRING' }], rowGroupSize: 50 }));
  const split = path.join(site.hub, 'datasets', 'test', 'stories', 'resolve', 'refs', 'convert', 'parquet', 'default', 'train');
  fs.mkdirSync(split, { recursive: true });
  fs.writeFileSync(path.join(split, '0000.parquet'), table);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'headscope-parquet-'));
  fs.writeFileSync(path.join(dir, 'stories.parquet'), table);
  execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', path.join(repoRoot, 'wasm', 'cli.mjs'), 'corpus', site.repoDir('test/tiny-gpt2'), '--corpus', path.join(dir, 'stories.parquet'), '--texts', '8', '--tokens', '40', '--out', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  const cli = JSON.parse(fs.readFileSync(path.join(dir, 'corpus.json'), 'utf8'));
  const { page, problems } = await openPage(browser.context, link({ model: 'test/tiny-gpt2', view: 'model', corpus: 'hf:test/stories:default:train:8:40' }));
  await waitReady(page);
  await page.waitForSelector('#corpus-note[data-ready="8"]', { timeout: 60000 });
  assert.match(await page.textContent('#corpus-note'), /^dataset test\/stories \(default\/train\): 8 texts/);
  const check = async (what) => {
    const shown = JSON.parse((await exportFile(page, '#corpus-figure', 'json')).bytes);
    cli.heads.forEach((h, i) => close(shown.values[i], h.statistics.previous_token_score.mean, 1e-6, `${what} ${h.head}`));
  };
  await check('dataset');
  // Only ranges of the dataset's file travelled, far less than the file.
  const requests = site.server.requests.filter((r) => r.url.includes('0000.parquet'));
  assert.ok(requests.length > 0 && requests.every((r) => r.status === 206));
  assert.ok(requests.reduce((a, r) => a + r.bytes, 0) < table.length / 2);
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('corpus'), 'hf:test/stories:default:train:8:40');
  // The same texts from a parquet file of the viewer's.
  await page.setInputFiles('#corpus-file', path.join(dir, 'stories.parquet'));
  await page.waitForFunction(() => /stories\.parquet: 1000 texts/.test(document.getElementById('corpus-note').textContent));
  await page.fill('#corpus-texts', '8');
  await page.click('#corpus-run');
  await page.waitForFunction(() => /stories\.parquet \(your file\): 8 texts/.test(document.getElementById('corpus-note').textContent));
  await check('local parquet');
  // A split that is not there is named.
  await page.selectOption('#corpus-source', 'hf');
  await page.fill('#corpus-split', 'validation');
  await page.click('#corpus-run');
  await page.waitForFunction(() => /no such dataset file \(HTTP 404/.test(document.getElementById('corpus-note').textContent));
  assert.deepEqual(problems.filter((p) => !/404/.test(p)), []);
  await page.close();
});
