// The page -> worker -> wasm core -> page pipe, in headless Chromium: the
// singular values drawn on the page must be the true ones (5, 3, 1), which
// only happens if the module loaded in the worker and computed them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, openPage, startServer } from './harness.mjs';

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

test('the page draws the singular values computed by the wasm core in the worker', async () => {
  const { page, problems } = await openPage(browser.context, server.url);
  await page.waitForFunction(() => document.body.dataset.status !== 'loading', null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => document.body.dataset.status), 'ready', await page.textContent('#status'));
  const values = JSON.parse(await page.getAttribute('#singular-values', 'data-values'));
  assert.equal(values.length, 3);
  [5, 3, 1].forEach((expected, i) => assert.ok(Math.abs(values[i] - expected) < 1e-5, `value ${i}: ${values[i]}`));
  const drawn = await page.$$eval('#singular-values li', (items) => items.map((item) => item.textContent));
  assert.deepEqual(drawn, ['5.0000', '3.0000', '1.0000']);
  assert.deepEqual(problems, []);
});
