#!/usr/bin/env node
// headscope on the command line: the same wasm module as the page, under node.
//
//   headscope info MODEL
//   headscope attn MODEL (--text TEXT | --ids 1,2,3) [--prepend-bos] [--out FILE.npy|FILE.json]
//
// MODEL is a local folder (config.json, model.safetensors or shards,
// tokenizer.json) or a Hugging Face repo id (owner/name[@revision]); the hub
// address can be changed with --endpoint URL or HEADSCOPE_HUB_ENDPOINT.
import fs from 'node:fs';
import { parseArgs } from 'node:util';

import { encodeNpy } from './npy.mjs';
import { directorySource, loadHeadscope } from './node.mjs';
import { hubSource, isRepoId } from './sources.mjs';

const usage = `usage:
  headscope info MODEL
  headscope attn MODEL (--text TEXT | --ids 1,2,3) [--prepend-bos] [--out FILE.npy|FILE.json]
MODEL: a local model folder, or a Hugging Face repo id (owner/name[@revision])`;

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
  return hubSource(repo, revision, { endpoint });
}

function parseIds(text) {
  const ids = text.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (!ids.length || ids.some((id) => !Number.isInteger(id) || id < 0)) fail(`--ids must be comma-separated non-negative integers, got "${text}"`);
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
      endpoint: { type: 'string', default: process.env.HEADSCOPE_HUB_ENDPOINT || 'https://huggingface.co' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, modelSpec] = positionals;
  if (options.help || !command) return console.log(usage);
  if (!['info', 'attn'].includes(command)) fail(`unknown command "${command}"\n${usage}`);
  if (!modelSpec) fail(`${command} needs a MODEL\n${usage}`);

  const core = await loadHeadscope();
  const session = core.createSession();
  const info = await session.load(modelSource(modelSpec, options.endpoint));
  for (const warning of info.warnings) console.error(`headscope: warning: ${warning}`);
  if (command === 'info') return console.log(JSON.stringify(info, null, 2));

  if ((options.text === undefined) === (options.ids === undefined)) fail('attn needs exactly one of --text or --ids');
  const { ids, tokens } = options.ids !== undefined
    ? { ids: parseIds(options.ids), tokens: null }
    : session.tokenize(options.text, { prependBos: options['prepend-bos'] });
  const run = session.run(ids);
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

main().catch((error) => fail(error.message));
