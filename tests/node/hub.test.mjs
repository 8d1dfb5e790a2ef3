// Loading from a server laid out like the Hugging Face hub
// ({repo}/resolve/{revision}/{file}) on 127.0.0.1: headers first with Range
// requests, then only the weight tensors (never the causal-mask buffers);
// sharded checkpoints through model.safetensors.index.json; clear errors.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { startServer } from '../browser/harness.mjs';
import { directorySource, loadHeadscope } from '../../wasm/node.mjs';
import { hubSource, prefetchingFetch, urlSource } from '../../wasm/sources.mjs';
import { trustedOrigin } from '../../web/shared/sources.js';
import { ORACLE_MODELS, oracleDir, oracleIds, readNpy, tempDir, worstMismatch } from './support.mjs';

const core = await loadHeadscope();
let hub;
let server;

// A safetensors file from a name -> {dtype: 'F32', shape, data: Float32Array} map.
function writeSafetensors(file, tensors) {
  const header = {};
  let offset = 0;
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const bytes = tensors[name].data.byteLength;
    header[name] = { dtype: 'F32', shape: tensors[name].shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const out = Buffer.alloc(8 + text.length + offset);
  out.writeBigUInt64LE(BigInt(text.length), 0);
  out.write(text, 8);
  let at = 8 + text.length;
  for (const name of names) {
    Buffer.from(tensors[name].data.buffer).copy(out, at);
    at += tensors[name].data.byteLength;
  }
  fs.writeFileSync(file, out);
}

function readSafetensors(file) {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const slice = bytes.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
    tensors[name] = { shape: t.shape, data: new Float32Array(Uint8Array.from(slice).buffer) };
  }
  return tensors;
}

before(async () => {
  hub = tempDir('headscope-hub-');
  // gpt2 as the original hub files have it: no prefix, plus causal-mask buffers h.N.attn.bias.
  const gpt2 = path.join(hub, 'test', 'gpt2-hub', 'resolve', 'main');
  fs.mkdirSync(gpt2, { recursive: true });
  fs.copyFileSync(path.join(oracleDir('gpt2'), 'config.json'), path.join(gpt2, 'config.json'));
  const tensors = {};
  for (const [name, t] of Object.entries(readSafetensors(path.join(oracleDir('gpt2'), 'model.safetensors')))) {
    tensors[name.replace(/^transformer\./, '')] = t;
  }
  for (const l of [0, 1]) {
    const mask = new Float32Array(64 * 64).map((_, k) => (k % 64 <= Math.floor(k / 64) ? 1 : 0));
    tensors[`h.${l}.attn.bias`] = { shape: [1, 1, 64, 64], data: mask };
  }
  writeSafetensors(path.join(gpt2, 'model.safetensors'), tensors);

  // llama split into two shards with an index, on a revision other than main.
  const llama = path.join(hub, 'test', 'llama-sharded', 'resolve', 'v1.0');
  fs.mkdirSync(llama, { recursive: true });
  fs.copyFileSync(path.join(oracleDir('llama'), 'config.json'), path.join(llama, 'config.json'));
  const all = readSafetensors(path.join(oracleDir('llama'), 'model.safetensors'));
  const names = Object.keys(all).sort();
  const shards = [{}, {}];
  const weightMap = {};
  names.forEach((name, i) => {
    const shard = i < names.length / 2 ? 0 : 1;
    shards[shard][name] = all[name];
    weightMap[name] = `model-0000${shard + 1}-of-00002.safetensors`;
  });
  shards.forEach((s, i) => writeSafetensors(path.join(llama, `model-0000${i + 1}-of-00002.safetensors`), s));
  fs.writeFileSync(path.join(llama, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  server = await startServer(hub);
});

after(async () => {
  await server?.close();
  fs.rmSync(hub, { recursive: true, force: true });
});

test('a hub-style gpt2 loads with Range requests, skipping the mask buffers, and matches the oracle', async () => {
  const session = core.createSession();
  server.requests.length = 0;
  const progress = [];
  await session.load(hubSource('test/gpt2-hub', 'main', { endpoint: server.url }), { onProgress: (fraction, p) => progress.push({ fraction, ...p }) });
  const run = session.run(oracleIds('gpt2'));
  const worst = worstMismatch(run.patterns, readNpy(path.join(oracleDir('gpt2'), 'attentions.npy')).data);
  assert.ok(worst.maxError < 1e-5, `attentions off by ${worst.maxError}`);

  const weights = server.requests.filter((r) => r.url.endsWith('model.safetensors'));
  assert.ok(weights.every((r) => r.status === 206), 'every weight request is a Range request');
  const fileSize = fs.statSync(path.join(hub, 'test/gpt2-hub/resolve/main/model.safetensors')).size;
  const transferred = weights.reduce((sum, r) => sum + r.bytes, 0);
  const masks = 2 * 64 * 64 * 4;
  assert.ok(transferred <= fileSize - masks, `transferred ${transferred} of ${fileSize} bytes: the masks (${masks}) were fetched`);
  assert.ok(progress.length > 0 && progress.at(-1).loaded === progress.at(-1).total && progress.at(-1).fraction === 1);
  assert.ok(progress.every((p, i) => p.fraction >= 0 && p.fraction <= 1 && (i === 0 || p.fraction >= progress[i - 1].fraction)));
  session.dispose();
});

test('a sharded checkpoint on a pinned revision loads through its index and matches the unsharded model', async () => {
  const session = core.createSession();
  await session.load(hubSource('test/llama-sharded', 'v1.0', { endpoint: server.url }));
  const sharded = session.run(oracleIds('llama'));
  const whole = core.createSession();
  await whole.load(directorySource(oracleDir('llama')));
  assert.deepEqual(Array.from(sharded.patterns), Array.from(whole.run(oracleIds('llama')).patterns));
  session.dispose();
  whole.dispose();
});

test('a server without Range support still works (whole download)', async () => {
  const session = core.createSession();
  const noRange = (url, init = {}) => {
    const { Range, ...headers } = init.headers || {};
    return fetch(url, { ...init, headers });
  };
  await session.load(urlSource(new URL('test/gpt2-hub/resolve/main/', server.url).href, { fetchImpl: noRange }));
  assert.equal(session.run([1, 2, 3]).nTokens, 3);
  session.dispose();
});

test('a prefetched model (whole files, no ranges) loads from the early requests, once each, with the same numbers', async () => {
  const base = new URL('test/gpt2-hub/resolve/main/', server.url).href;
  const names = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json', 'model.safetensors'];
  server.requests.length = 0;
  const fetchImpl = prefetchingFetch(names.map((n) => new URL(n, base).href));
  const early = server.requests.length;
  const session = core.createSession();
  await session.load(urlSource(base, { fetchImpl, ranges: false }));
  // Every file was asked for once, by the prefetch, never with a Range.
  const asked = server.requests.map((r) => r.url.split('/').pop());
  for (const name of names) assert.equal(asked.filter((n) => n === name).length, 1, `${name}: ${asked}`);
  assert.ok(server.requests.every((r) => r.status !== 206));
  assert.ok(early <= names.length);
  // Asked again, a file goes to the network.
  const again = await fetchImpl(new URL('config.json', base).href);
  assert.equal(again.status, 200);
  assert.equal(server.requests.filter((r) => r.url.split('/').pop() === 'config.json').length, 2);
  const ranged = core.createSession();
  await ranged.load(hubSource('test/gpt2-hub', 'main', { endpoint: server.url }));
  assert.deepEqual(Array.from(session.run([1, 2, 3]).patterns), Array.from(ranged.run([1, 2, 3]).patterns));
  session.dispose();
  ranged.dispose();
});

test('a missing repository or file is an error naming the file, and the session can load afterwards', async () => {
  const session = core.createSession();
  await assert.rejects(session.load(hubSource('test/nothing-here', 'main', { endpoint: server.url })), /config\.json is missing/);
  await assert.rejects(() => Promise.resolve().then(() => hubSource('not a repo id!')), /not a Hugging Face repository id/);
  await session.load(hubSource('test/gpt2-hub', 'main', { endpoint: server.url }));
  assert.equal(session.info.nLayer, 2);
  session.dispose();
});

// Weight geometry of a remote checkpoint without downloading what it does not
// use: only the attention projections and the blocks' norms travel.
test('attention weights only: every family downloads just its attention tensors, and the geometry equals the full load', async () => {
  const serverFor = (family) => new URL(`oracle/${family}/`, server.url).href;
  for (const family of ORACLE_MODELS) {
    const dir = path.join(hub, 'oracle', family);
    fs.mkdirSync(dir, { recursive: true });
    for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(oracleDir(family), f), path.join(dir, f));
    const bytes = fs.readFileSync(path.join(dir, 'model.safetensors'));
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
    // What an attention-only load needs, by name (independently of the core's list).
    const attention = /(attn|attention|self_attn)\.|layernorm|layer_norm|ln_[12]|LayerNorm/;
    const needed = Object.entries(header).filter(([name]) => name !== '__metadata__' && attention.test(name) && !/embeddings|^(transformer\.|model\.|gpt_neox\.)?(ln_f|norm|final_layer_norm)\./.test(name) && !/\.attn\.(bias|masked_bias)$|rotary_emb/.test(name));
    const neededBytes = needed.reduce((sum, [, t]) => sum + t.data_offsets[1] - t.data_offsets[0], 0);

    server.requests.length = 0;
    const light = core.createSession();
    const info = await light.load(urlSource(serverFor(family)), { attentionOnly: true });
    assert.equal(info.attentionOnly, true, family);
    const weights = server.requests.filter((r) => r.url.endsWith('model.safetensors'));
    const headerBytes = weights.slice(0, 2).reduce((sum, r) => sum + r.bytes, 0);  // the 8-byte prefix and the header
    const dataBytes = weights.slice(2).reduce((sum, r) => sum + r.bytes, 0);
    assert.ok(dataBytes <= neededBytes, `${family}: ${dataBytes} bytes of tensors for ${neededBytes} of attention tensors`);
    assert.ok(dataBytes >= 0.9 * neededBytes, `${family}: only ${dataBytes} of ${neededBytes}`);
    console.log(`# ${family}: attention-only download ${dataBytes + headerBytes} bytes (tensors ${dataBytes}, headers ${headerBytes}) / attention tensors ${neededBytes} = ${((dataBytes + headerBytes) / neededBytes).toFixed(3)}`);

    const full = core.createSession();
    await full.load(directorySource(oracleDir(family)));
    const variants = info.family === 'bert' ? ['raw'] : ['raw', 'processed'];
    for (const variant of variants) {
      assert.deepEqual(light.spectra({ variant }), full.spectra({ variant }), `${family} ${variant} spectra`);
      assert.deepEqual(light.redundancy({ variant, kind: 'O' }), full.redundancy({ variant, kind: 'O' }), `${family} ${variant} redundancy`);
      assert.deepEqual(light.composition({ variant }), full.composition({ variant }), `${family} ${variant} composition`);
    }
    // Text needs the rest of the model: a clear refusal, and the session stays usable.
    assert.throws(() => light.run([1, 2, 3]), /attention weights only/);
    assert.throws(() => light.copying({ variant: 'raw' }), /embedding|unembedding/);
    assert.deepEqual(light.spectra({ variant: 'raw' }), full.spectra({ variant: 'raw' }));
    light.dispose();
    full.dispose();
  }
});

test('a prefetch follows the asker\'s abort: a stalled download is cancelled, headers or body', async () => {
  const dir = tempDir('headscope-stall-');
  fs.writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(200000, 7));
  const slow = await startServer(dir, { slow: () => 1000 });  // 1 kB/s: 200 s for the file
  try {
    const url = new URL('big.bin', slow.url).href;
    const fetchImpl = prefetchingFetch([url]);
    const controller = new AbortController();
    const response = await fetchImpl(url, { signal: controller.signal });
    const reader = response.body.getReader();
    await reader.read();  // the first chunk arrives
    const started = performance.now();
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) break;
    });
    // Without the abort the read takes 200 s; a bound far from both ends
    // holds on a loaded machine.
    assert.ok(performance.now() - started < 20000, 'the abort ended the body read');
    // Aborted before the headers: the promise rejects too.
    const second = prefetchingFetch([url]);
    const early = new AbortController();
    early.abort();
    await assert.rejects(second(url, { signal: early.signal }));
  } finally {
    await slow.close();
  }
});

// A server whose every answer is decided by `handle(req, res)`.
async function rawServer(handle) {
  const srv = http.createServer(handle);
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${srv.address().port}/`, close: () => { srv.closeAllConnections(); srv.close(); } };
}

test('a server that stalls, or lies about Content-Length, fails with code network and says how', async () => {
  // Headers that never come, then a body that stops.
  const silent = await rawServer(() => {});
  const stalling = await rawServer((req, res) => {
    res.writeHead(200, { 'Content-Length': 1000 });
    res.write(Buffer.alloc(10));
  });
  const short = await rawServer((req, res) => {
    res.writeHead(200, { 'Content-Length': 1000 });
    res.end(Buffer.alloc(10));
  });
  try {
    await assert.rejects(urlSource(silent.url, { stallMs: 300 }).text('config.json'),
      (e) => e.code === 'network' && /no data from 127\.0\.0\.1:\d+ for 0 s/.test(e.message));
    await assert.rejects(urlSource(stalling.url, { stallMs: 300 }).bytes('model.safetensors', (n) => new Uint8Array(n)),
      (e) => e.code === 'network' && /no data/.test(e.message));
    await assert.rejects(urlSource(short.url).bytes('model.safetensors', (n) => new Uint8Array(n)),
      (e) => e.code === 'network' && /10 of 1000|broke off/.test(e.message));
    // A cancel still wins over the stall timeout.
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(urlSource(silent.url).text('config.json', { signal: controller.signal }), (e) => e.code === 'cancelled');
  } finally {
    silent.close();
    stalling.close();
    short.close();
  }
});

test('a runtime without fetch gets a message saying so', async () => {
  await assert.rejects(urlSource('http://127.0.0.1:9/', { fetchImpl: null }).text('config.json'),
    (e) => e.code === 'network' && /no fetch/.test(e.message));
});

test('no request of a source sends a Referer', async () => {
  const base = new URL('test/gpt2-hub/resolve/main/', server.url).href;
  const policies = [];
  const fetchImpl = (url, init = {}) => {
    policies.push(init.referrerPolicy);
    return fetch(url, init);
  };
  const session = core.createSession();
  await session.load(urlSource(base, { fetchImpl }));
  const prefetched = prefetchingFetch([new URL('config.json', base).href], fetchImpl);
  await (await prefetched(new URL('config.json', base).href)).text();
  assert.ok(policies.length >= 3);
  assert.deepEqual([...new Set(policies)], ['no-referrer']);
  session.dispose();
});

test('which hosts a link may reach unasked: the page\'s origin and the hub\'s, nothing that only looks like them', () => {
  const page = 'https://headscope.example';
  const trusted = [page, 'https://huggingface.co', 'https://cdn-lfs.huggingface.co', 'https://cdn-lfs-us-1.huggingface.co',
    'https://cas-bridge.xethub.hf.co', 'https://datasets-server.huggingface.co'];
  const refused = ['https://evil.example', 'https://huggingface.co.evil.example', 'https://evilhuggingface.co', 'http://huggingface.co',
    'https://huggingface.co:8443', 'https://hf.co.evil.example', 'http://headscope.example', 'https://headscope.example:444', 'null', 'data:,x'];
  for (const origin of trusted) assert.ok(trustedOrigin(origin, page), origin);
  for (const origin of refused) assert.ok(!trustedOrigin(origin, page), origin);
});

// Two servers on different ports (so different origins): the "hub" answers
// config.json after checking for a token, or redirects it to the "CDN",
// which records what it was sent.
async function tokenServers() {
  const seen = { hub: [], cdn: [] };
  const listen = (handler) => new Promise((resolve) => {
    const s = http.createServer(handler).listen(0, '127.0.0.1', () => resolve(s));
  });
  const cdn = await listen((req, res) => {
    seen.cdn.push({ url: req.url, authorization: req.headers.authorization });
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"from": "cdn"}');
  });
  const cdnUrl = `http://127.0.0.1:${cdn.address().port}`;
  const hubServer = await listen((req, res) => {
    seen.hub.push({ url: req.url, authorization: req.headers.authorization });
    if (req.headers.authorization !== 'Bearer hf_secret') return res.writeHead(401).end();
    if (req.url.includes('/same/')) return res.writeHead(302, { Location: req.url.replace('/same/', '/main/') }).end();
    if (req.url.endsWith('/main/config.json')) return res.writeHead(200).end('{"from": "hub"}');
    return res.writeHead(302, { Location: `${cdnUrl}/signed/config.json?sig=1` }).end();
  });
  const close = () => Promise.all([cdn, hubServer].map((s) => new Promise((r) => s.close(r))));
  return { seen, endpoint: `http://127.0.0.1:${hubServer.address().port}`, close };
}

test('an access token goes to the hub\'s origin only: kept across its own redirects, dropped on the hop to another host', async () => {
  const { seen, endpoint, close } = await tokenServers();
  try {
    // Same-origin redirect: the header stays and the hub answers.
    assert.equal(await hubSource('org/gated', 'same', { endpoint, token: 'hf_secret' }).text('config.json'), '{"from": "hub"}');
    assert.deepEqual(seen.hub.map((r) => r.authorization), ['Bearer hf_secret', 'Bearer hf_secret']);
    // Cross-origin redirect (the hub's CDN): the CDN gets no token.
    assert.equal(await hubSource('org/gated', 'v1', { endpoint, token: 'hf_secret' }).text('config.json'), '{"from": "cdn"}');
    assert.equal(seen.cdn.length, 1);
    assert.equal(seen.cdn[0].authorization, undefined);
    // Without a token the refusal says how to give one.
    await assert.rejects(hubSource('org/gated', 'v1', { endpoint }).text('config.json'), /HTTP 401.*access token.*HF_TOKEN/);
  } finally {
    await close();
  }
});

test('the CLI sends HF_TOKEN to huggingface.co only: not to another endpoint', async () => {
  const { seen, endpoint, close } = await tokenServers();
  try {
    const cli = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'wasm', 'cli.mjs');
    const wasmFlags = process.execArgv.filter((flag) => flag.startsWith('--experimental-wasm-'));
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [...wasmFlags, cli, 'info', 'org/gated', '--endpoint', endpoint], {
      env: { ...process.env, HF_TOKEN: 'hf_secret' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const status = await new Promise((resolve) => child.on('close', resolve));
    assert.notEqual(status, 0);
    assert.match(stderr, /HTTP 401/);
    assert.ok(seen.hub.length >= 1);
    assert.ok(seen.hub.every((r) => r.authorization === undefined), JSON.stringify(seen.hub));
  } finally {
    await close();
  }
});
