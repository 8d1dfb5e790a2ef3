// Small SVG charts built with DOM calls (text only ever in text nodes) and
// exported by serialising that DOM: a singular-value spectrum with its
// effective rank marked, and the layered graph of head composition.
import { svgEl, xmlEscape } from './dom.js';
import { headKey } from './state.js';

// Okabe-Ito, distinguishable with every common colour-vision deficiency.
export const COMPOSITION_COLOURS = { q: '#0072B2', k: '#E69F00', v: '#009E73' };

export function serializeSvg(svg) {
  const copy = svg.cloneNode(true);
  copy.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  copy.insertBefore(svgEl('rect', { width: '100%', height: '100%', fill: '#fff' }), copy.firstChild);
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(copy)}\n`;
}

// sigma: descending singular values; erank: effective rank (or null).
export function spectrumChart(sigma, { title = '', erank = null, colour = '#2c6fbb', width = 300, height = 150 } = {}) {
  const n = sigma.length;
  const max = Math.max(1e-12, ...sigma);
  const left = 36;
  const bottom = 22;
  const top = 22;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const barW = plotW / Math.max(n, 1);
  const svg = svgEl('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart', 'font-family': 'system-ui, sans-serif', 'font-size': 10, role: 'img', 'aria-label': title });
  svg.append(svgEl('text', { x: 4, y: 12, 'font-size': 11, 'font-weight': 600, text: title }));
  svg.append(svgEl('line', { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, stroke: '#999' }));
  svg.append(svgEl('text', { x: left - 4, y: top + 4, 'text-anchor': 'end', fill: '#666', text: max.toPrecision(3) }));
  svg.append(svgEl('text', { x: left - 4, y: top + plotH, 'text-anchor': 'end', fill: '#666', text: '0' }));
  sigma.forEach((s, i) => {
    const h = (s / max) * plotH;
    const bar = svgEl('rect', { x: left + i * barW + 0.5, y: top + plotH - h, width: Math.max(1, barW - 1), height: Math.max(0.5, h), fill: colour });
    bar.append(svgEl('title', { text: `σ${i + 1} = ${s}` }));
    svg.append(bar);
  });
  for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
    if (i < 0) continue;
    svg.append(svgEl('text', { x: left + (i + 0.5) * barW, y: height - 8, 'text-anchor': 'middle', fill: '#666', text: String(i + 1) }));
  }
  if (erank !== null && Number.isFinite(erank)) {
    const x = left + erank * barW;
    svg.append(svgEl('line', { x1: x, x2: x, y1: top - 4, y2: top + plotH, stroke: '#d62728', 'stroke-dasharray': '3 2' }));
    const right = x > width - 80;
    svg.append(svgEl('text', { x: right ? x - 3 : x + 3, y: top + 6, 'text-anchor': right ? 'end' : 'start', fill: '#d62728', text: `eff. rank ${erank.toFixed(1)}` }));
  }
  return svg;
}

// The composition graph: layers left to right, heads top to bottom; an edge
// for every pair whose score is above threshold (e.g. baseline mean + 2 sd),
// width growing with the excess. scores: {q, k, v} each [L, H, L, H] flat.
export function compositionGraph({ nLayer, nHead, scores, threshold, kinds = ['q', 'k', 'v'], selected = null, maxEdges = 400, onPick = null }) {
  const colGap = Math.max(90, Math.min(160, 900 / Math.max(1, nLayer)));
  const rowGap = Math.max(14, Math.min(34, 520 / Math.max(1, nHead)));
  const left = 40;
  const top = 24;
  const width = left + (nLayer - 1) * colGap + 60;
  const height = top + (nHead - 1) * rowGap + 40;
  const pos = (l, h) => [left + l * colGap, top + h * rowGap];
  const edges = [];
  const N = nLayer * nHead;
  for (const kind of kinds) {
    const s = scores[kind];
    if (!s) continue;
    for (let a = 0; a < N; a++) {
      for (let b = 0; b < N; b++) {
        const v = s[a * N + b];
        if (v > threshold) edges.push({ kind, a, b, v });
      }
    }
  }
  edges.sort((x, y) => y.v - x.v);
  const shown = edges.slice(0, maxEdges);
  const vmax = shown.length ? shown[0].v : 1;
  const svg = svgEl('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart graph', 'font-family': 'system-ui, sans-serif', 'font-size': 10, role: 'img', 'aria-label': 'composition graph' });
  for (let l = 0; l < nLayer; l++) svg.append(svgEl('text', { x: pos(l, 0)[0], y: 12, 'text-anchor': 'middle', fill: '#555', text: `L${l}` }));
  const edgeGroup = svgEl('g', { class: 'edges' });
  for (const e of shown.slice().reverse()) {
    const [x1, y1] = pos(Math.floor(e.a / nHead), e.a % nHead);
    const [x2, y2] = pos(Math.floor(e.b / nHead), e.b % nHead);
    const involved = selected !== null && (e.a === selected || e.b === selected);
    const t = (e.v - threshold) / Math.max(1e-9, vmax - threshold);
    const path = svgEl('path', {
      d: `M${x1},${y1} C${x1 + colGap / 2},${y1} ${x2 - colGap / 2},${y2} ${x2},${y2}`, fill: 'none',
      stroke: COMPOSITION_COLOURS[e.kind], 'stroke-width': (0.8 + 3.5 * t).toFixed(2),
      'stroke-opacity': selected === null ? (0.35 + 0.55 * t).toFixed(2) : involved ? 0.95 : 0.08,
      'data-kind': e.kind,
    });
    path.append(svgEl('title', { text: `${e.kind.toUpperCase()}-composition ${headKey(Math.floor(e.a / nHead), e.a % nHead)} → ${headKey(Math.floor(e.b / nHead), e.b % nHead)}: ${e.v.toFixed(4)}` }));
    edgeGroup.append(path);
  }
  svg.append(edgeGroup);
  for (let l = 0; l < nLayer; l++) {
    for (let h = 0; h < nHead; h++) {
      const [x, y] = pos(l, h);
      const i = l * nHead + h;
      const node = svgEl('circle', { cx: x, cy: y, r: 5, fill: i === selected ? '#ff2d55' : '#fff', stroke: '#333', 'stroke-width': 1, class: 'node', 'data-head': headKey(l, h) });
      node.append(svgEl('title', { text: headKey(l, h) }));
      if (onPick) node.addEventListener('click', () => onPick(l, h));
      svg.append(node);
      if (l === 0) svg.append(svgEl('text', { x: x - 9, y: y + 3, 'text-anchor': 'end', fill: '#555', text: `H${h}` }));
    }
  }
  return { svg, edges: shown, total: edges.length };
}

export function svgText(text) {
  return xmlEscape(text);
}
