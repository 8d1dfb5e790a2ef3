// The two wasm builds of the core (wasm/features.mjs): the relaxed-SIMD one
// runs wherever the engine accepts f32x4.relaxed_madd (node 20 needs
// --experimental-wasm-relaxed-simd, which ctest's node.api.relaxed_simd
// passes), and wasm/relaxed-simd.mjs rewrites exactly the prototype opcodes
// clang 14 emits, instruction by instruction.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { CORE_WASM, CORE_WASM_FMA, coreWasmFile, relaxedSimdSupported } from '../../wasm/features.mjs';
import { loadHeadscope, wasmBuildDir } from '../../wasm/node.mjs';
import { findPrototypeFma, patchRelaxedSimd } from '../../wasm/relaxed-simd.mjs';

// A module of one function (v128, v128, v128) -> v128 with body `code`.
function moduleWith(code) {
  const body = [0, ...code, 0x0b];  // no locals
  return new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
    10, body.length + 2, 1, body.length, ...body]);
}
const args = [0x20, 0, 0x20, 1, 0x20, 2];

test('the core loaded is the build this engine runs best', async () => {
  const core = await loadHeadscope();
  assert.equal(core.wasmFile, coreWasmFile());
  assert.equal(core.wasmFile, relaxedSimdSupported() ? CORE_WASM_FMA : CORE_WASM);
});

test('the relaxed-SIMD build is the SIMD128 build with its products fused, nothing else', () => {
  const dir = wasmBuildDir();
  const unpatched = fs.readFileSync(path.join(dir, 'headscope_core_fma_unpatched.wasm'));
  const { bytes, count } = patchRelaxedSimd(unpatched);
  assert.ok(count >= 8, `only ${count} f32x4.fma and f64x2.fma in the kernels build`);
  assert.deepEqual(bytes, new Uint8Array(fs.readFileSync(path.join(dir, CORE_WASM_FMA))));
  let changed = 0;
  for (let i = 0; i < bytes.length; i++) changed += bytes[i] !== unpatched[i];
  assert.equal(changed, 2 * count);  // two bytes of each opcode
  assert.equal(findPrototypeFma(bytes).length, 0);
});

test('the rewrite turns f32x4.fma into relaxed_madd and leaves look-alike immediates alone', () => {
  // v128.const whose 16 immediate bytes contain fd af 01, dropped, then the
  // real instruction.
  const lookalike = [0xfd, 0x0c, 0xfd, 0xaf, 0x01, ...new Array(13).fill(0), 0x1a];
  const { bytes, count } = patchRelaxedSimd(moduleWith([...lookalike, ...args, 0xfd, 0xaf, 0x01]));
  assert.equal(count, 1);
  assert.deepEqual(Array.from(bytes.slice(-4, -1)), [0xfd, 0x85, 0x02]);
  assert.deepEqual(Array.from(bytes.slice(-27, -24)), [0xfd, 0xaf, 0x01]);  // inside the constant
  if (relaxedSimdSupported()) assert.ok(WebAssembly.validate(bytes));
});

test('the rewrite turns f64x2.fma into f64x2.relaxed_madd', () => {
  const { bytes, count } = patchRelaxedSimd(moduleWith([...args, 0xfd, 0xcf, 0x01]));
  assert.equal(count, 1);
  assert.deepEqual(Array.from(bytes.slice(-4, -1)), [0xfd, 0x87, 0x02]);
  if (relaxedSimdSupported()) assert.ok(WebAssembly.validate(bytes));
});

test('the rewrite refuses other prototype relaxed instructions and unknown opcodes', () => {
  assert.throws(() => patchRelaxedSimd(moduleWith([...args, 0xfd, 0xb0, 0x01])), /0xb0 .*relaxed-SIMD instruction/);
  assert.throws(() => patchRelaxedSimd(moduleWith([0xff])), /opcode 0xff .*unknown instruction/);
  // v128.load whose memarg announces a memory index (multi-memory).
  assert.throws(() => patchRelaxedSimd(moduleWith([0x41, 0, 0xfd, 0x00, 0x44, 0x00, 0x00, 0x1a])), /multi-memory/);
  assert.throws(() => patchRelaxedSimd(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /not a wasm module/);
});
