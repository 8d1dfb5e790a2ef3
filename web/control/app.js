// The controller shared by the explorer (main.js) and embed.html: it turns
// the store's URL fields into worker requests and the answers into runtime
// fields. Loading: a change of model/rev/hub/parts starts a load; a failed or
// cancelled load puts model/rev back to the model that is still loaded.
// Analysis: text, BOS, ablation and edit changes schedule a run; a run's result is
// applied only if no newer request was made meanwhile (stale results are
// dropped), and at most one run is in the worker at a time, so typing never
// queues work.
import { HeadscopeClient, WorkerError } from '../worker/client.js';
import { EXAMPLES } from '../state/models.js';
import { ablatedHeads } from '../state/store.js';
import { trustedOrigin } from '../shared/sources.js';
import { MAX_TOKENS } from '../worker/protocol.js';
import { parseHeadKey } from '../../wasm/ids.mjs';

export function modelSpecOf(state) {
  if (state.model === 'builtin') return { kind: 'builtin' };
  if (state.model === 'local') return { kind: 'files' };
  if (/^[a-z]+:/i.test(state.model)) return { kind: 'url', url: state.model };
  return { kind: 'hub', repo: state.model, revision: state.rev || 'main' };
}

function specKey(state) {
  return JSON.stringify([state.model, state.model === 'builtin' || state.model === 'local' ? '' : state.rev, state.hub || '', state.parts]);
}

export function textOf(state) {
  return state.text ?? EXAMPLES[0].text;
}

export class App {
  constructor(store, { workerUrl, maxTokens = MAX_TOKENS }) {
    this.store = store;
    this.workerUrl = workerUrl;
    this.client = new HeadscopeClient(workerUrl);
    this.restarts = 0;
    this.maxTokens = maxTokens;
    this.loadedKey = null;    // specKey of the model in the worker
    this.loadedState = null;  // {model, rev, hub, parts} of that model
    this.loadingKey = null;
    this.loadSeq = 0;
    this.runSeq = 0;
    this.inFlight = false;
    this.again = false;
    this.timer = null;
    this.baseline = null;     // {key, generation, patterns} of the last unablated run
    this.localFiles = null;
    this.confirmedOrigins = new Set();  // hosts the viewer agreed to load from (shared/sources.js)
    // The viewer's Hugging Face access token (gated repositories): in this
    // tab's memory only, never in the link or in storage, and sent by the
    // worker to the hub itself only (worker.js makeSource).
    this.hubToken = '';
    this.editsKey = '';
    this.behaviorSeq = 0;
    this.answers = null;      // {generation, entries}: see request()
    store.subscribe((state, changed) => this.onChange(state, changed));
  }

  // The wasm module aborted (out of memory, a trap): start a new worker and
  // load the model again, telling the user why.
  async recover(error) {
    this.restarts++;
    const message = `the engine stopped (${error.message}); it was restarted${error.code === 'out_of_memory' ? ' — this model or text may need more memory than this browser allows' : ''}`;
    this.replaceWorker();
    this.store.set({ modelStatus: 'idle', modelInfo: null, run: null, runStatus: 'idle', modelError: message });
    if (await this.start()) this.store.set({ modelError: message });
  }

  // Cancel: the one way to stop long work. A load waits on the network or
  // the disk, so the worker reads the cancel message and aborts it, keeping
  // the model it had. A computation runs in the worker without yielding (the
  // core's loops), so the worker is replaced by a new one that loads the
  // model on screen again; the computation's callers get code 'cancelled'.
  async cancel() {
    if (this.loadingKey !== null) {
      this.cancelLoad();
      return;
    }
    if (!this.store.state.computeProgress && this.store.state.runStatus !== 'running') return;
    this.replaceWorker(new WorkerError({ name: 'HeadscopeError', message: 'cancelled', code: 'cancelled' }));
    this.store.set({ modelStatus: 'idle', computeProgress: null, notice: 'cancelled: the model is loaded again' });
    await this.start();
  }

  // A new worker in place of the current one (whose calls fail with
  // `error`); the model is loaded again by start().
  replaceWorker(error) {
    this.client.terminate(error);
    // The new worker loads whatever the page shows: no prefetch of the built-in model.
    const url = new URL(this.workerUrl);
    url.searchParams.delete('prefetch');
    this.client = new HeadscopeClient(url);
    this.loadedKey = null;
    this.loadedState = null;
    this.loadingKey = null;
    this.answers = null;
    this.baseline = null;
    this.inFlight = false;
  }

  // Loads the state's model once the core has started; false if it could not start.
  async start() {
    try {
      await this.client.ready;
    } catch (error) {
      this.store.set({ modelStatus: 'error', modelError: `the wasm core could not start: ${error.message}` });
      return false;
    }
    this.loadFromState();
    return true;
  }

  onChange(state, changed) {
    if (changed.has('model') || changed.has('rev') || changed.has('hub') || changed.has('parts')) {
      const key = specKey(state);
      // Every selection replaces the load in progress: back to the model
      // that is loaded, that load is cancelled.
      if (key === this.loadedKey && this.loadingKey !== null) this.abandonLoad();
      else if (key !== this.loadedKey && key !== this.loadingKey) this.loadFromState();
    }
    // A model just loaded: its edits, then its first run, go to the worker
    // now, while the views (which subscribed after the app) draw the model.
    if (changed.has('modelInfo') && state.modelStatus === 'ready' && state.modelInfo) {
      if (state.edits.length) this.syncEdits();
      else this.editsKey = '';
      this.scheduleAnalyze(null);
      return;
    }
    if (changed.has('edits') && state.modelStatus === 'ready') this.syncEdits();
    // Typing: a model that answers within 100 ms runs on every keystroke,
    // sent before the views redraw the text (runs in flight coalesce, see
    // analyze: one more run at most follows the one in flight); slower ones
    // wait for a 150 ms pause. (100 ms, not less: on a busy machine the
    // built-in model's round trip passes 30 ms.)
    if (changed.has('text')) this.scheduleAnalyze(this.lastRunMs < 100 ? null : 150);
    else if (['bos', 'ablate', 'mode', 'edits'].some((k) => changed.has(k))) this.scheduleAnalyze(changed.has('edits') ? 60 : 0);
    else if (changed.has('detect')) this.updateBehavior();
  }

  // Sends the state's edits to the worker (before the next run: the worker
  // handles messages in order). Edits that do not fit the model are reported.
  syncEdits() {
    const edits = this.store.state.edits;
    this.editsKey = edits.join(';');
    this.client.call('setEdits', { edits }).then(
      (r) => this.store.set({ editState: { applied: r.applied, errors: r.errors, edits: r.edits } }),
      (error) => this.store.set({ editState: { applied: [], errors: [error.message], edits: [] } }),
    );
  }

  loadFromState() {
    const state = this.store.state;
    if (state.model === 'local' && !this.localFiles) {
      this.store.set({ modelStatus: this.loadedKey ? 'ready' : 'error', modelError: 'this link refers to local files, which a link cannot carry: drop the model files on the page or pick them again' });
      return;
    }
    const spec = modelSpecOf(state);
    if (spec.kind === 'url') {
      // A host other than the page's or the hub's: nothing is requested from
      // it until the viewer confirms (confirmHost).
      const { origin, host } = new URL(spec.url);
      if (!trustedOrigin(origin, location.origin) && !this.confirmedOrigins.has(origin)) {
        this.store.set({ pendingHost: { origin, host, model: state.model }, modelStatus: this.loadedKey ? 'ready' : 'confirm', modelError: null });
        return;
      }
    }
    const args = { spec, attentionOnly: state.parts === 'attention', confirmedOrigins: [...this.confirmedOrigins] };
    if (spec.kind === 'files') args.files = this.localFiles;
    if (spec.kind === 'hub' && state.hub) args.endpoint = state.hub;
    if (spec.kind === 'hub' && this.hubToken) args.token = this.hubToken;
    this.load(args, specKey(state), { model: state.model, rev: state.rev, hub: state.hub, parts: state.parts });
  }

  // The viewer's answer about the host a link wants to load from: yes loads
  // the model; no goes back to the model on screen (the built-in one when
  // there is none).
  confirmHost(yes) {
    const pending = this.store.state.pendingHost;
    if (!pending) return;
    if (yes) {
      this.confirmedOrigins.add(pending.origin);
      this.store.set({ pendingHost: null });
      this.loadFromState();
    } else {
      this.store.set({ pendingHost: null, ...(this.loadedState ?? { model: 'builtin', rev: 'main' }), modelStatus: this.loadedKey ? 'ready' : 'idle' });
    }
  }

  // A new token retries a hub load that failed (a gated repository refuses
  // access without one).
  setHubToken(token) {
    this.hubToken = String(token || '').trim();
    const state = this.store.state;
    if (state.modelStatus === 'error' && modelSpecOf(state).kind === 'hub') this.loadFromState();
  }

  // A host the viewer typed themselves needs no second question.
  trustTypedUrl(model) {
    const spec = modelSpecOf({ model });
    if (spec.kind === 'url') this.confirmedOrigins.add(new URL(spec.url).origin);
  }

  loadFiles(files) {
    this.localFiles = [...files];
    // Already on 'local' (new files): the key does not change, load directly.
    if (this.store.state.model === 'local') this.loadFromState();
    else this.store.set({ model: 'local', rev: 'main' });
  }

  async load(args, key, target) {
    const seq = ++this.loadSeq;
    this.loadingKey = key;
    const started = performance.now();
    const meter = { doneBytes: 0, files: new Map(), samples: [] };
    this.store.set({ modelStatus: 'loading', modelError: null, modelFailure: null, pendingHost: null, progress: { file: null, loaded: 0, total: 0 }, notice: null });
    let loaded;
    try {
      loaded = await this.client.call('loadModel', args, {
        onProgress: (p) => {
          if (seq !== this.loadSeq) return;
          this.store.set({ progress: measure(meter, p, started) });
        },
      });
    } catch (error) {
      if (seq !== this.loadSeq) return;
      this.loadingKey = null;
      if (error.fatal && this.restarts < 3) {
        this.recover(error);
        return;
      }
      const message = error.message || String(error);
      const unavailable = args.spec.kind === 'builtin' && error.code === 'missing_file';
      const patch = {
        modelStatus: this.loadedKey ? 'ready' : unavailable ? 'unavailable' : 'error', modelError: message, progress: null,
        modelFailure: { code: error.code, model: target.model, rev: target.rev },
      };
      // The URL must describe the model on screen: go back to it.
      if (this.loadedState) Object.assign(patch, this.loadedState);
      this.store.set(patch);
      if (this.loadedKey) this.resumeLoaded();
      return;
    }
    {
      const { info, cache } = loaded;
      if (seq !== this.loadSeq) {
        // A load the page gave up finished in the worker anyway: the worker
        // now holds that model. Unless a newer load is on its way, load the
        // chosen one again.
        this.loadedKey = key;
        this.loadedState = target;
        if (this.loadingKey === null && specKey(this.store.state) !== key) this.loadFromState();
        return;
      }
      this.loadedKey = key;
      this.loadedState = target;
      this.loadingKey = null;
      this.baseline = null;
      const patch = { modelStatus: 'ready', modelInfo: info, progress: null, run: null, behavior: null, editState: null };
      if (cache?.files?.length) patch.notice = 'loaded from the browser cache';
      this.store.set(patch);  // onChange sends the edits and the first run
    }
  }

  // Weight geometry, computed once per model, variant and question (the one
  // cache of it: switching the variant back answers at once). The spectra,
  // the write (O) redundancy and the composition come from one request, the
  // core's one pass over the heads. Resolves with the core's result; rejects
  // with its message (e.g. processed weights of a post-LN model).
  geometry(what, args = {}) {
    if (what === 'spectra' || what === 'composition' || (what === 'redundancy' && (args.kind ?? 'O') === 'O')) {
      return this.geometry('weights', { variant: args.variant }).then((all) => all[what]);
    }
    return this.request('geometry', { what, ...args });
  }

  cancelLoad() {
    this.client.call('cancelLoad').catch(() => {});
  }

  // The load in progress is no longer wanted (the loaded model was chosen
  // again): cancel it and show the loaded model as ready. Should the worker
  // finish that load anyway, load() puts the chosen model back.
  abandonLoad() {
    this.loadSeq++;
    this.loadingKey = null;
    this.cancelLoad();
    this.store.set({ modelStatus: 'ready', modelError: null, modelFailure: null, progress: null });
    this.resumeLoaded();
  }

  // The loaded model is usable again after a load that did not replace it:
  // edits and text changed meanwhile were not sent (nothing runs while
  // loading).
  resumeLoaded() {
    if (this.store.state.edits.join(';') !== this.editsKey) this.syncEdits();
    this.scheduleAnalyze(0);
  }

  // The ablated heads as flat indices l*H + h (those the model has).
  ablatedHeads() {
    const { modelInfo } = this.store.state;
    if (!modelInfo) return [];
    return ablatedHeads(this.store.state).inside.map((key) => {
      const h = parseHeadKey(key);
      return h.layer * modelInfo.nHead + h.head;
    });
  }

  // Behaviour computations on the current run's ids (importance, pruning,
  // the induction probe, merge reports): kept per model, edits and
  // arguments.
  compute(type, args = {}) {
    return this.request(type, args, this.editsKey || '');
  }

  // The worker's answers for the loaded model (its generation), kept by
  // request, arguments and `edits` (the edits they were computed with);
  // failures are not kept. Progress goes to the store's computeProgress.
  request(type, args, edits = '') {
    const info = this.store.state.modelInfo;
    if (!info) return Promise.reject(new Error('no model is loaded'));
    if (this.answers?.generation !== info.generation) this.answers = { generation: info.generation, entries: new Map() };
    const entries = this.answers.entries;
    const key = JSON.stringify([type, edits, args]);
    if (!entries.has(key)) {
      const started = performance.now();
      const promise = this.client.call(type, args, {
        onProgress: (p) => this.store.set({ computeProgress: p.fraction < 1 ? { ...p, eta: timeLeft(p.fraction, started) } : null }),
      }).catch((error) => {
        entries.delete(key);
        if (error.fatal) this.recover(error);
        throw error;
      }).finally(() => this.store.set({ computeProgress: null }));
      entries.set(key, promise);
    }
    return entries.get(key);
  }

  // The standard induction test's arguments: ARENA's 50 random tokens
  // twice, shortened to fit the model's context.
  inductionArgs() {
    const ctx = this.store.state.modelInfo?.nCtx || 101;
    return { seqLen: Math.max(2, Math.min(50, Math.floor((ctx - 1) / 2))), batch: 10, seed: 0 };
  }

  // Role detectors on the current run's text (edits in force), with the
  // state's detector options; the induction role from the probe when asked.
  // The state's detector options as the worker's behaviour and corpus
  // requests take them.
  detectOptions() {
    const flags = new Set(this.store.state.detect);
    return { measure: flags.has('abs') ? 'abs' : 'mul', excludeBos: flags.has('nobos'), excludeCurrentToken: flags.has('nocur') };
  }

  async updateBehavior() {
    const state = this.store.state;
    const run = state.run;
    if (!run || run.empty || !state.modelInfo) return;
    const seq = ++this.behaviorSeq;
    const flags = new Set(state.detect);
    const args = { ids: run.ids, ...this.detectOptions() };
    try {
      if (flags.has('probe')) args.probeInduction = (await this.compute('inductionTest', this.inductionArgs())).score;
      if (run.ids.length < 2) throw new Error('the detectors need at least two tokens');
      const behavior = await this.compute('behavior', args);
      if (seq === this.behaviorSeq && this.store.state.run === run) this.store.set({ behavior: { ...behavior, ids: run.ids } });
    } catch (error) {
      if (seq === this.behaviorSeq) this.store.set({ behavior: { error: error.message || String(error) } });
    }
  }

  // delay null: run now; otherwise after `delay` ms (0: after the current
  // task, so that changes made together make one run).
  scheduleAnalyze(delay) {
    clearTimeout(this.timer);
    this.runSeq++; // any result computed before now is stale
    if (delay === null) this.analyze();
    else this.timer = setTimeout(() => this.analyze(), delay);
  }

  async analyze() {
    const state = this.store.state;
    if (state.modelStatus !== 'ready' || !state.modelInfo) return;
    if (state.modelInfo.attentionOnly) return;  // no embeddings: nothing to run (the status line says so)
    if (this.inFlight) {
      this.again = true;
      return;
    }
    const seq = ++this.runSeq;
    const generation = state.modelInfo.generation;
    const ablate = this.ablatedHeads();
    const request = { text: textOf(state), prependBos: state.bos, maxTokens: this.maxTokens };
    if (ablate.length) {
      request.ablate = ablate;
      request.mode = state.mode;
      if (this.baseline?.generation === generation) request.baselineKey = this.baseline.key;
    }
    this.inFlight = true;
    const started = performance.now();
    const slow = setTimeout(() => seq === this.runSeq && this.store.set({ runStatus: 'running' }), 200);
    let result;
    try {
      result = await this.client.call('analyze', request);
    } catch (error) {
      if (error.fatal) {
        clearTimeout(slow);
        this.inFlight = false;
        this.again = false;
        this.recover(error);
        return;
      }
      if (seq === this.runSeq) this.store.set({ runStatus: 'error', runError: error.message || String(error) });
    }
    // Applying the result runs the views; their failures are bugs and must
    // surface as such, not as a message about the text.
    try {
      if (!result) return;
      if (result.generation === generation && !result.empty) {
        // The unablated patterns, kept for the ablated heads' own display
        // (their output is zeroed), keyed by ids and edits.
        const key = `${result.ids.join(',')}|${result.editsKey}`;
        if (!result.gated) this.baseline = { key, generation, patterns: result.patterns };
        else if (result.baseline?.patterns) this.baseline = { key, generation, patterns: result.baseline.patterns };
        if (result.gated && !result.baseline.patterns && this.baseline?.key === key) result.baseline.patterns = this.baseline.patterns;
      }
      if (seq === this.runSeq && this.store.state.modelInfo?.generation === result.generation) {
        this.store.set({ run: result, runStatus: 'ready', runError: null });
        // The views draw synchronously on the store change: the patterns are on screen now.
        this.lastRunMs = performance.now() - started;
        performance.mark('headscope:patterns-drawn', { detail: { ms: this.lastRunMs } });
        this.updateBehavior();
      }
    } finally {
      clearTimeout(slow);
      this.inFlight = false;
      if (this.again) {
        this.again = false;
        this.analyze();
      }
    }
  }
}

// Seconds a computation still needs at its pace so far, once it has run a
// second and done 5 % (NaN before).
function timeLeft(fraction, started) {
  const elapsed = (performance.now() - started) / 1000;
  return elapsed >= 1 && fraction >= 0.05 ? (elapsed * (1 - fraction)) / fraction : NaN;
}

// Progress with speed (bytes/s over the last ~3 s) and time left for the
// current file.
function measure(meter, p, started) {
  const now = performance.now();
  if (p.file && p.loaded === p.total) meter.files.set(p.file, p.total);
  const fileBytes = [...meter.files.entries()].filter(([name]) => name !== p.file).reduce((a, [, b]) => a + b, 0);
  const bytesSoFar = fileBytes + (p.loaded || 0);
  meter.samples.push([now, bytesSoFar]);
  while (meter.samples.length > 2 && now - meter.samples[0][0] > 3000) meter.samples.shift();
  const [t0, b0] = meter.samples[0];
  const speed = now - t0 > 200 ? ((bytesSoFar - b0) * 1000) / (now - t0) : bytesSoFar / Math.max(0.001, (now - started) / 1000);
  const eta = speed > 0 && p.total ? (p.total - p.loaded) / speed : NaN;
  return { ...p, speed, eta };
}
