// The wasm module's JS API under node: results come back as typed arrays and
// bad input becomes a thrown HeadscopeError, after which the module still works.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HeadscopeError, loadHeadscope } from '../../wasm/node.mjs';

const core = await loadHeadscope();

test('singular values of a rotated diagonal matrix are its diagonal', () => {
  const c = Math.cos(0.7);
  const s = Math.sin(0.7);
  // [[c, -s], [s, c]] . diag(4, 0.5) . extended with a zero column
  const values = core.singularValues([4 * c, -0.5 * s, 0, 4 * s, 0.5 * c, 0], 2, 3);
  assert.ok(values instanceof Float32Array);
  assert.equal(values.length, 2);
  assert.ok(Math.abs(values[0] - 4) < 1e-5, `got ${values[0]}`);
  assert.ok(Math.abs(values[1] - 0.5) < 1e-5, `got ${values[1]}`);
});

test('a matrix of the wrong size is an error naming the sizes, and the module survives it', () => {
  assert.throws(() => core.singularValues([1, 2, 3], 2, 2), (error) => {
    assert.ok(error instanceof HeadscopeError);
    assert.match(error.message, /expected 4 numbers, got 3/);
    return true;
  });
  assert.deepEqual(Array.from(core.singularValues([2, 0, 0, 3], 2, 2)), [3, 2]);
});
