// The protocol between the page and the worker that owns the wasm core
// (worker.js; the page's side is client.js). Both import this file; it
// imports nothing of the page.
//
// Requests in, page -> worker: {id, type, args}. `id` is the client's (0 is
// boot.js's warmup, whose reply nobody awaits).
//   warmup        {first: {text, prependBos, maxTokens}}: load the built-in model and run `first`
//                 now; the page's first loadModel (built-in) and analyze (same text) take the results
//                 -> {}
//   loadModel     {spec, files?, endpoint?, attentionOnly?, confirmedOrigins?}; spec {kind: 'builtin'
//                 | 'hub' | 'url' | 'files', repo?, revision?, url?} (shared/sources.js says which are
//                 allowed); files: File objects (kind 'files'); endpoint: the hub's address (kind
//                 'hub'); confirmedOrigins: hosts the viewer agreed to load from (the worker fetches
//                 from no other host but the page's and the hub's); a load replaces the model only
//                 if it succeeds
//                 -> {info (the core's, with label, hasTokenizer, generation), cache: {files}}
//   cancelLoad    {} -> {cancelled}: the load in progress fails with code 'cancelled'
//   analyze       {text? | ids?, prependBos, maxTokens, ablate?, mode?, baselineKey?}: tokenize (or
//                 read ids) and run with the edits in force; ablate: flat head indices, mode
//                 'zero' | 'mean'; baselineKey: the ids|edits whose unablated patterns the page has
//                 -> {ids, tokens, truncated, nLayer, nHead, nTokens, patterns [L,H,T,T], tokenLoss,
//                     loss, gated, baseline, ablated? (the flat heads ablated), mode?, objective?,
//                     patternChange?, unedited?, empty?, warning (NaN/Inf in the run, or null),
//                     generation, editsKey}
//   setEdits      {edits: descriptors (shared/edits.js)} -> {applied, errors, edits}
//   behavior      {ids, measure, excludeBos, excludeCurrentToken, probeInduction?}
//                 -> the core's head behaviour, generation, editsKey
//   inductionTest {seqLen, batch, seed} -> the probe's scores and losses, generation
//   importance    {ids, mode} -> gradient and leave-one-out importance, generation
//   pruning       {ids, order, mode, step, nRandom, seed, normalize, reestimate} -> the pruning curve, generation
//   evaluateMerge {ids, layer, headA, headB} -> the merge report, generation
//   corpus        {name (a built-in corpus, shared/sources.js CORPORA) | dataset {repo, config, split,
//                 endpoint?} (a hub dataset's converted parquet) | texts, maxTexts, maxTokens,
//                 resamples, seed, measure, excludeBos, excludeCurrentToken} -> per-head statistics over the texts with bootstrap intervals and
//                 chance levels (ModelSession.corpus), generation
//   corpusImportance  the same texts, mode, nRandom -> Michel importance over the texts, leave-one-out
//                 with intervals, the held-out pruning curve (ModelSession.corpusImportance), generation
//   patch         {clean, corrupt, prependBos, target ('heads' | 'heads_by_position' | 'resid' | 'q' |
//                 'k' | 'v' | 'path'), direction, receivers (path), metric, answer, wrong, position}
//                 -> activation patching (ModelSession.patch) or path patching (pathPatch), generation
//   dla           {text, prependBos, answer, wrong, position} -> direct logit attribution, generation
//   predictions   {text, prependBos, k} -> the top k next tokens at the last position
//   geometry      {what, variant, ...}; what: 'weights' (the one pass: {spectra, redundancy (O),
//                 composition}) | 'copying' | 'redundancy' {kind} | 'merges' {topN} |
//                 'readout' {layer, head, directions, topN} | 'pair' {a, b} | 'circuits' {heads, maxRows}
//                 (full OV and token QK diagonal tests) | 'positional' {heads, maxPositions}
//                 -> the core's result, generation
//   cacheInfo     {} -> {available, entries, bytes} of the Cache API's model downloads
//   clearCache    {} -> the same, after emptying it
//   simulateAbort {} -> a fatal error, as an abort of the module gives (tests of the recovery)
//
// Replies out, worker -> page:
//   {type: 'started'}                     once, when the worker's script has run (boot.js waits for it)
//   {type: 'ready'}                       the core has started; or
//   {type: 'error', id: null, error}      it could not start
//   {id, type: 'progress', progress}      any number, before the result; progress is
//                                         {what, fraction, file?, loaded?, total?, filesDone?, filesTotal?}
//                                         (a download adds its file and bytes)
//   {id, type: 'result', result}          exactly one of these two per request; typed arrays in
//   {id, type: 'error', error}            results are transferred; error {name, message, code, fatal}:
//                                         code as HeadscopeError's (wasm/errors.mjs); fatal = the
//                                         module aborted, the worker is of no more use
//
// Requests are handled in the order they arrive (so setEdits applies to the
// analyze sent after it); a load waits for the network, and what arrives
// meanwhile (cancelLoad among it) is answered while it waits.

// Texts are cut to this many tokens (or the model's context, if shorter).
export const MAX_TOKENS = 256;

// The explorer's worker (worker.js, bundled beside `base`), told to prefetch
// the built-in model when the page opens with it.
export function workerUrlFor(model, base) {
  return new URL(`./worker.js${model === 'builtin' ? '?prefetch=builtin' : ''}`, base);
}
