// The headscope command line (wasm/cli.mjs) on a fixture model folder.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { parseNpy } from '../../wasm/npy.mjs';
import { CATASTROPHIC, SENTENCE, hostileTokenizerModel, oracleDir, overflowingModel, oracleIds, readNpy, repoRoot, tempDir, worstMismatch } from './support.mjs';

const cli = path.join(repoRoot, 'wasm', 'cli.mjs');
// The CLI under this node's wasm flags: the same build of the core as the API here.
const wasmFlags = process.execArgv.filter((flag) => flag.startsWith('--experimental-wasm-'));
const headscope = (...args) => spawnSync(process.execPath, [...wasmFlags, cli, ...args], { encoding: 'utf8' });

test('info prints the model description as JSON', () => {
  const out = headscope('info', oracleDir('llama'));
  assert.equal(out.status, 0, out.stderr);
  const info = JSON.parse(out.stdout);
  assert.deepEqual([info.family, info.n_layer, info.n_head, info.n_kv_head, info.d_head], ['llama', 2, 4, 2, 16]);
});

test('attn --out x.npy writes float32 [layers, heads, T, T] patterns equal to the oracle', () => {
  const file = path.join(tempDir(), 'patterns.npy');
  const out = headscope('attn', oracleDir('gpt_neox'), '--ids', oracleIds('gpt_neox').join(','), '--out', file);
  assert.equal(out.status, 0, out.stderr);
  const patterns = parseNpy(fs.readFileSync(file));
  assert.deepEqual(patterns.shape, [2, 4, 12, 12]);
  assert.ok(patterns.data instanceof Float32Array);
  const worst = worstMismatch(patterns.data, readNpy(path.join(oracleDir('gpt_neox'), 'attentions.npy')).data);
  assert.ok(worst.maxError < 1e-5, `worst error ${worst.maxError} at ${worst.index}`);
});

test('attn --out x.json writes ids, shape and patterns', () => {
  const file = path.join(tempDir(), 'patterns.json');
  const out = headscope('attn', oracleDir('gpt2'), '--ids', '5,17,42', '--out', file);
  assert.equal(out.status, 0, out.stderr);
  const result = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.deepEqual(result.ids, [5, 17, 42]);
  assert.deepEqual(result.shape, [2, 4, 3, 3]);
  assert.equal(result.patterns.length, 2 * 4 * 9);
  assert.equal(result.patterns[0], 1);  // the first token can only attend to itself
});

test('attn prints each head\'s pattern rows when no --out is given', () => {
  const out = headscope('attn', oracleDir('gpt2'), '--ids', '1,2');
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stdout, /^L1H3$/m);
  assert.match(out.stdout, /^1\.000 0\.000$/m);
});

test('bad arguments and bad models fail with a message, not a stack trace', () => {
  for (const [args, message] of [
    [['attn', oracleDir('gpt2')], /exactly one of --text or --ids/],
    [['attn', oracleDir('gpt2'), '--ids', '1,x'], /--ids must be/],
    [['attn', oracleDir('gpt2'), '--ids', '1,999'], /999.*range/],
    [['attn', oracleDir('gpt2'), '--ids', '1,4294967301'], /4294967301.*out of range/],
    [['ablate', oracleDir('gpt2'), '--ids', '1,2', '--heads', 'L0H4294967297'], /head|range/],
    [['attn', oracleDir('gpt2'), '--text', 'hello'], /no tokenizer/],
    [['frobnicate', oracleDir('gpt2')], /unknown command/],
    [['info', '/nonexistent/folder/x'], /neither a local folder nor a Hugging Face repo id/],
  ]) {
    const out = headscope(...args);
    assert.notEqual(out.status, 0, args.join(' '));
    assert.match(out.stderr, message);
    assert.doesNotMatch(out.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('a tokenizer pattern that backtracks without end stops the CLI with a message naming it', () => {
  const out = spawnSync(process.execPath, [...wasmFlags, cli, 'attn', hostileTokenizerModel(), '--text', SENTENCE], { encoding: 'utf8', timeout: 120000 });
  assert.equal(out.signal, null, 'the CLI ended by itself');
  assert.notEqual(out.status, 0);
  assert.ok(out.stderr.includes(JSON.stringify(CATASTROPHIC)), out.stderr);
});

test('the CLI ends by itself when the model has a tokenizer (its thread does not hold the process)', () => {
  const builtin = path.join(repoRoot, 'public', 'models', 'headscope-tiny');
  for (const args of [['--ids', '1,2,3'], ['--text', 'the cat sat']]) {
    const out = spawnSync(process.execPath, [...wasmFlags, cli, 'attn', builtin, ...args, '--out', path.join(tempDir(), 'a.json')], { encoding: 'utf8', timeout: 60000 });
    assert.equal(out.signal, null, `${args.join(' ')}: still running after 60 s`);
    assert.equal(out.status, 0, out.stderr);
  }
});

test('attn on weights that overflow float32 warns, naming what is NaN', () => {
  const out = headscope('attn', overflowingModel(), '--ids', '1,2,3,4');
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stderr, /warning: the forward pass overflowed: \d+ of 128 attention weights and the loss are NaN or infinite/);
  const plain = headscope('attn', oracleDir('gpt2'), '--ids', '1,2,3,4');
  assert.doesNotMatch(plain.stderr, /overflowed/);
});

test('the CLI under node --no-experimental-fetch says that it cannot reach a hub', () => {
  const out = spawnSync(process.execPath, [...wasmFlags, '--no-experimental-fetch', cli, 'info', 'owner/model', '--endpoint', 'http://127.0.0.1:9'], { encoding: 'utf8' });
  assert.notEqual(out.status, 0);
  assert.match(out.stderr, /no fetch/);
  assert.doesNotMatch(out.stderr, /is not a function|\n\s+at /);
});

test('metrics --out DIR writes per-head metrics as JSON and the pairwise matrices as .npy, equal to the API', async () => {
  const dir = tempDir();
  const out = headscope('metrics', oracleDir('llama'), '--processed', '--out', dir);
  assert.equal(out.status, 0, out.stderr);
  const summary = JSON.parse(fs.readFileSync(path.join(dir, 'metrics.json'), 'utf8'));
  assert.equal(summary.variant, 'processed');
  assert.equal(summary.heads.length, 8);
  assert.equal(summary.heads[5].head, 'L1H1');
  assert.equal(summary.heads[5].ov.sigma.length, 16);
  const redundancy = parseNpy(fs.readFileSync(path.join(dir, 'redundancy_O.npy')));
  assert.deepEqual(redundancy.shape, [8, 8]);
  const composition = parseNpy(fs.readFileSync(path.join(dir, 'composition_q.npy')));
  assert.deepEqual(composition.shape, [2, 4, 2, 4]);
  // Against the API directly (same wasm module, same variant).
  const { loadHeadscope, directorySource } = await import('../../wasm/node.mjs');
  const session = (await loadHeadscope()).createSession();
  await session.load(directorySource(oracleDir('llama')));
  const spectra = session.spectra({ variant: 'processed' });
  assert.ok(Math.abs(summary.heads[5].ov.effective_rank - spectra.ov.effectiveRank[5]) < 1e-12);
  const worst = worstMismatch(redundancy.data, session.redundancy({ variant: 'processed', kind: 'O' }).overlap);
  assert.ok(worst.maxError < 1e-6, `redundancy off by ${worst.maxError}`);
});

test('metrics refuses the processed variant of a post-LN model with a clear message', () => {
  const out = headscope('metrics', oracleDir('bert'), '--processed');
  assert.notEqual(out.status, 0);
  assert.match(out.stderr, /pre-LN/);
});

test('importance, ablate and detect write JSON matching the oracle and the API', () => {
  const ids = oracleIds('gpt2').join(',');
  let out = headscope('importance', oracleDir('gpt2'), '--ids', ids);
  assert.equal(out.status, 0, out.stderr);
  const importance = JSON.parse(out.stdout);
  const grad = readNpy(path.join(oracleDir('gpt2'), 'head_importance_abs_grad.npy')).data;
  assert.ok(worstMismatch(importance.gradient_importance, grad).maxError < 1e-4);
  assert.equal(importance.heads[5], 'L1H1');

  out = headscope('ablate', oracleDir('gpt2'), '--ids', ids, '--heads', 'L0H1,L1H3');
  assert.equal(out.status, 0, out.stderr);
  const ablation = JSON.parse(out.stdout);
  const expected = JSON.parse(fs.readFileSync(path.join(oracleDir('gpt2'), 'ablation.json'), 'utf8'));
  assert.ok(Math.abs(ablation.loss - expected.loss_ablate_L0H1_L1H3) < 1e-4);
  assert.ok(Math.abs(ablation.loss_base - expected.loss) < 1e-4);

  const file = path.join(tempDir(), 'detect.json');
  out = headscope('detect', oracleDir('gpt2'), '--ids', '127,5,17,42,5,17,42', '--measure', 'abs', '--exclude-bos', '--out', file);
  assert.equal(out.status, 0, out.stderr);
  const detect = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.equal(detect.measure, 'abs');
  assert.equal(detect.induction_score.length, 8);
  assert.equal(detect.role.length, 8);

  out = headscope('ablate', oracleDir('gpt2'), '--ids', ids, '--heads', 'L5H1');
  assert.notEqual(out.status, 0);
  assert.match(out.stderr, /L5H1 is not a head of this model/);
});

test('corpus: per-head statistics over the built-in corpus are the per-text detectors\' means, with intervals and chance', async () => {
  const builtin = path.join(repoRoot, 'public', 'models', 'headscope-tiny');
  const dir = tempDir();
  const out = headscope('corpus', builtin, '--texts', '12', '--tokens', '64', '--resamples', '300', '--out', dir);
  assert.equal(out.status, 0, out.stderr);
  const summary = JSON.parse(fs.readFileSync(path.join(dir, 'corpus.json'), 'utf8'));
  assert.equal(summary.corpus.texts, 12);
  assert.match(summary.corpus.note, /each text cut to its first 64 tokens \(BOS included\); \d+ of 12 were longer/);
  assert.equal(summary.interval.resamples, 300);
  const perText = parseNpy(fs.readFileSync(path.join(dir, 'previous_token_score_per_text.npy')));
  assert.deepEqual(perText.shape, [12, 2, 4]);
  // The same numbers, text by text, from the detectors of `detect` (the
  // first 12 lines of the built-in corpus, BOS first, 64 tokens).
  const lines = fs.readFileSync(path.join(repoRoot, 'public', 'corpora', 'stories.txt'), 'utf8').split('\n').filter((l) => l.trim()).slice(0, 12);
  const { loadHeadscope, directorySource } = await import('../../wasm/node.mjs');
  const core = await loadHeadscope();
  const s = core.createSession();
  await s.load(directorySource(builtin));
  let longer = 0;
  for (const [t, line] of lines.entries()) {
    const all = (await s.tokenize(line.slice(0, 64 * 64), { prependBos: true })).ids;
    longer += all.length > 64;
    const ids = all.slice(0, 64);
    const b = s.behavior(ids);
    // (The CLI and this process may run different builds, FMA or not: ~1e-8.)
    for (let i = 0; i < 8; i++) assert.ok(Math.abs(perText.data[t * 8 + i] - b.previousTokenScore[i]) <= 1e-6, `text ${t} head ${i}`);
  }
  s.dispose();
  assert.ok(longer > 0, 'some stories are longer than 64 tokens');
  assert.equal(summary.corpus.truncated, longer);
  assert.deepEqual(summary.corpus.tokens_per_text.filter((n) => n === 64).length >= longer, true);
  for (const head of summary.heads) {
    const p = head.statistics.previous_token_score;
    assert.ok(p.lo <= p.mean && p.mean <= p.hi, `${head.head}: ${JSON.stringify(p)}`);
    assert.ok(Math.abs(p.chance - summary.heads[0].statistics.previous_token_score.chance) < 1e-12, 'chance: the same uniform pattern for every head');
    assert.ok(Math.abs(Object.values(head.role_share).reduce((a, b) => a + b, 0) - 1) < 1e-9);
  }
  // The built-in model's previous-token head holds its role on every text, far above chance.
  const l0h0 = summary.heads[0];
  assert.equal(l0h0.role_share.previous_token, 1);
  assert.ok(l0h0.statistics.previous_token_score.lo > 10 * l0h0.statistics.previous_token_score.chance);
});

test('corpus: bad corpora are named, with what is wrong', () => {
  const builtin = path.join(repoRoot, 'public', 'models', 'headscope-tiny');
  const dir = tempDir();
  const file = (name, content) => {
    fs.writeFileSync(path.join(dir, name), content);
    return path.join(dir, name);
  };
  for (const [corpus, message] of [
    [file('binary.txt', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 13, 0x49, 0x48])), /binary.txt: looks binary/],
    [file('empty.txt', '\n\n  \n'), /empty.txt: has no texts/],
    [file('fields.jsonl', '{"body": "a text"}\n'), /fields.jsonl: line 1 has no text field "text" \(its fields: body\)/],
    [file('broken.jsonl', '{"text": "ok"}\n{"text": \n'), /broken.jsonl: line 2 is not JSON/],
    [file('table.parquet', 'PAR1'), /table.parquet: is not a parquet file/],
    [file('table.csv', 'a,b\n'), /table.csv: not a text corpus file/],
    [path.join(dir, 'missing.txt'), /missing.txt: no such corpus file/],
  ]) {
    const out = headscope('corpus', builtin, '--corpus', corpus);
    assert.notEqual(out.status, 0, corpus);
    assert.match(out.stderr, message);
    assert.doesNotMatch(out.stderr, /\n\s+at /, 'no stack trace');
  }
  // One huge line is cut, not a stall: the tokenizer sees 64 characters per token.
  const huge = file('huge.txt', `${'the cat sat on the mat. '.repeat(200000)}\nA short second text.\n`);
  const out = headscope('corpus', builtin, '--corpus', huge, '--tokens', '32', '--resamples', '50');
  assert.equal(out.status, 0, out.stderr);
  const summary = JSON.parse(out.stdout);
  assert.equal(summary.corpus.texts, 2);
  assert.equal(summary.corpus.tokens_per_text[0], 32);
  assert.equal(summary.corpus.truncated, 1, 'the huge line was cut, the short one was not');
  // A .jsonl with its text field.
  const jsonl = file('ok.jsonl', '{"text": "Mary and John went to the store."}\n{"text": "Then Mary gave a book to John."}\n');
  const ok = headscope('corpus', builtin, '--corpus', jsonl, '--resamples', '50');
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).corpus.format, 'jsonl');
});

test('corpus --importance: Michel importance over texts, leave-one-out intervals and a held-out pruning curve', () => {
  const builtin = path.join(repoRoot, 'public', 'models', 'headscope-tiny');
  const out = headscope('corpus', builtin, '--texts', '8', '--tokens', '48', '--resamples', '200', '--importance');
  assert.equal(out.status, 0, out.stderr);
  const m = JSON.parse(out.stdout).importance;
  assert.equal(m.objective, 'next_token');
  assert.equal(m.heads.length, 8);
  for (const h of m.heads) assert.ok(h.leave_one_out.lo <= h.leave_one_out.mean && h.leave_one_out.mean <= h.leave_one_out.hi, h.head);
  const p = m.pruning;
  assert.deepEqual(p.choose_texts, [0, 2, 4, 6]);
  assert.deepEqual(p.evaluate_texts, [1, 3, 5, 7]);
  assert.equal(new Set(p.order).size, 8);
  assert.deepEqual(p.n_removed, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  // Nothing removed and everything removed: every order gives the same loss.
  for (const k of [0, 8]) {
    assert.ok(Math.abs(p.random_min[k] - p.loss[k]) < 1e-9 && Math.abs(p.random_max[k] - p.loss[k]) < 1e-9, `step ${k}`);
  }
  // The importance order, chosen on other texts, keeps the loss at or below the random band's middle on the way.
  const area = (v) => v.reduce((a, b) => a + b, 0);
  assert.ok(area(p.loss) <= area(p.random_mean), `${p.loss} vs ${p.random_mean}`);
});

test('corpus from parquet: a local file, and a Hugging Face dataset read by ranges, only the row groups needed', async () => {
  const { parquetWriteBuffer } = await import('hyparquet-writer');
  const { startServer } = await import('../browser/harness.mjs');
  const { execFile } = await import('node:child_process');
  const run = (...args) => new Promise((resolve) => {
    execFile(process.execPath, [...wasmFlags, cli, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 }, (error, stdout, stderr) => resolve({ status: error ? error.code ?? 1 : 0, stdout, stderr }));
  });
  const builtin = path.join(repoRoot, 'public', 'models', 'headscope-tiny');
  const dir = tempDir();
  const stories = fs.readFileSync(path.join(repoRoot, 'public', 'corpora', 'stories.txt'), 'utf8').split('\n').filter((l) => l.trim());
  // 8000 distinct rows in row groups of 100: the first 6 texts live in the first group.
  const rows = Array.from({ length: 8000 }, (_, i) => (i < 6 ? stories[i] : `${stories[i % stories.length]} (${i})`));
  const table = parquetWriteBuffer({ columnData: [{ name: 'id', data: rows.map((_, i) => i), type: 'INT32' }, { name: 'text', data: rows, type: 'STRING' }], rowGroupSize: 100 });
  fs.writeFileSync(path.join(dir, 'stories.parquet'), Buffer.from(table));
  fs.writeFileSync(path.join(dir, 'stories6.txt'), `${stories.slice(0, 6).join('\n')}\n`);
  const args = ['--texts', '6', '--tokens', '48', '--resamples', '100'];
  const fromParquet = await run('corpus', builtin, '--corpus', path.join(dir, 'stories.parquet'), ...args);
  assert.equal(fromParquet.status, 0, fromParquet.stderr);
  const fromText = await run('corpus', builtin, '--corpus', path.join(dir, 'stories6.txt'), ...args);
  const [p, t] = [JSON.parse(fromParquet.stdout), JSON.parse(fromText.stdout)];
  assert.equal(p.corpus.format, 'parquet');
  assert.deepEqual(p.heads, t.heads, 'the same six texts, the same statistics');

  // The same file as a dataset's converted split on a hub-shaped server.
  const hub = tempDir();
  const split = path.join(hub, 'datasets', 'test', 'stories', 'resolve', 'refs', 'convert', 'parquet', 'default', 'train');
  fs.mkdirSync(split, { recursive: true });
  fs.copyFileSync(path.join(dir, 'stories.parquet'), path.join(split, '0000.parquet'));
  fs.writeFileSync(path.join(hub, 'datasets', 'test', 'stories', 'resolve', 'refs', 'convert', 'parquet', 'default', 'train', 'broken.parquet'), 'not parquet at all');
  const server = await startServer(hub);
  try {
    const endpoint = server.url.replace(/\/$/, '');
    const fromHub = await run('corpus', builtin, '--dataset', 'test/stories', '--endpoint', endpoint, ...args);
    assert.equal(fromHub.status, 0, fromHub.stderr);
    const h = JSON.parse(fromHub.stdout);
    assert.deepEqual(h.heads, t.heads);
    assert.match(h.corpus.file, /dataset test\/stories \(.*\/datasets\/test\/stories\/resolve\/refs%2Fconvert%2Fparquet\/default\/train\/0000\.parquet\)/);
    const fetched = server.requests.filter((r) => r.url.includes('0000.parquet'));
    assert.ok(fetched.every((r) => r.status === 206), 'ranges only');
    const bytes = fetched.reduce((a, r) => a + r.bytes, 0);
    assert.ok(bytes < table.byteLength / 4, `read ${bytes} of ${table.byteLength} bytes`);
    // A split in shards (0000.parquet, 0001.parquet): read in order until there are enough texts,
    // and to the last shard when there are not.
    const sharded = path.join(hub, 'datasets', 'test', 'sharded', 'resolve', 'refs', 'convert', 'parquet', 'default', 'train');
    fs.mkdirSync(sharded, { recursive: true });
    const shard = (texts) => Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'text', data: texts, type: 'STRING' }] }));
    fs.writeFileSync(path.join(sharded, '0000.parquet'), shard(stories.slice(0, 4)));
    fs.writeFileSync(path.join(sharded, '0001.parquet'), shard(stories.slice(4, 8)));
    const fromShards = await run('corpus', builtin, '--dataset', 'test/sharded', '--endpoint', endpoint, ...args);
    assert.equal(fromShards.status, 0, fromShards.stderr);
    const s = JSON.parse(fromShards.stdout);
    assert.deepEqual(s.heads, t.heads, 'the six texts across two shards');
    assert.match(s.corpus.file, /0000\.parquet, .*0001\.parquet\)$/);
    const all = JSON.parse((await run('corpus', builtin, '--dataset', 'test/sharded', '--endpoint', endpoint, '--texts', '20', '--tokens', '16', '--resamples', '10')).stdout);
    assert.equal(all.corpus.texts, 8, 'every row of both shards, then no third shard');
    // What is wrong is named: a missing split, a file that is not parquet, a column that is not there.
    for (const [extra, message] of [
      [['--split', 'validation'], /no such dataset file \(HTTP 404/],
      [['--dataset-file', 'default/train/broken.parquet'], /broken\.parquet: is not a parquet file/],
      [['--field', 'body'], /has no column "body" \(its columns: id, text\)/],
      [['--split', '../x'], /config and split are names/],
    ]) {
      const out = await run('corpus', builtin, '--dataset', 'test/stories', '--endpoint', endpoint, ...extra);
      assert.notEqual(out.status, 0, extra.join(' '));
      assert.match(out.stderr, message);
      assert.doesNotMatch(out.stderr, /\n\s+at /);
    }
  } finally {
    await server.close();
  }
});
