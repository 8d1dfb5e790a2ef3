// The head view's weight panels: what the selected head's matrices say,
// from the core's geometry (in the state's weight variant, which is shown
// and switchable here): OV and QK spectra with effective rank, the OV
// copying score, the vocabulary read-out of the top OV directions, the most
// redundant heads and the strongest composition partners. Computed when the
// head view is on screen, once per model and variant.
import { COMPOSITION_COLOURS, formatP, formatPercent, isFlagged, serializeSvg, spectrumChart } from '../figures/charts.js';
import { displayToken, el, formatNumber } from './dom.js';
import { HeadValuesFigure } from '../figures/matrix.js';
import { exportBar, fileName, svgToPng } from '../export/export.js';
import { selectedHead } from '../state/store.js';
import { headKey } from '../../wasm/ids.mjs';

export function variantSwitch(store, name) {
  const inputs = {};
  const wrap = el('span', { class: 'variant-switch', role: 'radiogroup', 'aria-label': 'weight variant' }, [el('span', { class: 'muted', text: 'weights:' })]);
  for (const value of ['processed', 'raw']) {
    const input = el('input', { type: 'radio', name, value, on: { change: () => store.set({ weights: value }) } });
    inputs[value] = input;
    wrap.append(el('label', { class: 'toggle', title: value === 'processed' ? 'TransformerLens processing: fold_ln, centred writing weights, folded value biases' : 'the weights as stored in the checkpoint' }, [input, ` ${value}`]));
  }
  const render = (state) => {
    for (const [value, input] of Object.entries(inputs)) input.checked = state.weights === value;
  };
  store.subscribe((state, changed) => changed.has('weights') && render(state));
  render(store.state);
  return wrap;
}

function section(title, ...children) {
  return el('section', { class: 'weights-card' }, [el('h3', { text: title }), ...children]);
}

function headButton(store, layer, head, text) {
  return el('button', { type: 'button', class: 'link head-link', text: text || headKey(layer, head), on: { click: () => store.set({ head: { layer, head } }) } });
}

export class HeadWeights {
  constructor(root, { store, app, modelName, onError }) {
    this.store = store;
    this.app = app;
    this.modelName = modelName;
    this.seq = 0;
    this.status = el('span', { class: 'muted', id: 'weights-status' });
    this.spectra = el('div', { class: 'spectra', id: 'head-spectra' });
    this.spectraNumbers = el('dl', { class: 'numbers', id: 'head-spectra-numbers' });
    this.readout = el('div', { class: 'readout', id: 'head-readout' });
    this.redundant = el('div', { class: 'partners', id: 'head-redundant' });
    this.composition = el('div', { class: 'partners', id: 'head-composition' });
    this.circuits = el('dl', { class: 'numbers', id: 'head-full-circuits' });
    const positionalBox = el('div', { id: 'head-positional', class: 'figure' });
    this.positional = new HeadValuesFigure(positionalBox, { onError });
    root.append(
      el('div', { class: 'weights-head' }, [el('h2', { text: 'What the weights say' }), variantSwitch(store, 'head-weights'), this.status]),
      el('div', { class: 'weights-grid' }, [
        section('Spectra', this.spectra, this.spectraNumbers, exportBar(() => this.spectraFigure(), { onError, label: 'Spectra' })),
        section('Vocabulary read-out of the top OV directions', el('p', { class: 'muted small', text: 'Row-vector convention (TransformerLens): the head maps x to x·W_OV = Σ (x·u_k) σ_k v_kᵀ. "Reads" lists tokens whose embedding aligns with u_k (input side), "writes" tokens whose unembedding aligns with v_k (output side).' }), this.readout, exportBar(() => this.readoutFigure(), { onError, label: 'Read-out', kinds: ['json', 'csv'] })),
        section('Most redundant heads', el('p', { class: 'muted small', text: 'Subspace overlap Σcos²θ / d_head with every other head: O = what they write, V = what their values read.' }), this.redundant),
        section('Full circuits', el('p', { class: 'muted small', text: 'From the weights alone (ARENA 1.2). Full OV W_E·W_OV·W_U: the share of tokens whose own logit is the top of their row when the head attends to them (a copying head), and the own logit\'s mean rank. Token QK W_E·W_QK·W_Eᵀ: the same for a query token\'s score of its own copies. Positional QK (learned positions): the pattern W_pos·W_QK·W_posᵀ alone gives, over the first positions; norms and biases left out.' }),
          this.circuits, positionalBox),
        section('Strongest composition partners', el('p', { class: 'muted small', text: 'Q-, K-, V-composition scores with earlier heads (in) and later heads (out); p = (1 + the number of pairs that cannot compose, later → earlier or in one layer, scoring at least as high) / (1 + their number): the empirical p-value.' }), this.composition),
      ]),
    );
    store.subscribe((state, changed) => {
      if (['view', 'head', 'weights', 'modelInfo'].some((k) => changed.has(k))) this.update(state);
      if (changed.has('computeProgress') && state.view === 'head' && state.computeProgress) {
        this.status.textContent = `computing ${state.computeProgress.what}… ${Math.round(state.computeProgress.fraction * 100)}%`;
      }
    });
    this.update(store.state);
  }

  async update(state) {
    if (state.view !== 'head' || !state.modelInfo) return;
    const seq = ++this.seq;
    const variant = state.weights;
    const { layer, head } = selectedHead(state);
    this.status.textContent = 'computing…';
    const current = () => seq === this.seq;
    const fail = (box) => (error) => {
      if (!current()) return;
      box.replaceChildren(el('p', { class: 'message error', text: error.message || String(error) }));
    };
    const spectra = this.app.geometry('spectra', { variant });
    const copying = this.app.geometry('copying', { variant }).catch(() => null);
    const tasks = [
      Promise.all([spectra, copying]).then(([s, c]) => current() && this.renderSpectra(s, c, layer, head), fail(this.spectra)),
      this.app.geometry('readout', { variant, layer, head, directions: 3, topN: 8 }).then((r) => current() && this.renderReadout(r, layer, head), fail(this.readout)),
      Promise.all([this.app.geometry('redundancy', { variant, kind: 'O' }), this.app.geometry('redundancy', { variant, kind: 'V' })])
        .then(([o, v]) => current() && this.renderRedundant(o, v, layer, head), fail(this.redundant)),
      this.app.geometry('composition', { variant }).then((c) => current() && this.renderComposition(c, layer, head), fail(this.composition)),
      this.renderCircuits(variant, layer, head, current),
    ];
    await Promise.allSettled(tasks);
    if (current()) {
      this.status.textContent = `${variant} weights`;
      this.status.dataset.ready = `${headKey(layer, head)}:${variant}`;
    }
  }

  // The selected head's full circuits: the diagonal tests beside their
  // chance levels, and the positional pattern where the model has one.
  async renderCircuits(variant, layer, head, current) {
    const info = this.store.state.modelInfo;
    const i = layer * info.nHead + head;
    this.circuits.replaceChildren(el('dd', { class: 'muted', text: 'computing…' }));
    try {
      const r = await this.app.geometry('circuits', { variant, heads: [i], maxRows: 1024 });
      if (!current()) return;
      const rows = r.sampled ? `${r.nRows} tokens sampled (seed ${r.seed}) of ${r.dVocab}` : `all ${r.dVocab} tokens`;
      const line = (label, value, chance, key) => [el('dt', { text: label }), el('dd', { text: `${value} (chance ${chance})`, dataset: { value: String(key) } })];
      this.circuits.replaceChildren(
        ...line('full OV: own token top-1', formatPercent(r.ov.top1[0]), formatPercent(r.chance.top1), r.ov.top1[0]),
        ...line('full OV: own token\'s mean rank', formatNumber(r.ov.meanRank[0], 1), formatNumber(r.chance.meanRank, 1), r.ov.meanRank[0]),
        ...line('token QK: own token top-1', formatPercent(r.qk.top1[0]), formatPercent(r.chance.top1), r.qk.top1[0]),
        ...line('token QK: own token\'s mean rank', formatNumber(r.qk.meanRank[0], 1), formatNumber(r.chance.meanRank, 1), r.qk.meanRank[0]),
        el('dt', { text: 'rows' }), el('dd', { text: `${rows}, ${variant} weights` }),
        ...(info.rotaryDim > 0 ? [el('dt', { text: 'rotary' }), el('dd', { text: 'W_QK here is the form at relative offset 0: RoPE rotates queries and keys by their positions, which the weights alone do not show' })] : []),
      );
    } catch (error) {
      if (current()) this.circuits.replaceChildren(el('dd', { class: 'message error', text: error.message }));
    }
    if (!info.learnedPositions) {
      this.positional.clear('No positional QK circuit: this model has no learned positional embeddings (rotary models rotate q and k by position instead).');
      return;
    }
    try {
      const p = await this.app.geometry('positional', { variant, heads: [i], maxPositions: 24 });
      if (!current()) return;
      const P = p.nPositions;
      const labels = Array.from({ length: P }, (_, k) => String(k));
      this.positional.show(p.patterns, P, P, {
        title: `${this.modelName()} · ${headKey(layer, head)} positional QK pattern (${variant})`,
        name: `${this.modelName()}_${headKey(layer, head)}_positional`,
        label: 'attention from positions alone', min: 0, max: 1, rowLabels: labels.map((k) => `q${k}`), columnLabels: labels,
        format: (v) => formatNumber(v, 3),
        caption: `Previous position ${formatNumber(p.previous[0], 3)} on average (uniform attention: ${formatNumber(p.previousChance, 3)}); same position ${formatNumber(p.current[0], 3)}. Rows: query positions, columns: key positions.`,
        describe: (k, v) => `query ${Math.floor(k / P)} → key ${k % P}: ${formatNumber(v, 3)}`,
        extra: { previous: p.previous[0], current: p.current[0], previous_chance: p.previousChance, variant },
      });
    } catch (error) {
      if (current()) this.positional.clear(error.message);
    }
  }

  renderSpectra(s, copying, layer, head) {
    const H = s.nHead;
    const dh = s.dHead;
    const i = layer * H + head;
    const pick = (circuit) => Array.from(s[circuit].sigma.subarray(i * dh, (i + 1) * dh));
    this.spectraData = { variant: s.variant, layer, head, ov: pick('ov'), qk: pick('qk'), s, i, copying: copying ? copying.copyingScore[i] : null };
    this.spectra.replaceChildren(
      spectrumChart(this.spectraData.ov, { title: `OV = W_V W_O (${s.variant})${s.ovIgnoresPostNorm ? ' · norm after attention ignored' : ''}`, erank: s.ov.effectiveRank[i], colour: '#2c6fbb' }),
      spectrumChart(this.spectraData.qk, { title: `QK = W_Q W_Kᵀ (${s.variant})${s.qkIgnoresRotary ? ' · rotary ignored' : ''}${s.qkIgnoresQkNorm ? ' · q/k norm ignored' : ''}${s.qkIgnoresSoftcap ? ' · soft-cap ignored' : ''}`, erank: s.qk.effectiveRank[i], colour: '#7b3294' }),
    );
    const rows = [
      ['‖OV‖_F', s.ov.frobenius[i]], ['OV effective rank', s.ov.effectiveRank[i]], ['OV top-1 share', s.ov.top1Share[i]], [`OV top-${s.topK} share`, s.ov.topkShare[i]],
      ['‖QK‖_F', s.qk.frobenius[i]], ['QK effective rank', s.qk.effectiveRank[i]], ['QK top-1 share', s.qk.top1Share[i]],
    ];
    if (copying) rows.push(['OV copying score', copying.copyingScore[i]]);
    this.spectraNumbers.replaceChildren(...rows.flatMap(([name, value]) => [el('dt', { text: name }), el('dd', { text: formatNumber(value, 4), dataset: { value } })]));
  }

  renderReadout(r, layer, head) {
    this.readoutData = { variant: r.variant, layer, head, directions: r.directions };
    const tokenList = (list) => el('span', { class: 'token-list' }, list.map((t) => el('span', {
      class: 'token', text: t.text !== null && t.text !== undefined ? displayToken(t.text) : `#${t.token}`,
      title: `id ${t.token} · cosine ${formatNumber(t.cosine, 3)} · dot ${formatNumber(t.dot, 3)}`,
    })));
    this.readout.replaceChildren(...r.directions.map((d, k) => el('div', { class: 'direction' }, [
      el('div', { class: 'direction-head' }, [el('b', { text: `direction ${k + 1}` }), el('span', { class: 'muted', text: ` σ = ${formatNumber(d.sigma, 4)}` })]),
      el('div', { class: 'rw' }, [el('span', { class: 'rw-label', text: 'reads' }), tokenList(d.readTop)]),
      el('div', { class: 'rw' }, [el('span', { class: 'rw-label', text: 'writes' }), tokenList(d.writeTop)]),
      el('details', {}, [el('summary', { text: 'the opposite ends (negative side)' }),
        el('div', { class: 'rw' }, [el('span', { class: 'rw-label', text: 'reads' }), tokenList(d.readBottom)]),
        el('div', { class: 'rw' }, [el('span', { class: 'rw-label', text: 'writes' }), tokenList(d.writeBottom)])]),
    ])));
  }

  renderRedundant(o, v, layer, head) {
    const N = o.nLayer * o.nHead;
    const H = o.nHead;
    const i = layer * H + head;
    const top = (m) => Array.from({ length: N }, (_, j) => [j, m.overlap[i * N + j]]).filter(([j]) => j !== i).sort((a, b) => b[1] - a[1]).slice(0, 5);
    const variant = o.variant;
    // Each list beside its chance level and the model's own spread (wasm/headscope.mjs redundancyLevels).
    const levels = (m) => el('p', {
      class: 'muted small levels',
      text: `chance (random subspaces) ${formatNumber(m.levels.chanceFullRank, 3)} · this model's pairs: median ${formatNumber(m.levels.pairs.median, 3)}, 95th percentile ${formatNumber(m.levels.pairs.p95, 3)}`,
    });
    const list = (title, m, kind) => el('div', { class: 'partner-list' }, [el('h4', { text: title }), levels(m), ...top(m).map(([j, value]) => {
      const angles = el('div', { class: 'angles muted small', hidden: true });
      const other = { layer: Math.floor(j / H), head: j % H, kind };
      const toggle = el('button', {
        type: 'button', class: 'link small-button', text: 'angles', title: 'principal angles between the two subspaces',
        on: {
          click: async () => {
            angles.hidden = !angles.hidden;
            if (angles.hidden || angles.childElementCount) return;
            try {
              const pair = await this.app.geometry('pair', { variant, a: { layer, head, kind }, b: other });
              const degrees = Array.from(pair.theta, (t) => (t * 180) / Math.PI);
              angles.append(el('span', { text: `${kind} subspaces (ranks ${pair.rankA}, ${pair.rankB}): ${degrees.map((d) => `${d.toFixed(1)}°`).join(' ')}` }));
              angles.dataset.theta = JSON.stringify(Array.from(pair.theta));
            } catch (error) {
              angles.append(el('span', { text: error.message }));
            }
          },
        },
      });
      return el('div', { class: 'partner-wrap' }, [
        el('div', { class: 'partner', dataset: { head: headKey(other.layer, other.head), value, chance: m.levels.chance[i * N + j] } }, [
          headButton(this.store, other.layer, other.head),
          el('span', { class: 'meter' }, [meterBar(value, 1)]),
          el('span', { class: 'num', text: formatNumber(value, 3), title: `chance for these ranks ${formatNumber(m.levels.chance[i * N + j], 3)}` }),
          el('span', { class: 'muted small', text: value > m.levels.pairs.p95 ? 'top 5 %' : '' }),
          toggle,
        ]),
        angles,
      ]);
    })]);
    this.redundant.replaceChildren(list('write (O)', o, 'O'), list('value read (V)', v, 'V'));
  }

  renderComposition(c, layer, head) {
    const L = c.nLayer;
    const H = c.nHead;
    const N = L * H;
    const i = layer * H + head;
    const sig = c.significance;
    const n = sig.k.null.n;
    const nullNote = sig.k.resolvable
      ? `null: ${n} pairs that cannot compose; ✱ flagged at a ${formatPercent(sig.fdr)} false-discovery rate (Benjamini–Hochberg)`
      : `null: only ${n} pairs that cannot compose, too few to flag at a ${formatPercent(sig.fdr)} false-discovery rate: a ranking, not a test`;
    const entries = (dir) => {
      const out = [];
      for (const kind of ['q', 'k', 'v']) {
        for (let j = 0; j < N; j++) {
          const value = dir === 'in' ? c[kind][j * N + i] : c[kind][i * N + j];
          if (value > 0) out.push({ kind, j, value, p: c.significance[kind].p[dir === 'in' ? j * N + i : i * N + j] });
        }
      }
      return out.sort((a, b) => b.value - a.value).slice(0, 6);
    };
    const list = (title, items, dir) => el('div', { class: 'partner-list' }, [el('h4', { text: title }), ...(items.length ? items.map((e) => el('div', { class: 'partner', dataset: { head: headKey(Math.floor(e.j / H), e.j % H), kind: e.kind, value: e.value } }, [
      el('span', { class: 'kind', text: e.kind.toUpperCase() }),
      headButton(this.store, Math.floor(e.j / H), e.j % H, dir === 'in' ? `${headKey(Math.floor(e.j / H), e.j % H)} →` : `→ ${headKey(Math.floor(e.j / H), e.j % H)}`),
      el('span', { class: 'meter' }, [meterBar(e.value, Math.max(...items.map((x) => x.value)), COMPOSITION_COLOURS[e.kind])]),
      el('span', { class: 'num', text: `${formatNumber(e.value, 3)} · p ${formatP(e.p)}${isFlagged(sig[e.kind], e.value) ? ' ✱' : ''}` }),
    ])) : [el('p', { class: 'muted small', text: dir === 'in' ? 'none: the first layer reads only the embeddings' : 'none: no later layer' })])]);
    this.composition.replaceChildren(
      el('p', { class: 'muted small', text: `${nullNote}${c.qkIgnoresRotary ? ' · QK ignores the rotation (rotary model)' : ''}${c.qkIgnoresQkNorm ? ' · QK leaves out the q/k RMSNorm (its weights, and its per-token scale, which no weight-only view captures)' : ''}${c.qkIgnoresSoftcap ? ' · QK leaves out the soft-capping of the scores (c·tanh(s/c)), which flattens large scores' : ''}` }),
      el('div', { class: 'partner-columns' }, [list('in: earlier heads feeding this one', entries('in'), 'in'), list('out: later heads it feeds', entries('out'), 'out')]),
    );
  }

  spectraFigure() {
    const d = this.spectraData;
    if (!d) return null;
    const key = headKey(d.layer, d.head);
    const svg = () => {
      const ov = spectrumChart(d.ov, { title: `${this.modelName()} ${key} OV (${d.variant})`, erank: d.s.ov.effectiveRank[d.i] });
      const qk = spectrumChart(d.qk, { title: `${key} QK (${d.variant})`, erank: d.s.qk.effectiveRank[d.i], colour: '#7b3294' });
      qk.setAttribute('x', 310);
      const both = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      both.setAttribute('width', 620);
      both.setAttribute('height', 150);
      both.setAttribute('viewBox', '0 0 620 150');
      both.append(ov, qk);
      return serializeSvg(both);
    };
    return {
      name: fileName('headscope', this.modelName(), key, 'spectra', d.variant),
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => ({
        model: this.modelName(), layer: d.layer, head: d.head, variant: d.variant, ov_sigma: d.ov, qk_sigma: d.qk,
        ov_effective_rank: d.s.ov.effectiveRank[d.i], qk_effective_rank: d.s.qk.effectiveRank[d.i],
        ov_frobenius: d.s.ov.frobenius[d.i], qk_frobenius: d.s.qk.frobenius[d.i], copying_score: d.copying,
      }),
      csv: () => [['k', 'ov_sigma', 'qk_sigma'], ...d.ov.map((v, k) => [k + 1, v, d.qk[k]])],
    };
  }

  readoutFigure() {
    const d = this.readoutData;
    if (!d) return null;
    const rows = [['direction', 'sigma', 'side', 'end', 'rank', 'token_id', 'token', 'cosine', 'dot']];
    d.directions.forEach((dir, k) => {
      for (const [side, end, list] of [['read', 'top', dir.readTop], ['write', 'top', dir.writeTop], ['read', 'bottom', dir.readBottom], ['write', 'bottom', dir.writeBottom]]) {
        list.forEach((t, r) => rows.push([k + 1, dir.sigma, side, end, r + 1, t.token, t.text ?? '', t.cosine, t.dot]));
      }
    });
    return {
      name: fileName('headscope', this.modelName(), headKey(d.layer, d.head), 'ov-readout', d.variant),
      json: () => ({ model: this.modelName(), layer: d.layer, head: d.head, variant: d.variant, convention: 'row vectors: x W_OV = sum_k (x . u_k) sigma_k v_k^T; read = embedding rows vs u_k, write = unembedding columns vs v_k', directions: d.directions }),
      csv: () => rows,
    };
  }
}

function meterBar(value, max, colour = '#2c6fbb') {
  const bar = el('span', { class: 'meter-bar' });
  bar.style.width = `${Math.max(2, Math.min(100, (value / (max || 1)) * 100))}%`;
  bar.style.background = colour;
  return bar;
}
