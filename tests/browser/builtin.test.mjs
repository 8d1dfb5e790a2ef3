// The page as shipped: public/ served alone, so the explorer opens with the
// real built-in model (public/models/headscope-tiny, issue 7) and its default
// text. Also the page timings of issue 8, printed (they are benchmarks, not
// pass/fail): navigation → every pattern drawn, and a keystroke → patterns
// redrawn, from the page's own performance marks. Navigation is measured
// warm (a new page in the browser that has shown the page before: its
// renderer process and the code it compiled are at hand) and cold (a new,
// empty browser context per load: what a reader who follows a link meets).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launchBrowser, launchEmptyBrowser, openPage, publicDir, startServer } from './harness.mjs';
import { cliAttention, exportFile, screenshot, waitReady, waitRun, runCount, worstMismatch } from './fixtures.mjs';
import { EXAMPLES } from '../../web/state/models.js';

const card = JSON.parse(fs.readFileSync(path.join(publicDir, 'models', 'headscope-tiny', 'training.json'), 'utf8'));
const config = JSON.parse(fs.readFileSync(path.join(publicDir, 'models', 'headscope-tiny', 'config.json'), 'utf8'));

let server;
let browser;
before(async () => {
  server = await startServer(publicDir);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

test('the page opens with the built-in model and its default text, every head drawn', async () => {
  const { page, problems } = await openPage(browser.context, server.url);
  await page.setViewportSize({ width: 1280, height: 900 });
  await waitReady(page);
  assert.match(await page.textContent('#model-info'), /built-in/);
  assert.equal(await page.$$eval('#overview-grid .head-cell', (c) => c.length), config.n_layer * config.n_head);
  // The first run (which the worker starts before the page asks, see
  // web/boot/boot.js) is the default text's, with BOS, and its patterns are the
  // CLI's on the same files.
  assert.equal(await page.inputValue('#text-input'), EXAMPLES[0].text);
  const grid = JSON.parse((await exportFile(page, '#overview-grid', 'json')).bytes);
  assert.equal(grid.ids[0], config.bos_token_id);
  assert.equal(await page.$$eval('#tokens .token', (t) => t.length), grid.ids.length);
  const reference = cliAttention(path.join(publicDir, 'models', 'headscope-tiny'), grid.ids);
  const worst = worstMismatch(grid.patterns.flat(3), reference.patterns);
  assert.ok(worst.maxError <= 1e-6, `first run vs CLI: ${JSON.stringify(worst)}`);
  await screenshot(page, 'builtin-default');
  assert.deepEqual(problems, []);
  // One request for the .wasm (the worker's).
  assert.deepEqual(server.requests.filter((r) => r.url.endsWith('.wasm')).map((r) => r.status), [200]);
  await page.close();
});

// Navigation -> the first run drawn, in ms: the page's own mark
// (performance.now() and marks count from the navigation's start).
// Also the steps on the way, from the worker's marks (web/worker/worker.js)
// in the page's time: {drawn, steps: {name: ms}}.
async function firstDrawn(context) {
  const { page, problems } = await openPage(context, server.url);
  await waitReady(page);
  const { drawn, origin, dcl } = await page.evaluate(() => ({
    drawn: performance.getEntriesByName('headscope:patterns-drawn')[0]?.startTime,
    origin: performance.timeOrigin,
    dcl: performance.getEntriesByType('navigation')[0]?.domContentLoadedEventEnd,
  }));
  assert.ok(Number.isFinite(drawn), 'the page marks the first drawn run');
  const steps = { 'page parsed (DOMContentLoaded)': dcl };
  for (const worker of page.workers()) {
    const marks = await worker.evaluate(() => ({ origin: performance.timeOrigin, marks: performance.getEntriesByType('mark').map((m) => [m.name, m.startTime]) })).catch(() => null);
    for (const [name, t] of marks?.marks || []) steps[name.replace('headscope:worker-', 'worker: ')] = t + marks.origin - origin;
  }
  assert.deepEqual(problems, []);
  await page.close();
  return { drawn, steps };
}

test('page timings with the built-in model (printed)', async () => {
  // Warm and cold loads in turn, so that both meet the same load of the machine.
  const loads = [];
  const cold = [];
  const empty = await launchEmptyBrowser();
  const coldSteps = [];
  for (let i = 0; i < 7; i++) {
    loads.push((await firstDrawn(browser.context)).drawn);
    const context = await empty.newContext();
    const { drawn, steps } = await firstDrawn(context);
    cold.push(drawn);
    coldSteps.push(steps);
    await context.close();
  }
  await empty.close();
  const { page } = await openPage(browser.context, server.url);
  await waitReady(page);
  const keys = [];
  for (let i = 0; i < 9; i++) {
    const runs = await runCount(page);
    await page.focus('#text-input');
    await page.evaluate(() => {
      const input = document.getElementById('text-input');
      input.addEventListener('keydown', () => { window.__keyAt = performance.now(); }, { once: true, capture: true });
    });
    await page.keyboard.press('End');
    await page.keyboard.type(i % 2 ? 'a' : ' ');
    await waitRun(page, runs);
    keys.push(await page.evaluate(() => {
      const marks = performance.getEntriesByName('headscope:patterns-drawn');
      return marks[marks.length - 1].startTime - window.__keyAt;
    }));
  }
  await page.close();
  const spread = (v) => `median ${median(v).toFixed(0)} ms, ${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)} (${v.map((x) => x.toFixed(0)).join(', ')})`;
  console.log(`# page timings (built-in ${config.n_layer}x${config.n_head} model, headless Chromium): ` +
    `navigation -> every pattern drawn: warm ${spread(loads)}, cold (a new browser context a load) ${spread(cold)}; ` +
    `keystroke -> patterns redrawn: median ${median(keys).toFixed(1)} ms (${keys.map((x) => x.toFixed(1)).join(', ')})`);
  const names = Object.keys(coldSteps[0]);
  console.log(`# cold visit, median time from navigation of each step: ${names.map((n) => `${n} ${median(coldSteps.map((s) => s[n])).toFixed(0)} ms`).join(', ')}, patterns drawn ${median(cold).toFixed(0)} ms`);
  assert.ok(card.heads.length > 0);
});
