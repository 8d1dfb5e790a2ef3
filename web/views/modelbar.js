// The model bar: which model is loaded and how to load another — the
// built-in model, the curated hub list with download sizes, any repo id or
// URL, local files (picker, folder picker, or drag-and-drop anywhere on the
// page) — with the progress of downloads and computations, the one Cancel
// button, and the loaded model's description, warnings and errors.
import { el } from './dom.js';
import { CURATED, formatBytes, formatDuration, modelLabel } from '../state/models.js';
import { BUILTIN, modelFromText } from '../shared/sources.js';
import { isRepoId } from '../../wasm/ids.mjs';

const OTHER = '__other__';

export class ModelBar {
  constructor(root, { store, app }) {
    this.store = store;
    this.app = app;
    this.select = el('select', { id: 'model-select', 'aria-label': 'model', on: { change: () => this.onSelect() } });
    this.select.append(el('option', { value: 'builtin', text: `${BUILTIN.title} · instant` }));
    const group = el('optgroup', { label: 'Hugging Face hub (download size, approx.)' });
    for (const m of CURATED) group.append(el('option', { value: m.repo, text: `${m.repo} · ≈${formatBytes(m.bytes)}`, title: m.note }));
    this.select.append(group, el('option', { value: OTHER, text: 'another repo or URL (type it on the right)', disabled: true }));

    this.input = el('input', {
      id: 'model-input', type: 'text', placeholder: 'owner/name or https://…/model/', spellcheck: 'false', autocomplete: 'off',
      'aria-label': 'Hugging Face repo id or model URL', on: { keydown: (e) => e.key === 'Enter' && this.submit() },
    });
    this.rev = el('input', { id: 'model-rev', type: 'text', value: 'main', spellcheck: 'false', 'aria-label': 'revision (branch, tag, commit or refs/pr/N)', title: 'revision: branch, tag, commit or refs/pr/N', on: { keydown: (e) => e.key === 'Enter' && this.submit() } });
    this.loadButton = el('button', { type: 'button', id: 'model-load', text: 'Load', on: { click: () => this.submit() } });
    // Attention weights only: weight geometry of a large model for a fraction
    // of the download (no embeddings or MLPs, so no text runs).
    this.partsBox = el('input', { type: 'checkbox', id: 'model-attention-only', on: { change: () => this.store.set({ parts: this.partsBox.checked ? 'attention' : 'all' }) } });
    const partsLabel = el('label', { class: 'toggle', title: 'download and load only the attention weights and norms: every head\'s weight geometry for a fraction of the download; text cannot be run' }, [this.partsBox, ' attention weights only']);

    // Gated repositories (Llama, Gemma) need the viewer's access token: held
    // in memory by the app, never in the link or in storage.
    this.token = el('input', {
      id: 'hub-token', type: 'password', placeholder: 'hf_… token', spellcheck: 'false', autocomplete: 'off',
      'aria-label': 'Hugging Face access token, for gated or private repositories',
      title: 'a Hugging Face access token, for gated or private repositories (Llama, Gemma): kept in this tab\'s memory only, never in links or storage, and sent only to huggingface.co',
      on: { change: () => this.app.setHubToken(this.token.value), keydown: (e) => e.key === 'Enter' && this.app.setHubToken(this.token.value) },
    });
    this.filePicker = el('input', { type: 'file', id: 'model-files', multiple: true, hidden: true, on: { change: () => this.onFiles(pickedFiles(this.filePicker.files)) } });
    this.folderPicker = el('input', { type: 'file', id: 'model-folder', webkitdirectory: true, hidden: true, on: { change: () => this.onFiles(pickedFiles(this.folderPicker.files)) } });
    const filesButton = el('button', { type: 'button', class: 'secondary', text: 'Open files…', title: 'config.json, model.safetensors (or shards + index), tokenizer.json', on: { click: () => this.filePicker.click() } });
    const folderButton = el('button', { type: 'button', class: 'secondary', text: 'Folder…', title: 'a folder holding config.json, model.safetensors and tokenizer.json', on: { click: () => this.folderPicker.click() } });

    this.progressBar = el('progress', { id: 'load-progress', max: 1, value: 0 });
    this.progressText = el('span', { id: 'load-progress-text', class: 'progress-text' });
    this.cancelButton = el('button', { type: 'button', id: 'load-cancel', class: 'secondary', text: 'Cancel', on: { click: () => this.app.cancel() } });
    this.progressRow = el('div', { class: 'progress-row', id: 'load-progress-row', hidden: true, role: 'status', 'aria-live': 'polite' }, [this.progressBar, this.progressText, this.cancelButton]);

    // A link's model on a host other than this page's or the hub's: shown,
    // and nothing is fetched from it until the viewer says yes.
    this.confirmText = el('span');
    this.confirmYes = el('button', { type: 'button', id: 'host-confirm', on: { click: () => this.app.confirmHost(true) } });
    this.confirmRow = el('div', { id: 'host-question', class: 'message notice', role: 'alert', hidden: true }, [
      this.confirmText, this.confirmYes,
      el('button', { type: 'button', id: 'host-refuse', class: 'secondary', text: 'Cancel', on: { click: () => this.app.confirmHost(false) } }),
    ]);
    this.info = el('div', { id: 'model-info', class: 'model-info' });
    this.error = el('div', { id: 'model-error', class: 'message error', role: 'alert', hidden: true });
    // A hub repository without safetensors on main often has them on the
    // conversion bot's pull request: offer to try it.
    this.prButton = el('button', { type: 'button', id: 'try-pr', class: 'secondary', text: 'Try revision refs/pr/1', hidden: true, on: { click: () => this.store.set({ model: this.failedRepo, rev: 'refs/pr/1' }) } });
    this.cacheText = el('span', { id: 'cache-info', class: 'muted' });
    this.cacheButton = el('button', { type: 'button', id: 'cache-clear', class: 'link', text: 'clear', on: { click: () => this.clearCache() } });
    this.cacheRow = el('div', { class: 'cache-row', hidden: true }, [this.cacheText, this.cacheButton]);
    this.customRow = el('span', { class: 'custom-model' }, [el('span', { class: 'muted', text: 'or' }), this.input, this.rev, this.loadButton, this.token]);

    root.append(
      el('div', { class: 'model-controls' }, [
        el('label', { for: 'model-select', class: 'bar-label', text: 'Model' }),
        this.select, this.customRow,
        el('span', { class: 'files' }, [el('span', { class: 'muted', text: 'or your own files:' }), filesButton, folderButton, this.filePicker, this.folderPicker]),
        partsLabel,
      ]),
      this.progressRow, this.confirmRow, this.error, this.prButton, this.info, this.cacheRow,
    );
    this.installDrop();
    store.subscribe((state, changed) => this.render(state, changed));
    this.render(store.state, new Set(['model', 'modelStatus', 'parts']));
  }

  onSelect() {
    const value = this.select.value;
    if (value !== OTHER) this.store.set({ model: value, rev: 'main' });
  }

  submit() {
    const text = this.input.value.trim();
    const rev = this.rev.value.trim() || 'main';
    const model = modelFromText(text, location.origin);
    if (model) {
      this.app.trustTypedUrl(model);
      // A revision is a hub repository's; a URL's folder has none.
      this.store.set({ model, rev: isRepoId(model) ? rev : 'main' });
    } else {
      this.store.set({ modelError: text ? `"${text.slice(0, 100)}" is neither a Hugging Face repo id (owner/name) nor an https: URL of a model folder` : 'type a repo id such as EleutherAI/pythia-70m, or a model folder URL' });
    }
  }

  // entries: [{path, file}] (the path within a picked or dropped folder).
  onFiles(entries) {
    if (!entries.length) return;
    let files;
    try {
      files = oneModelsFiles(entries);
    } catch (error) {
      this.store.set({ modelError: error.message });
      return;
    }
    this.app.loadFiles(files);
  }

  installDrop() {
    const overlay = el('div', { class: 'drop-overlay', hidden: true }, [el('p', { text: 'Drop model files or a model folder' })]);
    document.body.append(overlay);
    let depth = 0;
    const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
    window.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      depth++;
      overlay.hidden = false;
    });
    window.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) overlay.hidden = true;
    });
    window.addEventListener('dragover', (e) => {
      if (hasFiles(e)) e.preventDefault();
    });
    window.addEventListener('drop', async (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      overlay.hidden = true;
      try {
        this.onFiles(await droppedFiles(e.dataTransfer));
      } catch (error) {
        this.store.set({ modelError: `could not read the dropped files: ${error.message}` });
      }
    });
  }

  render(state, changed) {
    if (changed.has('model') || changed.has('rev')) {
      const known = state.model === 'builtin' || CURATED.some((m) => m.repo === state.model);
      if (known && state.rev === 'main') {
        this.select.value = state.model;
        this.input.value = '';
        this.rev.value = 'main';
      } else {
        this.select.value = OTHER;
        if (state.model !== 'local') {
          this.input.value = state.model;
          this.rev.value = state.rev;
        }
      }
    }
    if (changed.has('parts')) this.partsBox.checked = state.parts === 'attention';
    if (changed.has('pendingHost')) {
      const pending = state.pendingHost;
      this.confirmRow.hidden = !pending;
      if (pending) {
        this.confirmText.textContent = `This link loads a model from ${pending.host}, which is neither this page's server nor the Hugging Face hub. Your browser will request files from it (and it will see your IP address). `;
        this.confirmYes.textContent = `Load from ${pending.host}`;
      }
    }
    if (changed.has('progress') || changed.has('modelStatus') || changed.has('computeProgress') || changed.has('runStatus')) {
      const p = state.progress;
      const loading = state.modelStatus === 'loading';
      const computing = !loading && (state.computeProgress || state.runStatus === 'running');
      // One row for all long work, with the one Cancel (control/app.js cancel).
      this.progressRow.hidden = !loading && !computing;
      document.body.dataset.model = state.modelStatus;
      if (computing && state.computeProgress) {
        const { what, fraction, eta } = state.computeProgress;
        this.progressBar.max = 1;
        this.progressBar.value = fraction;
        this.progressText.textContent = `computing ${what}… ${Math.round(fraction * 100)}%${Number.isFinite(eta) ? `, ${formatDuration(eta)} left` : ''}`;
      } else if (computing) {
        this.progressBar.removeAttribute('value');
        this.progressText.textContent = 'running the model on the text…';
      }
      if (loading && p) {
        if (p.total) {
          this.progressBar.max = p.total;
          this.progressBar.value = p.loaded;
        } else {
          this.progressBar.removeAttribute('value');
        }
        const parts = [];
        if (p.file) parts.push(p.filesTotal > 1 ? `${p.file} (file ${p.filesDone + 1} of ${p.filesTotal})` : p.file);
        if (p.total) parts.push(`${formatBytes(p.loaded)} of ${formatBytes(p.total)}`);
        if (p.speed > 0) parts.push(`${formatBytes(p.speed)}/s`);
        if (Number.isFinite(p.eta) && p.loaded < p.total) parts.push(`${formatDuration(p.eta)} left`);
        this.progressText.textContent = parts.length ? parts.join(' · ') : `connecting to ${modelLabel(state.model, state.rev)}…`;
      }
    }
    if (changed.has('modelError') || changed.has('modelStatus')) {
      this.error.hidden = !state.modelError;
      this.error.textContent = state.modelError || '';
      this.error.classList.toggle('notice', state.modelStatus === 'unavailable');
      // A hub model without safetensors on main may have them in its first pull request.
      const failure = state.modelError ? state.modelFailure : null;
      this.failedRepo = failure?.code === 'missing_weights' && failure.rev === 'main' && isRepoId(failure.model) ? failure.model : null;
      this.prButton.hidden = !this.failedRepo;
    }
    if (changed.has('modelStatus') && state.modelStatus !== 'loading') this.refreshCache();
    if (changed.has('modelInfo') || changed.has('modelStatus')) this.renderInfo(state);
  }

  async refreshCache() {
    try {
      const summary = await this.app.client.call('cacheInfo');
      this.cacheRow.hidden = !summary.available || !summary.entries;
      this.cacheText.textContent = `${formatBytes(summary.bytes)} of downloads cached in this browser ·`;
    } catch {
      this.cacheRow.hidden = true;
    }
  }

  async clearCache() {
    try {
      await this.app.client.call('clearCache');
      this.store.set({ notice: 'download cache cleared' });
    } catch (error) {
      this.store.set({ notice: `could not clear the cache: ${error.message}` });
    }
    this.refreshCache();
  }

  renderInfo(state) {
    const info = state.modelInfo;
    this.info.replaceChildren();
    if (!info) {
      if (state.modelStatus === 'unavailable') this.info.append(el('span', { class: 'muted', text: 'No model loaded yet.' }));
      return;
    }
    const facts = [
      ['model', info.label],
      ['family', info.family],
      ['layers', info.nLayer],
      ['heads', info.nKvHead !== info.nHead ? `${info.nHead} (${info.nKvHead} KV)` : info.nHead],
      ['d_model', info.dModel],
      ['d_head', info.dHead],
      ['vocab', info.dVocab],
      ['context', info.nCtx],
      ['weights in memory', formatBytes(info.weightBytes)],
      // Threads need a cross-origin isolated page (web/serve.sh sends the headers).
      ['threads', info.threads > 1 ? info.threads : '1 (the page is not cross-origin isolated)'],
    ];
    for (const [name, value] of facts) {
      this.info.append(el('span', { class: 'fact' }, [el('span', { class: 'fact-name', text: name }), el('span', { class: 'fact-value', text: value })]));
    }
    if (state.model === 'builtin') {
      // The built-in model's card: how it was trained, every head's role, the training curve.
      this.info.append(el('a', { id: 'builtin-card', href: `${BUILTIN.path}README.md`, target: '_blank', rel: 'noopener', text: 'model card' }));
      this.info.append(el('a', { href: `${BUILTIN.path}curve.svg`, target: '_blank', rel: 'noopener', text: 'training curve' }));
    }
    if (info.attentionOnly) this.info.append(el('span', { class: 'badge', id: 'attention-only-badge', text: 'attention weights only: geometry, no text' }));
    if (!info.causal) this.info.append(el('span', { class: 'badge', text: 'bidirectional' }));
    if (!info.hasLmHead && !info.attentionOnly) this.info.append(el('span', { class: 'badge', text: 'no LM head: no loss' }));
    if (!info.hasTokenizer) this.info.append(el('span', { class: 'badge warn', text: 'no tokenizer: type token ids' }));
    for (const warning of info.warnings || []) this.info.append(el('span', { class: 'badge warn', text: warning }));
  }
}

// Files of a drop, descending into folders (webkitGetAsEntry).
// Picked files as [{path, file}]: a folder picker gives each file's path in it.
function pickedFiles(fileList) {
  return [...fileList].map((file) => ({ path: file.webkitRelativePath || file.name, file }));
}

// The files of one model: those beside its config.json. A folder that holds
// several models (config.json in more than one folder) is refused, naming
// them, rather than mixing their files.
export function oneModelsFiles(entries) {
  const folder = (path) => path.slice(0, path.lastIndexOf('/') + 1);
  const configs = [...new Set(entries.filter((e) => e.path.split('/').pop() === 'config.json').map((e) => folder(e.path)))];
  if (configs.length > 1) {
    const names = configs.slice(0, 4).map((f) => f.replace(/^\//, '') || './').join(', ');
    throw new Error(`these files hold ${configs.length} models (config.json in ${names}${configs.length > 4 ? ', …' : ''}): open one model's folder`);
  }
  const chosen = configs.length ? entries.filter((e) => folder(e.path) === configs[0]) : entries;
  return chosen.map((e) => e.file);
}

async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return pickedFiles(dataTransfer.files);
  const files = [];
  const walk = async (entry, depth) => {
    if (entry.isFile) files.push({ path: entry.fullPath, file: await new Promise((resolve, reject) => entry.file(resolve, reject)) });
    else if (entry.isDirectory && depth < 3) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, depth + 1);
      }
    }
  };
  for (const entry of entries) await walk(entry, 0);
  return files;
}
