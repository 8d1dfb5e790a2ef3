// A head x head matrix as a figure: N = L*H rows and columns in head order
// (index l*H + h), thin lines between layers, exact value of the cell under
// the pointer, click to open a head pair, legend, PNG/SVG/JSON/CSV export.
// Used for the redundancy matrices (symmetric) and the composition scores
// (rows: the earlier head writing, columns: the later head reading).
import { MASKED_RGB, SCALES, hexAt, legend, rgbAt } from './colormap.js';
import { el, sizeCanvas, xmlEscape } from '../views/dom.js';
import { canvasToBlob, exportBar, fileName } from '../export/export.js';
import { headKey } from '../../wasm/ids.mjs';

export function headLabels(nLayer, nHead) {
  const labels = [];
  for (let l = 0; l < nLayer; l++) for (let h = 0; h < nHead; h++) labels.push(headKey(l, h));
  return labels;
}

// A standalone SVG document: white ground, the title top left, then `parts`.
function svgDocument(width, height, title, parts) {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif"><rect width="100%" height="100%" fill="#fff"/><text x="8" y="16" font-size="13" font-weight="600">${xmlEscape(title || '')}</text>\n${parts.join('\n')}</svg>\n`;
}

// Geometry for N cells within maxWidth; labels every layer.
function layoutFor(n, nHead, maxWidth) {
  const left = 44;
  const top = 28;
  const cell = Math.max(2, Math.min(28, Math.floor((maxWidth - left - 8) / n)));
  return { n, nHead, left, top, cell, width: left + cell * n + 8, height: top + cell * n + 8 };
}

function paint(values, n, min, max, scale, valid) {
  const canvas = document.createElement('canvas');
  canvas.width = n;
  canvas.height = n;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    const ok = !valid || valid(Math.floor(i / n), i % n);
    const rgb = ok ? rgbAt(scale, (values[i] - min) / (max - min || 1)) : [236, 236, 240];
    image.data.set(rgb, i * 4);
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

export class MatrixFigure {
  // options: {title, name, valueLabel, min, max, scale, valid(i, j), format, describe(i, j, v), onPick(i, j), baseline}
  constructor(root, { maxWidth = () => 560, onError = () => {} } = {}) {
    this.maxWidth = maxWidth;
    this.canvas = el('canvas', { class: 'matrix', tabindex: 0 });
    this.tooltip = el('div', { class: 'tooltip', role: 'tooltip', hidden: true });
    this.legendSlot = el('div', { class: 'legend-slot' });
    this.caption = el('p', { class: 'muted axis-note' });
    this.canvas.addEventListener('mousemove', (e) => this.onPointer(e));
    this.canvas.addEventListener('mouseleave', () => this.hover(null));
    this.canvas.addEventListener('click', (e) => {
      const cell = this.cellAt(e);
      if (cell && this.options?.onPick) this.options.onPick(cell.i, cell.j);
    });
    root.append(
      el('div', { class: 'figure-head' }, [this.legendSlot]),
      el('div', { class: 'heatmap-wrap' }, [this.canvas, this.tooltip]),
      this.caption,
      el('div', { class: 'figure-foot' }, [exportBar(() => this.figure(), { onError, label: 'Matrix' })]),
    );
    this.root = root;
  }

  // values: [N*N] (any array-like), nLayer, nHead.
  show(values, nLayer, nHead, options) {
    this.values = values;
    this.nLayer = nLayer;
    this.nHead = nHead;
    this.options = { min: 0, max: 1, scale: SCALES.viridis, format: (v) => v.toFixed(4), ...options };
    this.labels = headLabels(nLayer, nHead);
    const n = nLayer * nHead;
    this.layout = layoutFor(n, nHead, this.maxWidth());
    this.image = paint(values, n, this.options.min, this.options.max, this.options.scale, this.options.valid);
    this.legendSlot.replaceChildren(legend(this.options.scale, { label: this.options.valueLabel, min: this.options.min, max: this.options.max, ticks: 3, format: (v) => v.toFixed(2) }));
    this.caption.textContent = this.options.caption || '';
    this.hovered = null;
    this.draw();
  }

  clear(message = '') {
    this.values = null;
    this.canvas.hidden = true;
    this.caption.textContent = message;
  }

  draw() {
    if (!this.values) return;
    this.canvas.hidden = false;
    const { n, left, top, cell, width, height, nHead } = this.layout;
    const ctx = sizeCanvas(this.canvas, width, height);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, width, height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.image, left, top, cell * n, cell * n);
    ctx.strokeStyle = 'rgba(255,255,255,0.9)';
    ctx.lineWidth = 1;
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = '#555';
    for (let l = 0; l <= this.nLayer; l++) {
      const p = l * nHead * cell;
      if (l > 0 && l < this.nLayer) {
        ctx.beginPath();
        ctx.moveTo(left + p, top);
        ctx.lineTo(left + p, top + n * cell);
        ctx.moveTo(left, top + p);
        ctx.lineTo(left + n * cell, top + p);
        ctx.stroke();
      }
      if (l < this.nLayer) {
        const mid = p + (nHead * cell) / 2;
        ctx.textAlign = 'right';
        ctx.textBaseline = 'middle';
        ctx.fillText(`L${l}`, left - 6, top + mid);
        ctx.textAlign = 'center';
        ctx.textBaseline = 'bottom';
        ctx.fillText(`L${l}`, left + mid, top - 4);
      }
    }
    if (this.hovered) {
      ctx.strokeStyle = '#ff2d55';
      ctx.lineWidth = 2;
      ctx.strokeRect(left + this.hovered.j * cell, top + this.hovered.i * cell, cell, cell);
    }
  }

  cellAt(event) {
    if (!this.values) return null;
    const rect = this.canvas.getBoundingClientRect();
    const { left, top, cell, n } = this.layout;
    const j = Math.floor((event.clientX - rect.left - left) / cell);
    const i = Math.floor((event.clientY - rect.top - top) / cell);
    return i >= 0 && j >= 0 && i < n && j < n ? { i, j } : null;
  }

  onPointer(event) {
    this.hover(this.cellAt(event));
  }

  hover(cell) {
    this.hovered = cell;
    this.draw();
    if (!cell) {
      this.tooltip.hidden = true;
      return;
    }
    const { i, j } = cell;
    const v = this.values[i * this.layout.n + j];
    const valid = !this.options.valid || this.options.valid(i, j);
    this.tooltip.textContent = valid ? (this.options.describe ? this.options.describe(i, j, v) : `${this.labels[i]} · ${this.labels[j]}: ${this.options.format(v)}`) : `${this.labels[i]} · ${this.labels[j]}: not defined`;
    this.tooltip.dataset.value = valid ? String(v) : '';
    this.tooltip.dataset.i = i;
    this.tooltip.dataset.j = j;
    this.tooltip.hidden = false;
    this.tooltip.style.left = `${Math.min(this.layout.left + (j + 1) * this.layout.cell + 8, this.layout.width - 60)}px`;
    this.tooltip.style.top = `${this.layout.top + i * this.layout.cell}px`;
  }

  figure() {
    if (!this.values) return null;
    const { n, nHead } = this.layout;
    const o = this.options;
    const labels = this.labels;
    const values = Array.from(this.values);
    const svg = () => {
      const cell = Math.max(4, Math.min(16, Math.floor(900 / n)));
      const left = 50;
      const top = 40;
      const parts = [];
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          const ok = !o.valid || o.valid(i, j);
          const v = values[i * n + j];
          parts.push(`<rect x="${left + j * cell}" y="${top + i * cell}" width="${cell}" height="${cell}" fill="${ok ? hexAt(o.scale, (v - o.min) / (o.max - o.min || 1)) : '#ececf0'}"><title>${xmlEscape(`${labels[i]} · ${labels[j]}: ${ok ? v : 'not defined'}`)}</title></rect>`);
        }
      }
      for (let l = 0; l < this.nLayer; l++) {
        const mid = (l * nHead + nHead / 2) * cell;
        parts.push(`<text x="${left - 6}" y="${top + mid}" text-anchor="end" dominant-baseline="middle" font-size="10">L${l}</text><text x="${left + mid}" y="${top - 6}" text-anchor="middle" font-size="10">L${l}</text>`);
      }
      const w = left + n * cell + 10;
      const h = top + n * cell + 10;
      return svgDocument(w, h, o.title, parts);
    };
    return {
      name: fileName('headscope', o.name || 'matrix'),
      svg,
      png: () => {
        const canvas = document.createElement('canvas');
        const ctx = sizeCanvas(canvas, this.layout.width, this.layout.height, 2);
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, this.layout.width, this.layout.height);
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(this.image, this.layout.left, this.layout.top, this.layout.cell * n, this.layout.cell * n);
        return canvasToBlob(canvas);
      },
      json: () => ({ title: o.title, value: o.valueLabel, heads: labels, values: labels.map((_, i) => values.slice(i * n, (i + 1) * n)), ...(o.extra || {}) }),
      csv: () => [['row', 'column', o.valueLabel || 'value'], ...values.map((v, k) => [labels[Math.floor(k / n)], labels[k % n], (!o.valid || o.valid(Math.floor(k / n), k % n)) ? v : ''])],
    };
  }
}

// One number per head as a small layer x head heatmap (rows: layers,
// columns: heads), with the exact value under the pointer, click to open a
// head, legend and exports. Any other grid of numbers too (rows x columns,
// e.g. layers x positions): options rowLabels and columnLabels name them.
// Non-finite cells are drawn grey ("no value").
export class HeadValuesFigure {
  constructor(root, { onError = () => {}, onPick = null } = {}) {
    this.onPick = onPick;
    this.canvas = el('canvas', { class: 'matrix head-values' });
    this.tooltip = el('div', { class: 'tooltip', role: 'tooltip', hidden: true });
    this.legendSlot = el('div', { class: 'legend-slot' });
    this.caption = el('p', { class: 'muted axis-note' });
    this.canvas.addEventListener('mousemove', (e) => this.hover(this.cellAt(e)));
    this.canvas.addEventListener('mouseleave', () => this.hover(null));
    this.canvas.addEventListener('click', (e) => {
      const c = this.cellAt(e);
      if (c && this.onPick && !this.options.rowLabels) this.onPick(c.layer, c.head);
    });
    root.append(this.legendSlot, el('div', { class: 'heatmap-wrap' }, [this.canvas, this.tooltip]), this.caption,
      el('div', { class: 'figure-foot' }, [exportBar(() => this.figure(), { onError, label: 'Figure' })]));
  }

  // values [L*H] (or [rows*columns]); options {title, name, label, min, max,
  // scale, format, caption, describe(i, v) (the tooltip's text), columns
  // ({name: [L*H]}: more CSV columns), extra (more JSON fields), rowLabels,
  // columnLabels (a grid that is not layers x heads: clicks open nothing)}
  show(values, nLayer, nHead, options) {
    this.values = Array.from(values);
    this.nLayer = nLayer;
    this.nHead = nHead;
    this.options = { min: 0, max: 1, scale: SCALES.viridis, format: (v) => v.toFixed(4), ...options };
    this.rowLabels = this.options.rowLabels ?? Array.from({ length: nLayer }, (_, l) => `L${l}`);
    this.columnLabels = this.options.columnLabels ?? Array.from({ length: nHead }, (_, h) => `H${h}`);
    this.labels = this.values.map((_, i) => (this.options.rowLabels ? `${this.rowLabels[Math.floor(i / nHead)]} ${this.columnLabels[i % nHead]}` : headKey(Math.floor(i / nHead), i % nHead)));
    const cell = Math.max(10, Math.min(30, Math.floor(420 / nHead)));
    const left = 10 + 6 * Math.max(...this.rowLabels.map((t) => t.length));
    this.layout = { left, top: 18, cell, width: left + cell * nHead + 6, height: 18 + cell * nLayer + 6 };
    this.legendSlot.replaceChildren(legend(this.options.scale, { label: this.options.label, min: this.options.min, max: this.options.max, ticks: 3, format: (v) => this.options.format(v) }));
    this.caption.textContent = this.options.caption || '';
    this.canvas.hidden = false;
    this.draw(null);
  }

  clear(message = '') {
    this.values = null;
    this.canvas.hidden = true;
    this.legendSlot.replaceChildren();
    this.caption.textContent = message;
  }

  draw(hot) {
    const { left, top, cell, width, height } = this.layout;
    const o = this.options;
    const ctx = sizeCanvas(this.canvas, width, height);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, width, height);
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = '#555';
    ctx.textAlign = 'center';
    const columnStep = Math.ceil((o.columnLabels ? 30 : 14) / cell);
    for (let h = 0; h < this.nHead; h += columnStep) ctx.fillText(this.columnLabels[h].slice(0, 6), left + (h + 0.5) * cell, top - 5);
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let l = 0; l < this.nLayer; l += Math.ceil(12 / cell)) ctx.fillText(this.rowLabels[l], left - 4, top + (l + 0.5) * cell);
    this.values.forEach((v, i) => {
      const [r, g, b] = Number.isFinite(v) ? rgbAt(o.scale, (v - o.min) / (o.max - o.min || 1)) : MASKED_RGB;
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(left + (i % this.nHead) * cell, top + Math.floor(i / this.nHead) * cell, cell - 1, cell - 1);
    });
    if (hot) {
      ctx.strokeStyle = '#ff2d55';
      ctx.lineWidth = 2;
      ctx.strokeRect(left + hot.head * cell, top + hot.layer * cell, cell - 1, cell - 1);
    }
  }

  cellAt(event) {
    if (!this.values) return null;
    const rect = this.canvas.getBoundingClientRect();
    const { left, top, cell } = this.layout;
    const head = Math.floor((event.clientX - rect.left - left) / cell);
    const layer = Math.floor((event.clientY - rect.top - top) / cell);
    return layer >= 0 && head >= 0 && layer < this.nLayer && head < this.nHead ? { layer, head } : null;
  }

  hover(c) {
    if (!this.values) return;
    this.draw(c);
    this.tooltip.hidden = !c;
    if (!c) return;
    const i = c.layer * this.nHead + c.head;
    const v = this.values[i];
    this.tooltip.textContent = this.options.describe ? this.options.describe(i, v) : `${this.labels[i]}: ${this.options.format(v)}`;
    this.tooltip.dataset.value = String(v);
    this.tooltip.dataset.head = this.labels[i];
    this.tooltip.style.left = `${this.layout.left + (c.head + 1) * this.layout.cell + 6}px`;
    this.tooltip.style.top = `${this.layout.top + c.layer * this.layout.cell}px`;
  }

  figure() {
    if (!this.values) return null;
    const o = this.options;
    const { cell } = this.layout;
    const labels = this.labels;
    const svg = () => {
      const left = this.layout.left + 6;
      const top = 40;
      const colour = (v) => (Number.isFinite(v) ? hexAt(o.scale, (v - o.min) / (o.max - o.min || 1)) : `rgb(${MASKED_RGB.join(',')})`);
      const parts = this.values.map((v, i) => `<rect x="${left + (i % this.nHead) * cell}" y="${top + Math.floor(i / this.nHead) * cell}" width="${cell - 1}" height="${cell - 1}" fill="${colour(v)}"><title>${xmlEscape(`${labels[i]}: ${v}`)}</title></rect>`);
      for (let l = 0; l < this.nLayer; l++) parts.push(`<text x="${left - 4}" y="${top + (l + 0.5) * cell}" text-anchor="end" dominant-baseline="middle" font-size="10">${xmlEscape(this.rowLabels[l])}</text>`);
      for (let h = 0; h < this.nHead; h++) parts.push(`<text x="${left + (h + 0.5) * cell}" y="${top - 6}" text-anchor="middle" font-size="10">${xmlEscape(this.columnLabels[h].slice(0, 6))}</text>`);
      const w = left + cell * this.nHead + 10;
      const hh = top + cell * this.nLayer + 10;
      return svgDocument(Math.max(w, 320), hh, o.title, parts);
    };
    const [rowName, columnName] = o.rowLabels ? ['row', 'column'] : ['layer', 'index'];
    return {
      name: fileName('headscope', o.name || 'heads'),
      svg,
      png: () => {
        const canvas = document.createElement('canvas');
        const ctx = sizeCanvas(canvas, this.layout.width, this.layout.height, 2);
        ctx.drawImage(this.canvas, 0, 0, this.layout.width, this.layout.height);
        return canvasToBlob(canvas);
      },
      json: () => ({ title: o.title, value: o.label, [o.rowLabels ? 'cells' : 'heads']: labels, values: this.values, ...(o.extra || {}) }),
      csv: () => {
        const more = Object.entries(o.columns || {});
        return [[o.rowLabels ? 'cell' : 'head', rowName, columnName, o.label || 'value', ...more.map(([name]) => name)],
          ...this.values.map((v, i) => [labels[i], Math.floor(i / this.nHead), i % this.nHead, v, ...more.map(([, column]) => column[i])])];
      },
    };
  }
}
