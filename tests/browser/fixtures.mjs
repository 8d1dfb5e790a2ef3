// Model folders for the browser tests, built from the HF-oracle fixtures
// (tiny random models, vocab 128): a small WordPiece tokenizer.json over 128
// ids so the page can tokenize text for them, a hostile variant whose
// vocabulary holds markup, a corrupt safetensors file, and the folder
// layouts the page reads — a hub (<repo>/resolve/<revision>/<file>) and the
// built-in model folder (models/<name>/). Also runs the CLI for reference
// numbers.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';

import { repoRoot } from './harness.mjs';

export const fixturesDir = process.env.HEADSCOPE_FIXTURES || path.resolve(repoRoot, '..', 'shared', 'fixtures');
export const oracleDir = (name) => path.join(fixturesDir, 'hf-oracle', name);

// Markup that must stay text: if any of it ran, window.__pwned is set.
export const HOSTILE_TOKENS = [
  '<img/src=x/onerror=window.__pwned=1>',
  '<script>window.__pwned=2</script>',
  '"><svg/onload=window.__pwned=3>',
  '<iframe/src=javascript:window.parent.__pwned=4>',
  '=HYPERLINK("http://evil.example")',
];

const WORDS = `The When Later Although the a and to of in was he she it his her they that on with as at for is by from had were but not
this be went store gave drink Mary John Anna Peter met park handed ball later when quick brown fox jumps over lazy dog
near old mill although committee spent most long rainy afternoon arguing about budget new library town wanted years
finally approved just before lights out cat sat mat . , ! ? ; :`.split(/\s+/).filter(Boolean);

// A WordPiece tokenizer.json with exactly 128 ids: [UNK] 0, words, fillers,
// '<|endoftext|>' at 127 (the gpt2 fixture's bos_token_id).
export function tinyTokenizer({ hostile = false } = {}) {
  const vocab = { '[UNK]': 0 };
  const words = hostile ? [...HOSTILE_TOKENS, ...WORDS] : WORDS;
  for (const w of words) if (!(w in vocab) && Object.keys(vocab).length < 127) vocab[w] = Object.keys(vocab).length;
  for (let i = 0; Object.keys(vocab).length < 127; i++) vocab[`##x${i}`] = Object.keys(vocab).length;
  vocab['<|endoftext|>'] = 127;
  return {
    version: '1.0',
    added_tokens: [{ id: 127, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    // Hostile tokens hold punctuation: keep them whole.
    pre_tokenizer: { type: hostile ? 'WhitespaceSplit' : 'Whitespace' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

export function tempDir(prefix = 'headscope-browser-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Writes a model folder: config.json + model.safetensors from the oracle
// fixture `name`, plus a tokenizer unless tokenizer === null.
export function writeModel(dir, name = 'gpt2', { tokenizer = tinyTokenizer(), corrupt = false, config = (c) => c } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const configJson = config(JSON.parse(fs.readFileSync(path.join(oracleDir(name), 'config.json'), 'utf8')));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configJson, null, 2));
  const weights = fs.readFileSync(path.join(oracleDir(name), 'model.safetensors'));
  // Corrupt: the header claims more tensor bytes than the file holds.
  fs.writeFileSync(path.join(dir, 'model.safetensors'), corrupt ? weights.subarray(0, Math.floor(weights.length / 2)) : weights);
  if (tokenizer) fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  return dir;
}

// A hub-layout folder: repos {repoId: {fixture, tokenizer, corrupt}} under
// <root>/<repo>/resolve/main/.
export function makeHub(repos) {
  const root = tempDir('headscope-hub-');
  for (const [repo, options] of Object.entries(repos)) writeModel(path.join(root, repo, 'resolve', 'main'), options.fixture || 'gpt2', options);
  return root;
}

// The CLI runs under this node's wasm flags, so that it loads the same build
// of the core as this process and the page (wasm/features.mjs): ctest runs
// the browser tests with --experimental-wasm-relaxed-simd, as Chromium has
// relaxed SIMD.
const cliNode = [process.execPath, ...process.execArgv.filter((flag) => flag.startsWith('--experimental-wasm-')), '--no-experimental-fetch'];

// The reference numbers for a model folder and ids: the CLI's JSON output.
export function cliAttention(modelDir, ids) {
  const out = path.join(tempDir('headscope-cli-'), 'attn.json');
  execFileSync(cliNode[0], [...cliNode.slice(1), path.join(repoRoot, 'wasm', 'cli.mjs'), 'attn', modelDir, '--ids', ids.join(','), '--out', out], {
    env: { ...process.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

// The CLI's weight geometry (headscope metrics) for a model folder.
const metricsCache = new Map();
export function cliMetrics(modelDir, variant) {
  const key = `${modelDir}:${variant}`;
  if (!metricsCache.has(key)) {
    const out = path.join(tempDir('headscope-cli-'), 'metrics.json');
    execFileSync(cliNode[0], [...cliNode.slice(1), path.join(repoRoot, 'wasm', 'cli.mjs'), 'metrics', modelDir, `--${variant}`, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    metricsCache.set(key, JSON.parse(fs.readFileSync(out, 'utf8')));
  }
  return metricsCache.get(key);
}

export { worstMismatch } from '../node/support.mjs';

// The page and everything it reads, on one origin: public/ at '/', a hub
// layout at '/hub/' (repos below), the built-in model folder at '/models/'
// (present unless builtin is false), and `extra` mounts. Open pages with
// `#hub=/hub` to point the page's hub endpoint there.
export const HUB_REPOS = {
  'test/tiny-gpt2': {},
  'test/ids-gpt2': { tokenizer: null },
  'test/neox': { fixture: 'gpt_neox' },
  'test/corrupt': { corrupt: true },
  'test/hostile': { tokenizer: tinyTokenizer({ hostile: true }) },
  'test/slow-gpt2': {},
  'test/bert': { fixture: 'bert' },
  'test/unsupported': { config: (c) => ({ ...c, model_type: 't5', architectures: ['T5ForConditionalGeneration'] }) },
  // Configs that break the newer families' rules, on the LLaMA fixture's weights.
  'test/bad-rope': { fixture: 'llama', config: (c) => ({ ...c, rope_scaling: { rope_type: 'yarn', factor: 4 } }) },
  'test/bad-head-dim': { fixture: 'llama', config: (c) => ({ ...c, head_dim: 24 }) },
  'test/missing-norm': { fixture: 'llama', config: (c) => ({ ...c, model_type: 'qwen3', head_dim: 16 }) },
};

export async function startSite({ builtin = true, extra = {} } = {}) {
  const { publicDir, startServer } = await import('./harness.mjs');
  const { BUILTIN } = await import('../../web/shared/sources.js');
  const hub = makeHub(HUB_REPOS);
  const models = tempDir('headscope-models-');
  if (builtin) writeModel(path.join(models, path.basename(BUILTIN.path)), 'gpt2');
  const server = await startServer({ '/': publicDir, '/hub/': hub, '/models/': models, ...extra }, {
    // 'slow' repos trickle their weights at 40 kB/s (about 11 s for 450 kB).
    slow: (pathname) => (/slow.*\.safetensors$/.test(pathname) ? 40000 : 0),
  });
  return {
    server, hub, models,
    repoDir: (repo) => path.join(hub, repo, 'resolve', 'main'),
    builtinDir: path.join(models, path.basename(BUILTIN.path)),
  };
}

// The site and the browser a test file shares, started when the file loads
// and closed after its last test.
export async function openSite(options) {
  const { launchBrowser } = await import('./harness.mjs');
  const site = await startSite(options);
  const browser = await launchBrowser();
  after(async () => {
    await browser.close();
    await site.server.close();
  });
  return { site, browser };
}

// Waits until the page has a model and a finished run (body[data-status=ready]).
export async function waitReady(page, timeout = 30000) {
  await page.waitForFunction(() => document.body.dataset.status === 'ready', null, { timeout });
}

// Waits for the run counter to pass `after` (see web/boot/main.js).
export async function waitRun(page, after, timeout = 30000) {
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n && document.body.dataset.status === 'ready', after, { timeout });
}

export async function runCount(page) {
  return Number(await page.evaluate(() => document.body.dataset.runs || 0));
}

// Clicks an export button and returns the downloaded file's bytes and name.
export async function exportFile(page, scope, kind) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(`${scope} [data-export=${kind}]`)]);
  const file = await download.path();
  return { name: download.suggestedFilename(), bytes: fs.readFileSync(file) };
}

export const screenshotDir = path.join(path.dirname(new URL(import.meta.url).pathname), 'screenshots');
export async function screenshot(page, name, options = {}) {
  fs.mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), ...options });
}
