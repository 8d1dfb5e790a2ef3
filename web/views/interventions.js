// Interventions: the heads switched off (zero- or mean-ablation, by the
// core), the loss before and after, per-token loss changes, and undo; then
// the weight edits and merges (editview.js). Every change is in the URL, so
// an intervention can be shared, and undone.
import { SCALES, cssAt } from '../figures/colormap.js';
import { displayToken, el, formatNumber, svgEl } from './dom.js';
import { exportBar, fileName } from '../export/export.js';
import { EditsPanel } from './editview.js';
import { ablatedHeads } from '../state/store.js';
import { parseHeadKey } from '../../wasm/ids.mjs';

export class InterventionsPanel {
  constructor(root, { store, app, modelName, onError }) {
    this.store = store;
    this.modelName = modelName;
    this.list = el('div', { id: 'ablated-list', class: 'ablated-list' });
    this.clearButton = el('button', { type: 'button', id: 'ablate-clear', class: 'secondary', text: 'Restore all heads', on: { click: () => store.set({ ablate: [] }) } });
    this.undoButton = el('button', { type: 'button', id: 'ablate-undo', class: 'secondary', text: 'Undo', on: { click: () => this.undo() } });
    this.loss = el('div', { id: 'ablation-loss', class: 'loss-summary' });
    this.chart = el('div', { class: 'delta-chart', id: 'delta-chart' });
    this.editsBox = el('div', { class: 'edits', id: 'edits' });
    this.chartHead = el('div', { class: 'figure-head', hidden: true }, [el('span', { class: 'muted', text: 'loss change per predicted token' }), exportBar(() => this.figure(), { onError, label: 'Loss change' })]);
    this.modeInputs = {};
    this.history = [];
    root.append(
      el('h2', { text: 'Ablation' }),
      el('p', { class: 'muted', text: 'Switch heads off from the grid (A key), the head view, or here; the model re-runs and the loss change is shown. Zero-ablation removes the head\'s output (as transformers\' head_mask); mean-ablation replaces it by its mean over the text\'s positions. Everything is reversible and part of the link.' }),
      el('div', { class: 'row' }, [el('span', { class: 'bar-label', text: 'Ablated' }), this.list, this.undoButton, this.clearButton]),
      el('div', { class: 'row', role: 'radiogroup', 'aria-label': 'ablation mode' }, [
        el('span', { class: 'bar-label', text: 'Mode' }),
        ...['zero', 'mean'].map((mode) => {
          const input = el('input', { type: 'radio', name: 'ablation-mode', value: mode, id: `mode-${mode}`, on: { change: () => store.set({ mode }) } });
          this.modeInputs[mode] = input;
          return el('label', { class: 'toggle', for: `mode-${mode}` }, [input, ` ${mode}`]);
        }),
      ]),
      this.loss,
      this.chartHead,
      this.chart,
      this.editsBox,
    );
    if (app) this.edits = new EditsPanel(this.editsBox, { store, app, modelName, onError });
    let previous = store.state.ablate;
    store.subscribe((state, changed) => {
      if (changed.has('ablate')) {
        this.history.push(previous);
        if (this.history.length > 50) this.history.shift();
        previous = state.ablate;
      }
      if (['ablate', 'run', 'modelInfo', 'mode'].some((k) => changed.has(k))) this.render(state);
    });
    this.render(store.state);
  }

  undo() {
    if (!this.history.length) return;
    const previous = this.history.pop();
    this.store.set({ ablate: previous });
    this.history.pop(); // the set above pushed the state we left
  }

  render(state) {
    for (const [mode, input] of Object.entries(this.modeInputs)) input.checked = state.mode === mode;
    this.list.replaceChildren();
    for (const key of state.ablate) {
      const h = parseHeadKey(key);
      const outside = state.modelInfo && (h.layer >= state.modelInfo.nLayer || h.head >= state.modelInfo.nHead);
      this.list.append(el('span', { class: `head-chip${outside ? ' warn' : ''}`, title: outside ? 'this head does not exist in the loaded model' : '' }, [
        el('button', { type: 'button', class: 'link', text: key, on: { click: () => this.store.set({ head: h, view: 'head' }) } }),
        el('button', { type: 'button', class: 'remove', text: '×', 'aria-label': `restore ${key}`, on: { click: () => this.store.set({ ablate: state.ablate.filter((k) => k !== key) }) } }),
      ]));
    }
    if (!state.ablate.length) this.list.append(el('span', { class: 'muted', text: 'none' }));
    const { outside } = ablatedHeads(state);
    if (outside.length) {
      this.list.append(el('span', { id: 'ablated-outside', class: 'warn', text: `not ablated: ${outside.join(', ')} ${outside.length === 1 ? 'is not a head' : 'are not heads'} of this model` }));
    }
    this.clearButton.disabled = !state.ablate.length;
    this.undoButton.disabled = !this.history.length;
    const run = state.run;
    this.chartHead.hidden = !(run?.gated && run.baseline && state.modelInfo?.hasLmHead);
    this.chart.replaceChildren();
    this.loss.replaceChildren();
    if (!run || run.empty) return;
    if (!state.modelInfo?.hasLmHead || !run.tokenLoss?.length) {
      this.loss.textContent = 'This model has no language-model head: there is no loss to compare; the patterns of later heads still change.';
      return;
    }
    if (!(run.gated && run.baseline)) {
      this.loss.append(el('span', { text: `loss ${formatNumber(run.loss)} nats/token (no head ablated)` }));
      return;
    }
    const d = run.loss - run.baseline.loss;
    this.loss.append(
      el('span', { text: `loss ${formatNumber(run.baseline.loss)} → ` }),
      el('strong', { id: 'ablated-loss', text: formatNumber(run.loss) }),
      el('span', { class: d >= 0 ? 'up' : 'down', id: 'loss-delta', text: ` (${d >= 0 ? '+' : ''}${formatNumber(d)})` }),
    );
    this.renderChart(run);
  }

  // Bars of the per-token loss change around a zero line (SVG built with
  // DOM calls: token text only ever lands in text nodes).
  renderChart(run) {
    const deltas = Array.from(run.tokenLoss, (v, i) => v - run.baseline.tokenLoss[i]);
    const max = Math.max(1e-6, ...deltas.map(Math.abs));
    const width = Math.max(240, Math.min(this.chart.clientWidth || 900, deltas.length * 28 + 60));
    const height = 120;
    const mid = height / 2;
    const step = (width - 60) / deltas.length;
    const svg = svgEl('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'delta-svg', role: 'img', 'aria-label': 'loss change per predicted token' });
    svg.append(
      svgEl('line', { x1: 50, x2: width - 4, y1: mid, y2: mid, stroke: '#999' }),
      svgEl('text', { x: 44, y: 12, 'text-anchor': 'end', class: 'tick', text: `+${formatNumber(max, 3)}` }),
      svgEl('text', { x: 44, y: mid + 4, 'text-anchor': 'end', class: 'tick', text: '0' }),
      svgEl('text', { x: 44, y: height - 4, 'text-anchor': 'end', class: 'tick', text: `−${formatNumber(max, 3)}` }),
    );
    deltas.forEach((delta, i) => {
      const h = Math.max(1, (Math.abs(delta) / max) * (mid - 6));
      const bar = svgEl('rect', {
        x: 52 + i * step, y: delta >= 0 ? mid - h : mid, width: Math.max(2, step - 2), height: h,
        fill: cssAt(SCALES.diverging, 0.5 + delta / max / 2), class: 'delta-bar', 'data-delta': delta,
      });
      bar.append(svgEl('title', { text: `${displayToken(run.tokens[i])} → ${displayToken(run.tokens[i + 1])}: ${delta >= 0 ? '+' : ''}${formatNumber(delta)}` }));
      svg.append(bar);
    });
    this.chart.append(svg);
  }

  figure() {
    const state = this.store.state;
    const run = state.run;
    if (!run || run.empty || !run.gated || !run.baseline || !run.tokenLoss?.length) return null;
    const model = this.modelName();
    const rowsOut = Array.from(run.tokenLoss, (v, i) => ({ position: i, token: run.tokens[i], next: run.tokens[i + 1], baseline: run.baseline.tokenLoss[i], ablated: v, delta: v - run.baseline.tokenLoss[i] }));
    const width = Math.max(320, rowsOut.length * 12 + 40);
    const max = Math.max(1e-6, ...rowsOut.map((r) => Math.abs(r.delta)));
    const svg = () => {
      const bars = rowsOut.map((r, i) => {
        const h = (Math.abs(r.delta) / max) * 60;
        const y = r.delta >= 0 ? 90 - h : 90;
        return `<rect x="${20 + i * 12}" y="${y}" width="10" height="${Math.max(h, 0.5)}" fill="${cssAt(SCALES.diverging, 0.5 + r.delta / max / 2)}"/>`;
      }).join('\n');
      return `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="170" viewBox="0 0 ${width} 170" font-family="system-ui, sans-serif" font-size="12"><rect width="100%" height="100%" fill="#fff"/><text x="8" y="16">loss change per token with ${state.ablate.join(', ')} ablated (Δ ${formatNumber(run.loss - run.baseline.loss)})</text><line x1="16" y1="90" x2="${width - 8}" y2="90" stroke="#999"/>${bars}</svg>\n`;
    };
    return {
      name: fileName('headscope', model, 'ablation', state.ablate.join('-')),
      svg,
      png: async () => (await import('../export/export.js')).svgToPng(svg(), 2),
      json: () => ({ model, ablated: state.ablate, baseline_loss: run.baseline.loss, loss: run.loss, tokens: rowsOut }),
      csv: () => [['position', 'token', 'next_token', 'baseline_loss', 'ablated_loss', 'delta'], ...rowsOut.map((r) => [r.position, r.token, r.next, r.baseline, r.ablated, r.delta])],
    };
  }
}
