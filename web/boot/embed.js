// embed.html: one view of the explorer, compact, for an <iframe>. The state
// comes from the hash exactly as in the explorer; there are no controls,
// only the figure and a link back to the full explorer. The page reports its
// height to the parent (message {type: 'headscope:size', height}) so a host
// such as <headscope-view> can size the frame to its content.
import { App, textOf } from '../control/app.js';
import { el } from '../views/dom.js';
import { compositionEdges, compositionGraph, compositionGraphNote } from '../figures/charts.js';
import { Heatmap, LineView } from '../views/headview.js';
import { MatrixFigure } from '../figures/matrix.js';
import { modelLabel } from '../state/models.js';
import { HeadGrid } from '../views/overview.js';
import { PatchingView } from '../views/patchingview.js';
import { explorerUrl } from '../export/share.js';
import { parseHash } from '../state/hash.js';
import { Store, ablatedHeads, selectedHead } from '../state/store.js';

const { state: initial } = parseHash(location.hash, location.origin);
const store = new Store(initial);
const app = new App(store, { workerUrl: new URL('./worker.js', import.meta.url) });
const modelName = () => (store.state.model === 'local' ? 'local-model' : modelLabel(store.state.model, store.state.rev));
const root = document.getElementById('embed');
const title = el('span', { id: 'embed-title' });
const status = el('span', { id: 'status', class: 'muted' });
const back = el('a', { class: 'back', target: '_blank', rel: 'noopener', text: 'open in headscope ↗' });
const message = el('div', { id: 'embed-error', class: 'message error', role: 'alert', hidden: true });
const figures = el('div', { class: 'embed-figures' });
// A model on a host other than this page's or the hub's loads only when the
// reader asks for it (control/app.js confirmHost).
const confirm = el('button', { type: 'button', id: 'host-confirm', hidden: true, on: { click: () => app.confirmHost(true) } });
root.append(el('div', { class: 'embed-head' }, [el('span', { class: 'brand-name', text: 'headscope' }), title, status, back]), confirm, message, figures);

const onError = () => {};
// The model view embeds the write-redundancy matrix and the composition
// graph (the two figures that describe the model as a whole).
function embedModelView() {
  const matrixBox = el('section', { class: 'figure', id: 'redundancy-figure' });
  const graphBox = el('section', { class: 'figure graph-wrap', id: 'composition-graph' });
  figures.append(matrixBox, graphBox);
  const matrix = new MatrixFigure(matrixBox, { maxWidth: () => Math.max(280, Math.min(520, window.innerWidth * 0.45)), onError });
  let shown = null;
  store.subscribe(async (state) => {
    const info = state.modelInfo;
    const key = info && `${info.generation}:${state.weights}`;
    if (!info || key === shown) return;
    shown = key;
    const variant = state.weights;
    try {
      const r = await app.geometry('redundancy', { variant, kind: 'O' });
      matrix.show(r.overlap, r.nLayer, r.nHead, {
        title: `write-subspace overlap (${variant} weights)`, valueLabel: `write (O) overlap, ${variant} weights`, min: 0, max: 1,
        caption: `chance (random subspaces) ${r.levels.chanceFullRank.toFixed(3)}; this model's pairs: median ${r.levels.pairs.median.toFixed(3)}, 95th percentile ${r.levels.pairs.p95.toFixed(3)}`,
      });
      const c = await app.geometry('composition', { variant });
      const kinds = ['q', 'k', 'v'];
      const pairs = compositionEdges(c, kinds);
      const { svg, edges } = compositionGraph({ nLayer: c.nLayer, nHead: c.nHead, edges: pairs.edges });
      graphBox.replaceChildren(el('p', { class: 'muted small', text: `Composition (${variant} weights; Q blue, K orange, V green). ${compositionGraphNote(c, kinds, pairs, edges.length)}` }), svg);
    } catch (error) {
      graphBox.replaceChildren(el('p', { class: 'message error', text: error.message }));
    }
  });
}

if (store.state.view === 'model') {
  embedModelView();
} else if (store.state.view === 'patching') {
  new PatchingView(figures, { store, app, modelName, onError, compact: true });
} else if (store.state.view === 'overview') {
  new HeadGrid(figures, { store, fitHeight: false, onOpen: () => window.open(explorerUrl({ ...store.urlState(), view: 'head' }, new URL('index.html', location.href)), '_blank', 'noopener'), onError, modelName });
} else {
  const heat = el('section', { class: 'figure' });
  const lines = el('section', { class: 'figure' });
  figures.append(heat, lines);
  new Heatmap(heat, { store, modelName, onError, maxWidth: () => Math.max(300, Math.min(640, window.innerWidth * 0.6)) });
  new LineView(lines, { store, modelName, onError });
}

function render(state) {
  const { layer, head } = selectedHead(state);
  const text = textOf(state);
  const parts = [modelName()];
  if (!['overview', 'model', 'patching'].includes(state.view)) parts.push(`L${layer}H${head}`);
  const { inside } = ablatedHeads(state);
  if (inside.length) parts.push(`ablated ${inside.join(', ')}`);
  if (state.edits.length) parts.push(`${state.edits.length} edit${state.edits.length > 1 ? 's' : ''}`);
  const run = state.run;
  if (run && !run.empty && state.modelInfo?.hasLmHead && Number.isFinite(run.loss)) {
    const before = run.unedited ? run.unedited.loss : run.gated && run.baseline ? run.baseline.loss : null;
    parts.push(before !== null ? `loss ${before.toFixed(3)} → ${run.loss.toFixed(3)}` : `loss ${run.loss.toFixed(3)}`);
  }
  parts.push(`“${text.length > 60 ? `${text.slice(0, 59)}…` : text}”`);
  title.textContent = parts.join(' · ');
  back.href = explorerUrl(store.urlState(), new URL('index.html', location.href));
  const error = state.modelError || (state.runStatus === 'error' ? state.runError : null);
  message.hidden = !error;
  message.textContent = error || '';
  confirm.hidden = !state.pendingHost;
  if (state.pendingHost) confirm.textContent = `Load the model from ${state.pendingHost.host}`;
  status.textContent = state.modelStatus === 'loading' ? 'loading the model…' : state.runStatus === 'running' ? 'running…' : '';
  const ready = state.modelStatus === 'ready' && state.runStatus === 'ready' && state.run && !state.run.empty;
  let bodyStatus = state.modelStatus;
  if (ready) bodyStatus = 'ready';
  else if (state.modelStatus === 'ready') bodyStatus = state.runStatus === 'error' ? 'run-error' : 'running';
  document.body.dataset.status = bodyStatus;
}
store.subscribe((state) => render(state));
render(store.state);

// A host may change the hash (<headscope-view> does when an attribute
// changes): follow it; a switch between the grid and a head rebuilds.
window.addEventListener('hashchange', () => {
  const { state: next } = parseHash(location.hash, location.origin);
  if ((next.view === 'overview') !== (store.state.view === 'overview')) location.reload();
  else store.set(next);
});

let lastHeight = 0;
const report = () => {
  // The content's height (scrollHeight would never report less than the frame).
  const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
  if (height !== lastHeight && window.parent !== window) {
    lastHeight = height;
    window.parent.postMessage({ type: 'headscope:size', height }, '*');
  }
};
new ResizeObserver(report).observe(document.body);
app.start();
window.headscope = { store, app };
