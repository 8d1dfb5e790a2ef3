// The page's single source of truth. One store holds two kinds of fields:
//
//   URL fields   what a link must reproduce (model, revision, text, selected
//                head, view, weight variant, ablations, edits, ...). They are
//                parsed from and written to the location hash, so opening a
//                link restores the view and every change updates the link.
//   runtime      what the page learns while it works (model info, load
//                progress, the latest run, errors). Never written to the URL.
//
// Views subscribe and receive the set of changed keys; they never keep their
// own copy of anything in here. Parsing is strict: a value that does not
// validate is dropped (and reported), never passed on, because the hash is
// untrusted input.

export const VIEWS = ['overview', 'head', 'model', 'interventions'];
export const WEIGHT_VARIANTS = ['processed', 'raw'];
export const ABLATION_MODES = ['zero', 'mean'];
export const MAX_TEXT_LENGTH = 4000;
export const DETECT_FLAGS = ['abs', 'nobos', 'nocur', 'probe'];

import { isEdit } from '../shared/edits.js';

// Order here is the order in the URL.
const URL_DEFAULTS = {
  model: 'builtin',     // 'builtin' | hub repo id | https:// or same-origin URL | 'local'
  rev: 'main',          // hub revision (branch, tag, commit, refs/pr/N)
  parts: 'all',         // 'all' | 'attention': load the attention weights only (weight geometry, no text)
  text: null,           // null = the default example text
  bos: true,            // prepend the BOS token
  view: 'overview',
  head: null,           // {layer, head} | null (= L0H0)
  weights: 'processed', // weight variant for geometry
  metric: 'none',       // overview colour metric
  sort: false,          // overview sorted by the metric
  ablate: [],           // sorted head keys 'L1H3'
  mode: 'zero',         // ablation mode
  edits: [],            // weight edits, see shared/edits.js
  detect: [],           // detector options: 'abs' (measure), 'nobos', 'nocur' (exclusions), 'probe' (induction role from the probe)
  hub: null,            // hub endpoint override (loopback or same origin only)
};

export const URL_KEYS = Object.keys(URL_DEFAULTS);

// 'L<layer>H<head>'
export function headKey(layer, head) {
  return `L${layer}H${head}`;
}

export function parseHeadKey(text) {
  const m = /^L(\d{1,3})H(\d{1,3})$/.exec(String(text));
  return m ? { layer: Number(m[1]), head: Number(m[2]) } : null;
}

export { isEdit } from '../shared/edits.js';

// Only the loopback interface or the page's own origin may stand in for the
// hub: anything else would let a link send the page's requests to a
// stranger's server.
export function allowedHubEndpoint(text, pageOrigin) {
  let url;
  try {
    url = new URL(text, pageOrigin);
  } catch {
    return null;
  }
  if (url.origin === pageOrigin) return url.href.replace(/\/$/, '');
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    if (['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return url.href.replace(/\/$/, '');
  }
  return null;
}

// A model given as a URL must be https: or on the page's own origin.
export function allowedModelUrl(text, pageOrigin) {
  let url;
  try {
    url = new URL(text, pageOrigin);
  } catch {
    return null;
  }
  if (url.username || url.password) return null;
  if (url.protocol === 'https:' || url.origin === pageOrigin) return url.href.endsWith('/') ? url.href : `${url.href}/`;
  return null;
}

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;
export function isRepoIdText(text) {
  return REPO_ID.test(text) && !text.includes('..') && text.length <= 96;
}

const REVISION = /^[A-Za-z0-9][A-Za-z0-9._\/-]{0,99}$/;

// Parses a location hash ('#a=1&b=2' or 'a=1&b=2') into URL fields.
// Returns {state, problems}: problems name the parameters that were dropped.
export function parseHash(hash, pageOrigin) {
  const params = new URLSearchParams(String(hash || '').replace(/^#/, ''));
  const state = structuredClone(URL_DEFAULTS);
  const problems = [];
  const bad = (key) => problems.push(`ignored ${key}=${JSON.stringify(String(params.get(key)).slice(0, 60))}`);
  for (const key of params.keys()) if (!URL_KEYS.includes(key)) problems.push(`ignored unknown parameter ${JSON.stringify(key.slice(0, 40))}`);

  if (params.has('model')) {
    const model = params.get('model');
    if (model === 'builtin' || model === 'local' || isRepoIdText(model)) state.model = model;
    else if (/^[a-z]+:/i.test(model) && allowedModelUrl(model, pageOrigin)) state.model = allowedModelUrl(model, pageOrigin);
    else bad('model');
  }
  if (params.has('rev')) {
    const rev = params.get('rev');
    if (REVISION.test(rev) && !rev.includes('..')) state.rev = rev;
    else bad('rev');
  }
  if (params.has('parts')) {
    if (['all', 'attention'].includes(params.get('parts'))) state.parts = params.get('parts');
    else bad('parts');
  }
  if (params.has('text')) state.text = params.get('text').slice(0, MAX_TEXT_LENGTH);
  if (params.has('bos')) {
    const v = params.get('bos');
    if (v === '0' || v === '1') state.bos = v === '1';
    else bad('bos');
  }
  if (params.has('view')) {
    if (VIEWS.includes(params.get('view'))) state.view = params.get('view');
    else bad('view');
  }
  if (params.has('head')) {
    const head = parseHeadKey(params.get('head'));
    if (head) state.head = head;
    else bad('head');
  }
  if (params.has('weights')) {
    if (WEIGHT_VARIANTS.includes(params.get('weights'))) state.weights = params.get('weights');
    else bad('weights');
  }
  if (params.has('metric')) {
    if (/^[a-z][a-z0-9_]{0,40}$/.test(params.get('metric'))) state.metric = params.get('metric');
    else bad('metric');
  }
  if (params.has('sort')) {
    const v = params.get('sort');
    if (v === '0' || v === '1') state.sort = v === '1';
    else bad('sort');
  }
  if (params.has('ablate')) {
    const keys = params.get('ablate').split(',').filter(Boolean);
    if (keys.every((k) => parseHeadKey(k))) state.ablate = sortHeadKeys(keys);
    else bad('ablate');
  }
  if (params.has('mode')) {
    if (ABLATION_MODES.includes(params.get('mode'))) state.mode = params.get('mode');
    else bad('mode');
  }
  if (params.has('edits')) {
    const edits = params.get('edits').split(';').filter(Boolean);
    if (edits.length <= 64 && edits.every(isEdit)) state.edits = edits;
    else bad('edits');
  }
  if (params.has('detect')) {
    const flags = params.get('detect').split(',').filter(Boolean);
    if (flags.every((f) => DETECT_FLAGS.includes(f))) state.detect = [...new Set(flags)].sort();
    else bad('detect');
  }
  if (params.has('hub')) {
    const hub = allowedHubEndpoint(params.get('hub'), pageOrigin);
    if (hub) state.hub = hub;
    else bad('hub');
  }
  return { state, problems };
}

export function sortHeadKeys(keys) {
  const unique = [...new Set(keys)];
  return unique.sort((a, b) => {
    const x = parseHeadKey(a);
    const y = parseHeadKey(b);
    return x.layer - y.layer || x.head - y.head;
  });
}

function sameValue(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// URL fields -> hash string (without '#'); fields at their default are left out.
export function serializeHash(state) {
  const params = new URLSearchParams();
  for (const key of URL_KEYS) {
    const value = state[key];
    if (sameValue(value, URL_DEFAULTS[key])) continue;
    if (key === 'rev' && state.model === 'builtin') continue;
    if (key === 'head') params.set(key, headKey(value.layer, value.head));
    else if (key === 'bos' || key === 'sort') params.set(key, value ? '1' : '0');
    else if (key === 'ablate') params.set(key, value.join(','));
    else if (key === 'edits') params.set(key, value.join(';'));
    else if (key === 'detect') params.set(key, value.join(','));
    else if (value !== null) params.set(key, String(value));
  }
  return params.toString();
}

const RUNTIME_DEFAULTS = {
  modelStatus: 'idle',  // 'idle' | 'loading' | 'ready' | 'error' | 'unavailable'
  modelInfo: null,      // the core's info + {label, hasTokenizer}
  modelError: null,     // message of the last failed load
  progress: null,       // {file, loaded, total, filesDone, filesTotal, speed, eta}
  run: null,            // the latest analysis: {ids, tokens, nLayer, nHead, nTokens, patterns, tokenLoss, loss, baseline}
  runStatus: 'idle',    // 'idle' | 'running' | 'ready' | 'error'
  runError: null,
  notice: null,         // one-line message for the status area
  focusToken: null,     // a query position picked from the token chips, or null
  geometryProgress: null, // {what, fraction} while a geometry computation runs
  metrics: null,        // per-head metrics for the overview, see control/metrics.js
  behavior: null,       // role detectors on the current text (core head_behavior), or {error}
  editState: null,      // {applied, errors, edits}: the edits the core has in force
};

export class Store {
  constructor(urlState) {
    this.state = { ...structuredClone(URL_DEFAULTS), ...urlState, ...structuredClone(RUNTIME_DEFAULTS) };
    this.listeners = new Set();
  }

  get(key) {
    return this.state[key];
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
  return { layer: Math.min(head.layer, info.n_layer - 1), head: Math.min(head.head, info.n_head - 1) };
}
