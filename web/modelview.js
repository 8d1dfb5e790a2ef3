// Model-wide views from the core's weight geometry, in the state's weight
// variant (switchable here): the redundancy matrix of every pair of heads
// (read subspaces Q, K, V or write subspace O), the Q/K/V-composition scores
// as a matrix and as a layered graph with the random baseline marked, and
// the merge candidates. Computed when the view is on screen. Importance and
// the pruning curve get their panel when the core exposes them.
import { COMPOSITION_COLOURS, compositionGraph, serializeSvg } from './charts.js';
import { el, formatNumber } from './dom.js';
import { exportBar, fileName, svgToPng } from './export.js';
import { MatrixFigure } from './matrixview.js';
import { headKey } from './state.js';
import { variantSwitch } from './weightsview.js';

const SUBSPACES = { O: 'write (O)', V: 'value read (V)', Q: 'query read (Q)', K: 'key read (K)' };

function radios(name, options, initial, onChange) {
  const wrap = el('span', { class: 'variant-switch', role: 'radiogroup' });
  for (const [value, text] of Object.entries(options)) {
    wrap.append(el('label', { class: 'toggle' }, [el('input', { type: 'radio', name, value, checked: value === initial, on: { change: () => onChange(value) } }), ` ${text}`]));
  }
  return wrap;
}

export class ModelView {
  constructor(root, { store, app, modelName = () => 'model', onError = () => {} }) {
    this.store = store;
    this.app = app;
    this.modelName = modelName;
    this.subspace = 'O';
    this.compKind = 'q';
    this.graphKinds = new Set(['q', 'k', 'v']);
    this.seq = 0;
    this.status = el('span', { class: 'muted', id: 'model-status' });
    const redBox = el('div', { id: 'redundancy-figure', class: 'figure' });
    const compBox = el('div', { id: 'composition-figure', class: 'figure' });
    this.graphBox = el('div', { id: 'composition-graph', class: 'graph-wrap' });
    this.graphNote = el('p', { class: 'muted small' });
    this.merges = el('table', { id: 'merge-table', class: 'data-table' });
    this.redundancy = new MatrixFigure(redBox, { maxWidth: () => this.matrixWidth(), onError });
    this.compositionMatrix = new MatrixFigure(compBox, { maxWidth: () => this.matrixWidth(), onError });
    const graphKinds = el('span', { class: 'variant-switch' }, ['q', 'k', 'v'].map((k) => {
      const swatch = el('span', { class: 'swatch' });
      swatch.style.background = COMPOSITION_COLOURS[k];
      return el('label', { class: 'toggle' }, [el('input', { type: 'checkbox', checked: true, on: { change: (e) => { if (e.target.checked) this.graphKinds.add(k); else this.graphKinds.delete(k); this.renderGraph(); } } }), swatch, ` ${k.toUpperCase()}`]);
    }));
    root.append(
      el('div', { class: 'weights-head' }, [el('h2', { text: 'The model as a whole' }), variantSwitch(store, 'model-weights'), this.status]),
      el('p', { class: 'muted', text: 'Processing (fold_ln, centring) does not change attention patterns or the loss; it changes every weight-based number, so each figure names the variant it shows.' }),
      el('div', { class: 'model-grid' }, [
        el('section', { class: 'weights-card' }, [
          el('h3', { text: 'Redundancy: subspace overlap of every pair of heads' }),
          radios('subspace', SUBSPACES, this.subspace, (v) => { this.subspace = v; this.update(this.store.state); }),
          redBox,
        ]),
        el('section', { class: 'weights-card' }, [
          el('h3', { text: 'Composition scores (rows: earlier head, columns: later head)' }),
          radios('composition', { q: 'Q', k: 'K', v: 'V' }, this.compKind, (v) => { this.compKind = v; this.renderComposition(); }),
          compBox,
        ]),
      ]),
      el('section', { class: 'weights-card', id: 'graph-card' }, [
        el('h3', { text: 'Composition graph: pairs above the random baseline' }),
        el('div', { class: 'figure-head' }, [graphKinds, exportBar(() => this.graphFigure(), { onError, label: 'Graph' })]),
        this.graphNote, this.graphBox,
      ]),
      el('section', { class: 'weights-card', id: 'merge-card' }, [
        el('h3', { text: 'Merge candidates: the most redundant pairs' }),
        el('p', { class: 'muted small', text: 'Ranked by the mean of their write (O) and value-read (V) overlap. Merging itself arrives with the interventions of the core.' }),
        this.merges,
        exportBar(() => this.mergeFigure(), { onError, label: 'Merges', kinds: ['json', 'csv'] }),
      ]),
      el('section', { class: 'slot' }, [el('h3', { text: 'Importance and pruning' }), el('p', { class: 'muted', text: 'Head importance (leave-one-out and gradient) and the pruning curve next to random order: waiting for the core\'s API.' })]),
    );
    this.root = root;
    store.subscribe((state, changed) => {
      if (['view', 'weights', 'modelInfo'].some((k) => changed.has(k))) this.update(state);
      if (changed.has('head') && state.view === 'model') this.renderGraph();
      if (changed.has('geometryProgress') && state.view === 'model' && state.geometryProgress) {
        this.status.textContent = `computing ${state.geometryProgress.what}… ${Math.round(state.geometryProgress.fraction * 100)}%`;
      }
    });
    this.update(store.state);
  }

  matrixWidth() {
    return Math.max(320, Math.min(620, ((this.root.clientWidth || 1200) - 80) / 2));
  }

  async update(state) {
    if (state.view !== 'model' || !state.modelInfo) return;
    const seq = ++this.seq;
    const variant = state.weights;
    const current = () => seq === this.seq;
    this.status.textContent = 'computing…';
    const openPair = (i, j) => {
      const H = state.modelInfo.n_head;
      this.store.set({ head: { layer: Math.floor(i / H), head: i % H }, view: 'head' });
    };
    const tasks = [
      this.app.geometry('redundancy', { variant, kind: this.subspace }).then((r) => {
        if (!current()) return;
        // The diagonal (a head with itself) is 1 (its rank / d_head): scale
        // the colours to the largest overlap between different heads.
        const n = r.n_layer * r.n_head;
        let offMax = 0;
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) offMax = Math.max(offMax, r.overlap[i * n + j]);
        const max = Math.min(1, Math.max(0.05, offMax));
        this.redundancy.show(r.overlap, r.n_layer, r.n_head, {
          title: `${this.modelName()} · ${SUBSPACES[this.subspace]} overlap (${variant} weights)`, name: `${this.modelName()}_redundancy_${this.subspace}_${variant}`,
          valueLabel: `overlap, ${SUBSPACES[this.subspace]}`, min: 0, max,
          caption: `Σcos²θ / d_head of the principal angles between the two heads' subspaces; 1 = the same subspace. Colours run to the largest overlap of two different heads (${formatNumber(offMax, 3)}); the diagonal is clipped. Click a cell to open the row's head.`,
          describe: (i, j, v) => `${headKey(Math.floor(i / r.n_head), i % r.n_head)} · ${headKey(Math.floor(j / r.n_head), j % r.n_head)}: overlap ${formatNumber(v, 4)}`,
          onPick: openPair, extra: { variant, subspace: this.subspace, rank: Array.from(r.rank) },
        });
      }, (e) => current() && this.redundancy.clear(e.message)),
      this.app.geometry('composition', { variant }).then((c) => {
        if (!current()) return;
        this.comp = { ...c, variant };
        this.renderComposition();
        this.renderGraph();
      }, (e) => {
        if (!current()) return;
        this.comp = null;
        this.compositionMatrix.clear(e.message);
        this.graphBox.replaceChildren(el('p', { class: 'message error', text: e.message }));
      }),
      this.app.geometry('merges', { variant, topN: 10 }).then((m) => current() && this.renderMerges(m), (e) => current() && this.merges.replaceChildren(el('caption', { text: e.message }))),
    ];
    await Promise.allSettled(tasks);
    if (current()) {
      this.status.textContent = `${variant} weights`;
      this.status.dataset.ready = variant;
    }
  }

  renderComposition() {
    const c = this.comp;
    if (!c) return;
    const L = c.n_layer;
    const H = c.n_head;
    const values = c[this.compKind];
    const max = Math.max(c.baseline.mean * 2, ...values);
    this.compositionMatrix.show(values, L, H, {
      title: `${this.modelName()} · ${this.compKind.toUpperCase()}-composition (${c.variant} weights)`, name: `${this.modelName()}_composition_${this.compKind}_${c.variant}`,
      valueLabel: `${this.compKind.toUpperCase()}-composition`, min: 0, max,
      valid: (i, j) => Math.floor(i / H) < Math.floor(j / H),
      caption: `‖W_OV(1) W(2)‖ / (‖W_OV(1)‖ ‖W(2)‖); random matrices of these shapes score ${formatNumber(c.baseline.mean, 4)} ± ${formatNumber(c.baseline.std, 4)}.${c.qk_ignores_rotary ? ' Rotary model: QK ignores the rotation.' : ''}`,
      describe: (i, j, v) => `${headKey(Math.floor(i / H), i % H)} → ${headKey(Math.floor(j / H), j % H)}: ${formatNumber(v, 4)} (z ${((v - c.baseline.mean) / (c.baseline.std || 1)).toFixed(1)})`,
      onPick: (i, j) => this.store.set({ head: { layer: Math.floor(j / H), head: j % H }, view: 'head' }),
      extra: { variant: c.variant, kind: this.compKind, baseline: c.baseline },
    });
  }

  renderGraph() {
    const c = this.comp;
    if (!c) return;
    const state = this.store.state;
    const threshold = c.baseline.mean + 2 * c.baseline.std;
    const selected = state.head ? state.head.layer * c.n_head + state.head.head : null;
    const { svg, edges, total } = compositionGraph({
      nLayer: c.n_layer, nHead: c.n_head, scores: c, threshold, kinds: [...this.graphKinds], selected,
      onPick: (layer, head) => this.store.set({ head: { layer, head } }),
    });
    this.graphData = { edges, threshold, variant: c.variant, baseline: c.baseline };
    this.graphSvg = svg;
    this.graphNote.textContent = `${edges.length} of ${total} pairs above the baseline + 2 sd (${formatNumber(threshold, 4)}), strongest first; width and opacity grow with the score. Click a head to highlight its edges.`;
    this.graphBox.replaceChildren(svg);
  }

  renderMerges(m) {
    this.mergeData = m;
    const head = el('tr', {}, ['#', 'heads', 'write (O)', 'value read (V)', 'combined'].map((t) => el('th', { scope: 'col', text: t })));
    const rows = m.pairs.map((p, i) => el('tr', {}, [
      el('td', { text: i + 1 }),
      el('td', {}, [
        el('button', { type: 'button', class: 'link', text: headKey(p.layer_a, p.head_a), on: { click: () => this.store.set({ head: { layer: p.layer_a, head: p.head_a }, view: 'head' }) } }),
        ' + ',
        el('button', { type: 'button', class: 'link', text: headKey(p.layer_b, p.head_b), on: { click: () => this.store.set({ head: { layer: p.layer_b, head: p.head_b }, view: 'head' }) } }),
      ]),
      el('td', { text: formatNumber(p.write_overlap, 4) }), el('td', { text: formatNumber(p.read_overlap, 4) }), el('td', { text: formatNumber(p.combined, 4) }),
    ]));
    this.merges.replaceChildren(el('thead', {}, [head]), el('tbody', {}, rows));
  }

  graphFigure() {
    if (!this.graphSvg) return null;
    const d = this.graphData;
    const svg = () => serializeSvg(this.graphSvg);
    return {
      name: fileName('headscope', this.modelName(), 'composition-graph', d.variant),
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => ({ variant: d.variant, threshold: d.threshold, baseline: d.baseline, edges: d.edges.map((e) => ({ kind: e.kind, from: headKey(Math.floor(e.a / this.comp.n_head), e.a % this.comp.n_head), to: headKey(Math.floor(e.b / this.comp.n_head), e.b % this.comp.n_head), score: e.v })) }),
      csv: () => [['kind', 'from', 'to', 'score'], ...d.edges.map((e) => [e.kind, headKey(Math.floor(e.a / this.comp.n_head), e.a % this.comp.n_head), headKey(Math.floor(e.b / this.comp.n_head), e.b % this.comp.n_head), e.v])],
    };
  }

  mergeFigure() {
    const m = this.mergeData;
    if (!m) return null;
    return {
      name: fileName('headscope', this.modelName(), 'merge-candidates', m.variant),
      json: () => m,
      csv: () => [['head_a', 'head_b', 'write_overlap', 'read_overlap', 'combined'], ...m.pairs.map((p) => [headKey(p.layer_a, p.head_a), headKey(p.layer_b, p.head_b), p.write_overlap, p.read_overlap, p.combined])],
    };
  }
}
