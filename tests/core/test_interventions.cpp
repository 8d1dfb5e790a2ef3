// Interventions against references: zero-ablation and gradient importance
// against Hugging Face's head_mask (the gpt2 and gpt_neox oracle fixtures,
// 1e-4); the reverse pass against central finite differences of run_model's
// loss on every family (edits and gates included); mean-ablation against the
// on_z hook; OV edits against explicit weight changes; alpha = 0, undo and
// merging a head with its own copy as identities; pruning-curve invariants.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "fixture_model.hpp"
#include "forward.hpp"
#include "geometry.hpp"
#include "interventions.hpp"
#include "processing.hpp"

using namespace hs;
using namespace hs::test;

namespace {

const double kOracleTol = 1e-4;

bool reporting() { return std::getenv("HEADSCOPE_REPORT") != nullptr; }

NpyArray must_load(const std::string& path) {
  auto a = npy_load(path);
  INFO(path << ": " << (a.ok() ? "" : a.error().message));
  REQUIRE(a.ok());
  return std::move(a).value();
}

void check_close(const std::string& what, const std::vector<double>& got, const std::vector<double>& want, double tol,
                 const std::vector<std::int64_t>& shape = {}) {
  const Mismatch m = compare_arrays(got, want, tol);
  INFO(what << " (tolerance " << tol << "): " << m.describe(shape));
  CHECK(m.same_size);
  CHECK(m.max_abs <= tol);
  if (reporting()) WARN(what << ": max |diff| = " << m.max_abs);
}

// The objective straight from run_model's own outputs, for finite differences.
double run_objective(const Model& model, const std::vector<int>& ids, const ModelEdits& edits,
                     const std::vector<float>& gate, Objective objective) {
  RunOptions opt;
  opt.head_gate = gate;
  opt.want_patterns = false;
  auto run = must(run_edited(model, ids, edits, opt));
  if (objective == Objective::next_token) return run.loss;
  // hidden_energy: 0.5 * mean_t |h_t|^2 of the last hidden state.
  const int T = run.n_tokens, d = run.d_model;
  const float* h = run.hidden.data() + run.hidden.size() - static_cast<std::size_t>(T) * d;
  double e = 0;
  for (int i = 0; i < T * d; ++i) e += 0.5 * double(h[i]) * h[i];
  return e / T;
}

// Central differences in the gate of every head, Richardson-extrapolated:
// D(e) = (f(g + e) - f(g - e)) / 2e has error f''' e^2 / 6 + O(e^4);
// (4 D(e/2) - D(e)) / 3 cancels the e^2 term. With e = 0.1 the remaining
// truncation is O(1e-4 * f^(5)) and float32 rounding in f (about 1e-6
// absolute on a loss near 5) contributes ~1e-6 / 0.05 = 2e-5.
std::vector<double> finite_difference_gate(const Model& model, const std::vector<int>& ids, const ModelEdits& edits,
                                           std::vector<float> gate, Objective objective) {
  const int N = model.config.n_layer * model.config.n_head;
  if (gate.empty()) gate.assign(N, 1.f);
  std::vector<double> out;
  for (int i = 0; i < N; ++i) {
    auto D = [&](float e) {
      std::vector<float> gp = gate, gm = gate;
      gp[i] += e;
      gm[i] -= e;
      // The actual step after float rounding of the gate.
      const double step = double(gp[i]) - double(gm[i]);
      return (run_objective(model, ids, edits, gp, objective) - run_objective(model, ids, edits, gm, objective)) / step;
    };
    out.push_back((4 * D(0.05f) - D(0.1f)) / 3);
  }
  return out;
}

std::vector<double> to_double(const NpyArray& a) { return a.data; }

}  // namespace

// ---------------------------------------------------------------------------
// The oracle

static void check_oracle(const std::string& name) {
  const Model model = must_model(name);
  const std::vector<int> ids = must_ids(name);
  const std::string dir = fixture_dir(name);
  const int L = model.config.n_layer, H = model.config.n_head;

  // Leave-one-out zero-ablation = HF with head_mask zero at that head.
  const LeaveOneOut loo = must(leave_one_out(model, ids, AblationMode::zero));
  check_close(name + " loss_zero_ablate_each_head", loo.loss, to_double(must_load(dir + "/loss_zero_ablate_each_head.npy")),
              kOracleTol, {L, H});

  // L0H1 and L1H3 together.
  AblationOptions ao;
  ao.want_logits = true;
  const AblationResult ab = must(ablate_heads(model, ids, {0 * H + 1, 1 * H + 3}, ao));
  const NpyArray want_logits = must_load(dir + "/logits_ablate_L0H1_L1H3.npy");
  const std::vector<double> got_logits(ab.logits.begin(), ab.logits.end());
  check_close(name + " logits_ablate_L0H1_L1H3", got_logits, want_logits.data, kOracleTol, want_logits.shape);
  auto text = must(read_text_file(dir + "/ablation.json"));
  const auto j = nlohmann::json::parse(text, nullptr, false);
  REQUIRE(j.is_object());
  REQUIRE(j["loss"].is_number());
  REQUIRE(j["loss_ablate_L0H1_L1H3"].is_number());
  check_close(name + " ablation.json losses", {ab.loss_base, ab.loss},
              {j["loss"].get<double>(), j["loss_ablate_L0H1_L1H3"].get<double>()}, kOracleTol);
  CHECK(ab.token_loss.size() == ids.size() - 1);
  // The gate shows in the patterns: the ablated head reads 0, a later head changes.
  const std::size_t T = ids.size();
  REQUIRE(ab.patterns.size() == static_cast<std::size_t>(L * H) * T * T);
  for (std::size_t e = 0; e < T * T; ++e) CHECK(ab.patterns[(0 * H + 1) * T * T + e] == 0.f);
  CHECK(ab.pattern_change[0 * H + 1] > 0.f);
  CHECK(ab.pattern_change[0 * H + 0] == 0.f);  // same layer, not ablated: untouched
  CHECK(ab.pattern_change[1 * H + 0] > 0.f);   // downstream

  // Michel et al. importance = |dLoss/d head_mask| from torch autograd.
  const GradientImportance gi = must(gradient_importance(model, ids));
  check_close(name + " head_importance_abs_grad", gi.importance,
              to_double(must_load(dir + "/head_importance_abs_grad.npy")), kOracleTol, {L, H});
  CHECK(std::fabs(gi.loss - j["loss"].get<double>()) <= kOracleTol);
  // Normalised importance lies in [0, 1] with both ends reached.
  double mn = 1, mx = 0;
  for (double v : gi.importance_normalized) mn = std::min(mn, v), mx = std::max(mx, v);
  CHECK(mn == 0.0);
  CHECK(mx == 1.0);
}

TEST_CASE("interventions: gpt2 ablation and gradient importance match transformers' head_mask", "[interventions]") {
  check_oracle("gpt2");
}
TEST_CASE("interventions: gpt_neox ablation and gradient importance match transformers' head_mask",
          "[interventions]") {
  check_oracle("gpt_neox");
}

// ---------------------------------------------------------------------------
// The reverse pass against finite differences

// Tolerance: |grad - fd| <= 2e-4 + 1e-3 |fd|. The gradients are O(0.01 - 1);
// the reverse pass runs in float32 (relative error ~1e-6 per GEMM, ~1e-5 after
// the blocks) and the differences carry the 2e-5 of finite_difference_gate.
static void check_fd(const Model& model, const std::vector<int>& ids, const std::string& name,
                     const ModelEdits& edits = {}, std::vector<float> gate = {}) {
  const Objective objective = model.config.has_lm_head ? Objective::next_token : Objective::hidden_energy;
  const GradientImportance gi = must(gradient_importance(model, ids, Objective::automatic, gate, edits));
  CHECK(gi.objective == objective);
  const std::vector<double> fd = finite_difference_gate(model, ids, edits, gate, objective);
  REQUIRE(fd.size() == gi.gradient.size());
  double worst = 0;
  std::size_t at = 0;
  bool ok = true;
  for (std::size_t i = 0; i < fd.size(); ++i) {
    const double err = std::fabs(gi.gradient[i] - fd[i]);
    if (err > 2e-4 + 1e-3 * std::fabs(fd[i])) ok = false;
    if (err > worst) worst = err, at = i;
  }
  INFO(name << (edits.empty() ? "" : " (edited)") << ": worst |grad - fd| = " << worst << " at head " << at
            << " (grad " << gi.gradient[at] << ", fd " << fd[at] << ")");
  CHECK(ok);
  if (reporting()) WARN(name << (edits.empty() ? "" : " edited") << " gradient vs finite differences: max |diff| = " << worst);
  // The objective's value is run_model's.
  CHECK(std::fabs(gi.loss - run_objective(model, ids, edits, gate, objective)) <= 1e-6);
}

TEST_CASE("interventions: head-gate gradients equal finite differences on every family", "[interventions][gradient]") {
  for (const char* name : {"gpt2", "gpt_neox", "llama", "bert", "gpt_neo"}) {
    SECTION(name) { check_fd(must_model(name), must_ids(name), name); }
  }
  SECTION("opt") {
    // OPT's ReLU has kinks that a step of 0.05 in the gate crosses (the
    // differences move by 3e-3 between steps 0.1 and 0.003), so the strict
    // check runs on the same weights with a smooth activation; the ReLU model
    // is checked with a small plain central difference below.
    Model model = must_model("opt");
    model.config.act = Activation::gelu;
    check_fd(model, must_ids("opt"), "opt (gelu)");
  }
}

#ifdef HEADSCOPE_FAMILIES_REF
TEST_CASE("interventions: head-gate gradients equal finite differences on the LLaMA-shaped families",
          "[interventions][gradient]") {
  // Through the q/k norms (per head, over the projection), NoPE layers,
  // norms after the sublayers (OLMo 2) and around them (Gemma 2/3), Gemma 2's
  // soft-capped scores and logits, Gemma 3's local RoPE, Phi-3's scaled LongRoPE, StableLM's per-head q/k LayerNorms
  // and parallel blocks.
  for (const char* name : {"qwen3", "smollm3", "olmo2", "gemma", "gemma2", "gemma3", "phi3", "stablelm_parallel"}) {
    SECTION(name) {
      const std::string dir = std::string(HEADSCOPE_FAMILIES_REF) + "/" + name;
      const ModelConfig config = must(config_from_json(must(read_text_file(dir + "/config.json"))));
      auto bytes = must(safetensors_read_bytes(dir + "/model.safetensors"));
      auto file = must(safetensors_parse(bytes.data(), bytes.size(), "model.safetensors"));
      const Model model = must(model_from_checkpoint(config, {&file}));
      std::vector<int> ids;
      for (double v : must(npy_load(dir + "/input_ids.npy")).data) ids.push_back(static_cast<int>(v));
      check_fd(model, ids, name);
    }
  }
}
#endif

TEST_CASE("interventions: OPT's ReLU gradients approach small-step differences", "[interventions][gradient]") {
  const Model model = must_model("opt");
  const std::vector<int> ids = must_ids("opt");
  const GradientImportance gi = must(gradient_importance(model, ids));
  // Step 1e-3: float32 rounding in the loss (~1e-6) gives ~5e-4 of noise,
  // and a kink inside the step a comparable error; measured worst 1.6e-4 to
  // 2.6e-4 (it moves with the GEMM kernel's summation order).
  double worst = 0;
  for (int i = 0; i < 8; ++i) {
    std::vector<float> gp(8, 1.f), gm(8, 1.f);
    gp[i] += 1e-3f;
    gm[i] -= 1e-3f;
    const double fd = (run_objective(model, ids, {}, gp, Objective::next_token) -
                       run_objective(model, ids, {}, gm, Objective::next_token)) /
                      (double(gp[i]) - gm[i]);
    worst = std::max(worst, std::fabs(fd - gi.gradient[i]));
  }
  INFO("worst |grad - fd| = " << worst);
  CHECK(worst <= 1e-3);
  if (reporting()) WARN("opt (relu) gradient vs step-1e-3 differences: max |diff| = " << worst);
}

TEST_CASE("interventions: gradients through OV edits, merges and partial gates equal finite differences",
          "[interventions][gradient]") {
  for (const char* name : {"gpt2", "llama", "gpt_neox"}) {
    SECTION(name) {
      const Model model = must_model(name);
      ModelEdits edits;
      add_edit(edits, must(make_ov_edit(model, OvEditKind::rank_one, 0, 2, 0, 0.8f)));
      add_edit(edits, must(make_ov_edit(model, OvEditKind::remove_component, 1, 1, 1, 1.f)));
      add_merge(edits, must(make_head_merge(model, 0, 0, 3, 3)));
      std::vector<float> gate(model.config.n_layer * model.config.n_head, 1.f);
      gate[1] = 0.5f;
      gate[6] = 0.f;
      check_fd(model, must_ids(name), name, edits, gate);
    }
  }
}

// ---------------------------------------------------------------------------
// Ablation

TEST_CASE("interventions: mean-ablating one head equals replacing its z by the mean over positions",
          "[interventions]") {
  for (const char* name : {"gpt2", "llama"}) {
    const Model model = must_model(name);
    const std::vector<int> ids = must_ids(name);
    const int dh = model.config.d_head, H = model.config.n_head, layer = 0, h = 2;
    AblationOptions ao;
    ao.mode = AblationMode::mean;
    ao.want_logits = true;
    const AblationResult ab = must(ablate_heads(model, ids, {layer * H + h}, ao));
    RunOptions opt;
    opt.on_z = [&](int l, MatrixRM& z) {
      if (l != layer) return;
      const RowVectorF mu = z.middleCols(h * dh, dh).colwise().mean();
      z.middleCols(h * dh, dh).rowwise() = mu;
    };
    const RunResult want = must(run_model(model, ids, opt));
    const Mismatch m = compare_arrays(ab.logits, want.logits, 1e-5);
    INFO(name << " mean ablation logits: " << m.describe());
    CHECK(m.max_abs <= 1e-5);
    CHECK(std::fabs(ab.loss - want.loss) <= 1e-5);
    CHECK(ab.loss != ab.loss_base);
  }
}

TEST_CASE("interventions: leave-one-out deltas are ablate_heads losses minus the base", "[interventions]") {
  const Model model = must_model("llama");
  const std::vector<int> ids = must_ids("llama");
  const LeaveOneOut loo = must(leave_one_out(model, ids, AblationMode::mean));
  for (int i : {0, 5}) {
    AblationOptions ao;
    ao.mode = AblationMode::mean;
    ao.want_patterns = false;
    const AblationResult ab = must(ablate_heads(model, ids, {i}, ao));
    CHECK(loo.loss[i] == ab.loss);
    CHECK(loo.delta[i] == ab.loss - ab.loss_base);
  }
}

TEST_CASE("interventions: bad requests are errors naming the problem", "[interventions]") {
  const Model gpt2 = must_model("gpt2");
  const Model bert = must_model("bert");
  const std::vector<int> ids = must_ids("gpt2");
  auto bad_head = ablate_heads(gpt2, ids, {8});
  REQUIRE_FALSE(bad_head.ok());
  CHECK_THAT(bad_head.error().message, Catch::Contains("head index 8"));
  auto no_lm = gradient_importance(bert, ids, Objective::next_token);
  REQUIRE_FALSE(no_lm.ok());
  CHECK_THAT(no_lm.error().message, Catch::Contains("no LM head"));
  auto comp = make_ov_edit(gpt2, OvEditKind::rank_one, 0, 0, 16, 1.f);
  REQUIRE_FALSE(comp.ok());
  CHECK_THAT(comp.error().message, Catch::Contains("component 16"));
  auto self = make_head_merge(gpt2, 0, 1, 1, 1);
  REQUIRE_FALSE(self.ok());
  auto gate = gradient_importance(gpt2, ids, Objective::automatic, {1.f, 1.f});
  REQUIRE_FALSE(gate.ok());
  CHECK_THAT(gate.error().message, Catch::Contains("head_gate"));
  bool called = false;
  auto cancel = leave_one_out(gpt2, ids, AblationMode::zero, Objective::automatic, {}, [&](double) {
    called = true;
    return false;
  });
  CHECK(called);
  REQUIRE_FALSE(cancel.ok());
  CHECK(cancel.error().message == "cancelled");
}

// ---------------------------------------------------------------------------
// Edits

TEST_CASE("interventions: an edit with alpha 0 changes nothing and undoing restores the exact numbers",
          "[interventions][edits]") {
  for (const char* name : {"gpt2", "llama"}) {
    const Model model = must_model(name);
    const std::vector<int> ids = must_ids(name);
    const RunResult base = must(run_model(model, ids));
    ModelEdits edits;
    add_edit(edits, must(make_ov_edit(model, OvEditKind::rank_one, 0, 1, 0, 0.f)));
    add_edit(edits, must(make_ov_edit(model, OvEditKind::remove_component, 1, 2, 3, 0.f)));
    const RunResult zero = must(run_edited(model, ids, edits));
    CHECK(zero.loss == base.loss);
    CHECK(zero.logits == base.logits);
    CHECK(zero.patterns == base.patterns);

    const int id = add_edit(edits, must(make_ov_edit(model, OvEditKind::rank_one, 0, 1, 0, 1.5f)));
    const RunResult edited = must(run_edited(model, ids, edits));
    CHECK(edited.loss != base.loss);
    REQUIRE(undo_edit(edits, id));
    CHECK_FALSE(undo_edit(edits, id));
    while (!edits.ov.empty()) REQUIRE(undo_edit(edits, edits.ov.back().id));
    const RunResult undone = must(run_edited(model, ids, edits));
    CHECK(undone.loss == base.loss);
    CHECK(undone.logits == base.logits);
    // Every analysis follows the edits: gradients and losses move, then return.
    const GradientImportance g0 = must(gradient_importance(model, ids));
    add_edit(edits, must(make_ov_edit(model, OvEditKind::rank_one, 0, 1, 0, 1.5f)));
    const GradientImportance g1 = must(gradient_importance(model, ids, Objective::automatic, {}, edits));
    CHECK(g1.loss == edited.loss);
    CHECK(g1.gradient != g0.gradient);
  }
}

TEST_CASE("interventions: removing an OV component through the extra path equals editing W_O", "[interventions][edits]") {
  // W_OV - alpha sigma_k U_k V_k^T = W_V (W_O (I - alpha V_k V_k^T)), since
  // U_k sigma_k = W_V W_O V_k: the edit as a plain weight change. The weight
  // change would also edit the value-bias path b_V W_O, which is not part of
  // the circuit; the head's b_V is zeroed in both runs to compare.
  Model model = must_model("gpt2");
  const std::vector<int> ids = must_ids("gpt2");
  const int layer = 1, head = 2, k = 0, dh = model.config.d_head;
  model.weights.layers[layer].b_V.segment(head * dh, dh).setZero();
  const float alpha = 0.7f;
  const OvEdit e = must(make_ov_edit(model, OvEditKind::remove_component, layer, head, k, alpha));
  CHECK(e.coeff == Approx(-alpha * e.sigma).epsilon(1e-6));
  ModelEdits edits;
  add_edit(edits, e);
  const RunResult by_path = must(run_edited(model, ids, edits));

  const HeadCircuitSvd svd = must(head_circuit_svd(model, WeightVariant::raw, layer, head, Circuit::ov));
  const Eigen::VectorXd v = svd.svd.V.col(k);
  auto W_O = model.weights.layers[layer].W_O.middleRows(head * dh, dh);
  const MatrixRMd edited = W_O.cast<double>() * (MatrixRMd::Identity(v.size(), v.size()) - alpha * v * v.transpose());
  W_O = edited.cast<float>();
  const RunResult by_weights = must(run_model(model, ids));
  const Mismatch m = compare_arrays(by_path.logits, by_weights.logits, 1e-5);
  INFO(m.describe());
  CHECK(m.max_abs <= 1e-5);
  if (reporting()) WARN("remove_component path vs W_O edit: max |logit diff| = " << m.max_abs);
  CHECK(std::fabs(by_path.loss - by_weights.loss) <= 1e-5);
}

TEST_CASE("interventions: an edit made from the processed weights does to them what it says", "[interventions][edits]") {
  // The page displays processed weights by default, so "component k" must be
  // the processed W_OV's. Removing it through the raw forward's extra path
  // (read side mapped through the norm's gamma and beta) must give the run of
  // the processed model whose W_O is edited the same way (its b_V is folded
  // away, so the weight edit touches nothing else); the two differ only by
  // the constant per position that center_unembed moves the logits by.
  for (const char* name : {"gpt2", "gpt_neox", "llama"}) {
    INFO(name);
    const Model model = must_model(name);
    const std::vector<int> ids = must_ids(name);
    const int layer = 1, head = 2, k = 1, dh = model.config.d_head;
    const float alpha = 1.f;
    const OvEdit e = must(make_ov_edit(model, OvEditKind::remove_component, layer, head, k, alpha, OvSide::write,
                                       WeightVariant::processed));
    ModelEdits edits;
    add_edit(edits, e);
    const RunResult by_path = must(run_edited(model, ids, edits));

    Model processed = must(process_weights(model));
    const HeadCircuitSvd svd = must(head_circuit_svd(model, WeightVariant::processed, layer, head, Circuit::ov));
    CHECK(e.sigma == Approx(svd.svd.S[k]));
    const Eigen::VectorXd v = svd.svd.V.col(k);
    auto W_O = processed.weights.layers[layer].W_O.middleRows(head * dh, dh);
    const MatrixRMd edited = W_O.cast<double>() * (MatrixRMd::Identity(v.size(), v.size()) - alpha * v * v.transpose());
    W_O = edited.cast<float>();
    const RunResult by_weights = must(run_model(processed, ids));
    const RunResult unedited = must(run_model(model, ids));
    const int T = by_path.n_tokens, V = by_path.d_vocab;
    double worst = 0, change = 0;
    for (int t = 0; t < T; ++t) {
      double mean_a = 0, mean_b = 0, mean_c = 0;
      for (int j = 0; j < V; ++j) {
        mean_a += by_path.logits[t * V + j] / V;
        mean_b += by_weights.logits[t * V + j] / V;
        mean_c += unedited.logits[t * V + j] / V;
      }
      for (int j = 0; j < V; ++j) {
        worst = std::max(worst, std::fabs((by_path.logits[t * V + j] - mean_a) - (by_weights.logits[t * V + j] - mean_b)));
        change = std::max(change, std::fabs((by_path.logits[t * V + j] - mean_a) - (unedited.logits[t * V + j] - mean_c)));
      }
    }
    INFO("max |centred logit difference| " << worst << "; the edit moves them by up to " << change);
    CHECK(worst <= 1e-4);
    CHECK(change > 1e-2);  // the edit did something
  }
}

TEST_CASE("interventions: the rank-one edit uses the paper's u_k, TL's write side, unless asked otherwise",
          "[interventions][edits]") {
  const Model model = must_model("gpt_neox");
  const HeadCircuitSvd svd = must(head_circuit_svd(model, WeightVariant::raw, 1, 3, Circuit::ov));
  const OvEdit w = must(make_ov_edit(model, OvEditKind::rank_one, 1, 3, 2, 0.5f));
  const OvEdit r = must(make_ov_edit(model, OvEditKind::rank_one, 1, 3, 2, 0.5f, OvSide::read));
  for (int m = 0; m < model.config.d_model; ++m) {
    CHECK(w.read[m] == static_cast<float>(svd.svd.V(m, 2)));
    CHECK(w.write[m] == w.read[m]);
    CHECK(r.read[m] == static_cast<float>(svd.svd.U(m, 2)));
  }
  CHECK(w.coeff == -0.5f);
  CHECK(w.sigma == svd.svd.S[2]);
}

// ---------------------------------------------------------------------------
// Merging

TEST_CASE("interventions: merging a head with an identical copy of itself changes nothing", "[interventions][merge]") {
  Model model = must_model("gpt2");
  const std::vector<int> ids = must_ids("gpt2");
  const ModelConfig& c = model.config;
  const int layer = 0, a = 1, b = 2, dh = c.d_head;
  LayerWeights& lw = model.weights.layers[layer];
  lw.W_Q.middleCols(b * dh, dh) = lw.W_Q.middleCols(a * dh, dh);
  lw.W_K.middleCols(b * dh, dh) = lw.W_K.middleCols(a * dh, dh);
  lw.W_V.middleCols(b * dh, dh) = lw.W_V.middleCols(a * dh, dh);
  lw.W_O.middleRows(b * dh, dh) = lw.W_O.middleRows(a * dh, dh);
  lw.b_Q.segment(b * dh, dh) = lw.b_Q.segment(a * dh, dh);
  lw.b_K.segment(b * dh, dh) = lw.b_K.segment(a * dh, dh);
  lw.b_V.segment(b * dh, dh) = lw.b_V.segment(a * dh, dh);
  const RunResult base = must(run_model(model, ids));

  const HeadMerge merge = must(make_head_merge(model, layer, a, b, a));
  CHECK(merge.truncation_error < 1e-6);  // 2 OV_a has rank <= d_head
  ModelEdits edits;
  add_merge(edits, merge);
  const RunResult merged = must(run_edited(model, ids, edits));
  const Mismatch m = compare_arrays(merged.logits, base.logits, 1e-5);
  INFO(m.describe());
  CHECK(m.max_abs <= 1e-5);
  if (reporting()) WARN("merge with an identical copy: max |logit diff| = " << m.max_abs);

  const MergeReport rep = must(evaluate_head_merge(model, ids, layer, a, b));
  CHECK(std::fabs(rep.loss_merged_pattern_a - rep.loss_base) <= 1e-5);
  CHECK(std::fabs(rep.loss_merged_pattern_b - rep.loss_base) <= 1e-5);
  CHECK(rep.loss_prune_a == rep.loss_prune_b);  // the copies are interchangeable
}

TEST_CASE("interventions: a merge report sits beside pruning either head", "[interventions][merge]") {
  const Model model = must_model("gpt_neox");
  const std::vector<int> ids = must_ids("gpt_neox");
  const int H = model.config.n_head;
  const MergeReport rep = must(evaluate_head_merge(model, ids, 1, 0, 2));
  const LeaveOneOut loo = must(leave_one_out(model, ids));
  CHECK(rep.loss_base == loo.loss_base);
  CHECK(rep.loss_prune_a == loo.loss[1 * H + 0]);
  CHECK(rep.loss_prune_b == loo.loss[1 * H + 2]);
  CHECK(rep.loss_merged == std::min(rep.loss_merged_pattern_a, rep.loss_merged_pattern_b));
  CHECK((rep.best_pattern_head == 0 || rep.best_pattern_head == 2));
  REQUIRE(rep.sigma.size() == static_cast<std::size_t>(2 * model.config.d_head));
  CHECK(rep.truncation_error > 0);
  CHECK(rep.truncation_error < 1);
  // The truncation error is the spectrum's tail.
  double tail = 0, all = 0;
  for (std::size_t i = 0; i < rep.sigma.size(); ++i) {
    all += rep.sigma[i] * rep.sigma[i];
    if (i >= rep.sigma.size() / 2) tail += rep.sigma[i] * rep.sigma[i];
  }
  CHECK(rep.truncation_error == Approx(std::sqrt(tail / all)));
}

// ---------------------------------------------------------------------------
// Pruning

TEST_CASE("interventions: pruning curves start at the base loss, end with every head removed, and repeat for a seed",
          "[interventions][pruning]") {
  const Model model = must_model("gpt2");
  const std::vector<int> ids = must_ids("gpt2");
  const int N = model.config.n_layer * model.config.n_head;
  PruningOptions po;
  po.n_random = 2;
  po.seed = 7;
  po.step = 1;
  po.normalize = po.reestimate = false;  // the raw importance, once
  const PruningCurve a = must(pruning_curve(model, ids, po));
  const PruningCurve b = must(pruning_curve(model, ids, po));
  CHECK(a.random_orders == b.random_orders);
  CHECK(a.random_loss == b.random_loss);
  REQUIRE(a.n_removed.size() == static_cast<std::size_t>(N + 1));
  const RunResult base = must(run_model(model, ids));
  CHECK(a.loss.front() == base.loss);
  CHECK(a.random_loss[0] == base.loss);
  CHECK(a.loss.back() == a.random_loss[N]);  // all heads removed, whatever the order
  CHECK(a.random_loss.back() == a.loss.back());
  // The importance order is by increasing |gradient|.
  const GradientImportance gi = must(gradient_importance(model, ids));
  for (int i = 1; i < N; ++i) CHECK(gi.importance[a.order[i - 1]] <= gi.importance[a.order[i]]);
  // Random orders are permutations and differ from each other.
  for (int k = 0; k < 2; ++k) {
    std::vector<int> o(a.random_orders.begin() + k * N, a.random_orders.begin() + (k + 1) * N);
    std::sort(o.begin(), o.end());
    for (int i = 0; i < N; ++i) CHECK(o[i] == i);
  }
  CHECK(!std::equal(a.random_orders.begin(), a.random_orders.begin() + N, a.random_orders.begin() + N));
  // The first point of the importance order removes its least important head.
  AblationOptions ao;
  ao.want_patterns = false;
  CHECK(a.loss[1] == must(ablate_heads(model, ids, {a.order[0]}, ao)).loss);

  // Steps and leave-one-out order.
  po.order = PruneOrder::leave_one_out;
  po.step = 3;
  po.n_random = 0;
  const PruningCurve c = must(pruning_curve(model, ids, po));
  CHECK(c.n_removed == std::vector<int>{0, 3, 6, 8});
  CHECK(c.loss.size() == 4);
  CHECK(c.random_loss.empty());
}

TEST_CASE("interventions: Michel's pruning order normalises per layer and re-estimates after each step",
          "[interventions][pruning]") {
  const Model model = must_model("gpt2");
  const std::vector<int> ids = must_ids("gpt2");
  const int L = model.config.n_layer, H = model.config.n_head, N = L * H;
  // |dL/dxi| with `gate`, divided by its layer's L2 norm (run_bertology.py).
  auto normalized = [&](const std::vector<float>& gate) {
    std::vector<double> v = must(gradient_importance(model, ids, Objective::automatic, gate)).importance;
    for (int l = 0; l < L; ++l) {
      double s = 0;
      for (int h = 0; h < H; ++h) s += v[l * H + h] * v[l * H + h];
      for (int h = 0; h < H; ++h) v[l * H + h] /= std::sqrt(s) + 1e-20;
    }
    return v;
  };
  auto least = [&](const std::vector<double>& v, const std::vector<int>& removed) {
    int best = -1;
    for (int h = 0; h < N; ++h)
      if (std::find(removed.begin(), removed.end(), h) == removed.end() && (best < 0 || v[h] < v[best])) best = h;
    return best;
  };
  PruningOptions po;  // the defaults: Michel's order, 10 % of the heads a step
  po.n_random = 0;
  const PruningCurve m = must(pruning_curve(model, ids, po));
  CHECK(m.step == std::max(1, (N + 9) / 10));
  REQUIRE(m.step == 1);  // 8 heads: one at a time, re-estimated after each
  const std::vector<double> first = normalized({});
  for (int h = 0; h < N; ++h) CHECK(m.importance[h] == Approx(first[h]).epsilon(1e-12));
  // Each next head is the least important of the rest with the removed ones gated off.
  std::vector<int> removed;
  std::vector<float> gate(N, 1.0f);
  for (int k = 0; k < N; ++k) {
    const int want = least(k == 0 ? first : normalized(gate), removed);
    CHECK(m.order[k] == want);
    removed.push_back(m.order[k]);
    gate[m.order[k]] = 0.0f;
  }
  // Re-estimating changes the order on this model (else the option would be idle here).
  po.reestimate = false;
  po.step = 1;
  const PruningCurve once = must(pruning_curve(model, ids, po));
  CHECK(once.order != m.order);
  CHECK(m.step > 0);
  po.step = -1;
  CHECK_FALSE(pruning_curve(model, ids, po).ok());
}

// ---------------------------------------------------------------------------
// BERT's masked-LM objective

#ifdef HEADSCOPE_MLM_REF
TEST_CASE("interventions: BERT's masked-LM loss and its gradient match a numpy forward and finite differences",
          "[interventions][mlm]") {
  // tests/reference/mlm_reference.py: a BertForMaskedLM made from the BERT
  // fixture, its input masked at 3 positions, the loss there in float64.
  const std::string dir = HEADSCOPE_MLM_REF;
  const ModelConfig config = must(config_from_json(must(read_text_file(dir + "/model/config.json"))));
  auto bytes = must(safetensors_read_bytes(dir + "/model/model.safetensors"));
  auto file = must(safetensors_parse(bytes.data(), bytes.size(), "model.safetensors"));
  const Model model = must(model_from_checkpoint(config, {&file}));
  REQUIRE(model.config.has_lm_head);
  std::vector<int> ids, labels;
  for (double v : must_load(dir + "/ids.npy").data) ids.push_back(static_cast<int>(v));
  for (double v : must_load(dir + "/labels.npy").data) labels.push_back(static_cast<int>(v));
  const Loss mlm(Objective::masked_token, labels);

  AblationOptions ao;
  ao.objective = mlm;
  const AblationResult none = must(ablate_heads(model, ids, {}, ao));
  CHECK(none.objective == Objective::masked_token);
  check_close("masked-LM loss per masked position", none.token_loss_base, must_load(dir + "/token_loss.npy").data, 1e-5);
  CHECK(std::fabs(none.loss_base - must_load(dir + "/loss.npy").data[0]) <= 1e-5);

  // The gradient of the masked loss in every head's gate, against central
  // differences of the same loss computed from run_model's logits.
  const GradientImportance gi = must(gradient_importance(model, ids, mlm));
  CHECK(gi.objective == Objective::masked_token);
  CHECK(std::fabs(gi.loss - none.loss_base) <= 1e-6);
  auto masked_loss = [&](const std::vector<float>& gate) {
    RunOptions opt;
    opt.head_gate = gate;
    opt.want_logits = true;
    opt.want_patterns = false;
    const RunResult run = must(run_model(model, ids, opt));
    const int V = run.d_vocab;
    double total = 0;
    int n = 0;
    for (int t = 0; t < run.n_tokens; ++t) {
      if (labels[t] == -100) continue;
      const float* row = run.logits.data() + static_cast<std::size_t>(t) * V;
      double mx = row[0], sum = 0;
      for (int k = 0; k < V; ++k) mx = std::max(mx, double(row[k]));
      for (int k = 0; k < V; ++k) sum += std::exp(row[k] - mx);
      total += std::log(sum) + mx - row[labels[t]];
      ++n;
    }
    return total / n;
  };
  const int N = model.config.n_layer * model.config.n_head;
  double worst = 0;
  for (int i = 0; i < N; ++i) {
    auto D = [&](float e) {
      std::vector<float> gp(N, 1.f), gm(N, 1.f);
      gp[i] += e;
      gm[i] -= e;
      return (masked_loss(gp) - masked_loss(gm)) / (double(gp[i]) - double(gm[i]));
    };
    const double fd = (4 * D(0.05f) - D(0.1f)) / 3;
    INFO("head " << i << ": gradient " << gi.gradient[i] << ", differences " << fd);
    CHECK(std::fabs(gi.gradient[i] - fd) <= 2e-4 + 1e-3 * std::fabs(fd));
    worst = std::max(worst, std::fabs(gi.gradient[i] - fd));
  }
  if (reporting()) WARN("bert masked-LM gradient vs finite differences: max |diff| = " << worst);

  // Labels that do not fit are refused with a message.
  CHECK_FALSE(gradient_importance(model, ids, Loss(Objective::masked_token, {})).ok());
  CHECK_FALSE(gradient_importance(model, ids, Loss(Objective::masked_token, std::vector<int>(ids.size(), -100))).ok());
  std::vector<int> bad = labels;
  bad[0] = model.config.d_vocab;
  CHECK_FALSE(gradient_importance(model, ids, Loss(Objective::masked_token, bad)).ok());
}
#endif

TEST_CASE("interventions: mask_tokens masks a seeded 15 % of the ordinary tokens", "[interventions][mlm]") {
  std::vector<int> ids;
  for (int t = 0; t < 40; ++t) ids.push_back(t % 2 ? 7 : 10 + t);
  ids.front() = 101;  // [CLS]
  ids.back() = 102;   // [SEP]
  const MaskedTokens m = must(mask_tokens(ids, 103, {101, 102}, 5));
  REQUIRE(m.positions.size() == 6);  // round(0.15 * 38)
  REQUIRE(m.ids.size() == ids.size());
  for (int t = 0; t < 40; ++t) {
    const bool masked = std::find(m.positions.begin(), m.positions.end(), t) != m.positions.end();
    CHECK(m.ids[t] == (masked ? 103 : ids[t]));
    CHECK(m.labels[t] == (masked ? ids[t] : -100));
  }
  CHECK(std::find(m.positions.begin(), m.positions.end(), 0) == m.positions.end());
  CHECK(std::find(m.positions.begin(), m.positions.end(), 39) == m.positions.end());
  CHECK(std::is_sorted(m.positions.begin(), m.positions.end()));
  CHECK(must(mask_tokens(ids, 103, {101, 102}, 5)).positions == m.positions);  // deterministic per seed
  CHECK(must(mask_tokens(ids, 103, {101, 102}, 6)).positions != m.positions);
  // A short text still masks one token; nothing to mask, or a bad rate, is an error.
  CHECK(must(mask_tokens({101, 9, 102}, 103, {101, 102}, 0)).positions == std::vector<int>{1});
  CHECK_FALSE(mask_tokens({101, 102}, 103, {101, 102}, 0).ok());
  CHECK_FALSE(mask_tokens(ids, 103, {}, 0, 0.0).ok());
  CHECK_FALSE(mask_tokens(ids, 103, {}, 0, 1.5).ok());
}
