// model_from_checkpoint on hub-style variants of the fixtures, written in the
// test with safetensors_serialize: other prefixes, registered buffers, gamma/
// beta names, BF16 and F16 weights, shards, duplicate tied copies; and the
// errors and warnings of bad checkpoints (missing tensor, wrong shape, NaN).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "checkpoint.hpp"
#include "fixture_model.hpp"
#include "forward.hpp"
#include "interventions.hpp"

using namespace hs;
using namespace hs::test;

namespace {

// A tensor decoded to float32, as the test edits it before writing it back.
struct Tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

std::vector<Tensor> fixture_tensors(const std::string& name) {
  auto bytes = safetensors_read_bytes(fixture_dir(name) + "/model.safetensors");
  REQUIRE(bytes.ok());
  auto file = safetensors_parse(bytes->data(), bytes->size(), name);
  REQUIRE(file.ok());
  std::vector<Tensor> out;
  for (const TensorInfo& t : file->tensors) {
    auto v = safetensors_read_f32(*file, t);
    REQUIRE(v.ok());
    out.push_back({t.name, t.shape, std::move(v).value()});
  }
  return out;
}

enum class Store { f32, bf16, f16 };

SafetensorsTensorIn encode(const Tensor& t, Store store) {
  switch (store) {
    case Store::bf16: return safetensors_tensor_bf16(t.name, t.shape, t.values);
    case Store::f16: return safetensors_tensor_f16(t.name, t.shape, t.values);
    default: return safetensors_tensor_f32(t.name, t.shape, t.values);
  }
}

// Serialised shards, parsed; the bytes live as long as the object.
struct Checkpoint {
  std::vector<std::vector<std::uint8_t>> bytes;
  std::vector<SafetensorsFile> files;

  std::vector<const SafetensorsFile*> shards() const {
    std::vector<const SafetensorsFile*> out;
    for (const auto& f : files) out.push_back(&f);
    return out;
  }
};

// Writes `tensors` (plus raw `extra` ones, e.g. BOOL buffers) into `n_shards`
// files, assigning tensor i to shard i % n_shards.
Checkpoint write_checkpoint(const std::vector<Tensor>& tensors, Store store = Store::f32, int n_shards = 1,
                            const std::vector<SafetensorsTensorIn>& extra = {}) {
  std::vector<std::vector<SafetensorsTensorIn>> parts(n_shards);
  for (std::size_t i = 0; i < tensors.size(); ++i) parts[i % n_shards].push_back(encode(tensors[i], store));
  for (std::size_t i = 0; i < extra.size(); ++i) parts[i % n_shards].push_back(extra[i]);
  Checkpoint ck;
  ck.bytes.reserve(n_shards);
  for (int s = 0; s < n_shards; ++s) ck.bytes.push_back(safetensors_serialize(parts[s], {{"format", "pt"}}));
  for (int s = 0; s < n_shards; ++s) {
    const std::string source = "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(n_shards) + ".safetensors";
    auto f = safetensors_parse(ck.bytes[s].data(), ck.bytes[s].size(), source);
    INFO((f.ok() ? "" : f.error().message));
    REQUIRE(f.ok());
    ck.files.push_back(std::move(f).value());
  }
  return ck;
}

Result<Model> load(const std::string& fixture, const Checkpoint& ck) {
  auto config = load_fixture_config(fixture);
  REQUIRE(config.ok());
  return model_from_checkpoint(*config, ck.shards());
}

RunResult run(const Model& m, const std::string& fixture) {
  auto ids = load_fixture_ids(fixture);
  REQUIRE(ids.ok());
  auto r = run_model(m, *ids);
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::vector<float> oracle(const std::string& fixture, const char* file) {
  auto a = npy_load(fixture_dir(fixture) + "/" + file);
  REQUIRE(a.ok());
  return a->as_float();
}

void check_max(const char* what, const std::vector<float>& got, const std::vector<float>& want, double tol) {
  const Mismatch m = compare_arrays(got, want, tol);
  INFO(what << " (tolerance " << tol << "): " << m.describe());
  CHECK(m.same_size);
  CHECK(m.max_abs <= tol);
  if (std::getenv("HEADSCOPE_REPORT")) WARN(what << ": max |diff| = " << m.max_abs << " (tolerance " << tol << ")");
}

std::string strip(const std::string& name, const std::string& prefix) {
  return name.compare(0, prefix.size(), prefix) == 0 ? name.substr(prefix.size()) : name;
}

SafetensorsTensorIn bool_tensor(std::string name, std::vector<std::int64_t> shape) {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  SafetensorsTensorIn t{std::move(name), Dtype::BOOL, std::move(shape), std::vector<std::uint8_t>(n, 1)};
  return t;
}

// The tril mask GPT-2 registers as h.N.attn.bias: F32 [1, 1, n, n].
Tensor causal_mask(const std::string& name, int n) {
  Tensor t{name, {1, 1, n, n}, std::vector<float>(static_cast<std::size_t>(n) * n, 0.f)};
  for (int i = 0; i < n; ++i)
    for (int j = 0; j <= i; ++j) t.values[static_cast<std::size_t>(i) * n + j] = 1.f;
  return t;
}

Tensor* find(std::vector<Tensor>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return &t;
  FAIL("no tensor " << name);
  return nullptr;
}

}  // namespace

TEST_CASE("gpt2 hub layout: no transformer. prefix, attn.bias mask buffers", "[checkpoint]") {
  const RunResult ref = run(load_fixture_model("gpt2").value(), "gpt2");
  std::vector<Tensor> ts;
  for (auto& t : fixture_tensors("gpt2")) ts.push_back({strip(t.name, "transformer."), t.shape, t.values});
  for (int l = 0; l < 2; ++l) {
    ts.push_back(causal_mask("h." + std::to_string(l) + ".attn.bias", 64));
    ts.push_back({"h." + std::to_string(l) + ".attn.masked_bias", {}, {-1e4f}});
  }
  const Checkpoint ck = write_checkpoint(ts);
  auto m = load("gpt2", ck);
  INFO((m.ok() ? "" : m.error().message));
  REQUIRE(m.ok());
  CHECK(m->warnings.empty());
  const RunResult r = run(*m, "gpt2");
  check_max("patterns vs fixture layout", r.patterns, ref.patterns, 0);
  check_max("logits vs fixture layout", r.logits, ref.logits, 0);
  check_max("attentions vs oracle", r.patterns, oracle("gpt2", "attentions.npy"), 1e-5);
}

TEST_CASE("a stored duplicate of a tied lm_head is accepted", "[checkpoint]") {
  std::vector<Tensor> ts = fixture_tensors("gpt2");
  Tensor wte = *find(ts, "transformer.wte.weight");
  ts.push_back({"lm_head.weight", wte.shape, wte.values});
  const Checkpoint ck = write_checkpoint(ts);
  auto m = load("gpt2", ck);
  REQUIRE(m.ok());
  check_max("logits vs oracle", run(*m, "gpt2").logits, oracle("gpt2", "logits.npy"), 1e-4);
}

TEST_CASE("a tied unembedding is W_E read in place: W_U stays empty, an explicit lm_head fills it", "[checkpoint]") {
  auto tied = load_fixture_model("gpt2");
  REQUIRE(tied.ok());
  CHECK(tied->weights.W_U.size() == 0);
  CHECK(unembed_tied(tied->weights));
  CHECK(has_unembedding(*tied));
  CHECK(unembed_vocab(tied->weights) == tied->config.d_vocab);
  CHECK(unembed_dim(tied->weights) == tied->config.d_model);
  const MatrixRM U = unembedding_matrix(tied->weights);
  CHECK(U == MatrixRM(tied->weights.W_E.widened().transpose()));
  CHECK(unembedding_block(tied->weights, 5, 3) == U.middleCols(5, 3));

  // The same weights untied with an lm_head that differs from wte in one row:
  // W_U is read (transposed) from it, and the logits follow.
  std::vector<Tensor> ts = fixture_tensors("gpt2");
  Tensor head = *find(ts, "transformer.wte.weight");
  head.name = "lm_head.weight";
  const std::int64_t d = head.shape[1];
  for (std::int64_t k = 0; k < d; ++k) head.values[7 * d + k] *= -1.f;
  ts.push_back(head);
  const Checkpoint ck = write_checkpoint(ts);
  auto config = load_fixture_config("gpt2");
  REQUIRE(config.ok());
  config->tied_embeddings = false;
  auto untied = model_from_checkpoint(*config, ck.shards());
  REQUIRE(untied.ok());
  REQUIRE_FALSE(unembed_tied(untied->weights));
  const MatrixRM W = unembedding_matrix(untied->weights);
  CHECK(W.middleCols(0, 7) == U.middleCols(0, 7));
  CHECK(W.col(7) == -U.col(7));
  const RunResult a = run(*tied, "gpt2"), b = run(*untied, "gpt2");
  const int V = tied->config.d_vocab;
  std::size_t changed = 0, worst_other = 0;
  for (std::size_t i = 0; i < a.logits.size(); ++i) {
    if (static_cast<int>(i % V) == 7) changed += std::abs(a.logits[i] + b.logits[i]) < 1e-4f * (1 + std::abs(a.logits[i]));
    else worst_other += std::abs(a.logits[i] - b.logits[i]) > 1e-4f * (1 + std::abs(a.logits[i]));
  }
  CHECK(changed == a.logits.size() / V);  // column 7 flipped sign at every position
  CHECK(worst_other == 0);
}

TEST_CASE("files read through a reader load the same weights as files in memory", "[checkpoint]") {
  for (const char* fixture : {"gpt2", "gpt_neox", "llama"}) {
    for (Store store : {Store::f32, Store::bf16}) {
      INFO(fixture << (store == Store::f32 ? " F32" : " BF16"));
      const Checkpoint ck = write_checkpoint(fixture_tensors(fixture), store, 2);
      auto ref = load(fixture, ck);
      REQUIRE(ref.ok());
      // Header-only copies of the two shards, reading from the serialised bytes.
      std::vector<SafetensorsFile> headers;
      std::size_t bytes_read = 0;
      for (std::size_t s = 0; s < ck.bytes.size(); ++s) {
        const std::vector<std::uint8_t>& bytes = ck.bytes[s];
        const std::size_t start = static_cast<std::size_t>(8 + ck.files[s].header_size);
        auto f = safetensors_parse_header(bytes.data(), start, bytes.size(), ck.files[s].source);
        REQUIRE(f.ok());
        f->reader = [&bytes, start, &bytes_read](std::uint64_t offset, std::size_t n, std::uint8_t* out) -> Status {
          std::memcpy(out, bytes.data() + start + offset, n);
          bytes_read += n;
          return Ok{};
        };
        headers.push_back(std::move(f).value());
      }
      std::vector<const SafetensorsFile*> shards = {&headers[0], &headers[1]};
      auto config = load_fixture_config(fixture);
      auto m = model_from_checkpoint(*config, shards);
      INFO((m.ok() ? "" : m.error().message));
      REQUIRE(m.ok());
      const ModelWeights &x = m->weights, &y = ref->weights;
      CHECK(x.W_E == y.W_E);
      CHECK(x.W_U == y.W_U);
      for (std::size_t l = 0; l < x.layers.size(); ++l) {
        const LayerWeights &p = x.layers[l], &q = y.layers[l];
        CHECK((p.W_Q == q.W_Q && p.W_K == q.W_K && p.W_V == q.W_V && p.W_O == q.W_O));
        CHECK((p.W_in == q.W_in && p.W_out == q.W_out && p.W_gate == q.W_gate));
        CHECK((p.b_Q == q.b_Q && p.b_K == q.b_K && p.b_V == q.b_V && p.ln1_w == q.ln1_w));
      }
      std::size_t data = 0;
      for (const auto& f : headers) data += static_cast<std::size_t>(f.data_size);
      CHECK(bytes_read == data);  // every tensor read once
      // A reader that fails is an error naming the file.
      headers[1].reader = [](std::uint64_t, std::size_t, std::uint8_t*) -> Status { return make_error("gone"); };
      auto failed = model_from_checkpoint(*config, shards);
      REQUIRE_FALSE(failed.ok());
      CHECK(failed.error().message.find("gone") != std::string::npos);
    }
  }
}

TEST_CASE("a reader that serves only the read plan loads every fixture, whole and attention-only", "[checkpoint]") {
  for (const char* fixture : {"gpt2", "gpt_neox", "llama", "bert", "gpt_neo", "opt"}) {
    for (bool attention_only : {false, true}) {
      INFO(fixture << (attention_only ? ", attention only" : ""));
      auto config = load_fixture_config(fixture);
      REQUIRE(config.ok());
      auto bytes = safetensors_read_bytes(fixture_dir(fixture) + "/model.safetensors");
      REQUIRE(bytes.ok());
      auto file = safetensors_parse(bytes->data(), bytes->size(), "model.safetensors");
      REQUIRE(file.ok());
      const CheckpointOptions options{attention_only};
      const auto plan = checkpoint_read_plan(*config, {&*file}, options);
      REQUIRE(plan.size() == 1);
      // The plan: sorted, disjoint, not adjacent (merged), inside the data.
      std::uint64_t planned = 0;
      for (std::size_t i = 0; i < plan[0].size(); ++i) {
        const ByteRange& r = plan[0][i];
        CHECK(r.begin < r.end);
        CHECK(r.begin >= 8 + file->header_size);
        CHECK(r.end <= bytes->size());
        if (i) CHECK(plan[0][i - 1].end < r.begin);
        planned += r.end - r.begin;
      }
      // Buffers are left out; attention-only leaves out more.
      std::uint64_t buffers = 0;
      for (const TensorInfo& t : file->tensors)
        if (!checkpoint_reads_tensor(*config, t.name, {})) buffers += t.end - t.begin;
      if (!attention_only) CHECK(planned == file->data_size - buffers);
      else CHECK(planned < file->data_size - buffers);
      // Reads outside the plan fail.
      SafetensorsFile header = *file;
      header.data = nullptr;
      const std::uint64_t start = 8 + file->header_size;
      header.reader = [&](std::uint64_t offset, std::size_t n, std::uint8_t* out) -> Status {
        const std::uint64_t begin = start + offset, end = begin + n;
        for (const ByteRange& r : plan[0])
          if (r.begin <= begin && end <= r.end) {
            std::memcpy(out, bytes->data() + begin, n);
            return Ok{};
          }
        return make_error("bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ") are not in the plan");
      };
      auto planned_model = model_from_checkpoint(*config, {&header}, options);
      INFO((planned_model.ok() ? "" : planned_model.error().message));
      REQUIRE(planned_model.ok());
      auto whole = model_from_checkpoint(*config, {&*file}, options);
      REQUIRE(whole.ok());
      const ModelWeights &x = planned_model->weights, &y = whole->weights;
      CHECK(x.W_E == y.W_E);
      for (std::size_t l = 0; l < x.layers.size(); ++l) {
        CHECK((x.layers[l].W_Q == y.layers[l].W_Q && x.layers[l].W_O == y.layers[l].W_O));
        CHECK(x.layers[l].ln1_w == y.layers[l].ln1_w);
      }
    }
  }
}

TEST_CASE("transposes and splits read row by row give the weights of whole-tensor reads", "[checkpoint]") {
  for (const char* fixture : {"gpt2", "gpt_neox", "llama", "bert", "gpt_neo", "opt"}) {
    INFO(fixture);
    auto ref = load_fixture_model(fixture);
    REQUIRE(ref.ok());
    const std::int64_t saved = checkpoint_scratch_values;
    checkpoint_scratch_values = 1;  // one row per block; 3 rows per block below
    auto one = load_fixture_model(fixture);
    checkpoint_scratch_values = 3 * 64 + 1;
    auto three = load_fixture_model(fixture);
    checkpoint_scratch_values = saved;
    REQUIRE(one.ok());
    REQUIRE(three.ok());
    for (const Model* m : {&*one, &*three}) {
      const ModelWeights &x = m->weights, &y = ref->weights;
      CHECK((x.W_E == y.W_E && x.W_U == y.W_U && x.W_pos == y.W_pos && x.mlm_dense_W == y.mlm_dense_W));
      for (std::size_t l = 0; l < x.layers.size(); ++l) {
        const LayerWeights &p = x.layers[l], &q = y.layers[l];
        CHECK((p.W_Q == q.W_Q && p.W_K == q.W_K && p.W_V == q.W_V && p.W_O == q.W_O));
        CHECK((p.W_in == q.W_in && p.W_out == q.W_out && p.W_gate == q.W_gate));
      }
    }
  }
}

TEST_CASE("gpt2 in BF16 and F16 matches the F32 run within the precision of the format", "[checkpoint]") {
  const RunResult ref = run(load_fixture_model("gpt2").value(), "gpt2");
  const std::vector<float> att = oracle("gpt2", "attentions.npy");
  // Rounding the weights to 8 (BF16) or 11 (F16) significant bits moved the
  // patterns by 1.5e-3 and 2.8e-4 and the logits by 1.5e-2 and 1.9e-3 when
  // measured; the tolerances leave about 10x headroom.
  struct Case {
    Store store;
    const char* name;
    double tol_pattern, tol_logits;
  };
  for (const Case& c : {Case{Store::bf16, "BF16", 2e-2, 1e-1}, Case{Store::f16, "F16", 2e-3, 1e-2}}) {
    INFO(c.name);
    const Checkpoint ck = write_checkpoint(fixture_tensors("gpt2"), c.store);
    CHECK(ck.files[0].tensors[0].dtype == (c.store == Store::bf16 ? Dtype::BF16 : Dtype::F16));
    auto m = load("gpt2", ck);
    REQUIRE(m.ok());
    const RunResult r = run(*m, "gpt2");
    check_max("attentions vs oracle", r.patterns, att, c.tol_pattern);
    check_max("attentions vs F32 run", r.patterns, ref.patterns, c.tol_pattern);
    check_max("logits vs F32 run", r.logits, ref.logits, c.tol_logits);
    // Rounding did happen: the result is not bit-identical.
    CHECK(compare_arrays(r.patterns, ref.patterns, 0).max_abs > 0);
  }
}

TEST_CASE("BF16 and F16 checkpoints keep their MLP and embedding matrices in 16 bits, with the outputs and "
          "gradients of those values in float32", "[checkpoint]") {
  for (const char* fixture : {"gpt2", "llama", "gpt_neox", "opt", "bert"}) {
    for (Store store : {Store::bf16, Store::f16}) {
      INFO(fixture << (store == Store::bf16 ? " BF16" : " F16"));
      const Checkpoint ck = write_checkpoint(fixture_tensors(fixture), store);
      const Model half = must(load(fixture, ck));
      const WeightStorage want = store == Store::bf16 ? WeightStorage::bf16 : WeightStorage::f16;
      CHECK(half.weights.W_E.storage() == want);
      CHECK(half.weights.layers[0].W_in.storage() == want);
      CHECK(half.weights.layers[0].W_out.storage() == want);
      // The estimate a load is refused by, from the headers, is what the load
      // holds, but for the vectors a load fills in (absent biases as zeros).
      // (BERT's checkpoint also has a pooler, read and not kept.)
      const ModelConfig config = must(load_fixture_config(fixture));
      std::uint64_t vectors = 4 * static_cast<std::uint64_t>(half.weights.b_U.size());
      for (const LayerWeights& L : half.weights.layers)
        for (const RowVectorF* v : {&L.b_Q, &L.b_K, &L.b_V, &L.b_O, &L.b_in, &L.b_gate, &L.b_out, &L.ln1_b, &L.ln2_b})
          vectors += 4 * static_cast<std::uint64_t>(v->size());
      const std::uint64_t held = model_weight_bytes(half.weights), estimate = checkpoint_weight_bytes(config, ck.shards());
      if (std::string(fixture) != "bert") {
        CHECK(held >= estimate);
        CHECK(held - estimate <= vectors);
      }
      // The same values widened to float32: identical outputs, more bytes.
      Model wide = half;
      for (WeightMatrix* W : {&wide.weights.W_E, &wide.weights.W_U}) W->to_f32();
      for (LayerWeights& L : wide.weights.layers)
        for (WeightMatrix* W : {&L.W_in, &L.W_gate, &L.W_out}) W->to_f32();
      CHECK(model_weight_bytes(half.weights) < model_weight_bytes(wide.weights));
      const RunResult a = run(half, fixture), b = run(wide, fixture);
      CHECK(a.patterns == b.patterns);
      CHECK(a.hidden == b.hidden);
      CHECK(a.logits == b.logits);
      // The reverse pass reads the 16-bit matrices transposed (gemm_nt).
      const auto ids = must(load_fixture_ids(fixture));
      CHECK(must(gradient_importance(half, ids)).gradient == must(gradient_importance(wide, ids)).gradient);
    }
  }
}

TEST_CASE("a checkpoint split in two shards gives identical outputs", "[checkpoint]") {
  for (const char* fixture : {"gpt2", "llama", "gpt_neox"}) {
    INFO(fixture);
    const RunResult ref = run(load_fixture_model(fixture).value(), fixture);
    const Checkpoint ck = write_checkpoint(fixture_tensors(fixture), Store::f32, 2);
    REQUIRE(ck.files.size() == 2);
    CHECK(!ck.files[0].tensors.empty());
    CHECK(!ck.files[1].tensors.empty());
    auto m = load(fixture, ck);
    INFO((m.ok() ? "" : m.error().message));
    REQUIRE(m.ok());
    const RunResult r = run(*m, fixture);
    check_max("patterns", r.patterns, ref.patterns, 0);
    check_max("hidden", r.hidden, ref.hidden, 0);
    check_max("logits", r.logits, ref.logits, 0);
    // Shard order does not matter either.
    auto shards = ck.shards();
    std::swap(shards[0], shards[1]);
    auto config = load_fixture_config(fixture);
    auto m2 = model_from_checkpoint(*config, shards);
    REQUIRE(m2.ok());
    check_max("logits, shards swapped", run(*m2, fixture).logits, ref.logits, 0);
  }
}

TEST_CASE("BERT hub layout: bert. prefix, LayerNorm.gamma/beta, position_ids buffer", "[checkpoint]") {
  std::vector<Tensor> ts;
  for (auto& t : fixture_tensors("bert")) {
    std::string n = "bert." + t.name;
    const std::string w = "LayerNorm.weight", b = "LayerNorm.bias";
    if (n.size() > w.size() && n.compare(n.size() - w.size(), w.size(), w) == 0) n = n.substr(0, n.size() - 6) + "gamma";
    if (n.size() > b.size() && n.compare(n.size() - b.size(), b.size(), b) == 0) n = n.substr(0, n.size() - 4) + "beta";
    ts.push_back({n, t.shape, t.values});
  }
  SafetensorsTensorIn pos_ids{"bert.embeddings.position_ids", Dtype::I64, {1, 64}, std::vector<std::uint8_t>(64 * 8, 0)};
  const Checkpoint ck = write_checkpoint(ts, Store::f32, 1, {pos_ids});
  CHECK(ck.files[0].find("bert.embeddings.LayerNorm.gamma") != nullptr);
  auto m = load("bert", ck);
  INFO((m.ok() ? "" : m.error().message));
  REQUIRE(m.ok());
  CHECK_FALSE(m->config.has_lm_head);
  const RunResult r = run(*m, "bert");
  check_max("attentions vs oracle", r.patterns, oracle("bert", "attentions.npy"), 1e-5);
  check_max("hidden_states vs oracle", r.hidden, oracle("bert", "hidden_states.npy"), 1e-4);
  CHECK(r.logits.empty());
}

TEST_CASE("BERT with an MLM head computes LN(act(h W + b)) W_E^T + bias", "[checkpoint]") {
  std::vector<Tensor> ts;
  for (auto& t : fixture_tensors("bert")) ts.push_back({"bert." + t.name, t.shape, t.values});
  const int d = 64, V = 128;
  // Deterministic, not symmetric weights for the head.
  auto fill = [](std::size_t n, float scale, float phase) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = scale * std::sin(0.37f * i + phase);
    return v;
  };
  const Tensor dense{"cls.predictions.transform.dense.weight", {d, d}, fill(d * d, 0.2f, 0.1f)};
  const Tensor dense_b{"cls.predictions.transform.dense.bias", {d}, fill(d, 0.1f, 0.2f)};
  const Tensor ln_w{"cls.predictions.transform.LayerNorm.weight", {d}, fill(d, 0.5f, 0.3f)};
  const Tensor ln_b{"cls.predictions.transform.LayerNorm.bias", {d}, fill(d, 0.1f, 0.4f)};
  const Tensor bias{"cls.predictions.bias", {V}, fill(V, 0.3f, 0.5f)};
  for (const Tensor& t : {dense, dense_b, ln_w, ln_b, bias}) ts.push_back(t);
  const Checkpoint ck = write_checkpoint(ts);
  auto m = load("bert", ck);
  INFO((m.ok() ? "" : m.error().message));
  REQUIRE(m.ok());
  REQUIRE(m->config.has_lm_head);
  const RunResult r = run(*m, "bert");
  REQUIRE(r.logits.size() == static_cast<std::size_t>(12 * V));
  CHECK(std::isnan(r.loss));  // no next-token loss for a bidirectional model

  // Reference from the oracle's last_hidden_state, in double, written out
  // here independently of forward.cpp (HF BertLMPredictionHead).
  const std::vector<float> h = oracle("bert", "last_hidden_state.npy");
  const std::vector<float> wte = find(ts, "bert.embeddings.word_embeddings.weight")->values;
  std::vector<float> want(12 * V);
  for (int t = 0; t < 12; ++t) {
    std::vector<double> y(d);
    for (int o = 0; o < d; ++o) {
      double s = dense_b.values[o];
      for (int i = 0; i < d; ++i) s += double(dense.values[o * d + i]) * h[t * d + i];  // nn.Linear [out, in]
      y[o] = 0.5 * s * (1 + std::erf(s / std::sqrt(2.0)));
    }
    double mu = 0, var = 0;
    for (double v : y) mu += v / d;
    for (double v : y) var += (v - mu) * (v - mu) / d;
    for (int o = 0; o < d; ++o) y[o] = (y[o] - mu) / std::sqrt(var + 1e-12) * ln_w.values[o] + ln_b.values[o];
    for (int k = 0; k < V; ++k) {
      double s = bias.values[k];
      for (int o = 0; o < d; ++o) s += y[o] * wte[k * d + o];
      want[t * V + k] = static_cast<float>(s);
    }
  }
  check_max("MLM logits vs independent reference", r.logits, want, 1e-4);
}

TEST_CASE("registered buffers of NeoX, GPT-Neo and LLaMA checkpoints are ignored", "[checkpoint]") {
  struct Case {
    const char* fixture;
    std::function<std::vector<SafetensorsTensorIn>(int)> buffers;
  };
  const std::vector<Case> cases = {
      {"gpt_neox",
       [](int l) {
         const std::string p = "gpt_neox.layers." + std::to_string(l) + ".attention.";
         return std::vector<SafetensorsTensorIn>{bool_tensor(p + "bias", {1, 1, 64, 64}),
                                                 safetensors_tensor_f32(p + "masked_bias", {}, {-1e9f}),
                                                 safetensors_tensor_f32(p + "rotary_emb.inv_freq", {2}, {1.f, 0.01f})};
       }},
      {"gpt_neo",
       [](int l) {
         const std::string p = "transformer.h." + std::to_string(l) + ".attn.attention.";
         return std::vector<SafetensorsTensorIn>{bool_tensor(p + "bias", {1, 1, 64, 64}),
                                                 safetensors_tensor_f32(p + "masked_bias", {}, {-1e9f})};
       }},
      {"llama",
       [](int l) {
         const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
         return std::vector<SafetensorsTensorIn>{safetensors_tensor_f32(p + "rotary_emb.inv_freq", {8}, std::vector<float>(8, 1.f))};
       }},
  };
  for (const Case& c : cases) {
    INFO(c.fixture);
    std::vector<SafetensorsTensorIn> extra;
    for (int l = 0; l < 2; ++l)
      for (auto& b : c.buffers(l)) extra.push_back(b);
    const Checkpoint ck = write_checkpoint(fixture_tensors(c.fixture), Store::f32, 1, extra);
    auto m = load(c.fixture, ck);
    INFO((m.ok() ? "" : m.error().message));
    REQUIRE(m.ok());
    CHECK(m->warnings.empty());
    check_max("logits vs oracle", run(*m, c.fixture).logits, oracle(c.fixture, "logits.npy"), 1e-4);
  }
}

TEST_CASE("OPT files with the decoder. prefix (no model.) load", "[checkpoint]") {
  std::vector<Tensor> ts;
  for (auto& t : fixture_tensors("opt")) ts.push_back({strip(t.name, "model."), t.shape, t.values});
  CHECK(ts[0].name.rfind("decoder.", 0) == 0);
  const Checkpoint ck = write_checkpoint(ts);
  auto m = load("opt", ck);
  INFO((m.ok() ? "" : m.error().message));
  REQUIRE(m.ok());
  check_max("logits vs oracle", run(*m, "opt").logits, oracle("opt", "logits.npy"), 1e-4);
}

TEST_CASE("a missing tensor is an error naming it", "[checkpoint]") {
  std::vector<Tensor> ts = fixture_tensors("gpt2");
  ts.erase(std::remove_if(ts.begin(), ts.end(), [](const Tensor& t) { return t.name == "transformer.h.1.mlp.c_fc.weight"; }),
           ts.end());
  auto m = load("gpt2", write_checkpoint(ts));
  REQUIRE_FALSE(m.ok());
  INFO(m.error().message);
  CHECK_THAT(m.error().message, Catch::Contains("missing tensor") && Catch::Contains("h.1.mlp.c_fc.weight") &&
                                    Catch::Contains("[64, 256]"));

  // An untied model without its unembedding falls back to W_E with a warning.
  std::vector<Tensor> nx = fixture_tensors("gpt_neox");
  nx.erase(std::remove_if(nx.begin(), nx.end(), [](const Tensor& t) { return t.name == "embed_out.weight"; }), nx.end());
  auto n = load("gpt_neox", write_checkpoint(nx));
  REQUIRE(n.ok());
  REQUIRE(n->warnings.size() == 1);
  CHECK_THAT(n->warnings[0], Catch::Contains("embed_out.weight"));
}

TEST_CASE("a tensor of the wrong shape is an error with expected and found shapes", "[checkpoint]") {
  std::vector<Tensor> ts = fixture_tensors("gpt2");
  Tensor* t = find(ts, "transformer.h.0.attn.c_attn.weight");
  t->shape = {64, 191};
  t->values.resize(64 * 191);
  auto m = load("gpt2", write_checkpoint(ts));
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().message ==
        "checkpoint: tensor 'transformer.h.0.attn.c_attn.weight': expected [64, 192], found [64, 191]");

  // A config that disagrees with the weights is caught the same way.
  auto config = load_fixture_config("llama");
  REQUIRE(config.ok());
  ModelConfig c = *config;
  c.n_kv_head = 4;
  const Checkpoint ck = write_checkpoint(fixture_tensors("llama"));
  auto l = model_from_checkpoint(c, ck.shards());
  REQUIRE_FALSE(l.ok());
  CHECK_THAT(l.error().message, Catch::Contains("k_proj.weight': expected [64, 64], found [32, 64]"));
}

TEST_CASE("NaN or Inf weights load with a warning naming the tensor", "[checkpoint]") {
  std::vector<Tensor> ts = fixture_tensors("gpt2");
  Tensor* t = find(ts, "transformer.h.1.ln_2.bias");
  t->values[3] = std::numeric_limits<float>::quiet_NaN();
  t->values[7] = std::numeric_limits<float>::infinity();
  auto m = load("gpt2", write_checkpoint(ts));
  REQUIRE(m.ok());
  REQUIRE(m->warnings.size() == 1);
  INFO(m->warnings[0]);
  CHECK_THAT(m->warnings[0], Catch::Contains("transformer.h.1.ln_2.bias") && Catch::Contains("2 NaN/Inf") &&
                                 Catch::Contains("index 3"));
}

TEST_CASE("16-bit matrices hold the stored bits, transposed where the layout asks, and their NaNs are named",
          "[checkpoint]") {
  // The 16-bit patterns a matrix holds, row-major.
  const auto bits = [](const WeightMatrix& W) {
    std::vector<std::uint16_t> out(static_cast<std::size_t>(W.rows() * W.cols()));
    W.visit([&](const auto* p) {
      if constexpr (!std::is_same_v<std::decay_t<decltype(*p)>, float>)
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = p[i].bits;
    });
    return out;
  };
  // A tensor's stored patterns, [R, C] row-major.
  const auto stored = [](const Checkpoint& ck, const std::string& name) {
    const TensorInfo* t = nullptr;
    const SafetensorsFile* file = nullptr;
    for (const auto& f : ck.files)
      if (f.find(name)) file = &f, t = f.find(name);
    REQUIRE(t);
    std::vector<std::uint16_t> out(static_cast<std::size_t>(t->numel()));
    REQUIRE(safetensors_read_16bit_into(*file, *t, 0, t->numel(), out.data()).ok());
    return out;
  };
  for (Store store : {Store::bf16, Store::f16}) {
    // GPT-2 stores the embedding and Conv1D weights as the model holds them.
    const Checkpoint gpt2 = write_checkpoint(fixture_tensors("gpt2"), store);
    const Model g = must(load("gpt2", gpt2));
    CHECK(bits(g.weights.W_E) == stored(gpt2, "transformer.wte.weight"));
    CHECK(bits(g.weights.layers[1].W_in) == stored(gpt2, "transformer.h.1.mlp.c_fc.weight"));
    // LLaMA's nn.Linear weights [out, in] are held as W [in, out].
    const Checkpoint llama = write_checkpoint(fixture_tensors("llama"), store);
    const Model m = must(load("llama", llama));
    const WeightMatrix& up = m.weights.layers[0].W_in;
    const auto file = stored(llama, "model.layers.0.mlp.up_proj.weight");
    const auto held = bits(up);
    bool transposed = true;
    for (Eigen::Index r = 0; r < up.rows(); ++r)
      for (Eigen::Index c = 0; c < up.cols(); ++c)
        transposed = transposed && held[static_cast<std::size_t>(r * up.cols() + c)] == file[static_cast<std::size_t>(c * up.rows() + r)];
    CHECK(transposed);
  }
  // A NaN in a matrix kept 16-bit is named like one in float32.
  std::vector<Tensor> ts = fixture_tensors("gpt2");
  find(ts, "transformer.h.0.mlp.c_proj.weight")->values[5] = std::numeric_limits<float>::quiet_NaN();
  auto m = load("gpt2", write_checkpoint(ts, Store::bf16));
  REQUIRE(m.ok());
  REQUIRE(m->weights.layers[0].W_out.storage() == WeightStorage::bf16);
  REQUIRE(m->warnings.size() == 1);
  CHECK_THAT(m->warnings[0], Catch::Contains("transformer.h.0.mlp.c_proj.weight") && Catch::Contains("1 NaN/Inf") &&
                                 Catch::Contains("index 5"));
}

TEST_CASE("two names resolving to the same tensor are an error", "[checkpoint]") {
  std::vector<Tensor> ts = fixture_tensors("gpt2");
  Tensor wte = *find(ts, "transformer.wte.weight");
  ts.push_back({"wte.weight", wte.shape, wte.values});
  auto m = load("gpt2", write_checkpoint(ts, Store::f32, 2));
  REQUIRE_FALSE(m.ok());
  CHECK_THAT(m.error().message, Catch::Contains("transformer.wte.weight") && Catch::Contains("'wte.weight'"));
}

TEST_CASE("a hub-style model rejects too many tokens and out-of-range ids", "[checkpoint]") {
  std::vector<Tensor> ts;
  for (auto& t : fixture_tensors("gpt2")) ts.push_back({strip(t.name, "transformer."), t.shape, t.values});
  const Checkpoint ck = write_checkpoint(ts, Store::bf16);
  auto m = load("gpt2", ck);
  REQUIRE(m.ok());
  auto r = run_model(*m, std::vector<int>(65, 0));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "text is 65 tokens; this model's context is 64");
  CHECK(run_model(*m, std::vector<int>(64, 0)).ok());
  auto bad = run_model(*m, {3, 500});
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("token id 500 at position 1"));
}

TEST_CASE("LLaMA weights run as Mistral: a sliding window masks distant keys, and a wide one changes nothing", "[checkpoint]") {
  auto text = read_text_file(fixture_dir("llama") + "/config.json");
  REQUIRE(text.ok());
  auto j = nlohmann::json::parse(*text, nullptr, false);
  j["model_type"] = "mistral";
  const Checkpoint ck = write_checkpoint(fixture_tensors("llama"));
  const RunResult ref = run(load_fixture_model("llama").value(), "llama");

  j["sliding_window"] = 64;
  auto wide_cfg = config_from_json(j.dump());
  REQUIRE(wide_cfg.ok());
  auto wide = model_from_checkpoint(*wide_cfg, ck.shards());
  REQUIRE(wide.ok());
  check_max("window 64 vs llama", run(*wide, "llama").logits, ref.logits, 0);

  const int w = 3;
  j["sliding_window"] = w;
  auto cfg = config_from_json(j.dump());
  REQUIRE(cfg.ok());
  auto m = model_from_checkpoint(*cfg, ck.shards());
  REQUIRE(m.ok());
  const RunResult r = run(*m, "llama");
  for (int l = 0; l < r.n_layer; ++l)
    for (int h = 0; h < r.n_head; ++h)
      for (int i = 0; i < r.n_tokens; ++i) {
        double sum = 0;
        for (int k = 0; k < r.n_tokens; ++k) {
          const float p = r.pattern(l, h, i, k);
          sum += p;
          if (k > i || i - k >= w) CHECK(p == 0.f);
          else CHECK(p > 0.f);
        }
        CHECK(sum == Approx(1.0).margin(1e-6));
      }
  // Rows that see at most w keys are unchanged in layer 0.
  for (int h = 0; h < r.n_head; ++h)
    for (int i = 0; i < w; ++i)
      for (int k = 0; k <= i; ++k) CHECK(r.pattern(0, h, i, k) == Approx(ref.pattern(0, h, i, k)).margin(1e-6));
}

TEST_CASE("Qwen2 loads q/k/v biases (before RoPE) and no o_proj bias", "[checkpoint]") {
  auto text = read_text_file(fixture_dir("llama") + "/config.json");
  REQUIRE(text.ok());
  auto j = nlohmann::json::parse(*text, nullptr, false);
  j["model_type"] = "qwen2";
  auto cfg = config_from_json(j.dump());
  REQUIRE(cfg.ok());
  const RunResult ref = run(load_fixture_model("llama").value(), "llama");

  auto with_biases = [&](float scale) {
    std::vector<Tensor> ts = fixture_tensors("llama");
    for (int l = 0; l < 2; ++l)
      for (auto [proj, n] : {std::pair<const char*, int>{"q_proj", 64}, {"k_proj", 32}, {"v_proj", 32}}) {
        std::vector<float> b(n);
        for (int i = 0; i < n; ++i) b[i] = scale * std::cos(1.3f * i + l + n);
        ts.push_back({"model.layers." + std::to_string(l) + ".self_attn." + proj + ".bias", {n}, b});
      }
    return ts;
  };
  // Zero biases: the LLaMA result exactly.
  const Checkpoint zero = write_checkpoint(with_biases(0.f));
  auto mz = model_from_checkpoint(*cfg, zero.shards());
  INFO((mz.ok() ? "" : mz.error().message));
  REQUIRE(mz.ok());
  check_max("zero biases vs llama", run(*mz, "llama").logits, ref.logits, 0);

  // Non-zero biases land in b_Q / b_K / b_V in order, and change the output.
  const std::vector<Tensor> ts = with_biases(0.3f);
  const Checkpoint ck = write_checkpoint(ts);
  auto m = model_from_checkpoint(*cfg, ck.shards());
  REQUIRE(m.ok());
  for (const Tensor& t : ts) {
    const LayerWeights& L = m->weights.layers[t.name[13] - '0'];
    const RowVectorF* b = t.name.find("q_proj.bias") != std::string::npos   ? &L.b_Q
                          : t.name.find("k_proj.bias") != std::string::npos ? &L.b_K
                          : t.name.find("v_proj.bias") != std::string::npos ? &L.b_V
                                                                            : nullptr;
    if (!b) continue;
    INFO(t.name);
    REQUIRE(b->size() == static_cast<Eigen::Index>(t.values.size()));
    for (std::size_t i = 0; i < t.values.size(); ++i) CHECK((*b)[i] == t.values[i]);
  }
  CHECK(m->weights.layers[0].b_O.isZero(0));
  CHECK(compare_arrays(run(*m, "llama").logits, ref.logits, 0).max_abs > 1e-3);

  // A Qwen2 file without its q bias is an error naming it.
  std::vector<Tensor> missing = with_biases(0.3f);
  missing.erase(std::remove_if(missing.begin(), missing.end(),
                               [](const Tensor& t) { return t.name == "model.layers.1.self_attn.q_proj.bias"; }),
                missing.end());
  auto e = model_from_checkpoint(*cfg, write_checkpoint(missing).shards());
  REQUIRE_FALSE(e.ok());
  CHECK_THAT(e.error().message, Catch::Contains("layers.1.self_attn.q_proj.bias"));
}

TEST_CASE("attention weights only: a checkpoint of just the attention tensors loads, equals the full model's heads, and refuses text", "[checkpoint]") {
  for (const char* fixture : {"gpt2", "gpt_neox", "llama", "bert", "gpt_neo", "opt"}) {
    INFO(fixture);
    auto config = load_fixture_config(fixture);
    REQUIRE(config.ok());
    const Model full = load_fixture_model(fixture).value();
    // Only the tensors attention_tensor keeps: the checkpoint a ranged
    // attention-only download assembles.
    std::vector<Tensor> kept;
    int dropped = 0;
    for (auto& t : fixture_tensors(fixture)) {
      if (attention_tensor(*config, t.name)) kept.push_back(t);
      else ++dropped;
    }
    CHECK(dropped > 0);  // embeddings and MLPs at least
    const Checkpoint ck = write_checkpoint(kept);
    CheckpointOptions options;
    options.attention_only = true;
    auto m = model_from_checkpoint(*config, ck.shards(), options);
    INFO((m.ok() ? "" : m.error().message));
    REQUIRE(m.ok());
    CHECK(m->config.attention_only);
    CHECK(m->weights.W_E.size() == 0);
    REQUIRE(m->weights.layers.size() == full.weights.layers.size());
    for (std::size_t l = 0; l < full.weights.layers.size(); ++l) {
      const LayerWeights &a = m->weights.layers[l], &b = full.weights.layers[l];
      CHECK(a.W_Q == b.W_Q);
      CHECK(a.W_K == b.W_K);
      CHECK(a.W_V == b.W_V);
      CHECK(a.W_O == b.W_O);
      CHECK(a.b_Q == b.b_Q);
      CHECK(a.b_O == b.b_O);
      CHECK(a.ln1_w == b.ln1_w);
      CHECK(a.W_in.size() == 0);
    }
    auto r = run_model(*m, {1, 2, 3});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("attention weights only") != std::string::npos);
    // The full load still needs everything: the attention-only checkpoint is not a model.
    auto missing = model_from_checkpoint(*config, ck.shards());
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message.find("missing tensor") != std::string::npos);
  }
}
