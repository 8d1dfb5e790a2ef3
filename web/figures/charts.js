// Small SVG charts built with DOM calls (text only ever in text nodes) and
// exported by serialising that DOM: a singular-value spectrum with its
// effective rank marked, and the layered graph of head composition.
import { svgEl, xmlEscape } from '../views/dom.js';
import { headKey } from '../../wasm/ids.mjs';

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

// The pairs the composition graph draws, from a composition result with
// its significance (core composition_null.hpp): for each kind, the pairs
// Benjamini-Hochberg flags at the result's false-discovery level, where the
// empirical null has enough pairs to reach that level; otherwise nothing is
// flagged and the `rankTop` highest-scoring pairs are drawn as a ranking.
// {edges: [{kind, a, b, v, p}] strongest first, ranked: bool}.
// Whether a score is flagged by its kind's test (significance[kind]).
export const isFlagged = (test, score) => test.resolvable && test.nFlagged > 0 && score >= test.threshold;

export function compositionEdges(c, kinds = ['q', 'k', 'v'], { rankTop = 8 } = {}) {
  const N = c.nLayer * c.nHead;
  const edges = [];
  let ranked = false;
  for (const kind of kinds) {
    const s = c[kind];
    const t = c.significance[kind];
    const pairs = [];
    for (let a = 0; a < N; a++) {
      for (let b = 0; b < N; b++) {
        if (Math.floor(a / c.nHead) < Math.floor(b / c.nHead)) pairs.push({ kind, a, b, v: s[a * N + b], p: t.p[a * N + b] });
      }
    }
    if (t.resolvable) {
      edges.push(...pairs.filter((e) => isFlagged(t, e.v)));
    } else {
      ranked = true;
      edges.push(...pairs.sort((x, y) => y.v - x.v).slice(0, rankTop));
    }
  }
  return { edges: edges.sort((x, y) => y.v - x.v), ranked };
}

// An empirical p-value with its few significant digits.
export const formatP = (p) => (Number.isFinite(p) ? (p < 0.001 ? p.toExponential(1) : p.toFixed(3)) : '–');
export const formatPercent = (x) => `${+(100 * x).toFixed(2)} %`;

// What the graph shows, in words: the null, the level, and how many pairs.
export function compositionGraphNote(c, kinds, { edges, ranked }, shown) {
  const sig = c.significance;
  const n = sig[kinds[0] ?? 'k'].null.n;
  const level = `${formatPercent(sig.fdr)} false-discovery rate (Benjamini–Hochberg)`;
  if (kinds.every((k) => sig[k].nTests === 0)) return 'One layer: no pair of heads can compose (composition needs an earlier and a later layer).';
  const nullWords = `the same score over the ${n} pairs of this model's heads that cannot compose (a later head into an earlier one, or two heads of one layer)`;
  if (ranked) {
    return `Not tested: the null, ${nullWords}, is too small to reach a ${level}: its p-values go down only to 1/${n + 1}, and at least ${Math.ceil(1 / sig.fdr ** 2) - 1} null pairs are needed. `
      + `Shown instead: the ${shown} highest-scoring pairs, ranked, each one's empirical p-value in its tooltip.`;
  }
  const counts = kinds.map((k) => `${k.toUpperCase()} ${sig[k].nFlagged} of ${sig[k].nTests}`).join(', ');
  return `Pairs flagged at a ${level} against an empirical null: ${nullWords}. Flagged: ${counts}${edges.length > shown ? `; the strongest ${shown} drawn` : ''}. `
    + 'Width and opacity grow with the score.';
}

// The composition graph: layers left to right, heads top to bottom; one
// edge per pair in `edges` (compositionEdges), width growing with the score
// from the weakest drawn to the strongest.
export function compositionGraph({ nLayer, nHead, edges, selected = null, maxEdges = 400, onPick = null }) {
  const colGap = Math.max(90, Math.min(160, 900 / Math.max(1, nLayer)));
  const rowGap = Math.max(14, Math.min(34, 520 / Math.max(1, nHead)));
  const left = 40;
  const top = 24;
  const width = left + (nLayer - 1) * colGap + 60;
  const height = top + (nHead - 1) * rowGap + 40;
  const pos = (l, h) => [left + l * colGap, top + h * rowGap];
  const shown = edges.slice(0, maxEdges);
  const vmax = shown.length ? shown[0].v : 1;
  const vmin = shown.length ? shown[shown.length - 1].v : 0;
  const svg = svgEl('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart graph', 'font-family': 'system-ui, sans-serif', 'font-size': 10, role: 'img', 'aria-label': 'composition graph' });
  for (let l = 0; l < nLayer; l++) svg.append(svgEl('text', { x: pos(l, 0)[0], y: 12, 'text-anchor': 'middle', fill: '#555', text: `L${l}` }));
  const edgeGroup = svgEl('g', { class: 'edges' });
  for (const e of shown.slice().reverse()) {
    const [x1, y1] = pos(Math.floor(e.a / nHead), e.a % nHead);
    const [x2, y2] = pos(Math.floor(e.b / nHead), e.b % nHead);
    const involved = selected !== null && (e.a === selected || e.b === selected);
    const t = (e.v - vmin) / Math.max(1e-9, vmax - vmin);
    const path = svgEl('path', {
      d: `M${x1},${y1} C${x1 + colGap / 2},${y1} ${x2 - colGap / 2},${y2} ${x2},${y2}`, fill: 'none',
      stroke: COMPOSITION_COLOURS[e.kind], 'stroke-width': (0.8 + 3.5 * t).toFixed(2),
      'stroke-opacity': selected === null ? (0.35 + 0.55 * t).toFixed(2) : involved ? 0.95 : 0.08,
      'data-kind': e.kind,
    });
    path.append(svgEl('title', { text: `${e.kind.toUpperCase()}-composition ${headKey(Math.floor(e.a / nHead), e.a % nHead)} → ${headKey(Math.floor(e.b / nHead), e.b % nHead)}: ${e.v.toFixed(4)}, p ${formatP(e.p)}` }));
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
  return { svg, edges: shown };
}

export function svgText(text) {
  return xmlEscape(text);
}

// A line chart: series [{name, points: [[x, y]...], colour, dash, width, opacity}].
export function lineChart(series, { title = '', xLabel = '', yLabel = '', width = 520, height = 240 } = {}) {
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const xmin = Math.min(...xs);
  const xmax = Math.max(...xs);
  let ymin = Math.min(...ys);
  let ymax = Math.max(...ys);
  if (ymax - ymin < 1e-9) {
    ymin -= 0.5;
    ymax += 0.5;
  }
  const pad = (ymax - ymin) * 0.05;
  ymin -= pad;
  ymax += pad;
  const left = 48;
  const right = 12;
  const top = 24;
  const bottom = 34;
  const X = (x) => left + ((x - xmin) / (xmax - xmin || 1)) * (width - left - right);
  const Y = (y) => top + (1 - (y - ymin) / (ymax - ymin)) * (height - top - bottom);
  const svg = svgEl('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart', 'font-family': 'system-ui, sans-serif', 'font-size': 10, role: 'img', 'aria-label': title });
  svg.append(svgEl('text', { x: 4, y: 13, 'font-size': 11, 'font-weight': 600, text: title }));
  svg.append(svgEl('line', { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, stroke: '#999' }));
  svg.append(svgEl('line', { x1: left, x2: left, y1: top, y2: height - bottom, stroke: '#999' }));
  for (let k = 0; k <= 4; k++) {
    const y = ymin + ((ymax - ymin) * k) / 4;
    svg.append(svgEl('text', { x: left - 4, y: Y(y) + 3, 'text-anchor': 'end', fill: '#666', text: y.toFixed(2) }));
    svg.append(svgEl('line', { x1: left, x2: width - right, y1: Y(y), y2: Y(y), stroke: '#eee' }));
  }
  const integers = xs.every(Number.isInteger);
  const ticks = [...new Set(Array.from({ length: 5 }, (_, k) => xmin + ((xmax - xmin) * k) / 4).map((x) => (integers ? Math.round(x) : x)))];
  for (const x of ticks) {
    svg.append(svgEl('text', { x: X(x), y: height - bottom + 13, 'text-anchor': 'middle', fill: '#666', text: integers ? String(x) : x.toFixed(1) }));
  }
  svg.append(svgEl('text', { x: (left + width - right) / 2, y: height - 4, 'text-anchor': 'middle', fill: '#444', text: xLabel }));
  svg.append(svgEl('text', { x: 10, y: (top + height - bottom) / 2, 'text-anchor': 'middle', fill: '#444', transform: `rotate(-90 10 ${(top + height - bottom) / 2})`, text: yLabel }));
  let legendY = top + 4;
  for (const s of series) {
    const d = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y], k) => `${k ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
    const path = svgEl('path', { d, fill: 'none', stroke: s.colour || '#2c6fbb', 'stroke-width': s.width || 2, 'stroke-dasharray': s.dash || null, 'stroke-opacity': s.opacity ?? 1, 'data-series': s.name });
    path.append(svgEl('title', { text: s.name }));
    svg.append(path);
    if (s.legend !== false) {
      svg.append(svgEl('line', { x1: width - right - 150, x2: width - right - 132, y1: legendY, y2: legendY, stroke: s.colour || '#2c6fbb', 'stroke-width': 2, 'stroke-dasharray': s.dash || null }));
      svg.append(svgEl('text', { x: width - right - 128, y: legendY + 3, fill: '#333', text: s.name }));
      legendY += 13;
    }
  }
  return svg;
}
