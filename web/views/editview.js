// Weight edits and head merges: add an OV edit to a head (rank-one update
// along a singular direction, or removal of a singular component) with a
// slider for α, list the edits in force with their own sliders and undo,
// evaluate merging two heads of a layer (loss next to pruning either or
// both) and apply it. The edits live in state.edits (shared/edits.js strings), so
// they are in the link; the controller re-creates them in the core.
import { debounce, el, formatNumber } from './dom.js';
import { describeEdit, formatEdit, parseEdit } from '../shared/edits.js';
import { exportBar, fileName } from '../export/export.js';
import { selectedHead } from '../state/store.js';
import { headKey } from '../../wasm/ids.mjs';

export class EditsPanel {
  constructor(root, { store, app, modelName, onError }) {
    this.store = store;
    this.app = app;
    this.modelName = modelName;
    this.target = el('strong', { id: 'edit-target' });
    this.kind = el('select', { id: 'edit-kind', 'aria-label': 'kind of edit', on: { change: () => this.renderForm() } }, [
      el('option', { value: 'remove_component', text: 'remove component: W_OV −= α·σ_k U_k V_kᵀ' }),
      el('option', { value: 'rank_one_scaled', text: 'rank-one: W_OV −= α·σ_k u uᵀ' }),
      el('option', { value: 'rank_one', text: 'rank-one, absolute α: W_OV −= α·u uᵀ (the seed\'s formula)' }),
    ]);
    this.kindNote = el('p', { class: 'muted small', id: 'edit-kind-note' });
    this.direction = el('div', { class: 'readout small', id: 'edit-direction' });
    this.component = el('input', { type: 'number', id: 'edit-component', min: 1, value: 1, 'aria-label': 'singular direction k (1 = largest)', on: { input: () => this.renderForm() } });
    this.sideWrite = el('input', { type: 'radio', name: 'edit-side', value: 'write', checked: true, on: { change: () => this.renderForm() } });
    this.sideRead = el('input', { type: 'radio', name: 'edit-side', value: 'read', on: { change: () => this.renderForm() } });
    this.sideRow = el('span', { class: 'variant-switch' }, [el('span', { class: 'muted', text: 'u on the' }),
      el('label', { class: 'toggle', title: 'V_k: a direction the head writes (the paper\'s u_k)' }, [this.sideWrite, ' write side']),
      el('label', { class: 'toggle', title: 'U_k: a direction the head reads' }, [this.sideRead, ' read side'])]);
    this.alpha = el('input', { type: 'range', id: 'edit-alpha', min: -1, max: 2, step: 0.01, value: 1, on: { input: () => { this.alphaNumber.value = this.alpha.value; } } });
    this.alphaNumber = el('input', { type: 'number', id: 'edit-alpha-value', min: -10, max: 10, step: 0.01, value: 1, on: { input: () => { this.alpha.value = this.alphaNumber.value; } } });
    this.addButton = el('button', { type: 'button', id: 'edit-add', text: 'Add edit', on: { click: () => this.add() } });
    this.list = el('div', { id: 'edit-list', class: 'edit-list' });
    this.errors = el('div', { id: 'edit-errors', class: 'message error', hidden: true });
    this.loss = el('div', { id: 'edit-loss', class: 'loss-summary' });

    this.mergeLayer = el('strong', { id: 'merge-layer' });
    this.mergeA = el('select', { id: 'merge-a', 'aria-label': 'first head' });
    this.mergeB = el('select', { id: 'merge-b', 'aria-label': 'second head' });
    this.mergeButton = el('button', { type: 'button', id: 'merge-evaluate', class: 'secondary', text: 'Evaluate the merge', on: { click: () => this.evaluateMerge() } });
    this.mergeReport = el('div', { id: 'merge-report' });

    root.append(
      el('h2', { text: 'Weight edits' }),
      el('p', { class: 'muted small', text: 'Conventions: TransformerLens row vectors, the head maps x to x·W_OV = x·U diag(σ) Vᵀ: U_k lives on the read (input) side, V_k on the write (output) side. The seed (and papers in column vectors) write W_OVᵀ = V diag(σ) Uᵀ, so their u_k is our V_k. "Component k" is the k-th singular direction of the weights on display (processed or raw, as chosen in the head view; the edit records which). An edit is applied as an extra path in the forward pass and stays in force for every run until removed.' }),
      el('div', { class: 'edit-form' }, [
        el('span', {}, ['head ', this.target]), this.kind,
        el('label', { class: 'toggle' }, ['k ', this.component]), this.sideRow,
        el('label', { class: 'toggle' }, ['α ', this.alpha, this.alphaNumber]), this.addButton,
      ]),
      this.kindNote, this.direction,
      this.errors, this.list, this.loss,
      el('h2', { text: 'Merge two heads' }),
      el('p', { class: 'muted small', text: 'Two heads of one layer replaced by one: their summed OV at its best rank-d_head approximation, read through the pattern of either head. Compared with pruning either or both.' }),
      el('div', { class: 'edit-form' }, [el('span', {}, ['layer ', this.mergeLayer]), this.mergeA, el('span', { text: '+' }), this.mergeB, this.mergeButton]),
      this.mergeReport,
    );
    this.setAlphaLater = debounce((index, alpha) => this.setAlpha(index, alpha), 40);
    store.subscribe((state, changed) => {
      if (['head', 'modelInfo', 'weights'].some((k) => changed.has(k))) this.renderForm();
      if (['edits', 'editState', 'modelInfo'].some((k) => changed.has(k))) this.renderList(state);
      if (['run', 'edits'].some((k) => changed.has(k))) this.renderLoss(state);
    });
    this.renderForm();
    this.renderList(store.state);
  }

  renderForm() {
    const state = this.store.state;
    const info = state.modelInfo;
    const { layer, head } = selectedHead(state);
    this.target.textContent = info ? headKey(layer, head) : '–';
    const removing = this.kind.value === 'remove_component';
    this.sideRow.hidden = removing;
    const k = Math.max(1, Math.min(info?.dHead ?? 1, Math.round(Number(this.component.value) || 1)));
    const u = this.sideRead.checked ? `U${k}` : `V${k}`;
    this.kindNote.textContent = {
      remove_component: `With α = 1 the head no longer maps U${k} (what it reads) to V${k} (what it writes): component ${k} of W_OV is gone and the others stay; 0 < α < 1 shrinks it, α < 0 strengthens it.`,
      rank_one_scaled: `Subtracts α·σ${k}·${u}${u}ᵀ: a new path that reads ${u} and writes −α·σ${k}·${u}. It removes the head's output along ${u} only where the head also reads ${u}; to remove component ${k}, use "remove component".`,
      rank_one: `The seed's formula W_OV −= α·${u}${u}ᵀ (in its column vectors: u_k u_kᵀ with u_k = our V_k), with α in absolute units: σ${k} sets the head's own scale, so α = 1 can be far larger or smaller than the component. Kept for links made with it.`,
    }[this.kind.value];
    this.renderDirection(state, k);
    if (info) this.component.max = info.dHead;
    this.addButton.disabled = !info;
    this.mergeLayer.textContent = info ? `L${layer}` : '–';
    if (info && (this.mergeA.options.length !== info.nHead || this.mergeLayerShown !== layer)) {
      this.mergeLayerShown = layer;
      for (const select of [this.mergeA, this.mergeB]) select.replaceChildren(...Array.from({ length: info.nHead }, (_, h) => el('option', { value: h, text: `H${h}` })));
    }
    if (info) {
      this.mergeA.value = String(head);
      this.mergeB.value = String((head + 1) % info.nHead);
    }
    this.mergeButton.disabled = !info || info.nHead < 2;
  }

  add() {
    const state = this.store.state;
    const info = state.modelInfo;
    if (!info) return;
    const { layer, head } = selectedHead(state);
    const k = Math.max(1, Math.min(info.dHead, Math.round(Number(this.component.value) || 1)));
    const alpha = Number(this.alphaNumber.value);
    if (!Number.isFinite(alpha)) return;
    const edit = { type: 'ov', kind: this.kind.value, layer, head, component: k - 1, alpha, side: this.sideRead.checked ? 'read' : 'write', variant: state.weights };
    this.store.set({ edits: [...state.edits, formatEdit(edit)] });
  }

  // The direction the form would edit, read as tokens (the OV read-out of the
  // weights on display): what the head reads along U_k and writes along V_k.
  async renderDirection(state, k) {
    const info = state.modelInfo;
    if (!info?.hasLmHead) {
      this.direction.replaceChildren();
      return;
    }
    const { layer, head } = selectedHead(state);
    const key = JSON.stringify([info.generation, state.weights, layer, head, k]);
    if (this.directionKey === key) return;
    this.directionKey = key;
    try {
      const r = await this.app.geometry('readout', { variant: state.weights, layer, head, directions: Math.min(k, info.dHead), topN: 5 });
      if (this.directionKey !== key) return;
      const d = r.directions[k - 1];
      const words = (list) => list.map((t) => JSON.stringify(t.text ?? `#${t.token}`)).join(' ');
      this.direction.replaceChildren(el('span', { text: `component ${k} of ${headKey(layer, head)} (${state.weights} weights, σ${k} = ${formatNumber(d.sigma, 4)}): reads U${k} ≈ ${words(d.readTop)}; writes V${k} ≈ ${words(d.writeTop)}` }));
    } catch (error) {
      if (this.directionKey === key) this.direction.replaceChildren(el('span', { class: 'error', text: error.message }));
    }
  }

  setAlpha(index, alpha) {
    const edits = [...this.store.state.edits];
    const e = parseEdit(edits[index]);
    if (!e || e.type !== 'ov') return;
    edits[index] = formatEdit({ ...e, alpha });
    this.store.set({ edits });
  }

  renderList(state) {
    const applied = state.editState?.edits || [];
    const errors = state.editState?.errors || [];
    this.errors.hidden = !errors.length;
    this.errors.textContent = errors.join(' · ');
    if (!state.edits.length) {
      this.list.replaceChildren(el('p', { class: 'muted', text: 'No edits in force.' }));
      return;
    }
    // Keep the sliders being dragged: rebuild only when the list's shape changes.
    const shape = state.edits.map((t) => t.replace(/:a-?[\d.]+/, '')).join(';');
    if (shape === this.listShape && this.list.childElementCount === state.edits.length) {
      state.edits.forEach((text, i) => this.updateRow(this.list.children[i], text, applied));
      return;
    }
    this.listShape = shape;
    this.list.replaceChildren(...state.edits.map((text, i) => {
      const e = parseEdit(text);
      const row = el('div', { class: 'edit-row', dataset: { edit: text, index: i } });
      const label = el('span', { class: 'edit-text' });
      const remove = el('button', { type: 'button', class: 'remove', text: '×', 'aria-label': 'remove this edit', on: { click: () => this.store.set({ edits: this.store.state.edits.filter((_, j) => j !== i) }) } });
      const children = [label];
      if (e?.type === 'ov') {
        const slider = el('input', { type: 'range', min: -1, max: 2, step: 0.01, value: e.alpha, class: 'edit-alpha', 'aria-label': 'α of this edit', on: { input: () => this.setAlphaLater(i, Number(slider.value)) } });
        children.push(slider);
      }
      children.push(el('span', { class: 'muted edit-info' }), remove);
      row.append(...children);
      this.updateRow(row, text, applied);
      return row;
    }));
  }

  updateRow(row, text, applied) {
    const e = parseEdit(text);
    row.dataset.edit = text;
    row.querySelector('.edit-text').textContent = e ? describeEdit(e) : text;
    const match = applied.find((a) => e && (e.type === 'merge' ? a.type === 'merge' && a.layer === e.layer && a.headA === e.headA && a.headB === e.headB : a.type === 'ov' && a.layer === e.layer && a.head === e.head && a.component === e.component && a.kind === e.kind && a.variant === e.variant));
    const info = row.querySelector('.edit-info');
    if (match?.type === 'ov') info.textContent = `σ${match.component + 1} = ${formatNumber(match.sigma, 4)}`;
    else if (match?.type === 'merge') info.textContent = `truncation error ${formatNumber(match.truncationError, 4)}`;
    else info.textContent = '';
  }

  renderLoss(state) {
    const run = state.run;
    this.loss.replaceChildren();
    if (!run || run.empty || !state.edits.length || !state.modelInfo?.hasLmHead) return;
    const edited = run.gated && run.baseline ? run.baseline.loss : run.loss;
    if (!run.unedited) return;
    const d = edited - run.unedited.loss;
    this.loss.append(
      el('span', { text: `loss without edits ${formatNumber(run.unedited.loss)} → with ${state.edits.length} edit${state.edits.length > 1 ? 's' : ''} ` }),
      el('strong', { id: 'edited-loss', text: formatNumber(edited), dataset: { value: String(edited), unedited: String(run.unedited.loss) } }),
      el('span', { class: d >= 0 ? 'up' : 'down', text: ` (${d >= 0 ? '+' : ''}${formatNumber(d)})` }),
      el('span', { class: 'muted', text: run.gated ? ' (before the ablation)' : '' }),
    );
  }

  async evaluateMerge() {
    const state = this.store.state;
    const run = state.run;
    if (!run || run.empty) return;
    const { layer } = selectedHead(state);
    const headA = Number(this.mergeA.value);
    const headB = Number(this.mergeB.value);
    if (headA === headB) {
      this.mergeReport.replaceChildren(el('p', { class: 'message error', text: 'pick two different heads' }));
      return;
    }
    this.mergeReport.replaceChildren(el('p', { class: 'muted', text: 'evaluating…' }));
    try {
      const r = await this.app.compute('evaluateMerge', { ids: run.ids, layer, headA, headB });
      this.report = { ...r, layer, headA, headB };
      const rows = [
        ['intact model', r.lossBase], [`prune H${headA}`, r.lossPruneA], [`prune H${headB}`, r.lossPruneB], ['prune both', r.lossPruneBoth],
        [`merged, pattern of H${headA}`, r.lossMergedPatternA], [`merged, pattern of H${headB}`, r.lossMergedPatternB],
      ];
      const table = el('table', { class: 'data-table', id: 'merge-report-table' }, [
        el('thead', {}, [el('tr', {}, [el('th', { text: `L${layer}: H${headA} + H${headB}` }), el('th', { text: 'loss' }), el('th', { text: 'change' })])]),
        el('tbody', {}, rows.map(([name, loss]) => el('tr', { dataset: { value: String(loss) } }, [el('td', { text: name }), el('td', { text: formatNumber(loss) }), el('td', { text: `${loss - r.lossBase >= 0 ? '+' : ''}${formatNumber(loss - r.lossBase)}` })]))),
      ]);
      const apply = el('button', {
        type: 'button', id: 'merge-apply', text: `Apply the merge (pattern of H${r.bestPatternHead})`,
        on: { click: () => this.store.set({ edits: [...this.store.state.edits, formatEdit({ type: 'merge', layer, headA, headB, patternHead: r.bestPatternHead })] }) },
      });
      this.mergeReport.replaceChildren(
        table,
        el('p', { class: 'muted small', text: `relative error of the rank-${state.modelInfo.dHead} approximation of the summed OV: ${formatNumber(r.truncationError, 4)}` }),
        el('div', { class: 'figure-head' }, [apply, exportBar(() => this.mergeFigure(), { onError: () => {}, label: 'Report', kinds: ['json', 'csv'] })]),
      );
    } catch (error) {
      this.mergeReport.replaceChildren(el('p', { class: 'message error', text: error.message }));
    }
  }

  mergeFigure() {
    const r = this.report;
    if (!r) return null;
    return {
      name: fileName('headscope', this.modelName(), `merge-L${r.layer}H${r.headA}-H${r.headB}`),
      json: () => r,
      csv: () => [Object.keys(r).filter((k) => typeof r[k] === 'number'), Object.keys(r).filter((k) => typeof r[k] === 'number').map((k) => r[k])],
    };
  }
}
