// Heads over a corpus (in the Model view): every head's detector scores and
// pattern statistics over many texts, each as its mean with a 95 %
// bootstrap interval and beside its chance level (uniform attention on the
// same texts), and how often each role labels the head
// (ModelSession.corpus, the core's corpus_stats). The corpus is a built-in
// one or a Hugging Face dataset's split (either, with the size and token
// window, goes in the link: the hash's `corpus` field), or the viewer's
// .txt / .jsonl / .parquet file, which a link cannot carry.
import { lineChart, serializeSvg } from '../figures/charts.js';
import { SCALES } from '../figures/colormap.js';
import { HeadValuesFigure } from '../figures/matrix.js';
import { exportBar, fileName, svgToPng } from '../export/export.js';
import { el, formatNumber } from './dom.js';
import { CORPUS_LIMITS } from '../state/hash.js';
import { CORPORA } from '../shared/sources.js';
import { corpusFormat, parseCorpus } from '../../wasm/corpus_files.mjs';

// The parquet reader (wasm/corpus_parquet.mjs), bundled on its own
// (web/build.mjs) and loaded the first time a parquet file is read.
const PARQUET_BUNDLE = new URL('./parquet.js', import.meta.url).href;
import { headKey } from '../../wasm/ids.mjs';

// The statistics offered, by the API's names.
const STATISTICS = {
  previousTokenScore: 'previous-token score (TL detect_head)',
  inductionScore: 'induction score (TL detect_head)',
  duplicateTokenScore: 'duplicate-token score (TL detect_head)',
  firstTokenMass: 'BOS sink: mean attention to the first token',
  currentTokenMass: 'mean attention to the current token',
  previousTokenMass: 'mean attention to the previous token',
  entropyNormalized: 'entropy / ln(keys each row may see)',
  dominantOffsetShare: 'share of attention at the dominant offset',
};

export class CorpusPanel {
  constructor(root, { store, app, modelName, onError }) {
    this.store = store;
    this.app = app;
    this.modelName = modelName;
    this.result = null;
    this.file = null;  // {name, texts} read from the viewer's file
    this.source = el('select', { id: 'corpus-source', 'aria-label': 'corpus' }, [
      ...Object.entries(CORPORA).map(([name, c]) => el('option', { value: name, text: `${c.label} (${c.texts} texts)` })),
      el('option', { value: 'hf', text: 'a Hugging Face dataset…' }),
      el('option', { value: 'file', text: 'your file (.txt, .jsonl, .parquet)…' }),
    ]);
    this.fileInput = el('input', { type: 'file', id: 'corpus-file', accept: '.txt,.jsonl,.parquet', hidden: true, on: { change: () => this.readFile() } });
    this.datasetRepo = el('input', { type: 'text', id: 'corpus-dataset', placeholder: 'owner/name', 'aria-label': 'dataset id', size: 24 });
    this.datasetConfig = el('input', { type: 'text', id: 'corpus-config', value: 'default', 'aria-label': 'dataset config', size: 12 });
    this.datasetSplit = el('input', { type: 'text', id: 'corpus-split', value: 'train', 'aria-label': 'dataset split', size: 8 });
    this.datasetRow = el('div', { class: 'figure-head', hidden: true }, [
      el('label', { text: 'dataset ' }), this.datasetRepo, el('label', { text: ' config ' }), this.datasetConfig, el('label', { text: ' split ' }), this.datasetSplit,
      el('span', { class: 'muted small', text: ' its text column "text", from the hub\'s parquet conversion; only the rows needed are downloaded' }),
    ]);
    this.source.addEventListener('change', () => {
      this.datasetRow.hidden = this.source.value !== 'hf';
      if (this.source.value !== 'file') return;
      // Back to the last real choice until a file is read (the dialog may be cancelled).
      this.source.value = this.file ? `file:${this.file.name}` : Object.keys(CORPORA)[0];
      this.fileInput.click();
    });
    this.texts = el('input', { type: 'number', id: 'corpus-texts', min: CORPUS_LIMITS.texts[0], max: CORPUS_LIMITS.texts[1], value: 64, 'aria-label': 'texts' });
    this.tokens = el('input', { type: 'number', id: 'corpus-tokens', min: CORPUS_LIMITS.tokens[0], max: CORPUS_LIMITS.tokens[1], value: 128, 'aria-label': 'tokens per text' });
    this.statistic = el('select', { id: 'corpus-statistic', 'aria-label': 'statistic' }, Object.entries(STATISTICS).map(([value, text]) => el('option', { value, text })));
    this.statistic.addEventListener('change', () => this.render());
    this.note = el('p', { class: 'muted small', id: 'corpus-note' });
    this.roles = el('table', { id: 'corpus-roles', class: 'data-table' });
    this.examples = el('div', { id: 'corpus-examples', class: 'corpus-examples' });
    const box = el('div', { id: 'corpus-figure', class: 'figure' });
    const pick = (layer, head) => store.set({ head: { layer, head }, view: 'head' });
    this.figure = new HeadValuesFigure(box, { onError, onPick: pick });
    const gradBox = el('div', { id: 'corpus-gradient', class: 'figure' });
    const looBox = el('div', { id: 'corpus-loo', class: 'figure' });
    this.gradFigure = new HeadValuesFigure(gradBox, { onError, onPick: pick });
    this.looFigure = new HeadValuesFigure(looBox, { onError, onPick: pick });
    this.importanceNote = el('p', { class: 'muted small', id: 'corpus-importance-note' });
    this.pruneBox = el('div', { id: 'corpus-pruning', class: 'graph-wrap' });
    root.append(
      el('h3', { text: 'Heads over a corpus' }),
      el('p', { class: 'muted small', text: 'Each head\'s detector scores and pattern statistics on every text of a corpus: the mean over texts with a 95 % bootstrap interval, next to the chance level (the same statistic for attention spread evenly over the keys each row may see, on the same texts), and how often each role labels the head. Each text is cut to its first tokens (BOS first).' }),
      el('div', { class: 'figure-head' }, [
        el('label', { text: 'corpus ' }), this.source, this.fileInput,
        el('label', { text: ' texts ' }), this.texts, el('label', { text: ' tokens each ' }), this.tokens,
        el('button', { type: 'button', id: 'corpus-run', class: 'secondary', text: 'Run over the corpus', on: { click: () => this.run() } }),
      ]),
      this.datasetRow,
      this.note,
      el('div', { class: 'figure-head' }, [el('label', { text: 'show ' }), this.statistic]),
      el('div', { class: 'model-grid' }, [box, this.roles]),
      this.examples,
      el('h4', { text: 'Importance over the corpus' }),
      el('p', { class: 'muted small', text: 'Michel et al.\'s importance as they define it, the expectation over texts of |∂L/∂ξ_h|, divided by its layer\'s L2 norm; the loss change when the head alone is ablated, mean over texts with its 95 % interval (one run per head and text); and a pruning curve whose order is chosen on half of the texts (even-indexed) and measured on the other half, next to random orders (their range).' }),
      el('div', { class: 'figure-head' }, [
        el('button', { type: 'button', id: 'corpus-importance-run', class: 'secondary', text: 'Importance over the corpus', on: { click: () => this.runImportance() } }),
        this.importanceNote, exportBar(() => this.pruneFigure(), { onError, label: 'Curve' }),
      ]),
      el('div', { class: 'model-grid' }, [gradBox, looBox]),
      this.pruneBox,
    );
    store.subscribe((state, changed) => {
      if (changed.has('modelInfo')) this.clear();
      if (changed.has('head') && this.result) this.renderExamples();
      // (The overview's metrics over the corpus need the run too.)
      if (['corpus', 'modelInfo', 'view', 'over'].some((k) => changed.has(k)) && (state.view === 'model' || state.over === 'corpus')) this.fromLink(state);
    });
  }

  // A new model: nothing of the last one's stays on screen or in the exports.
  clear() {
    this.result = null;
    this.store.set({ corpusStats: null });
    this.pruneData = null;
    this.pruneSvg = null;
    this.figure.clear('');
    this.gradFigure.clear('');
    this.looFigure.clear('');
    this.pruneBox.replaceChildren();
    this.roles.replaceChildren();
    this.examples.replaceChildren();
    this.note.textContent = '';
    this.importanceNote.textContent = '';
  }

  // A link with a corpus runs it when the Model view is on screen, or when
  // the overview colours heads by a statistic over the corpus.
  fromLink(state) {
    const c = state.corpus;
    if (!c || !state.modelInfo || state.modelStatus !== 'ready') return;
    this.source.value = c.dataset ? 'hf' : c.name;
    this.datasetRow.hidden = !c.dataset;
    if (c.dataset) {
      this.datasetRepo.value = c.dataset;
      this.datasetConfig.value = c.config;
      this.datasetSplit.value = c.split;
    }
    this.texts.value = c.texts;
    this.tokens.value = c.tokens;
    const key = JSON.stringify([c, state.modelInfo.generation]);
    if (this.linkKey === key) return;
    this.linkKey = key;
    this.run();
  }

  async readFile() {
    const file = this.fileInput.files?.[0];
    this.fileInput.value = '';
    if (!file) return;
    try {
      const format = corpusFormat(file.name);
      if (!format) throw new Error(`${file.name}: not a corpus file: give .txt (one text per line), .jsonl (a "text" field per line) or .parquet (a "text" column)`);
      const read = { limit: CORPUS_LIMITS.texts[1] };
      // A parquet file is read in slices: only the row groups needed.
      const { texts } = format === 'parquet'
        ? await (await import(PARQUET_BUNDLE)).parquetTexts(file.name, { byteLength: file.size, slice: (start, end) => file.slice(start, end).arrayBuffer() }, read)
        : parseCorpus(file.name, await file.text(), read);
      this.file = { name: file.name, texts };
      this.source.append(el('option', { value: `file:${file.name}`, text: `${file.name} (${texts.length} texts)` }));
      this.source.value = `file:${file.name}`;
      this.note.textContent = `${file.name}: ${texts.length} texts. A file on your disk cannot be put in a link: a link to this view will not carry it.`;
    } catch (error) {
      this.source.value = Object.keys(CORPORA)[0];
      this.note.textContent = error.message;
      this.note.classList.add('error');
    }
  }

  // The request's corpus arguments from the controls: {name, texts, tokens, args}.
  choice() {
    const info = this.store.state.modelInfo;
    const clamp = (input, [lo, hi]) => Math.max(lo, Math.min(hi, Math.round(Number(input.value) || lo)));
    const texts = clamp(this.texts, CORPUS_LIMITS.texts);
    const tokens = Math.min(clamp(this.tokens, CORPUS_LIMITS.tokens), info.nCtx || CORPUS_LIMITS.tokens[1]);
    const fromFile = this.source.value.startsWith('file:') && this.file;
    const hub = this.source.value === 'hf';
    const name = fromFile || hub ? null : this.source.value;
    const dataset = hub ? { repo: this.datasetRepo.value.trim(), config: this.datasetConfig.value.trim() || 'default', split: this.datasetSplit.value.trim() || 'train' } : null;
    if (dataset && this.store.state.hub) dataset.endpoint = this.store.state.hub;
    const sizes = { maxTexts: texts, maxTokens: tokens };
    const args = name ? { name, ...sizes } : dataset ? { dataset, ...sizes } : { texts: this.file.texts, ...sizes };
    // What a link may carry: a built-in corpus or a hub dataset, never a file.
    const link = name ? { name, texts, tokens } : dataset ? { dataset: dataset.repo, config: dataset.config, split: dataset.split, texts, tokens } : null;
    const label = name ? `${CORPORA[name].label} (${CORPORA[name].path})` : dataset ? `dataset ${dataset.repo} (${dataset.config}/${dataset.split})` : `${this.file.name} (your file)`;
    return { name, texts, tokens, link, label, args: { ...args, ...this.app.detectOptions() } };
  }

  async run() {
    const info = this.store.state.modelInfo;
    if (!info) return;
    this.note.classList.remove('error');
    if (this.source.value === 'hf' && !/^[^/\s]+\/[^/\s]+$/.test(this.datasetRepo.value.trim())) {
      this.note.textContent = 'give a dataset id (owner/name)';
      this.note.classList.add('error');
      return;
    }
    const { link, label, args } = this.choice();
    // The link names a built-in corpus or a hub dataset; a file leaves it out.
    this.store.set({ corpus: link });
    if (link) this.linkKey = JSON.stringify([link, info.generation]);
    this.note.textContent = 'computing…';
    try {
      const r = await this.app.compute('corpus', args);
      if (this.store.state.modelInfo !== info) return;
      this.result = { ...r, source: label };
      this.note.textContent = `${this.result.source}: ${r.nTexts} texts, each cut to its first ${r.maxTokens} tokens (BOS included; ${r.nTruncated} were longer); intervals: percentile bootstrap of the mean over texts, ${r.resamples} resamples, seed ${r.seed}; detectors: ${r.measure} measure (the head view's options); roles use each text's own induction score.`;
      this.note.dataset.ready = String(r.nTexts);
      this.store.set({ corpusStats: { source: this.result.source, nTexts: r.nTexts, maxTokens: r.maxTokens, level: r.level, metrics: r.metrics, generation: info.generation } });
      this.render();
    } catch (error) {
      this.note.textContent = error.message;
      this.note.classList.add('error');
    }
  }

  render() {
    const r = this.result;
    if (!r) return;
    const key = this.statistic.value;
    const m = r.metrics[key];
    const L = r.nLayer;
    const H = r.nHead;
    const chance = Array.from(m.chance);
    const same = chance.every((c) => Math.abs(c - chance[0]) < 1e-12);
    const chanceText = same ? formatNumber(chance[0], 3) : `${formatNumber(Math.min(...chance), 3)}–${formatNumber(Math.max(...chance), 3)} (by layer)`;
    const max = Math.max(1e-9, ...Array.from(m.hi).filter(Number.isFinite));
    this.figure.show(m.mean, L, H, {
      title: `${this.modelName()} · ${STATISTICS[key]} over ${r.nTexts} texts`,
      name: `${this.modelName()}_corpus_${key}`,
      label: STATISTICS[key], min: 0, max: Math.max(max, 1e-9),
      caption: `Mean over ${r.nTexts} texts; the tooltip gives the ${Math.round(r.level * 100)} % interval. Chance level (uniform attention on the same texts): ${chanceText}.`,
      describe: (i, v) => `${headKey(Math.floor(i / H), i % H)}: ${formatNumber(v, 3)} [${formatNumber(m.lo[i], 3)}, ${formatNumber(m.hi[i], 3)}], chance ${formatNumber(m.chance[i], 3)}`,
      columns: { lo: Array.from(m.lo), hi: Array.from(m.hi), chance },
      extra: {
        corpus: r.source, texts: r.nTexts, max_tokens: r.maxTokens, truncated: r.nTruncated, level: r.level, resamples: r.resamples, seed: r.seed,
        statistic: key, lo: Array.from(m.lo), hi: Array.from(m.hi), chance,
        per_text: Array.from({ length: r.nTexts }, (_, t) => Array.from(m.perText.subarray(t * L * H, (t + 1) * L * H))),
      },
    });
    this.renderRoles();
    this.renderExamples();
  }

  // The selected head's top examples: token snippets with the query and the
  // key it attends marked; a click opens the head view on that text.
  renderExamples() {
    const r = this.result;
    const { layer, head } = this.store.state.head ?? { layer: 0, head: 0 };
    const i = layer * r.nHead + head;
    const list = r.topExamples?.[i] ?? [];
    const R = r.roles.length;
    let best = 0;
    for (let k = 1; k < R; k++) if (r.roleShare[i * R + k] > r.roleShare[i * R + best]) best = k;
    const items = list.map((e) => el('li', { dataset: { text: String(e.text), query: String(e.query), key: String(e.key) } }, [
      el('button', {
        type: 'button', class: 'link', text: `text ${e.text + 1}`,
        title: 'open this text in the head view',
        on: { click: () => this.store.set({ text: r.texts?.[e.text] ?? this.store.state.text, head: { layer, head }, view: 'head' }) },
      }),
      ` · ${formatNumber(e.weight, 3)} · `,
      ...e.tokens.map((t, k) => {
        const at = e.start + k;
        return el('span', { class: `token${at === e.key ? ' attended' : ''}${at === e.query ? ' query' : ''}`, text: t });
      }),
    ]));
    this.examples.replaceChildren(
      el('h4', { text: `Where ${headKey(layer, head)} does its role (${r.roles[best]}, on most texts) most strongly` }),
      el('p', { class: 'muted small', text: 'One example per text, strongest first: the query token (outlined) puts the given weight of its attention on the marked key token, the role\'s target. Click a text to open the head view on it.' }),
      items.length ? el('ol', {}, items) : el('p', { class: 'muted small', text: 'no example: this role has no target in these texts' }),
    );
  }

  async runImportance() {
    const info = this.store.state.modelInfo;
    if (!info) return;
    const { label, args } = this.choice();
    const mode = this.store.state.mode;
    this.importanceNote.textContent = 'computing…';
    try {
      const m = await this.app.compute('corpusImportance', { ...args, mode, nRandom: 5 });
      if (this.store.state.modelInfo !== info) return;
      const L = m.nLayer;
      const H = m.nHead;
      this.importanceNote.textContent = `${label}: ${m.nTexts} texts of at most ${m.maxTokens} tokens; objective ${m.objective}, ${m.mode} ablation; mean loss ${formatNumber(m.loss, 4)}.`;
      this.importanceNote.dataset.ready = String(m.nTexts);
      this.gradFigure.show(m.gradientNormalized, L, H, {
        title: `${this.modelName()} · E|∂L/∂ξ| over ${m.nTexts} texts, per layer normalised`, name: `${this.modelName()}_corpus_importance`,
        label: 'E|∂L/∂ξ| / layer norm', min: 0, max: Math.max(1e-12, ...m.gradientNormalized),
        caption: 'Michel et al.: the mean over texts of each head\'s |∂L/∂ξ|, divided by the L2 norm of its layer\'s values.',
        columns: { expectation: Array.from(m.gradient) }, extra: { texts: m.nTexts, objective: m.objective, expectation: Array.from(m.gradient) },
      });
      const span = Math.max(1e-9, ...Array.from(m.looHi, Math.abs), ...Array.from(m.looLo, Math.abs));
      this.looFigure.show(m.looMean, L, H, {
        title: `${this.modelName()} · loss change without each head, mean over ${m.nTexts} texts (${m.mode} ablation)`, name: `${this.modelName()}_corpus_loo_${m.mode}`,
        label: `Δ loss, ${m.mode} ablation`, min: -span, max: span, scale: SCALES.diverging,
        caption: `Mean over texts; the tooltip gives the ${Math.round(m.level * 100)} % interval (bootstrap over texts).`,
        describe: (i, v) => `${headKey(Math.floor(i / H), i % H)}: ${v >= 0 ? '+' : ''}${formatNumber(v, 4)} [${formatNumber(m.looLo[i], 4)}, ${formatNumber(m.looHi[i], 4)}]`,
        columns: { lo: Array.from(m.looLo), hi: Array.from(m.looHi) }, extra: { texts: m.nTexts, mode: m.mode, lo: Array.from(m.looLo), hi: Array.from(m.looHi) },
      });
      const x = Array.from(m.nRemoved);
      const series = [
        { name: 'importance order', points: x.map((n, k) => [n, m.pruningLoss[k]]), colour: '#2c6fbb', width: 2.5 },
        { name: `random (${m.nRandom}): range`, points: x.map((n, k) => [n, m.randomMax[k]]), colour: '#999', width: 1 },
        { name: 'random, lowest', points: x.map((n, k) => [n, m.randomMin[k]]), colour: '#999', width: 1, legend: false },
        { name: 'random, mean', points: x.map((n, k) => [n, m.randomMean[k]]), colour: '#666', dash: '5 3', width: 2 },
      ];
      this.pruneData = m;
      this.pruneSvg = lineChart(series, { title: `${this.modelName()} · held-out pruning: loss on ${m.evaluateTexts.length} texts the order never saw`, xLabel: 'heads removed', yLabel: 'loss', width: 620, height: 260 });
      this.pruneBox.replaceChildren(this.pruneSvg);
    } catch (error) {
      this.importanceNote.textContent = error.message;
    }
  }

  pruneFigure() {
    if (!this.pruneSvg) return null;
    const m = this.pruneData;
    const svg = () => serializeSvg(this.pruneSvg);
    return {
      name: fileName('headscope', this.modelName(), 'corpus-pruning', m.mode),
      svg,
      png: () => svgToPng(svg(), 2),
      json: () => m,
      csv: () => [['heads_removed', 'loss_held_out', 'random_min', 'random_mean', 'random_max'], ...Array.from(m.nRemoved, (n, k) => [n, m.pruningLoss[k], m.randomMin[k], m.randomMean[k], m.randomMax[k]])],
    };
  }

  // Per head: the role most texts give it, and on how many.
  renderRoles() {
    const r = this.result;
    const R = r.roles.length;
    const rows = [];
    for (let i = 0; i < r.nLayer * r.nHead; i++) {
      let best = 0;
      for (let k = 1; k < R; k++) if (r.roleShare[i * R + k] > r.roleShare[i * R + best]) best = k;
      const share = r.roleShare[i * R + best];
      rows.push(el('tr', { dataset: { head: headKey(Math.floor(i / r.nHead), i % r.nHead), role: r.roles[best], share: String(share) } }, [
        el('td', { text: headKey(Math.floor(i / r.nHead), i % r.nHead) }),
        el('td', { text: r.roles[best] }),
        el('td', { text: `${Math.round(share * r.nTexts)} of ${r.nTexts} texts` }),
        el('td', { text: `${r.dominantOffset[i]} (${Math.round(r.dominantOffsetAgreement[i] * r.nTexts)} of ${r.nTexts})` }),
      ]));
    }
    const head = el('tr', {}, ['head', 'role on most texts', 'on', 'dominant offset (texts agreeing)'].map((t) => el('th', { scope: 'col', text: t })));
    this.roles.replaceChildren(el('thead', {}, [head]), el('tbody', {}, rows));
  }
}
