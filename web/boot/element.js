// <headscope-view>: the embed as a custom element, for a blog with one
// script tag:
//
//   <script type="module" src="https://…/headscope/dist/element.js"></script>
//   <headscope-view state="model=gpt2&text=…&head=L5H1&view=head"></headscope-view>
//
// or with attributes model, rev, text, head, view, ablate (they override
// `state`). The element hosts embed.html (next to this script's folder) in
// an <iframe>: the page and its worker run in their own origin, whatever the
// host page's policies, and nothing of the host is exposed to them. The
// frame takes the height the embed reports.
const EMBED_URL = new URL('../embed.html', import.meta.url);
const ATTRIBUTES = ['state', 'model', 'rev', 'text', 'head', 'view', 'ablate'];

class HeadscopeView extends HTMLElement {
  static get observedAttributes() {
    return ATTRIBUTES;
  }

  constructor() {
    super();
    const shadow = this.attachShadow({ mode: 'open' });
    this.frame = document.createElement('iframe');
    this.frame.title = 'headscope: attention heads';
    this.frame.loading = 'lazy';
    this.frame.setAttribute('referrerpolicy', 'no-referrer');
    Object.assign(this.frame.style, { border: '0', width: '100%', height: '480px', display: 'block' });
    Object.assign(this.style, { display: 'block' });
    shadow.append(this.frame);
    this.onMessage = (event) => {
      if (event.source !== this.frame.contentWindow || event.origin !== EMBED_URL.origin) return;
      const height = Number(event.data?.height);
      if (event.data?.type === 'headscope:size' && Number.isFinite(height) && height > 0) this.frame.style.height = `${Math.min(height, 4000)}px`;
    };
  }

  connectedCallback() {
    window.addEventListener('message', this.onMessage);
    this.update();
  }

  disconnectedCallback() {
    window.removeEventListener('message', this.onMessage);
  }

  attributeChangedCallback() {
    if (this.isConnected) this.update();
  }

  src() {
    const params = new URLSearchParams(this.getAttribute('state') || '');
    for (const name of ATTRIBUTES.slice(1)) if (this.hasAttribute(name)) params.set(name, this.getAttribute(name));
    const url = new URL(EMBED_URL);
    url.hash = params.toString();
    return url.href;
  }

  update() {
    const src = this.src();
    if (this.frame.src !== src) this.frame.src = src;
  }
}

if (!customElements.get('headscope-view')) customElements.define('headscope-view', HeadscopeView);
