// The head view: the selected head's attention heatmap (token labels, exact
// value under the pointer, optional numbers in the cells, a table of all
// values for screen readers and copying) and the token-to-token line view
// as BertViz's head view, each with PNG/SVG/JSON/CSV export.
import { SCALES, legend } from '../figures/colormap.js';
import { displayToken, el, sizeCanvas, svgEl } from './dom.js';
import { canvasToBlob, exportBar, fileName, svgToPng } from '../export/export.js';
import { LINE_COLOUR, drawHeatmap, heatmapCellAt, heatmapLayout, heatmapSvg, isMasked, lineList, linesLayout, linesSvg, paintPattern } from '../figures/patterns.js';
import { displayPattern, moveHead, rows, toggleAblation } from './overview.js';
import { selectedHead } from '../state/store.js';
import { headKey } from '../../wasm/ids.mjs';
import { HeadBehavior } from './behaviorview.js';
import { HeadWeights } from './weightsview.js';

// The figure data of the selected head, or null: {layer, head, key, tokens, ids, T, pattern, causal, ablated}.
export function headData(state) {
  const run = state.run;
  if (!run || run.empty || !state.modelInfo) return null;
  const { layer, head } = selectedHead(state);
  const key = headKey(layer, head);
  const ablated = state.ablate.includes(key);
  return { layer, head, key, tokens: run.tokens, ids: run.ids, T: run.nTokens, pattern: displayPattern(run, layer, head, ablated), causal: state.modelInfo.causal, ablated };
}

function patternExports(d, modelName, kind) {
  return {
    json: () => ({ model: modelName, layer: d.layer, head: d.head, tokens: d.tokens, ids: d.ids, causal: d.causal, ablated: d.ablated, pattern: rows(d.pattern, d.T) }),
    csv: () => {
      const out = [['query', 'key', 'query_token', 'key_token', 'weight']];
      for (let q = 0; q < d.T; q++) for (let k = 0; k < d.T; k++) out.push([q, k, d.tokens[q], d.tokens[k], d.pattern[q * d.T + k]]);
      return out;
    },
    name: fileName('headscope', modelName, d.key, kind),
  };
}

// Both figures below redraw only while `visible()` (the head view hides them
// behind the overview most of the time; a run then costs the overview alone):
// a change while hidden is drawn when they are shown.
export class Heatmap {
  constructor(root, { store, modelName, onError, maxWidth = () => 640, visible = () => true }) {
    this.store = store;
    this.modelName = modelName;
    this.maxWidth = maxWidth;
    this.visible = visible;
    this.stale = false;
    this.canvas = el('canvas', { class: 'heatmap', id: 'heatmap', tabindex: 0, 'aria-label': 'attention heatmap; arrow keys with Shift move the highlighted cell' });
    this.tooltip = el('div', { class: 'tooltip', id: 'heatmap-tooltip', role: 'tooltip', hidden: true });
    this.showValues = el('input', { type: 'checkbox', id: 'show-values', on: { change: () => this.draw() } });
    this.table = el('table', { class: 'values-table', id: 'values-table' });
    this.details = el('details', { class: 'values', on: { toggle: () => this.renderTable() } }, [el('summary', { text: 'All values as a table' }), el('div', { class: 'table-wrap' }, [this.table])]);
    this.highlight = null;
    this.root = root;
    this.canvas.addEventListener('mousemove', (e) => this.onPointer(e));
    this.canvas.addEventListener('mouseleave', () => this.setHighlight(null));
    this.canvas.addEventListener('keydown', (e) => this.onKey(e));
    root.append(
      el('div', { class: 'figure-head' }, [
        legend(SCALES.viridis, { label: 'attention weight', ticks: 3, format: (v) => String(v) }),
        el('label', { class: 'toggle' }, [this.showValues, ' numbers in cells']),
      ]),
      el('div', { class: 'heatmap-wrap' }, [this.canvas, this.tooltip]),
      el('p', { class: 'axis-note muted', text: 'rows: query token (attending from) · columns: key token (attended to) · grey: masked' }),
      el('div', { class: 'figure-foot' }, [this.details, exportBar(() => this.figure(), { onError, label: 'Heatmap' })]),
    );
    store.subscribe((state, changed) => {
      if (['run', 'head', 'ablate', 'modelInfo'].some((k) => changed.has(k)) || (changed.has('view') && this.stale)) this.update();
      else if (changed.has('focusToken')) this.draw();
    });
    this.update();
  }

  // A new width (a scrollbar appearing counts): re-lay out, keeping the
  // hovered cell and its tooltip.
  resized() {
    if (!this.data || this.stale) return;
    const layout = heatmapLayout(this.data.tokens, this.maxWidth());
    if (layout.cell === this.layout.cell) return;
    this.layout = layout;
    this.root.style.width = `${Math.max(layout.width, 340)}px`;
    const cell = this.highlight;
    this.highlight = null;
    this.draw();
    if (cell) this.setHighlight(cell);
  }

  update() {
    this.stale = !this.visible();
    if (this.stale) return;
    this.data = headData(this.store.state);
    this.highlight = null;
    this.tooltip.hidden = true;
    if (!this.data) {
      this.canvas.hidden = true;
      return;
    }
    this.canvas.hidden = false;
    this.layout = heatmapLayout(this.data.tokens, this.maxWidth());
    // The figure is as wide as its canvas: captions wrap instead of widening it.
    this.root.style.width = `${Math.max(this.layout.width, 340)}px`;
    this.image = paintPattern(document.createElement('canvas'), this.data.pattern, this.data.T, this.data.causal);
    this.canvas.dataset.head = this.data.key;
    // Where the cells are (CSS pixels), for pointer tests and tools.
    Object.assign(this.canvas.dataset, { left: this.layout.left, top: this.layout.top, cell: this.layout.cell, tokens: this.data.T });
    this.draw();
    this.renderTable();
  }

  draw() {
    if (!this.data || this.stale) return;
    const ctx = sizeCanvas(this.canvas, this.layout.width, this.layout.height);
    const focus = this.store.state.focusToken;
    drawHeatmap(ctx, {
      pattern: this.data.pattern, causal: this.data.causal, layout: this.layout, highlight: this.highlight, showValues: this.showValues.checked, patternImage: this.image,
      focusRow: focus !== null && focus < this.data.T ? focus : null,
    });
  }

  onPointer(event) {
    if (!this.data) return;
    const rect = this.canvas.getBoundingClientRect();
    this.setHighlight(heatmapCellAt(this.layout, event.clientX - rect.left, event.clientY - rect.top));
  }

  onKey(event) {
    if (!this.data || !event.shiftKey) return;
    const h = this.highlight || { query: 0, key: 0 };
    const d = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[event.key];
    if (!d) return;
    event.preventDefault();
    event.stopPropagation();
    const T = this.data.T;
    this.setHighlight({ query: Math.max(0, Math.min(T - 1, h.query + d[0])), key: Math.max(0, Math.min(T - 1, h.key + d[1])) });
  }

  setHighlight(cell) {
    const same = (a, b) => (a === b) || (a && b && a.query === b.query && a.key === b.key);
    if (same(cell, this.highlight)) return;
    this.highlight = cell;
    this.draw();
    if (!cell) {
      this.tooltip.hidden = true;
      return;
    }
    const { query: q, key: k } = cell;
    const d = this.data;
    const masked = isMasked(d.causal, q, k);
    this.tooltip.replaceChildren(
      el('div', { class: 'tip-tokens' }, [
        el('span', { class: 'token', text: displayToken(d.tokens[q]) }), el('span', { class: 'muted', text: ` #${q}  →  ` }),
        el('span', { class: 'token', text: displayToken(d.tokens[k]) }), el('span', { class: 'muted', text: ` #${k}` }),
      ]),
      el('div', { class: 'tip-value', text: masked ? 'masked (a causal model cannot attend to later tokens)' : `${d.key} weight ${Number(d.pattern[q * d.T + k].toPrecision(7))}` }),
    );
    this.tooltip.dataset.value = masked ? '' : String(d.pattern[q * d.T + k]);
    this.tooltip.dataset.query = q;
    this.tooltip.dataset.key = k;
    this.tooltip.hidden = false;
    const x = this.layout.left + (k + 1) * this.layout.cell + 8;
    const y = this.layout.top + q * this.layout.cell;
    this.tooltip.style.left = `${Math.min(x, this.layout.width - 40)}px`;
    this.tooltip.style.top = `${y}px`;
  }

  renderTable() {
    if (!this.details.open || !this.data) {
      this.table.replaceChildren();
      return;
    }
    const { tokens, pattern, T, causal } = this.data;
    const head = el('tr', {}, [el('th', { scope: 'col', text: 'query \\ key' })]);
    tokens.forEach((t, k) => head.append(el('th', { scope: 'col', text: `${k} ${displayToken(t)}` })));
    const body = [el('thead', {}, [head])];
    const tbody = el('tbody');
    for (let q = 0; q < T; q++) {
      const row = el('tr', {}, [el('th', { scope: 'row', text: `${q} ${displayToken(tokens[q])}` })]);
      for (let k = 0; k < T; k++) row.append(el('td', { text: isMasked(causal, q, k) ? '' : pattern[q * T + k].toFixed(6), dataset: { q, k } }));
      tbody.append(row);
    }
    body.push(tbody);
    this.table.replaceChildren(...body);
  }

  figure() {
    const d = this.data;
    if (!d) return null;
    const model = this.modelName();
    const title = `${model} · ${d.key}${d.ablated ? ' (ablated)' : ''} · attention pattern`;
    const svg = () => heatmapSvg({ tokens: d.tokens, pattern: d.pattern, causal: d.causal, title });
    return {
      ...patternExports(d, model, 'heatmap'),
      svg,
      png: () => {
        const layout = heatmapLayout(d.tokens, 900);
        const canvas = document.createElement('canvas');
        const ctx = sizeCanvas(canvas, layout.width, layout.height, 2);
        drawHeatmap(ctx, { pattern: d.pattern, causal: d.causal, layout, showValues: this.showValues.checked });
        return canvasToBlob(canvas);
      },
    };
  }
}

// The token-to-token line view: queries on the left, keys on the right, a
// line per pair with opacity = weight. Hovering a token keeps only its lines.
export class LineView {
  constructor(root, { store, modelName, onError, visible = () => true }) {
    this.store = store;
    this.modelName = modelName;
    this.visible = visible;
    this.stale = false;
    this.svg = svgEl('svg', { class: 'lines', id: 'lines-view', role: 'img' });
    this.focus = null;
    root.append(
      el('div', { class: 'figure-head' }, [el('span', { class: 'muted', text: 'opacity = weight · hover a token to isolate it' })]),
      el('div', { class: 'lines-wrap' }, [this.svg]),
      el('div', { class: 'figure-foot' }, [exportBar(() => this.figure(), { onError, label: 'Lines' })]),
    );
    store.subscribe((state, changed) => {
      if (['run', 'head', 'ablate', 'modelInfo'].some((k) => changed.has(k)) || (changed.has('view') && this.stale)) this.update();
      else if (changed.has('focusToken')) this.setFocus(null, null);
    });
    this.update();
  }

  update() {
    this.stale = !this.visible();
    if (this.stale) return;
    this.data = headData(this.store.state);
    this.svg.replaceChildren();
    if (!this.data) return;
    const d = this.data;
    const L = linesLayout(d.tokens);
    this.layout = L;
    this.svg.setAttribute('width', L.width);
    this.svg.setAttribute('height', L.height);
    this.svg.setAttribute('viewBox', `0 0 ${L.width} ${L.height}`);
    this.svg.setAttribute('aria-label', `attention of ${d.key} drawn as lines from each query token to the key tokens`);
    this.svg.append(
      svgEl('text', { x: L.xLeft - 6, y: 12, 'text-anchor': 'end', class: 'axis', text: 'query' }),
      svgEl('text', { x: L.xRight + 6, y: 12, class: 'axis', text: 'key' }),
    );
    const group = svgEl('g', { class: 'line-group' });
    for (const { q, k, w } of lineList(d.pattern, d.T, d.causal)) {
      group.append(svgEl('line', {
        x1: L.xLeft, y1: L.top + (q + 0.5) * L.rowHeight, x2: L.xRight, y2: L.top + (k + 0.5) * L.rowHeight,
        stroke: LINE_COLOUR, 'stroke-width': 2, 'stroke-opacity': w.toFixed(4), 'data-q': q, 'data-k': k,
      }));
    }
    this.svg.append(group);
    const side = (x, anchor, which) => {
      for (let i = 0; i < d.T; i++) {
        const text = svgEl('text', { x, y: L.top + (i + 0.5) * L.rowHeight, 'text-anchor': anchor, 'dominant-baseline': 'middle', class: 'line-token', 'data-side': which, 'data-index': i, text: L.labels[i] });
        text.addEventListener('mouseenter', () => this.setFocus(which, i));
        text.addEventListener('mouseleave', () => this.setFocus(null, null));
        this.svg.append(text);
      }
    };
    side(L.xLeft - 6, 'end', 'q');
    side(L.xRight + 6, 'start', 'k');
    this.setFocus(null, null);
  }

  // Hovering a token isolates its lines; without hover, the token picked
  // from the chips (if any) stays isolated.
  setFocus(side, index) {
    if (side === null) {
      const picked = this.store.state.focusToken;
      if (picked !== null && this.data && picked < this.data.T) [side, index] = ['q', picked];
    }
    for (const line of this.svg.querySelectorAll('line')) {
      const on = side === null || Number(line.dataset[side]) === index;
      line.classList.toggle('dim', !on);
    }
    for (const text of this.svg.querySelectorAll('.line-token')) text.classList.toggle('hot', side !== null && text.dataset.side === side && Number(text.dataset.index) === index);
  }

  figure() {
    const d = this.data;
    if (!d) return null;
    const model = this.modelName();
    const title = `${model} · ${d.key}${d.ablated ? ' (ablated)' : ''} · query → key lines`;
    const svg = () => linesSvg({ tokens: d.tokens, pattern: d.pattern, causal: d.causal, title });
    return { ...patternExports(d, model, 'lines'), svg, png: () => svgToPng(svg(), 2) };
  }
}

// Beside the line view (~440 px) on wide screens, the full width on narrow ones.
function heatmapWidth(available) {
  return available < 760 ? Math.max(280, available - 24) : Math.max(300, Math.min(760, available - 460));
}

// The head view: a header with the head's name, navigation and ablation
// toggle, then the heatmap and the line view side by side, then the weight
// and behaviour panels (weightsview.js, behaviorview.js).
export class HeadView {
  constructor(root, { store, app, modelName, onError }) {
    this.store = store;
    this.title = el('h2', { id: 'head-title', class: 'head-title' });
    this.ablateButton = el('button', { type: 'button', id: 'head-ablate', class: 'secondary', 'aria-pressed': 'false', on: { click: () => this.toggle() } });
    const nav = (key, text, label) => el('button', { type: 'button', class: 'icon', text, 'aria-label': label, on: { click: () => this.move(key) } });
    this.note = el('p', { class: 'message notice', id: 'head-note', hidden: true });
    const heatmapBox = el('section', { class: 'figure', id: 'heatmap-figure', 'aria-label': 'attention heatmap' });
    const linesBox = el('section', { class: 'figure', id: 'lines-figure', 'aria-label': 'line view' });
    root.append(
      el('div', { class: 'head-bar' }, [
        nav('ArrowUp', '↑', 'previous layer'), nav('ArrowLeft', '←', 'previous head'), this.title, nav('ArrowRight', '→', 'next head'), nav('ArrowDown', '↓', 'next layer'),
        this.ablateButton,
      ]),
      this.note,
      this.figures = el('div', { class: 'head-figures' }, [heatmapBox, linesBox]),
    );
    const behaviorBox = el('div', { class: 'head-weights', id: 'head-behavior' });
    this.behaviorBox = behaviorBox;
    const weightsBox = el('div', { class: 'head-weights', id: 'head-weights' });
    root.append(behaviorBox, weightsBox);
    this.behavior = new HeadBehavior(behaviorBox, { store, modelName, onError });
    // The heatmap takes what the line view (~380 px) leaves, within limits.
    const visible = () => store.state.view === 'head';
    this.heatmap = new Heatmap(heatmapBox, { store, modelName, onError, visible, maxWidth: () => heatmapWidth(root.clientWidth || 1000) });
    this.lines = new LineView(linesBox, { store, modelName, onError, visible });
    if (typeof ResizeObserver !== 'undefined') new ResizeObserver(() => this.heatmap.resized()).observe(root);
    if (app) this.weights = new HeadWeights(weightsBox, { store, app, modelName, onError });
    store.subscribe((state, changed) => {
      if (['run', 'head', 'ablate', 'modelInfo'].some((k) => changed.has(k))) this.render(state);
    });
    this.render(store.state);
  }

  move(key) {
    const next = moveHead(this.store.state, key);
    if (next) this.store.set({ head: next });
  }

  toggle() {
    const { layer, head } = selectedHead(this.store.state);
    toggleAblation(this.store, layer, head);
  }

  render(state) {
    const { layer, head } = selectedHead(state);
    const key = headKey(layer, head);
    const ablated = state.ablate.includes(key);
    this.title.textContent = state.modelInfo ? `Layer ${layer} · Head ${head}` : 'Head';
    this.title.dataset.head = key;
    this.ablateButton.textContent = ablated ? 'Restore head' : 'Ablate head';
    this.ablateButton.setAttribute('aria-pressed', String(ablated));
    this.ablateButton.disabled = !state.modelInfo;
    // Loaded with attention weights only: no patterns or behaviour, the weight geometry alone.
    const weightsOnly = Boolean(state.modelInfo?.attentionOnly);
    this.figures.hidden = weightsOnly;
    this.behaviorBox.hidden = weightsOnly;
    this.ablateButton.hidden = weightsOnly;
    this.note.hidden = !ablated && !weightsOnly;
    this.note.textContent = weightsOnly
      ? 'Attention weights only: this head\'s weight geometry is below; its pattern and behaviour on text need the whole model.'
      : ablated ? `${key} is ablated: its output is zeroed in the run. Its pattern is shown as it was before the ablation; later layers show their changed patterns.` : '';
  }
}
