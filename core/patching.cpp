#include "patching.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>
#include <string>

namespace hs {

const char* metric_kind_name(MetricKind kind) { return kind == MetricKind::loss ? "loss" : "logit_diff"; }

const char* patch_target_name(PatchTarget target) {
  switch (target) {
    case PatchTarget::heads: return "heads";
    case PatchTarget::heads_by_position: return "heads_by_position";
    case PatchTarget::resid: return "resid";
    case PatchTarget::q: return "q";
    case PatchTarget::k: return "k";
    case PatchTarget::v: return "v";
  }
  return "?";
}

const char* patch_direction_name(PatchDirection direction) {
  return direction == PatchDirection::noise ? "noise" : "denoise";
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The metric's checks, and its position resolved for T tokens.
Result<PatchMetric> resolved_metric(const Model& model, PatchMetric m, int T) {
  const int V = model.config.d_vocab;
  if (!has_unembedding(model))
    return make_error("this model has no LM head: patching and logit attribution read the logits");
  if (m.answer < 0 || m.answer >= V)
    return make_error("the answer token id " + std::to_string(m.answer) + " is out of range (the vocabulary has " +
                      std::to_string(V) + " tokens)");
  if (m.wrong >= V)
    return make_error("the wrong-answer token id " + std::to_string(m.wrong) + " is out of range (the vocabulary has " +
                      std::to_string(V) + " tokens)");
  if (m.position < 0) m.position = T - 1;
  if (m.position >= T)
    return make_error("position " + std::to_string(m.position) + " is past the text's " + std::to_string(T) + " tokens");
  return m;
}

// The metric from a run's last hidden state (the LM head's input) at the
// metric's position: only the logits it reads are computed (two columns of
// the unembedding for a logit difference, one row for the loss), since the
// whole [T, V] would cost more than the blocks of a short text.
double metric_of(const Model& model, const PatchMetric& m, const RunResult& run) {
  const ModelWeights& w = model.weights;
  const Eigen::Index T = run.n_tokens, d = run.d_model;
  MatrixRM x = ConstMapRM(run.hidden.data() + (static_cast<std::size_t>(run.n_layer) * T + m.position) * d, 1, d);
  lm_head_transform(model, x);
  const double cap = model.config.final_softcap;
  auto logit = [&](int token) {
    const double bias = w.b_U.size() ? w.b_U[token] : 0.0;
    const double raw = static_cast<double>((x * unembedding_block(w, token, 1))(0, 0)) + bias;
    return cap > 0 ? cap * std::tanh(raw / cap) : raw;
  };
  if (m.kind == MetricKind::loss) {
    MatrixRM logits;
    unembed_forward(logits, x, w);
    logit_softcap_forward(logits, model.config.final_softcap);
    double nll = 0;
    cross_entropy_forward(&nll, nullptr, logits, &m.answer);
    return nll;
  }
  return logit(m.answer) - (m.wrong >= 0 ? logit(m.wrong) : 0.0);
}

Status check_pair(const std::vector<int>& clean, const std::vector<int>& corrupt) {
  if (clean.empty() || corrupt.empty()) return make_error("patching needs two texts, and one is empty");
  if (clean.size() != corrupt.size())
    return make_error("the clean text is " + std::to_string(clean.size()) + " tokens and the corrupted one " +
                      std::to_string(corrupt.size()) +
                      ": patching needs texts of the same token length (change a word for one of as many tokens)");
  return Ok{};
}

// Options of a run that keeps no patterns, logits or loss (the metric reads
// the last hidden state).
RunOptions quiet_run() {
  RunOptions opt;
  opt.want_patterns = false;
  opt.want_logits = false;
  opt.want_loss = false;
  return opt;
}

// One run of the (edited) model, cached for patching: the residual at every
// block's input, every head's z, and q, k, v.
struct CachedRun {
  RunResult run;  // hidden [L+1, T, d]
  std::vector<MatrixRM> z, q, k, v;  // per layer
  double metric = 0;
};

Result<CachedRun> cached_run(const Model& model, const std::vector<int>& ids, const PatchMetric& metric,
                             const ModelEdits& edits) {
  const int L = model.config.n_layer;
  CachedRun c;
  c.z.resize(L);
  c.q.resize(L);
  c.k.resize(L);
  c.v.resize(L);
  RunOptions opt = quiet_run();
  opt.on_z = [&](int l, MatrixRM& z) { c.z[l] = z; };
  opt.on_qkv = [&](int l, MatrixRM& q, MatrixRM& k, MatrixRM& v) {
    c.q[l] = q;
    c.k[l] = k;
    c.v[l] = v;
  };
  auto r = run_edited(model, ids, edits, opt);
  if (!r.ok()) return r.error();
  c.run = std::move(r).value();
  c.metric = metric_of(model, metric, c.run);
  return c;
}

// Block l's input of a cached run, [T, d].
MatrixRM block_input(const CachedRun& c, int l) {
  const Eigen::Index T = c.run.n_tokens, d = c.run.d_model;
  return ConstMapRM(c.run.hidden.data() + static_cast<std::size_t>(l) * T * d, T, d);
}

// The options of a run resumed at `layer` from `resid`, up to the LM head's
// input (the metric reads it).
RunOptions resumed(int layer, const MatrixRM* resid) {
  RunOptions opt = quiet_run();
  opt.first_layer = layer;
  opt.resid_in = resid;
  return opt;
}

Result<double> metric_run(const Model& model, const std::vector<int>& ids, const ModelEdits& edits,
                          const PatchMetric& metric, const RunOptions& opt) {
  auto r = run_edited(model, ids, edits, opt);
  if (!r.ok()) return r.error();
  return metric_of(model, metric, r.value());
}

// The two runs every patching experiment starts from, with its metric
// resolved for their length.
struct PairRuns {
  PatchMetric metric;
  CachedRun clean, corrupt;
};

Result<PairRuns> pair_runs(const Model& model, const std::vector<int>& clean, const std::vector<int>& corrupt,
                           const PatchMetric& given, const ModelEdits& edits) {
  HS_TRY(check_pair(clean, corrupt));
  auto metric = resolved_metric(model, given, static_cast<int>(clean.size()));
  if (!metric.ok()) return metric.error();
  auto a = cached_run(model, clean, *metric, edits);
  if (!a.ok()) return a.error();
  auto b = cached_run(model, corrupt, *metric, edits);
  if (!b.ok()) return b.error();
  return PairRuns{*metric, std::move(a).value(), std::move(b).value()};
}

double normalised(double value, double clean, double corrupt) {
  return clean == corrupt ? kNaN : (value - corrupt) / (clean - corrupt);
}

}  // namespace

Result<PatchResult> activation_patch(const Model& model, const std::vector<int>& clean,
                                     const std::vector<int>& corrupt, const PatchOptions& options,
                                     const ModelEdits& edits, const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  auto runs = pair_runs(model, clean, corrupt, options.metric, edits);
  if (!runs.ok()) return runs.error();
  const PatchMetric& metric = runs->metric;
  const CachedRun& clean_run = runs->clean;
  const CachedRun& corrupt_run = runs->corrupt;
  const int L = c.n_layer, H = c.n_head, G = c.n_kv_head, dh = c.d_head, T = static_cast<int>(clean.size());
  const bool denoise = options.direction == PatchDirection::denoise;
  const CachedRun& source = denoise ? clean_run : corrupt_run;
  const CachedRun& target = denoise ? corrupt_run : clean_run;
  const std::vector<int>& ids = denoise ? corrupt : clean;

  PatchResult res;
  res.n_layer = L;
  res.n_head = H;
  res.n_kv_head = G;
  res.n_tokens = T;
  res.target = options.target;
  res.direction = options.direction;
  res.metric = metric;
  res.clean = clean_run.metric;
  res.corrupt = corrupt_run.metric;
  const PatchTarget what = options.target;
  const int per_layer = what == PatchTarget::resid ? T : (what == PatchTarget::k || what == PatchTarget::v) ? G : H;
  const int per_unit = what == PatchTarget::heads_by_position ? T : 1;
  res.shape = {L, per_layer};
  if (per_unit > 1) res.shape.push_back(per_unit);
  const int n = L * per_layer * per_unit;
  res.value.assign(n, kNaN);

  for (int i = 0; i < n; ++i) {
    const int l = i / (per_layer * per_unit), unit = (i / per_unit) % per_layer, pos = i % per_unit;
    MatrixRM resid = block_input(target, l);
    RunOptions opt = resumed(l, &resid);
    const int col = unit * dh;
    switch (what) {
      case PatchTarget::resid:
        resid.row(unit) = block_input(source, l).row(unit);
        break;
      case PatchTarget::heads:
        opt.on_z = [&](int layer, MatrixRM& z) {
          if (layer == l) z.middleCols(col, dh) = source.z[l].middleCols(col, dh);
        };
        break;
      case PatchTarget::heads_by_position:
        opt.on_z = [&](int layer, MatrixRM& z) {
          if (layer == l) z.block(pos, col, 1, dh) = source.z[l].block(pos, col, 1, dh);
        };
        break;
      case PatchTarget::q:
      case PatchTarget::k:
      case PatchTarget::v:
        opt.on_qkv = [&](int layer, MatrixRM& q, MatrixRM& k, MatrixRM& v) {
          if (layer != l) return;
          if (what == PatchTarget::q) q.middleCols(col, dh) = source.q[l].middleCols(col, dh);
          if (what == PatchTarget::k) k.middleCols(col, dh) = source.k[l].middleCols(col, dh);
          if (what == PatchTarget::v) v.middleCols(col, dh) = source.v[l].middleCols(col, dh);
        };
        break;
    }
    auto value = metric_run(model, ids, edits, metric, opt);
    if (!value.ok()) return value.error();
    res.value[i] = *value;
    if (!report_progress(progress, (i + 1.0) / n)) return cancelled_error();
  }
  res.effect.resize(n);
  for (int i = 0; i < n; ++i) res.effect[i] = normalised(res.value[i], res.clean, res.corrupt);
  return res;
}

Result<PathReceiver> parse_receiver(const std::string& text) {
  static const std::regex form("L([0-9]{1,4})([HG])([0-9]{1,4}):([qkv])");
  std::smatch m;
  if (!std::regex_match(text, m, form) || (m[2] == "G") != (m[4] != "q"))
    return make_error("receiver '" + text.substr(0, 40) +
                      "': expected LlayerHhead:q for a query, or LlayerGkvhead:k / :v for a key or value (a KV head)");
  PathReceiver r;
  r.layer = std::stoi(m[1]);
  r.head = std::stoi(m[3]);
  r.input = m[4].str()[0];
  return r;
}

std::string receiver_name(const PathReceiver& r) {
  return "L" + std::to_string(r.layer) + (r.input == 'q' ? "H" : "G") + std::to_string(r.head) + ":" + r.input;
}

Result<PathPatchResult> path_patch(const Model& model, const std::vector<int>& clean, const std::vector<int>& corrupt,
                                   const PathPatchOptions& options, const ModelEdits& edits,
                                   const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  const int L = c.n_layer, H = c.n_head, dh = c.d_head;
  for (const PathReceiver& r : options.receivers) {
    const int limit = r.input == 'q' ? H : c.n_kv_head;
    if (r.layer < 0 || r.layer >= L || r.head < 0 || r.head >= limit || (r.input != 'q' && r.input != 'k' && r.input != 'v'))
      return make_error("receiver " + receiver_name(r) + " is not in this model (" + std::to_string(L) + " layers, " +
                        std::to_string(limit) + (r.input == 'q' ? " heads)" : " key/value heads)"));
  }
  bool any_after_zero = options.receivers.empty();
  for (const PathReceiver& r : options.receivers) any_after_zero |= r.layer > 0;
  if (!any_after_zero)
    return make_error("the receivers are all in layer 0, which no head precedes: path patching needs senders in earlier layers");
  auto runs = pair_runs(model, clean, corrupt, options.metric, edits);
  if (!runs.ok()) return runs.error();
  const PatchMetric& metric = runs->metric;
  const CachedRun& clean_run = runs->clean;
  const CachedRun& corrupt_run = runs->corrupt;
  const int T = static_cast<int>(clean.size());

  PathPatchResult res;
  res.n_layer = L;
  res.n_head = H;
  res.n_tokens = T;
  res.metric = metric;
  res.receivers = options.receivers;
  res.clean = clean_run.metric;
  res.corrupt = corrupt_run.metric;
  res.value.assign(static_cast<std::size_t>(L) * H, kNaN);
  res.effect.assign(static_cast<std::size_t>(L) * H, kNaN);
  // Senders up to the last receiver's layer (every layer for the logits);
  // each sends to the receivers in later layers only.
  int last_receiver = options.receivers.empty() ? L : 0;
  for (const PathReceiver& r : options.receivers) last_receiver = std::max(last_receiver, r.layer);
  const int n_senders = last_receiver * H;

  for (int s = 0; s < n_senders; ++s) {
    const int sender_layer = s / H, sender_head = s % H;
    auto reached = [&](const PathReceiver& r) { return r.layer > sender_layer; };
    // 2. The sender from the corrupted run, every other head frozen clean.
    MatrixRM resid = block_input(clean_run, sender_layer);
    RunOptions frozen = resumed(sender_layer, &resid);
    frozen.on_z = [&](int layer, MatrixRM& z) {
      z = clean_run.z[layer];
      if (layer == sender_layer)
        z.middleCols(sender_head * dh, dh) = corrupt_run.z[sender_layer].middleCols(sender_head * dh, dh);
    };
    std::vector<MatrixRM> captured(options.receivers.size());
    frozen.on_qkv = [&](int layer, MatrixRM& q, MatrixRM& k, MatrixRM& v) {
      for (std::size_t i = 0; i < options.receivers.size(); ++i) {
        const PathReceiver& r = options.receivers[i];
        if (r.layer != layer || !reached(r)) continue;
        const MatrixRM& from = r.input == 'q' ? q : r.input == 'k' ? k : v;
        captured[i] = from.middleCols(r.head * dh, dh);
      }
    };
    auto frozen_metric = metric_run(model, clean, edits, metric, frozen);
    if (!frozen_metric.ok()) return frozen_metric.error();
    double value = *frozen_metric;
    if (!options.receivers.empty()) {
      // 3b. The reached receivers' inputs from run 2, everything else recomputed.
      int first = L;
      for (const PathReceiver& r : options.receivers)
        if (reached(r)) first = std::min(first, r.layer);
      const MatrixRM receiver_resid = block_input(clean_run, first);
      RunOptions patched = resumed(first, &receiver_resid);
      patched.on_qkv = [&](int layer, MatrixRM& q, MatrixRM& k, MatrixRM& v) {
        for (std::size_t i = 0; i < options.receivers.size(); ++i) {
          const PathReceiver& r = options.receivers[i];
          if (r.layer != layer || !reached(r)) continue;
          MatrixRM& to = r.input == 'q' ? q : r.input == 'k' ? k : v;
          to.middleCols(r.head * dh, dh) = captured[i];
        }
      };
      auto receiver_metric = metric_run(model, clean, edits, metric, patched);
      if (!receiver_metric.ok()) return receiver_metric.error();
      value = *receiver_metric;
    }
    res.value[s] = value;
    res.effect[s] = normalised(value, res.clean, res.corrupt);
    if (!report_progress(progress, (s + 1.0) / n_senders)) return cancelled_error();
  }
  return res;
}

Result<DirectLogitAttribution> direct_logit_attribution(const Model& model, const std::vector<int>& ids,
                                                        const PatchMetric& given, const ModelEdits& edits) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int L = c.n_layer, H = c.n_head, dh = c.d_head, T = static_cast<int>(ids.size());
  if (c.post_ln)
    return make_error(
        "direct logit attribution needs a residual stream that the components add to; this model (post-LN, BERT) "
        "renormalises it after every sublayer and reads it through a nonlinear MLM head, so no component's share is "
        "linear: use activation or path patching");
  if (given.kind != MetricKind::logit_diff) return make_error("direct logit attribution attributes a logit difference, not a loss");
  if (T == 0) return make_error("direct logit attribution needs a text");
  auto resolved = resolved_metric(model, given, T);
  if (!resolved.ok()) return resolved.error();
  const PatchMetric& metric = *resolved;

  ForwardTape tape;
  std::vector<MatrixRM> mlp_out(L);
  RunOptions opt = quiet_run();
  opt.want_logits = true;  // the total the parts must sum to
  opt.want_hidden = false;
  opt.tape = &tape;
  opt.on_mlp_out = [&](int l, const MatrixRM& m) { mlp_out[l] = m; };
  auto ran = run_edited(model, ids, edits, opt);
  if (!ran.ok()) return ran.error();
  const RunResult& run = *ran;

  // u [d]: the metric's direction in the unembedding; g = gamma * u, centred
  // for LayerNorm. A component c at position t contributes c_t . g / s_t.
  Eigen::VectorXd u = unembedding_block(w, metric.answer, 1).col(0).cast<double>();
  double bias_logit = w.b_U.size() ? w.b_U[metric.answer] : 0.0;
  if (metric.wrong >= 0) {
    u -= unembedding_block(w, metric.wrong, 1).col(0).cast<double>();
    if (w.b_U.size()) bias_logit -= w.b_U[metric.wrong];
  }
  Eigen::VectorXd g = u;
  std::vector<double> scale(T, 1.0);
  double norm_bias = 0;
  if (c.final_norm) {
    const MatrixRM& x = tape.final_norm_in;
    if (w.ln_final_w.size()) g = g.cwiseProduct(w.ln_final_w.transpose().cast<double>());
    if (w.ln_final_b.size()) norm_bias = w.ln_final_b.cast<double>().dot(u.transpose());
    const bool layer_norm = c.norm == NormKind::layer_norm;
    if (layer_norm) g.array() -= g.mean();
    for (int t = 0; t < T; ++t) {
      const Eigen::RowVectorXd row = x.row(t).cast<double>();
      const double mean = layer_norm ? row.mean() : 0.0;
      const double second = (row.array() - mean).square().mean();
      scale[t] = std::sqrt(second + static_cast<double>(c.norm_eps));
    }
  }
  // c [T, d] -> [T] contributions.
  auto project = [&](const MatrixRM& comp, double* outp) {
    const Eigen::VectorXd cg = comp.cast<double>() * g;
    for (int t = 0; t < T; ++t) outp[t] = cg[t] / scale[t];
  };

  DirectLogitAttribution res;
  res.n_layer = L;
  res.n_head = H;
  res.n_tokens = T;
  res.metric = metric;
  res.heads.assign(static_cast<std::size_t>(L) * H * T, 0.0);
  res.attn_bias.assign(static_cast<std::size_t>(L) * T, 0.0);
  res.edit_paths.assign(static_cast<std::size_t>(L) * T, 0.0);
  res.mlp.assign(static_cast<std::size_t>(L) * T, 0.0);
  res.embed.assign(T, 0.0);
  res.bias.assign(T, norm_bias + bias_logit);
  res.total.resize(T);
  res.before_softcap = c.final_softcap > 0;
  for (int t = 0; t < T; ++t) {
    if (res.before_softcap) {
      res.total[t] = tape.head_in.row(t).cast<double>().dot(u.transpose()) + bias_logit;
      continue;
    }
    const float* row = run.logits.data() + static_cast<std::size_t>(t) * run.d_vocab;
    res.total[t] = row[metric.answer] - (metric.wrong >= 0 ? row[metric.wrong] : 0.0);
  }

  // What the layer's attention added beyond its heads and b_O: its edits' paths.
  std::vector<bool> edited_layer(L, false);
  for (const OvEdit& e : edits.ov) edited_layer[e.layer] = true;
  for (const HeadMerge& m : edits.merges) edited_layer[m.layer] = true;
  // The residual at block l's input.
  auto block_input = [&](int l) -> const MatrixRM& { return tape.layers[l].ln1_in; };
  // The RMSNorm after the attention (OLMo 2, Gemma 2/3), with its scale
  // frozen at the run's value: a part p of the attention's output a reaches
  // the residual as w * p / rms(a_t). Identity for the others.
  auto after_attention = [&](int l, MatrixRM part_rows) {
    if (!c.norm_after_sublayer) return part_rows;
    const MatrixRM& a = tape.layers[l].ln1_post_in;
    for (int t = 0; t < T; ++t) {
      const double ms = a.row(t).cast<double>().squaredNorm() / a.cols();
      part_rows.row(t) = part_rows.row(t).cwiseProduct(w.layers[l].ln1_post_w) / static_cast<float>(std::sqrt(ms + c.norm_eps));
    }
    return part_rows;
  };
  project(block_input(0), res.embed.data());
  std::vector<double> block(T), part(T);
  for (int l = 0; l < L; ++l) {
    const LayerWeights& lw = w.layers[l];
    const MatrixRM& next = l + 1 < L ? block_input(l + 1) : tape.final_norm_in;
    // The layer's attention output: what the block added, less its MLP's.
    const MatrixRM attn = next - block_input(l) - mlp_out[l];
    project(attn, block.data());
    project(mlp_out[l], res.mlp.data() + static_cast<std::size_t>(l) * T);
    std::vector<double> rest = block;
    for (int h = 0; h < H; ++h) {
      const MatrixRM out = after_attention(l, tape.layers[l].z.middleCols(h * dh, dh) * head_W_O(lw, h, dh));
      double* mine = res.heads.data() + (static_cast<std::size_t>(l) * H + h) * T;
      project(out, mine);
      for (int t = 0; t < T; ++t) rest[t] -= mine[t];
    }
    const MatrixRM bias_rows = after_attention(l, lw.b_O.replicate(T, 1));
    project(bias_rows, part.data());
    for (int t = 0; t < T; ++t) {
      res.attn_bias[static_cast<std::size_t>(l) * T + t] = part[t];
      res.edit_paths[static_cast<std::size_t>(l) * T + t] = edited_layer[l] ? rest[t] - part[t] : 0.0;
    }
  }
  return res;
}

}  // namespace hs
