// The identifiers people type that the CLI, the page and its worker all
// read, one rule each: Hugging Face repo ids ("owner/name"), head ids
// ("L1H3": TransformerLens's L{layer}H{head}) and token ids ("5 17 42").

// "name" or "owner/name": letters, digits, '-', '_', '.', no "..", at most
// 96 characters (the hub's limit).
const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

export function isRepoId(text) {
  return typeof text === 'string' && text.length <= 96 && REPO_ID.test(text) && !text.includes('..');
}

export function headKey(layer, head) {
  return `L${layer}H${head}`;
}

// 'L1H3' -> {layer: 1, head: 3}; null for anything else.
export function parseHeadKey(text) {
  const m = /^L(\d{1,3})H(\d{1,3})$/.exec(String(text));
  return m ? { layer: Number(m[1]), head: Number(m[2]) } : null;
}

// Head keys without repeats, by layer then head.
export function sortHeadKeys(keys) {
  return [...new Set(keys)].sort((a, b) => {
    const x = parseHeadKey(a);
    const y = parseHeadKey(b);
    return x.layer - y.layer || x.head - y.head;
  });
}

// Token ids separated by spaces or commas: {ids} when every part is a whole
// number below `vocab`; else {ids: null, bad: the first part that is not}.
// No part at all gives {ids: []}.
export function parseTokenIds(text, vocab = Infinity) {
  const parts = String(text).split(/[\s,]+/).filter(Boolean);
  const bad = parts.find((p) => !/^\d+$/.test(p) || Number(p) >= vocab);
  return bad === undefined ? { ids: parts.map(Number) } : { ids: null, bad };
}
