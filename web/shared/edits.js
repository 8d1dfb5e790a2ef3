// Weight edits as short strings, so the URL can hold them (state.edits) and
// the worker can re-create them in the core on every load:
//
//   r1:L1H3:k0:a0.5:w   rank-one OV edit W_OV -= α u_k u_kᵀ, u_k the k-th
//                       singular vector on the write (w) or read (r) side
//   rm:L1H3:k2:a1       W_OV -= α σ_k U_k V_kᵀ (α = 1 removes component k)
//   mg:L1H2+H3:p2       heads 2 and 3 of layer 1 merged, with head 2's pattern
//
// Sides follow TransformerLens's row vectors (x W_OV: U reads, V writes).

const PATTERNS = {
  r1: /^r1:L(\d{1,3})H(\d{1,3}):k(\d{1,4}):a(-?\d{1,3}(?:\.\d{1,4})?):([rw])$/,
  rm: /^rm:L(\d{1,3})H(\d{1,3}):k(\d{1,4}):a(-?\d{1,3}(?:\.\d{1,4})?)$/,
  mg: /^mg:L(\d{1,3})H(\d{1,3})\+H(\d{1,3}):p(\d{1,3})$/,
};

// Parses one descriptor: {type: 'ov', kind, layer, head, component, alpha,
// side} or {type: 'merge', layer, headA, headB, patternHead}; null if invalid.
export function parseEdit(text) {
  let m = PATTERNS.r1.exec(text);
  if (m) return { type: 'ov', kind: 'rank_one', layer: +m[1], head: +m[2], component: +m[3], alpha: +m[4], side: m[5] === 'r' ? 'read' : 'write' };
  m = PATTERNS.rm.exec(text);
  if (m) return { type: 'ov', kind: 'remove_component', layer: +m[1], head: +m[2], component: +m[3], alpha: +m[4], side: 'write' };
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
  if (e.kind === 'remove_component') return `rm:L${e.layer}H${e.head}:k${e.component}:a${alphaText(e.alpha)}`;
  return `r1:L${e.layer}H${e.head}:k${e.component}:a${alphaText(e.alpha)}:${e.side === 'read' ? 'r' : 'w'}`;
}

// For people: "L1H3: W_OV −= 0.5·u₁u₁ᵀ (write side)".
export function describeEdit(e) {
  if (e.type === 'merge') return `L${e.layer}: heads ${e.headA} and ${e.headB} merged (pattern of head ${e.patternHead})`;
  if (e.kind === 'remove_component') return `L${e.layer}H${e.head}: W_OV −= ${alphaText(e.alpha)}·σ${e.component + 1}·U${e.component + 1}V${e.component + 1}ᵀ`;
  return `L${e.layer}H${e.head}: W_OV −= ${alphaText(e.alpha)}·u${e.component + 1}u${e.component + 1}ᵀ (${e.side} side)`;
}
