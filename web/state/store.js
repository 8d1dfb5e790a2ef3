// The page's single source of truth. One store holds two kinds of fields:
//
//   URL fields   what a link must reproduce (hash.js): parsed from and
//                written to the location hash, so opening a link restores
//                the view and every change updates the link.
//   runtime      what the page learns while it works (model info, load
//                progress, the latest run, errors). Never written to the URL.
//
// Views subscribe and receive the set of changed keys; they never keep their
// own copy of anything in here.
import { URL_DEFAULTS, URL_KEYS, sameValue } from './hash.js';
import { parseHeadKey } from '../../wasm/ids.mjs';

const RUNTIME_DEFAULTS = {
  modelStatus: 'idle',  // 'idle' | 'loading' | 'ready' | 'error' | 'unavailable' | 'confirm' (waiting for pendingHost's answer, no model loaded)
  pendingHost: null,    // {origin, host, model}: a link's model host the viewer must confirm first (control/app.js)
  modelInfo: null,      // the core's info + {label, hasTokenizer}
  modelError: null,     // message of the last failed load
  modelFailure: null,   // that load's {code (wasm/errors.mjs), model, rev}
  progress: null,       // a load's progress (worker/protocol.js) with speed and eta, see control/app.js
  run: null,            // the latest analysis: {ids, tokens, nLayer, nHead, nTokens, patterns, tokenLoss, loss, baseline}
  runStatus: 'idle',    // 'idle' | 'running' | 'ready' | 'error'
  runError: null,
  notice: null,         // one-line message for the status area
  focusToken: null,     // a query position picked from the token chips, or null
  computeProgress: null, // {what, fraction, eta (seconds left, NaN until known)} while a geometry or behaviour computation runs
  metrics: null,        // per-head metrics for the overview, see control/metrics.js
  behavior: null,       // role detectors on the current text (core head_behavior), or {error}
  corpusStats: null,    // the last corpus run's statistics {source, nTexts, level, metrics, generation} (views/corpusview.js)
  editState: null,      // {applied, errors, edits}: the edits the core has in force
};

export class Store {
  constructor(urlState) {
    this.state = { ...structuredClone(URL_DEFAULTS), ...urlState, ...structuredClone(RUNTIME_DEFAULTS) };
    this.listeners = new Set();
  }

  urlState() {
    return Object.fromEntries(URL_KEYS.map((key) => [key, this.state[key]]));
  }

  // Merges patch, calls listeners once with the keys whose value changed.
  set(patch) {
    const changed = new Set();
    for (const [key, value] of Object.entries(patch)) {
      if (!(key in this.state)) throw new Error(`state has no field ${key}`);
      // URL fields are small values compared by content; runtime objects
      // (runs hold large typed arrays) are replaced, never mutated, so
      // identity is enough.
      if (URL_KEYS.includes(key) ? sameValue(this.state[key], value) : this.state[key] === value) continue;
      this.state[key] = value;
      changed.add(key);
    }
    if (changed.size) for (const listener of this.listeners) listener(this.state, changed);
    return changed;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

// The head in focus, clamped to the loaded model's shape.
export function selectedHead(state) {
  const info = state.modelInfo;
  const head = state.head || { layer: 0, head: 0 };
  if (!info) return head;
  return { layer: Math.min(head.layer, info.nLayer - 1), head: Math.min(head.head, info.nHead - 1) };
}

// The link's ablated heads split by the loaded model's shape: {inside: head
// keys of heads it has, outside: keys it does not have (never ablated)}.
export function ablatedHeads(state) {
  const info = state.modelInfo;
  const inside = [];
  const outside = [];
  for (const key of state.ablate) {
    const h = parseHeadKey(key);
    if (!info || (h && h.layer < info.nLayer && h.head < info.nHead)) inside.push(key);
    else outside.push(key);
  }
  return { inside, outside };
}
