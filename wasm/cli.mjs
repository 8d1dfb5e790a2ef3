#!/usr/bin/env node
// headscope on the command line: the same wasm module as the page, under node.
//
//   headscope info MODEL
//   headscope attn MODEL (--text TEXT | --ids 1,2,3) [--prepend-bos] [--out FILE.npy|FILE.json]
//   headscope metrics MODEL [--raw|--processed] [--attention-only] [--out FILE.json|DIR]
//   headscope detect MODEL (--text TEXT | --ids ...) [--measure mul|abs] [--exclude-bos] [--exclude-current-token] [--out FILE.json]
//   headscope ablate MODEL (--text TEXT | --ids ...) --heads L0H1,L1H3 [--mode zero|mean] [--out FILE.json]
//   headscope importance MODEL (--text TEXT | --ids ...) [--mode zero|mean] [--out FILE.json]
//   headscope patch MODEL --clean TEXT --corrupt TEXT --answer A [--wrong B] [--what heads|heads_by_position|resid|q|k|v|path] [--receiver L9H9:q,L9G2:k] [--direction denoise|noise] [--metric logit_diff|loss] [--position P] [--prepend-bos] [--out FILE.json]
//   headscope dla MODEL --text TEXT --answer A [--wrong B] [--position P] [--prepend-bos] [--out FILE.json]
//   headscope circuits MODEL [--raw|--processed] [--heads L1H3,...] [--sample N] [--seed S] [--positions P] [--out FILE.json]
//   headscope corpus MODEL [--corpus FILE.txt|FILE.jsonl|FILE.parquet | --dataset OWNER/NAME [--config C] [--split S] [--revision R] [--dataset-file PATH]] [--field NAME] [--texts N] [--tokens T] [--seed S] [--resamples B] [--importance [--mode zero|mean]] [--out DIR]
//
// corpus: per-head statistics over texts (ModelSession.corpus), each with its
// mean, 95 % bootstrap interval and chance level; without --corpus, the
// built-in corpus (public/corpora/stories.txt). --out DIR: DIR/corpus.json
// plus each statistic's per-text values as DIR/<statistic>_per_text.npy
// [texts, L, H]; no --out: the JSON on stdout. --importance adds
// `importance` (ModelSession.corpusImportance: E_x |dL/dxi|, leave-one-out
// with intervals, the held-out pruning curve; L * H forwards per text).
//
// patch: activation patching (ModelSession.patch) of every head, head and
// position, residual position or q/k/v input, or with --what path, path
// patching from every sender head to the logits or to the --receiver
// inputs (ModelSession.pathPatch). Effects are normalised: 0 = the corrupted
// run's metric, 1 = the clean run's. --answer/--wrong: one-token texts
// (' Mary', with its leading space in GPT-2-style vocabularies) or #ID.
// dla: direct logit attribution of every head at every position.
// circuits: the full circuits from the weights: ARENA's diagonal tests of
// W_E OV W_U and W_E QK W_E^T (exact up to --sample tokens, else on a seeded
// sample of that many), and the positional QK circuit's previous- and
// current-token attention (learned positions only).
//
// --threads N (every command): the threaded build of the core on N threads
// (default: the machine's cores, at most 8; 1: the build without threads).
// The numbers are the same bits either way.
//
// MODEL is a local folder (config.json, model.safetensors or shards,
// tokenizer.json) or a Hugging Face repo id (owner/name[@revision]); the hub
// address can be changed with --endpoint URL or HEADSCOPE_HUB_ENDPOINT.
// --attention-only (info, metrics) reads only the attention weights and the
// blocks' norms: from the hub, only those bytes are downloaded.
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { asyncBufferFromFile } from 'hyparquet';

import { corpusFormat, parseCorpus } from './corpus_files.mjs';
import { datasetTexts, parquetTexts } from './corpus_parquet.mjs';
import { MAX_THREADS } from './features.mjs';
import { encodeNpy } from './npy.mjs';
import { nonFiniteWarning } from './headscope.mjs';
import { snakeName, toJson } from './names.mjs';
import { directorySource, loadHeadscope } from './node.mjs';
import { headKey, isRepoId, parseHeadKey, parseTokenIds } from './ids.mjs';
import { HUB_ENDPOINT, hubSource } from './sources.mjs';

const usage = `usage:
  headscope info MODEL
  headscope attn MODEL (--text TEXT | --ids 1,2,3) [--prepend-bos] [--out FILE.npy|FILE.json]
  headscope metrics MODEL [--raw|--processed] [--attention-only] [--out FILE.json|DIR]
  headscope detect MODEL (--text TEXT | --ids 1,2,3) [--measure mul|abs] [--exclude-bos] [--exclude-current-token] [--out FILE.json]
  headscope ablate MODEL (--text TEXT | --ids 1,2,3) --heads L0H1,L1H3 [--mode zero|mean] [--out FILE.json]
  headscope importance MODEL (--text TEXT | --ids 1,2,3) [--mode zero|mean] [--out FILE.json]
  headscope corpus MODEL [--corpus FILE.txt|FILE.jsonl|FILE.parquet | --dataset OWNER/NAME [--config C] [--split S] [--revision R] [--dataset-file PATH]] [--field NAME] [--texts N] [--tokens T] [--seed S] [--resamples B] [--importance [--mode zero|mean]] [--out DIR]
  headscope patch MODEL --clean TEXT --corrupt TEXT --answer A [--wrong B] [--what heads|heads_by_position|resid|q|k|v|path] [--receiver L9H9:q,L9G2:k] [--direction denoise|noise] [--metric logit_diff|loss] [--position P] [--prepend-bos] [--out FILE.json]
  headscope dla MODEL --text TEXT --answer A [--wrong B] [--position P] [--prepend-bos] [--out FILE.json]
  headscope circuits MODEL [--raw|--processed] [--heads L1H3,...] [--sample N] [--seed S] [--positions P] [--out FILE.json]
MODEL: a local model folder, or a Hugging Face repo id (owner/name[@revision]); HF_TOKEN, when set, is
sent to huggingface.co (only) for gated or private repositories. --threads N: the core on N threads
(default: the cores, at most 8)`;

function fail(message) {
  console.error(`headscope: ${message}`);
  process.exit(1);
}

function modelSource(spec, endpoint) {
  if (fs.existsSync(spec)) {
    if (!fs.statSync(spec).isDirectory()) fail(`${spec} is not a folder (expected config.json and model.safetensors inside)`);
    return directorySource(spec);
  }
  const [repo, revision = 'main'] = spec.split('@');
  if (!isRepoId(repo)) fail(`${spec} is neither a local folder nor a Hugging Face repo id`);
  // HF_TOKEN (gated or private repositories) goes to the hub itself only.
  const token = endpoint === HUB_ENDPOINT ? process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN || '' : '';
  return hubSource(repo, revision, { endpoint, token });
}

function parseIds(text) {
  const { ids } = parseTokenIds(text);
  if (!ids?.length) fail(`--ids must be comma-separated non-negative integers, got "${text}"`);
  return ids;
}

async function main() {
  const { values: options, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      text: { type: 'string' },
      ids: { type: 'string' },
      out: { type: 'string' },
      'prepend-bos': { type: 'boolean', default: false },
      raw: { type: 'boolean', default: false },
      measure: { type: 'string', default: 'mul' },
      'exclude-bos': { type: 'boolean', default: false },
      'exclude-current-token': { type: 'boolean', default: false },
      heads: { type: 'string' },
      mode: { type: 'string', default: 'zero' },
      processed: { type: 'boolean', default: false },
      'attention-only': { type: 'boolean', default: false },
      corpus: { type: 'string' },
      dataset: { type: 'string' },
      config: { type: 'string', default: 'default' },
      split: { type: 'string', default: 'train' },
      revision: { type: 'string', default: 'refs/convert/parquet' },
      'dataset-file': { type: 'string' },
      field: { type: 'string', default: 'text' },
      texts: { type: 'string', default: '64' },
      tokens: { type: 'string', default: '128' },
      seed: { type: 'string', default: '0' },
      resamples: { type: 'string', default: '1000' },
      importance: { type: 'boolean', default: false },
      clean: { type: 'string' },
      corrupt: { type: 'string' },
      answer: { type: 'string' },
      wrong: { type: 'string' },
      what: { type: 'string', default: 'heads' },
      receiver: { type: 'string' },
      direction: { type: 'string' },
      metric: { type: 'string', default: 'logit_diff' },
      position: { type: 'string', default: '-1' },
      sample: { type: 'string', default: '1024' },
      positions: { type: 'string', default: '64' },
      endpoint: { type: 'string', default: process.env.HEADSCOPE_HUB_ENDPOINT || HUB_ENDPOINT },
      threads: { type: 'string', default: String(Math.min(os.cpus().length, MAX_THREADS)) },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, modelSpec] = positionals;
  if (options.help || !command) return console.log(usage);
  if (!['info', 'attn', 'metrics', 'detect', 'ablate', 'importance', 'corpus', 'patch', 'dla', 'circuits'].includes(command)) fail(`unknown command "${command}"\n${usage}`);
  if (!modelSpec) fail(`${command} needs a MODEL\n${usage}`);

  const threads = Number(options.threads);
  if (!Number.isInteger(threads) || threads < 1) fail(`--threads must be a whole number of at least 1, got ${JSON.stringify(options.threads)}`);
  const core = await loadHeadscope(undefined, { threads });
  const session = core.createSession();
  if (options['attention-only'] && !['info', 'metrics'].includes(command)) fail(`--attention-only loads no embeddings or MLPs: ${command} needs the whole model`);
  const info = await session.load(modelSource(modelSpec, options.endpoint), { attentionOnly: options['attention-only'] });
  for (const warning of info.warnings) console.error(`headscope: warning: ${warning}`);
  if (command === 'info') return console.log(toJson(info, 2));
  if (command === 'metrics') return metrics(session, info, options);
  if (command === 'corpus') return corpus(session, info, options);
  if (command === 'patch' || command === 'dla') return causal(command, session, info, options);
  if (command === 'circuits') return circuits(session, info, options);

  if ((options.text === undefined) === (options.ids === undefined)) fail(`${command} needs exactly one of --text or --ids`);
  const { ids, tokens } = options.ids !== undefined
    ? { ids: parseIds(options.ids), tokens: null }
    : await session.tokenize(options.text, { prependBos: options['prepend-bos'] });
  if (command !== 'attn') return behaviour(command, session, info, ids, tokens, options);
  const run = session.run(ids);
  const warning = nonFiniteWarning(run);
  if (warning) console.error(`headscope: warning: ${warning}`);
  const shape = [run.nLayer, run.nHead, run.nTokens, run.nTokens];
  if (!options.out) {
    console.log(JSON.stringify({ ids, tokens, shape, loss: run.loss }));
    const T = run.nTokens;
    for (let l = 0; l < run.nLayer; l++) {
      for (let h = 0; h < run.nHead; h++) {
        console.log(`L${l}H${h}`);
        for (let i = 0; i < T; i++) {
          const row = run.patterns.subarray(((l * run.nHead + h) * T + i) * T, ((l * run.nHead + h) * T + i + 1) * T);
          console.log(Array.from(row, (p) => p.toFixed(3)).join(' '));
        }
      }
    }
  } else if (options.out.endsWith('.npy')) {
    fs.writeFileSync(options.out, encodeNpy(run.patterns, shape));
  } else if (options.out.endsWith('.json')) {
    fs.writeFileSync(options.out, JSON.stringify({ ids, tokens, shape, loss: run.loss, patterns: Array.from(run.patterns) }));
  } else {
    fail(`--out must end in .npy or .json, got ${options.out}`);
  }
}

// Parses "L0H1,L1H3" into flat head indices l * H + h.
function parseHeads(text, info) {
  return text.split(',').map((name) => {
    const head = parseHeadKey(name.trim());
    if (!head) fail(`--heads takes names like L0H1,L1H3; got "${name}"`);
    const { layer: l, head: h } = head;
    if (l >= info.nLayer || h >= info.nHead) fail(`${name} is not a head of this model (${info.nLayer} layers x ${info.nHead} heads)`);
    return l * info.nHead + h;
  });
}

// detect, ablate and importance: JSON on stdout or in --out FILE.json.
function behaviour(command, session, info, ids, tokens, options) {
  if (!['zero', 'mean'].includes(options.mode)) fail(`--mode must be zero or mean, got "${options.mode}"`);
  const names = Array.from({ length: info.nLayer * info.nHead }, (_, i) => headKey(Math.floor(i / info.nHead), i % info.nHead));
  let result;
  if (command === 'detect') {
    if (!['mul', 'abs'].includes(options.measure)) fail(`--measure must be mul or abs, got "${options.measure}"`);
    result = session.behavior(ids, { measure: options.measure, excludeBos: options['exclude-bos'], excludeCurrentToken: options['exclude-current-token'] });
  } else if (command === 'ablate') {
    if (!options.heads) fail('ablate needs --heads, e.g. --heads L0H1,L1H3');
    const heads = parseHeads(options.heads, info);
    const r = session.ablate(ids, heads, { mode: options.mode });
    result = { mode: r.mode, objective: r.objective, masked_positions: r.maskedPositions ?? null, heads: heads.map((i) => names[i]), loss_base: r.lossBase, loss: r.loss,
      token_loss_base: Array.from(r.tokenLossBase), token_loss: Array.from(r.tokenLoss), pattern_change: Array.from(r.patternChange) };
  } else {
    const r = session.importance(ids, { mode: options.mode });
    result = { objective: r.objective, masked_positions: r.maskedPositions ?? null, mode: options.mode, loss: r.loss, gradient_importance: Array.from(r.gradientImportance),
      gradient: Array.from(r.gradient), leave_one_out_loss: Array.from(r.leaveOneOutLoss), leave_one_out_delta: Array.from(r.leaveOneOutDelta) };
  }
  const text = toJson({ ids, tokens, heads: names, ...result });
  if (options.out) fs.writeFileSync(options.out, text);
  else console.log(text);
}

// One answer option: '#123' is a token id, anything else a one-token text.
function answerOption(text) {
  if (text === undefined) return undefined;
  return /^#\d+$/.test(text) ? Number(text.slice(1)) : text;
}

// [L, ...rest] nested arrays of a flat list, for JSON readers.
function nested(values, shape) {
  if (shape.length === 1) return Array.from(values);
  const size = values.length / shape[0];
  return Array.from({ length: shape[0] }, (_, i) => nested(values.subarray(i * size, (i + 1) * size), shape.slice(1)));
}

// patch and dla: JSON on stdout or in --out FILE.json.
async function causal(command, session, info, options) {
  if (!options.answer) fail(`${command} needs --answer (a one-token text such as " Mary", or #ID)`);
  const position = Number(options.position);
  if (!Number.isInteger(position) || position < -1) fail(`--position must be -1 (the last) or a token index, got "${options.position}"`);
  const metric = { metric: options.metric, answer: answerOption(options.answer), wrong: answerOption(options.wrong), position, prependBos: options['prepend-bos'] };
  const [L, H] = [info.nLayer, info.nHead];
  let result;
  if (command === 'dla') {
    if (options.text === undefined) fail('dla needs --text');
    const r = await session.dla(options.text, metric);
    result = {
      text: options.text, tokens: r.tokens, answer: r.answerText, wrong: r.wrongText, position: r.position,
      definition: 'each component\'s direct contribution to logit(answer) - logit(wrong) at each position, through the final norm with its scale frozen at the run\'s value; the parts sum to total',
      heads: nested(r.heads, [L, H, r.nTokens]), attn_bias: nested(r.attnBias, [L, r.nTokens]), edit_paths: nested(r.editPaths, [L, r.nTokens]),
      mlp: nested(r.mlp, [L, r.nTokens]), embed: Array.from(r.embed), bias: Array.from(r.bias), total: Array.from(r.total),
    };
  } else {
    if (options.clean === undefined || options.corrupt === undefined) fail('patch needs --clean and --corrupt texts');
    if (options.direction !== undefined && !['denoise', 'noise'].includes(options.direction)) fail(`--direction must be denoise or noise, got "${options.direction}"`);
    if (!['logit_diff', 'loss'].includes(options.metric)) fail(`--metric must be logit_diff or loss, got "${options.metric}"`);
    const path = options.what === 'path';
    if (options.receiver && !path) fail('--receiver needs --what path');
    if (options.direction && path) fail('path patching has no --direction: it always runs the clean text with the sender from the corrupted one');
    const r = path
      ? await session.pathPatch(options.clean, options.corrupt, { ...metric, receivers: options.receiver ? options.receiver.split(',').map((x) => x.trim()) : [] })
      : await session.patch(options.clean, options.corrupt, { ...metric, target: options.what, direction: options.direction ?? 'denoise' });
    const shape = path ? [L, H] : Array.from(r.shape);
    const axes = { heads: ['layer', 'head'], heads_by_position: ['layer', 'head', 'position'], resid: ['layer', 'position'], q: ['layer', 'head'], k: ['layer', 'kv_head'], v: ['layer', 'kv_head'] };
    result = {
      clean: { text: options.clean, tokens: r.cleanTokens }, corrupt: { text: options.corrupt, tokens: r.corruptTokens },
      metric: r.metric, answer: r.answerText, wrong: r.wrongText, position: r.position,
      clean_value: r.clean, corrupt_value: r.corrupt,
      ...(path
        ? { what: 'path', receivers: r.receivers.length ? r.receivers : 'logits', definition: 'ARENA path patching: each sender head from the corrupted run, every other head frozen at its clean value, MLPs recomputed; receivers\' q/k/v then patched into a clean run. null: no path (a sender at or after the last receiver\'s layer; a sender reaches the receivers in later layers only)' }
        : { what: r.target, direction: r.direction }),
      normalisation: 'effect = (value - corrupt_value) / (clean_value - corrupt_value): 0 = corrupted, 1 = clean',
      axes: path ? ['sender_layer', 'sender_head'] : axes[r.target], shape,
      effect: nested(r.effect, shape), value: nested(r.value, shape),
    };
  }
  const text = toJson(result, 1);
  if (options.out) fs.writeFileSync(options.out, text);
  else console.log(text);
}

// The full circuits of every head (or --heads): JSON on stdout or --out.
function circuits(session, info, options) {
  if (options.raw && options.processed) fail('give at most one of --raw and --processed');
  const variant = options.processed ? 'processed' : 'raw';
  const heads = options.heads ? parseHeads(options.heads, info) : [];
  const r = session.fullCircuits({ variant, heads, maxRows: positiveInt(options, 'sample'), seed: positiveInt(options, 'seed') });
  let positional = null;
  try {
    positional = session.positionalCircuit({ variant, heads, maxPositions: positiveInt(options, 'positions') });
  } catch (error) {
    positional = { note: error.message };
  }
  const names = Array.from(r.heads, (i) => headKey(Math.floor(i / info.nHead), i % info.nHead));
  const test = (t, k) => ({ top1: t.top1[k], top5: t.top5[k], median_rank: t.medianRank[k], mean_rank: t.meanRank[k] });
  const result = {
    variant, vocab: r.dVocab, rows: r.nRows, sampled: r.sampled, seed: r.sampled ? r.seed : null,
    rows_note: r.sampled ? `the rows of ${r.nRows} tokens drawn uniformly without replacement (seed ${r.seed}); every column` : 'every token',
    chance: r.chance,
    definitions: {
      full_ov: 'W_E W_V W_O W_U [V, V], row = the token attended to; top1: fraction of rows whose own token has the largest logit (ARENA), rank: entries above the diagonal',
      token_qk: 'W_E W_Q W_K^T W_E^T [V, V], row = the query token; the same tests: does a token score its own copies first',
      positional_qk: 'causal softmax of W_pos W_Q W_K^T W_pos^T times the attention scale; previous: mean attention to position i-1',
    },
    positional_positions: positional.nPositions ?? null, positional_previous_chance: positional.previousChance ?? null, positional_note: positional.note ?? null,
    heads: names.map((head, k) => ({
      head, full_ov: test(r.ov, k), token_qk: test(r.qk, k),
      positional_qk: positional.previous ? { previous: positional.previous[k], current: positional.current[k] } : null,
    })),
  };
  const text = toJson(result, 1);
  if (options.out) fs.writeFileSync(options.out, text);
  else console.log(text);
}

const BUILTIN_CORPUS = fileURLToPath(new URL('../public/corpora/stories.txt', import.meta.url));

function positiveInt(options, name) {
  const value = Number(options[name]);
  if (!Number.isInteger(value) || value < 0 || (name !== 'seed' && value < 1)) fail(`--${name} must be a ${name === 'seed' ? 'non-negative' : 'positive'} integer, got "${options[name]}"`);
  return value;
}

// Per-head statistics over a corpus, with intervals and chance levels.
async function corpus(session, info, options) {
  if (options.corpus && options.dataset) fail('give at most one of --corpus and --dataset');
  const file = options.corpus ?? BUILTIN_CORPUS;
  const read = { field: options.field, limit: positiveInt(options, 'texts') };
  let parsed;
  try {
    if (options.dataset) {
      const d = await datasetTexts(options.dataset, { config: options.config, split: options.split, revision: options.revision, path: options['dataset-file'] ?? null, endpoint: options.endpoint, ...read });
      parsed = { ...d, source: `dataset ${options.dataset} (${d.files.join(', ')})` };
    } else {
      if (!fs.existsSync(file)) fail(`${file}: no such corpus file`);
      parsed = corpusFormat(file) === 'parquet'
        ? await parquetTexts(file, await asyncBufferFromFile(file), read)
        : parseCorpus(file, fs.readFileSync(file, 'utf8'), read);
    }
  } catch (error) {
    fail(error.message);
  }
  const maxTokens = positiveInt(options, 'tokens');
  const common = { maxTokens, seed: positiveInt(options, 'seed'), resamples: positiveInt(options, 'resamples') };
  const r = await session.corpus(parsed.texts, common);
  const [L, H] = [info.nLayer, info.nHead];
  const heads = [];
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const i = l * H + h;
      const statistics = Object.fromEntries(Object.entries(r.metrics).map(([name, m]) => [name, { mean: m.mean[i], lo: m.lo[i], hi: m.hi[i], chance: m.chance[i] }]));
      const roles = Object.fromEntries(r.roles.map((role, k) => [role, r.roleShare[i * r.roles.length + k]]));
      // Where the head does its most frequent role most strongly: text index, query -> key, weight, the tokens around.
      const examples = r.topExamples[i].map((e) => ({ text: e.text, query: e.query, key: e.key, weight: e.weight, tokens_from: e.start, tokens: e.tokens }));
      heads.push({ head: headKey(l, h), statistics, role_share: roles, dominant_offset: r.dominantOffset[i], dominant_offset_agreement: r.dominantOffsetAgreement[i], top_examples: examples });
    }
  }
  const summary = {
    model: info.label ?? undefined,
    corpus: { file: parsed.source ?? options.corpus ?? 'built-in (public/corpora/stories.txt)', format: parsed.format, texts: r.nTexts, tokens_per_text: Array.from(r.nTokens),
      max_tokens: r.maxTokens, truncated: r.nTruncated, note: `each text cut to its first ${r.maxTokens} tokens (BOS included); ${r.nTruncated} of ${r.nTexts} were longer` },
    interval: { level: r.level, method: 'percentile bootstrap of the mean over texts', resamples: r.resamples, seed: r.seed },
    chance: 'each statistic for attention spread uniformly over the keys each row may see, on the same texts',
    measure: r.measure, heads,
  };
  if (options.importance) {
    const m = await session.corpusImportance(parsed.texts, { ...common, mode: options.mode });
    summary.importance = {
      objective: m.objective, mode: m.mode, loss: m.loss,
      method: 'gradient: E_x |dL/dxi_h| (Michel et al.), normalized: divided by its layer\'s L2 norm; leave_one_out: mean loss change over texts with a percentile-bootstrap interval; pruning: order by the normalized gradient importance of the even-indexed texts, loss on the odd-indexed texts, next to random orders (min-max band)',
      heads: heads.map(({ head }, i) => ({ head, gradient: m.gradient[i], gradient_normalized: m.gradientNormalized[i], leave_one_out: { mean: m.looMean[i], lo: m.looLo[i], hi: m.looHi[i] } })),
      pruning: { choose_texts: Array.from(m.chooseTexts), evaluate_texts: Array.from(m.evaluateTexts), order: Array.from(m.order, (i) => headKey(Math.floor(i / H), i % H)),
        n_removed: Array.from(m.nRemoved), loss: Array.from(m.pruningLoss), random_orders: m.nRandom, random_min: Array.from(m.randomMin), random_max: Array.from(m.randomMax), random_mean: Array.from(m.randomMean) },
    };
  }
  if (!options.out) return console.log(toJson(summary, 1));
  fs.mkdirSync(options.out, { recursive: true });
  fs.writeFileSync(`${options.out}/corpus.json`, toJson(summary, 1));
  for (const [name, m] of Object.entries(r.metrics)) {
    fs.writeFileSync(`${options.out}/${snakeName(name)}_per_text.npy`, encodeNpy(m.perText, [r.nTexts, L, H]));
  }
}

// Every per-head weight metric and the pairwise matrices of one weight
// variant. --out FILE.json: one JSON file; --out DIR: DIR/metrics.json with
// the per-head numbers plus the large arrays as .npy; no --out: JSON on stdout.
function metrics(session, info, options) {
  if (options.raw && options.processed) fail('give at most one of --raw and --processed');
  const variant = options.processed ? 'processed' : 'raw';
  const [L, H, dh] = [info.nLayer, info.nHead, info.dHead];
  const { spectra, redundancy: write, composition } = session.weightGeometry({ variant });
  const redundancy = Object.fromEntries(['Q', 'K', 'V', 'O'].map((kind) => [kind, kind === 'O' ? write : session.redundancy({ variant, kind })]));
  const copying = info.hasLmHead ? session.copying({ variant }) : null;
  const merges = session.mergeCandidates({ variant, topN: 20 });
  const heads = [];
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const i = l * H + h;
      const circuit = (c) => ({
        sigma: Array.from(spectra[c].sigma.subarray(i * dh, (i + 1) * dh)),
        frobenius: spectra[c].frobenius[i], effective_rank: spectra[c].effectiveRank[i],
        top1_share: spectra[c].top1Share[i], [`top${spectra.topK}_share`]: spectra[c].topkShare[i],
      });
      heads.push({ head: headKey(l, h), layer: l, index: h, ov: circuit('ov'), qk: circuit('qk'),
        ov_copying_score: copying ? copying.copyingScore[i] : null, ov_positive_fraction: copying ? copying.positiveFraction[i] : null });
    }
  }
  const summary = {
    model: info, variant, qk_ignores_rotary: spectra.qkIgnoresRotary, qk_ignores_qk_norm: spectra.qkIgnoresQkNorm, ov_ignores_post_norm: spectra.ovIgnoresPostNorm, qk_ignores_softcap: spectra.qkIgnoresSoftcap, heads,
    // Each redundancy's chance level and this model's own spread (the matrices are in redundancy_*).
    redundancy_levels: Object.fromEntries(Object.entries(redundancy).map(([kind, r]) => [kind, { chanceFullRank: r.levels.chanceFullRank, pairs: r.levels.pairs }])),
    // Each kind's empirical null (pairs l1 >= l2), Benjamini-Hochberg flags
    // and per-gap check; the p-values are in composition_p_*.
    composition_significance: {
      fdr: composition.significance.fdr,
      null: 'the same score over pairs that cannot compose: l1 > l2 and l1 == l2, self-pairs excluded; p = (1 + #{null >= s}) / (N + 1)',
      ...Object.fromEntries(['q', 'k', 'v'].map((k) => { const { p, ...rest } = composition.significance[k]; return [k, rest]; })),
    },
    composition_baseline: { ...composition.baseline, use: 'a reference level only, not a null: real heads beat i.i.d. random matrices for their shared anisotropy' },
    merge_candidates: merges.pairs,
    conventions: 'TransformerLens: OV = W_V W_O, QK = W_Q W_K^T, row vectors; redundancy = ||Q_i^T Q_j||_F^2 / d_head; composition [L,H,L,H] for l1 < l2, composition_null [L,H,L,H] for l1 >= l2',
  };
  const large = {
    ...Object.fromEntries(Object.entries(redundancy).map(([kind, r]) => [`redundancy_${kind}`, [r.overlap, [L * H, L * H]]])),
    ...Object.fromEntries(['q', 'k', 'v'].flatMap((k) => [
      [`composition_${k}`, [composition[k], [L, H, L, H]]],
      [`composition_null_${k}`, [composition[`null${k.toUpperCase()}`], [L, H, L, H]]],
      [`composition_p_${k}`, [composition.significance[k].p, [L, H, L, H]]],
    ])),
  };
  if (!options.out || options.out.endsWith('.json')) {
    const all = { ...summary, ...Object.fromEntries(Object.entries(large).map(([name, [values]]) => [name, Array.from(values)])) };
    const text = toJson(all);
    if (options.out) fs.writeFileSync(options.out, text);
    else console.log(text);
    return;
  }
  fs.mkdirSync(options.out, { recursive: true });
  fs.writeFileSync(`${options.out}/metrics.json`, toJson(summary, 1));
  for (const [name, [values, shape]] of Object.entries(large)) fs.writeFileSync(`${options.out}/${name}.npy`, encodeNpy(values, shape));
}

main().catch((error) => fail(error.message));
