// Sharing: "copy link" (the URL holds the whole state) and "embed" (the
// <iframe> code for embed.html with the same state, and the one-script-tag
// custom element).
import { el } from '../views/dom.js';
import { serializeHash } from '../state/hash.js';

export function explorerUrl(state, base = location.href) {
  const url = new URL('index.html', base);
  url.hash = serializeHash(state);
  return url.href;
}

export function embedUrl(state, base = location.href) {
  const url = new URL('embed.html', base);
  url.hash = serializeHash(state);
  return url.href;
}

function escapeAttribute(text) {
  return String(text).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// A starting height for the pasted frame (an <iframe> cannot size itself;
// <headscope-view> does): the grid grows with the layers, the head view with
// the tokens.
export function embedHeight(state) {
  const info = state.modelInfo;
  const T = state.run?.nTokens || 24;
  // As HeadGrid sizes thumbnails for a ~900 px wide frame.
  const thumb = Math.max(28, Math.min(96, Math.floor(860 / (info?.nHead || 12)) - 6));
  const h = state.view === 'overview' ? 100 + (info?.nLayer || 6) * (thumb + 6) : 200 + Math.min(T, 64) * 20;
  return Math.max(240, Math.min(900, Math.round(h)));
}

export function iframeCode(state, base = location.href) {
  const height = embedHeight(state);
  return `<iframe src="${escapeAttribute(embedUrl(state, base))}" width="100%" height="${height}" title="headscope: attention heads" loading="lazy" style="border:0;max-width:960px"></iframe>`;
}

export function elementCode(state, base = location.href) {
  const script = new URL('dist/element.js', base).href;
  return `<script type="module" src="${escapeAttribute(script)}"></script>\n<headscope-view state="${escapeAttribute(serializeHash(state))}"></headscope-view>`;
}

async function copyText(text, fallbackField) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Clipboard permission refused (or not a secure context): select the
    // text so the user can copy it.
    fallbackField?.focus();
    fallbackField?.select();
    return false;
  }
}

export class SharePanel {
  constructor(root, { store, notify }) {
    this.store = store;
    this.notify = notify;
    const linkButton = el('button', { type: 'button', id: 'copy-link', class: 'secondary', text: 'Copy link', on: { click: () => this.copyLink() } });
    const embedButton = el('button', { type: 'button', id: 'open-embed', class: 'secondary', text: 'Embed…', on: { click: () => this.openDialog() } });
    this.linkField = el('input', { type: 'text', readonly: true, class: 'offscreen', tabindex: -1, 'aria-hidden': 'true' });
    this.iframeField = el('textarea', { id: 'embed-iframe-code', readonly: true, rows: 4, spellcheck: 'false' });
    this.elementField = el('textarea', { id: 'embed-element-code', readonly: true, rows: 3, spellcheck: 'false' });
    this.preview = el('a', { id: 'embed-preview', target: '_blank', rel: 'noopener', text: 'open the embed view in a new tab' });
    const copy = (field, what) => el('button', { type: 'button', text: `Copy ${what}`, on: { click: async () => this.done(await copyText(field.value, field), what) } });
    this.dialog = el('dialog', { id: 'embed-dialog', class: 'dialog', 'aria-labelledby': 'embed-dialog-title' }, [
      el('h2', { id: 'embed-dialog-title', text: 'Embed this view' }),
      el('p', { class: 'muted', text: 'The same state as the link: model, text, head, view and ablations. The embed shows one view without the controls, with a link back here.' }),
      el('label', { for: 'embed-iframe-code', text: 'An <iframe> for any page' }), this.iframeField, copy(this.iframeField, 'iframe code'),
      el('label', { for: 'embed-element-code', text: 'Or the custom element (one script tag)' }), this.elementField, copy(this.elementField, 'element code'),
      el('p', {}, [this.preview]),
      el('form', { method: 'dialog' }, [el('button', { type: 'submit', class: 'secondary', text: 'Close' })]),
    ]);
    root.append(linkButton, embedButton, this.linkField);
    document.body.append(this.dialog);
  }

  done(ok, what) {
    this.notify(ok ? `${what} copied` : `select and copy the ${what} (the clipboard is not available here)`);
  }

  async copyLink() {
    const state = this.store.state;
    const url = explorerUrl(state);
    this.linkField.value = url;
    const ok = await copyText(url, this.linkField);
    const local = state.model === 'local' ? ' — local files are not part of a link: the recipient must drop them too' : '';
    this.notify(ok ? `link copied${local}` : `copy the link from the address bar${local}`);
    document.body.dataset.copiedLink = url;
  }

  openDialog() {
    const state = this.store.state;
    this.iframeField.value = iframeCode(state);
    this.elementField.value = elementCode(state);
    this.preview.href = embedUrl(state);
    if (typeof this.dialog.showModal === 'function') this.dialog.showModal();
    else this.dialog.setAttribute('open', '');
  }
}
