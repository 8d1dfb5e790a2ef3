// Model-wide views: weight variant switch (raw vs TransformerLens-processed
// weights, part of the state), and the slots for the redundancy matrix,
// composition scores and the importance / pruning curve, which fill in as
// the core's geometry and behaviour APIs land.
import { el } from './dom.js';

export class ModelView {
  constructor(root, { store }) {
    this.store = store;
    this.variant = {};
    const radios = ['processed', 'raw'].map((value) => {
      const input = el('input', { type: 'radio', name: 'weights', value, id: `weights-${value}`, on: { change: () => store.set({ weights: value }) } });
      this.variant[value] = input;
      return el('label', { class: 'toggle', for: `weights-${value}` }, [input, value === 'processed' ? ' processed (fold_ln, centred)' : ' raw (as in the checkpoint)']);
    });
    root.append(
      el('div', { class: 'row' }, [el('span', { class: 'bar-label', text: 'Weights' }), ...radios]),
      el('p', { class: 'muted', text: 'Processing does not change attention patterns or the loss; it changes every weight-based number (spectra, ranks, overlaps), so the choice is shown with each of them.' }),
      slot('Redundancy', 'Subspace overlap of every pair of heads (read and write subspaces), as a matrix.'),
      slot('Composition', 'Q-, K- and V-composition scores between layers, as a matrix and a layered graph, with the random baseline marked.'),
      slot('Importance', 'Head importance (leave-one-out and gradient) and the pruning curve next to random order.'),
    );
    store.subscribe((state, changed) => changed.has('weights') && this.render(state));
    this.render(store.state);
  }

  render(state) {
    for (const [value, input] of Object.entries(this.variant)) input.checked = state.weights === value;
  }
}

function slot(title, text) {
  return el('section', { class: 'slot' }, [el('h3', { text: title }), el('p', { class: 'muted', text: `${text} Waiting for the core's API.` })]);
}
