// Activation patching, path patching and direct logit attribution: against
// an independent float64 numpy forward on the fixtures
// (tests/reference/patching_reference.py, 1e-5 on the raw metric), and the
// identities that hold on every family: a run resumed from a cached residual
// is the run; a patch of something the two runs share changes nothing; the
// residual at the one differing position restores the clean metric there; a
// head with W_O = 0 has no effect; the attributions sum to the logits.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "fixture_model.hpp"
#include "forward.hpp"
#include "npy.hpp"
#include "patching.hpp"

using namespace hs;
using namespace hs::test;

namespace {

const char* kFamilies[] = {"gpt2", "gpt_neox", "llama", "gpt_neo", "opt"};

// The fixture's ids with position p changed.
std::vector<int> changed(std::vector<int> ids, int p, int vocab) {
  ids[p] = (ids[p] + 7) % vocab;
  return ids;
}

double logit_diff(const RunResult& run, const PatchMetric& m, int t) {
  const float* row = run.logits.data() + static_cast<std::size_t>(t) * run.d_vocab;
  return row[m.answer] - row[m.wrong];
}

// got and want agree within tol, NaN where the other is NaN.
void check_values(const std::string& what, const std::vector<double>& got, const std::vector<double>& want, double tol) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i << ": got " << got[i] << ", reference " << want[i]);
    REQUIRE(std::isnan(got[i]) == std::isnan(want[i]));
    if (std::isnan(got[i])) continue;
    const double diff = std::fabs(got[i] - want[i]);
    if (diff > worst) worst = diff, at = i;
  }
  INFO("worst |diff| " << worst << " at " << at << " (tolerance " << tol << ")");
  CHECK(worst <= tol);
}

}  // namespace

TEST_CASE("patching: a run resumed at any layer from its own residual is the run", "[patching]") {
  for (const char* name : kFamilies) {
    const Model model = must_model(name);
    const auto ids = must_ids(name);
    const RunResult full = must(run_model(model, ids));
    const int T = full.n_tokens, d = full.d_model;
    for (int l = 0; l < model.config.n_layer; ++l) {
      const MatrixRM resid = ConstMapRM(full.hidden.data() + static_cast<std::size_t>(l) * T * d, T, d);
      RunOptions opt;
      opt.first_layer = l;
      opt.resid_in = &resid;
      const RunResult resumed = must(run_model(model, ids, opt));
      INFO(name << " layer " << l);
      REQUIRE(resumed.logits.size() == full.logits.size());
      double worst = 0;
      for (std::size_t i = 0; i < full.logits.size(); ++i)
        worst = std::max(worst, std::fabs(double(resumed.logits[i]) - full.logits[i]));
      CHECK(worst <= 1e-6);
    }
  }
}

TEST_CASE("patching: identities on every family", "[patching]") {
  for (const char* name : kFamilies) {
    INFO(name);
    const Model model = must_model(name);
    const auto clean = must_ids(name);
    const int T = static_cast<int>(clean.size()), L = model.config.n_layer, H = model.config.n_head;
    const int p = T / 2;
    const auto corrupt = changed(clean, p, model.config.d_vocab);
    PatchOptions o;
    o.metric.answer = 5;
    o.metric.wrong = 9;

    // At the differing position itself (causal: nothing later reaches it),
    // the clean residual of any layer restores the clean metric, and the
    // residual of any other position of layer 0 (the same in both) changes
    // nothing.
    o.metric.position = p;
    o.target = PatchTarget::resid;
    const PatchResult resid = must(activation_patch(model, clean, corrupt, o));
    REQUIRE(resid.shape == std::vector<int>{L, T});
    REQUIRE(resid.clean != resid.corrupt);
    for (int l = 0; l < L; ++l) CHECK(std::fabs(resid.value[l * T + p] - resid.clean) <= 1e-5);
    for (int t = 0; t < T; ++t)
      if (t != p) CHECK(resid.value[t] == Approx(resid.corrupt).margin(1e-6));
    CHECK(resid.effect[p] == Approx(1.0).margin(1e-4));

    // A head's output at positions before p is the same in both runs.
    o.metric.position = -1;
    o.target = PatchTarget::heads_by_position;
    const PatchResult by_pos = must(activation_patch(model, clean, corrupt, o));
    REQUIRE(by_pos.shape == std::vector<int>{L, H, T});
    for (int i = 0; i < L * H; ++i)
      for (int t = 0; t < p; ++t) CHECK(by_pos.value[i * T + t] == Approx(by_pos.corrupt).margin(1e-6));

    // A head that writes nothing has no effect, patched or sent.
    Model silent = model;
    silent.weights.layers[0].W_O.middleRows(model.config.d_head, model.config.d_head).setZero();
    o.target = PatchTarget::heads;
    for (auto direction : {PatchDirection::denoise, PatchDirection::noise}) {
      o.direction = direction;
      const PatchResult heads = must(activation_patch(silent, clean, corrupt, o));
      const double unpatched = direction == PatchDirection::denoise ? heads.corrupt : heads.clean;
      CHECK(heads.value[1] == Approx(unpatched).margin(1e-6));
    }
    PathPatchOptions po;
    po.metric = o.metric;
    const PathPatchResult path = must(path_patch(silent, clean, corrupt, po));
    CHECK(path.value[1] == Approx(path.clean).margin(1e-6));

    // The loss metric is the answer's cross-entropy at the position, from the run's logits.
    PatchOptions lo = o;
    lo.metric.kind = MetricKind::loss;
    lo.target = PatchTarget::heads;
    const PatchResult loss = must(activation_patch(model, clean, corrupt, lo));
    const RunResult clean_run = must(run_model(model, clean));
    const float* row = clean_run.logits.data() + static_cast<std::size_t>(T - 1) * clean_run.d_vocab;
    double top = row[0], sum = 0;
    for (int j = 1; j < clean_run.d_vocab; ++j) top = std::max(top, double(row[j]));
    for (int j = 0; j < clean_run.d_vocab; ++j) sum += std::exp(row[j] - top);
    CHECK(loss.clean == Approx(top + std::log(sum) - row[5]).margin(1e-5));

    // Direct logit attribution sums to the logit difference at every position.
    const DirectLogitAttribution dla = must(direct_logit_attribution(silent, clean, o.metric));
    const RunResult run = must(run_model(silent, clean));
    for (int t = 0; t < T; ++t) {
      double sum = dla.embed[t] + dla.bias[t], size = std::fabs(sum);
      for (int l = 0; l < L; ++l) {
        for (int h = 0; h < H; ++h) sum += dla.heads[(l * H + h) * T + t], size += std::fabs(dla.heads[(l * H + h) * T + t]);
        sum += dla.attn_bias[l * T + t] + dla.mlp[l * T + t] + dla.edit_paths[l * T + t];
        size += std::fabs(dla.attn_bias[l * T + t]) + std::fabs(dla.mlp[l * T + t]);
      }
      INFO("position " << t << ": parts sum to " << sum << ", logits give " << logit_diff(run, o.metric, t));
      CHECK(std::fabs(sum - logit_diff(run, o.metric, t)) <= 1e-5 * (1 + size));
      CHECK(dla.total[t] == Approx(logit_diff(run, o.metric, t)).margin(1e-6));
      CHECK(dla.heads[1 * T + t] == 0.0);
    }
  }
}

#ifdef HEADSCOPE_PATCHING_REF
TEST_CASE("patching: activation and path patching and DLA match a numpy forward", "[patching]") {
  const double tol = 1e-5;
  for (const char* name : {"gpt2", "gpt_neox", "llama"}) {
    INFO(name);
    const std::string dir = std::string(HEADSCOPE_PATCHING_REF) + "/" + name;
    auto load = [&](const char* file) { return must(npy_load(dir + "/" + file)); };
    auto ints = [](const NpyArray& a) {
      std::vector<int> v;
      for (double x : a.data) v.push_back(static_cast<int>(x));
      return v;
    };
    const Model model = must_model(name);
    const auto clean = ints(load("clean_ids.npy")), corrupt = ints(load("corrupt_ids.npy"));
    const auto tokens = ints(load("metric.npy"));
    PatchMetric metric;
    metric.answer = tokens[0];
    metric.wrong = tokens[1];
    const struct {
      PatchTarget target;
      PatchDirection direction;
      const char* file;
    } cases[] = {
        {PatchTarget::heads, PatchDirection::denoise, "heads_denoise.npy"},
        {PatchTarget::heads_by_position, PatchDirection::denoise, "heads_by_position_denoise.npy"},
        {PatchTarget::resid, PatchDirection::noise, "resid_noise.npy"},
        {PatchTarget::q, PatchDirection::denoise, "q_denoise.npy"},
        {PatchTarget::k, PatchDirection::denoise, "k_denoise.npy"},
        {PatchTarget::v, PatchDirection::noise, "v_noise.npy"},
    };
    for (const auto& c : cases) {
      PatchOptions o;
      o.target = c.target;
      o.direction = c.direction;
      o.metric = metric;
      const PatchResult r = must(activation_patch(model, clean, corrupt, o));
      CHECK(r.clean == Approx(load("clean.npy").data[0]).margin(tol));
      CHECK(r.corrupt == Approx(load("corrupt.npy").data[0]).margin(tol));
      check_values(c.file, r.value, load(c.file).data, tol);
    }
    PathPatchOptions po;
    po.metric = metric;
    check_values("path to the logits", must(path_patch(model, clean, corrupt, po)).value, load("path_logits.npy").data, tol);
    po.receivers = {must(parse_receiver("L1H2:q")), must(parse_receiver("L1G1:k"))};
    check_values("path to L1H2:q and L1G1:k", must(path_patch(model, clean, corrupt, po)).value,
                 load("path_receivers.npy").data, tol);
    const DirectLogitAttribution dla = must(direct_logit_attribution(model, clean, metric));
    check_values("DLA per head and position", dla.heads, load("dla_heads.npy").data, tol);
    check_values("DLA total", dla.total, load("dla_total.npy").data, tol);
  }
}
#endif

TEST_CASE("patching: a sender reaches the receivers in later layers, whatever other receivers there are",
          "[patching]") {
  // The gpt2 fixture with a third layer (a copy of its second): with
  // receivers in layers 1 and 2, a layer-1 sender sends to the layer-2 one
  // exactly as with that receiver alone; a layer-0 sender to both.
  Model model = must_model("gpt2");
  model.weights.layers.push_back(model.weights.layers[1]);
  model.config.n_layer = 3;
  const auto clean = must_ids("gpt2");
  const auto corrupt = changed(clean, static_cast<int>(clean.size()) / 2, model.config.d_vocab);
  const int H = model.config.n_head;
  PathPatchOptions both, later, earlier;
  both.metric.answer = later.metric.answer = earlier.metric.answer = 5;
  both.metric.wrong = later.metric.wrong = earlier.metric.wrong = 9;
  both.receivers = {must(parse_receiver("L1H0:q")), must(parse_receiver("L2H0:q"))};
  later.receivers = {must(parse_receiver("L2H0:q"))};
  earlier.receivers = {must(parse_receiver("L1H0:q"))};
  const PathPatchResult b = must(path_patch(model, clean, corrupt, both));
  const PathPatchResult l2 = must(path_patch(model, clean, corrupt, later));
  const PathPatchResult l1 = must(path_patch(model, clean, corrupt, earlier));
  for (int h = 0; h < H; ++h) {
    INFO("L1H" << h);
    REQUIRE_FALSE(std::isnan(b.value[H + h]));
    CHECK(b.value[H + h] == Approx(l2.value[H + h]).margin(1e-9));
    CHECK(std::isnan(l1.value[H + h]));
    CHECK(std::isnan(b.value[2 * H + h]));
  }
  // A layer-0 sender reaches both: not what either receiver alone gives.
  double differs = 0;
  for (int h = 0; h < H; ++h) differs = std::max({differs, std::fabs(b.value[h] - l2.value[h]), std::fabs(b.value[h] - l1.value[h])});
  CHECK(differs > 1e-6);
}

TEST_CASE("patching: bad requests are refused with a message", "[patching]") {
  const Model model = must_model("gpt2");
  const auto clean = must_ids("gpt2");
  PatchOptions o;
  o.metric.answer = 5;
  o.metric.wrong = 9;
  auto shorter = clean;
  shorter.pop_back();
  auto r = activation_patch(model, clean, shorter, o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("same token length") != std::string::npos);
  o.metric.answer = model.config.d_vocab;
  CHECK_FALSE(activation_patch(model, clean, clean, o).ok());
  o.metric.answer = 5;
  o.metric.position = static_cast<int>(clean.size());
  CHECK_FALSE(activation_patch(model, clean, clean, o).ok());

  for (const char* bad : {"L1H2", "L1H2:x", "L1G2:q", "L1H2:k", "x", "L1H2:qq", "L1H +2:q", "L-1H2:q", "L99999999999H2:q"}) {
    INFO(bad);
    CHECK_FALSE(parse_receiver(bad).ok());
  }
  CHECK(receiver_name(must(parse_receiver("L1G0:v"))) == "L1G0:v");
  PathPatchOptions po;
  po.metric.answer = 5;
  po.receivers = {must(parse_receiver("L0H1:q"))};
  auto early = path_patch(model, clean, clean, po);
  REQUIRE_FALSE(early.ok());
  CHECK(early.error().message.find("layer 0") != std::string::npos);
  po.receivers = {must(parse_receiver("L0H1:q")), must(parse_receiver("L1H0:q"))};
  CHECK(path_patch(model, clean, clean, po).ok());  // one receiver with senders before it is enough
  po.receivers = {must(parse_receiver("L2H1:q"))};
  CHECK_FALSE(path_patch(model, clean, clean, po).ok());

  const Model bert = must_model("bert");
  PatchMetric m;
  m.answer = 1;
  auto dla = direct_logit_attribution(bert, must_ids("bert"), m);
  REQUIRE_FALSE(dla.ok());
}
