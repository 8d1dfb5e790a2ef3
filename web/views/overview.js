// The layer x head grid of attention-pattern thumbnails: the overview (large
// thumbnails, legend, export) and, compact, the navigator beside the head
// view. One canvas per head, T x T pixels scaled up with pixelated
// rendering. Keyboard: arrows move, Home/End jump within a layer,
// PageUp/PageDown across layers, Enter opens the head view, A toggles the
// head's ablation.
import { SCALES, cssAt, legend, textOn } from '../figures/colormap.js';
import { el, headPattern } from './dom.js';
import { METRICS, ROLE_LABELS, metricById, overCorpus } from '../control/metrics.js';
import { exportBar, fileName, svgToPng } from '../export/export.js';
import { gridSvg, paintPattern } from '../figures/patterns.js';
import { selectedHead } from '../state/store.js';
import { headKey, sortHeadKeys } from '../../wasm/ids.mjs';

export function moveHead(state, key) {
  const info = state.modelInfo;
  if (!info) return null;
  const { layer, head } = selectedHead(state);
  const L = info.nLayer;
  const H = info.nHead;
  const moves = {
    ArrowLeft: [layer, head - 1], ArrowRight: [layer, head + 1], ArrowUp: [layer - 1, head], ArrowDown: [layer + 1, head],
    Home: [layer, 0], End: [layer, H - 1], PageUp: [0, head], PageDown: [L - 1, head],
  };
  if (!moves[key]) return null;
  let [l, h] = moves[key];
  // Left/right wrap into the previous/next layer, so the keyboard can walk all heads.
  if (h < 0 && l > 0) [l, h] = [l - 1, H - 1];
  if (h >= H && l < L - 1) [l, h] = [l + 1, 0];
  return { layer: Math.max(0, Math.min(L - 1, l)), head: Math.max(0, Math.min(H - 1, h)) };
}

export function toggleAblation(store, layer, head) {
  const key = headKey(layer, head);
  const ablate = store.state.ablate.includes(key) ? store.state.ablate.filter((k) => k !== key) : [...store.state.ablate, key];
  store.set({ ablate: sortHeadKeys(ablate) });
}

// The pattern to show for a head: an ablated head's own output is zeroed,
// so its thumbnail shows what it attended to before the ablation.
export function displayPattern(run, layer, head, ablated) {
  if (ablated && run.gated && run.baseline) {
    const T = run.nTokens;
    const offset = (layer * run.nHead + head) * T * T;
    return run.baseline.patterns.subarray(offset, offset + T * T);
  }
  return headPattern(run, layer, head);
}

export class HeadGrid {
  // fitHeight: size thumbnails to the window height too (not in an embed,
  // whose frame takes the height of its content: that would feed back).
  constructor(root, { store, compact = false, fitHeight = true, onOpen = () => {}, onError = () => {}, modelName = () => 'model' }) {
    this.store = store;
    this.compact = compact;
    this.fitHeight = fitHeight;
    this.onOpen = onOpen;
    this.modelName = modelName;
    this.cells = [];
    this.shape = null;
    this.grid = el('div', { class: `head-grid${compact ? ' compact' : ''}`, role: 'grid', 'aria-label': 'attention heads by layer and head', on: { keydown: (e) => this.onKey(e) } });
    this.empty = el('p', { class: 'muted empty-note', text: 'Load a model to see its heads.' });
    const children = [];
    if (!compact) {
      this.metricSelect = el('select', { id: 'metric-select', 'aria-label': 'colour heads by', on: { change: () => store.set({ metric: this.metricSelect.value }) } });
      for (const m of METRICS) this.metricSelect.append(el('option', { value: m.id, text: m.label, title: m.help || '' }));
      // A text statistic on this text, or its mean over the last corpus run.
      this.overSelect = el('select', { id: 'metric-over', 'aria-label': 'statistic over', on: { change: () => store.set({ over: this.overSelect.value }) } }, [
        el('option', { value: 'text', text: 'on this text' }), el('option', { value: 'corpus', text: 'over the corpus' }),
      ]);
      this.sortToggle = el('input', { type: 'checkbox', id: 'metric-sort', on: { change: () => store.set({ sort: this.sortToggle.checked }) } });
      this.filter = el('input', { type: 'range', id: 'metric-filter', min: 0, max: 100, value: 0, 'aria-label': 'dim heads below this share of the metric range', on: { input: () => this.renderMetric(this.store.state) } });
      this.roleFilter = el('select', { id: 'role-filter', 'aria-label': 'show heads with this role', on: { change: () => this.renderMetric(this.store.state) } });
      this.roleFilter.append(el('option', { value: '', text: 'all roles' }));
      for (const [role, [, name]] of Object.entries(ROLE_LABELS)) this.roleFilter.append(el('option', { value: role, text: name }));
      this.metricLegend = el('span', { class: 'metric-legend' });
      this.metricNote = el('span', { class: 'muted metric-note', id: 'metric-note' });
      children.push(
        el('div', { class: 'figure-head' }, [
          legend(SCALES.viridis, { label: 'attention weight', ticks: 3, format: (v) => String(v) }),
          el('span', { class: 'hint muted', text: 'click a head or use ←↑↓→ · Enter opens it · A ablates it' }),
          exportBar(() => this.figure(), { onError, label: 'Grid' }),
        ]),
        el('div', { class: 'figure-head metric-row' }, [
          el('label', { for: 'metric-select', class: 'bar-label', text: 'Colour by' }), this.metricSelect, this.overSelect,
          el('label', { class: 'toggle' }, [this.sortToggle, ' sort']),
          el('label', { class: 'toggle', title: 'dim heads whose value is in the lower part of the range' }, ['dim below ', this.filter]),
          el('label', { class: 'toggle', title: 'dim heads whose role on this text is another one' }, ['show ', this.roleFilter]),
          this.metricLegend, this.metricNote,
        ]),
      );
    }
    children.push(this.empty, this.grid);
    root.append(...children);
    if (!compact && typeof ResizeObserver !== 'undefined') {
      new ResizeObserver(() => this.resize()).observe(root);
      window.addEventListener('resize', () => this.resize());
    }
    this.root = root;
    store.subscribe((state, changed) => this.render(state, changed));
    this.render(store.state, new Set(['modelInfo', 'run', 'head', 'ablate', 'metric', 'sort']));
  }

  // Thumbnails fill the width, but a deep model should still fit the screen
  // height (that is what an overview is for), down to 40 px.
  resize() {
    if (!this.shape) return;
    const { nLayer, nHead } = this.shape;
    let size;
    if (this.compact) {
      size = Math.max(12, Math.min(26, Math.floor(320 / nHead) - 2));
    } else {
      const byWidth = Math.floor((this.root.clientWidth - 48) / nHead) - 6;
      const byHeight = Math.floor((window.innerHeight - 140) / nLayer) - 6;
      size = Math.max(28, Math.min(96, byWidth, this.fitHeight ? Math.max(40, byHeight) : Infinity));
    }
    this.grid.style.setProperty('--thumb', `${size}px`);
  }

  build(nLayer, nHead) {
    this.shape = { nLayer, nHead };
    this.grid.replaceChildren();
    this.grid.style.setProperty('--heads', nHead);
    this.cells = [];
    const header = el('div', { class: 'grid-row grid-header', role: 'row' }, [el('span', { class: 'corner', role: 'columnheader' })]);
    for (let h = 0; h < nHead; h++) header.append(el('span', { class: 'col-label', role: 'columnheader', text: `H${h}` }));
    this.grid.append(header);
    for (let l = 0; l < nLayer; l++) {
      const row = el('div', { class: 'grid-row', role: 'row' }, [el('span', { class: 'row-label', role: 'rowheader', text: `L${l}` })]);
      const cells = [];
      for (let h = 0; h < nHead; h++) {
        const canvas = el('canvas', { class: 'thumb', width: 1, height: 1 });
        const cell = el('div', {
          class: 'head-cell', role: 'gridcell', tabindex: -1, 'aria-label': `layer ${l} head ${h}`, dataset: { head: headKey(l, h) }, title: headKey(l, h),
          on: {
            click: () => {
              this.store.set({ head: { layer: l, head: h } });
              if (!this.compact) this.onOpen();
            },
          },
        }, [canvas, el('span', { class: 'cell-mark', 'aria-hidden': 'true' })]);
        const bar = el('span', { class: 'cell-metric', 'aria-hidden': 'true' });
        const caption = el('span', { class: 'cell-caption', 'aria-hidden': 'true' });
        const badge = el('span', { class: 'role-badge', hidden: true });
        cell.append(bar, caption, badge);
        cells.push({ cell, canvas, bar, caption, badge, row, layer: l, head: h });
        row.append(cell);
      }
      this.cells.push(cells);
      this.grid.append(row);
    }
    this.sortedBox = el('div', { class: 'sorted-box', role: 'row' });
    this.grid.append(this.sortedBox);
    this.resize();
  }

  // Colours each head by the chosen metric (a bar under the thumbnail),
  // dims those below the filter, and in sorted mode lays the heads out in
  // descending order with their names and values.
  renderMetric(state) {
    if (!this.shape) return;
    const m = state.metrics;
    const ok = m && !m.error && m.values?.length === this.shape.nLayer * this.shape.nHead;
    if (this.metricSelect) {
      this.metricSelect.value = state.metric;
      this.sortToggle.checked = state.sort;
      this.sortToggle.disabled = !ok;
      this.filter.disabled = !ok;
      this.metricLegend.replaceChildren(ok ? legend(m.scale, { label: `${m.label} (${m.basis})`, min: m.min, max: m.max, ticks: 3, format: (v) => m.format(v) }) : '');
      const metric = metricById(state.metric);
      this.overSelect.value = state.over;
      this.overSelect.disabled = !metric?.corpusKey;
      this.overSelect.title = metric?.corpusKey ? 'this text\'s value, or the mean over the last corpus run (Model view)' : 'only the detectors\' statistics have a corpus mean';
      // Over the corpus, before (or without) a run of it: say what is shown.
      const waiting = state.over === 'corpus' && metric?.corpusKey && ok && !overCorpus(state, metric)
        ? (state.corpus ? 'the corpus is running; this text meanwhile' : 'no corpus run yet (the Model view runs one): this text meanwhile') : '';
      this.metricNote.textContent = m?.error ? `${m.label}: ${m.error}` : state.metric !== 'none' && !m ? 'computing…' : waiting;
      this.metricNote.title = ok ? m.help : '';
    }
    const cut = this.filter ? Number(this.filter.value) / 100 : 0;
    // Attention weights only: no patterns to draw, so the metric fills the cell, value inside.
    const fill = ok && Boolean(state.modelInfo?.attentionOnly);
    this.grid.classList.toggle('metric-fill', fill);
    if (state.modelInfo?.attentionOnly) this.empty.hidden = fill;
    const b = state.behavior && !state.behavior.error && state.behavior.role?.length === this.shape.nLayer * this.shape.nHead ? state.behavior : null;
    const wantRole = this.roleFilter?.value || '';
    const flat = this.cells.flat();
    for (const c of flat) {
      const i = c.layer * this.shape.nHead + c.head;
      const t = ok ? (m.values[i] - m.min) / (m.max - m.min || 1) : 0;
      c.bar.hidden = !ok;
      c.caption.replaceChildren(...(ok ? [el('b', { text: headKey(c.layer, c.head) }), el('span', { text: m.format(m.values[i]) })] : []));
      if (ok) c.bar.style.background = cssAt(m.scale, t);
      c.canvas.style.background = fill ? cssAt(m.scale, t) : '';
      c.caption.style.color = fill ? textOn(m.scale, t) : '';
      const role = b ? b.role[i] : null;
      const [short, long] = ROLE_LABELS[role] || ['', ''];
      c.badge.hidden = !short;
      c.badge.textContent = short;
      c.badge.dataset.role = role || '';
      c.cell.dataset.role = role || '';
      const lines = [headKey(c.layer, c.head)];
      if (role) lines.push(`role on this text: ${long} (confidence ${b.roleConfidence[i].toFixed(2)})`);
      if (ok) lines.push(`${m.label}: ${m.format(m.values[i])}`);
      c.cell.title = lines.join('\n');
      c.cell.dataset.metric = ok ? String(m.values[i]) : '';
      c.cell.classList.toggle('dimmed', (ok && cut > 0 && t < cut) || (Boolean(wantRole) && Boolean(b) && role !== wantRole));
    }
    const sorted = ok && state.sort;
    this.grid.classList.toggle('sorted', sorted);
    // Moving a cell in the DOM takes the keyboard focus away from it: move
    // cells only when the order changes, and give the focus back.
    const focused = this.grid.contains(document.activeElement) ? document.activeElement : null;
    if (sorted) {
      const order = flat.slice().sort((a, b) => m.values[b.layer * this.shape.nHead + b.head] - m.values[a.layer * this.shape.nHead + a.head]);
      const current = this.sortedBox.children;
      if (order.length !== current.length || order.some((c, i) => current[i] !== c.cell)) {
        this.sortedBox.replaceChildren(...order.map((c) => c.cell));
      }
    } else if (this.sortedBox.childElementCount) {
      for (const c of flat) c.row.append(c.cell);
    }
    if (focused && document.activeElement !== focused) focused.focus();
  }

  render(state, changed) {
    const info = state.modelInfo;
    if (changed.has('modelInfo')) {
      if (info) this.build(info.nLayer, info.nHead);
      else {
        this.shape = null;
        this.grid.replaceChildren();
      }
    }
    this.empty.hidden = Boolean(info && state.run && !state.run.empty);
    if (!info?.attentionOnly) this.empty.textContent = 'Load a model to see its heads.';
    else if (this.compact) this.empty.textContent = 'Attention weights only: no patterns.';
    else this.empty.textContent = 'Attention weights only: no attention patterns (they need the whole model). Colour the heads by a weight metric, or open one for its weight geometry.';
    if (!this.shape) return;
    if (changed.has('run') || changed.has('modelInfo')) this.paint(state);
    if (changed.has('head') || changed.has('modelInfo') || changed.has('ablate') || changed.has('run')) this.mark(state);
    if (['metrics', 'metric', 'sort', 'modelInfo', 'behavior', 'over', 'corpusStats'].some((k) => changed.has(k))) this.renderMetric(state);
    if (changed.has('computeProgress') && this.metricNote && state.metric !== 'none' && !state.metrics) {
      const p = state.computeProgress;
      this.metricNote.textContent = p ? `computing ${p.what}… ${Math.round(p.fraction * 100)}%` : 'computing…';
    }
  }

  paint(state) {
    const run = state.run;
    if (!run || run.empty || run.nLayer !== this.shape.nLayer) return;
    const ablated = new Set(state.ablate);
    for (let l = 0; l < run.nLayer; l++) {
      for (let h = 0; h < run.nHead; h++) {
        paintPattern(this.cells[l][h].canvas, displayPattern(run, l, h, ablated.has(headKey(l, h))), run.nTokens, state.modelInfo.causal);
      }
    }
  }

  mark(state) {
    const { layer, head } = selectedHead(state);
    const ablated = new Set(state.ablate);
    this.cells.forEach((row, l) => row.forEach(({ cell }, h) => {
      const selected = l === layer && h === head;
      cell.classList.toggle('selected', selected);
      cell.setAttribute('aria-selected', String(selected));
      cell.tabIndex = selected ? 0 : -1;
      const off = ablated.has(headKey(l, h));
      cell.classList.toggle('ablated', off);
      // Heads downstream of an ablation whose pattern moved (max |ΔA| > 0.01).
      const change = state.run?.patternChange ? state.run.patternChange[l * this.shape.nHead + h] : 0;
      cell.classList.toggle('changed', !off && change > 0.01);
      cell.dataset.patternChange = change ? String(change) : '';
      cell.setAttribute('aria-label', `layer ${l} head ${h}${off ? ', ablated' : ''}`);
    }));
    if (this.grid.contains(document.activeElement)) this.cells[layer]?.[head]?.cell.focus();
  }

  onKey(event) {
    const state = this.store.state;
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      this.onOpen();
      return;
    }
    if (event.key === 'a' || event.key === 'A') {
      const { layer, head } = selectedHead(state);
      toggleAblation(this.store, layer, head);
      event.preventDefault();
      return;
    }
    const next = moveHead(state, event.key);
    if (next) {
      event.preventDefault();
      event.stopPropagation();
      this.store.set({ head: next });
    }
  }

  figure() {
    const state = this.store.state;
    const run = state.run;
    if (!run || run.empty || !this.shape) return null;
    const thumbnails = this.cells.map((row) => row.map(({ canvas }) => canvas.toDataURL('image/png')));
    const title = `${this.modelName()} · attention patterns of every head`;
    const name = fileName('headscope', this.modelName(), 'heads');
    const svg = () => gridSvg({ nLayer: run.nLayer, nHead: run.nHead, thumbnails, title, ablated: new Set(state.ablate), headKeyOf: headKey });
    const ablated = new Set(state.ablate);
    return {
      name,
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => ({
        model: this.modelName(), tokens: run.tokens, ids: run.ids, shape: [run.nLayer, run.nHead, run.nTokens, run.nTokens],
        ablated: state.ablate, loss: run.loss,
        // The heads' colour: which statistic, on what (this text, the corpus, the weights).
        metric: state.metrics && !state.metrics.error ? { id: state.metrics.id, label: state.metrics.label, basis: state.metrics.basis, values: state.metrics.values } : null,
        patterns: Array.from({ length: run.nLayer }, (_, l) => Array.from({ length: run.nHead }, (_, h) => rows(displayPattern(run, l, h, ablated.has(headKey(l, h))), run.nTokens))),
      }),
      csv: () => {
        const out = [['layer', 'head', 'query', 'key', 'query_token', 'key_token', 'weight']];
        for (let l = 0; l < run.nLayer; l++) {
          for (let h = 0; h < run.nHead; h++) {
            const p = displayPattern(run, l, h, ablated.has(headKey(l, h)));
            for (let q = 0; q < run.nTokens; q++) {
              for (let k = 0; k < run.nTokens; k++) out.push([l, h, q, k, run.tokens[q], run.tokens[k], p[q * run.nTokens + k]]);
            }
          }
        }
        return out;
      },
    };
  }
}

export function rows(pattern, T) {
  return Array.from({ length: T }, (_, q) => Array.from(pattern.subarray(q * T, (q + 1) * T)));
}
