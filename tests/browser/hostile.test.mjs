// Hostile and unlucky inputs against the page: a tokenizer pattern that never
// ends, a selection made during another load, a link to a stranger's host, a
// navigation racing the page's own URL writes, weights that overflow, links
// that name what is not there, a folder holding two models. After each the
// page must say what is wrong and stay usable without a reload.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { openPage } from './harness.mjs';
import { CATASTROPHIC, SENTENCE, hostileTokenizerModel, overflowingModel } from '../node/support.mjs';
import { openSite, runCount, tempDir, tinyTokenizer, waitReady, waitRun, writeModel } from './fixtures.mjs';

const { site, browser } = await openSite();

const hashParams = (page) => new URLSearchParams(new URL(page.url()).hash.slice(1));

// The worker holds the model the page shows: its answers carry the
// generation of the store's model.
async function workerAgrees(page) {
  return page.evaluate(async () => {
    const { app, store } = window.headscope;
    const run = await app.client.call('analyze', { text: 'the cat sat', prependBos: true, maxTokens: 64 });
    return run.generation === store.state.modelInfo.generation;
  });
}

test('a tokenizer whose pattern never ends is stopped with a message naming it; the page stays usable', async () => {
  const dir = hostileTokenizerModel();
  const { page, problems } = await openPage(browser.context, `${site.server.url}#text=${encodeURIComponent(SENTENCE)}`);
  await waitReady(page);
  await page.setInputFiles('#model-files', ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => path.join(dir, f)));
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('local files'));
  await page.waitForFunction((pattern) => document.getElementById('run-error').textContent.includes(pattern), JSON.stringify(CATASTROPHIC), { timeout: 60000 });
  // The model's worker was not blocked: the built-in model loads and runs.
  const n = await runCount(page);
  await page.selectOption('#model-select', 'builtin');
  await waitRun(page, n);
  assert.equal(hashParams(page).get('model'), null);
  assert.ok(await workerAgrees(page));
  assert.deepEqual(problems.filter((p) => !/tokenizer/.test(p)), []);
  await page.close();
});

test('choosing the loaded model during another load cancels that load, whenever it comes', async () => {
  const dir = site.repoDir('test/neox');
  const payload = ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => ({ name: f, data: fs.readFileSync(path.join(dir, f)).toString('base64') }));
  const { page, problems } = await openPage(browser.context, site.server.url);
  await waitReady(page);
  const builtin = await page.evaluate(() => window.headscope.store.state.modelInfo.modelType);
  for (const delay of [0, 2, 10, 50, 200]) {
    await page.evaluate(async ({ items, wait }) => {
      const files = items.map(({ name, data }) => new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name));
      window.headscope.app.loadFiles(files);
      await new Promise((resolve) => setTimeout(resolve, wait));
      window.headscope.store.set({ model: 'builtin', rev: 'main' });
    }, { items: payload, wait: delay });
    // Whichever way the race went, the built-in model is the one loaded.
    await page.waitForTimeout(300);
    await waitReady(page);
    assert.equal(await page.evaluate(() => window.headscope.store.state.modelInfo.modelType), builtin, `delay ${delay} ms`);
    assert.ok(await workerAgrees(page), `delay ${delay} ms: the worker holds another model`);
    assert.equal(hashParams(page).get('model'), null);
    assert.equal(await page.isVisible('#model-error'), false, await page.textContent('#model-error'));
  }
  // A hub download in flight: picking the built-in model cancels it.
  await page.evaluate(() => window.headscope.store.set({ hub: `${location.origin}/hub`, model: 'test/slow-gpt2' }));
  await page.waitForFunction(() => document.body.dataset.model === 'loading');
  await page.selectOption('#model-select', 'builtin');
  await page.waitForFunction(() => document.body.dataset.model === 'ready');
  assert.equal(await page.isVisible('#load-progress-row'), false);
  assert.ok(await workerAgrees(page));
  assert.deepEqual(problems, []);
  await page.close();
});

test('a link to a model on another host asks the viewer first; the worker refuses it unasked', async () => {
  const foreign = 'https://models.example/m/';
  const requests = [];
  await browser.context.route('https://models.example/**', (route) => {
    requests.push({ url: route.request().url(), headers: route.request().headers() });
    return route.fulfill({ status: 404, body: 'not here' });
  });
  try {
    const { page, problems } = await openPage(browser.context, `${site.server.url}#model=${encodeURIComponent(foreign)}`);
    await page.waitForSelector('#host-question:not([hidden])');
    assert.match(await page.textContent('#host-question'), /models\.example/);
    assert.match(await page.textContent('#status'), /models\.example/);
    // The worker itself refuses a host the viewer did not confirm.
    const refused = await page.evaluate((url) => window.headscope.app.client.call('loadModel', { spec: { kind: 'url', url } }).then(() => null, (e) => e.code), foreign);
    assert.equal(refused, 'not_allowed');
    assert.deepEqual(requests, []);
    // No: the built-in model loads instead.
    await page.click('#host-refuse');
    await waitReady(page);
    assert.equal(hashParams(page).get('model'), null);
    assert.deepEqual(requests, []);
    // The same link again, and yes: the host is asked, without a Referer.
    await page.evaluate((url) => { location.hash = `model=${encodeURIComponent(url)}`; }, foreign);
    await page.waitForSelector('#host-question:not([hidden])');
    await page.click('#host-confirm');
    await page.waitForFunction(() => /config\.json is missing/.test(document.getElementById('model-error').textContent));
    assert.ok(requests.length > 0);
    for (const r of requests) assert.equal(r.headers.referer, undefined, r.url);
    assert.match(await page.textContent('#model-info'), /built-in/);
    assert.ok(await workerAgrees(page));
    assert.deepEqual(problems.filter((p) => !/404|Failed to load resource/.test(p)), []);
    await page.close();
  } finally {
    await browser.context.unroute('https://models.example/**');
  }
});

test('a navigation made while the page writes the URL is not lost', async () => {
  const { page, problems } = await openPage(browser.context, site.server.url);
  await waitReady(page);
  for (let i = 0; i < 8; i++) {
    const text = `final ${i}`;
    await page.evaluate((t) => {
      location.hash = `text=${encodeURIComponent(t)}`;
      window.headscope.store.set({ view: 'model' });  // a write before hashchange fires
    }, text);
    await page.waitForFunction((t) => window.headscope.store.state.text === t, text);
    assert.equal(hashParams(page).get('text'), text);
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('weights that overflow float32 give a warning, not a blank', async () => {
  const dir = overflowingModel();
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizer()));
  const { page, problems } = await openPage(browser.context, site.server.url);
  await waitReady(page);
  const n = await runCount(page);
  await page.setInputFiles('#model-files', ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => path.join(dir, f)));
  await waitRun(page, n);
  assert.match(await page.textContent('#run-summary'), /overflowed: \d+ of \d+ attention weights and the loss are NaN or infinite/);
  await page.click('#tab-interventions');
  assert.doesNotMatch(await page.textContent('#view-interventions'), /no language-model head/);
  assert.deepEqual(problems, []);
  await page.close();
});

test('links that name what is not there: local files, a head the model lacks, an edit that does not fit', async () => {
  // model=local opened fresh: said plainly, and the built-in model is a click away.
  let { page, problems } = await openPage(browser.context, `${site.server.url}#model=local`);
  await page.waitForFunction(() => document.body.dataset.status === 'error');
  assert.match(await page.textContent('#model-error'), /local files, which a link cannot carry/);
  assert.equal(await page.textContent('#status'), 'no model loaded');
  await page.selectOption('#model-select', 'builtin');
  await waitReady(page);
  await page.close();

  // L999H999 is not counted among the ablated heads; a rejected edit is not counted.
  const edits = ['r1:L1H3:k0:a0.5:w', 'rm:L0H1:k0:a1', 'r1:L9H0:k0:a0.5:w'].join(';');
  ({ page, problems } = await openPage(browser.context, `${site.server.url}#ablate=L0H1,L999H999&edits=${encodeURIComponent(edits)}`));
  await waitReady(page);
  await page.waitForFunction(() => /with 2 edits/.test(document.getElementById('run-summary').textContent));
  const summary = await page.textContent('#run-summary');
  assert.match(summary, /with 2 edits .* with 1 head ablated/, summary);
  assert.equal(await page.textContent('#tab-interventions'), 'Interventions (1)');
  await page.click('#tab-interventions');
  assert.match(await page.textContent('#ablated-outside'), /L999H999 is not a head of this model/);
  assert.deepEqual(problems, []);
  await page.close();
});

test('a folder holding two models is refused, naming both, not mixed', async () => {
  const root = tempDir('headscope-two-models-');
  writeModel(path.join(root, 'first'), 'gpt2');
  writeModel(path.join(root, 'second'), 'gpt_neox');
  const { page, problems } = await openPage(browser.context, site.server.url);
  await waitReady(page);
  await page.setInputFiles('#model-folder', root);
  await page.waitForFunction(() => /hold 2 models/.test(document.getElementById('model-error').textContent));
  const message = await page.textContent('#model-error');
  assert.match(message, /first\//);
  assert.match(message, /second\//);
  assert.match(await page.textContent('#model-info'), /built-in/);
  // One model's folder inside it loads.
  const n = await runCount(page);
  await page.setInputFiles('#model-folder', path.join(root, 'second'));
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('gpt_neox'));
  await waitRun(page, n);
  assert.deepEqual(problems, []);
  await page.close();
});

test('Cancel stops a long computation: the worker is replaced, the model loaded again, and the page goes on', async () => {
  const { page, problems } = await openPage(browser.context, site.server.url);
  await waitReady(page);
  // Pruning curves over 100 000 random orders: far longer than the test waits.
  const outcome = page.evaluate(() => window.headscope.app.compute('pruning', { ids: window.headscope.store.state.run.ids, nRandom: 100000 })
    .then(() => 'finished', (e) => e.code));
  await page.waitForSelector('#load-progress-row:not([hidden])');
  assert.match(await page.textContent('#load-progress-text'), /^computing pruning curve… \d+%$/);
  await page.click('#load-cancel');
  assert.equal(await outcome, 'cancelled');
  await waitReady(page);
  assert.equal(await page.isVisible('#load-progress-row'), false);
  assert.ok(await workerAgrees(page));
  const curve = await page.evaluate(() => window.headscope.app.compute('pruning', { ids: window.headscope.store.state.run.ids, nRandom: 2 }));
  assert.equal(curve.randomLoss.length, 2 * curve.nRemoved.length);
  assert.deepEqual(problems, []);
  await page.close();
});
