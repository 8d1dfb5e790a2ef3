// Weight edits as short strings, so the URL can hold them (state.edits) and
// the worker can re-create them in the core on every load (core
// interventions.hpp OvEditKind; TransformerLens's row vectors: x W_OV =
// x U diag(σ) Vᵀ, U_k reads, V_k writes):
//
//   rm:L1H3:k2:a1       W_OV −= α σ_k U_k V_kᵀ (α = 1 removes component k)
//   r1s:L1H3:k0:a1:w    W_OV −= α σ_k u uᵀ, u the k-th singular vector on the
//                       write (w) or read (r) side
//   r1:L1H3:k0:a0.5:w   W_OV −= α u uᵀ with an absolute α (the seed's formula;
//                       links made before r1s keep this meaning)
//   mg:L1H2+H3:p2       heads 2 and 3 of layer 1 merged, with head 2's pattern
//
// An OV edit ending in ':p' takes its singular vectors from the processed
// weights (TransformerLens's processing, as the page displays them);
// without it, from the raw ones.

const ALPHA = '(-?\\d{1,3}(?:\\.\\d{1,4})?)';
const PATTERNS = {
  r1: new RegExp(`^(r1|r1s):L(\\d{1,3})H(\\d{1,3}):k(\\d{1,4}):a${ALPHA}:([rw])(:p)?$`),
  rm: new RegExp(`^rm:L(\\d{1,3})H(\\d{1,3}):k(\\d{1,4}):a${ALPHA}(:p)?$`),
  mg: /^mg:L(\d{1,3})H(\d{1,3})\+H(\d{1,3}):p(\d{1,3})$/,
};

// Parses one descriptor: {type: 'ov', kind, layer, head, component, alpha,
// side, variant} or {type: 'merge', layer, headA, headB, patternHead}; null
// if invalid.
export function parseEdit(text) {
  let m = PATTERNS.r1.exec(text);
  if (m) {
    return { type: 'ov', kind: m[1] === 'r1s' ? 'rank_one_scaled' : 'rank_one', layer: +m[2], head: +m[3], component: +m[4], alpha: +m[5],
      side: m[6] === 'r' ? 'read' : 'write', variant: m[7] ? 'processed' : 'raw' };
  }
  m = PATTERNS.rm.exec(text);
  if (m) return { type: 'ov', kind: 'remove_component', layer: +m[1], head: +m[2], component: +m[3], alpha: +m[4], side: 'write', variant: m[5] ? 'processed' : 'raw' };
  m = PATTERNS.mg.exec(text);
  if (m && +m[2] !== +m[3] && (+m[4] === +m[2] || +m[4] === +m[3])) return { type: 'merge', layer: +m[1], headA: +m[2], headB: +m[3], patternHead: +m[4] };
  return null;
}

export function isEdit(text) {
  return parseEdit(String(text)) !== null;
}

const alphaText = (alpha) => String(Number(Number(alpha).toFixed(4)));

export function formatEdit(e) {
  if (e.type === 'merge') return `mg:L${e.layer}H${e.headA}+H${e.headB}:p${e.patternHead}`;
  const p = e.variant === 'processed' ? ':p' : '';
  if (e.kind === 'remove_component') return `rm:L${e.layer}H${e.head}:k${e.component}:a${alphaText(e.alpha)}${p}`;
  const code = e.kind === 'rank_one_scaled' ? 'r1s' : 'r1';
  return `${code}:L${e.layer}H${e.head}:k${e.component}:a${alphaText(e.alpha)}:${e.side === 'read' ? 'r' : 'w'}${p}`;
}

// For people: "L1H3: W_OV −= 1·σ₂·U₂V₂ᵀ (processed weights): component 2 removed".
export function describeEdit(e) {
  if (e.type === 'merge') return `L${e.layer}: heads ${e.headA} and ${e.headB} merged (pattern of head ${e.patternHead})`;
  const k = e.component + 1;
  const where = `${e.variant === 'processed' ? 'processed' : 'raw'} weights`;
  if (e.kind === 'remove_component') {
    const effect = Number(e.alpha) === 1 ? `: component ${k} removed` : '';
    return `L${e.layer}H${e.head}: W_OV −= ${alphaText(e.alpha)}·σ${k}·U${k}V${k}ᵀ (${where})${effect}`;
  }
  const u = e.side === 'read' ? `U${k}` : `V${k}`;
  const scale = e.kind === 'rank_one_scaled' ? `·σ${k}` : '';
  const absolute = e.kind === 'rank_one' ? 'absolute α, ' : '';
  return `L${e.layer}H${e.head}: W_OV −= ${alphaText(e.alpha)}${scale}·${u}${u}ᵀ (${absolute}${e.side} side, ${where}): adds a path from ${u} to ${u}`;
}
