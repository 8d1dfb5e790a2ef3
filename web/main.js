// headscope page entry. For now: proves the pipe page -> worker -> wasm core
// -> page by asking the core for the singular values of a small matrix and
// drawing them. The explorer views replace this as the core features land.
import { HeadscopeClient } from './client.js';

const status = document.getElementById('status');
const output = document.getElementById('singular-values');

// A 3 x 3 matrix whose singular values are known in closed form: it is
// Q diag(5, 3, 1) with Q a rotation, so they are exactly 5, 3, 1.
const c = Math.cos(0.3);
const s = Math.sin(0.3);
const demoMatrix = [5 * c, -3 * s, 0, 5 * s, 3 * c, 0, 0, 0, 1];

async function main() {
  const client = new HeadscopeClient(new URL('./worker.js', import.meta.url));
  status.textContent = 'starting the wasm core…';
  await client.ready;
  const { values } = await client.call('singularValues', { matrix: demoMatrix, rows: 3, cols: 3 });
  output.replaceChildren();
  for (const value of values) {
    const item = document.createElement('li');
    item.textContent = value.toFixed(4);
    output.append(item);
  }
  output.dataset.values = JSON.stringify(Array.from(values));
  status.textContent = 'ready';
  document.body.dataset.status = 'ready';
}

main().catch((error) => {
  status.textContent = `error: ${error.message}`;
  document.body.dataset.status = 'error';
});
