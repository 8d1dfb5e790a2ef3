// The training passes (core/train.hpp): the backward pass against central
// finite differences, the training forward against the inference forward
// (run_model), a short run that must lower the loss and be bit-reproducible,
// and the exported Hugging Face files read back through the loader.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "config.hpp"
#include "forward.hpp"
#include "model.hpp"
#include "rng.hpp"
#include "safetensors.hpp"
#include "train.hpp"

using namespace hs;

namespace {

// A tiny gpt2 model whose weights are far from the initialisation (so that
// LayerNorm gains, biases and attention patterns all matter).
Model tiny_model(std::uint64_t seed, int d_vocab = 23, int n_ctx = 12) {
  Result<Model> m = gpt2_init(gpt2_config(2, 16, 4, 32, d_vocab, n_ctx), seed);
  REQUIRE(m.ok());
  Model model = std::move(m).value();
  Rng rng(seed + 100);
  for (ParamRef& p : trainable_params(model.weights))
    for (std::size_t i = 0; i < p.size; ++i) p.data[i] += static_cast<float>(0.3 * rng.normal());
  return model;
}

struct Batch {
  std::vector<int> tokens, targets;
};

Batch random_batch(std::uint64_t seed, int n_seq, int n_tok, int d_vocab) {
  Rng rng(seed);
  Batch b;
  for (int i = 0; i < n_seq * n_tok; ++i) {
    b.tokens.push_back(rng.below(d_vocab));
    b.targets.push_back(i % 5 == 3 ? -1 : rng.below(d_vocab));  // some rows carry no loss
  }
  return b;
}

double loss_of(const Model& model, const Batch& b, int n_seq, int n_tok, const std::vector<float>& gate) {
  TrainCache cache;
  Result<double> loss = train_forward(model, b.tokens, b.targets, n_seq, n_tok, cache, gate);
  REQUIRE(loss.ok());
  return *loss;
}

}  // namespace

TEST_CASE("the training backward pass agrees with central finite differences on a tiny model", "[train]") {
  Model model = tiny_model(7);
  const int B = 2, T = 7;
  const Batch batch = random_batch(11, B, T, model.config.d_vocab);
  std::vector<float> gate(8, 1.f);
  gate[2] = 0.5f;  // a partly gated head and an ablated one exercise the gate's gradient paths
  gate[5] = 0.f;

  TrainCache cache;
  REQUIRE(train_forward(model, batch.tokens, batch.targets, B, T, cache, gate).ok());
  ModelWeights grads = zeros_like(model.weights);
  train_backward(model, cache, grads);

  // Central differences in float with step 1e-2: truncation and rounding
  // errors are ~1e-4 relative to these gradients (measured worst 1.3e-2 relative
  // on near-zero entries); a wrong term is off by O(1).
  const double eps = 1e-2, abs_tol = 2e-3, rel_tol = 2e-2;
  std::vector<ParamRef> params = trainable_params(model.weights);
  std::vector<ParamRef> analytic = trainable_params(grads);
  double worst = 0;
  std::string worst_where;
  int checked = 0;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const std::size_t stride = params[k].size / 6 + 1;  // ~6 entries per tensor, spread over it
    for (std::size_t i = 0; i < params[k].size; i += stride) {
      const float old = params[k].data[i];
      params[k].data[i] = static_cast<float>(old + eps);
      const double up = loss_of(model, batch, B, T, gate);
      params[k].data[i] = static_cast<float>(old - eps);
      const double down = loss_of(model, batch, B, T, gate);
      params[k].data[i] = old;
      const double fd = (up - down) / (2 * eps);
      const double an = analytic[k].data[i];
      const double excess = std::fabs(fd - an) / (abs_tol + rel_tol * std::max(std::fabs(fd), std::fabs(an)));
      if (excess > worst) {
        worst = excess;
        std::ostringstream where;
        where << params[k].name << "[" << i << "]: analytic " << an << ", finite difference " << fd;
        worst_where = where.str();
      }
      ++checked;
    }
  }
  INFO("checked " << checked << " entries; worst (|diff| / (" << abs_tol << " + " << rel_tol << " |g|) = " << worst
                  << ") at " << worst_where);
  CHECK(checked > 150);
  CHECK(worst <= 1.0);
}

TEST_CASE("the training forward gives run_model's logits, patterns and ablated losses", "[train]") {
  const Model model = tiny_model(3);
  const int B = 3, T = 12, V = model.config.d_vocab, H = model.config.n_head;
  Batch batch = random_batch(5, B, T, V);
  for (int i = 0; i < B * T; ++i)  // targets = next tokens, as run_model's loss uses
    batch.targets[i] = (i % T + 1 < T) ? batch.tokens[i + 1] : -1;

  for (const std::vector<float>& gate : {std::vector<float>{}, std::vector<float>{1, 0, 1, 1, 1, 1, 0, 1}}) {
    TrainCache cache;
    REQUIRE(train_forward(model, batch.tokens, batch.targets, B, T, cache, gate).ok());
    double worst_logit = 0, worst_pattern = 0, worst_loss = 0;
    for (int b = 0; b < B; ++b) {
      const std::vector<int> ids(batch.tokens.begin() + b * T, batch.tokens.begin() + (b + 1) * T);
      RunOptions opt;
      opt.head_gate = gate;
      Result<RunResult> run = run_model(model, ids, opt);
      REQUIRE(run.ok());
      for (int t = 0; t < T; ++t)
        for (int v = 0; v < V; ++v)
          worst_logit = std::max(worst_logit, static_cast<double>(std::fabs(run->logits[t * V + v] - cache.logits(b * T + t, v))));
      for (int l = 0; l < model.config.n_layer; ++l)
        for (int h = 0; h < H; ++h)
          for (int i = 0; i < T; ++i)
            for (int j = 0; j < T; ++j) {
              // run_model reports the gated pattern (as transformers does); the cache keeps it ungated.
              const float g = gate.empty() ? 1.f : gate[l * H + h];
              worst_pattern = std::max(worst_pattern, static_cast<double>(std::fabs(
                  run->pattern(l, h, i, j) - g * cache.head_pattern(l, b, h, H)(i, j))));
            }
      for (int t = 0; t + 1 < T; ++t)
        worst_loss = std::max(worst_loss, static_cast<double>(std::fabs(run->token_loss[t] - cache.row_loss[b * T + t])));
    }
    INFO("gate " << (gate.empty() ? "none" : "L0H1, L1H2 ablated") << ": worst |logit diff| " << worst_logit
                 << ", |pattern diff| " << worst_pattern << ", |token loss diff| " << worst_loss);
    CHECK(worst_logit <= 1e-4);
    CHECK(worst_pattern <= 1e-5);
    CHECK(worst_loss <= 1e-4);
  }
}

TEST_CASE("a short training run lowers the loss and is reproducible bit for bit", "[train]") {
  // Arithmetic sequences modulo 32 with a per-sequence stride, written as
  // (stride marker, x0, x1, ...): the next token follows from the previous two.
  auto run = [](std::uint64_t seed, std::vector<double>& losses) {
    Result<Model> m = gpt2_init(gpt2_config(2, 32, 4, 64, 32, 32), seed);
    REQUIRE(m.ok());
    Model model = std::move(m).value();
    AdamWState state = adamw_init(model);
    ModelWeights grads = zeros_like(model.weights);
    TrainCache cache;
    Rng data(seed + 1);
    const int B = 8, T = 32;
    for (int step = 0; step < 40; ++step) {
      std::vector<int> tok(B * T), tgt(B * T);
      for (int b = 0; b < B; ++b) {
        const int stride = 1 + data.below(3);
        int x = data.below(32);
        for (int k = 0; k < T; ++k, x = (x + stride) % 32) tok[b * T + k] = x;
        for (int k = 0; k < T; ++k) tgt[b * T + k] = (k + 1 < T) ? tok[b * T + k + 1] : -1;
      }
      Result<double> loss = train_forward(model, tok, tgt, B, T, cache);
      REQUIRE(loss.ok());
      losses.push_back(*loss);
      train_backward(model, cache, grads);
      adamw_step(model, grads, state, AdamWConfig{}, 1e-2f);
    }
    return model;
  };
  std::vector<double> a, b;
  const Model ma = run(1, a);
  const Model mb = run(1, b);
  const double first = (a[0] + a[1] + a[2]) / 3, last = (a[37] + a[38] + a[39]) / 3;
  INFO("mean loss of the first 3 steps " << first << ", of the last 3 " << last << " (ln 32 = " << std::log(32.0) << ")");
  CHECK(last < 0.5 * first);
  CHECK(a == b);
  CHECK(ma.weights.W_E == mb.weights.W_E);
  CHECK(ma.weights.layers[1].W_O == mb.weights.layers[1].W_O);
}

TEST_CASE("the exported GPT-2 files round-trip through config_from_json, safetensors and model_from_checkpoint", "[train]") {
  const Model model = tiny_model(9, 40, 16);
  const std::string config_text = gpt2_config_json(model.config, 39, 39);
  Result<ModelConfig> config = config_from_json(config_text);
  INFO(config_text << (config.ok() ? "" : config.error().message));
  REQUIRE(config.ok());
  CHECK(config->family == Family::gpt2);
  CHECK(config->n_layer == model.config.n_layer);
  CHECK(config->d_model == model.config.d_model);
  CHECK(config->n_head == model.config.n_head);
  CHECK(config->d_head == model.config.d_head);
  CHECK(config->d_mlp == model.config.d_mlp);
  CHECK(config->d_vocab == model.config.d_vocab);
  CHECK(config->n_ctx == model.config.n_ctx);
  CHECK(config->norm_eps == model.config.norm_eps);
  CHECK(config->attn_scale == model.config.attn_scale);
  CHECK(config->act == Activation::gelu_new);
  CHECK(config->tied_embeddings);
  CHECK(config->bos_token_id == 39);

  std::vector<SafetensorsTensorIn> tensors;
  for (const NamedTensor& t : gpt2_state_dict(model)) tensors.push_back(safetensors_tensor_f32(t.name, t.shape, t.data));
  const std::vector<std::uint8_t> bytes = safetensors_serialize(tensors, {{"format", "pt"}});
  Result<SafetensorsFile> file = safetensors_parse(bytes.data(), bytes.size(), "model.safetensors");
  REQUIRE(file.ok());
  // GPT-2 layout: Conv1D [in, out] and one fused c_attn; no lm_head (tied).
  const TensorInfo* c_attn = file->find("transformer.h.1.attn.c_attn.weight");
  REQUIRE(c_attn != nullptr);
  CHECK(c_attn->shape == std::vector<std::int64_t>{16, 48});
  CHECK(file->find("transformer.h.0.mlp.c_fc.weight")->shape == std::vector<std::int64_t>{16, 32});
  CHECK(file->find("lm_head.weight") == nullptr);

  Result<Model> loaded = model_from_checkpoint(*config, {&file.value()});
  INFO((loaded.ok() ? "" : loaded.error().message));
  REQUIRE(loaded.ok());

  const std::vector<int> ids = {39, 3, 17, 8, 3, 17, 25, 0, 39, 12, 3, 17, 8, 30, 2, 1};
  Result<RunResult> a = run_model(model, ids);
  Result<RunResult> b = run_model(*loaded, ids);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < a->logits.size(); ++i) {
    const double diff = std::fabs(a->logits[i] - b->logits[i]);
    if (diff > worst) {
      worst = diff;
      at = i;
    }
  }
  INFO("worst |logit diff| " << worst << " at token " << at / 40 << ", vocab " << at % 40);
  CHECK(worst == 0.0);  // same weights, same forward: the same bits

  // And the training forward on the loaded model gives the in-memory model's logits.
  TrainCache cache;
  std::vector<int> targets(ids.size(), -1);
  REQUIRE(train_forward(*loaded, ids, targets, 1, static_cast<int>(ids.size()), cache).ok());
  double worst_train = 0;
  for (std::size_t i = 0; i < a->logits.size(); ++i)
    worst_train = std::max(worst_train, static_cast<double>(std::fabs(a->logits[i] - cache.logits(static_cast<long>(i / 40), static_cast<long>(i % 40)))));
  INFO("worst |logit diff| train_forward(loaded) vs run_model(original): " << worst_train);
  CHECK(worst_train <= 1e-4);
}

TEST_CASE("training refuses models it does not implement, naming what is wrong", "[train]") {
  ModelConfig c = gpt2_config(2, 16, 4, 32, 23, 12);
  c.tied_embeddings = false;
  Status s = check_trainable(c);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("tied") != std::string::npos);
  c = gpt2_config(2, 16, 4, 32, 23, 12);
  c.family = Family::llama;
  CHECK_FALSE(gpt2_init(c, 1).ok());

  const Model model = tiny_model(1);
  TrainCache cache;
  Result<double> r = train_forward(model, {1, 2, 99}, {2, 99, -1}, 1, 3, cache);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("99") != std::string::npos);
}
