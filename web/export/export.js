// Exports: every figure as PNG and SVG, its numbers as JSON (with the CLI's
// snake_case names, wasm/names.mjs toJson) and CSV. A figure hands an
// exporter {name, svg(), png() -> Promise<Blob>, json(), csv()}; exportBar()
// renders the four buttons.
import { el } from '../views/dom.js';
import { toJson } from '../../wasm/names.mjs';

export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// A file name from parts: letters, digits, '-', '_' and '.' only.
export function fileName(...parts) {
  return parts.filter(Boolean).join('_').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/-+/g, '-').slice(0, 120);
}

// CSV per RFC 4180. Strings that a spreadsheet would run as a formula
// (= + - @ first) get a leading apostrophe: token text is untrusted.
export function toCsv(rows) {
  const cell = (value) => {
    if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
    let s = value === null || value === undefined ? '' : String(value);
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return `${rows.map((row) => row.map(cell).join(',')).join('\r\n')}\r\n`;
}

export function canvasToBlob(canvas) {
  return new Promise((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('PNG encoding failed'))), 'image/png'));
}

// Rasterises an SVG document string to a PNG blob at `scale`.
export async function svgToPng(svgText, scale = 2) {
  const size = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svgText);
  const width = size ? Number(size[1]) : 800;
  const height = size ? Number(size[2]) : 600;
  const url = URL.createObjectURL(new Blob([svgText], { type: 'image/svg+xml' }));
  try {
    const image = new Image();
    image.decoding = 'sync';
    await new Promise((resolve, reject) => {
      image.onload = resolve;
      image.onerror = () => reject(new Error('the SVG could not be rasterised'));
      image.src = url;
    });
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    return canvasToBlob(canvas);
  } finally {
    URL.revokeObjectURL(url);
  }
}

// Four buttons; getFigure() is called at click time so the export is of what
// is on screen now. onError(message) reports failures.
export function exportBar(getFigure, { onError = () => {}, label = 'Export', kinds = ['png', 'svg', 'json', 'csv'] } = {}) {
  const run = (kind) => async () => {
    const figure = getFigure();
    if (!figure) return onError('nothing to export yet');
    try {
      if (kind === 'png') download(await figure.png(), `${figure.name}.png`);
      if (kind === 'svg') download(new Blob([figure.svg()], { type: 'image/svg+xml' }), `${figure.name}.svg`);
      if (kind === 'json') download(new Blob([toJson(figure.json(), 1)], { type: 'application/json' }), `${figure.name}.json`);
      if (kind === 'csv') download(new Blob([toCsv(figure.csv())], { type: 'text/csv' }), `${figure.name}.csv`);
    } catch (error) {
      onError(`export failed: ${error.message}`);
    }
  };
  const button = (kind, text, title) => el('button', { type: 'button', class: 'export-button', text, title, dataset: { export: kind }, on: { click: run(kind) } });
  const all = {
    png: ['PNG', 'the figure as a PNG image'], svg: ['SVG', 'the figure as an SVG vector image'],
    json: ['JSON', 'the numbers as JSON'], csv: ['CSV', 'the numbers as CSV'],
  };
  return el('div', { class: 'export-bar', role: 'group', 'aria-label': label }, [
    el('span', { class: 'export-label', text: `${label}:` }),
    ...kinds.map((kind) => button(kind, ...all[kind])),
  ]);
}
