// The weight-geometry panels: every number read back from the page (head
// view, model view, overview metric) is compared with what the CLI's
// `headscope metrics` writes for the same model and weight variant, and the
// vocabulary read-out with the node API of the same core.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { openPage } from './harness.mjs';
import { cliMetrics, exportFile, openSite, screenshot, waitReady } from './fixtures.mjs';
import { directorySource, loadHeadscope } from '../../wasm/node.mjs';

const { site, browser } = await openSite();

const close = (actual, expected, tolerance, what) => assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: page ${actual}, CLI ${expected}`);
const link = (params) => `${site.server.url}#${new URLSearchParams({ hub: '/hub', model: 'test/tiny-gpt2', ...params })}`;

async function waitWeights(page, key, variant) {
  await page.waitForFunction((want) => document.getElementById('weights-status')?.dataset.ready === want, `${key}:${variant}`, { timeout: 30000 });
}

async function spectraNumbers(page) {
  return page.$$eval('#head-spectra-numbers dt', (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent, Number(dt.nextElementSibling.dataset.value)])));
}

test('head view: spectra, redundant heads and composition partners equal the CLI\'s, in both weight variants', async () => {
  const { page, problems } = await openPage(browser.context, link({ view: 'head', head: 'L1H1', weights: 'raw' }));
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  for (const variant of ['raw', 'processed']) {
    if (variant === 'processed') await page.check('#head-weights input[value=processed]');
    await waitWeights(page, 'L1H1', variant);
    assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('weights'), variant === 'raw' ? 'raw' : null);
    const cli = cliMetrics(site.repoDir('test/tiny-gpt2'), variant);
    const h = cli.heads.find((x) => x.head === 'L1H1');
    const shown = await spectraNumbers(page);
    close(shown['‖OV‖_F'], h.ov.frobenius, 1e-9, `${variant} OV norm`);
    close(shown['OV effective rank'], h.ov.effective_rank, 1e-9, `${variant} OV effective rank`);
    close(shown['OV top-1 share'], h.ov.top1_share, 1e-9, `${variant} OV top-1`);
    close(shown['OV top-4 share'], h.ov.top4_share, 1e-9, `${variant} OV top-4`);
    close(shown['QK effective rank'], h.qk.effective_rank, 1e-9, `${variant} QK effective rank`);
    // The spectrum export holds every singular value.
    const spectra = JSON.parse((await exportFile(page, '#head-weights .weights-card:nth-child(1)', 'json')).bytes);
    assert.equal(spectra.variant, variant);
    spectra.ov_sigma.forEach((v, k) => close(v, h.ov.sigma[k], 1e-9, `${variant} OV sigma ${k}`));
    spectra.qk_sigma.forEach((v, k) => close(v, h.qk.sigma[k], 1e-9, `${variant} QK sigma ${k}`));

    // Most redundant by write overlap: the row of L1H1 (index 5) without itself.
    const N = 8;
    const row = cli.redundancy_O.slice(5 * N, 6 * N).map((v, j) => [j, v]).filter(([j]) => j !== 5).sort((a, b) => b[1] - a[1]);
    const partners = await page.$$eval('#head-redundant .partner-list:first-child .partner', (p) => p.map((x) => [x.dataset.head, Number(x.dataset.value)]));
    assert.match(await page.textContent('#head-redundant .partner-list:first-child .levels'), /^chance \(random subspaces\) 0\.250 · this model's pairs: median 0\.\d{3}, 95th percentile 0\.\d{3}$/);
    assert.equal(partners.length, 5);
    partners.forEach(([key, value], r) => {
      assert.equal(key, `L${Math.floor(row[r][0] / 4)}H${row[r][0] % 4}`, `${variant} redundancy rank ${r}`);
      close(value, row[r][1], 1e-9, `${variant} overlap with ${key}`);
    });
    // Principal angles of the first pair: Σcos²θ / d_head is the overlap.
    await page.click('#head-redundant .partner-list:first-child .partner-wrap:first-of-type .small-button');
    const theta = JSON.parse(await (await page.waitForSelector('#head-redundant .partner-wrap:first-of-type .angles[data-theta]')).getAttribute('data-theta'));
    close(theta.reduce((a, t) => a + Math.cos(t) ** 2, 0) / 16, row[0][1], 1e-6, `${variant} Σcos²θ / d_head`);
    // Composition into L1H1 from layer 0: the strongest of q, k, v over the column.
    const incoming = [];
    for (const kind of ['q', 'k', 'v']) for (let j = 0; j < 4; j++) incoming.push([kind, j, cli[`composition_${kind}`][j * N + 5]]);
    incoming.sort((a, b) => b[2] - a[2]);
    const shownIn = await page.$$eval('#head-composition .partner-list:first-child .partner', (p) => p.map((x) => [x.dataset.kind, x.dataset.head, Number(x.dataset.value)]));
    assert.equal(shownIn.length, 6);
    shownIn.forEach(([kind, key, value], r) => {
      assert.equal(`${kind} ${key}`, `${incoming[r][0]} L0H${incoming[r][1]}`, `${variant} composition rank ${r}`);
      close(value, incoming[r][2], 1e-9, `${variant} ${kind}-composition from ${key}`);
    });
  }
  await screenshot(page, 'head-weights', { fullPage: true });

  // The read-out names the tokens the node API of the core names.
  const core = await loadHeadscope();
  const session = core.createSession();
  await session.load(directorySource(site.repoDir('test/tiny-gpt2')));
  const expected = await session.ovReadout(1, 1, { variant: 'processed', directions: 3, topN: 8 });
  session.dispose();
  const readout = JSON.parse((await exportFile(page, '#head-weights .weights-card:nth-child(2)', 'json')).bytes);
  assert.equal(readout.directions.length, 3);
  readout.directions.forEach((d, k) => {
    close(d.sigma, expected.directions[k].sigma, 1e-9, `direction ${k} sigma`);
    assert.deepEqual(d.read_top.map((t) => t.text), expected.directions[k].readTop.map((t) => t.text));
    assert.deepEqual(d.write_top.map((t) => t.token), expected.directions[k].writeTop.map((t) => t.token));
  });
  const chips = await page.$$eval('#head-readout .direction:first-child > .rw:nth-child(2) .token', (t) => t.map((x) => x.textContent));
  assert.deepEqual(chips, expected.directions[0].readTop.map((t) => t.text));

  // Back to raw weights: the page has every figure's numbers already and asks the worker for nothing.
  await page.evaluate(() => {
    const client = window.headscope.app.client;
    const call = client.call.bind(client);
    window.geometryAsked = [];
    client.call = (type, args, options) => {
      if (type === 'geometry') window.geometryAsked.push(args.what);
      return call(type, args, options);
    };
  });
  await page.check('#head-weights input[value=raw]');
  await waitWeights(page, 'L1H1', 'raw');
  assert.deepEqual(await page.evaluate(() => window.geometryAsked), []);
  assert.deepEqual(problems, []);
  await page.close();
});

test('model view: redundancy and composition matrices, the graph and merge candidates equal the CLI\'s', async () => {
  const { page, problems } = await openPage(browser.context, link({ view: 'model', weights: 'raw', head: 'L0H2' }));
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  await page.waitForFunction(() => document.getElementById('model-status')?.dataset.ready === 'raw', null, { timeout: 30000 });
  // The merge candidates' measured losses fill in last: the layout is final after them.
  await page.waitForFunction(() => [...document.querySelectorAll('#merge-table tbody tr td:last-child')].every((td) => td.dataset.value !== undefined), null, { timeout: 60000 });
  const cli = cliMetrics(site.repoDir('test/tiny-gpt2'), 'raw');
  const N = 8;

  const hover = async (figure, i, j) => {
    const canvas = page.locator(`${figure} canvas.matrix`);
    await canvas.scrollIntoViewIfNeeded();  // the mouse reaches only what the viewport shows
    const box = await canvas.boundingBox();
    const cell = await page.$eval(`${figure} canvas.matrix`, (c) => c.getBoundingClientRect().width);
    // Layout as in web/figures/matrix.js: left 44, top 28, cells of equal size.
    const size = Math.floor(Math.min(28, Math.max(2, (cell - 44 - 8) / N)));
    await page.mouse.move(box.x + 44 + (j + 0.5) * size, box.y + 28 + (i + 0.5) * size);
    await page.waitForFunction(([f, ii, jj]) => {
      const t = document.querySelector(`${f} .tooltip`);
      return !t.hidden && t.dataset.i === String(ii) && t.dataset.j === String(jj);
    }, [figure, i, j]);
    return page.$eval(`${figure} .tooltip`, (t) => ({ value: t.dataset.value, text: t.textContent }));
  };
  for (const [i, j] of [[0, 3], [5, 2], [7, 7]]) {
    const tip = await hover('#redundancy-figure', i, j);
    close(Number(tip.value), cli.redundancy_O[i * N + j], 1e-9, `O overlap (${i}, ${j})`);
  }
  const v = (await exportFile(page, '#redundancy-figure', 'json')).bytes;
  const red = JSON.parse(v);
  assert.equal(red.variant, 'raw');
  red.values.flat().forEach((x, k) => close(x, cli.redundancy_O[k], 1e-9, `O overlap ${k}`));
  // Another subspace.
  await page.check('input[name=subspace][value=V]');
  await page.waitForFunction(() => /value read/.test(document.querySelector('#redundancy-figure .legend-title').textContent));
  const redV = JSON.parse((await exportFile(page, '#redundancy-figure', 'json')).bytes);
  redV.values.flat().forEach((x, k) => close(x, cli.redundancy_V[k], 1e-9, `V overlap ${k}`));
  // Beside its chance level and the model's own spread, as the CLI reports them.
  const levels = cli.redundancy_levels.V;
  close(redV.chance_full_rank, 16 / 64, 1e-15, 'isotropic chance d_head / d_model');
  redV.chance.flat().forEach((x) => close(x, 16 / 64, 1e-15, 'chance for full-rank heads'));
  for (const key of ['median', 'p95', 'p99']) close(redV.model_pairs[key], levels.pairs[key], 1e-12, `model's ${key}`);
  const caption = await page.textContent('#redundancy-figure');
  assert.match(caption, /Chance \(isotropic\): two random subspaces of full rank overlap 0\.250/);
  assert.match(caption, new RegExp(`This model's 28 pairs of different heads: median ${levels.pairs.median.toFixed(3)}, 95th percentile ${levels.pairs.p95.toFixed(3)}`));

  // Composition: K scores, an earlier-to-later cell and an undefined one.
  await page.check('input[name=composition][value=k]');
  await page.waitForFunction(() => /K-composition/.test(document.querySelector('#composition-figure .legend-title').textContent));
  const tip = await hover('#composition-figure', 1, 6);
  close(Number(tip.value), cli.composition_k[1 * N + 6], 1e-9, 'K-composition L0H1 -> L1H2');
  const p = cli.composition_p_k[1 * N + 6];
  assert.ok(p > 0 && p <= 1, `p ${p}`);
  assert.match(tip.text, new RegExp(`L0H1 → L1H2: 0\\.\\d{4} \\(p ${p.toFixed(3)}\\)`));
  assert.equal((await hover('#composition-figure', 6, 1)).value, '', 'later -> earlier is not defined');
  // The null: 2 layers of 4 heads have 16 reversed and 24 same-layer pairs,
  // too few to flag at FDR 5 % (399 needed): the page says so and ranks.
  const sig = cli.composition_significance;
  assert.equal(sig.k.null.n, 40);
  assert.equal(sig.k.resolvable, false);
  const note = await page.textContent('#composition-figure .axis-note');
  assert.match(note, new RegExp(`Null: the same score over the 40 pairs that cannot compose .*mean ${sig.k.null.mean.toFixed(4)}, 95th percentile ${sig.k.null.q95.toFixed(4)}`));
  assert.match(note, /Too few null pairs to flag at a 5 % false-discovery rate: rank, do not test/);
  assert.match(note, new RegExp(`For reference, not as a null: random i.i.d. matrices of these shapes score ${cli.composition_baseline.mean.toFixed(4)}`));

  // The graph: not a test here, the 8 highest-scoring pairs of each kind.
  const top = (k) => cli[`composition_${k}`].map((x, at) => [x, at]).filter(([, at]) => Math.floor(Math.floor(at / N) / 4) < Math.floor((at % N) / 4)).sort((a, b) => b[0] - a[0]).slice(0, 8);
  assert.equal(await page.$$eval('#composition-graph path', (e) => e.length), 24);
  assert.match(await page.textContent('#graph-card'), /Not tested: the null, the same score over the 40 pairs .* at least 399 null pairs are needed\. Shown instead: the 24 highest-scoring pairs, ranked/);
  const graph = JSON.parse((await exportFile(page, '#graph-card', 'json')).bytes);
  assert.match(graph.edges_are, /ranked: the null is too small to test/);
  assert.equal(graph.edges.length, 24);
  for (const k of ['q', 'k', 'v']) {
    const want = new Map(top(k).map(([x, at]) => [`L${Math.floor(Math.floor(at / N) / 4)}H${Math.floor(at / N) % 4}→L${Math.floor((at % N) / 4)}H${at % N % 4}`, x]));
    const got = graph.edges.filter((e) => e.kind === k);
    assert.deepEqual(got.map((e) => `${e.from}→${e.to}`).sort(), [...want.keys()].sort(), `${k}: the top 8 pairs`);
    for (const e of got) close(e.score, want.get(`${e.from}→${e.to}`), 1e-9, `${k} ${e.from}→${e.to}`);
  }

  // Merge candidates.
  const rows = await page.$$eval('#merge-table tbody tr', (tr) => tr.map((r) => [...r.children].map((c) => c.textContent)));
  assert.equal(rows.length, Math.min(10, cli.merge_candidates.length));
  rows.forEach((r, k) => {
    const m = cli.merge_candidates[k];
    assert.equal(r[1], `L${m.layer}H${m.head_a} + L${m.layer}H${m.head_b}`);
    close(Number(r[4]), m.qk_similarity, 5e-5, `merge ${k} QK cosine`);
    close(Number(r[5]), m.combined, 5e-5, `merge ${k} combined`);
  });
  // Each candidate's merge measured on the text, as the core reports it.
  const deltas = await page.$$eval('#merge-table tbody tr td:last-child', (tds) => tds.map((td) => Number(td.dataset.value)));
  const ids = await page.evaluate(() => window.headscope.store.state.run.ids);
  const ns = await loadHeadscope().then((c) => c.createSession());
  await ns.load(directorySource(site.repoDir('test/tiny-gpt2')));
  const first = cli.merge_candidates[0];
  const report = ns.evaluateMerge(ids, { layer: first.layer, headA: first.head_a, headB: first.head_b });
  close(deltas[0], report.lossMerged - report.lossBase, 1e-6, 'the first candidate\'s measured Δloss');
  ns.dispose();
  // Exports of the matrix: SVG with one rect per cell.
  const svg = (await exportFile(page, '#composition-figure', 'svg')).bytes.toString('utf8');
  const rects = await page.evaluate((s) => new DOMParser().parseFromString(s, 'image/svg+xml').querySelectorAll('rect > title').length, svg);
  assert.equal(rects, N * N);
  await screenshot(page, 'model-view', { fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});

test('overview: colour by a metric, sort by it, and values equal the CLI\'s', async () => {
  const { page, problems } = await openPage(browser.context, link({ metric: 'ov_erank' }));
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  await page.waitForFunction(() => document.querySelector('#overview-grid .head-cell').dataset.metric);
  const cli = cliMetrics(site.repoDir('test/tiny-gpt2'), 'processed');
  const shown = await page.$$eval('#overview-grid .head-cell', (c) => c.map((x) => [x.dataset.head, Number(x.dataset.metric)]));
  for (const [key, value] of shown) close(value, cli.heads.find((h) => h.head === key).ov.effective_rank, 1e-9, `${key} OV effective rank`);
  assert.match(await page.textContent('#overview-grid .metric-legend'), /OV effective rank \(processed weights\)/);

  await page.selectOption('#metric-select', 'copying');
  await page.check('#metric-sort');
  await page.waitForFunction(() => document.querySelector('#overview-grid .head-grid').classList.contains('sorted'));
  const hash = new URLSearchParams(new URL(page.url()).hash.slice(1));
  assert.equal(hash.get('metric'), 'copying');
  assert.equal(hash.get('sort'), '1');
  const order = await page.$$eval('#overview-grid .sorted-box .head-cell', (c) => c.map((x) => Number(x.dataset.metric)));
  assert.equal(order.length, 8);
  assert.deepEqual(order, [...order].sort((a, b) => b - a), 'descending');
  await screenshot(page, 'overview-sorted');
  // Keyboard still walks heads by layer and head in sorted mode.
  await page.focus('#overview-grid .head-cell.selected');
  await page.keyboard.press('ArrowRight');
  assert.equal(new URLSearchParams(new URL(page.url()).hash.slice(1)).get('head'), 'L0H1');
  assert.deepEqual(problems, []);
  await page.close();
});

test('a post-LN model refuses processed weights with a clear message and works with raw ones', async () => {
  const { page, problems } = await openPage(browser.context, link({ model: 'test/bert', view: 'head', head: 'L0H1' }));
  await waitReady(page);
  await waitWeights(page, 'L0H1', 'processed');
  assert.match(await page.textContent('#head-spectra'), /pre-LN/);
  await page.check('#head-weights input[value=raw]');
  await waitWeights(page, 'L0H1', 'raw');
  const shown = await spectraNumbers(page);
  assert.ok(shown['OV effective rank'] > 1);
  assert.deepEqual(problems, []);
  await page.close();
});

test('head view: the full circuits equal the core\'s, beside their chance levels', async () => {
  const { page, problems } = await openPage(browser.context, link({ view: 'head', head: 'L1H2', weights: 'raw' }));
  await page.setViewportSize({ width: 1280, height: 900 });
  await waitReady(page);
  await waitWeights(page, 'L1H2', 'raw');
  await page.waitForSelector('#head-positional canvas:not([hidden])');
  const numbers = await page.$$eval('#head-full-circuits dd[data-value]', (dds) => dds.map((dd) => [dd.previousElementSibling.textContent, Number(dd.dataset.value), dd.textContent]));
  const core = await loadHeadscope();
  const s = core.createSession();
  await s.load(directorySource(site.repoDir('test/tiny-gpt2')));
  const want = s.fullCircuits({ variant: 'raw', heads: [1 * 4 + 2] });
  // The same build in another V8: near-tied entries may order differently (1 / V each).
  [want.ov.top1[0], want.ov.meanRank[0], want.qk.top1[0], want.qk.meanRank[0]].forEach((w, k) => close(numbers[k][1], w, 4 / want.dVocab, numbers[k][0]));
  assert.ok(numbers.every(([, , text]) => /chance/.test(text)));
  const pos = JSON.parse((await exportFile(page, '#head-positional', 'json')).bytes.toString());
  const wantPos = s.positionalCircuit({ variant: 'raw', heads: [6], maxPositions: 24 });
  close(pos.previous, wantPos.previous[0], 1e-6, 'positional previous-token attention');
  s.dispose();
  assert.deepEqual(problems, []);
});
