// Helpers shared by the node tests: fixture paths, .npy reading, and a
// comparison that reports the worst mismatch with its index.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseNpy } from '../../wasm/npy.mjs';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixturesDir = process.env.HEADSCOPE_FIXTURES || path.resolve(repoRoot, '..', 'shared', 'fixtures');
export const oracleDir = (name) => path.join(fixturesDir, 'hf-oracle', name);
export const ORACLE_MODELS = ['gpt2', 'gpt_neox', 'llama', 'bert', 'gpt_neo', 'opt'];

export function readNpy(file) {
  return parseNpy(fs.readFileSync(file));
}

export function oracleIds(name) {
  return Array.from(readNpy(path.join(oracleDir(name), 'input_ids.npy')).data);
}

// Returns {maxError, index} of |actual - expected|; throws on length mismatch.
export function worstMismatch(actual, expected) {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != expected ${expected.length}`);
  let maxError = 0;
  let index = -1;
  for (let i = 0; i < actual.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= maxError)) {
      maxError = error;
      index = i;
    }
  }
  return { maxError, index, actual: actual[index], expected: expected[index] };
}

export function tempDir(prefix = 'headscope-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Copies a fixture model folder (config + weights only) to a temp dir and
// lets the caller change it.
export function copyModel(name, edit = () => {}) {
  const dir = tempDir();
  for (const file of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(oracleDir(name), file), path.join(dir, file));
  edit(dir);
  return dir;
}
