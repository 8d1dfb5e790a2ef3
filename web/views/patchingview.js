// The Patching view: causal evidence between the page's text (clean) and a
// corrupted text of the same token length (core/patching.hpp through the
// worker): activation patching of every head, head and position, residual
// position or q/k/v input, path patching from every sender head, and the
// clean text's direct logit attribution. Everything that defines the
// experiment is in the link: the clean text (`text`), `corrupt`, `answer`,
// `wrong`, `patch`, `dir`, `recv`, `pmetric`.
import { SCALES } from '../figures/colormap.js';
import { HeadValuesFigure } from '../figures/matrix.js';
import { el, formatNumber } from './dom.js';
import { textOf } from '../control/app.js';
import { MAX_ANSWER_LENGTH, MAX_TEXT_LENGTH, PATCH_TARGETS, RECEIVER } from '../state/hash.js';
import { headKey } from '../../wasm/ids.mjs';

// The name-swap pair of Wang et al. (2022)'s indirect-object task.
export const IOI_EXAMPLE = {
  text: 'When Mary and John went to the store, John gave a drink to',
  corrupt: 'When Mary and John went to the store, Mary gave a drink to',
  answer: ' Mary',
  wrong: ' John',
};

// The most patched forwards a link starts by itself (GPT-2 small: 144 heads
// x 14 positions is 2016); larger experiments wait for the Run button.
const LINK_FORWARDS = 2500;

const TARGETS = {
  heads: 'each head\'s output (all positions)',
  heads_by_position: 'each head\'s output at each position',
  resid: 'the residual stream at each layer and position',
  q: 'each head\'s queries',
  k: 'each key head\'s keys (per KV head)',
  v: 'each value head\'s values (per KV head)',
  path: 'path patching from each sender head',
};

export class PatchingView {
  // compact (the embed): the experiment's figures without the controls.
  constructor(root, { store, app, modelName, onError, compact = false }) {
    this.store = store;
    this.app = app;
    this.modelName = modelName;
    this.compact = compact;
    this.corrupt = el('textarea', { id: 'patch-corrupt', rows: 2, maxlength: MAX_TEXT_LENGTH, 'aria-label': 'corrupted text', placeholder: 'the clean text with one name (or fact) changed, of the same token length' });
    this.answer = el('input', { type: 'text', id: 'patch-answer', maxlength: MAX_ANSWER_LENGTH, size: 12, 'aria-label': 'answer token', placeholder: ' Mary' });
    this.wrong = el('input', { type: 'text', id: 'patch-wrong', maxlength: MAX_ANSWER_LENGTH, size: 12, 'aria-label': 'wrong answer token', placeholder: '(none)' });
    this.target = el('select', { id: 'patch-target', 'aria-label': 'what to patch' }, PATCH_TARGETS.map((value) => el('option', { value, text: TARGETS[value] })));
    this.direction = el('select', { id: 'patch-direction', 'aria-label': 'direction' }, [
      el('option', { value: 'denoise', text: 'denoising: clean into the corrupted run' }),
      el('option', { value: 'noise', text: 'noising: corrupted into the clean run' }),
    ]);
    this.metric = el('select', { id: 'patch-metric', 'aria-label': 'metric' }, [
      el('option', { value: 'logit_diff', text: 'logit difference' }),
      el('option', { value: 'loss', text: 'loss of the answer' }),
    ]);
    this.receivers = el('input', { type: 'text', id: 'patch-receivers', size: 24, 'aria-label': 'receivers', placeholder: 'logits, or L9H9:q,L9G2:k' });
    this.receiverRow = el('span', { hidden: true }, [el('label', { text: ' receivers ' }), this.receivers]);
    this.target.addEventListener('change', () => this.showControls());
    this.predictions = el('div', { id: 'patch-predictions', class: 'muted small' });
    this.summary = el('p', { class: 'small', id: 'patch-summary' });
    this.lastAnswerField = this.answer;
    for (const field of [this.answer, this.wrong]) field.addEventListener('focus', () => { this.lastAnswerField = field; });
    const box = el('div', { id: 'patch-figure', class: 'figure' });
    const dlaBox = el('div', { id: 'patch-dla-figure', class: 'figure' });
    const pick = (layer, head) => store.set({ head: { layer, head }, view: 'head' });
    this.figure = new HeadValuesFigure(box, { onError, onPick: pick });
    this.dlaFigure = new HeadValuesFigure(dlaBox, { onError, onPick: pick });
    this.dlaNote = el('p', { class: 'muted small', id: 'patch-dla-note' });
    const controls = [
      el('h3', { text: 'Patching: which heads carry the answer' }),
      el('p', { class: 'muted small', text: 'Two texts of the same token length: the clean one (the text above) and a corrupted one that changes what decides the answer. One activation of one run replaces the same activation of the other, and the metric at the last position is read: the logit of the answer minus that of the wrong answer, or the loss of the answer. Effect = (m − m_corrupted) / (m_clean − m_corrupted): 0 is the corrupted run, 1 the clean one. Denoising asks whether an activation suffices to restore the answer; noising whether losing it breaks it. Path patching (Wang et al. 2022, as ARENA defines it) runs the clean text with one sender head from the corrupted run and every other head frozen at its clean value, so that only the sender\'s paths through the MLPs and to the receivers count.' }),
      el('div', { class: 'figure-head' }, [el('label', { for: 'patch-corrupt', text: 'corrupted text ' }), this.corrupt]),
      el('div', { class: 'figure-head' }, [
        el('label', { text: 'answer ' }), this.answer, el('label', { text: ' wrong ' }), this.wrong,
        el('label', { text: ' metric ' }), this.metric,
        el('button', { type: 'button', id: 'patch-ioi', class: 'secondary', text: 'IOI example', on: { click: () => this.example() } }),
      ]),
      this.predictions,
      el('div', { class: 'figure-head' }, [
        el('label', { text: 'patch ' }), this.target, el('label', { text: ' ' }), this.direction, this.receiverRow,
        el('button', { type: 'button', id: 'patch-run', text: 'Run', on: { click: () => this.submit() } }),
      ]),
    ];
    root.append(...(compact ? [] : controls), this.summary, box, el('h4', { text: 'Direct logit attribution (clean text)' }), this.dlaNote, dlaBox);
    store.subscribe((state, changed) => {
      if (changed.has('modelInfo')) this.clear();
      if (['corrupt', 'answer', 'wrong', 'patch', 'dir', 'recv', 'pmetric'].some((k) => changed.has(k))) this.fromState(state);
      if (state.view !== 'patching') return;
      if (['modelInfo', 'view', 'text', 'bos'].some((k) => changed.has(k))) this.suggest(state);
      if (['corrupt', 'answer', 'wrong', 'patch', 'dir', 'recv', 'pmetric', 'text', 'bos', 'modelInfo', 'view', 'edits'].some((k) => changed.has(k))) this.fromLink(state);
    });
    this.fromState(store.state);
  }

  // The controls show the state's experiment.
  fromState(state) {
    this.corrupt.value = state.corrupt ?? '';
    this.answer.value = state.answer ?? '';
    this.wrong.value = state.wrong ?? '';
    this.target.value = state.patch;
    this.direction.value = state.dir;
    this.metric.value = state.pmetric;
    this.receivers.value = state.recv.join(',');
    this.showControls();
  }

  showControls() {
    const path = this.target.value === 'path';
    this.receiverRow.hidden = !path;
    this.direction.disabled = path;
  }

  clear() {
    this.result = null;
    this.linkKey = null;
    this.figure.clear('');
    this.dlaFigure.clear('');
    this.summary.textContent = '';
    this.dlaNote.textContent = '';
    this.predictions.replaceChildren();
    delete this.summary.dataset.ready;
  }

  example() {
    this.store.set({ text: IOI_EXAMPLE.text, corrupt: IOI_EXAMPLE.corrupt, answer: IOI_EXAMPLE.answer, wrong: IOI_EXAMPLE.wrong });
  }

  // The controls into the state (the link); the run follows from it.
  submit() {
    const receivers = this.receivers.value.split(',').map((r) => r.trim()).filter(Boolean);
    const bad = receivers.find((r) => !RECEIVER.test(r));
    if (bad) return this.fail(`receiver ${JSON.stringify(bad.slice(0, 40))}: write L9H9:q for a query head, L9G2:k or L9G2:v for a key or value head`);
    if (!this.corrupt.value.trim()) return this.fail('give the corrupted text: the clean text with what decides the answer changed');
    if (!this.answer.value) return this.fail('give the answer token (e.g. " Mary", with its leading space), or pick one of the predictions');
    this.linkKey = null;
    this.store.set({
      corrupt: this.corrupt.value, answer: this.answer.value, wrong: this.wrong.value || null,
      patch: this.target.value, dir: this.direction.value, pmetric: this.metric.value, recv: receivers,
    });
    this.fromLink(this.store.state, true);
  }

  fail(message) {
    this.summary.textContent = message;
    this.summary.classList.add('error');
  }

  // The clean text's most likely next tokens, as answer candidates.
  async suggest(state) {
    const info = state.modelInfo;
    if (this.compact || !info || state.modelStatus !== 'ready' || !info.hasLmHead || !info.causal || info.attentionOnly) return;
    try {
      const { predictions } = await this.app.compute('predictions', { text: textOf(state), prependBos: state.bos, k: 8 });
      if (this.store.state.modelInfo !== info) return;
      this.predictions.replaceChildren(el('span', { text: 'the clean text\'s next token: ' }), ...predictions.map((p) => el('button', {
        type: 'button', class: 'secondary', text: `${JSON.stringify(p.text)} ${formatNumber(100 * p.prob, 1)} %`,
        title: 'use as the answer (or the wrong answer, when that field was the last one used)',
        on: { click: () => { this.lastAnswerField.value = p.text; } },
      })));
    } catch {
      this.predictions.replaceChildren();
    }
  }

  // A link (or Run) with an experiment runs it when the view is on screen;
  // one that would take more than LINK_FORWARDS forwards waits for Run.
  fromLink(state, clicked = false) {
    if (!state.corrupt || !state.answer || !state.modelInfo || state.modelStatus !== 'ready') return;
    const key = JSON.stringify([textOf(state), state.bos, state.corrupt, state.answer, state.wrong, state.patch, state.dir, state.recv, state.pmetric, state.modelInfo.generation, state.edits]);
    if (this.linkKey === key) return;
    const { nLayer: L, nHead: H } = state.modelInfo;
    const T = state.run?.nTokens ?? 0;
    const forwards = { heads_by_position: L * H * T, resid: L * T }[state.patch] ?? L * H;
    if (!clicked && forwards > LINK_FORWARDS) {
      this.summary.classList.remove('error');
      this.summary.textContent = `This experiment runs about ${forwards} patched forward passes: press Run to start it.`;
      return;
    }
    this.linkKey = key;
    this.run(state);
  }

  async run(state) {
    const info = state.modelInfo;
    const common = { prependBos: state.bos, answer: state.answer, wrong: state.wrong, position: -1 };
    const args = { ...common, clean: textOf(state), corrupt: state.corrupt, target: state.patch, direction: state.dir, receivers: state.recv, metric: state.pmetric };
    this.summary.classList.remove('error');
    this.summary.textContent = 'computing…';
    delete this.summary.dataset.ready;
    this.figure.clear('');
    try {
      const r = await this.app.compute('patch', args);
      if (this.store.state.modelInfo !== info) return;
      this.result = r;
      this.render(r, state);
    } catch (error) {
      this.fail(error.message);
      return;
    }
    try {
      const d = await this.app.compute('dla', { text: textOf(state), ...common });
      if (this.store.state.modelInfo !== info) return;
      this.renderDla(d);
    } catch (error) {
      this.dlaFigure.clear('');
      this.dlaNote.textContent = error.message;
    }
  }

  render(r, state) {
    const L = r.nLayer;
    const H = r.nHead;
    const T = r.cleanTokens.length;
    const path = r.target === 'path';
    const metricText = r.metric === 'loss' ? `the loss of ${JSON.stringify(r.answerText)}` : r.wrongText === null ? `the logit of ${JSON.stringify(r.answerText)}` : `logit(${JSON.stringify(r.answerText)}) − logit(${JSON.stringify(r.wrongText)})`;
    const at = `at position ${r.position} (${JSON.stringify(r.cleanTokens[r.position])})`;
    const diff = r.clean === r.corrupt ? ' The two runs give the same metric: there is nothing to restore, every effect is undefined.' : '';
    this.summary.textContent = `${metricText} ${at}: clean ${formatNumber(r.clean, 4)}, corrupted ${formatNumber(r.corrupt, 4)}.${diff} ${path ? `Path patching to ${r.receivers.length ? r.receivers.join(', ') : 'the logits'}.` : r.direction === 'denoise' ? 'Denoising: each activation from the clean run into the corrupted one.' : 'Noising: each activation from the corrupted run into the clean one.'} Effect 0 = corrupted, 1 = clean; edits in force: ${state.edits.length}.`;
    this.summary.dataset.ready = r.target;
    const tokens = r.cleanTokens.map((t, i) => (t === r.corruptTokens[i] ? t : `${t}/${r.corruptTokens[i]}`));
    const shape = path ? [L, H] : Array.from(r.shape);
    let rows = null;
    let columns = null;
    let cell = (i) => headKey(Math.floor(i / H), i % H);
    if (r.target === 'resid') {
      rows = Array.from({ length: L }, (_, l) => `L${l}`);
      columns = tokens;
      cell = (i) => `layer ${Math.floor(i / T)} position ${i % T} (${JSON.stringify(tokens[i % T])})`;
    } else if (r.target === 'heads_by_position') {
      rows = Array.from({ length: L * H }, (_, i) => headKey(Math.floor(i / H), i % H));
      columns = tokens;
      cell = (i) => `${rows[Math.floor(i / T)]} at position ${i % T} (${JSON.stringify(tokens[i % T])})`;
    } else if (r.target === 'k' || r.target === 'v') {
      const G = shape[1];
      rows = Array.from({ length: L }, (_, l) => `L${l}`);
      columns = Array.from({ length: G }, (_, g) => `G${g}`);
      cell = (i) => `L${Math.floor(i / G)}G${i % G} (query heads ${Math.floor(i % G) * (H / G)}–${Math.floor(i % G) * (H / G) + H / G - 1})`;
    }
    const nRows = rows ? rows.length : L;
    const nColumns = columns ? columns.length : H;
    const span = Math.max(1, ...Array.from(r.effect).filter(Number.isFinite).map(Math.abs));
    this.figure.show(r.effect, nRows, nColumns, {
      title: `${this.modelName()} · ${TARGETS[r.target]}${path ? '' : ` (${r.direction})`}`,
      name: `${this.modelName()}_patch_${r.target}`,
      label: 'normalised effect (0 = corrupted, 1 = clean)', min: -span, max: span, scale: SCALES.diverging,
      format: (v) => formatNumber(v, 3), rowLabels: rows, columnLabels: columns,
      caption: `${TARGETS[r.target]}${r.target === 'k' || r.target === 'v' ? ': a KV head\'s keys and values are shared by its query heads (GQA), so they are patched and shown per KV head' : ''}. Colour: white = 0 (the corrupted run), orange toward 1 (the clean run), purple below 0.${path ? ' Grey: no path (a sender at or after the last receiver\'s layer).' : ''}${rows ? '' : ' Click a head to open it.'}`,
      describe: (i, v) => `${cell(i)}: effect ${formatNumber(v, 3)}, metric ${formatNumber(r.value[i], 4)}`,
      columns: { metric: Array.from(r.value) },
      extra: {
        clean_text: textOf(state), corrupt_text: state.corrupt, clean_tokens: r.cleanTokens, corrupt_tokens: r.corruptTokens,
        metric: r.metric, answer: r.answerText, wrong: r.wrongText, position: r.position, clean_value: r.clean, corrupt_value: r.corrupt,
        target: r.target, direction: path ? null : r.direction, receivers: path ? r.receivers : null, shape,
        normalisation: '(value - corrupt_value) / (clean_value - corrupt_value)', value: Array.from(r.value),
      },
    });
  }

  renderDla(d) {
    const L = d.nLayer;
    const H = d.nHead;
    const T = d.tokens.length;
    const p = d.position;
    const at = Array.from({ length: L * H }, (_, i) => d.heads[i * T + p]);
    let rest = d.embed[p] + d.bias[p];
    for (let l = 0; l < L; l++) rest += d.attnBias[l * T + p] + d.mlp[l * T + p] + d.editPaths[l * T + p];
    const heads = at.reduce((a, b) => a + b, 0);
    const span = Math.max(1e-6, ...at.map(Math.abs));
    const what = d.wrongText === null ? `logit(${JSON.stringify(d.answerText)})` : `logit(${JSON.stringify(d.answerText)}) − logit(${JSON.stringify(d.wrongText)})`;
    this.dlaNote.textContent = `Each head's direct contribution to ${what} at position ${p} (${JSON.stringify(d.tokens[p])}) of the clean text: its output through the final norm with the norm's scale frozen at this run's value, into the unembedding. Heads ${formatNumber(heads, 3)} + embeddings, MLPs and biases ${formatNumber(rest, 3)} = ${formatNumber(d.total[p], 3)}, the run's own value. Only the direct path: what a head does through later heads is in patching above.`;
    this.dlaFigure.show(at, L, H, {
      title: `${this.modelName()} · direct logit attribution, ${what}`,
      name: `${this.modelName()}_dla`,
      label: 'direct logit attribution', min: -span, max: span, scale: SCALES.diverging, format: (v) => formatNumber(v, 3),
      caption: 'Orange: the head pushes toward the answer; purple: toward the wrong answer (or against the answer). Click a head to open it.',
      extra: { position: p, tokens: d.tokens, answer: d.answerText, wrong: d.wrongText, total: d.total[p], other_components: rest, per_position: Array.from(d.heads) },
    });
  }
}
