// embed.html: one view of the explorer, compact, for an <iframe>. The state
// comes from the hash exactly as in the explorer; there are no controls,
// only the figure and a link back to the full explorer. The page reports its
// height to the parent (message {type: 'headscope:size', height}) so a host
// such as <headscope-view> can size the frame to its content.
import { App, textOf } from './app.js';
import { el } from './dom.js';
import { Heatmap, LineView } from './headview.js';
import { modelLabel } from './models.js';
import { HeadGrid } from './overview.js';
import { explorerUrl } from './share.js';
import { Store, parseHash, selectedHead } from './state.js';

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
root.append(el('div', { class: 'embed-head' }, [el('span', { class: 'brand-name', text: 'headscope' }), title, status, back]), message, figures);

const onError = () => {};
if (store.state.view === 'overview') {
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
  if (state.view !== 'overview') parts.push(`L${layer}H${head}`);
  if (state.ablate.length) parts.push(`ablated ${state.ablate.join(', ')}`);
  parts.push(`“${text.length > 60 ? `${text.slice(0, 59)}…` : text}”`);
  title.textContent = parts.join(' · ');
  back.href = explorerUrl(store.urlState(), new URL('index.html', location.href));
  const error = state.modelError || (state.runStatus === 'error' ? state.runError : null);
  message.hidden = !error;
  message.textContent = error || '';
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
