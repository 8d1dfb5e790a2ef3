// The URL fields of the state: what a link must reproduce (model, revision,
// text, selected head, view, weight variant, ablations, edits, ...), their
// defaults, and their round trip through the location hash. Parsing is
// strict: a value that does not validate is dropped (and reported), never
// passed on, because the hash is untrusted input.
import { isEdit } from '../shared/edits.js';
import { CORPORA, allowedHubEndpoint, modelFromText } from '../shared/sources.js';
import { headKey, isRepoId, parseHeadKey, sortHeadKeys } from '../../wasm/ids.mjs';

export const VIEWS = ['overview', 'head', 'model', 'interventions', 'patching'];
export const WEIGHT_VARIANTS = ['processed', 'raw'];
export const ABLATION_MODES = ['zero', 'mean'];
export const MAX_TEXT_LENGTH = 4000;
export const DETECT_FLAGS = ['abs', 'nobos', 'nocur', 'probe'];
// The patching view's experiments (views/patchingview.js, core/patching.hpp).
export const PATCH_TARGETS = ['heads', 'heads_by_position', 'resid', 'q', 'k', 'v', 'path'];
export const PATCH_DIRECTIONS = ['denoise', 'noise'];
export const PATCH_METRICS = ['logit_diff', 'loss'];
export const MAX_ANSWER_LENGTH = 100;
// A path-patching receiver: a query head (L9H9:q) or a key/value head (L9G2:k).
export const RECEIVER = /^L\d{1,3}(H\d{1,3}:q|G\d{1,3}:[kv])$/;

// Order here is the order in the URL.
export const URL_DEFAULTS = {
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
  over: 'text',         // a text metric over 'text' (this text) or 'corpus' (the last corpus run's means)
  ablate: [],           // sorted head keys 'L1H3'
  mode: 'zero',         // ablation mode
  edits: [],            // weight edits, see shared/edits.js
  detect: [],           // detector options: 'abs' (measure), 'nobos', 'nocur' (exclusions), 'probe' (induction role from the probe)
  hub: null,            // hub endpoint override (loopback or same origin only)
  corpus: null,         // {name, texts, tokens} (a built-in corpus) or {dataset, config, split, texts, tokens} (a hub dataset): views/corpusview.js
  corrupt: null,        // the corrupted text of the patching view (the clean one is `text`)
  answer: null,         // the answer token's text (' Mary'), or null
  wrong: null,          // the wrong answer's text, or null (the answer's logit alone)
  patch: 'heads',       // what is patched: PATCH_TARGETS
  dir: 'denoise',       // denoise (clean into corrupted) | noise (corrupted into clean)
  recv: [],             // path-patching receivers ('L9H9:q'); empty: the logits
  pmetric: 'logit_diff',  // logit_diff | loss
};

// corpus=stories:64:128 (a built-in corpus, texts, tokens per text) or
// corpus=hf:OWNER/NAME:CONFIG:SPLIT:64:128 (a Hugging Face dataset's split).
export const CORPUS_LIMITS = { texts: [2, 1000], tokens: [2, 1024] };  // an interval needs 2 texts
const SEGMENT = '[A-Za-z0-9][A-Za-z0-9._-]{0,99}';
export function parseCorpusField(text) {
  const within = (v, [lo, hi]) => v >= lo && v <= hi;
  const sizes = (texts, tokens) => (within(Number(texts), CORPUS_LIMITS.texts) && within(Number(tokens), CORPUS_LIMITS.tokens) ? { texts: Number(texts), tokens: Number(tokens) } : null);
  const builtin = /^([a-z]{1,20}):(\d{1,4}):(\d{1,4})$/.exec(String(text));
  if (builtin) {
    const size = sizes(builtin[2], builtin[3]);
    return size && Object.hasOwn(CORPORA, builtin[1]) ? { name: builtin[1], ...size } : null;
  }
  const hub = new RegExp(`^hf:(${SEGMENT}/${SEGMENT}):(${SEGMENT}):(${SEGMENT}):(\\d{1,4}):(\\d{1,4})$`).exec(String(text));
  const size = hub && sizes(hub[4], hub[5]);
  return size && isRepoId(hub[1]) ? { dataset: hub[1], config: hub[2], split: hub[3], ...size } : null;
}

export function serializeCorpusField(c) {
  return c.dataset ? `hf:${c.dataset}:${c.config}:${c.split}:${c.texts}:${c.tokens}` : `${c.name}:${c.texts}:${c.tokens}`;
}

export const URL_KEYS = Object.keys(URL_DEFAULTS);

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
    const known = model === 'builtin' || model === 'local' ? model : modelFromText(model, pageOrigin);
    if (known) state.model = known;
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
  if (params.has('over')) {
    if (['text', 'corpus'].includes(params.get('over'))) state.over = params.get('over');
    else bad('over');
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
  if (params.has('corpus')) {
    const corpus = parseCorpusField(params.get('corpus'));
    if (corpus) state.corpus = corpus;
    else bad('corpus');
  }
  if (params.has('corrupt')) state.corrupt = params.get('corrupt').slice(0, MAX_TEXT_LENGTH);
  for (const key of ['answer', 'wrong']) {
    if (!params.has(key)) continue;
    const v = params.get(key);
    if (v.length > 0 && v.length <= MAX_ANSWER_LENGTH) state[key] = v;
    else bad(key);
  }
  for (const [key, allowed] of [['patch', PATCH_TARGETS], ['dir', PATCH_DIRECTIONS], ['pmetric', PATCH_METRICS]]) {
    if (!params.has(key)) continue;
    if (allowed.includes(params.get(key))) state[key] = params.get(key);
    else bad(key);
  }
  if (params.has('recv')) {
    const list = params.get('recv').split(',').filter(Boolean);
    if (list.length <= 64 && list.every((r) => RECEIVER.test(r))) state.recv = list;
    else bad('recv');
  }
  if (params.has('hub')) {
    const hub = allowedHubEndpoint(params.get('hub'), pageOrigin);
    if (hub) state.hub = hub;
    else bad('hub');
  }
  return { state, problems };
}

// URL fields compare by content (they are small values).
export function sameValue(a, b) {
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
    else if (key === 'corpus') params.set(key, serializeCorpusField(value));
    else if (key === 'recv') params.set(key, value.join(','));
    else if (value !== null) params.set(key, String(value));
  }
  return params.toString();
}
