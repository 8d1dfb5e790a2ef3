// Per-head metrics for the overview's colour, sorting and filtering. Each
// metric names where its numbers come from (the core's weight geometry in
// the state's weight variant, its detectors on the text, the induction probe
// or the importance) and how to read them. The controller keeps
// state.metrics = {id, label, help, values [L*H], min, max, scale, format,
// variant, basis} (or {id, label, error, variant}) in step with
// state.metric, state.weights, the model and the run.
import { SCALES } from '../figures/colormap.js';

const fixed = (digits) => (v) => (Number.isFinite(v) ? v.toFixed(digits) : '–');

export const METRICS = [
  { id: 'none', label: 'none' },
  {
    id: 'ov_erank', label: 'OV effective rank', source: 'spectra', get: (g) => g.ov.effectiveRank,
    range: (g) => [1, g.dHead], format: fixed(2),
    help: 'Roy & Vetterli effective rank of W_V W_O: how many directions the head writes (1 … d_head).',
  },
  {
    id: 'qk_erank', label: 'QK effective rank', source: 'spectra', get: (g) => g.qk.effectiveRank,
    range: (g) => [1, g.dHead], format: fixed(2),
    help: 'Effective rank of W_Q W_Kᵀ: how many directions the head matches queries and keys on.',
  },
  {
    id: 'ov_top1', label: 'OV top-1 share', source: 'spectra', get: (g) => g.ov.top1Share,
    range: () => [0, 1], format: fixed(3),
    help: 'σ₁² / Σσ²: the share of the OV circuit in its strongest direction.',
  },
  {
    id: 'qk_top1', label: 'QK top-1 share', source: 'spectra', get: (g) => g.qk.top1Share,
    range: () => [0, 1], format: fixed(3),
    help: 'σ₁² / Σσ² of the QK circuit.',
  },
  {
    id: 'ov_norm', label: 'OV norm ‖W_OV‖', source: 'spectra', get: (g) => g.ov.frobenius,
    range: (g, values) => [0, Math.max(...values)], format: fixed(3),
    help: 'Frobenius norm of W_V W_O: how much the head can write.',
  },
  {
    id: 'copying', label: 'OV copying score', source: 'copying', get: (g) => g.copyingScore,
    range: () => [-1, 1], format: fixed(3), scale: SCALES.diverging,
    help: 'Re Σλ / Σ|λ| over the eigenvalues of W_E W_OV W_U: near 1 for a head that copies the token it attends to (Elhage et al. 2021).',
  },
  // On the text (the detectors of the core, TransformerLens's detect_head).
  // corpusKey: the same statistic in the last corpus run (state.over =
  // 'corpus': its mean over the texts instead of this text's value).
  { id: 'previous_token', label: 'previous-token score', source: 'behavior', corpusKey: 'previousTokenScore', get: (b) => b.previousTokenScore, range: () => [0, 1], format: fixed(3), help: 'TransformerLens detect_head "previous_token_head" on this text.' },
  { id: 'duplicate_token', label: 'duplicate-token score', source: 'behavior', corpusKey: 'duplicateTokenScore', get: (b) => b.duplicateTokenScore, range: () => [0, 1], format: fixed(3), help: 'TransformerLens detect_head "duplicate_token_head": attention to earlier copies of the current token.' },
  { id: 'induction', label: 'induction score', source: 'behavior', corpusKey: 'inductionScore', get: (b) => b.inductionScore, range: () => [0, 1], format: fixed(3), help: 'TransformerLens detect_head "induction_head": attention to the token after an earlier copy of the current token.' },
  { id: 'first_token', label: 'BOS sink mass', source: 'behavior', corpusKey: 'firstTokenMass', get: (b) => b.firstTokenMass, range: () => [0, 1], format: fixed(3), help: 'Mean attention to the first token.' },
  { id: 'entropy', label: 'attention entropy (nats)', source: 'behavior', get: (b) => b.entropy, range: (b, values) => [0, Math.max(1e-9, ...values)], format: fixed(3), help: 'Mean entropy of the attention rows, in nats: low = focused, high = spread. It grows with the text\'s length (a row sees more keys); the normalised entropy does not.' },
  { id: 'entropy_norm', label: 'attention entropy / ln(keys)', source: 'behavior', corpusKey: 'entropyNormalized', get: (b) => b.entropyNormalized, range: () => [0, 1], format: fixed(3), help: 'Each row\'s entropy divided by ln of the keys it may attend (i + 1 causal, T bidirectional, the window in local layers), averaged over rows with two keys or more: 1 = uniform over what it sees, 0 = one key, at any length.' },
  // Interventions.
  { id: 'induction_test', label: 'induction score, probe', source: 'inductionTest', get: (t) => t.score, range: () => [0, 1], format: fixed(3), help: 'The standard test: [BOS] + R + R with R random tokens; mean attention from the second copy to the token after the first.' },
  { id: 'importance', label: 'importance |∂L/∂ξ|', source: 'importance', get: (r) => r.gradientImportance, range: (r, values) => [0, Math.max(1e-12, ...values)], format: fixed(4), help: 'Michel et al. (2019): |∂ loss / ∂ head gate| on this text.' },
  { id: 'loo', label: 'loss change without the head', source: 'importance', get: (r) => r.leaveOneOutDelta, range: (r, values) => { const m = Math.max(1e-9, ...values.map(Math.abs)); return [-m, m]; }, format: (v) => `${v >= 0 ? '+' : ''}${v.toFixed(4)}`, scale: SCALES.diverging, help: 'Leave-one-out: the loss with only this head ablated, minus the loss of the intact model.' },
];

// Short role names for badges; the core's names are the keys.
export const ROLE_LABELS = {
  induction: ['ind', 'induction'],
  duplicate_token: ['dup', 'duplicate token'],
  previous_token: ['prev', 'previous token'],
  positional: ['pos', 'positional'],
  current_token: ['self', 'current token'],
  first_token: ['sink', 'first token (BOS sink)'],
  other: ['', 'other'],
};

export function metricById(id) {
  return METRICS.find((m) => m.id === id) || null;
}

export class MetricsController {
  constructor(store, app) {
    this.store = store;
    this.app = app;
    this.seq = 0;
    store.subscribe((state, changed) => {
      const metric = metricById(state.metric);
      const source = metric?.source;
      if (['metric', 'weights', 'modelInfo'].some((k) => changed.has(k))) this.update(state);
      else if (source === 'behavior' && ['behavior', 'over', 'corpusStats'].some((k) => changed.has(k))) this.update(state);
      else if ((source === 'importance' || source === 'inductionTest') && (changed.has('run') || changed.has('editState') || changed.has('mode'))) this.update(state);
    });
    this.update(store.state);
  }

  async update(state) {
    const seq = ++this.seq;
    const metric = metricById(state.metric);
    if (!metric || metric.id === 'none' || !state.modelInfo) {
      this.store.set({ metrics: null });
      return;
    }
    const variant = state.weights;
    try {
      let g;
      const corpus = overCorpus(state, metric);
      if (corpus) {
        g = corpus;
      } else if (metric.source === 'behavior') {
        if (!state.behavior) return; // arrives with the next update
        if (state.behavior.error) throw new Error(state.behavior.error);
        g = state.behavior;
      } else if (metric.source === 'importance') {
        if (!state.run || state.run.empty) return;
        g = await this.app.compute('importance', { ids: state.run.ids, mode: state.mode });
      } else if (metric.source === 'inductionTest') {
        g = await this.app.compute('inductionTest', this.app.inductionArgs());
      } else {
        g = await this.app.geometry(metric.source, { variant });
      }
      if (seq !== this.seq) return;
      const values = Array.from(corpus ? corpus.values : metric.get(g));
      const [min, max] = metric.range(g, values);
      this.store.set({
        metrics: {
          id: metric.id, label: metric.label, help: metric.help, values, min, max, scale: metric.scale || SCALES.viridis, format: metric.format,
          // What the numbers depend on, for the legend.
          variant,
          basis: corpus ? `mean over ${corpus.label}` : ['spectra', 'copying'].includes(metric.source) ? `${variant} weights` : metric.source === 'inductionTest' ? 'random-token probe' : 'on this text',
        },
      });
    } catch (error) {
      if (seq === this.seq) this.store.set({ metrics: { id: metric.id, label: metric.label, error: error.message || String(error), variant } });
    }
  }
}

// The last corpus run's means for a text metric, when the state asks for
// them (over = 'corpus') and the run is of the loaded model: {values, label},
// else null (this text's values).
export function overCorpus(state, metric) {
  const c = state.corpusStats;
  if (state.over !== 'corpus' || !metric?.corpusKey || !c || c.generation !== state.modelInfo?.generation) return null;
  return { values: c.metrics[metric.corpusKey].mean, label: `${c.source}, ${c.nTexts} texts` };
}
