// The page's promise-based client of the worker (protocol.js defines the
// messages). `call(type, args, {onProgress})` resolves with the result or
// rejects with a WorkerError carrying the core's message.

export class WorkerError extends Error {
  constructor({ name, message, code = 'engine_stopped', fatal = false }) {
    super(message);
    this.name = name === 'HeadscopeError' ? 'HeadscopeError' : 'WorkerError';
    this.code = code;             // as HeadscopeError's (wasm/errors.mjs)
    this.fatal = Boolean(fatal);  // the worker can no longer be used
  }
}

export class HeadscopeClient {
  // A worker that web/boot/boot.js started early for the same URL is adopted
  // (once), with the messages it has sent so far.
  constructor(workerUrl) {
    const early = globalThis.headscopeEarlyWorker;
    if (early?.url === String(workerUrl)) delete globalThis.headscopeEarlyWorker;
    const adopted = early?.url === String(workerUrl) ? early : null;
    this.worker = adopted ? adopted.worker : new Worker(workerUrl, { type: 'module' });
    this.pending = new Map();
    this.nextId = 1;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (event) => {
      const error = new WorkerError({ name: 'WorkerError', message: `worker failed: ${event.message || 'could not start'}`, fatal: true });
      this.rejectReady(error);
      for (const { reject } of this.pending.values()) reject(error);
      this.pending.clear();
    };
    for (const [kind, event] of adopted?.early || []) {
      if (kind === 'message') this.worker.onmessage(event);
      else this.worker.onerror(event);
    }
  }

  receive(message) {
    if (message.type === 'started') return undefined;
    if (message.type === 'ready') return this.resolveReady();
    if (message.id === null && message.type === 'error') return this.rejectReady(new WorkerError(message.error));
    const entry = this.pending.get(message.id);
    if (!entry) return;
    if (message.type === 'progress') {
      if (entry.onProgress) entry.onProgress(message.progress);
      return;
    }
    this.pending.delete(message.id);
    if (message.type === 'result') entry.resolve(message.result);
    else entry.reject(new WorkerError(message.error));
  }

  // Stops the worker; the calls waiting on it fail with `error` (by default
  // a fatal one).
  terminate(error = new WorkerError({ name: 'WorkerError', message: 'the worker was stopped', fatal: true })) {
    this.worker.terminate();
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
  }

  call(type, args = {}, { onProgress, transfer = [] } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, type, args }, transfer);
    });
  }
}
