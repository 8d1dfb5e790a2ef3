// The text panel: an editable input with example texts, the BOS switch, the
// tokens as chips (coloured by the change in their loss when heads are
// ablated) and a one-line summary (tokens, loss). Typing updates the store;
// the controller schedules the run (control/app.js).
import { SCALES, cssAt, textOn } from '../figures/colormap.js';
import { displayToken, el, formatNumber } from './dom.js';
import { EXAMPLES } from '../state/models.js';
import { MAX_TEXT_LENGTH } from '../state/hash.js';
import { textOf } from '../control/app.js';

export class TextPanel {
  constructor(root, { store }) {
    this.store = store;
    this.textarea = el('textarea', {
      id: 'text-input', rows: 2, maxlength: MAX_TEXT_LENGTH, spellcheck: 'false', 'aria-label': 'text to run through the model',
      on: { input: () => this.store.set({ text: this.textarea.value }) },
    });
    const examples = el('div', { class: 'examples', role: 'group', 'aria-label': 'example texts' }, [el('span', { class: 'muted', text: 'Examples:' })]);
    for (const example of EXAMPLES) {
      examples.append(el('button', {
        type: 'button', class: 'chip-button', text: example.title, dataset: { example: example.id },
        on: { click: () => this.store.set({ text: example.text }) },
      }));
    }
    this.bos = el('input', { type: 'checkbox', id: 'bos-toggle', on: { change: () => this.store.set({ bos: this.bos.checked }) } });
    const bosLabel = el('label', { class: 'toggle', title: 'Put the model\'s beginning-of-sequence token first, as TransformerLens does by default' }, [this.bos, ' prepend BOS']);
    this.chips = el('div', { id: 'tokens', class: 'tokens', 'aria-label': 'tokens' });
    this.summary = el('div', { id: 'run-summary', class: 'run-summary', role: 'status', 'aria-live': 'polite' });
    this.error = el('div', { id: 'run-error', class: 'message error', role: 'alert', hidden: true });
    root.append(
      el('div', { class: 'panel-head' }, [el('label', { for: 'text-input', class: 'bar-label', text: 'Text' }), examples, bosLabel]),
      this.textarea, this.error, this.chips, this.summary,
    );
    store.subscribe((state, changed) => this.render(state, changed));
    this.render(store.state, new Set(['text', 'bos', 'run']));
  }

  render(state, changed) {
    if (changed.has('text') && this.textarea.value !== textOf(state)) this.textarea.value = textOf(state);
    if (changed.has('bos')) this.bos.checked = state.bos;
    if (changed.has('modelInfo')) {
      const noTokenizer = state.modelInfo && !state.modelInfo.hasTokenizer;
      this.textarea.placeholder = noTokenizer ? 'this model has no tokenizer: type token ids, e.g. 5 17 42 7' : 'type some text';
    }
    if (changed.has('runError') || changed.has('runStatus')) {
      this.error.hidden = !(state.runStatus === 'error' && state.runError);
      this.error.textContent = state.runError || '';
      document.body.dataset.run = state.runStatus;
    }
    if (changed.has('run') || changed.has('runStatus') || changed.has('modelInfo')) this.renderTokens(state);
    else if (changed.has('focusToken')) {
      for (const chip of this.chips.children) {
        const on = Number(chip.dataset.index) === state.focusToken;
        chip.classList.toggle('focused', on);
        chip.setAttribute('aria-pressed', String(on));
      }
    }
  }

  renderTokens(state) {
    const run = state.run;
    this.chips.classList.toggle('stale', state.runStatus === 'running');
    if (!run && state.modelInfo?.attentionOnly) {
      this.chips.replaceChildren();
      this.summary.textContent = 'not run: the model has its attention weights only (untick "attention weights only" to load it whole)';
      return;
    }
    if (!run) return;
    this.chips.replaceChildren();
    if (run.empty) {
      this.summary.textContent = 'no tokens: type some text';
      return;
    }
    // Per-token change against the run without the ablation, or without the edits.
    const reference = run.gated && run.baseline ? run.baseline.tokenLoss : run.unedited?.tokenLoss;
    const hasLoss = Boolean(state.modelInfo?.hasLmHead) && run.tokenLoss?.length > 0 && Number.isFinite(run.loss);
    const delta = hasLoss && reference ? Array.from(run.tokenLoss, (v, i) => v - reference[i]) : null;
    const maxDelta = delta ? Math.max(1e-6, ...Array.from(delta, Math.abs)) : 1;
    run.tokens.forEach((token, i) => {
      const chip = el('span', {
        class: `token${state.focusToken === i ? ' focused' : ''}`, dataset: { index: i }, role: 'button', tabindex: 0, 'aria-pressed': String(state.focusToken === i),
        on: {
          click: () => this.store.set({ focusToken: this.store.state.focusToken === i ? null : i }),
          keydown: (e) => {
            if (e.key === 'Enter' || e.key === ' ') {
              e.preventDefault();
              this.store.set({ focusToken: this.store.state.focusToken === i ? null : i });
            }
          },
        },
      }, [displayToken(token)]);
      const lines = [`position ${i} · id ${run.ids[i]} · click to follow this token in the head view`];
      if (i < run.tokenLoss?.length) {
        lines.push(`loss predicting the next token: ${formatNumber(run.tokenLoss[i])}`);
        if (delta) {
          lines.push(`change with the ${run.gated ? 'ablation' : 'edits'}: ${delta[i] >= 0 ? '+' : ''}${formatNumber(delta[i])}`);
          const t = 0.5 + delta[i] / maxDelta / 2;
          chip.style.backgroundColor = cssAt(SCALES.diverging, t);
          chip.style.color = textOn(SCALES.diverging, t);
        }
      }
      chip.title = lines.join('\n');
      this.chips.append(chip);
    });
    const parts = [`${run.nTokens} token${run.nTokens === 1 ? '' : 's'}`];
    if (run.truncated) parts.push(`(cut from ${run.truncated}: the page runs at most ${run.nTokens})`);
    if (hasLoss) {
      // original model → with the edits → with the ablation
      const sign = (d) => `${d >= 0 ? '+' : ''}${formatNumber(d)}`;
      const edited = run.gated && run.baseline ? run.baseline.loss : run.loss;
      let text = `loss ${formatNumber(run.unedited ? run.unedited.loss : edited)}`;
      // Counted from the run: the edits and heads in force when it ran.
      const edits = run.editsKey ? run.editsKey.split(';').length : 0;
      const heads = run.ablated?.length ?? 0;
      if (run.unedited) text += ` → ${formatNumber(edited)} (${sign(edited - run.unedited.loss)}) with ${edits} edit${edits === 1 ? '' : 's'}`;
      if (run.gated && run.baseline) text += ` → ${formatNumber(run.loss)} (${sign(run.loss - run.baseline.loss)}) with ${heads} head${heads === 1 ? '' : 's'} ${run.mode === 'mean' ? 'mean-' : ''}ablated`;
      if (!run.unedited && !run.gated) text += ' nats/token';
      parts.push(text);
    } else if (state.modelInfo && !state.modelInfo.hasLmHead) {
      parts.push('no language-model head: no loss');
    }
    if (run.warning) parts.push(`⚠ ${run.warning}`);
    this.summary.textContent = parts.join(' · ');
    this.summary.classList.toggle('warn', Boolean(run.warning));
    this.summary.dataset.loss = hasLoss ? String(run.loss) : '';
    this.summary.dataset.baselineLoss = hasLoss && run.baseline ? String(run.baseline.loss) : '';
    this.summary.dataset.uneditedLoss = hasLoss && run.unedited ? String(run.unedited.loss) : '';
  }
}
