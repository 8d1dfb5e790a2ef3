// Per-head metrics for the overview's colour, sorting and filtering. Each
// metric names where its numbers come from (a geometry call of the core, in
// the state's weight variant) and how to read them. The controller keeps
// state.metrics = {id, label, values [L*H], min, max, variant, scale, format}
// (or {id, error}) in step with state.metric, state.weights and the model.
import { SCALES } from './colormap.js';

const fixed = (digits) => (v) => (Number.isFinite(v) ? v.toFixed(digits) : '–');

export const METRICS = [
  { id: 'none', label: 'none' },
  {
    id: 'ov_erank', label: 'OV effective rank', source: 'spectra', get: (g) => g.ov.effective_rank,
    range: (g) => [1, g.d_head], format: fixed(2),
    help: 'Roy & Vetterli effective rank of W_V W_O: how many directions the head writes (1 … d_head).',
  },
  {
    id: 'qk_erank', label: 'QK effective rank', source: 'spectra', get: (g) => g.qk.effective_rank,
    range: (g) => [1, g.d_head], format: fixed(2),
    help: 'Effective rank of W_Q W_Kᵀ: how many directions the head matches queries and keys on.',
  },
  {
    id: 'ov_top1', label: 'OV top-1 share', source: 'spectra', get: (g) => g.ov.top1_share,
    range: () => [0, 1], format: fixed(3),
    help: 'σ₁² / Σσ²: the share of the OV circuit in its strongest direction.',
  },
  {
    id: 'qk_top1', label: 'QK top-1 share', source: 'spectra', get: (g) => g.qk.top1_share,
    range: () => [0, 1], format: fixed(3),
    help: 'σ₁² / Σσ² of the QK circuit.',
  },
  {
    id: 'ov_norm', label: 'OV norm ‖W_OV‖', source: 'spectra', get: (g) => g.ov.frobenius,
    range: (g, values) => [0, Math.max(...values)], format: fixed(3),
    help: 'Frobenius norm of W_V W_O: how much the head can write.',
  },
  {
    id: 'copying', label: 'OV copying score', source: 'copying', get: (g) => g.copying_score,
    range: () => [-1, 1], format: fixed(3), scale: SCALES.diverging,
    help: 'Re Σλ / Σ|λ| over the eigenvalues of W_E W_OV W_U: near 1 for a head that copies the token it attends to (Elhage et al. 2021).',
  },
];

export function metricById(id) {
  return METRICS.find((m) => m.id === id) || null;
}

export class MetricsController {
  constructor(store, app) {
    this.store = store;
    this.app = app;
    this.seq = 0;
    store.subscribe((state, changed) => {
      if (['metric', 'weights', 'modelInfo'].some((k) => changed.has(k))) this.update(state);
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
      const g = await this.app.geometry(metric.source, { variant });
      if (seq !== this.seq) return;
      const values = Array.from(metric.get(g));
      const [min, max] = metric.range(g, values);
      this.store.set({
        metrics: { id: metric.id, label: metric.label, help: metric.help, values, min, max, variant, scale: metric.scale || SCALES.viridis, format: metric.format },
      });
    } catch (error) {
      if (seq === this.seq) this.store.set({ metrics: { id: metric.id, label: metric.label, error: error.message || String(error), variant } });
    }
  }
}
