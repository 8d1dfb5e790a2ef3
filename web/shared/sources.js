// Which models may be opened, and which hosts may be asked for them: the
// rules the page applies when it reads a link or the model bar, and the
// worker again on every request (a request is input too). The built-in model
// beside the page; a model folder by URL, https: or on the page's own origin,
// from a host other than the page's or the hub's only once the viewer
// confirmed it; a hub endpoint other than the hub's, only on the page's
// origin or the loopback interface. Repo ids follow wasm/ids.mjs.
import { isRepoId } from '../../wasm/ids.mjs';

// The built-in model lives in public/models/<name>/ (config.json,
// model.safetensors, tokenizer.json, README.md), next to index.html.
export const BUILTIN = {
  name: 'headscope-tiny',
  path: 'models/headscope-tiny/',
  title: 'built-in (headscope-tiny)',
};

// The built-in corpora, in public/corpora/ (one text per line), by the name
// a link gives them (the hash's corpus field).
export const CORPORA = {
  stories: { path: 'corpora/stories.txt', label: 'built-in stories', texts: 64 },
};

function urlOf(text, base) {
  try {
    return new URL(text, base);
  } catch {
    return null;
  }
}

// Only the loopback interface or the page's own origin may stand in for the
// hub: anything else would let a link send the page's requests to a
// stranger's server.
export function allowedHubEndpoint(text, pageOrigin) {
  const url = urlOf(text, pageOrigin);
  if (!url) return null;
  if (url.origin === pageOrigin) return url.href.replace(/\/$/, '');
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    if (['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return url.href.replace(/\/$/, '');
  }
  return null;
}

// The hub and the hosts it sends large files and dataset queries to
// (cdn-lfs*.huggingface.co, cas-bridge.xethub.hf.co,
// datasets-server.huggingface.co, ...).
const HUB_HOST = /^(?:[a-z0-9-]+\.)*(?:huggingface\.co|hf\.co)$/;

// Origins a link may make the viewer's browser fetch from without asking:
// the page's own and the hub's. Any other host is shown to the viewer and
// loads only once they confirm it (control/app.js); the worker checks every
// request against the same rule plus the origins confirmed.
export function trustedOrigin(origin, pageOrigin) {
  if (origin === pageOrigin) return true;
  const url = urlOf(origin);
  return url !== null && url.protocol === 'https:' && !url.port && HUB_HOST.test(url.hostname);
}

// A model given as a URL must be https: or on the page's own origin; the
// folder's URL (ending in '/'), or null.
export function allowedModelUrl(text, pageOrigin) {
  const url = urlOf(text, pageOrigin);
  if (!url) return null;
  if (url.username || url.password) return null;
  if (url.protocol === 'https:' || url.origin === pageOrigin) return url.href.endsWith('/') ? url.href : `${url.href}/`;
  return null;
}

// A model as typed in the model bar or found in a link: a repo id as it is,
// a URL as its folder's URL (allowedModelUrl); null when it is neither.
export function modelFromText(text, pageOrigin) {
  if (isRepoId(text)) return text;
  if (/^[a-z]+:/i.test(text)) return allowedModelUrl(text, pageOrigin);
  return null;
}
