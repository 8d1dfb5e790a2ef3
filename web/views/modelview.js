// Model-wide views from the core's weight geometry, in the state's weight
// variant (switchable here): the redundancy matrix of every pair of heads
// (read subspaces Q, K, V or write subspace O), the Q/K/V-composition scores
// as a matrix and as a layered graph of the pairs that stand out from the
// empirical null (pairs that cannot compose), and
// the merge candidates, all computed when the view is on screen; then the
// behaviour of the whole model: importance of every head on the text
// (gradient and leave-one-out), the pruning curve and the standard
// induction test.
import { COMPOSITION_COLOURS, compositionEdges, compositionGraph, compositionGraphNote, formatP, formatPercent, isFlagged, lineChart, serializeSvg } from '../figures/charts.js';
import { SCALES } from '../figures/colormap.js';
import { el, formatNumber } from './dom.js';
import { exportBar, fileName, svgToPng } from '../export/export.js';
import { HeadValuesFigure, MatrixFigure } from '../figures/matrix.js';
import { headKey } from '../../wasm/ids.mjs';
import { variantSwitch } from './weightsview.js';
import { CorpusPanel } from './corpusview.js';

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
        el('h3', { text: 'Composition graph: pairs that stand out from pairs that cannot compose' }),
        el('div', { class: 'figure-head' }, [graphKinds, exportBar(() => this.graphFigure(), { onError, label: 'Graph' })]),
        this.graphNote, this.graphBox,
      ]),
      el('section', { class: 'weights-card', id: 'merge-card' }, [
        el('h3', { text: 'Merge candidates: pairs of one layer that could become one head' }),
        el('p', { class: 'muted small', text: 'A merge replaces two heads of one layer by their summed OV read through one of their patterns, so only pairs within a layer are ranked: by the mean of their write (O) overlap, their value-read (V) overlap and the cosine of their QK forms (the merged head keeps one pattern). Heads that share a key/value head (GQA siblings) share W_V, so their V overlap is 1 by construction and is left out of their mean. Chance for an overlap (two random full-rank subspaces) is d_head / d_model; the redundancy matrix above gives this model\'s own spread. Δloss: the merge measured on the current text (the better of the two patterns; the Interventions tab reports it in full and applies it).' }),
        this.merges,
        exportBar(() => this.mergeFigure(), { onError, label: 'Merges', kinds: ['json', 'csv'] }),
      ]),
      this.behaviourPanels(onError),
    );
    const corpusCard = el('section', { class: 'weights-card', id: 'corpus-card' });
    root.append(corpusCard);
    this.corpus = new CorpusPanel(corpusCard, { store, app, modelName, onError });
    this.root = root;
    store.subscribe((state, changed) => {
      if (['view', 'weights', 'modelInfo'].some((k) => changed.has(k))) this.update(state);
      if (changed.has('head') && state.view === 'model') this.renderGraph();
      if ((changed.has('run') || changed.has('mode') || changed.has('editState')) && state.view === 'model' && this.small()) this.runImportance();
      if (changed.has('computeProgress') && state.view === 'model' && state.computeProgress) {
        this.status.textContent = `computing ${state.computeProgress.what}… ${Math.round(state.computeProgress.fraction * 100)}%`;
      }
    });
    this.update(store.state);
  }

  // Importance, pruning curve and the induction probe: behaviour of the
  // whole model on the text (importance, pruning) or on the standard probe.
  behaviourPanels(onError) {
    const pick = (layer, head) => this.store.set({ head: { layer, head }, view: 'head' });
    const gradBox = el('div', { id: 'importance-gradient', class: 'figure' });
    const looBox = el('div', { id: 'importance-loo', class: 'figure' });
    const probeBox = el('div', { id: 'induction-scores', class: 'figure' });
    this.gradFigure = new HeadValuesFigure(gradBox, { onError, onPick: pick });
    this.looFigure = new HeadValuesFigure(looBox, { onError, onPick: pick });
    this.probeFigure = new HeadValuesFigure(probeBox, { onError, onPick: pick });
    this.importanceNote = el('p', { class: 'muted small', id: 'importance-note' });
    this.importanceButton = el('button', { type: 'button', id: 'importance-run', class: 'secondary', text: 'Compute importance', on: { click: () => this.runImportance() } });
    this.pruneOrder = el('select', { id: 'prune-order', 'aria-label': 'pruning order' }, Object.entries(PRUNE_ORDERS).map(([value, o]) => el('option', { value, text: o.label })));
    this.pruneNote = el('p', { class: 'muted small', id: 'pruning-note' });
    this.pruneButton = el('button', { type: 'button', id: 'pruning-run', class: 'secondary', text: 'Compute the pruning curve', on: { click: () => this.runPruning() } });
    this.pruneBox = el('div', { id: 'pruning-curve', class: 'graph-wrap' });
    this.probeButton = el('button', { type: 'button', id: 'probe-run', class: 'secondary', text: 'Run the induction test', on: { click: () => this.runProbe() } });
    this.probeNote = el('p', { class: 'muted small', id: 'probe-note' });
    this.probeLoss = el('div', { id: 'probe-loss', class: 'graph-wrap' });
    return el('div', {}, [
      el('section', { class: 'weights-card', id: 'importance-card' }, [
        el('h3', { text: 'Importance of every head on this text' }),
        el('p', { class: 'muted small', text: 'Gradient importance |∂L/∂ξ_h| for head gates ξ (Michel et al. 2019, one reverse pass) and the loss change when the head alone is ablated (leave-one-out, one run per head), in the ablation mode of the Interventions tab.' }),
        el('div', { class: 'figure-head' }, [this.importanceButton, this.importanceNote]),
        el('div', { class: 'model-grid' }, [gradBox, looBox]),
      ]),
      el('section', { class: 'weights-card', id: 'pruning-card' }, [
        el('h3', { text: 'Pruning curve' }),
        el('p', { class: 'muted small', text: 'The loss as heads are removed cumulatively, least important first, next to three random orders. Michel et al.\'s order (the default, as run_bertology.py prunes) normalises each layer\'s gradient importance and estimates it again after each step of 10 % of the heads; the others measure once, on the intact model, and remove one head at a time.' }),
        el('div', { class: 'figure-head' }, [el('label', { text: 'order by ' }), this.pruneOrder, this.pruneButton, exportBar(() => this.pruneFigure(), { onError, label: 'Curve' })]),
        this.pruneNote, this.pruneBox,
      ]),
      el('section', { class: 'weights-card', id: 'probe-card' }, [
        el('h3', { text: 'The standard induction test' }),
        el('p', { class: 'muted small', text: 'Sequences [BOS] + R + R with R random tokens (ARENA; 10 sequences): an induction head attends from the second copy to the token after the earlier copy, and in-context learning shows as a lower loss on the repeat.' }),
        el('div', { class: 'figure-head' }, [this.probeButton, this.probeNote, exportBar(() => this.probeLossFigure(), { onError, label: 'Loss', kinds: ['png', 'svg', 'json', 'csv'] })]),
        el('div', { class: 'model-grid' }, [probeBox, this.probeLoss]),
      ]),
    ]);
  }

  ids() {
    const run = this.store.state.run;
    return run && !run.empty ? run.ids : null;
  }

  async runImportance() {
    const ids = this.ids();
    const info = this.store.state.modelInfo;
    if (!ids || !info) return;
    const mode = this.store.state.mode;
    this.importanceNote.textContent = 'computing…';
    try {
      const r = await this.app.compute('importance', { ids, mode });
      if (this.ids() !== ids) return;
      const L = info.nLayer;
      const H = info.nHead;
      const grad = Array.from(r.gradientImportance);
      const loo = Array.from(r.leaveOneOutDelta);
      const m = Math.max(1e-9, ...loo.map(Math.abs));
      this.gradFigure.show(grad, L, H, { title: `${this.modelName()} · gradient importance`, name: `${this.modelName()}_importance_gradient`, label: '|∂L/∂ξ|', min: 0, max: Math.max(1e-12, ...grad), caption: `loss ${formatNumber(r.loss, 4)} (${r.objective}${r.maskedPositions ? `, at the ${r.maskedPositions.length} masked positions ${r.maskedPositions.join(', ')}` : ''})`, extra: { objective: r.objective, loss: r.loss, gradient: Array.from(r.gradient), ids } });
      this.looFigure.show(loo, L, H, { title: `${this.modelName()} · loss change without each head (${mode} ablation)`, name: `${this.modelName()}_importance_loo_${mode}`, label: `Δ loss, ${mode} ablation`, min: -m, max: m, scale: SCALES.diverging, format: (v) => `${v >= 0 ? '+' : ''}${v.toFixed(4)}`, extra: { mode, loss: Array.from(r.leaveOneOutLoss), ids } });
      this.importanceNote.textContent = `${mode} ablation · ${ids.length} tokens`;
      this.importanceNote.dataset.ready = mode;
    } catch (error) {
      this.importanceNote.textContent = error.message;
    }
  }

  async runPruning() {
    const ids = this.ids();
    if (!ids) return;
    const order = this.pruneOrder.value;
    const how = PRUNE_ORDERS[order];
    const mode = this.store.state.mode;
    this.pruneBox.replaceChildren(el('p', { class: 'muted', text: 'computing…' }));
    this.pruneNote.textContent = '';
    try {
      const c = await this.app.compute('pruning', { ids, ...how.args, mode, nRandom: 3, seed: 0 });
      if (this.ids() !== ids) return;
      const P = c.nRemoved.length;
      this.pruneNote.textContent = `order: ${how.label}; ${c.step} head${c.step === 1 ? '' : 's'} a step; ${mode} ablation; on this text (${ids.length} tokens).`;
      const series = [{ name: `${how.short} order`, points: Array.from(c.nRemoved, (n, k) => [n, c.loss[k]]), colour: '#2c6fbb', width: 2.5 }];
      for (let r = 0; r < c.randomLoss.length / P; r++) {
        series.push({ name: `random ${r + 1}`, points: Array.from(c.nRemoved, (n, k) => [n, c.randomLoss[r * P + k]]), colour: '#999', width: 1, opacity: 0.45, legend: false });
      }
      series.push({ name: 'random, mean', points: Array.from(c.nRemoved, (n, k) => [n, c.randomLossMean[k]]), colour: '#666', dash: '5 3', width: 2 });
      this.pruneData = { c, order, mode };
      this.pruneSvg = lineChart(series, { title: `${this.modelName()} · loss as heads are removed (${mode} ablation)`, xLabel: 'heads removed', yLabel: 'loss', width: 620, height: 260 });
      this.pruneBox.replaceChildren(this.pruneSvg);
      this.pruneBox.dataset.ready = `${order}:${mode}`;
    } catch (error) {
      this.pruneBox.replaceChildren(el('p', { class: 'message error', text: error.message }));
    }
  }

  async runProbe() {
    const info = this.store.state.modelInfo;
    if (!info) return;
    this.probeNote.textContent = 'computing…';
    try {
      const t = await this.app.compute('inductionTest', this.app.inductionArgs());
      const L = info.nLayer;
      const H = info.nHead;
      this.probeFigure.show(t.score, L, H, { title: `${this.modelName()} · induction score on [BOS] + R + R`, name: `${this.modelName()}_induction_test`, label: 'induction score', min: 0, max: 1, extra: { seq_len: t.seqLen, batch: t.batch, seed: t.seed, score_strict: t.scoreStrict } });
      const half = t.tokenLoss.length / 2;
      this.probeData = t;
      this.probeSvg = lineChart([{ name: 'loss per position', points: Array.from(t.tokenLoss, (v, k) => [k, v]), colour: '#2c6fbb' }], { title: 'loss by position (first copy, then the repeat)', xLabel: `position (the repeat starts at ${half})`, yLabel: 'loss', width: 420, height: 220 });
      this.probeLoss.replaceChildren(this.probeSvg);
      this.probeNote.textContent = `seq_len ${t.seqLen} × ${t.batch} · loss ${formatNumber(t.lossFirstHalf, 3)} on the first copy → ${formatNumber(t.lossSecondHalf, 3)} on the repeat`;
      this.probeNote.dataset.ready = '1';
    } catch (error) {
      this.probeNote.textContent = error.message;
    }
  }

  pruneFigure() {
    if (!this.pruneSvg) return null;
    const { c, order, mode } = this.pruneData;
    const svg = () => serializeSvg(this.pruneSvg);
    return {
      name: fileName('headscope', this.modelName(), 'pruning', order, mode),
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => c,
      csv: () => [['heads_removed', 'loss', 'random_mean'], ...Array.from(c.nRemoved, (n, k) => [n, c.loss[k], c.randomLossMean[k]])],
    };
  }

  probeLossFigure() {
    if (!this.probeSvg) return null;
    const t = this.probeData;
    const svg = () => serializeSvg(this.probeSvg);
    return {
      name: fileName('headscope', this.modelName(), 'induction-test-loss'),
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => ({ seq_len: t.seqLen, batch: t.batch, seed: t.seed, token_loss: t.tokenLoss, loss_first_half: t.lossFirstHalf, loss_second_half: t.lossSecondHalf }),
      csv: () => [['position', 'loss'], ...Array.from(t.tokenLoss, (v, k) => [k, v])],
    };
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
      const H = state.modelInfo.nHead;
      this.store.set({ head: { layer: Math.floor(i / H), head: i % H }, view: 'head' });
    };
    const tasks = [
      this.app.geometry('redundancy', { variant, kind: this.subspace }).then((r) => {
        if (!current()) return;
        // The diagonal (a head with itself) is 1 (its rank / d_head): scale
        // the colours to the largest overlap between different heads.
        const n = r.nLayer * r.nHead;
        let offMax = 0;
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) offMax = Math.max(offMax, r.overlap[i * n + j]);
        const max = Math.min(1, Math.max(0.05, offMax));
        const { chance, chanceFullRank, pairs } = r.levels;
        this.redundancy.show(r.overlap, r.nLayer, r.nHead, {
          title: `${this.modelName()} · ${SUBSPACES[this.subspace]} overlap (${variant} weights)`, name: `${this.modelName()}_redundancy_${this.subspace}_${variant}`,
          valueLabel: `overlap, ${SUBSPACES[this.subspace]}`, min: 0, max,
          caption: `Σcos²θ / d_head of the principal angles between the two heads' subspaces; 1 = the same subspace. `
            + `Chance (isotropic): two random subspaces of full rank overlap ${formatNumber(chanceFullRank, 3)} on average (d_head / d_model; r_i·r_j / (d_model·d_head) for lower ranks). `
            + `This model's ${pairs.n} pairs of different heads: median ${formatNumber(pairs.median, 3)}, 95th percentile ${formatNumber(pairs.p95, 3)}, 99th ${formatNumber(pairs.p99, 3)}: the residual stream is not isotropic, so compare a pair with these too. `
            + `Colours run to the largest overlap of two different heads (${formatNumber(offMax, 3)}); the diagonal is clipped. Click a cell to open the row's head.`,
          describe: (i, j, v) => `${headKey(Math.floor(i / r.nHead), i % r.nHead)} · ${headKey(Math.floor(j / r.nHead), j % r.nHead)}: overlap ${formatNumber(v, 4)} (chance ${formatNumber(chance[i * n + j], 3)}; ${v > pairs.p95 ? 'above' : 'not above'} this model's 95th percentile)`,
          onPick: openPair,
          extra: { variant, subspace: this.subspace, rank: Array.from(r.rank), chanceFullRank, chance: levelsRows(chance, n), modelPairs: pairs },
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
    // Small models: the behaviour panels fill in by themselves (a run per
    // head is cheap); large ones wait for the buttons.
    if (current() && this.small()) {
      await this.runImportance();
      await this.runProbe();
    }
  }

  small() {
    const info = this.store.state.modelInfo;
    return Boolean(info) && info.nLayer * info.nHead <= 64;
  }

  renderComposition() {
    const c = this.comp;
    if (!c) return;
    const L = c.nLayer;
    const H = c.nHead;
    const values = c[this.compKind];
    const t = c.significance[this.compKind];
    const N = L * H;
    const max = Math.max(c.baseline.mean * 2, ...values);
    this.compositionMatrix.show(values, L, H, {
      title: `${this.modelName()} · ${this.compKind.toUpperCase()}-composition (${c.variant} weights)`, name: `${this.modelName()}_composition_${this.compKind}_${c.variant}`,
      valueLabel: `${this.compKind.toUpperCase()}-composition`, min: 0, max,
      valid: (i, j) => Math.floor(i / H) < Math.floor(j / H),
      caption: `‖W_OV(1) W(2)‖ / (‖W_OV(1)‖ ‖W(2)‖). Null: the same score over the ${t.null.n} pairs that cannot compose (later → earlier, same layer): `
        + `mean ${formatNumber(t.null.mean, 4)}, 95th percentile ${formatNumber(t.null.q95, 4)}, 99th ${formatNumber(t.null.q99, 4)}; each cell's p-value is against it. `
        + (t.resolvable ? `${t.nFlagged} of ${t.nTests} pairs flagged at a ${formatPercent(c.significance.fdr)} false-discovery rate (Benjamini–Hochberg). ` : `Too few null pairs to flag at a ${formatPercent(c.significance.fdr)} false-discovery rate: rank, do not test. `)
        + `For reference, not as a null: random i.i.d. matrices of these shapes score ${formatNumber(c.baseline.mean, 4)}, which real heads beat for their shared anisotropy.${c.qkIgnoresRotary ? ' Rotary model: QK ignores the rotation.' : ''}`,
      describe: (i, j, v) => `${headKey(Math.floor(i / H), i % H)} → ${headKey(Math.floor(j / H), j % H)}: ${formatNumber(v, 4)} (p ${formatP(t.p[i * N + j])}${isFlagged(t, v) ? ', flagged' : ''})`,
      onPick: (i, j) => this.store.set({ head: { layer: Math.floor(j / H), head: j % H }, view: 'head' }),
      extra: { variant: c.variant, kind: this.compKind, baseline: c.baseline, fdr: c.significance.fdr, null: t.null, nullByGap: t.gaps, resolvable: t.resolvable, nFlagged: t.nFlagged, threshold: t.threshold, p: levelsRows(t.p, N) },
    });
  }

  renderGraph() {
    const c = this.comp;
    if (!c) return;
    const state = this.store.state;
    const selected = state.head ? state.head.layer * c.nHead + state.head.head : null;
    const kinds = [...this.graphKinds];
    const pairs = compositionEdges(c, kinds);
    const { svg, edges } = compositionGraph({
      nLayer: c.nLayer, nHead: c.nHead, edges: pairs.edges, selected,
      onPick: (layer, head) => this.store.set({ head: { layer, head } }),
    });
    this.graphData = { edges, ranked: pairs.ranked, variant: c.variant, baseline: c.baseline, fdr: c.significance.fdr, null: Object.fromEntries(kinds.map((k) => [k, c.significance[k].null])) };
    this.graphSvg = svg;
    this.graphNote.textContent = `${compositionGraphNote(c, kinds, pairs, edges.length)} Click a head to highlight its edges.`;
    this.graphBox.replaceChildren(svg);
  }

  renderMerges(m) {
    this.mergeData = m;
    const head = el('tr', {}, ['#', 'heads', 'write (O)', 'value read (V)', 'QK cosine', 'combined', 'Δloss merged'].map((t) => el('th', { scope: 'col', text: t })));
    const open = (layer, h) => el('button', { type: 'button', class: 'link', text: headKey(layer, h), on: { click: () => this.store.set({ head: { layer, head: h }, view: 'head' }) } });
    this.mergeCells = [];
    const rows = m.pairs.map((p, i) => {
      const delta = el('td', { class: 'muted', text: '…' });
      this.mergeCells.push(delta);
      return el('tr', {}, [
        el('td', { text: i + 1 }),
        el('td', {}, [open(p.layer, p.headA), ' + ', open(p.layer, p.headB)]),
        el('td', { text: formatNumber(p.writeOverlap, 4) }),
        el('td', { text: p.kvSiblings ? `${formatNumber(p.readOverlap, 4)} (shared KV head)` : formatNumber(p.readOverlap, 4) }),
        el('td', { text: formatNumber(p.qkSimilarity, 4) }), el('td', { text: formatNumber(p.combined, 4) }), delta,
      ]);
    });
    this.merges.replaceChildren(el('thead', {}, [head]), el('tbody', {}, rows));
    this.measureMerges(m);
  }

  // Each candidate's merge measured on the current text, one after the other.
  async measureMerges(m) {
    const run = this.store.state.run;
    const cells = this.mergeCells;
    if (!run || run.empty || !this.store.state.modelInfo?.hasLmHead) {
      for (const cell of cells) cell.textContent = '–';
      return;
    }
    m.deltaLoss = [];
    for (const [i, p] of m.pairs.entries()) {
      if (this.mergeCells !== cells) return;
      try {
        const r = await this.app.compute('evaluateMerge', { ids: run.ids, layer: p.layer, headA: p.headA, headB: p.headB });
        const d = r.lossMerged - r.lossBase;
        m.deltaLoss[i] = d;
        cells[i].textContent = `${d >= 0 ? '+' : ''}${formatNumber(d, 4)}`;
        cells[i].dataset.value = String(d);
        cells[i].classList.remove('muted');
      } catch (error) {
        cells[i].textContent = error.code === 'cancelled' ? 'cancelled' : 'failed';
        cells[i].title = error.message;
        if (error.code === 'cancelled') return;
      }
    }
  }

  graphFigure() {
    if (!this.graphSvg) return null;
    const d = this.graphData;
    const svg = () => serializeSvg(this.graphSvg);
    return {
      name: fileName('headscope', this.modelName(), 'composition-graph', d.variant),
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => ({ variant: d.variant, edges_are: d.ranked ? 'the highest-scoring pairs, ranked: the null is too small to test' : 'pairs flagged by Benjamini-Hochberg at the fdr against the empirical null', fdr: d.fdr, null: d.null, baseline: d.baseline, edges: d.edges.map((e) => ({ kind: e.kind, from: headKey(Math.floor(e.a / this.comp.nHead), e.a % this.comp.nHead), to: headKey(Math.floor(e.b / this.comp.nHead), e.b % this.comp.nHead), score: e.v, p: e.p })) }),
      csv: () => [['kind', 'from', 'to', 'score', 'p'], ...d.edges.map((e) => [e.kind, headKey(Math.floor(e.a / this.comp.nHead), e.a % this.comp.nHead), headKey(Math.floor(e.b / this.comp.nHead), e.b % this.comp.nHead), e.v, e.p])],
    };
  }

  mergeFigure() {
    const m = this.mergeData;
    if (!m) return null;
    return {
      name: fileName('headscope', this.modelName(), 'merge-candidates', m.variant),
      json: () => m,
      csv: () => [['head_a', 'head_b', 'kv_siblings', 'write_overlap', 'read_overlap', 'qk_similarity', 'combined', 'delta_loss_merged'],
        ...m.pairs.map((p, i) => [headKey(p.layer, p.headA), headKey(p.layer, p.headB), p.kvSiblings, p.writeOverlap, p.readOverlap, p.qkSimilarity, p.combined, m.deltaLoss?.[i] ?? ''])],
    };
  }
}

// A flat [n, n] matrix as n rows (for the exports).
function levelsRows(values, n) {
  return Array.from({ length: n }, (_, i) => Array.from(values.subarray(i * n, (i + 1) * n)));
}

// The pruning orders offered: Michel et al.'s as run_bertology.py prunes
// (the default), and the two importances measured once.
const PRUNE_ORDERS = {
  michel: { label: 'gradient importance, per-layer normalised, re-estimated every 10 % (Michel et al.)', short: 'Michel', args: { order: 'gradient', normalize: true, reestimate: true, step: 0 } },
  gradient: { label: 'raw gradient importance, once', short: 'gradient', args: { order: 'gradient', normalize: false, reestimate: false, step: 1 } },
  leave_one_out: { label: 'leave-one-out loss change, once', short: 'leave-one-out', args: { order: 'leave_one_out', step: 1 } },
};
