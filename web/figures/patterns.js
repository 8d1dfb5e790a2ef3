// Figure drawing shared by the page, embed.html and the exports: attention
// thumbnails, the labelled heatmap (canvas on screen, SVG for export), the
// token-to-token line view (as BertViz's head view) and the head grid as
// SVG. Functions here take plain data (tokens, a [T, T] pattern) and know
// nothing of the store.
import { MASKED_RGB, SCALES, hexAt, lutOffset, rgbAt, textOn } from './colormap.js';
import { displayToken, xmlEscape } from '../views/dom.js';

const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const FONT_FAMILY = 'system-ui, -apple-system, Segoe UI, Roboto, sans-serif';

export function isMasked(causal, query, key) {
  return causal && key > query;
}

// Writes a T x T pattern into an ImageData-backed canvas of T x T pixels
// (straight from the scale's lookup table: this runs for every head on every
// keystroke).
export function paintPattern(canvas, pattern, T, causal, scale = SCALES.viridis) {
  canvas.width = T;
  canvas.height = T;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(T, T);
  const data = image.data;
  const lut = scale.lut;
  for (let q = 0; q < T; q++) {
    for (let k = 0; k < T; k++) {
      const o = (q * T + k) * 4;
      if (isMasked(causal, q, k)) {
        data[o] = MASKED_RGB[0];
        data[o + 1] = MASKED_RGB[1];
        data[o + 2] = MASKED_RGB[2];
      } else {
        const i = lutOffset(pattern[q * T + k]);
        data[o] = lut[i];
        data[o + 1] = lut[i + 1];
        data[o + 2] = lut[i + 2];
      }
      data[o + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

export function shortToken(text, max = 16) {
  const s = displayToken(text);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

let measureCtx = null;
function textWidth(text) {
  measureCtx ??= document.createElement('canvas').getContext('2d');
  measureCtx.font = FONT;
  return measureCtx.measureText(text).width;
}

// Geometry of the labelled heatmap for T tokens within maxWidth CSS pixels.
export function heatmapLayout(tokens, maxWidth = 640) {
  const T = tokens.length;
  const labels = tokens.map((t) => shortToken(t));
  const labelWidth = Math.ceil(Math.min(140, Math.max(24, ...labels.map(textWidth)))) + 8;
  const left = labelWidth + 28; // + the index column
  const top = labelWidth + 28;
  const cell = Math.max(3, Math.min(36, Math.floor((maxWidth - left - 8) / Math.max(T, 1))));
  // Labels need ~11 px of height; thin out when cells are smaller.
  const labelStep = Math.max(1, Math.ceil(13 / cell));
  return { T, labels, labelWidth, left, top, cell, labelStep, width: left + cell * T + 8, height: top + cell * T + 8 };
}

// Draws the heatmap on a 2D context (CSS pixel coordinates). highlight:
// {query, key} of the hovered cell or null; showValues: print the weights in
// cells large enough.
export function drawHeatmap(ctx, { pattern, causal, layout, highlight = null, showValues = false, patternImage = null, focusRow = null }) {
  const { T, labels, left, top, cell, labelStep, width, height } = layout;
  ctx.save();
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  const image = patternImage || paintPattern(document.createElement('canvas'), pattern, T, causal);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, left, top, cell * T, cell * T);
  ctx.font = FONT;
  ctx.textBaseline = 'middle';
  // Row labels (queries), right-aligned; index in small grey.
  for (let i = 0; i < T; i += labelStep) {
    const y = top + (i + 0.5) * cell;
    const hot = (highlight && highlight.query === i) || focusRow === i;
    ctx.fillStyle = hot ? '#000' : '#333';
    ctx.font = hot ? `bold ${FONT}` : FONT;
    ctx.textAlign = 'right';
    ctx.fillText(labels[i], left - 26, y);
    ctx.fillStyle = '#888';
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillText(String(i), left - 4, y);
  }
  // Column labels (keys), rotated to read upwards.
  for (let j = 0; j < T; j += labelStep) {
    const x = left + (j + 0.5) * cell;
    const hot = highlight && highlight.key === j;
    ctx.save();
    ctx.translate(x, top - 4);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'left';
    ctx.fillStyle = '#888';
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillText(String(j), 0, 0);
    ctx.fillStyle = hot ? '#000' : '#333';
    ctx.font = hot ? `bold ${FONT}` : FONT;
    ctx.fillText(labels[j], 22, 0);
    ctx.restore();
  }
  if (showValues && cell >= 26) {
    ctx.font = `${Math.min(11, cell / 3)}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        if (isMasked(causal, q, k)) continue;
        const v = pattern[q * T + k];
        ctx.fillStyle = textOn(SCALES.viridis, v);
        ctx.fillText(v.toFixed(2).replace(/^0/, ''), left + (k + 0.5) * cell, top + (q + 0.5) * cell);
      }
    }
  }
  if (focusRow !== null) {
    ctx.strokeStyle = '#ff8c00';
    ctx.lineWidth = 2;
    ctx.strokeRect(left - 1, top + focusRow * cell - 1, cell * T + 2, cell + 2);
  }
  if (highlight) {
    ctx.strokeStyle = 'rgba(0,0,0,0.35)';
    ctx.lineWidth = 1;
    ctx.strokeRect(left + 0.5, top + highlight.query * cell + 0.5, cell * T - 1, cell - 1);
    ctx.strokeRect(left + highlight.key * cell + 0.5, top + 0.5, cell - 1, cell * T - 1);
    ctx.strokeStyle = '#ff2d55';
    ctx.lineWidth = 2;
    ctx.strokeRect(left + highlight.key * cell + 1, top + highlight.query * cell + 1, cell - 2, cell - 2);
  }
  ctx.restore();
}

// The cell under CSS coordinates (x, y), or null.
export function heatmapCellAt(layout, x, y) {
  const k = Math.floor((x - layout.left) / layout.cell);
  const q = Math.floor((y - layout.top) / layout.cell);
  if (q < 0 || k < 0 || q >= layout.T || k >= layout.T) return null;
  return { query: q, key: k };
}

function svgDocument(width, height, body, title) {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT_FAMILY}" font-size="12">\n<title>${xmlEscape(title)}</title>\n<rect width="100%" height="100%" fill="#fff"/>\n${body}</svg>\n`;
}

// The heatmap as a standalone SVG document (one rect per unmasked cell).
export function heatmapSvg({ tokens, pattern, causal, title, maxWidth = 720 }) {
  const layout = heatmapLayout(tokens, maxWidth);
  const { T, labels, left, top, cell, labelStep } = layout;
  const titleHeight = 24;
  const parts = [`<text x="8" y="16" font-size="13" font-weight="600">${xmlEscape(title)}</text>\n<g transform="translate(0 ${titleHeight})">\n`];
  const masked = `#${MASKED_RGB.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
  for (let q = 0; q < T; q++) {
    for (let k = 0; k < T; k++) {
      const m = isMasked(causal, q, k);
      const v = pattern[q * T + k];
      const fill = m ? masked : hexAt(SCALES.viridis, v);
      parts.push(`<rect x="${left + k * cell}" y="${top + q * cell}" width="${cell}" height="${cell}" fill="${fill}">${m ? '' : `<title>${xmlEscape(`${labels[q]} → ${labels[k]}: ${v}`)}</title>`}</rect>\n`);
    }
  }
  for (let i = 0; i < T; i += labelStep) {
    parts.push(`<text x="${left - 26}" y="${top + (i + 0.5) * cell}" text-anchor="end" dominant-baseline="middle">${xmlEscape(labels[i])}</text>\n`);
    parts.push(`<text x="${left - 4}" y="${top + (i + 0.5) * cell}" text-anchor="end" dominant-baseline="middle" font-size="10" fill="#888">${i}</text>\n`);
    const x = left + (i + 0.5) * cell;
    parts.push(`<text transform="translate(${x} ${top - 4}) rotate(-90)" x="22" dominant-baseline="middle">${xmlEscape(labels[i])}</text>\n`);
    parts.push(`<text transform="translate(${x} ${top - 4}) rotate(-90)" dominant-baseline="middle" font-size="10" fill="#888">${i}</text>\n`);
  }
  parts.push('</g>\n');
  parts.push(legendSvg(8, layout.height + titleHeight + 4, 'attention weight'));
  return svgDocument(layout.width, layout.height + titleHeight + 44, parts.join(''), title);
}

function legendSvg(x, y, label) {
  const stops = [];
  for (let i = 0; i <= 10; i++) stops.push(`<stop offset="${i * 10}%" stop-color="${hexAt(SCALES.viridis, i / 10)}"/>`);
  return `<defs><linearGradient id="viridis">${stops.join('')}</linearGradient></defs>
<g transform="translate(${x} ${y})"><text y="10" font-size="11">${xmlEscape(label)}</text>
<rect x="110" y="1" width="160" height="10" fill="url(#viridis)"/>
<text x="110" y="24" font-size="10">0</text><text x="190" y="24" font-size="10" text-anchor="middle">0.5</text><text x="270" y="24" font-size="10" text-anchor="end">1</text></g>\n`;
}

// Line view geometry: queries on the left, keys on the right.
export function linesLayout(tokens, { rowHeight = 20, gap = 150 } = {}) {
  const labels = tokens.map((t) => shortToken(t, 18));
  const labelWidth = Math.ceil(Math.min(150, Math.max(30, ...labels.map(textWidth)))) + 10;
  const top = 28;
  return {
    T: tokens.length, labels, rowHeight, labelWidth, top,
    xLeft: labelWidth + 4, xRight: labelWidth + 4 + gap,
    width: 2 * labelWidth + gap + 8, height: top + tokens.length * rowHeight + 8,
  };
}

// The lines to draw: {q, k, w} with w >= minWeight (fainter ones are invisible).
export function lineList(pattern, T, causal, minWeight = 0.01) {
  const lines = [];
  for (let q = 0; q < T; q++) {
    for (let k = 0; k < T; k++) {
      if (isMasked(causal, q, k)) continue;
      const w = pattern[q * T + k];
      if (w >= minWeight) lines.push({ q, k, w });
    }
  }
  return lines;
}

export const LINE_COLOUR = '#2c6fbb';

// The line view as an SVG string (export, and the PNG export through an image).
export function linesSvg({ tokens, pattern, causal, title, focus = null }) {
  const L = linesLayout(tokens);
  const titleHeight = 24;
  const parts = [`<text x="8" y="16" font-size="13" font-weight="600">${xmlEscape(title)}</text>\n<g transform="translate(0 ${titleHeight})">\n`];
  parts.push(`<text x="${L.xLeft - 6}" y="12" text-anchor="end" font-size="11" fill="#666">query</text><text x="${L.xRight + 6}" y="12" font-size="11" fill="#666">key</text>\n`);
  for (const { q, k, w } of lineList(pattern, L.T, causal)) {
    if (focus !== null && focus !== q) continue;
    const y1 = L.top + (q + 0.5) * L.rowHeight;
    const y2 = L.top + (k + 0.5) * L.rowHeight;
    parts.push(`<line x1="${L.xLeft}" y1="${y1}" x2="${L.xRight}" y2="${y2}" stroke="${LINE_COLOUR}" stroke-width="2" stroke-opacity="${w.toFixed(4)}"/>\n`);
  }
  for (let i = 0; i < L.T; i++) {
    const y = L.top + (i + 0.5) * L.rowHeight;
    parts.push(`<text x="${L.xLeft - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${xmlEscape(L.labels[i])}</text>\n`);
    parts.push(`<text x="${L.xRight + 6}" y="${y}" dominant-baseline="middle">${xmlEscape(L.labels[i])}</text>\n`);
  }
  parts.push('</g>\n');
  return svgDocument(L.width, L.height + titleHeight, parts.join(''), title);
}

// The layer x head grid as SVG: each thumbnail an embedded PNG (pixel data
// is what a thumbnail is), labels and marks as vector.
export function gridSvg({ nLayer, nHead, thumbnails, title, ablated = new Set(), headKeyOf }) {
  const size = 48;
  const gap = 6;
  const left = 40;
  const top = 48;
  const parts = [`<text x="8" y="16" font-size="13" font-weight="600">${xmlEscape(title)}</text>\n`];
  for (let h = 0; h < nHead; h++) parts.push(`<text x="${left + h * (size + gap) + size / 2}" y="${top - 8}" text-anchor="middle" font-size="11" fill="#555">H${h}</text>\n`);
  for (let l = 0; l < nLayer; l++) {
    parts.push(`<text x="${left - 8}" y="${top + l * (size + gap) + size / 2}" text-anchor="end" dominant-baseline="middle" font-size="11" fill="#555">L${l}</text>\n`);
    for (let h = 0; h < nHead; h++) {
      const x = left + h * (size + gap);
      const y = top + l * (size + gap);
      parts.push(`<image x="${x}" y="${y}" width="${size}" height="${size}" preserveAspectRatio="none" image-rendering="pixelated" href="${thumbnails[l][h]}"/>\n`);
      if (ablated.has(headKeyOf(l, h))) parts.push(`<rect x="${x}" y="${y}" width="${size}" height="${size}" fill="none" stroke="#d62728" stroke-width="2" stroke-dasharray="4 2"/>\n`);
    }
  }
  const width = left + nHead * (size + gap) + 8;
  const height = top + nLayer * (size + gap) + 40;
  parts.push(legendSvg(8, height - 32, 'attention weight'));
  return svgDocument(Math.max(width, 300), height, parts.join(''), title);
}
