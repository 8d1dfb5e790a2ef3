// Bad input through the wasm API: every rejection is a HeadscopeError naming
// what is wrong, the module survives it, and a good model loads afterwards.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { directorySource, HeadscopeError, loadHeadscope } from '../../wasm/node.mjs';
import { CATASTROPHIC, SENTENCE, copyModel, hostileTokenizerModel, oracleDir, oracleIds, tempDir } from './support.mjs';

const core = await loadHeadscope();

// Rewrites the safetensors header of a model copy: edit(header) may change it
// in place; data bytes are kept unless `data` is given.
function editHeader(dir, edit, { data } = {}) {
  const file = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const text = edit(header) ?? JSON.stringify(header);
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(Buffer.byteLength(text)), 0);
  fs.writeFileSync(file, Buffer.concat([out, Buffer.from(text), data ?? bytes.subarray(8 + n)]));
}

function editConfig(dir, edit) {
  const file = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(config);
  fs.writeFileSync(file, JSON.stringify(config));
}

const firstTensor = (header) => Object.keys(header).filter((k) => k !== '__metadata__').sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0])[0];

const cases = [
  ['a truncated file', (dir) => {
    const file = path.join(dir, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 100);
  }, /model\.safetensors/],
  ['a header length past the end of the file', (dir) => {
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
    fs.writeFileSync(file, bytes);
  }, /model\.safetensors.*header/i],
  ['a header over the size limit', (dir) => {
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    bytes.writeBigUInt64LE(200_000_000n, 0);
    fs.writeFileSync(file, bytes);
  }, /header/i],
  ['a header that is not JSON', (dir) => editHeader(dir, () => '{"a": [1, 2'), /JSON/i],
  ['overlapping offsets', (dir) => editHeader(dir, (h) => {
    const name = Object.keys(h).filter((k) => k !== '__metadata__').find((k) => h[k].data_offsets[0] > 0);
    h[name].data_offsets = h[name].data_offsets.map((x) => x - 4);
  }), /offset/i],
  ['a hole between tensors', (dir) => editHeader(dir, (h) => {
    const name = firstTensor(h);
    h[name].data_offsets[0] += 4;
  }), /offset|bytes/i],
  ['an unknown dtype', (dir) => editHeader(dir, (h) => {
    h[firstTensor(h)].dtype = 'F128';
  }), /F128/],
  ['bytes that do not match shape x dtype', (dir) => editHeader(dir, (h) => {
    const name = firstTensor(h);
    h[name].shape = [...h[name].shape.slice(0, -1), h[name].shape.at(-1) + 1];
  }), /shape|bytes/i],
  ['a missing tensor', (dir) => editHeader(dir, (h) => {
    // Renamed, so the file stays valid but the model lacks it.
    h['transformer.ln_f.renamed'] = h['transformer.ln_f.bias'];
    delete h['transformer.ln_f.bias'];
  }), /ln_f\.bias/],
  ['an unknown model_type', (dir) => editConfig(dir, (c) => { c.model_type = 'mamba'; }), /mamba.*(gpt2|supported)/is],
  ['d_model not divisible by the heads', (dir) => editConfig(dir, (c) => { c.n_head = 5; }), /divisible|n_head/i],
  ['a tensor shaped unlike the config', (dir) => editConfig(dir, (c) => { c.n_embd = 32; c.n_head = 2; }), /expected|shape/i],
];

// Each case's code: the file's own faults are bad_file, the config's
// bad_config or unsupported, the tensors' misfit with the config bad_checkpoint.
const codes = ['bad_file', 'bad_file', 'bad_file', 'bad_file', 'bad_file', 'bad_file', 'bad_file', 'bad_file',
  'bad_checkpoint', 'unsupported', 'bad_config', 'bad_checkpoint'];

for (const [index, [what, corrupt, message]] of cases.entries()) {
  test(`${what} is rejected with a clear message, and a good model loads afterwards`, async () => {
    const session = core.createSession();
    const dir = copyModel('gpt2', corrupt);
    await assert.rejects(session.load(directorySource(dir)), (error) => {
      assert.ok(error instanceof HeadscopeError, `${error.name}: ${error.message}`);
      assert.match(error.message, message);
      assert.equal(error.code, codes[index], error.message);
      assert.doesNotMatch(error.message, /config\.json: config\.json/, 'the file is named once');
      return true;
    });
    await session.load(directorySource(oracleDir('gpt2')));
    assert.equal(session.run(oracleIds('gpt2')).nTokens, 12);
    session.dispose();
  });
}

test('a GQA ratio that is not an integer is rejected naming the heads', async () => {
  const session = core.createSession();
  const dir = copyModel('llama', (d) => editConfig(d, (c) => { c.num_key_value_heads = 3; }));
  await assert.rejects(session.load(directorySource(dir)), /key_value_heads|GQA|divisible/i);
  session.dispose();
});

test('NaN weights load with a warning naming the tensor', async () => {
  const session = core.createSession();
  const dir = copyModel('gpt2', (d) => {
    const file = path.join(d, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
    const t = header['transformer.ln_f.weight'];
    bytes.writeFloatLE(NaN, 8 + n + t.data_offsets[0]);
    fs.writeFileSync(file, bytes);
  });
  const info = await session.load(directorySource(dir));
  assert.ok(info.warnings.some((w) => /ln_f\.weight/.test(w) && /NaN|finite/i.test(w)), JSON.stringify(info.warnings));
  session.dispose();
});

test('a missing config.json or weights file, and a cancelled load, carry their codes', async () => {
  const session = core.createSession();
  const noConfig = copyModel('gpt2', (d) => fs.rmSync(path.join(d, 'config.json')));
  await assert.rejects(session.load(directorySource(noConfig)), (e) => e.code === 'missing_file' && /config\.json/.test(e.message));
  const noWeights = copyModel('gpt2', (d) => fs.rmSync(path.join(d, 'model.safetensors')));
  await assert.rejects(session.load(directorySource(noWeights)), (e) => e.code === 'missing_weights');
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(session.load(directorySource(oracleDir('gpt2')), { signal: controller.signal }), (e) => e.code === 'cancelled');
  assert.throws(() => core.createSession().run([1, 2]), (e) => e.code === 'no_model');
  session.dispose();
});

// directorySource with a count of the bytes it reads.
function countingSource(dir) {
  const source = directorySource(dir);
  const counted = { ...source, read: 0 };
  counted.range = async (name, start, into, options) => {
    const size = await source.range(name, start, into, options);
    if (size !== null) counted.read += into.length;
    return size;
  };
  return counted;
}

test('a local model is read by ranges: its headers and the tensors the load needs, nothing else', async () => {
  for (const family of ['gpt2', 'llama']) {
    const file = path.join(oracleDir(family), 'model.safetensors');
    const size = fs.statSync(file).size;
    const whole = countingSource(oracleDir(family));
    const session = core.createSession();
    await session.load(whole);
    assert.ok(whole.read <= size, `${family}: ${whole.read} bytes read of ${size}`);
    const light = countingSource(oracleDir(family));
    await session.load(light, { attentionOnly: true });
    assert.ok(light.read < 0.8 * whole.read, `${family}: attention only read ${light.read} bytes, the whole load ${whole.read}`);
    session.dispose();
  }
});

test('a cancel stops a large local read between its 16 MB slices', async () => {
  const dir = tempDir('headscope-sparse-');
  const file = path.join(dir, 'big.bin');
  fs.writeFileSync(file, Buffer.alloc(0));
  fs.truncateSync(file, 2 ** 30);  // 1 GB, sparse
  const source = directorySource(dir);
  const controller = new AbortController();
  let slices = 0;
  await assert.rejects(source.range('big.bin', 0, new Uint8Array(2 ** 28), {
    signal: controller.signal,
    onChunk: () => { if (++slices === 2) controller.abort(); },
  }), (e) => e.code === 'cancelled');
  assert.equal(slices, 2, 'the read stopped at the slice after the cancel');
  await assert.rejects(source.range('big.bin', 2 ** 30 - 4, new Uint8Array(8)), (e) => e.code === 'bad_file' && /ends at byte/.test(e.message));
});

// A model folder whose model.safetensors declares `tensors` ({name: [dtype,
// shape]}) over a sparse file of the right size: nothing but the header is
// written to disk.
function sparseModel(config, tensors) {
  const dir = tempDir('headscope-huge-');
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const header = {};
  let offset = 0;
  for (const [name, [dtype, shape]] of Object.entries(tensors)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * { F32: 4, BF16: 2 }[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const text = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(text.length));
  const file = path.join(dir, 'model.safetensors');
  fs.writeFileSync(file, Buffer.concat([prefix, text]));
  fs.truncateSync(file, 8 + text.length + offset);
  return dir;
}

test('a model too big for wasm memory is refused from its header, naming its size, before any weight is read', async () => {
  const gpt2 = JSON.parse(fs.readFileSync(path.join(oracleDir('gpt2'), 'config.json'), 'utf8'));
  for (const [what, tensors, size] of [
    ['5 GB of F32', { 'wte.weight': ['F32', [1250000, 1000]] }, /5\.0 GB/],
    // Attention weights are float32 in memory whatever the checkpoint holds;
    // embeddings (and MLPs) keep their 16 bits.
    ['2.5 GB of BF16 attention weights, 5 GB as float32', { 'h.0.attn.c_attn.weight': ['BF16', [1250000, 1000]] }, /5\.0 GB/],
    ['4 GB of BF16 embeddings, kept 16-bit', { 'wte.weight': ['BF16', [2000000, 1000]] }, /4\.0 GB/],
    ['50 GB', { 'wte.weight': ['F32', [12500000, 1000]] }, /50\.0 GB/],
  ]) {
    const source = countingSource(sparseModel(gpt2, tensors));
    const session = core.createSession();
    await assert.rejects(session.load(source), (e) => e.code === 'too_large' && size.test(e.message) && /3\.2 GB/.test(e.message), what);
    assert.ok(source.read < 1000, `${what}: ${source.read} bytes read`);
    // The session loads a model afterwards.
    await session.load(directorySource(oracleDir('gpt2')));
    session.dispose();
  }
});

test('more tokens than the context and out-of-range ids are refused with a clear notice', async () => {
  const session = core.createSession();
  await session.load(directorySource(oracleDir('gpt2')));
  assert.throws(() => session.run(new Array(65).fill(1)), /65 tokens.*64|context/i);
  assert.throws(() => session.run([1, 500]), /500.*range/i);
  assert.throws(() => session.run([]), /token/i);
  assert.equal(session.run([1, 2]).nTokens, 2);
  session.dispose();
});

test('ids and head indices past 2^32 are errors, not wrapped to small ones', async () => {
  const session = core.createSession();
  const info = await session.load(directorySource(oracleDir('gpt2')));
  // 2^32 + 5 would reach the core as 5.
  for (const bad of [2 ** 32 + 5, 2 ** 31, 2 ** 53 + 2, -1, 1.5, NaN, Infinity, '7']) {
    const shown = String(bad).slice(0, 12);
    assert.throws(() => session.run([1, bad]), (e) => e instanceof HeadscopeError && e.message.includes(shown) && /out of range/.test(e.message), shown);
    assert.throws(() => session.behavior([1, bad, 2]), HeadscopeError);
    assert.throws(() => session.ablate([1, 2], [bad]), (e) => e instanceof HeadscopeError && /head index/.test(e.message));
  }
  assert.throws(() => session.ablate([1, 2], [info.nLayer * info.nHead]), /head index.*out of range/);
  assert.doesNotThrow(() => session.ablate([1, 2, 3], [0]));
  session.dispose();
});

test('a tokenizer whose added token has an id past 2^32 cannot run it as another id', async () => {
  const session = core.createSession();
  const dir = copyModel('gpt2', (d) => {
    const vocab = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`t${i}`, i]));
    fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify({
      version: '1.0', normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
      added_tokens: [{ id: 2 ** 32 + 23, content: '<huge>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      model: { type: 'WordLevel', vocab, unk_token: 't0' },
    }));
  });
  await session.load(directorySource(dir));
  const { ids } = await session.tokenize('t1 <huge> t2');
  assert.ok(ids.includes(2 ** 32 + 23), JSON.stringify(ids));
  assert.throws(() => session.run(ids), /4294967319.*out of range/);
  session.dispose();
});

test('a tokenizer pattern that backtracks without end is stopped, named, and the session goes on', async () => {
  const session = core.createSession();
  await session.load(directorySource(hostileTokenizerModel()));
  await assert.rejects(session.tokenize(SENTENCE), (e) => e.code === 'bad_file' && e.message.includes(JSON.stringify(CATASTROPHIC)) && /took more than/.test(e.message));
  // The model's thread was never blocked: runs go on, and the tokenizer
  // restarts for texts it can handle.
  assert.equal(session.run([1, 2, 3]).nTokens, 3);
  const { ids } = await session.tokenize('hello there');
  assert.ok(ids.length > 0);
  session.dispose();
});

test('other runaway patterns (a normalizer\'s Replace, a pre-tokenizer\'s Split) are stopped alike', async () => {
  const variants = [
    ['normalizer', { type: 'Replace', pattern: { Regex: '(a|aa)+$' }, content: '' }],
    ['pre_tokenizer', { type: 'Split', pattern: { Regex: '(x+x+)+y' }, behavior: 'Isolated', invert: false }],
  ];
  for (const [where, step] of variants) {
    const dir = copyModel('gpt2', (d) => {
      const vocab = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`t${i}`, i]));
      fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify({
        version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
        model: { type: 'WordLevel', vocab, unk_token: 't0' }, [where]: step,
      }));
    });
    const session = core.createSession();
    await session.load(directorySource(dir));
    const text = `${'a'.repeat(64)}${'x'.repeat(64)}!`;
    await assert.rejects(session.tokenize(text), (e) => e.code === 'bad_file' && e.message.includes(JSON.stringify(step.pattern.Regex)), where);
    assert.equal(session.run([1, 2]).nTokens, 2);
    session.dispose();
  }
});

test('a tokenizer larger than the embedding is reported as a warning', async () => {
  const session = core.createSession();
  const dir = copyModel('gpt2', (d) => {
    const vocab = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`t${i}`, i]));
    fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify({
      version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
      model: { type: 'WordLevel', vocab, unk_token: 't0' },
    }));
  });
  const info = await session.load(directorySource(dir));
  assert.ok(info.warnings.some((w) => /300 tokens.*128/.test(w)), JSON.stringify(info.warnings));
  session.dispose();
});
