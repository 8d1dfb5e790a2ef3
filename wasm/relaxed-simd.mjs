// Rewrites the relaxed-SIMD opcodes of a linked wasm module from the
// proposal's prototype numbering, which Emscripten 3.1.6 (clang 14) emits and
// no engine accepts any more, to the standard one:
//   f32x4.fma 0xfd 0xaf 0x01  ->  f32x4.relaxed_madd 0xfd 0x85 0x02
//   f64x2.fma 0xfd 0xcf 0x01  ->  f64x2.relaxed_madd 0xfd 0x87 0x02
// The two encodings have the same length, so the rewrite is in place. The
// prototype instructions computed op1 + op2 * op3, the standard ones compute
// op1 * op2 + op3: kernels.cpp writes its operands in the standard order and
// relies on this rewrite (see HS_MADD4 and HS_MADD2). Any other prototype
// relaxed opcode is refused, as is any instruction this decoder does not know:
// it walks every function body instruction by instruction, so an immediate
// that happens to contain the same bytes is never touched.
//
// Usage: node [--experimental-wasm-relaxed-simd] wasm/relaxed-simd.mjs IN.wasm OUT.wasm
//        [--same-glue A.mjs B.mjs]
// With the node flag (node 20 needs it; browsers do not) the result is also
// validated. --same-glue checks that two Emscripten glue scripts differ only
// in the names of their files: the page runs either module with one glue.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { relaxedSimdSupported } from './features.mjs';

// Prototype opcode -> standard opcode: f32x4.fma -> f32x4.relaxed_madd,
// f64x2.fma -> f64x2.relaxed_madd.
const REWRITES = new Map([[0xaf, 0x105], [0xcf, 0x107]]);
const REWRITTEN = new Set(REWRITES.values());
// Slots the final SIMD opcode table leaves empty, where the prototype put
// its relaxed instructions (0xaf among them).
const PROTOTYPE_RELAXED = new Set([0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0,
  0xd2, 0xd3, 0xd4, 0xe2, 0xee]);

class Reader {
  constructor(bytes, pos = 0) {
    this.bytes = bytes;
    this.pos = pos;
  }

  byte() {
    if (this.pos >= this.bytes.length) throw new Error('unexpected end of module');
    return this.bytes[this.pos++];
  }

  // Unsigned or signed LEB128; returns the value as a Number (exact for the
  // opcode and index sizes read here; constants are only skipped).
  leb() {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      if (shift < 32) result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(b & 0x80)) return result;
      if (shift > 70) throw new Error(`bad LEB128 at ${this.pos}`);
    }
  }

  skip(n) {
    this.pos += n;
    if (this.pos > this.bytes.length) throw new Error('unexpected end of module');
  }
}

function skipMemarg(r) {
  const at = r.pos;
  // Bit 6 of the alignment field announces a memory index (multi-memory),
  // which clang 14 never emits: refuse rather than mis-step.
  if (r.leb() & 0x40) throw new Error(`memarg at ${at}: a memory index (multi-memory) this rewrite does not know`);
  r.leb();  // offset
}

function skipBlockType(r) {
  const b = r.bytes[r.pos];
  if (b === 0x40 || (b >= 0x6f && b <= 0x7f)) r.skip(1);  // empty or a value type
  else r.leb();                                           // a type index (s33)
}

// One SIMD instruction after the 0xfd prefix; returns the patch position or -1.
function simd(r, patches) {
  const at = r.pos;
  const op = r.leb();
  if (op <= 0x0b || op === 0x5c || op === 0x5d) return skipMemarg(r);  // loads, store, load_zero
  if (op === 0x0c || op === 0x0d) return r.skip(16);                   // v128.const, i8x16.shuffle
  if (op >= 0x15 && op <= 0x22) return r.skip(1);                      // extract / replace lane
  if (op >= 0x54 && op <= 0x5b) {                                      // load / store lane
    skipMemarg(r);
    return r.skip(1);
  }
  if (REWRITES.has(op)) {
    if (r.pos - at !== 2) throw new Error(`fma at ${at}: unexpected opcode encoding`);
    patches.push({ at, op: REWRITES.get(op) });
    return undefined;
  }
  if (REWRITTEN.has(op)) return undefined;  // already rewritten
  if (PROTOTYPE_RELAXED.has(op) || op > 0xff) {
    throw new Error(`SIMD opcode 0x${op.toString(16)} at ${at}: a relaxed-SIMD instruction this rewrite does not know`);
  }
  return undefined;  // every other SIMD instruction has no immediate
}

function instruction(r, patches) {
  const at = r.pos;
  const op = r.byte();
  if (op <= 0x01 || op === 0x05 || op === 0x0b || op === 0x0f || op === 0x1a || op === 0x1b || op === 0xd1) return;
  if (op >= 0x02 && op <= 0x04) return skipBlockType(r);
  if (op === 0x0c || op === 0x0d || (op >= 0x20 && op <= 0x26) || op === 0x3f || op === 0x40 || op === 0x10 ||
      op === 0x12 || op === 0xd2) {
    r.leb();
    return;
  }
  if (op === 0x0e) {  // br_table
    for (let n = r.leb(); n >= 0; --n) r.leb();
    return;
  }
  if (op === 0x11 || op === 0x13) {  // call_indirect: type, table
    r.leb();
    r.leb();
    return;
  }
  if (op === 0x1c) {  // select with types
    for (let n = r.leb(); n > 0; --n) r.byte();
    return;
  }
  if (op >= 0x28 && op <= 0x3e) return skipMemarg(r);
  if (op === 0x41 || op === 0x42) {
    r.leb();
    return;
  }
  if (op === 0x43) return r.skip(4);
  if (op === 0x44) return r.skip(8);
  if (op >= 0x45 && op <= 0xc4) return;  // numeric, no immediates
  if (op === 0xd0) return r.skip(1);     // ref.null type
  if (op === 0xfc) {
    const sub = r.leb();
    if (sub <= 7) return;
    const immediates = { 8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1 }[sub];
    if (immediates === undefined) throw new Error(`0xfc ${sub} at ${at}: unknown instruction`);
    for (let i = 0; i < immediates; ++i) r.leb();
    return;
  }
  if (op === 0xfd) return simd(r, patches);
  if (op === 0xfe) {  // atomics (the threaded build): a memarg each, but the fence's zero byte
    const sub = r.leb();
    if (sub === 0x03) return r.skip(1);
    if (sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e)) return skipMemarg(r);
    throw new Error(`0xfe ${sub} at ${at}: unknown atomic instruction`);
  }
  throw new Error(`opcode 0x${op.toString(16)} at ${at}: unknown instruction`);
}

// The prototype fma opcodes: {at: position after the 0xfd prefix, op: the
// standard opcode that replaces it}.
export function findPrototypeFma(bytes) {
  const r = new Reader(bytes);
  const magic = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  if (!magic.every((b, i) => bytes[i] === b)) throw new Error('not a wasm module (version 1)');
  r.pos = 8;
  const patches = [];
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.leb();
    const end = r.pos + size;
    if (id === 10) {  // code
      for (let n = r.leb(); n > 0; --n) {
        const bodySize = r.leb();
        const bodyEnd = r.pos + bodySize;
        for (let groups = r.leb(); groups > 0; --groups) {  // locals
          r.leb();
          r.byte();
        }
        while (r.pos < bodyEnd) instruction(r, patches);
        if (r.pos !== bodyEnd) throw new Error(`function body ending at ${bodyEnd}: instructions overrun it`);
      }
      if (r.pos !== end) throw new Error('code section size mismatch');
    }
    r.pos = end;
  }
  return patches;
}

export function patchRelaxedSimd(bytes) {
  const out = Uint8Array.from(bytes);
  const patches = findPrototypeFma(out);
  for (const { at, op } of patches) {
    out[at] = 0x80 | (op & 0x7f);
    out[at + 1] = op >> 7;
  }
  return { bytes: out, count: patches.length };
}

// (A threaded glue also names its pool threads' script, NAME.worker.js.)
function sameGlue(a, b) {
  const strip = (file) => {
    const base = path.basename(file, '.mjs');
    return fs.readFileSync(file, 'utf8').replaceAll(`${base}.wasm`, 'CORE.wasm').replaceAll(`${base}.worker.js`, 'CORE.worker.js');
  };
  return strip(a) === strip(b);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [input, output, flag, glueA, glueB] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: node wasm/relaxed-simd.mjs IN.wasm OUT.wasm [--same-glue A.mjs B.mjs]');
    process.exit(2);
  }
  const { bytes, count } = patchRelaxedSimd(fs.readFileSync(input));
  if (count === 0) {
    console.error(`${input}: no f32x4.fma or f64x2.fma to rewrite (was it compiled with -mrelaxed-simd?)`);
    process.exit(1);
  }
  if (!relaxedSimdSupported()) {
    console.error('this node cannot check the rewritten module: run it with --experimental-wasm-relaxed-simd');
    process.exit(1);
  }
  if (!WebAssembly.validate(bytes)) {
    console.error(`${output}: the rewritten module does not validate`);
    process.exit(1);
  }
  if (flag === '--same-glue' && !sameGlue(glueA, glueB)) {
    console.error(`${glueA} and ${glueB} differ beyond the .wasm name: one glue cannot load both modules`);
    process.exit(1);
  }
  fs.writeFileSync(output, bytes);
  console.log(`${path.basename(output)}: ${count} relaxed_madd (f32x4 and f64x2)`);
}
