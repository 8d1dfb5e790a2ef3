// Issue 22's page number: the time from picking a model's local files to
// every head's pattern drawn, in headless Chromium (the page's own
// measure: performance marks), for the Qwen2.5-0.5B-shaped BF16 checkpoint
// of bench_bf16.mjs (run it first) with the built-in model's tokenizer
// (its ids are within Qwen's vocabulary). Prints `RESULT page.*` lines.
//
//   node tests/bench/page_load_local.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchBrowser, openPage, publicDir, startServer } from '../browser/harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = path.join(root, 'build', 'bench', 'qwen25-05b-bf16');
const tokenizer = path.join(publicDir, 'models', fs.readdirSync(path.join(publicDir, 'models'))[0], 'tokenizer.json');
const server = await startServer();
const browser = await launchBrowser();
try {
  const { page, problems } = await openPage(browser.context, server.url);
  await page.waitForFunction(() => document.body.dataset.status === 'ready', null, { timeout: 60000 });
  const runs = Number(await page.evaluate(() => document.body.dataset.runs || 0));
  const started = await page.evaluate(() => performance.now());
  await page.setInputFiles('#model-files', [path.join(dir, 'config.json'), path.join(dir, 'model.safetensors'), tokenizer]);
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n && document.body.dataset.status === 'ready'
    && /local files/.test(document.getElementById('model-info').textContent), runs, { timeout: 240000, polling: 100 });
  const result = await page.evaluate((t0) => {
    const marks = performance.getEntriesByName('headscope:patterns-drawn');
    return { drawn: marks[marks.length - 1].startTime - t0, tokens: document.querySelectorAll('#tokens .token').length,
      info: document.getElementById('model-info').textContent };
  }, started);
  console.log(`RESULT page.files_to_patterns_s ${(result.drawn / 1000).toFixed(2)}`);
  console.log(`RESULT page.tokens ${result.tokens}`);
  console.log(`# model info: ${result.info}`);
  if (problems.length) console.log(`# problems: ${problems.join('; ')}`);
} finally {
  await browser.close();
  await server.close();
}
