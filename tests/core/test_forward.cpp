// The forward pass against Hugging Face transformers (the hf-oracle
// fixtures): attention patterns within 1e-5, hidden states and logits within
// 1e-4, and head-mask ablations (loss and logits) within 1e-4.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "fixture_model.hpp"
#include "forward.hpp"
#include "train.hpp"

using namespace hs;
using namespace hs::test;

namespace {

const double kPatternTol = 1e-5;
const double kActTol = 1e-4;

NpyArray must_load(const std::string& path) {
  auto a = npy_load(path);
  INFO(path << ": " << (a.ok() ? "" : a.error().message));
  REQUIRE(a.ok());
  return std::move(a).value();
}

void check_close(const char* what, const std::string& fixture, const std::vector<float>& got, const NpyArray& expected,
                 double tol) {
  const Mismatch m = compare_arrays(got, expected.data, tol);
  INFO(fixture << " " << what << " (tolerance " << tol << "): " << m.describe(expected.shape));
  CHECK(m.same_size);
  CHECK(m.max_abs <= tol);
  // The measured numbers, for the record (HEADSCOPE_REPORT=1 to print them).
  if (std::getenv("HEADSCOPE_REPORT")) WARN(fixture << " " << what << ": max |diff| = " << m.max_abs << " (tolerance " << tol << ")");
}

void check_fixture(const std::string& name) {
  auto model = load_fixture_model(name);
  INFO(name << ": " << (model.ok() ? "" : model.error().message));
  REQUIRE(model.ok());
  CHECK(model->warnings.empty());
  auto ids = load_fixture_ids(name);
  REQUIRE(ids.ok());
  auto run = run_model(*model, *ids);
  INFO((run.ok() ? "" : run.error().message));
  REQUIRE(run.ok());

  const std::string dir = fixture_dir(name);
  check_close("attentions", name, run->patterns, must_load(dir + "/attentions.npy"), kPatternTol);
  check_close("hidden_states", name, run->hidden, must_load(dir + "/hidden_states.npy"), kActTol);
  if (name == "bert") {
    const NpyArray last = must_load(dir + "/last_hidden_state.npy");
    const std::size_t n = last.data.size();
    std::vector<float> got(run->hidden.end() - n, run->hidden.end());
    check_close("last_hidden_state", name, got, last, kActTol);
    CHECK(run->logits.empty());
  } else {
    check_close("logits", name, run->logits, must_load(dir + "/logits.npy"), kActTol);
    CHECK(run->token_loss.size() == ids->size() - 1);
  }
}

std::vector<float> gate_without(const Model& m, std::vector<std::pair<int, int>> heads) {
  std::vector<float> gate(m.config.n_layer * m.config.n_head, 1.f);
  for (auto [l, h] : heads) gate[l * m.config.n_head + h] = 0.f;
  return gate;
}

void check_ablations(const std::string& name) {
  auto model = load_fixture_model(name);
  REQUIRE(model.ok());
  auto ids = load_fixture_ids(name);
  REQUIRE(ids.ok());
  const std::string dir = fixture_dir(name);
  auto text = read_text_file(dir + "/ablation.json");
  REQUIRE(text.ok());
  const auto j = nlohmann::json::parse(*text, nullptr, false);
  REQUIRE(j.is_object());
  REQUIRE(j.contains("loss"));
  REQUIRE(j["loss"].is_number());
  REQUIRE(j["loss_ablate_L0H1_L1H3"].is_number());

  auto base = run_model(*model, *ids);
  REQUIRE(base.ok());
  const double want_loss = j["loss"].get<double>();
  INFO(name << " loss " << base->loss << " vs oracle " << want_loss);
  CHECK(std::fabs(base->loss - want_loss) <= kActTol);

  // One head zeroed at a time.
  const NpyArray each = must_load(dir + "/loss_zero_ablate_each_head.npy");
  const int L = model->config.n_layer, H = model->config.n_head;
  REQUIRE(each.data.size() == static_cast<std::size_t>(L * H));
  RunOptions opt;
  opt.want_hidden = opt.want_patterns = opt.want_logits = false;
  std::vector<float> losses;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      opt.head_gate = gate_without(*model, {{l, h}});
      auto r = run_model(*model, *ids, opt);
      REQUIRE(r.ok());
      losses.push_back(r->loss);
    }
  check_close("loss_zero_ablate_each_head", name, losses, each, kActTol);

  // L0H1 and L1H3 together.
  RunOptions both;
  both.head_gate = gate_without(*model, {{0, 1}, {1, 3}});
  auto r = run_model(*model, *ids, both);
  REQUIRE(r.ok());
  check_close("logits_ablate_L0H1_L1H3", name, r->logits, must_load(dir + "/logits_ablate_L0H1_L1H3.npy"), kActTol);
  const double want2 = j["loss_ablate_L0H1_L1H3"].get<double>();
  INFO(name << " ablated loss " << r->loss << " vs oracle " << want2);
  CHECK(std::fabs(r->loss - want2) <= kActTol);
  // The gate is visible in the patterns, as in HF's returned attentions.
  for (int i = 0; i < r->n_tokens; ++i)
    for (int k = 0; k <= i; ++k) CHECK(r->pattern(0, 1, i, k) == 0.f);
}

}  // namespace

TEST_CASE("gpt2 forward matches transformers", "[forward]") { check_fixture("gpt2"); }
TEST_CASE("gpt_neox forward matches transformers", "[forward]") { check_fixture("gpt_neox"); }
TEST_CASE("llama forward matches transformers", "[forward]") { check_fixture("llama"); }
TEST_CASE("bert forward matches transformers", "[forward]") { check_fixture("bert"); }
TEST_CASE("gpt_neo forward matches transformers", "[forward]") { check_fixture("gpt_neo"); }
TEST_CASE("opt forward matches transformers", "[forward]") { check_fixture("opt"); }

TEST_CASE("gpt2 head-mask ablations match transformers", "[forward][ablation]") { check_ablations("gpt2"); }
TEST_CASE("gpt_neox head-mask ablations match transformers", "[forward][ablation]") { check_ablations("gpt_neox"); }

TEST_CASE("zeroing a head's z in the on_z hook equals gating its pattern to zero", "[forward][hooks]") {
  auto model = load_fixture_model("gpt2");
  REQUIRE(model.ok());
  auto ids = load_fixture_ids("gpt2");
  REQUIRE(ids.ok());
  const int dh = model->config.d_head;
  RunOptions gated;
  gated.head_gate = gate_without(*model, {{1, 2}});
  RunOptions hooked;
  hooked.on_z = [&](int layer, MatrixRM& z) {
    if (layer == 1) z.middleCols(2 * dh, dh).setZero();
  };
  auto a = run_model(*model, *ids, gated);
  auto b = run_model(*model, *ids, hooked);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const Mismatch m = compare_arrays(b->logits, a->logits, 1e-6);
  INFO(m.describe());
  CHECK(m.max_abs <= 1e-6);
}

TEST_CASE("mean-ablating a head through on_z equals adding its mean output through on_attn_out", "[forward][hooks]") {
  auto model = load_fixture_model("gpt_neox");
  REQUIRE(model.ok());
  auto ids = load_fixture_ids("gpt_neox");
  REQUIRE(ids.ok());
  const int dh = model->config.d_head, h = 3, layer = 0;
  // Mean ablation of head h: z_h -> mean over positions.
  RunOptions mean_z;
  mean_z.on_z = [&](int l, MatrixRM& z) {
    if (l != layer) return;
    const RowVectorF mu = z.middleCols(h * dh, dh).colwise().mean();
    z.middleCols(h * dh, dh).rowwise() = mu;
  };
  // The same edit after W_O: out += (mean(z_h) - z_h) W_O[h].
  RunOptions after;
  after.on_attn_out = [&](int l, const MatrixRM& z, MatrixRM& out) {
    if (l != layer) return;
    const auto zh = z.middleCols(h * dh, dh);
    const RowVectorF mu = zh.colwise().mean();
    MatrixRM delta = (-zh).rowwise() + mu;
    out += delta * head_W_O(model->weights.layers[l], h, dh);
  };
  auto a = run_model(*model, *ids, mean_z);
  auto b = run_model(*model, *ids, after);
  auto base = run_model(*model, *ids);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(base.ok());
  const Mismatch m = compare_arrays(b->logits, a->logits, 1e-5);
  INFO(m.describe());
  CHECK(m.max_abs <= 1e-5);
  // And the edit does something.
  CHECK(compare_arrays(a->logits, base->logits, 0).max_abs > 1e-4);
}

TEST_CASE("run_model rejects bad inputs with clear messages", "[forward]") {
  auto model = load_fixture_model("gpt2");
  REQUIRE(model.ok());
  std::vector<int> long_ids(80, 1);
  auto r = run_model(*model, long_ids);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "text is 80 tokens; this model's context is 64");

  auto bad = run_model(*model, {1, 2, 128});
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("token id 128 at position 2"));
  auto neg = run_model(*model, {-1});
  REQUIRE_FALSE(neg.ok());
  CHECK_THAT(neg.error().message, Catch::Contains("token id -1"));

  CHECK_FALSE(run_model(*model, {}).ok());
  RunOptions opt;
  opt.head_gate = {1.f, 1.f};
  auto g = run_model(*model, {1, 2}, opt);
  REQUIRE_FALSE(g.ok());
  CHECK_THAT(g.error().message, Catch::Contains("head_gate"));

  auto bert = load_fixture_model("bert");
  REQUIRE(bert.ok());
  RunOptions tt;
  tt.token_type_ids = {0, 2};
  auto b = run_model(*bert, {1, 2}, tt);
  REQUIRE_FALSE(b.ok());
  CHECK_THAT(b.error().message, Catch::Contains("token type id 2"));
}

TEST_CASE("bert token types change the output", "[forward]") {
  auto model = load_fixture_model("bert");
  REQUIRE(model.ok());
  RunOptions tt;
  tt.token_type_ids = {0, 1, 1};
  auto a = run_model(*model, {5, 6, 7});
  auto b = run_model(*model, {5, 6, 7}, tt);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  // Position 0 has the same type in both runs, but attention is bidirectional.
  CHECK(compare_arrays(a->hidden, b->hidden, 0).max_abs > 1e-3);
}

TEST_CASE("a run whose outputs would pass run_output_limit is refused before allocating them", "[forward]") {
  // One layer, one head, a context of 20,000: the patterns alone would take 1.6 GB
  // (with the hidden states and logits, 4 x 20000 x (20000 + 2 x 8 + 16) bytes).
  auto model = hs::gpt2_init(hs::gpt2_config(1, 8, 1, 8, 16, 20000), 1);
  REQUIRE(model.ok());
  const std::vector<int> ids(20000, 3);
  auto r = hs::run_model(*model, ids);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == hs::ErrorCode::too_large);
  INFO(r.error().message);
  CHECK(r.error().message.find("take 1602 MB, over the limit of 1000 MB") != std::string::npos);
  // Without the patterns, the same run is small.
  hs::RunOptions small;
  small.want_patterns = false;
  small.want_hidden = false;
  small.want_logits = false;
  small.want_loss = false;
  CHECK(hs::run_model(*model, std::vector<int>(200, 3), small).ok());
}
TEST_CASE("forward: the logits and the loss in blocks of rows equal those of one block, but for rounding", "[forward]") {
  for (const char* fixture : {"gpt2", "llama"}) {
    INFO(fixture);
    const Model model = load_fixture_model(fixture).value();
    const std::vector<int> ids = load_fixture_ids(fixture).value();
    RunOptions opt;
    opt.want_logits = true;
    const RunResult whole = run_model(model, ids, opt).value();
    const std::int64_t saved = logits_block_values;
    const int rows = ids.size() % 5 != 0 ? 5 : 7;  // blocks and a remainder
    logits_block_values = rows * model.config.d_vocab;
    const RunResult blocks = run_model(model, ids, opt).value();
    opt.want_logits = false;  // the loss alone
    const RunResult loss_only = run_model(model, ids, opt).value();
    logits_block_values = saved;
    REQUIRE(ids.size() > static_cast<std::size_t>(rows));
    // (The GEMM may sum in another order for another number of rows: float rounding apart.)
    const Mismatch logits = compare_arrays(blocks.logits, whole.logits, 1e-5);
    INFO(logits.describe());
    CHECK(logits.same_size);
    CHECK(logits.max_abs <= 1e-5);
    CHECK(compare_arrays(blocks.token_loss, whole.token_loss, 1e-5).max_abs <= 1e-5);
    CHECK(compare_arrays(loss_only.token_loss, whole.token_loss, 1e-5).max_abs <= 1e-5);
    CHECK(loss_only.token_loss.size() == ids.size() - 1);
    CHECK(loss_only.logits.empty());
  }
}
