// The Patching view: a link carries the experiment (both texts, the
// answers, what is patched) and the page's numbers equal the core's node API
// on the same model; path patching from the controls; messages for pairs
// that cannot be patched; the embed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { openPage } from './harness.mjs';
import { exportFile, openSite, screenshot, waitReady, worstMismatch } from './fixtures.mjs';
import { directorySource, loadHeadscope } from '../../wasm/node.mjs';

const { site, browser } = await openSite();
const core = await loadHeadscope();
const IOI = {
  text: 'When Mary and John went to the store, John gave a drink to',
  corrupt: 'When Mary and John went to the store, Mary gave a drink to',
  answer: ' Mary',
  wrong: ' John',
};
const link = (params, page = '') => `${site.server.url}${page}#${new URLSearchParams(params)}`;

test('a patching link runs the experiment; its numbers are the core\'s', async () => {
  const { page, problems } = await openPage(browser.context, link({ view: 'patching', ...IOI }));
  await page.setViewportSize({ width: 1280, height: 900 });
  await waitReady(page);
  await page.waitForSelector('#patch-summary[data-ready="heads"]', { timeout: 60000 });
  assert.equal(await page.inputValue('#patch-corrupt'), IOI.corrupt);
  assert.equal(await page.inputValue('#patch-answer'), IOI.answer);
  const json = JSON.parse((await exportFile(page, '#patch-figure', 'json')).bytes.toString());
  const s = core.createSession();
  await s.load(directorySource(site.builtinDir));
  const want = await s.patch(IOI.text, IOI.corrupt, { answer: IOI.answer, wrong: IOI.wrong });
  const worst = worstMismatch(json.value, Array.from(want.value));
  assert.ok(worst.maxError <= 1e-5, JSON.stringify(worst));
  assert.ok(Math.abs(json.clean_value - want.clean) <= 1e-6, `${json.clean_value} vs ${want.clean}`);
  assert.equal(json.answer, want.answerText);
  assert.match(await page.textContent('#patch-summary'), /clean .* corrupted/);
  await page.waitForFunction(() => /Heads .* = /.test(document.getElementById('patch-dla-note').textContent));
  await screenshot(page, 'patching-ioi');

  // Path patching to a receiver, from the controls: the link follows.
  await page.selectOption('#patch-target', 'path');
  await page.fill('#patch-receivers', 'L1H0:q');
  await page.click('#patch-run');
  await page.waitForSelector('#patch-summary[data-ready="path"]', { timeout: 60000 });
  const hash = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
  assert.equal(hash.get('patch'), 'path');
  assert.equal(hash.get('recv'), 'L1H0:q');
  const pathJson = JSON.parse((await exportFile(page, '#patch-figure', 'json')).bytes.toString());
  const wantPath = await s.pathPatch(IOI.text, IOI.corrupt, { answer: IOI.answer, wrong: IOI.wrong, receivers: ['L1H0:q'] });
  pathJson.value.forEach((v, i) => assert.ok(Number.isNaN(wantPath.value[i]) ? v === null : Math.abs(v - wantPath.value[i]) <= 1e-5, `sender ${i}: ${v} vs ${wantPath.value[i]}`));

  // A pair of unequal length: a message, and the page stays usable.
  await page.selectOption('#patch-target', 'heads');
  await page.fill('#patch-corrupt', 'When Mary and John and Alice went to the store, Mary gave a drink to');
  await page.click('#patch-run');
  await page.waitForFunction(() => document.getElementById('patch-summary').classList.contains('error'));
  assert.match(await page.textContent('#patch-summary'), /same token length/);
  await page.fill('#patch-answer', 'Mary and John');
  await page.fill('#patch-corrupt', IOI.corrupt);
  await page.click('#patch-run');
  await page.waitForFunction(() => /not one/.test(document.getElementById('patch-summary').textContent));
  s.dispose();
  assert.deepEqual(problems, []);
});

test('the IOI example button fills the experiment; the embed shows it without controls', async () => {
  const { page, problems } = await openPage(browser.context, link({ view: 'patching' }));
  await waitReady(page);
  await page.click('#patch-ioi');
  await page.waitForSelector('#patch-summary[data-ready="heads"]', { timeout: 60000 });
  const hash = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
  assert.equal(hash.get('corrupt'), IOI.corrupt);
  assert.equal(hash.get('answer'), IOI.answer);
  const embed = await openPage(browser.context, link({ view: 'patching', ...IOI }, 'embed.html'));
  await embed.page.waitForSelector('#patch-summary[data-ready="heads"]', { timeout: 60000 });
  assert.equal(await embed.page.$('#patch-run'), null);
  assert.deepEqual([...problems, ...embed.problems], []);
});
