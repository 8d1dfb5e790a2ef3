// Embind bindings: the glue between JS values and the core's functions, and
// the EMSCRIPTEN_BINDINGS table. The core knows nothing of JavaScript; see
// session.hpp for the conventions ({ok, error}, typed-array copies).
#include <emscripten/bind.h>
#include <emscripten/val.h>

#include <Eigen/SVD>
#include <set>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "composition_null.hpp"
#include "corpus.hpp"
#include "config.hpp"
#include "detectors.hpp"
#include "full_circuits.hpp"
#include "geometry.hpp"
#include "interventions.hpp"
#include "linalg.hpp"
#include "parallel.hpp"
#include "patching.hpp"
#include "processing.hpp"
#include "progress.hpp"
#include "safetensors.hpp"
#include "session.hpp"

namespace hs_wasm {
namespace {

// Singular values of a rows x cols row-major matrix (the worker pipe's check).
val singular_values(val matrix, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return error_value(hs::make_error("singular_values: rows and cols must be positive"));
  const auto data = emscripten::convertJSArrayToNumberVector<float>(matrix);
  if (data.size() != static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols))
    return error_value(hs::make_error("singular_values: expected " + std::to_string(rows * cols) + " numbers, got " +
                       std::to_string(data.size())));
  hs::ConstMapRM m(data.data(), rows, cols);
  Eigen::JacobiSVD<hs::MatrixRM> svd(m);
  const Eigen::VectorXf s = svd.singularValues();
  val out = ok_value();
  out.set("values", typed_copy("Float32Array", s.data(), static_cast<std::size_t>(s.size())));
  return out;
}

// N, the header's length, from the first bytes of a safetensors file of
// `file_size` bytes, checked (hs::safetensors_header_length): {ok, length}.
// What a download by Range requests asks before it fetches the header.
val safetensors_header_length(val bytes_js, double file_size, const std::string& name) {
  const auto bytes = emscripten::convertJSArrayToNumberVector<std::uint8_t>(bytes_js);
  auto n = hs::safetensors_header_length(bytes.data(), bytes.size(), static_cast<std::uint64_t>(file_size), name);
  if (!n) return error_value(n.error());
  val out = ok_value();
  out.set("length", static_cast<double>(*n));
  return out;
}

// The shard files that model.safetensors.index.json names (checked by
// hs::safetensors_parse_index), each once, sorted: {ok, shards: [name, ...]}.
val safetensors_index_shards(const std::string& json_text) {
  auto index = hs::safetensors_parse_index(json_text);
  if (!index) return error_value(index.error());
  std::set<std::string> names;
  for (const auto& entry : *index) names.insert(entry.second);
  val shards = val::array();
  for (const std::string& name : names) shards.call<void>("push", name);
  val out = ok_value();
  out.set("shards", shards);
  return out;
}

// ---------------------------------------------------------------------------
// Weight geometry (core/geometry.hpp, core/full_circuits.hpp)

hs::Result<hs::WeightVariant> variant_of(const std::string& name) {
  if (name == "raw") return hs::WeightVariant::raw;
  if (name == "processed") return hs::WeightVariant::processed;
  return hs::make_error("weight variant must be \"raw\" or \"processed\", not \"" + name + "\"");
}

hs::Result<hs::HeadSubspace> subspace_of(const std::string& name) {
  if (name == "Q") return hs::HeadSubspace::query_read;
  if (name == "K") return hs::HeadSubspace::key_read;
  if (name == "V") return hs::HeadSubspace::value_read;
  if (name == "O") return hs::HeadSubspace::output_write;
  return hs::make_error("subspace must be one of Q, K, V, O, not \"" + name + "\"");
}

// A JS progress callback (fraction) -> boolean|undefined; false cancels.
hs::ProgressFn progress_of(val callback) {
  if (callback.isUndefined() || callback.isNull()) return {};
  return [callback](double fraction) { return !callback(fraction).isFalse(); };
}

#define HS_WASM_MODEL(session)                                    \
  const hs::Model* model = (session).model();                     \
  if (!model) return error_value(hs::make_error(hs::ErrorCode::no_model, "no model is loaded"));

#define HS_WASM_UNWRAP(var, expr)                     \
  auto var = (expr);                                  \
  if (!var) return error_value(var.error());

val circuit_spectra_value(const hs::CircuitSpectra& c) {
  val out = val::object();
  out.set("sigma", float64_copy(c.sigma));
  out.set("frobenius", float64_copy(c.frobenius));
  out.set("effective_rank", float64_copy(c.effective_rank));
  out.set("top1_share", float64_copy(c.top1_share));
  out.set("topk_share", float64_copy(c.topk_share));
  return out;
}

val spectra_value(const hs::HeadSpectra& spectra, const std::string& variant_name) {
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("n_layer", spectra.n_layer);
  out.set("n_head", spectra.n_head);
  out.set("d_head", spectra.d_head);
  out.set("top_k", spectra.top_k);
  out.set("qk_ignores_rotary", spectra.qk_ignores_rotary);
  out.set("qk_ignores_qk_norm", spectra.qk_ignores_qk_norm);
  out.set("qk_ignores_softcap", spectra.qk_ignores_softcap);
  out.set("ov_ignores_post_norm", spectra.ov_ignores_post_norm);
  out.set("ov", circuit_spectra_value(spectra.ov));
  out.set("qk", circuit_spectra_value(spectra.qk));
  return out;
}

val redundancy_value(const hs::RedundancyMatrix& matrix, const std::string& variant_name) {
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("kind", std::string(hs::head_subspace_name(matrix.kind)));
  out.set("n_layer", matrix.n_layer);
  out.set("n_head", matrix.n_head);
  out.set("overlap", float64_copy(matrix.overlap));
  out.set("rank", int32_copy(matrix.rank));
  return out;
}

val composition_test_value(const hs::CompositionTest& t) {
  val out = val::object();
  val null = val::object();
  null.set("n", t.null.n);
  null.set("mean", t.null.mean);
  null.set("q95", t.null.q95);
  null.set("q99", t.null.q99);
  null.set("q999", t.null.q999);
  out.set("null", null);
  val gaps = val::array();
  for (const hs::NullGap& g : t.gaps) {
    val gap = val::object();
    gap.set("gap", g.gap);
    gap.set("n", g.n);
    gap.set("mean", g.mean);
    gap.set("q95", g.q95);
    gap.set("above_q95", g.above_q95);
    gaps.call<void>("push", gap);
  }
  out.set("gaps", gaps);
  out.set("n_tests", t.n_tests);
  out.set("p", float64_copy(t.p));
  out.set("resolvable", t.resolvable);
  out.set("n_flagged", t.n_flagged);
  out.set("threshold", t.threshold);
  return out;
}

// Composition scores with their empirical null and significance
// (composition_null.hpp) and the random baseline of their shapes (the
// reference level).
val composition_value(const hs::Model& model, const hs::CompositionScores& scores, const std::string& variant_name,
                      int baseline_samples, double fdr) {
  HS_WASM_UNWRAP(baseline, hs::composition_baseline(model.config.d_model, model.config.d_head, baseline_samples));
  HS_WASM_UNWRAP(significance, hs::composition_significance(scores, fdr));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("n_layer", scores.n_layer);
  out.set("n_head", scores.n_head);
  out.set("qk_ignores_rotary", scores.qk_ignores_rotary);
  out.set("qk_ignores_qk_norm", scores.qk_ignores_qk_norm);
  out.set("qk_ignores_softcap", scores.qk_ignores_softcap);
  out.set("q", float64_copy(scores.q));
  out.set("k", float64_copy(scores.k));
  out.set("v", float64_copy(scores.v));
  out.set("null_q", float64_copy(scores.null_q));
  out.set("null_k", float64_copy(scores.null_k));
  out.set("null_v", float64_copy(scores.null_v));
  val sig = val::object();
  sig.set("fdr", significance->fdr);
  sig.set("q", composition_test_value(significance->q));
  sig.set("k", composition_test_value(significance->k));
  sig.set("v", composition_test_value(significance->v));
  out.set("significance", sig);
  val base = val::object();
  base.set("mean", baseline->mean);
  base.set("std", baseline->std);
  base.set("n_samples", baseline->n_samples);
  base.set("seed", static_cast<double>(baseline->seed));
  out.set("baseline", base);
  return out;
}

val geometry_spectra(Session& session, const std::string& variant_name, int top_k, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(spectra, hs::head_spectra(*model, variant.value(), top_k, progress_of(progress)));
  return spectra_value(*spectra, variant_name);
}

val geometry_redundancy(Session& session, const std::string& variant_name, const std::string& kind_name,
                        val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(kind, subspace_of(kind_name));
  HS_WASM_UNWRAP(matrix, hs::subspace_redundancy(*model, variant.value(), kind.value(), progress_of(progress)));
  return redundancy_value(*matrix, variant_name);
}

val geometry_composition(Session& session, const std::string& variant_name, int baseline_samples, double fdr,
                         val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(scores, hs::composition_scores(*model, variant.value(), progress_of(progress)));
  return composition_value(*model, *scores, variant_name, baseline_samples, fdr);
}

// The three in one pass (hs::weight_geometry): {spectra, redundancy (O), composition}.
val geometry_weights(Session& session, const std::string& variant_name, int top_k, int baseline_samples, double fdr,
                     val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(all, hs::weight_geometry(*model, variant.value(), top_k, progress_of(progress)));
  val composition = composition_value(*model, all->composition, variant_name, baseline_samples, fdr);
  if (!composition["ok"].as<bool>()) return composition;
  val out = ok_value();
  out.set("spectra", spectra_value(all->spectra, variant_name));
  out.set("redundancy", redundancy_value(all->write_redundancy, variant_name));
  out.set("composition", composition);
  return out;
}

val geometry_merge_candidates(Session& session, const std::string& variant_name, int top_n, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(merges, hs::merge_candidates(*model, variant.value(), top_n, progress_of(progress)));
  val pairs = val::array();
  for (const auto& p : merges->pairs) {
    val pair = val::object();
    pair.set("layer", p.layer);
    pair.set("head_a", p.head_a);
    pair.set("head_b", p.head_b);
    pair.set("kv_siblings", p.kv_siblings);
    pair.set("write_overlap", p.write_overlap);
    pair.set("read_overlap", p.read_overlap);
    pair.set("qk_similarity", p.qk_similarity);
    pair.set("combined", p.combined);
    pairs.call<void>("push", pair);
  }
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("pairs", pairs);
  return out;
}

val token_scores_value(const std::vector<hs::TokenScore>& scores) {
  val out = val::array();
  for (const auto& s : scores) {
    val score = val::object();
    score.set("token", s.token);
    score.set("cosine", s.cosine);
    score.set("dot", s.dot);
    out.call<void>("push", score);
  }
  return out;
}

val geometry_readout(Session& session, const std::string& variant_name, int layer, int head, int n_directions,
                     int top_n) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(readout, hs::ov_token_readout(*model, variant.value(), layer, head, n_directions, top_n));
  val directions = val::array();
  for (const auto& d : readout->directions) {
    val direction = val::object();
    direction.set("sigma", d.sigma);
    direction.set("read_top", token_scores_value(d.read_top));
    direction.set("read_bottom", token_scores_value(d.read_bottom));
    direction.set("write_top", token_scores_value(d.write_top));
    direction.set("write_bottom", token_scores_value(d.write_bottom));
    directions.call<void>("push", direction);
  }
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("directions", directions);
  return out;
}

val geometry_pair(Session& session, const std::string& variant_name, int layer_a, int head_a,
                  const std::string& kind_a, int layer_b, int head_b, const std::string& kind_b) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(a, subspace_of(kind_a));
  HS_WASM_UNWRAP(b, subspace_of(kind_b));
  HS_WASM_UNWRAP(pair, hs::head_pair_geometry(*model, variant.value(), layer_a, head_a, a.value(), layer_b, head_b,
                                              b.value()));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("theta", float64_copy(pair->angles.theta));
  out.set("rank_a", pair->angles.rank_a);
  out.set("rank_b", pair->angles.rank_b);
  out.set("overlap", pair->overlap);
  return out;
}

val geometry_copying(Session& session, const std::string& variant_name, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  // Not kept: the page keeps each answer (web/control/app.js).
  HS_WASM_UNWRAP(product, hs::unembed_embed_product(*model, variant.value(), progress_of(progress)));
  HS_WASM_UNWRAP(copying, hs::ov_copying_scores(*model, variant.value(), *product));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("copying_score", float64_copy(copying->copying_score));
  out.set("positive_fraction", float64_copy(copying->positive_fraction));
  return out;
}

// ---------------------------------------------------------------------------
// Head behaviour and interventions (core/detectors.hpp, core/interventions.hpp).
// Every call runs with the session's edits in force.

std::vector<int> ints_of(val array) { return emscripten::convertJSArrayToNumberVector<int>(array); }

// An array of id arrays (a corpus' texts, or their labels).
std::vector<std::vector<int>> id_lists_of(val lists) {
  std::vector<std::vector<int>> out;
  const int n = lists["length"].as<int>();
  for (int i = 0; i < n; ++i) out.push_back(ints_of(lists[i]));
  return out;
}

// The loss of a behaviour call: labels (one per token, -100 where not
// masked) ask for the masked-LM objective; undefined or null: automatic.
hs::Loss loss_of(val labels) {
  if (labels.isUndefined() || labels.isNull()) return {};
  return hs::Loss(hs::Objective::masked_token, ints_of(labels));
}

// BERT's masked input (hs::mask_tokens): {ids, labels, positions}.
val mask_tokens(val ids_js, int mask_id, val keep_js, double seed) {
  HS_WASM_UNWRAP(m, hs::mask_tokens(ints_of(ids_js), mask_id, ints_of(keep_js), static_cast<std::uint64_t>(seed)));
  val out = ok_value();
  out.set("ids", int32_copy(m->ids));
  out.set("labels", int32_copy(m->labels));
  out.set("positions", int32_copy(m->positions));
  return out;
}

hs::Result<hs::AblationMode> ablation_mode_of(const std::string& name) {
  if (name == "zero") return hs::AblationMode::zero;
  if (name == "mean") return hs::AblationMode::mean;
  return hs::make_error("ablation mode must be \"zero\" or \"mean\", not \"" + name + "\"");
}

// {exclude_bos, exclude_current_token, measure, threshold, probe_induction}.
hs::BehaviorOptions behavior_options_of(val options) {
  hs::BehaviorOptions o;
  if (options.isUndefined() || options.isNull()) return o;
  o.detect.exclude_bos = options["exclude_bos"].isTrue();
  o.detect.exclude_current_token = options["exclude_current_token"].isTrue();
  if (options["measure"].isString() && options["measure"].as<std::string>() == "abs")
    o.detect.error_measure = hs::ErrorMeasure::abs;
  if (options["threshold"].isNumber()) o.role_threshold = options["threshold"].as<double>();
  if (!options["probe_induction"].isUndefined() && !options["probe_induction"].isNull())
    o.probe_induction = emscripten::convertJSArrayToNumberVector<double>(options["probe_induction"]);
  return o;
}

val behavior(Session& session, val ids_js, val options) {
  HS_WASM_MODEL(session);
  const hs::BehaviorOptions o = behavior_options_of(options);
  HS_WASM_UNWRAP(b, hs::head_behavior(*model, ints_of(ids_js), o, session.edits));
  std::vector<std::string> roles, classes;
  for (auto r : b->role) roles.emplace_back(hs::head_role_name(r));
  for (auto c : b->stats.pattern_class) classes.emplace_back(hs::pattern_class_name(c));
  val out = ok_value();
  out.set("n_layer", b->n_layer);
  out.set("n_head", b->n_head);
  out.set("n_tokens", b->n_tokens);
  out.set("measure", std::string(hs::error_measure_name(o.detect.error_measure)));
  out.set("exclude_bos", o.detect.exclude_bos);
  out.set("exclude_current_token", o.detect.exclude_current_token);
  out.set("previous_token_score", float64_copy(b->previous_token_score));
  out.set("duplicate_token_score", float64_copy(b->duplicate_token_score));
  out.set("induction_score", float64_copy(b->induction_score));
  out.set("first_token_mass", float64_copy(b->stats.first_token_mass));
  out.set("current_token_mass", float64_copy(b->stats.current_token_mass));
  out.set("previous_token_mass", float64_copy(b->stats.previous_token_mass));
  out.set("entropy", float64_copy(b->stats.entropy));
  out.set("entropy_normalized", float64_copy(b->stats.entropy_normalized));
  out.set("dominant_offset", int32_copy(b->stats.dominant_offset));
  out.set("dominant_offset_share", float64_copy(b->stats.dominant_offset_share));
  out.set("offset_mass", float64_copy(b->stats.offset_mass));
  out.set("vertical", float64_copy(b->stats.vertical));
  out.set("diagonal", float64_copy(b->stats.diagonal));
  out.set("block", float64_copy(b->stats.block));
  out.set("pattern_class", string_list(classes));
  out.set("role", string_list(roles));
  out.set("role_scores", float64_copy(b->role_scores));
  out.set("role_confidence", float64_copy(b->role_confidence));
  out.set("role_margin", float64_copy(b->role_margin));
  out.set("role_threshold", b->role_threshold);
  out.set("roles_use_probe", b->roles_use_probe);
  return out;
}

val induction_probe(Session& session, int seq_len, int batch, double seed, val progress) {
  HS_WASM_MODEL(session);
  hs::InductionTestOptions o;
  o.seq_len = seq_len;
  o.batch = batch;
  o.seed = static_cast<std::uint64_t>(seed);
  HS_WASM_UNWRAP(t, hs::induction_test(*model, o, session.edits, progress_of(progress)));
  val out = ok_value();
  out.set("n_layer", t->n_layer);
  out.set("n_head", t->n_head);
  out.set("seq_len", t->seq_len);
  out.set("batch", t->batch);
  out.set("bos_token", t->bos_token);
  out.set("seed", static_cast<double>(t->seed));
  out.set("score", float64_copy(t->score));
  out.set("score_strict", float64_copy(t->score_strict));
  out.set("token_loss", float64_copy(t->token_loss));
  out.set("loss_first_half", t->loss_first_half);
  out.set("loss_second_half", t->loss_second_half);
  return out;
}

// Head statistics over texts (hs::corpus_stats). texts: an array of id
// arrays; options {max_tokens, resamples, level, seed} plus behaviour's.
val corpus(Session& session, val texts_js, val options, val progress) {
  HS_WASM_MODEL(session);
  const auto texts = id_lists_of(texts_js);
  hs::CorpusOptions o;
  o.behavior = behavior_options_of(options);
  if (!options.isUndefined() && !options.isNull()) {
    if (options["max_tokens"].isNumber()) o.max_tokens = options["max_tokens"].as<int>();
    if (options["resamples"].isNumber()) o.resamples = options["resamples"].as<int>();
    if (options["level"].isNumber()) o.level = options["level"].as<double>();
    if (options["seed"].isNumber()) o.seed = static_cast<std::uint64_t>(options["seed"].as<double>());
    if (options["examples"].isNumber()) o.examples = options["examples"].as<int>();
  }
  HS_WASM_UNWRAP(c, hs::corpus_stats(*model, texts, o, session.edits, progress_of(progress)));
  val out = ok_value();
  out.set("n_layer", c->n_layer);
  out.set("n_head", c->n_head);
  out.set("n_texts", c->n_texts);
  out.set("max_tokens", c->options.max_tokens);
  out.set("resamples", c->options.resamples);
  out.set("level", c->options.level);
  out.set("seed", static_cast<double>(c->options.seed));
  out.set("measure", std::string(hs::error_measure_name(o.behavior.detect.error_measure)));
  out.set("n_tokens", int32_copy(c->n_tokens));
  out.set("n_truncated", c->n_truncated);
  val metrics = val::object();
  for (const hs::MetricSummary& m : c->metrics) {
    val one = val::object();
    one.set("mean", float64_copy(m.mean));
    one.set("lo", float64_copy(m.lo));
    one.set("hi", float64_copy(m.hi));
    one.set("chance", float64_copy(m.chance));
    one.set("per_text", float64_copy(m.per_text));
    metrics.set(m.name, one);
  }
  out.set("metrics", metrics);
  val roles = val::array();
  for (int r = 0; r <= hs::kRoleCount; ++r) roles.call<void>("push", std::string(hs::head_role_name(static_cast<hs::HeadRole>(r))));
  out.set("roles", roles);
  out.set("role_share", float64_copy(c->role_share));
  out.set("dominant_offset", int32_copy(c->dominant_offset));
  out.set("dominant_offset_agreement", float64_copy(c->dominant_offset_agreement));
  // Top examples [L, H, k]: (text, query, key) triples and their weights.
  std::vector<int> where;
  std::vector<double> weights;
  for (const hs::RoleExample& e : c->examples) {
    where.insert(where.end(), {e.text, e.query, e.key});
    weights.push_back(e.weight);
  }
  out.set("examples_per_head", c->options.examples);
  out.set("example_positions", int32_copy(where));
  out.set("example_weights", float64_copy(weights));
  return out;
}

// Head importance over texts (hs::corpus_importance): options {max_tokens,
// resamples, level, seed, leave_one_out, mode, n_random}.
val corpus_importance(Session& session, val texts_js, val options, val progress) {
  HS_WASM_MODEL(session);
  const auto texts = id_lists_of(texts_js);
  hs::CorpusImportanceOptions o;
  if (!options.isUndefined() && !options.isNull()) {
    if (options["max_tokens"].isNumber()) o.max_tokens = options["max_tokens"].as<int>();
    if (options["resamples"].isNumber()) o.resamples = options["resamples"].as<int>();
    if (options["level"].isNumber()) o.level = options["level"].as<double>();
    if (options["seed"].isNumber()) o.seed = static_cast<std::uint64_t>(options["seed"].as<double>());
    if (!options["leave_one_out"].isUndefined()) o.leave_one_out = options["leave_one_out"].isTrue();
    if (options["n_random"].isNumber()) o.n_random = options["n_random"].as<int>();
    if (options["mode"].isString()) {
      HS_WASM_UNWRAP(mode, ablation_mode_of(options["mode"].as<std::string>()));
      o.mode = mode.value();
    }
    if (!options["labels"].isUndefined() && !options["labels"].isNull()) o.labels = id_lists_of(options["labels"]);
  }
  HS_WASM_UNWRAP(r, hs::corpus_importance(*model, texts, o, session.edits, progress_of(progress)));
  val out = ok_value();
  out.set("n_layer", r->n_layer);
  out.set("n_head", r->n_head);
  out.set("n_texts", r->n_texts);
  out.set("objective", std::string(hs::objective_name(r->objective)));
  out.set("mode", std::string(hs::ablation_mode_name(r->options.mode)));
  out.set("max_tokens", r->options.max_tokens);
  out.set("level", r->options.level);
  out.set("resamples", r->options.resamples);
  out.set("seed", static_cast<double>(r->options.seed));
  out.set("loss", r->loss);
  out.set("gradient", float64_copy(r->gradient));
  out.set("gradient_normalized", float64_copy(r->gradient_normalized));
  out.set("loo_mean", float64_copy(r->loo_mean));
  out.set("loo_lo", float64_copy(r->loo_lo));
  out.set("loo_hi", float64_copy(r->loo_hi));
  out.set("choose_texts", int32_copy(r->choose_texts));
  out.set("evaluate_texts", int32_copy(r->evaluate_texts));
  out.set("order", int32_copy(r->order));
  out.set("n_removed", int32_copy(r->n_removed));
  out.set("pruning_loss", float64_copy(r->pruning_loss));
  out.set("random_min", float64_copy(r->random_min));
  out.set("random_max", float64_copy(r->random_max));
  out.set("random_mean", float64_copy(r->random_mean));
  out.set("n_random", r->options.n_random);
  return out;
}

val ablate(Session& session, val ids_js, val heads_js, const std::string& mode_name, val labels) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(mode, ablation_mode_of(mode_name));
  hs::AblationOptions o;
  o.mode = mode.value();
  o.objective = loss_of(labels);
  HS_WASM_UNWRAP(a, hs::ablate_heads(*model, ints_of(ids_js), ints_of(heads_js), o, session.edits));
  val out = ok_value();
  out.set("objective", std::string(hs::objective_name(a->objective)));
  out.set("mode", mode_name);
  out.set("loss_base", a->loss_base);
  out.set("loss", a->loss);
  out.set("token_loss_base", float64_copy(a->token_loss_base));
  out.set("token_loss", float64_copy(a->token_loss));
  out.set("patterns", float32_copy(a->patterns));
  out.set("pattern_change", float32_copy(a->pattern_change));
  return out;
}

val importance(Session& session, val ids_js, const std::string& mode_name, val labels, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(mode, ablation_mode_of(mode_name));
  const auto ids = ints_of(ids_js);
  const hs::Loss loss = loss_of(labels);
  HS_WASM_UNWRAP(grad, hs::gradient_importance(*model, ids, loss, {}, session.edits));
  HS_WASM_UNWRAP(loo, hs::leave_one_out(*model, ids, mode.value(), loss, session.edits,
                                        progress_of(progress)));
  val out = ok_value();
  out.set("objective", std::string(hs::objective_name(grad->objective)));
  out.set("loss", grad->loss);
  out.set("gradient", float64_copy(grad->gradient));
  out.set("gradient_importance", float64_copy(grad->importance));
  out.set("gradient_importance_normalized", float64_copy(grad->importance_normalized));
  out.set("leave_one_out_loss", float64_copy(loo->loss));
  out.set("leave_one_out_delta", float64_copy(loo->delta));
  return out;
}

val pruning(Session& session, val ids_js, val options, val labels, val progress) {
  HS_WASM_MODEL(session);
  hs::PruningOptions o;
  o.objective = loss_of(labels);
  if (!options.isUndefined() && !options.isNull()) {
    if (options["order"].isString() && options["order"].as<std::string>() == "leave_one_out")
      o.order = hs::PruneOrder::leave_one_out;
    if (options["mode"].isString()) {
      HS_WASM_UNWRAP(mode, ablation_mode_of(options["mode"].as<std::string>()));
      o.mode = mode.value();
    }
    if (options["step"].isNumber()) o.step = options["step"].as<int>();
    if (options["n_random"].isNumber()) o.n_random = options["n_random"].as<int>();
    if (options["seed"].isNumber()) o.seed = static_cast<std::uint64_t>(options["seed"].as<double>());
    if (!options["normalize"].isUndefined()) o.normalize = options["normalize"].isTrue();
    if (!options["reestimate"].isUndefined()) o.reestimate = options["reestimate"].isTrue();
  }
  HS_WASM_UNWRAP(c, hs::pruning_curve(*model, ints_of(ids_js), o, session.edits, progress_of(progress)));
  val out = ok_value();
  out.set("order_by", std::string(hs::prune_order_name(c->options.order)));
  out.set("mode", std::string(hs::ablation_mode_name(c->options.mode)));
  out.set("step", c->step);
  out.set("normalize", c->options.normalize);
  out.set("reestimate", c->options.reestimate);
  out.set("importance", float64_copy(c->importance));
  out.set("order", int32_copy(c->order));
  out.set("n_removed", int32_copy(c->n_removed));
  out.set("loss", float64_copy(c->loss));
  out.set("random_loss", float64_copy(c->random_loss));
  out.set("random_loss_mean", float64_copy(c->random_loss_mean));
  out.set("seed", static_cast<double>(c->options.seed));
  return out;
}

// The edits in force, OV edits first, then merges: [{id, type, ...}].
val edits_value(const hs::ModelEdits& edits) {
  val out = val::array();
  for (const auto& e : edits.ov) {
    val edit = val::object();
    edit.set("id", e.id);
    edit.set("type", std::string("ov"));
    edit.set("kind", std::string(hs::ov_edit_kind_name(e.kind)));
    edit.set("layer", e.layer);
    edit.set("head", e.head);
    edit.set("component", e.component);
    edit.set("alpha", e.alpha);
    edit.set("side", std::string(hs::ov_side_name(e.side)));
    edit.set("sigma", e.sigma);
    edit.set("variant", std::string(hs::weight_variant_name(e.variant)));
    out.call<void>("push", edit);
  }
  for (const auto& m : edits.merges) {
    val edit = val::object();
    edit.set("id", m.id);
    edit.set("type", std::string("merge"));
    edit.set("layer", m.layer);
    edit.set("head_a", m.head_a);
    edit.set("head_b", m.head_b);
    edit.set("pattern_head", m.pattern_head);
    edit.set("truncation_error", m.truncation_error);
    out.call<void>("push", edit);
  }
  return out;
}

val add_ov_edit(Session& session, const std::string& kind_name, int layer, int head, int component, double alpha,
                const std::string& side_name, const std::string& variant_name) {
  HS_WASM_MODEL(session);
  hs::OvEditKind kind = hs::OvEditKind::remove_component;
  bool known = false;
  for (auto k : {hs::OvEditKind::rank_one, hs::OvEditKind::rank_one_scaled, hs::OvEditKind::remove_component})
    if (kind_name == hs::ov_edit_kind_name(k)) kind = k, known = true;
  if (!known)
    return error_value(hs::make_error("OV edit kind must be \"remove_component\", \"rank_one_scaled\" or \"rank_one\", not \"" +
                                      kind_name.substr(0, 40) + "\""));
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  if (side_name != "read" && side_name != "write")
    return error_value(hs::make_error("OV edit side must be \"read\" or \"write\", not \"" + side_name + "\""));
  const hs::OvSide side = side_name == "read" ? hs::OvSide::read : hs::OvSide::write;
  HS_WASM_UNWRAP(edit, hs::make_ov_edit(*model, kind, layer, head, component, static_cast<float>(alpha), side,
                                        variant.value()));
  const int id = hs::add_edit(session.edits, std::move(edit.value()));
  val out = ok_value();
  out.set("id", id);
  out.set("edits", edits_value(session.edits));
  return out;
}

val add_merge(Session& session, int layer, int head_a, int head_b, int pattern_head) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(merge, hs::make_head_merge(*model, layer, head_a, head_b, pattern_head));
  const int id = hs::add_merge(session.edits, std::move(merge.value()));
  val out = ok_value();
  out.set("id", id);
  out.set("edits", edits_value(session.edits));
  return out;
}

val undo_edit(Session& session, int id) {
  if (!hs::undo_edit(session.edits, id)) return error_value(hs::make_error("no edit with id " + std::to_string(id)));
  val out = ok_value();
  out.set("edits", edits_value(session.edits));
  return out;
}

val list_edits(Session& session) {
  val out = ok_value();
  out.set("edits", edits_value(session.edits));
  return out;
}

val evaluate_merge(Session& session, val ids_js, int layer, int head_a, int head_b, val labels, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(r, hs::evaluate_head_merge(*model, ints_of(ids_js), layer, head_a, head_b, loss_of(labels),
                                            session.edits, progress_of(progress)));
  val out = ok_value();
  out.set("layer", r->layer);
  out.set("head_a", r->head_a);
  out.set("head_b", r->head_b);
  out.set("objective", std::string(hs::objective_name(r->objective)));
  out.set("loss_base", r->loss_base);
  out.set("loss_prune_a", r->loss_prune_a);
  out.set("loss_prune_b", r->loss_prune_b);
  out.set("loss_prune_both", r->loss_prune_both);
  out.set("loss_merged_pattern_a", r->loss_merged_pattern_a);
  out.set("loss_merged_pattern_b", r->loss_merged_pattern_b);
  out.set("best_pattern_head", r->best_pattern_head);
  out.set("loss_merged", r->loss_merged);
  out.set("sigma", float64_copy(r->sigma));
  out.set("truncation_error", r->truncation_error);
  return out;
}

// ---------------------------------------------------------------------------
// Patching and direct logit attribution (core/patching.hpp). options:
// {metric: "logit_diff" | "loss", answer, wrong (-1: none), position (-1: the
// last)} and, for patch, {target, direction}; for path_patch {receivers:
// ["L9H9:q", ...]} (empty: the logits).

hs::Result<hs::PatchMetric> patch_metric_of(val options) {
  hs::PatchMetric m;
  const std::string kind = options["metric"].isString() ? options["metric"].as<std::string>() : "logit_diff";
  if (kind == "loss") m.kind = hs::MetricKind::loss;
  else if (kind != "logit_diff") return hs::make_error("metric '" + kind.substr(0, 40) + "': expected logit_diff or loss");
  if (options["answer"].isNumber()) m.answer = options["answer"].as<int>();
  if (options["wrong"].isNumber()) m.wrong = options["wrong"].as<int>();
  if (options["position"].isNumber()) m.position = options["position"].as<int>();
  return m;
}

void set_metric(val& out, const hs::PatchMetric& m) {
  out.set("metric", std::string(hs::metric_kind_name(m.kind)));
  out.set("answer", m.answer);
  out.set("wrong", m.wrong);
  out.set("position", m.position);
}

val patch(Session& session, val clean_js, val corrupt_js, val options, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(metric, patch_metric_of(options));
  hs::PatchOptions o;
  o.metric = *metric;
  const std::string target = options["target"].isString() ? options["target"].as<std::string>() : "heads";
  const hs::PatchTarget targets[] = {hs::PatchTarget::heads, hs::PatchTarget::heads_by_position, hs::PatchTarget::resid,
                                     hs::PatchTarget::q,     hs::PatchTarget::k,                 hs::PatchTarget::v};
  bool known = false;
  for (hs::PatchTarget t : targets)
    if (target == hs::patch_target_name(t)) o.target = t, known = true;
  if (!known)
    return error_value(hs::make_error("patch target '" + target.substr(0, 40) +
                                      "': expected heads, heads_by_position, resid, q, k or v"));
  const std::string direction = options["direction"].isString() ? options["direction"].as<std::string>() : "denoise";
  if (direction == "noise") o.direction = hs::PatchDirection::noise;
  else if (direction != "denoise")
    return error_value(hs::make_error("patch direction '" + direction.substr(0, 40) + "': expected denoise or noise"));
  HS_WASM_UNWRAP(r, hs::activation_patch(*model, ints_of(clean_js), ints_of(corrupt_js), o, session.edits,
                                         progress_of(progress)));
  val out = ok_value();
  out.set("target", std::string(hs::patch_target_name(r->target)));
  out.set("direction", std::string(hs::patch_direction_name(r->direction)));
  set_metric(out, r->metric);
  out.set("n_layer", r->n_layer);
  out.set("n_head", r->n_head);
  out.set("n_kv_head", r->n_kv_head);
  out.set("n_tokens", r->n_tokens);
  out.set("clean", r->clean);
  out.set("corrupt", r->corrupt);
  out.set("shape", int32_copy(r->shape));
  out.set("value", float64_copy(r->value));
  out.set("effect", float64_copy(r->effect));
  return out;
}

val path_patch(Session& session, val clean_js, val corrupt_js, val options, val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(metric, patch_metric_of(options));
  hs::PathPatchOptions o;
  o.metric = *metric;
  if (options["receivers"].isArray()) {
    for (const std::string& text : emscripten::vecFromJSArray<std::string>(options["receivers"])) {
      HS_WASM_UNWRAP(receiver, hs::parse_receiver(text));
      o.receivers.push_back(*receiver);
    }
  }
  HS_WASM_UNWRAP(r, hs::path_patch(*model, ints_of(clean_js), ints_of(corrupt_js), o, session.edits,
                                   progress_of(progress)));
  val out = ok_value();
  set_metric(out, r->metric);
  val receivers = val::array();
  for (const auto& receiver : r->receivers) receivers.call<void>("push", hs::receiver_name(receiver));
  out.set("receivers", receivers);
  out.set("n_layer", r->n_layer);
  out.set("n_head", r->n_head);
  out.set("n_tokens", r->n_tokens);
  out.set("clean", r->clean);
  out.set("corrupt", r->corrupt);
  out.set("value", float64_copy(r->value));
  out.set("effect", float64_copy(r->effect));
  return out;
}

val dla(Session& session, val ids_js, val options) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(metric, patch_metric_of(options));
  HS_WASM_UNWRAP(r, hs::direct_logit_attribution(*model, ints_of(ids_js), *metric, session.edits));
  val out = ok_value();
  set_metric(out, r->metric);
  out.set("n_layer", r->n_layer);
  out.set("n_head", r->n_head);
  out.set("n_tokens", r->n_tokens);
  out.set("heads", float64_copy(r->heads));
  out.set("attn_bias", float64_copy(r->attn_bias));
  out.set("edit_paths", float64_copy(r->edit_paths));
  out.set("mlp", float64_copy(r->mlp));
  out.set("embed", float64_copy(r->embed));
  out.set("bias", float64_copy(r->bias));
  out.set("total", float64_copy(r->total));
  return out;
}

// Full circuits (core/full_circuits.hpp): the diagonal tests of the full OV
// and token QK circuits of `heads` (flat indices; empty: every head), exact
// up to max_rows tokens, else on a seeded sample; and the positional QK
// circuit over the first max_positions positions.
val geometry_full_circuits(Session& session, const std::string& variant_name, val heads_js, int max_rows, double seed,
                           val progress) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(r, hs::full_circuit_tests(*model, variant.value(), ints_of(heads_js), max_rows,
                                           static_cast<std::uint64_t>(seed), progress_of(progress)));
  auto tests = [](const std::vector<hs::DiagonalTest>& list) {
    std::vector<double> top1, top5, median, mean;
    for (const auto& t : list) {
      top1.push_back(t.top1);
      top5.push_back(t.top5);
      median.push_back(t.median_rank);
      mean.push_back(t.mean_rank);
    }
    val out = val::object();
    out.set("top1", float64_copy(top1));
    out.set("top5", float64_copy(top5));
    out.set("median_rank", float64_copy(median));
    out.set("mean_rank", float64_copy(mean));
    return out;
  };
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("d_vocab", r->d_vocab);
  out.set("heads", int32_copy(r->heads));
  out.set("n_rows", static_cast<int>(r->tokens.size()));
  out.set("sampled", r->sampled);
  out.set("seed", static_cast<double>(r->seed));
  out.set("ov", tests(r->ov));
  out.set("qk", tests(r->qk));
  return out;
}

val geometry_positional(Session& session, const std::string& variant_name, val heads_js, int max_positions) {
  HS_WASM_MODEL(session);
  HS_WASM_UNWRAP(variant, variant_of(variant_name));
  HS_WASM_UNWRAP(r, hs::positional_qk(*model, variant.value(), ints_of(heads_js), max_positions));
  val out = ok_value();
  out.set("variant", variant_name);
  out.set("heads", int32_copy(r->heads));
  out.set("n_positions", r->n_positions);
  out.set("patterns", float32_copy(r->patterns));
  out.set("previous", float64_copy(r->previous));
  out.set("current", float64_copy(r->current));
  out.set("previous_chance", r->previous_chance);
  return out;
}

}  // namespace
}  // namespace hs_wasm

EMSCRIPTEN_BINDINGS(headscope) {
  using namespace hs_wasm;
  emscripten::function("singular_values", &singular_values);
  emscripten::function("mask_tokens", &mask_tokens);
  emscripten::function("safetensors_header_length", &safetensors_header_length);
  emscripten::function("safetensors_index_shards", &safetensors_index_shards);
  // Threads (the threaded build; wasm/headscope.mjs keeps the count within
  // the module's pool of pthreads): the count in force after the call.
  emscripten::function("set_thread_count", &hs::set_thread_count);
  emscripten::class_<Session>("Session")
      .constructor<>()
      .function("add_file", &Session::add_file)
      .function("corpus", &corpus)
      .function("corpus_importance", &corpus_importance)
      .function("read_plan", &Session::read_plan)
      .function("load", &Session::load)
      .function("info", &Session::info)
      .function("run", &Session::run)
      .function("clear_files", &Session::clear_files)
      .function("geometry_spectra", &geometry_spectra)
      .function("geometry_redundancy", &geometry_redundancy)
      .function("geometry_composition", &geometry_composition)
      .function("geometry_weights", &geometry_weights)
      .function("geometry_merge_candidates", &geometry_merge_candidates)
      .function("geometry_readout", &geometry_readout)
      .function("geometry_pair", &geometry_pair)
      .function("geometry_copying", &geometry_copying)
      .function("behavior", &behavior)
      .function("induction_probe", &induction_probe)
      .function("ablate", &ablate)
      .function("importance", &importance)
      .function("pruning", &pruning)
      .function("add_ov_edit", &add_ov_edit)
      .function("add_merge", &add_merge)
      .function("undo_edit", &undo_edit)
      .function("list_edits", &list_edits)
      .function("evaluate_merge", &evaluate_merge)
      .function("patch", &patch)
      .function("path_patch", &path_patch)
      .function("dla", &dla)
      .function("geometry_full_circuits", &geometry_full_circuits)
      .function("geometry_positional", &geometry_positional);
}
