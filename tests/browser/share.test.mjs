// Sharing: "copy link" gives a URL that reproduces the view; embed.html in an
// <iframe> on another page shows the same view with the same numbers; the
// embed code the page generates works as pasted; <headscope-view> from one
// script tag renders and takes the height of its content.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { openPage } from './harness.mjs';
import { cliAttention, openSite, screenshot, tempDir, waitReady, worstMismatch } from './fixtures.mjs';

const pages = tempDir('headscope-host-');  // host pages for the embeds, served at /test/
const { site, browser } = await openSite({ extra: { '/test/': pages } });
await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: site.server.url.replace(/\/$/, '') });

const TEXT = 'When Mary and John went to the store , John gave a drink to Mary .';

function hostPage(name, body) {
  fs.writeFileSync(path.join(pages, name), `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>a blog</title></head><body><h1>A blog post</h1>${body}<p>after</p></body></html>`);
  return `${site.server.url}test/${name}`;
}

// The [T, T] pattern of a head from a page's store (the numbers it draws).
function storePattern(target, layer, head) {
  return target.evaluate(([l, h]) => {
    const run = window.headscope.store.state.run;
    const T = run.nTokens;
    const offset = (l * run.nHead + h) * T * T;
    return { ids: run.ids, pattern: Array.from(run.patterns.subarray(offset, offset + T * T)) };
  }, [layer, head]);
}

async function frameReady(frame) {
  await frame.waitForFunction(() => document.body.dataset.status === 'ready', null, { timeout: 30000 });
}

test('copy link: the copied URL reproduces the view in a new tab', async () => {
  const start = `${site.server.url}#${new URLSearchParams({ hub: '/hub', model: 'test/tiny-gpt2', text: TEXT })}`;
  const { page, problems } = await openPage(browser.context, start);
  await waitReady(page);
  await page.click('#overview-grid [data-head=L1H1]');
  await page.click('#head-ablate');
  await page.waitForFunction(() => document.getElementById('run-summary').textContent.includes('ablated'));
  await page.click('#copy-link');
  await page.waitForFunction(() => document.body.dataset.copiedLink);
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, await page.evaluate(() => document.body.dataset.copiedLink));
  assert.match(await page.textContent('#toast'), /link copied/);
  const params = new URLSearchParams(new URL(copied).hash.slice(1));
  assert.equal(params.get('head'), 'L1H1');
  assert.equal(params.get('view'), 'head');
  assert.equal(params.get('ablate'), 'L1H1');
  assert.equal(params.get('text'), TEXT);

  const second = await openPage(browser.context, copied);
  await waitReady(second.page);
  assert.equal(await second.page.getAttribute('#heatmap', 'data-head'), 'L1H1');
  assert.equal(await second.page.getAttribute('#run-summary', 'data-loss'), await page.getAttribute('#run-summary', 'data-loss'));
  assert.deepEqual(await storePattern(second.page, 1, 2), await storePattern(page, 1, 2));
  assert.deepEqual([...problems, ...second.problems], []);
  await second.page.close();
  await page.close();
});

test('embed.html in an iframe shows the head with the CLI\'s numbers', async () => {
  const state = new URLSearchParams({ hub: '/hub', model: 'test/tiny-gpt2', text: TEXT, head: 'L1H2', view: 'head' });
  const url = hostPage('iframe.html', `<iframe id="embed" src="/embed.html#${state}" width="900" height="700"></iframe>`);
  const { page, problems } = await openPage(browser.context, url);
  await page.setViewportSize({ width: 1000, height: 800 });
  const frame = page.frame({ url: /embed\.html/ });
  await frameReady(frame);
  assert.equal(await frame.getAttribute('#heatmap', 'data-head'), 'L1H2');
  assert.match(await frame.textContent('#embed-title'), /test\/tiny-gpt2 · L1H2 · loss \d\.\d{3} · “When Mary/);
  assert.equal(await frame.$$eval('#lines-view text.line-token[data-side=q]', (t) => t.length), 17, 'BOS + 16 words');
  assert.equal(await frame.isVisible('.export-bar'), false, 'no chrome in the embed');
  const back = await frame.getAttribute('a.back', 'href');
  assert.match(back, /\/index\.html#.*head=L1H2/);
  const shown = await storePattern(frame, 1, 2);
  const reference = cliAttention(site.repoDir('test/tiny-gpt2'), shown.ids);
  const T = shown.ids.length;
  const expected = reference.patterns.slice((1 * 4 + 2) * T * T, (1 * 4 + 3) * T * T);
  const worst = worstMismatch(shown.pattern, expected);
  assert.ok(worst.maxError <= 1e-6, JSON.stringify(worst));
  await screenshot(page, 'embed-iframe');
  assert.deepEqual(problems, []);
  await page.close();
});

test('the generated embed code and <headscope-view> work as pasted, sized to their content', async () => {
  const start = `${site.server.url}#${new URLSearchParams({ hub: '/hub', model: 'test/tiny-gpt2', text: TEXT, view: 'overview' })}`;
  const { page, problems } = await openPage(browser.context, start);
  await waitReady(page);
  await page.click('#open-embed');
  const iframeCode = await page.inputValue('#embed-iframe-code');
  const elementCode = await page.inputValue('#embed-element-code');
  await screenshot(page, 'embed-dialog');
  assert.match(iframeCode, /^<iframe src="http:\/\/127\.0\.0\.1:\d+\/embed\.html#[^"]+"/);
  assert.match(elementCode, /^<script type="module" src="http:\/\/127\.0\.0\.1:\d+\/dist\/element\.js"><\/script>\n<headscope-view state="[^"]+"><\/headscope-view>$/);

  const host = await openPage(browser.context, hostPage('pasted.html', `${iframeCode}<hr>${elementCode}`));
  await host.page.setViewportSize({ width: 1100, height: 900 });
  const frames = () => host.page.frames().filter((f) => /embed\.html/.test(f.url()));
  await host.page.waitForFunction(() => document.querySelector('headscope-view')?.shadowRoot?.querySelector('iframe'));
  // Both frames load lazily: bring the second into view.
  await host.page.evaluate(() => document.querySelector('headscope-view').scrollIntoView());
  await host.page.waitForFunction(() => true);
  for (let i = 0; i < 50 && host.page.frames().filter((f) => /embed\.html/.test(f.url())).length < 2; i++) await host.page.waitForTimeout(100);
  assert.equal(frames().length, 2);
  for (const frame of frames()) {
    await frameReady(frame).catch(async (e) => {
      console.log(frame.url(), await frame.evaluate(() => [document.body.dataset.status, document.body.textContent.slice(0, 300)]));
      throw e;
    });
    assert.equal(await frame.$$eval('.head-cell', (c) => c.length), 8);
  }
  // The element's frame takes the height the embed reports (not its default 480 px).
  await host.page.waitForFunction(() => {
    const frame = document.querySelector('headscope-view').shadowRoot.querySelector('iframe');
    return frame.style.height !== '480px';
  });
  const { reported, height } = await host.page.evaluate(() => {
    const frame = document.querySelector('headscope-view').shadowRoot.querySelector('iframe');
    return { height: frame.getBoundingClientRect().height, reported: parseFloat(frame.style.height) };
  });
  assert.ok(height === reported && height > 200 && height < 900, `element height ${height}`);
  await screenshot(host.page, 'embed-element', { fullPage: true });
  assert.deepEqual([...problems, ...host.problems], []);
  await host.page.close();
  await page.close();
});

test('attributes of <headscope-view> override its state and re-render', async () => {
  const url = hostPage('element.html', `<script type="module" src="/dist/element.js"></script>
    <headscope-view id="v" state="hub=/hub&model=test/tiny-gpt2&view=head" text="the cat sat on the mat" head="L0H3"></headscope-view>`);
  const { page, problems } = await openPage(browser.context, url);
  await page.waitForFunction(() => document.getElementById('v').shadowRoot?.querySelector('iframe'));
  const frameOf = () => page.frames().find((f) => /embed\.html/.test(f.url()));
  for (let i = 0; i < 100 && !frameOf(); i++) await page.waitForTimeout(100);
  await frameReady(frameOf());
  assert.equal(await frameOf().getAttribute('#heatmap', 'data-head'), 'L0H3');
  assert.equal(await frameOf().$$eval('#lines-view text.line-token[data-side=q]', (t) => t.length), 7);
  await page.evaluate(() => document.getElementById('v').setAttribute('head', 'L1H0'));
  await page.waitForFunction(() => /head=L1H0/.test(document.getElementById('v').shadowRoot.querySelector('iframe').src));
  await page.waitForTimeout(200);
  for (let i = 0; i < 100 && !frameOf(); i++) await page.waitForTimeout(100);
  await frameReady(frameOf());
  assert.equal(await frameOf().getAttribute('#heatmap', 'data-head'), 'L1H0');
  assert.deepEqual(problems, []);
  await page.close();
});

test('embed.html with the model view shows the redundancy matrix and the composition graph, with the loss in its title', async () => {
  const state = new URLSearchParams({ hub: '/hub', model: 'test/tiny-gpt2', text: TEXT, view: 'model', ablate: 'L0H1' });
  const { page, problems } = await openPage(browser.context, `${site.server.url}embed.html#${state}`);
  await waitReady(page);
  await page.waitForSelector('#composition-graph svg');
  assert.equal(await page.isVisible('#redundancy-figure canvas.matrix'), true);
  assert.match(await page.textContent('#embed-title'), /test\/tiny-gpt2 · ablated L0H1 · loss \d\.\d{3} → \d\.\d{3} · “When Mary/);
  assert.ok(await page.$$eval('#composition-graph path', (p) => p.length) > 0);
  assert.deepEqual(problems, []);
  await page.close();
});
