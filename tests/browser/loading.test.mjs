// Loading models into the page: the built-in folder (present and absent), a
// local hub-layout server, a same-origin URL, local files (picker, folder,
// drop), corrupt and unsupported files, network failures, download progress
// and cancel, and the Cache API. After every failure the page must show a
// clear message and stay usable.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';

import { openPage } from './harness.mjs';
import { cliAttention, cliMetrics, exportFile, openSite, runCount, screenshot, startSite, waitReady, waitRun, worstMismatch } from './fixtures.mjs';

const { site, browser } = await openSite();
const bare = await startSite({ builtin: false });  // a site without the built-in model
after(() => bare.server.close());

const hashParams = (page) => new URLSearchParams(new URL(page.url()).hash.slice(1));

async function loadRepo(page, repo) {
  await page.fill('#model-input', repo);
  await page.click('#model-load');
}

async function headPattern(page) {
  return JSON.parse((await exportFile(page, '#overview-grid', 'json')).bytes);
}

test('the built-in model loads by default', async () => {
  const { page, problems } = await openPage(browser.context, site.server.url);
  await waitReady(page);
  assert.match(await page.textContent('#model-info'), /built-in/);
  assert.equal(await page.$$eval('#overview-grid .head-cell', (c) => c.length), 8);
  assert.equal(hashParams(page).get('model'), null, 'the default is not written to the URL');
  assert.deepEqual(problems, []);
  await page.close();
});

test('without a built-in model the page says so and loads another model', async () => {
  const { page, problems } = await openPage(browser.context, `${bare.server.url}#hub=/hub`);
  await page.waitForFunction(() => document.body.dataset.status === 'unavailable');
  assert.match(await page.textContent('#model-error'), /built-in model not yet available/);
  assert.equal(await page.textContent('#status'), 'built-in model not yet available');
  await page.setViewportSize({ width: 1280, height: 800 });
  await screenshot(page, 'builtin-unavailable');
  await loadRepo(page, 'test/tiny-gpt2');
  await waitReady(page);
  assert.equal(await page.isVisible('#model-error'), false);
  assert.equal(hashParams(page).get('model'), 'test/tiny-gpt2');
  assert.deepEqual(problems, []);
  await page.close();
});

test('the curated list names sizes; a hub repo loads from a hub-layout server and is cached', async () => {
  const { page, problems } = await openPage(browser.context, `${site.server.url}#hub=/hub`);
  await waitReady(page);
  const options = await page.$$eval('#model-select option', (o) => o.map((x) => x.textContent));
  for (const [repo, size] of [['gpt2', '548 MB'], ['distilgpt2', '353 MB'], ['EleutherAI/pythia-70m', '166 MB'], ['roneneldan/TinyStories-1M', '15 MB'], ['HuggingFaceTB/SmolLM-135M', '269 MB'], ['bert-base-uncased', '440 MB'], ['facebook/opt-125m', '251 MB']]) {
    assert.ok(options.some((o) => o.startsWith(repo) && o.includes(`≈${size}`)), `${repo} ≈${size} in ${options}`);
  }
  const weightUrl = '/hub/test/neox/resolve/main/model.safetensors';
  const fetched = () => site.server.requests.filter((r) => r.url === weightUrl);
  assert.equal(fetched().length, 0);
  await loadRepo(page, 'test/neox');
  await waitReady(page);
  assert.match(await page.textContent('#model-info'), /gpt_neox/);
  // Ranged: the 8-byte prefix, the header, then the weights.
  const requests = fetched().length;
  assert.ok(requests >= 3 && fetched().every((r) => r.status === 206), JSON.stringify(fetched()));
  // The cache is filled as the download streams; wait for every range.
  await page.waitForFunction(async (n) => {
    const keys = await (await caches.open('headscope-models-v2')).keys();
    return keys.filter((k) => k.url.includes('/test/neox/resolve/main/model.safetensors?headscope-range=')).length === n;
  }, requests);
  // A second visit loads from the cache: no new download of the weights.
  const second = await openPage(browser.context, `${site.server.url}#hub=/hub&model=test/neox`);
  await waitReady(second.page);
  assert.equal(fetched().length, requests, 'weights came from the Cache API');
  assert.match(await second.page.textContent('#status'), /browser cache/);
  // Same numbers either way.
  const first = await headPattern(page);
  const cached = await headPattern(second.page);
  assert.deepEqual(cached.patterns, first.patterns);
  assert.deepEqual([...problems, ...second.problems], []);
  await second.page.close();
  await page.close();
});

test('download progress shows bytes, speed and time left; cancel keeps the previous model', async () => {
  const { page, problems } = await openPage(browser.context, `${site.server.url}#hub=/hub`);
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  await loadRepo(page, 'test/slow-gpt2');
  await page.waitForFunction(() => /kB of .* · .*\/s · .* left/.test(document.getElementById('load-progress-text').textContent), null, { timeout: 15000 });
  const text = await page.textContent('#load-progress-text');
  assert.match(text, /^model\.safetensors · [\d.]+ kB of 449\.5 kB · [\d.]+ kB\/s · (\d+ min )?\d+ s left$/);
  const value = await page.$eval('#load-progress', (p) => [p.value, p.max]);
  assert.ok(value[0] > 0 && value[0] < value[1], JSON.stringify(value));
  await screenshot(page, 'download-progress');
  // Text typed during the download is run once the load ends (here: cancelled).
  await page.fill('#text-input', 'the cat sat on');
  await page.click('#load-cancel');
  await page.waitForFunction(() => document.getElementById('model-error').textContent.includes('download cancelled'));
  assert.equal(await page.isVisible('#load-progress-row'), false);
  // The built-in model is still there and the URL says so.
  assert.equal(hashParams(page).get('model'), null);
  assert.match(await page.textContent('#model-info'), /built-in/);
  await page.waitForFunction(() => document.querySelectorAll('#tokens .token').length === 5 && document.body.dataset.status === 'ready');
  const n = await runCount(page);
  await page.fill('#text-input', 'the dog sat');
  await waitRun(page, n);
  assert.equal(await page.$$eval('#tokens .token', (t) => t.length), 4);
  // The cancelled download did not land in the cache.
  // (The 8-byte prefix and the header are complete ranges and may be kept.)
  const cachedSlow = await page.evaluate(async () => (await (await caches.open('headscope-models-v2')).keys())
    .map((k) => /slow-gpt2\/resolve\/main\/model\.safetensors\?headscope-range=(\d+)-(\d+)$/.exec(k.url)).filter(Boolean).map((m) => Number(m[2]) - Number(m[1]) + 1));
  assert.ok(cachedSlow.every((bytes) => bytes < 10000), `cached ranges of the cancelled download: ${cachedSlow}`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('local files: the picker, a folder and a drop load the model; numbers equal the CLI\'s', async () => {
  const dir = site.repoDir('test/tiny-gpt2');
  const files = ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => path.join(dir, f));
  const { page, problems } = await openPage(browser.context, `${site.server.url}#text=the+cat+sat`);
  await waitReady(page);
  let n = await runCount(page);
  await page.setInputFiles('#model-files', files);
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('local files'));
  await waitRun(page, n);
  assert.equal(hashParams(page).get('model'), 'local');
  const shown = await headPattern(page);
  const reference = cliAttention(dir, shown.ids);
  const worst = worstMismatch(shown.patterns.flat(3), reference.patterns);
  assert.ok(worst.maxError <= 1e-6, JSON.stringify(worst));

  // A folder (webkitdirectory input) with the neox model.
  n = await runCount(page);
  await page.setInputFiles('#model-folder', site.repoDir('test/neox'));
  await page.waitForFunction(() => document.getElementById('model-info').textContent.includes('gpt_neox'));
  await waitRun(page, n);

  // A drop of File objects on the page.
  n = await runCount(page);
  const payload = files.map((f) => ({ name: path.basename(f), data: fs.readFileSync(f).toString('base64') }));
  await page.evaluate((items) => {
    const transfer = new DataTransfer();
    for (const { name, data } of items) transfer.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], name));
    window.dispatchEvent(new DragEvent('dragenter', { dataTransfer: transfer, bubbles: true }));
    window.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, payload);
  await page.waitForFunction(() => /family\s*gpt2/.test(document.getElementById('model-info').textContent));
  await waitRun(page, n);
  assert.equal(await page.isVisible('.drop-overlay'), false);
  assert.deepEqual(problems, []);
  await page.close();
});

test('a corrupt file, an unsupported model and network failures show clear errors; the page stays usable', async () => {
  const { page, problems } = await openPage(browser.context, `${bare.server.url}#hub=/hub`);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.waitForFunction(() => document.body.dataset.status === 'unavailable');

  // Corrupt weights from the hub: the core's message names the problem.
  await loadRepo(page, 'test/corrupt');
  await page.waitForFunction(() => document.body.dataset.model === 'error');
  assert.match(await page.textContent('#model-error'), /model\.safetensors: file is truncated/);
  // A failed load leaves nothing of that folder in the cache (a fixed file must not be shadowed).
  await page.waitForFunction(async () => !(await (await caches.open('headscope-models-v2')).keys()).some((k) => k.url.includes('/test/corrupt/')));
  await screenshot(page, 'error-corrupt');
  // Then a good model loads in the same page.
  await loadRepo(page, 'test/tiny-gpt2');
  await waitReady(page);
  assert.equal(await page.isVisible('#model-error'), false);

  // Corrupt local files: error, and the loaded model stays.
  const corrupt = site.repoDir('test/corrupt');
  await page.setInputFiles('#model-files', ['config.json', 'model.safetensors'].map((f) => path.join(corrupt, f)));
  await page.waitForFunction(() => document.getElementById('model-error').textContent.includes('truncated'));
  assert.equal(hashParams(page).get('model'), 'test/tiny-gpt2', 'the URL is back on the model still loaded');
  assert.match(await page.textContent('#model-info'), /test\/tiny-gpt2/);

  const expectError = async (action, pattern) => {
    await action();
    await page.waitForFunction((source) => new RegExp(source).test(document.getElementById('model-error').textContent), pattern.source, { timeout: 15000 });
    assert.equal(await page.getAttribute('body', 'data-model'), 'ready', 'the previous model is still loaded');
  };
  await expectError(() => loadRepo(page, 'test/unsupported'), /model_type' is "t5", which is not supported/);
  await expectError(() => loadRepo(page, 'test/bad-rope'), /unsupported rope type "yarn"/);
  await expectError(() => loadRepo(page, 'test/bad-head-dim'), /q_proj.*expected/);
  await expectError(() => loadRepo(page, 'test/missing-norm'), /q_norm/);
  await expectError(() => loadRepo(page, 'test/nothing-here'), /config\.json is missing/);
  await expectError(() => loadRepo(page, 'javascript:alert(1)'), /neither a Hugging Face repo id .* nor an https: URL/);
  await expectError(() => loadRepo(page, 'http://example.com/model/'), /neither a Hugging Face repo id .* nor an https: URL/);
  // Nothing listens on port 9 of the loopback interface: a network error.
  await page.goto(`${bare.server.url}#hub=http://127.0.0.1:9&model=test/tiny-gpt2`);
  await page.waitForFunction(() => /network error/.test(document.getElementById('model-error').textContent), null, { timeout: 15000 });
  // A same-origin URL is an accepted model source.
  await page.goto(`${bare.server.url}#model=${encodeURIComponent(`${bare.server.url}hub/test/tiny-gpt2/resolve/main/`)}`);
  await waitReady(page);
  assert.deepEqual(problems.filter((p) => !/Failed to load resource/.test(p)), []);
  await page.close();
});

test('link parameters that could send requests elsewhere are refused', async () => {
  const { page } = await openPage(browser.context, `${site.server.url}#model=${encodeURIComponent('http://evil.example/m/')}&hub=${encodeURIComponent('https://evil.example')}&view=nope&head=L99`);
  await waitReady(page);
  assert.match(await page.textContent('#toast'), /ignored model=.*ignored view=.*ignored head=.*ignored hub=/);
  assert.match(await page.textContent('#model-info'), /built-in/);
  const foreign = site.server.requests.filter((r) => r.url.includes('evil'));
  assert.deepEqual(foreign, []);
  await page.close();
});

test('an abort of the wasm core (e.g. out of memory) restarts the worker, reloads the model and says so', async () => {
  const { page, problems } = await openPage(browser.context, `${site.server.url}#hub=/hub&model=test/tiny-gpt2&text=the+cat+sat`);
  await waitReady(page);
  const fatal = await page.evaluate(() => window.headscope.app.client.call('simulateAbort').catch((e) => e.fatal));
  assert.equal(fatal, true);
  const n = await runCount(page);
  // The next request meets the dead module: the page recovers by itself.
  await page.fill('#text-input', 'the dog sat on the mat');
  await page.waitForFunction(() => /the engine stopped \(.*Aborted\(simulated for a test\).*\); it was restarted/.test(document.getElementById('model-error').textContent));
  await waitRun(page, n);
  assert.equal(await page.$$eval('#tokens .token', (t) => t.length), 7);
  assert.equal(await page.evaluate(() => window.headscope.app.restarts), 1);
  assert.match(await page.textContent('#model-info'), /test\/tiny-gpt2/);
  assert.deepEqual(problems, []);
  await page.close();
});

test('attention weights only: the box reloads the model with just its attention tensors; geometry works, text is not run', async () => {
  const { page, problems } = await openPage(browser.context, `${site.server.url}#hub=/hub&model=test/neox`);
  await waitReady(page);
  const weightUrl = '/hub/test/neox/resolve/main/model.safetensors';
  const before = site.server.requests.length;
  await page.check('#model-attention-only');
  await page.waitForFunction(() => document.getElementById('attention-only-badge'));
  await waitReady(page);
  assert.equal(hashParams(page).get('parts'), 'attention');
  // Only the attention tensors (and the blocks' norms) came over: far less
  // than the whole file's tensor bytes.
  const ranges = site.server.requests.slice(before).filter((r) => r.url === weightUrl);
  const fileBytes = fs.statSync(path.join(site.repoDir('test/neox'), 'model.safetensors')).size;
  const transferred = ranges.reduce((sum, r) => sum + r.bytes, 0);
  assert.ok(ranges.every((r) => r.status === 206), JSON.stringify(ranges));
  assert.ok(transferred < 0.6 * fileBytes, `${transferred} of ${fileBytes} bytes`);
  assert.match(await page.textContent('#status'), /attention weights only/);
  // The previous model's tokens are gone; the text panel says why nothing runs.
  assert.equal(await page.$$eval('#tokens .token', (t) => t.length), 0);
  assert.match(await page.textContent('#text-panel'), /not run: the model has its attention weights only/);
  // The model view's geometry is there, with the same numbers as the CLI's full load.
  await page.click('#tab-model');
  await page.waitForFunction(() => document.getElementById('model-status')?.dataset.ready === 'processed', null, { timeout: 30000 });
  const red = JSON.parse((await exportFile(page, '#redundancy-figure', 'json')).bytes);
  const cli = cliMetrics(site.repoDir('test/neox'), 'processed');
  red.values.flat().forEach((x, k) => assert.ok(Math.abs(x - cli.redundancy_O[k]) < 1e-9, `O overlap ${k}: ${x} vs ${cli.redundancy_O[k]}`));
  // Without patterns, a weight metric fills the overview's cells, values inside.
  await page.click('#tab-overview');
  await page.selectOption('#metric-select', 'ov_erank');
  await page.waitForFunction(() => document.querySelector('#overview-grid .head-grid')?.classList.contains('metric-fill'));
  const caption = await page.textContent('#overview-grid .head-cell .cell-caption');
  assert.match(caption, /^L0H0\d+\.\d+$/);
  // Typing does not run anything, and no error appears.
  await page.fill('#text-input', 'more text');
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => document.body.dataset.status), 'ready');
  // A link carries the choice.
  const second = await openPage(browser.context, page.url());
  await second.page.waitForFunction(() => document.getElementById('attention-only-badge'));
  assert.equal(await second.page.isChecked('#model-attention-only'), true);
  // Unticking loads the whole model again, and text runs.
  await page.uncheck('#model-attention-only');
  await page.waitForFunction(() => !document.getElementById('attention-only-badge') && document.body.dataset.status === 'ready' && document.querySelectorAll('#tokens .token').length > 0);
  assert.deepEqual([...problems, ...second.problems], []);
  await second.page.close();
  await page.close();
});
