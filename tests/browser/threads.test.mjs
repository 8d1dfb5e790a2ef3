// Threads in the page: served cross-origin isolated (the headers web/serve.sh
// sends), the worker runs the threaded core on the machine's cores and the
// page says so; without the headers it runs the core without threads and
// says why. Both draw the same numbers: the built-in model's head view
// (pattern and weight spectra) is compared between the two.
import assert from 'node:assert/strict';
import os from 'node:os';
import { after, test } from 'node:test';

import { ISOLATION, launchBrowser, openPage, publicDir, startServer } from './harness.mjs';
import { exportFile, waitReady } from './fixtures.mjs';

const isolated = await startServer(publicDir, { headers: ISOLATION });
const plain = await startServer(publicDir);
const browser = await launchBrowser();
after(async () => {
  await browser.close();
  await isolated.close();
  await plain.close();
});

async function headView(server) {
  const { page, problems } = await openPage(browser.context, `${server.url}#view=head&head=L1H0`);
  await waitReady(page);
  await page.waitForFunction(() => document.getElementById('weights-status')?.dataset.ready, null, { timeout: 30000 });
  const pattern = JSON.parse((await exportFile(page, '#heatmap-figure', 'json')).bytes);
  const spectra = await page.$$eval('#head-spectra-numbers dt', (dts) => dts.map((dt) => [dt.textContent, dt.nextElementSibling.dataset.value]));
  const threads = await page.$$eval('#model-bar .fact', (facts) => facts.map((f) => [f.children[0].textContent, f.children[1].textContent]).find(([name]) => name === 'threads')?.[1]);
  const crossOriginIsolated = await page.evaluate(() => globalThis.crossOriginIsolated);
  assert.deepEqual(problems, []);
  await page.close();
  return { pattern, spectra, threads, crossOriginIsolated };
}

test('an isolated page runs the core on every core and draws the numbers of the page without threads', async () => {
  const withThreads = await headView(isolated);
  const without = await headView(plain);
  assert.equal(withThreads.crossOriginIsolated, true);
  assert.equal(without.crossOriginIsolated, false);
  const cores = Math.min(os.cpus().length, 8);
  assert.equal(withThreads.threads, cores > 1 ? String(cores) : '1 (the page is not cross-origin isolated)');
  assert.equal(without.threads, '1 (the page is not cross-origin isolated)');
  assert.ok(withThreads.pattern.pattern.length > 0);
  assert.deepEqual(withThreads.pattern.pattern, without.pattern.pattern);
  assert.ok(withThreads.spectra.length >= 4);
  assert.deepEqual(withThreads.spectra, without.spectra);
});
