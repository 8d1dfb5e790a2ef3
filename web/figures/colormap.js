// Colour scales: viridis (perceptually uniform, colour-blind safe) for
// attention weights and other magnitudes, and a diverging scale (blue-orange
// PuOr, colour-blind safe) for signed changes such as a loss difference. Both
// from d3-scale-chromatic, sampled once into 256-entry lookup tables so a
// thumbnail costs one table lookup per pixel.
import { interpolatePuOr, interpolateViridis } from 'd3-scale-chromatic';

function parseColour(text) {
  // d3 returns 'rgb(r, g, b)' or '#rrggbb'.
  const rgb = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(text);
  if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(text);
  return hex ? [parseInt(hex[1], 16), parseInt(hex[2], 16), parseInt(hex[3], 16)] : [0, 0, 0];
}

function table(interpolate) {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) lut.set(parseColour(interpolate(i / 255)), i * 3);
  return lut;
}

export const SCALES = {
  viridis: { lut: table(interpolateViridis), name: 'viridis' },
  // d3's PuOr runs purple (0) to orange (1): a loss increase (t > 0.5) is orange.
  diverging: { lut: table(interpolatePuOr), name: 'PuOr' },
};

// Colour of masked cells (keys after the query in a causal model): a neutral
// grey so that it reads as "no value" rather than as a small weight.
export const MASKED_RGB = [236, 236, 240];

// Offset of t's colour (t in [0, 1], clamped; not finite: 0) in a scale's lut.
export function lutOffset(t) {
  return Math.max(0, Math.min(255, Math.round((Number.isFinite(t) ? t : 0) * 255))) * 3;
}

export function rgbAt(scale, t) {
  const i = lutOffset(t);
  return [scale.lut[i], scale.lut[i + 1], scale.lut[i + 2]];
}

export function cssAt(scale, t) {
  const [r, g, b] = rgbAt(scale, t);
  return `rgb(${r},${g},${b})`;
}

export function hexAt(scale, t) {
  return `#${rgbAt(scale, t).map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

// Text colour readable on top of a viridis cell.
export function textOn(scale, t) {
  const [r, g, b] = rgbAt(scale, t);
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? '#111' : '#fff';
}

// A horizontal legend: a canvas gradient with tick labels, as a DOM node.
export function legend(scale, { min = 0, max = 1, label = '', ticks = 5, format = (v) => v.toFixed(2) } = {}) {
  const wrap = document.createElement('div');
  wrap.className = 'legend';
  const title = document.createElement('span');
  title.className = 'legend-title';
  title.textContent = label;
  const bar = document.createElement('canvas');
  bar.width = 256;
  bar.height = 1;
  bar.className = 'legend-bar';
  const ctx = bar.getContext('2d');
  const image = ctx.createImageData(256, 1);
  for (let i = 0; i < 256; i++) {
    image.data.set(scale.lut.subarray(i * 3, i * 3 + 3), i * 4);
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  const tickRow = document.createElement('div');
  tickRow.className = 'legend-ticks';
  for (let i = 0; i < ticks; i++) {
    const tick = document.createElement('span');
    tick.textContent = format(min + ((max - min) * i) / (ticks - 1));
    tickRow.append(tick);
  }
  const scaleBox = document.createElement('div');
  scaleBox.className = 'legend-scale';
  scaleBox.append(bar, tickRow);
  wrap.append(title, scaleBox);
  return wrap;
}
