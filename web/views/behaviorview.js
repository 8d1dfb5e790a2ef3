// The head view's behaviour panel: what the selected head does on the text,
// from the core's detectors (TransformerLens detect_head, pattern statistics,
// Kovaleva classes, role labels): its role with confidence, every role score,
// the detector definitions and options, the pattern statistics and the
// positional profile (attention mass by relative offset).
import { serializeSvg } from '../figures/charts.js';
import { el, formatNumber, svgEl } from './dom.js';
import { exportBar, fileName, svgToPng } from '../export/export.js';
import { ROLE_LABELS } from '../control/metrics.js';
import { selectedHead } from '../state/store.js';
import { headKey } from '../../wasm/ids.mjs';

const ROLE_ORDER = ['induction', 'duplicate_token', 'previous_token', 'positional', 'current_token', 'first_token'];

const DEFINITIONS = [
  ['previous-token, duplicate-token, induction', 'TransformerLens detect_head: a 0/1 detection pattern D (previous: D[i, i−1]; duplicate: earlier positions holding the same token; induction: the position after such a copy). Measure "mul": Σ(A∘D) / ΣA; "abs": 1 − mean|A − D|·T. Options exclude the BOS column and the diagonal.'],
  ['positional', 'The share of attention at the dominant relative offset Δ = i − j, when that offset is neither 0 (current token) nor 1 (previous token).'],
  ['current token, first token', 'Mean attention to the query position itself, and to position 0 (the BOS "sink").'],
  ['role', 'The role whose score is highest among those above the threshold (0.4, as in ARENA), ties in the order listed; confidence = that score, margin = it minus the runner-up. No score above the threshold: "other". With the probe option, the induction role uses the standard random-token induction test instead of this text.'],
  ['Kovaleva class', 'Vertical (mass on the two most-attended key columns), diagonal (|i − j| ≤ 1), block (within a segment, over uniform), else heterogeneous — the highest score if ≥ 0.5. A rule standing in for the CNN of Kovaleva et al. (2019).'],
];

function bar(value, colour = '#2c6fbb') {
  const fill = el('span', { class: 'meter-bar' });
  fill.style.width = `${Math.max(1, Math.min(100, value * 100))}%`;
  fill.style.background = colour;
  return el('span', { class: 'meter' }, [fill]);
}

// Attention mass by offset Δ (Δ > 0: earlier keys), as bars.
function offsetChart(mass, T, { width = 420, height = 120, maxOffset = 40 } = {}) {
  const lo = -Math.min(T - 1, maxOffset);
  const hi = Math.min(T - 1, maxOffset);
  const values = [];
  for (let d = lo; d <= hi; d++) values.push([d, mass[d + T - 1]]);
  const shown = values.filter(([d, v]) => d >= 0 || v > 0);
  const max = Math.max(1e-9, ...shown.map(([, v]) => v));
  const left = 30;
  const bottom = 18;
  const w = (width - left - 6) / shown.length;
  const svg = svgEl('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart', 'font-family': 'system-ui, sans-serif', 'font-size': 10, role: 'img', 'aria-label': 'attention mass by relative offset' });
  svg.append(svgEl('text', { x: left - 4, y: 10, 'text-anchor': 'end', fill: '#666', text: max.toFixed(2) }));
  shown.forEach(([d, v], k) => {
    const h = (v / max) * (height - bottom - 8);
    const r = svgEl('rect', { x: left + k * w, y: height - bottom - h, width: Math.max(1, w - 1), height: Math.max(0.5, h), fill: d === 0 ? '#999' : '#2c6fbb', 'data-offset': d });
    r.append(svgEl('title', { text: `Δ = ${d}: ${v.toFixed(4)}` }));
    svg.append(r);
    if (d % 5 === 0) svg.append(svgEl('text', { x: left + (k + 0.5) * w, y: height - 5, 'text-anchor': 'middle', fill: '#666', text: String(d) }));
  });
  return svg;
}

export class HeadBehavior {
  constructor(root, { store, modelName, onError }) {
    this.store = store;
    this.modelName = modelName;
    this.role = el('div', { class: 'role-line', id: 'head-role' });
    this.scores = el('div', { class: 'role-scores', id: 'head-role-scores' });
    this.stats = el('dl', { class: 'numbers', id: 'head-pattern-stats' });
    this.offsets = el('div', { class: 'offsets', id: 'head-offsets' });
    this.corpus = el('div', { id: 'head-corpus-stats' });
    const flag = (id, text, title) => {
      const input = el('input', { type: 'checkbox', 'data-flag': id, on: { change: () => this.setFlag(id, input.checked) } });
      this.flags[id] = input;
      return el('label', { class: 'toggle', title }, [input, ` ${text}`]);
    };
    this.flags = {};
    const options = el('div', { class: 'detect-options' }, [
      flag('abs', 'abs measure', 'TransformerLens error_measure "abs" instead of "mul"'),
      flag('nobos', 'exclude BOS', 'exclude_bos: ignore attention to the first token'),
      flag('nocur', 'exclude current token', 'exclude_current_token: ignore the diagonal'),
      flag('probe', 'induction from the probe', 'label induction heads by the standard random-token test instead of this text'),
    ]);
    root.append(
      el('div', { class: 'weights-head' }, [el('h2', { text: 'What it does on this text' })]),
      el('div', { class: 'weights-grid' }, [
        el('section', { class: 'weights-card' }, [
          el('h3', { text: 'Role' }), this.role, this.scores, options,
          el('details', { class: 'definitions' }, [el('summary', { text: 'How the detectors and roles are defined' }),
            el('dl', {}, DEFINITIONS.flatMap(([t, d]) => [el('dt', { text: t }), el('dd', { text: d })]))]),
          exportBar(() => this.figure(), { onError, label: 'Scores', kinds: ['json', 'csv'] }),
        ]),
        el('section', { class: 'weights-card' }, [
          el('h3', { text: 'Pattern statistics' }), this.stats, this.corpus,
          el('h4', { text: 'Attention by relative offset Δ = query − key' }), this.offsets,
          exportBar(() => this.offsetFigure(), { onError, label: 'Offsets' }),
        ]),
      ]),
    );
    store.subscribe((state, changed) => {
      if (['behavior', 'head', 'modelInfo', 'detect'].some((k) => changed.has(k))) this.render(state);
      if (['corpusStats', 'head', 'modelInfo'].some((k) => changed.has(k))) this.renderCorpus(state);
    });
    this.render(store.state);
  }

  setFlag(id, on) {
    const flags = new Set(this.store.state.detect);
    if (on) flags.add(id);
    else flags.delete(id);
    this.store.set({ detect: [...flags].sort() });
  }

  render(state) {
    for (const [id, input] of Object.entries(this.flags)) input.checked = state.detect.includes(id);
    const b = state.behavior;
    const info = state.modelInfo;
    this.data = null;
    if (!b || !info) {
      this.role.textContent = b === null ? 'computing…' : '';
      return;
    }
    if (b.error) {
      this.role.replaceChildren(el('p', { class: 'message error', text: b.error }));
      this.scores.replaceChildren();
      this.stats.replaceChildren();
      this.offsets.replaceChildren();
      return;
    }
    const { layer, head } = selectedHead(state);
    const H = b.nHead;
    const i = layer * H + head;
    if (i >= b.role.length) return;
    const T = b.nTokens;
    const role = b.role[i];
    const [, long] = ROLE_LABELS[role] || ['', role];
    const scores = b.roleScores.slice(i * ROLE_ORDER.length, (i + 1) * ROLE_ORDER.length);
    this.data = { layer, head, i, b, scores, T };
    this.role.replaceChildren(
      el('span', { class: 'role-badge inline', dataset: { role }, text: long }),
      el('span', { class: 'muted', text: ` confidence ${formatNumber(b.roleConfidence[i], 3)} · margin ${formatNumber(b.roleMargin[i], 3)} · threshold ${b.roleThreshold}${b.rolesUseProbe ? ' · induction from the probe' : ''}` }),
    );
    this.role.dataset.role = role;
    this.scores.replaceChildren(...ROLE_ORDER.map((r, k) => el('div', { class: 'partner', dataset: { role: r, value: scores[k] } }, [
      el('span', { class: 'score-name', text: ROLE_LABELS[r][1] }),
      bar(scores[k], r === role ? '#ff2d55' : '#2c6fbb'),
      el('span', { class: 'num', text: formatNumber(scores[k], 3) }),
    ])));
    const rows = [
      ['previous-token score', b.previousTokenScore[i]], ['duplicate-token score', b.duplicateTokenScore[i]], ['induction score', b.inductionScore[i]],
      ['BOS sink mass', b.firstTokenMass[i]], ['current-token mass', b.currentTokenMass[i]], ['previous-token mass', b.previousTokenMass[i]],
      ['entropy (nats)', b.entropy[i]], ['entropy / ln(keys seen)', b.entropyNormalized[i]], ['dominant offset Δ', b.dominantOffset[i]], ['its share', b.dominantOffsetShare[i]],
      ['Kovaleva class', b.patternClass[i]], ['vertical', b.vertical[i]], ['diagonal', b.diagonal[i]], ['block', b.block[i]],
    ];
    this.stats.replaceChildren(...rows.flatMap(([name, value]) => [
      el('dt', { text: name }),
      el('dd', { text: typeof value === 'number' ? (Number.isInteger(value) && name.includes('Δ') ? String(value) : formatNumber(value, 4)) : String(value), dataset: { value: String(value) } }),
    ]));
    this.stats.dataset.measure = b.measure;
    this.offsetMass = b.offsetMass.slice(i * (2 * T - 1), (i + 1) * (2 * T - 1));
    this.offsets.replaceChildren(offsetChart(this.offsetMass, T));
  }

  // The same statistics over the last corpus run (Model view), beside this
  // text's: mean over texts, its interval, and the chance level.
  renderCorpus(state) {
    const c = state.corpusStats;
    if (!c || !state.modelInfo || c.generation !== state.modelInfo.generation) {
      this.corpus.replaceChildren();
      return;
    }
    const { layer, head } = selectedHead(state);
    const i = layer * state.modelInfo.nHead + head;
    const names = [['previous-token score', 'previousTokenScore'], ['duplicate-token score', 'duplicateTokenScore'], ['induction score', 'inductionScore'],
      ['BOS sink mass', 'firstTokenMass'], ['current-token mass', 'currentTokenMass'], ['previous-token mass', 'previousTokenMass'],
      ['entropy / ln(keys seen)', 'entropyNormalized'], ['dominant offset\'s share', 'dominantOffsetShare']];
    this.corpus.replaceChildren(
      el('h4', { text: `Over the corpus: ${c.source}, ${c.nTexts} texts of at most ${c.maxTokens} tokens` }),
      el('p', { class: 'muted small', text: `mean over texts [${Math.round(c.level * 100)} % interval] · chance level (uniform attention on the same texts)` }),
      el('dl', { class: 'numbers' }, names.flatMap(([label, key]) => {
        const m = c.metrics[key];
        return [el('dt', { text: label }), el('dd', { dataset: { value: String(m.mean[i]), lo: String(m.lo[i]), hi: String(m.hi[i]), chance: String(m.chance[i]) },
          text: `${formatNumber(m.mean[i], 3)} [${formatNumber(m.lo[i], 3)}, ${formatNumber(m.hi[i], 3)}] · chance ${formatNumber(m.chance[i], 3)}` })];
      })),
    );
  }

  figure() {
    const d = this.data;
    if (!d) return null;
    const { b, i } = d;
    const row = {
      head: headKey(d.layer, d.head), role: b.role[i], role_confidence: b.roleConfidence[i], role_margin: b.roleMargin[i],
      measure: b.measure, exclude_bos: b.excludeBos, exclude_current_token: b.excludeCurrentToken,
      previous_token_score: b.previousTokenScore[i], duplicate_token_score: b.duplicateTokenScore[i], induction_score: b.inductionScore[i],
      first_token_mass: b.firstTokenMass[i], current_token_mass: b.currentTokenMass[i], previous_token_mass: b.previousTokenMass[i],
      entropy: b.entropy[i], entropy_normalized: b.entropyNormalized[i], dominant_offset: b.dominantOffset[i], dominant_offset_share: b.dominantOffsetShare[i],
      pattern_class: b.patternClass[i], vertical: b.vertical[i], diagonal: b.diagonal[i], block: b.block[i],
      ...Object.fromEntries(ROLE_ORDER.map((r, k) => [`role_score_${r}`, d.scores[k]])),
    };
    return {
      name: fileName('headscope', this.modelName(), row.head, 'behaviour'),
      json: () => ({ model: this.modelName(), tokens: b.ids, ...row }),
      csv: () => [Object.keys(row), Object.values(row)],
    };
  }

  offsetFigure() {
    const d = this.data;
    if (!d) return null;
    const T = d.T;
    const svg = () => serializeSvg(offsetChart(this.offsetMass, T));
    return {
      name: fileName('headscope', this.modelName(), headKey(d.layer, d.head), 'offsets'),
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => ({ head: headKey(d.layer, d.head), offsets: Array.from(this.offsetMass, (v, k) => ({ delta: k - (T - 1), mass: v })) }),
      csv: () => [['delta', 'mass'], ...Array.from(this.offsetMass, (v, k) => [k - (T - 1), v])],
    };
  }
}
