// headscope explorer entry: builds the page from its views, keeps the store
// and the location hash in step, and routes the keyboard.
import { App } from '../control/app.js';
import { el } from '../views/dom.js';
import { HeadView } from '../views/headview.js';
import { InterventionsPanel } from '../views/interventions.js';
import { ModelBar } from '../views/modelbar.js';
import { modelLabel } from '../state/models.js';
import { MetricsController } from '../control/metrics.js';
import { ModelView } from '../views/modelview.js';
import { PatchingView } from '../views/patchingview.js';
import { HeadGrid, moveHead, toggleAblation } from '../views/overview.js';
import { SharePanel } from '../export/share.js';
import { URL_KEYS, VIEWS, parseHash, serializeHash } from '../state/hash.js';
import { Store, ablatedHeads, selectedHead } from '../state/store.js';
import { TextPanel } from '../views/textpanel.js';
import { workerUrlFor } from '../worker/protocol.js';

// The worker boot.js started gets the main thread to itself until it runs
// (at most 150 ms): paired loads, first patterns drawn ~20 ms sooner.
await Promise.race([globalThis.headscopeEarlyWorker?.started, new Promise((resolve) => setTimeout(resolve, 150))]);
const { state: initial, problems } = parseHash(location.hash, location.origin);
const store = new Store(initial);
// Opening the built-in model, the worker fetches it while its core compiles.
// boot.js has usually started this worker already (same URL): adopted.
// (Its URL is boot's, even if the hash changed while this bundle loaded.)
const workerUrl = globalThis.headscopeEarlyWorker
  ? new URL(globalThis.headscopeEarlyWorker.url)
  : workerUrlFor(initial.model, import.meta.url);
const app = new App(store, { workerUrl });
const modelName = () => (store.state.modelInfo?.label ? shortModelName(store.state) : 'model');

function shortModelName(state) {
  return state.model === 'local' ? 'local-model' : modelLabel(state.model, state.rev);
}

// --- status line and toast ---------------------------------------------------
const status = document.getElementById('status');
const toast = document.getElementById('toast');
let toastTimer = null;
function notify(message) {
  toast.textContent = message;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    toast.hidden = true;
  }, 4000);
}
const onError = (message) => notify(message);

function renderStatus(state) {
  let text;
  if (state.modelStatus === 'loading') text = `loading ${modelLabel(state.model, state.rev)}…`;
  else if (state.modelStatus === 'unavailable') text = 'built-in model not yet available';
  else if (state.modelStatus === 'error' && !state.modelInfo) text = 'no model loaded';
  else if (state.pendingHost) text = `waiting for your answer: load a model from ${state.pendingHost.host}?`;
  else if (state.modelStatus === 'idle') text = 'starting…';
  else if (state.modelInfo?.attentionOnly) text = `attention weights only: weight geometry in the Model view and each head's view; load all weights to run text${state.notice ? ` · ${state.notice}` : ''}`;
  else if (state.runStatus === 'running') text = 'running…';
  else if (state.runStatus === 'error') text = 'could not run this text';
  else text = state.notice || 'ready';
  status.textContent = text;
  const ready = state.modelStatus === 'ready' && (state.modelInfo?.attentionOnly || (state.runStatus === 'ready' && state.run && !state.run.empty));
  let bodyStatus = state.modelStatus;
  if (ready) bodyStatus = 'ready';
  else if (state.modelStatus === 'ready') bodyStatus = state.runStatus === 'error' ? 'run-error' : 'running';
  document.body.dataset.status = bodyStatus;
}

// --- views ------------------------------------------------------------------
new MetricsController(store, app);
new ModelBar(document.getElementById('model-bar'), { store, app });
new TextPanel(document.getElementById('text-panel'), { store });
new SharePanel(document.getElementById('share'), { store, notify });
const openHead = () => store.set({ view: 'head' });
new HeadGrid(document.getElementById('overview-grid'), { store, onOpen: openHead, onError, modelName });
new HeadGrid(document.getElementById('navigator'), { store, compact: true, onError, modelName });
new HeadView(document.getElementById('head-detail'), { store, app, modelName, onError });
new ModelView(document.getElementById('view-model'), { store, app, modelName, onError });
new InterventionsPanel(document.getElementById('view-interventions'), { store, app, modelName, onError });
new PatchingView(document.getElementById('view-patching'), { store, app, modelName, onError });

// --- tabs ---------------------------------------------------------------------
const tabs = document.getElementById('tabs');
const tabButtons = {};
for (const view of VIEWS) {
  const button = el('button', {
    type: 'button', role: 'tab', id: `tab-${view}`, 'aria-controls': `view-${view}`, dataset: { view },
    text: { overview: 'Overview', head: 'Head', model: 'Model', interventions: 'Interventions', patching: 'Patching' }[view],
    on: { click: () => store.set({ view }) },
  });
  tabButtons[view] = button;
  tabs.append(button);
}
tabs.addEventListener('keydown', (event) => {
  const i = VIEWS.indexOf(store.state.view);
  const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: VIEWS.length - 1 }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  event.stopPropagation();
  const view = VIEWS[(next + VIEWS.length) % VIEWS.length];
  store.set({ view });
  tabButtons[view].focus();
});

// Switching views keeps the tabs on screen (a click low in a tall grid
// would otherwise leave the new view out of sight).
function revealTabs() {
  if (tabs.getBoundingClientRect().top < 0) tabs.scrollIntoView({ block: 'start' });
}

function renderTabs(state) {
  for (const view of VIEWS) {
    const on = state.view === view;
    tabButtons[view].setAttribute('aria-selected', String(on));
    tabButtons[view].tabIndex = on ? 0 : -1;
    document.getElementById(`view-${view}`).hidden = !on;
  }
  const { layer, head } = selectedHead(state);
  tabButtons.head.textContent = state.modelInfo ? `Head L${layer}H${head}` : 'Head';
  const n = ablatedHeads(state).inside.length;
  tabButtons.interventions.textContent = n ? `Interventions (${n})` : 'Interventions';
}

// --- keyboard: heads from anywhere that is not a text field --------------------
window.addEventListener('keydown', (event) => {
  const target = event.target;
  if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
  if (target.closest?.('input, textarea, select, dialog, [role=tablist]')) return;
  if (target.closest?.('#heatmap') && event.shiftKey) return;
  const state = store.state;
  if (!state.modelInfo) return;
  if (event.key === 'a' || event.key === 'A') {
    const { layer, head } = selectedHead(state);
    toggleAblation(store, layer, head);
    event.preventDefault();
  } else if (event.key === 'Escape' && state.view !== 'overview') {
    store.set({ view: 'overview' });
  } else if (state.view === 'overview' || state.view === 'head') {
    const next = moveHead(state, event.key);
    if (next && !(target.closest?.('button') && event.key === ' ')) {
      event.preventDefault();
      store.set({ head: next });
    }
  }
});

// --- URL <-> store ------------------------------------------------------------
// The store writes the hash with replaceState (no hashchange); a navigation
// (a link, the back button, a script setting location.hash) changes it and
// fires hashchange a moment later. A store write in that moment must not
// overwrite the navigation: `written` is the hash the page last wrote or
// read, and a location hash that differs from it is a navigation, read
// before anything is written.
let written = location.hash.replace(/^#/, '');
function readNavigation() {
  const hash = location.hash.replace(/^#/, '');
  if (hash === written) return false;
  written = hash;
  const { state: next, problems: more } = parseHash(hash, location.origin);
  store.set(next);
  if (more.length) notify(more.join('; '));
  return true;
}
store.subscribe((state, changed) => {
  if ([...changed].some((k) => URL_KEYS.includes(k)) && !readNavigation()) {
    const hash = serializeHash(state);
    if (hash !== written) {
      written = hash;
      history.replaceState(null, '', hash ? `#${hash}` : location.pathname + location.search);
    }
  }
  if (['view', 'modelInfo', 'head', 'ablate'].some((k) => changed.has(k))) renderTabs(state);
  if (changed.has('view')) revealTabs();
  // A counter of applied runs, so tests (and anyone) can wait for the next one.
  if (changed.has('run') && state.run) document.body.dataset.runs = String(Number(document.body.dataset.runs || 0) + 1);
  renderStatus(state);
});
window.addEventListener('hashchange', readNavigation);

renderTabs(store.state);
renderStatus(store.state);
if (problems.length) notify(`link: ${problems.join('; ')}`);
app.start();

// For tests and the curious: the store, read-only by convention.
window.headscope = { store, app };
