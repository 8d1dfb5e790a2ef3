// Hostile input stays data: a tokenizer whose vocabulary is markup, user text
// that is markup, and the exports of both. If any of it ran, window.__pwned
// would be set; if any of it became an element, the counts below change.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { openPage } from './harness.mjs';
import { exportFile, HOSTILE_TOKENS, openSite, screenshot, waitReady } from './fixtures.mjs';

const { site, browser } = await openSite();

// Elements that markup in a token would create.
const foreignElements = (page) => page.evaluate(() => ({
  img: document.querySelectorAll('img').length,
  script: [...document.querySelectorAll('script')].filter((s) => !/\/dist\/(boot|main)\.js$/.test(s.src)).length,
  iframe: document.querySelectorAll('iframe').length,
  svgInTokens: document.querySelectorAll('#tokens svg, #values-table svg, #heatmap-tooltip svg').length,
  pwned: window.__pwned ?? null,
}));

test('a tokenizer whose tokens are markup renders them as text everywhere', async () => {
  const text = HOSTILE_TOKENS.join(' ');
  const url = `${site.server.url}#${new URLSearchParams({ hub: '/hub', model: 'test/hostile', text, view: 'head', head: 'L1H1' })}`;
  const { page, problems } = await openPage(browser.context, url);
  await page.setViewportSize({ width: 1280, height: 800 });
  await waitReady(page);
  const chips = await page.$$eval('#tokens .token', (t) => t.map((x) => x.textContent));
  assert.deepEqual(chips, ['<|endoftext|>', ...HOSTILE_TOKENS]);
  // Line view labels (text nodes in SVG), the values table and the tooltip.
  const lineLabels = await page.$$eval('#lines-view text.line-token[data-side=q]', (t) => t.map((x) => x.textContent));
  assert.equal(lineLabels.length, HOSTILE_TOKENS.length + 1);
  assert.ok(lineLabels.some((l) => l.startsWith('<img/src=x')), lineLabels.join(' | '));
  await page.click('#heatmap-figure details summary');
  await page.waitForFunction(() => document.querySelectorAll('#values-table tbody th').length > 0);  // built on the toggle event
  const headers = await page.$$eval('#values-table tbody th', (t) => t.map((x) => x.textContent));
  assert.deepEqual(headers.slice(1).map((h) => h.replace(/^\d+ /, '')), HOSTILE_TOKENS);
  const box = await page.locator('#heatmap').boundingBox();
  const d = await page.$eval('#heatmap', (c) => ({ left: Number(c.dataset.left), top: Number(c.dataset.top), cell: Number(c.dataset.cell) }));
  await page.mouse.move(box.x + d.left + 1.5 * d.cell, box.y + d.top + 2.5 * d.cell);
  await page.waitForSelector('#heatmap-tooltip:not([hidden])');
  assert.match(await page.textContent('#heatmap-tooltip'), /<script>window\.__pwned=2<\/script>.*<img\/src=x/);
  await screenshot(page, 'hostile-tokens');
  assert.deepEqual(await foreignElements(page), { img: 1, script: 0, iframe: 0, svgInTokens: 0, pwned: null }, 'one <img>: the logo');

  // Exports: the SVG is well-formed and its texts are the tokens, verbatim.
  const svg = (await exportFile(page, '#lines-figure', 'svg')).bytes.toString('utf8');
  const parsed = await page.evaluate((source) => {
    const doc = new DOMParser().parseFromString(source, 'image/svg+xml');
    return {
      error: doc.querySelector('parsererror')?.textContent ?? null,
      elements: [...new Set([...doc.querySelectorAll('*')].map((e) => e.localName))].sort(),
      texts: [...doc.querySelectorAll('text')].map((t) => t.textContent),
    };
  }, svg);
  assert.equal(parsed.error, null);
  assert.deepEqual(parsed.elements, ['g', 'line', 'rect', 'svg', 'text', 'title']);
  for (const token of HOSTILE_TOKENS) assert.ok(parsed.texts.some((t) => token.startsWith(t.replace(/…$/, ''))), token);
  // CSV: a token that a spreadsheet would run as a formula is defused.
  const csv = (await exportFile(page, '#heatmap-figure', 'csv')).bytes.toString('utf8');
  assert.ok(csv.includes(`"'=HYPERLINK(""http://evil.example"")"`), 'formula token quoted and prefixed');
  assert.ok(!/(^|,)=HYPERLINK/m.test(csv));
  // The JSON keeps the exact token text.
  const json = JSON.parse((await exportFile(page, '#heatmap-figure', 'json')).bytes);
  assert.deepEqual(json.tokens.slice(1), HOSTILE_TOKENS);
  assert.deepEqual(await foreignElements(page), { img: 1, script: 0, iframe: 0, svgInTokens: 0, pwned: null });
  assert.deepEqual(problems, []);
  await page.close();
});

test('user text and link parameters that are markup stay text', async () => {
  const text = '<img src=x onerror=window.__pwned=5> <script>window.__pwned=6</script> "><svg onload=window.__pwned=7>';
  const url = `${site.server.url}#${new URLSearchParams({ hub: '/hub', model: 'test/tiny-gpt2', text, ablate: 'L0H1' })}&view=<img/src=x/onerror=window.__pwned=8>`;
  const { page, problems } = await openPage(browser.context, url);
  await waitReady(page);
  assert.equal(await page.inputValue('#text-input'), text);
  assert.match(await page.textContent('#toast'), /ignored view="<img\/src=x\/onerror=window.__pwned=8>"/);
  // Type more markup.
  await page.fill('#text-input', `${text} <img src=x onerror=window.__pwned=9>`);
  await page.waitForFunction(() => document.querySelectorAll('#tokens .token').length > 20 && document.body.dataset.status === 'ready');
  // Open the embed dialog: the generated code is text in a textarea.
  await page.click('#open-embed');
  const code = await page.inputValue('#embed-iframe-code');
  assert.ok(!code.includes('<img'), 'markup in the state is escaped in the embed code');
  assert.ok(code.includes('%3Cimg'), code);
  assert.deepEqual(await foreignElements(page), { img: 1, script: 0, iframe: 0, svgInTokens: 0, pwned: null });
  assert.deepEqual(problems, []);
  await page.close();
});

test('the Content-Security-Policy is in force: inline script does not run', async () => {
  const { page, problems } = await openPage(browser.context, `${site.server.url}#hub=/hub&model=test/tiny-gpt2`);
  await waitReady(page);
  // Even if markup reached the DOM, the policy would block inline handlers.
  await page.evaluate(() => {
    const div = document.createElement('div');
    div.innerHTML = '<img src="x" onerror="window.__pwned=10">';
    document.body.append(div);
  });
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__pwned ?? null), null);
  assert.ok(problems.some((p) => /Content Security Policy/.test(p)), 'the violation was reported');
  await page.close();
});

test('a hub access token stays in the tab\'s memory: not in the link or storage, and not sent to a test endpoint', async () => {
  const { page, problems } = await openPage(browser.context, `${site.server.url}#hub=/hub`);
  await waitReady(page);
  const before = site.server.requests.length;
  await page.fill('#hub-token', 'hf_browsertoken');
  await page.press('#hub-token', 'Enter');
  await page.fill('#model-input', 'test/neox');
  await page.click('#model-load');
  await page.waitForFunction(() => document.body.dataset.status === 'ready' && /neox/.test(document.getElementById('model-info').textContent));
  const hubRequests = site.server.requests.slice(before).filter((r) => r.url.startsWith('/hub/'));
  assert.ok(hubRequests.length > 0);
  // A hub endpoint other than huggingface.co never sees the token.
  assert.deepEqual(hubRequests.filter((r) => r.authorization), []);
  const traces = await page.evaluate(() => JSON.stringify({ hash: location.hash, local: { ...localStorage }, session: { ...sessionStorage }, title: document.title }));
  assert.doesNotMatch(traces, /hf_browsertoken/);
  // Nor in any link or other field of the page (share links, exports' names).
  const elsewhere = await page.evaluate(() => [...document.querySelectorAll('a[href], input, textarea')]
    .filter((e) => e.id !== 'hub-token').map((e) => e.href || e.value).join(' '));
  assert.doesNotMatch(elsewhere, /hf_browsertoken/);
  assert.deepEqual(problems, []);
  await page.close();
});
