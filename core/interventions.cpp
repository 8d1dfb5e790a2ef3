// Ablation, importance, pruning, OV edits and merges (interventions.hpp).
// The gradient importance runs the forward with a tape, the objective's
// reverse (objective_backward: the LM head and the loss, from layers.hpp),
// then forward.hpp's blocks_backward with the edits' reverse paths as its
// hooks: gradients with respect to activations and head gates, never weights.
// Shape legend: T = tokens, d = d_model, H = query heads, dh = head dim,
// V = vocabulary.
#include "interventions.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "geometry.hpp"
#include "layers.hpp"
#include "rng.hpp"

namespace hs {

// ---------------------------------------------------------------------------
// Names and small helpers

const char* objective_name(Objective objective) {
  switch (objective) {
    case Objective::automatic: return "automatic";
    case Objective::next_token: return "next_token";
    case Objective::same_token: return "same_token";
    case Objective::masked_token: return "masked_token";
    case Objective::hidden_energy: return "hidden_energy";
  }
  return "?";
}

const char* ov_side_name(OvSide side) { return side == OvSide::read ? "read" : "write"; }

const char* ov_edit_kind_name(OvEditKind kind) {
  switch (kind) {
    case OvEditKind::rank_one: return "rank_one";
    case OvEditKind::rank_one_scaled: return "rank_one_scaled";
    case OvEditKind::remove_component: return "remove_component";
  }
  return "?";
}

const char* ablation_mode_name(AblationMode mode) { return mode == AblationMode::zero ? "zero" : "mean"; }

const char* prune_order_name(PruneOrder order) {
  return order == PruneOrder::gradient ? "gradient" : "leave_one_out";
}

namespace {

Status check_head(const ModelConfig& c, int layer, int head, const char* what) {
  if (layer < 0 || layer >= c.n_layer || head < 0 || head >= c.n_head)
    return make_error(std::string(what) + ": head L" + std::to_string(layer) + "H" + std::to_string(head) +
                      " is out of range (the model has " + std::to_string(c.n_layer) + " layers of " +
                      std::to_string(c.n_head) + " heads)");
  return Ok{};
}

}  // namespace

// ---------------------------------------------------------------------------
// Objectives

Objective resolve_objective(const ModelConfig& c, Objective objective) {
  if (objective != Objective::automatic) return objective;
  if (!c.has_lm_head) return Objective::hidden_energy;
  return c.causal ? Objective::next_token : Objective::same_token;
}

namespace {

// A Loss with its objective resolved for the model.
Loss resolved(const ModelConfig& c, const Loss& loss) { return Loss(resolve_objective(c, loss.objective), loss.labels); }

Status check_objective(const Model& model, const std::vector<int>& ids, const Loss& loss) {
  const ModelConfig& c = model.config;
  const bool head = has_unembedding(model);
  switch (loss.objective) {
    case Objective::automatic: return Ok{};
    case Objective::next_token:
      if (!c.causal || !head)
        return make_error("objective next_token needs a causal model with an LM head; this " +
                          std::string(family_name(c.family)) + " model has " +
                          (!head ? "no LM head" : "bidirectional attention"));
      if (ids.size() < 2) return make_error("objective next_token needs at least 2 tokens");
      return Ok{};
    case Objective::same_token:
      if (!head) return make_error("objective same_token needs an LM head; this model has none");
      return Ok{};
    case Objective::masked_token: {
      if (!head) return make_error("objective masked_token needs an LM head; this model has none");
      if (loss.labels.size() != ids.size())
        return make_error("objective masked_token needs one label per token: " + std::to_string(loss.labels.size()) +
                          " labels for " + std::to_string(ids.size()) + " tokens");
      int masked = 0;
      for (int label : loss.labels) {
        if (label == -100) continue;
        if (label < 0 || label >= c.d_vocab)
          return make_error("objective masked_token: label " + std::to_string(label) + " is not -100 or an id below " +
                            std::to_string(c.d_vocab));
        ++masked;
      }
      if (masked == 0) return make_error("objective masked_token needs at least one masked position (a label other than -100)");
      return Ok{};
    }
    case Objective::hidden_energy: return Ok{};
  }
  return Ok{};
}

// The positions a cross-entropy objective scores, and their targets.
struct Targets {
  std::vector<int> rows, ids;
};
Targets targets_of(const std::vector<int>& ids, const Loss& loss) {
  Targets t;
  const int T = static_cast<int>(ids.size());
  for (int r = 0; r < T; ++r) {
    if (loss.objective == Objective::next_token) {
      if (r + 1 < T) t.rows.push_back(r), t.ids.push_back(ids[r + 1]);
    } else if (loss.objective == Objective::same_token) {
      t.rows.push_back(r), t.ids.push_back(ids[r]);
    } else if (loss.objective == Objective::masked_token && loss.labels[r] != -100) {
      t.rows.push_back(r), t.ids.push_back(loss.labels[r]);
    }
  }
  return t;
}

// What a run must keep for objective_value.
void want_for(const Loss& loss, RunOptions& opt) {
  if (loss.objective == Objective::same_token || loss.objective == Objective::masked_token) opt.want_logits = true;
  if (loss.objective == Objective::hidden_energy) {
    opt.want_hidden = true;
    opt.want_loss = false;  // with want_logits false: no LM head at all
  }
}

}  // namespace

Result<MaskedTokens> mask_tokens(const std::vector<int>& ids, int mask_id, const std::vector<int>& keep,
                                 std::uint64_t seed, double rate) {
  if (!(rate > 0 && rate <= 1)) return make_error("mask_tokens: rate must be in (0, 1], got " + std::to_string(rate));
  std::vector<int> candidates;
  for (int t = 0; t < static_cast<int>(ids.size()); ++t) {
    if (std::find(keep.begin(), keep.end(), ids[t]) == keep.end()) candidates.push_back(t);
  }
  if (candidates.empty()) return make_error("mask_tokens: no token to mask (every one is a special token)");
  const int n = std::max(1, static_cast<int>(std::lround(rate * candidates.size())));
  Rng rng(seed);
  for (int i = 0; i < n; ++i) std::swap(candidates[i], candidates[i + rng.below(candidates.size() - i)]);
  MaskedTokens out;
  out.positions.assign(candidates.begin(), candidates.begin() + n);
  std::sort(out.positions.begin(), out.positions.end());
  out.ids = ids;
  out.labels.assign(ids.size(), -100);
  for (int t : out.positions) {
    out.labels[t] = ids[t];
    out.ids[t] = mask_id;
  }
  return out;
}

Result<ObjectiveValue> objective_value(const Model& model, const std::vector<int>& ids, const RunResult& run,
                                       const Loss& given) {
  const Loss loss = resolved(model.config, given);
  const Objective objective = loss.objective;
  HS_TRY(check_objective(model, ids, loss));
  const int T = run.n_tokens, V = run.d_vocab, d = run.d_model;
  if (T != static_cast<int>(ids.size())) return make_error("objective_value: the run is not of these ids");
  ObjectiveValue out;
  out.objective = objective;
  switch (objective) {
    case Objective::automatic:
    case Objective::next_token:
      if (static_cast<int>(run.token_loss.size()) != T - 1) return make_error("objective_value: the run has no token losses");
      out.per_token.assign(run.token_loss.begin(), run.token_loss.end());
      out.mean = run.loss;  // exactly the float run_model reports
      return out;
    case Objective::same_token:
    case Objective::masked_token: {
      if (run.logits.size() != static_cast<std::size_t>(T) * V)
        return make_error(std::string("objective_value: ") + objective_name(objective) + " needs the run's logits (want_logits)");
      // The cross-entropy run_model's next-token loss uses, at the scored positions.
      const Targets t = targets_of(ids, loss);
      const int n = static_cast<int>(t.rows.size());
      MatrixRM rows(n, V);
      for (int r = 0; r < n; ++r) rows.row(r) = ConstMapRM(run.logits.data(), T, V).row(t.rows[r]);
      std::vector<double> per(static_cast<std::size_t>(n));
      cross_entropy_forward(per.data(), nullptr, rows, t.ids.data());
      double total = 0;
      for (double v : per) {
        out.per_token.push_back(v);
        total += v;
      }
      out.mean = total / n;
      return out;
    }
    case Objective::hidden_energy: {
      const std::size_t n = static_cast<std::size_t>(T) * d;
      if (run.hidden.size() < n) return make_error("objective_value: hidden_energy needs the run's hidden states (want_hidden)");
      const float* h = run.hidden.data() + run.hidden.size() - n;
      double total = 0;
      for (int t = 0; t < T; ++t) {
        double e = 0;
        for (int m = 0; m < d; ++m) e += 0.5 * double(h[t * d + m]) * h[t * d + m];
        out.per_token.push_back(e);
        total += e;
      }
      out.mean = total / T;
      return out;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Edits

Result<OvEdit> make_ov_edit(const Model& model, OvEditKind kind, int layer, int head, int component, float alpha,
                            OvSide side, WeightVariant variant) {
  const ModelConfig& c = model.config;
  HS_TRY(check_head(c, layer, head, "make_ov_edit"));
  if (!std::isfinite(alpha)) return make_error("make_ov_edit: alpha must be finite");
  auto svd = head_circuit_svd(model, variant, layer, head, Circuit::ov);
  if (!svd.ok()) return svd.error();
  const FactoredSvd& f = svd->svd;
  const int k = static_cast<int>(f.S.size());
  if (component < 0 || component >= k)
    return make_error("make_ov_edit: component " + std::to_string(component) + " is out of range (the OV circuit has " +
                      std::to_string(k) + " singular values)");
  OvEdit e;
  e.kind = kind;
  e.variant = variant;
  e.layer = layer;
  e.head = head;
  e.component = component;
  e.alpha = alpha;
  e.side = side;
  e.sigma = f.S[component];
  const int d = c.d_model;
  auto col = [&](const MatrixRMd& M) {
    std::vector<double> v(d);
    for (int m = 0; m < d; ++m) v[m] = M(m, component);
    return v;
  };
  std::vector<double> read, write;
  if (kind == OvEditKind::remove_component) {
    read = col(f.U);
    write = col(f.V);
    e.coeff = static_cast<float>(-double(alpha) * f.S[component]);
  } else {
    read = write = col(side == OvSide::read ? f.U : f.V);
    e.coeff = kind == OvEditKind::rank_one ? -alpha : static_cast<float>(-double(alpha) * f.S[component]);
  }
  double offset = 0;
  if (variant == WeightVariant::processed) {
    // The processed W_V reads x_hat = (x - beta) / gamma of the raw attention input x.
    const LayerWeights& lw = model.weights.layers[layer];
    for (int m = 0; m < d; ++m) {
      const double gamma = lw.ln1_w.size() ? lw.ln1_w[m] : 1.0;
      if (gamma == 0) {
        if (std::fabs(read[m]) > 1e-12)
          return make_error("make_ov_edit: the processed direction reads coordinate " + std::to_string(m) +
                            ", which the layer's norm scales to 0: edit the raw weights instead");
        read[m] = 0;
        continue;
      }
      read[m] /= gamma;
      if (lw.ln1_b.size()) offset += lw.ln1_b[m] * read[m];
    }
  }
  e.read.assign(read.begin(), read.end());
  e.write.assign(write.begin(), write.end());
  e.read_offset = static_cast<float>(offset);
  return e;
}

Result<HeadMerge> make_head_merge(const Model& model, int layer, int head_a, int head_b, int pattern_head) {
  const ModelConfig& c = model.config;
  HS_TRY(check_head(c, layer, head_a, "make_head_merge"));
  HS_TRY(check_head(c, layer, head_b, "make_head_merge"));
  if (head_a == head_b) return make_error("make_head_merge: a head cannot be merged with itself");
  if (pattern_head != head_a && pattern_head != head_b)
    return make_error("make_head_merge: the pattern must be that of head " + std::to_string(head_a) + " or " +
                      std::to_string(head_b) + ", not " + std::to_string(pattern_head));
  const LayerWeights& lw = model.weights.layers[layer];
  const int d = c.d_model, dh = c.d_head;
  // Summed OV = [W_V[a] W_V[b]] [W_O[a]; W_O[b]], [d, 2dh] x [2dh, d].
  MatrixRMd A(d, 2 * dh), B(2 * dh, d);
  A.leftCols(dh) = head_W_V(lw, c, head_a).cast<double>();
  A.rightCols(dh) = head_W_V(lw, c, head_b).cast<double>();
  B.topRows(dh) = head_W_O(lw, head_a, dh).cast<double>();
  B.bottomRows(dh) = head_W_O(lw, head_b, dh).cast<double>();
  auto svd = factored_svd(A, B);
  if (!svd.ok()) return svd.error();
  const int k = static_cast<int>(svd->S.size()), r = std::min(dh, k);
  HeadMerge mg;
  mg.layer = layer;
  mg.head_a = head_a;
  mg.head_b = head_b;
  mg.pattern_head = pattern_head;
  mg.read = (svd->U.leftCols(r) * svd->S.head(r).asDiagonal()).cast<float>();
  mg.write = svd->V.leftCols(r).cast<float>();
  const int ga = kv_head_of(c, head_a) * dh, gb = kv_head_of(c, head_b) * dh;
  mg.bias = (lw.b_V.segment(ga, dh).cast<double>() * B.topRows(dh) +
             lw.b_V.segment(gb, dh).cast<double>() * B.bottomRows(dh))
                .cast<float>();
  double total = 0, tail = 0;
  for (int i = 0; i < k; ++i) {
    const double s2 = svd->S[i] * svd->S[i];
    mg.sigma.push_back(svd->S[i]);
    total += s2;
    if (i >= r) tail += s2;
  }
  mg.truncation_error = total > 0 ? std::sqrt(tail / total) : 0;
  return mg;
}

int add_edit(ModelEdits& edits, OvEdit edit) {
  edit.id = edits.next_id++;
  edits.ov.push_back(std::move(edit));
  return edits.ov.back().id;
}

int add_merge(ModelEdits& edits, HeadMerge merge) {
  merge.id = edits.next_id++;
  edits.merges.push_back(std::move(merge));
  return edits.merges.back().id;
}

bool undo_edit(ModelEdits& edits, int id) {
  for (auto it = edits.ov.begin(); it != edits.ov.end(); ++it)
    if (it->id == id) {
      edits.ov.erase(it);
      return true;
    }
  for (auto it = edits.merges.begin(); it != edits.merges.end(); ++it)
    if (it->id == id) {
      edits.merges.erase(it);
      return true;
    }
  return false;
}

Status check_edits(const Model& model, const ModelEdits& edits) {
  const ModelConfig& c = model.config;
  const std::size_t d = static_cast<std::size_t>(c.d_model);
  for (const OvEdit& e : edits.ov) {
    HS_TRY(check_head(c, e.layer, e.head, "OV edit"));
    if (e.read.size() != d || e.write.size() != d)
      return make_error("OV edit " + std::to_string(e.id) + ": vectors have " + std::to_string(e.read.size()) + " and " +
                        std::to_string(e.write.size()) + " entries, expected d_model = " + std::to_string(d));
  }
  for (const HeadMerge& m : edits.merges) {
    HS_TRY(check_head(c, m.layer, m.head_a, "head merge"));
    HS_TRY(check_head(c, m.layer, m.head_b, "head merge"));
    HS_TRY(check_head(c, m.layer, m.pattern_head, "head merge"));
    if (m.read.rows() != c.d_model || m.write.rows() != c.d_model || m.read.cols() != m.write.cols() ||
        m.bias.size() != c.d_model)
      return make_error("head merge " + std::to_string(m.id) + ": factors do not match d_model = " + std::to_string(d));
  }
  return Ok{};
}

namespace {

// The edits of one layer, for the hooks and the reverse pass.
struct LayerEdits {
  std::vector<const OvEdit*> ov;
  std::vector<const HeadMerge*> merges;
};

std::vector<LayerEdits> edits_by_layer(const ModelConfig& c, const ModelEdits& edits) {
  std::vector<LayerEdits> by(c.n_layer);
  for (const OvEdit& e : edits.ov) by[e.layer].ov.push_back(&e);
  for (const HeadMerge& m : edits.merges) by[m.layer].merges.push_back(&m);
  return by;
}

// The extra paths of one layer: attn_out [T, d] += each path, read through
// the gated patterns [H, T, T] from the attention input x [T, d].
void add_edit_paths(const LayerEdits& le, const MatrixRM& x, const float* patterns, MatrixRM& out) {
  const int T = static_cast<int>(x.rows());
  for (const OvEdit* e : le.ov) {
    const ConstMapRM A(patterns + static_cast<std::size_t>(e->head) * T * T, T, T);
    const Eigen::Map<const VectorF> a(e->read.data(), static_cast<Eigen::Index>(e->read.size()));
    const Eigen::Map<const RowVectorF> b(e->write.data(), static_cast<Eigen::Index>(e->write.size()));
    const VectorF s = A * ((x * a).array() - e->read_offset).matrix();  // [T]: A_h (x a - offset)
    out.noalias() += (e->coeff * s) * b;
  }
  for (const HeadMerge* m : le.merges) {
    const ConstMapRM A(patterns + static_cast<std::size_t>(m->pattern_head) * T * T, T, T);
    const MatrixRM s = A * (x * m->read);  // [T, r]
    out.noalias() += s * m->write.transpose();
    const VectorF rowsum = A.rowwise().sum();
    out.noalias() += rowsum * m->bias;
  }
}

// Installs the edits into `opt` after the hooks it already has.
void install_edits(const Model& model, const std::vector<LayerEdits>& by, RunOptions& opt) {
  const int dh = model.config.d_head;
  bool any_merge = false;
  for (const LayerEdits& le : by) any_merge |= !le.merges.empty();
  if (any_merge) {
    auto before = opt.on_z;
    opt.on_z = [before, &by, dh](int layer, MatrixRM& z) {
      if (before) before(layer, z);
      for (const HeadMerge* m : by[layer].merges) {
        z.middleCols(m->head_a * dh, dh).setZero();
        z.middleCols(m->head_b * dh, dh).setZero();
      }
    };
  }
  auto before = opt.on_attn_view;
  opt.on_attn_view = [before, &by](int layer, const AttentionView& view, MatrixRM& out) {
    if (before) before(layer, view, out);
    add_edit_paths(by[layer], view.input, view.patterns, out);
  };
}

// Everything a run needs: the model's edits, the gate of the ablated heads,
// and for mean-ablation the constant rows to add back.
struct RunPlan {
  std::vector<float> gate;                  // [L*H], empty = all 1
  std::vector<std::vector<int>> mean_heads;  // per layer: heads whose mean output is added back
  const std::vector<RowVectorF>* means = nullptr;  // [L*H] rows [d]
};

Result<RunResult> run_plan(const Model& model, const std::vector<int>& ids, const ModelEdits& edits,
                           const std::vector<LayerEdits>& by, const RunPlan& plan, RunOptions opt) {
  opt.head_gate = plan.gate;
  const int H = model.config.n_head;
  bool any_mean = false;
  for (const auto& hs : plan.mean_heads) any_mean |= !hs.empty();
  if (any_mean) {
    opt.on_attn_out = [&plan, H](int layer, const MatrixRM&, MatrixRM& out) {
      for (int h : plan.mean_heads[layer]) out.rowwise() += (*plan.means)[static_cast<std::size_t>(layer) * H + h];
    };
  }
  if (edits.empty()) return run_model(model, ids, opt);
  install_edits(model, by, opt);
  return run_model(model, ids, opt);
}

// Head h's whole output in a layer, [T, d]: z_h W_O[h] plus the edit paths
// that read through h's pattern.
MatrixRM head_output(const Model& model, const LayerEdits& le, int layer, int h, const AttentionView& view) {
  const ModelConfig& c = model.config;
  const int dh = c.d_head;
  const LayerWeights& lw = model.weights.layers[layer];
  MatrixRM o = view.z.middleCols(h * dh, dh) * head_W_O(lw, h, dh);
  LayerEdits mine;
  for (const OvEdit* e : le.ov)
    if (e->head == h) mine.ov.push_back(e);
  for (const HeadMerge* m : le.merges)
    if (m->pattern_head == h) mine.merges.push_back(m);
  add_edit_paths(mine, view.input, view.patterns, o);
  return o;
}

// The base run: the edited model without ablation, and (want_means) every
// head's output averaged over positions.
struct BaseRun {
  RunResult run;
  std::vector<RowVectorF> means;  // [L*H] rows [d] (empty unless wanted)
};

Result<BaseRun> base_run(const Model& model, const std::vector<int>& ids, const ModelEdits& edits,
                         const std::vector<LayerEdits>& by, RunOptions opt, bool want_means) {
  BaseRun b;
  const int H = model.config.n_head;
  if (want_means) {
    b.means.assign(static_cast<std::size_t>(model.config.n_layer) * H, RowVectorF());
    opt.on_attn_view = [&](int layer, const AttentionView& view, MatrixRM&) {
      for (int h = 0; h < H; ++h)
        b.means[static_cast<std::size_t>(layer) * H + h] = head_output(model, by[layer], layer, h, view).colwise().mean();
    };
  }
  auto r = run_plan(model, ids, edits, by, RunPlan{}, opt);
  if (!r.ok()) return r.error();
  b.run = std::move(r).value();
  return b;
}

// The plan that ablates `heads` (flat indices).
RunPlan ablation_plan(const ModelConfig& c, const std::vector<int>& heads, AblationMode mode,
                      const std::vector<RowVectorF>& means) {
  RunPlan p;
  const int L = c.n_layer, H = c.n_head;
  p.gate.assign(static_cast<std::size_t>(L) * H, 1.f);
  p.mean_heads.assign(L, {});
  for (int i : heads) {
    p.gate[i] = 0.f;
    if (mode == AblationMode::mean) p.mean_heads[i / H].push_back(i % H);
  }
  p.means = &means;
  return p;
}

}  // namespace

Result<RunResult> run_edited(const Model& model, const std::vector<int>& ids, const ModelEdits& edits,
                             RunOptions options) {
  if (edits.empty()) return run_model(model, ids, options);
  HS_TRY(check_edits(model, edits));
  const auto by = edits_by_layer(model.config, edits);
  install_edits(model, by, options);
  return run_model(model, ids, options);
}

// ---------------------------------------------------------------------------
// Ablation and leave-one-out

Result<AblationResult> ablate_heads(const Model& model, const std::vector<int>& ids, const std::vector<int>& heads,
                                    const AblationOptions& options, const ModelEdits& edits) {
  const ModelConfig& c = model.config;
  const Loss objective = resolved(c, options.objective);
  HS_TRY(check_objective(model, ids, objective));
  HS_TRY(check_head_list(c, heads));
  HS_TRY(check_edits(model, edits));
  const auto by = edits_by_layer(c, edits);

  RunOptions opt;
  opt.want_hidden = opt.want_logits = false;
  opt.want_patterns = options.want_patterns;
  want_for(objective, opt);
  auto base = base_run(model, ids, edits, by, opt, options.mode == AblationMode::mean);
  if (!base.ok()) return base.error();
  auto base_value = objective_value(model, ids, base->run, objective);
  if (!base_value.ok()) return base_value.error();

  if (options.want_logits) opt.want_logits = true;
  const RunPlan plan = ablation_plan(c, heads, options.mode, base->means);
  auto run = run_plan(model, ids, edits, by, plan, opt);
  if (!run.ok()) return run.error();
  auto value = objective_value(model, ids, *run, objective);
  if (!value.ok()) return value.error();

  AblationResult r;
  r.n_layer = c.n_layer;
  r.n_head = c.n_head;
  r.n_tokens = static_cast<int>(ids.size());
  r.objective = objective.objective;
  r.mode = options.mode;
  r.heads = heads;
  r.loss_base = base_value->mean;
  r.loss = value->mean;
  r.token_loss_base = std::move(base_value->per_token);
  r.token_loss = std::move(value->per_token);
  if (options.want_patterns) {
    const std::size_t TT = static_cast<std::size_t>(r.n_tokens) * r.n_tokens;
    r.pattern_change.assign(static_cast<std::size_t>(c.n_layer) * c.n_head, 0.f);
    for (std::size_t hd = 0; hd < r.pattern_change.size(); ++hd)
      for (std::size_t e = 0; e < TT; ++e)
        r.pattern_change[hd] =
            std::max(r.pattern_change[hd], std::fabs(run->patterns[hd * TT + e] - base->run.patterns[hd * TT + e]));
    r.patterns = std::move(run->patterns);
  }
  if (options.want_logits) r.logits = std::move(run->logits);
  return r;
}

Result<AblatedLosses> ablated_losses(const Model& model, const std::vector<int>& ids,
                                     const std::vector<std::vector<int>>& head_sets, AblationMode mode,
                                     const Loss& given, const ModelEdits& edits, const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  const Loss objective = resolved(c, given);
  HS_TRY(check_objective(model, ids, objective));
  HS_TRY(check_edits(model, edits));
  for (const std::vector<int>& heads : head_sets) HS_TRY(check_head_list(c, heads));
  const auto by = edits_by_layer(c, edits);

  RunOptions opt;
  opt.want_hidden = opt.want_logits = opt.want_patterns = false;
  want_for(objective, opt);
  auto base = base_run(model, ids, edits, by, opt, mode == AblationMode::mean);
  if (!base.ok()) return base.error();
  auto base_value = objective_value(model, ids, base->run, objective);
  if (!base_value.ok()) return base_value.error();

  AblatedLosses r;
  r.objective = objective.objective;
  r.base = base_value->mean;
  const int n = static_cast<int>(head_sets.size());
  for (int k = 0; k < n; ++k) {
    if (!report_progress(progress, double(k) / n)) return cancelled_error();
    auto run = run_plan(model, ids, edits, by, ablation_plan(c, head_sets[k], mode, base->means), opt);
    if (!run.ok()) return run.error();
    auto v = objective_value(model, ids, *run, objective);
    if (!v.ok()) return v.error();
    r.loss.push_back(v->mean);
  }
  report_progress(progress, 1.0);
  return r;
}

Result<LeaveOneOut> leave_one_out(const Model& model, const std::vector<int>& ids, AblationMode mode,
                                  const Loss& objective, const ModelEdits& edits, const ProgressFn& progress) {
  const int N = model.config.n_layer * model.config.n_head;
  std::vector<std::vector<int>> each(N);
  for (int i = 0; i < N; ++i) each[i] = {i};
  auto a = ablated_losses(model, ids, each, mode, objective, edits, progress);
  if (!a.ok()) return a.error();
  LeaveOneOut r;
  r.n_layer = model.config.n_layer;
  r.n_head = model.config.n_head;
  r.objective = a->objective;
  r.mode = mode;
  r.loss_base = a->base;
  r.loss = std::move(a->loss);
  for (double v : r.loss) r.delta.push_back(v - r.loss_base);
  return r;
}

// ---------------------------------------------------------------------------
// The reverse pass

namespace {

// dL/d head_in [T, d] for the objective, from the tape: the reverse of
// run_model's steps 4 and 5 (BERT's MLM transform, the unembedding, the loss).
MatrixRM objective_backward(const Model& model, const std::vector<int>& ids, const ForwardTape& tape,
                            const Loss& loss) {
  const Objective objective = loss.objective;
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int T = static_cast<int>(ids.size());
  if (objective == Objective::hidden_energy) return tape.head_in / static_cast<float>(T);

  // Logits = x2 W_U + b_U with x2 the LM head's input (BERT: after the MLM transform).
  MatrixRM act;
  MatrixRM x2;
  if (c.family == Family::bert) {
    act = tape.mlm_pre;
    activation_forward(act, c.act);
    layer_norm_forward(x2, act, w.mlm_ln_w, w.mlm_ln_b, c.norm_eps);
  } else {
    x2 = tape.head_in;
  }
  const Targets targets = targets_of(ids, loss);
  const int n = static_cast<int>(targets.rows.size());
  MatrixRM dx2 = MatrixRM::Zero(T, c.d_model);
  const int chunk = 64;  // rows of logits at a time: [chunk, V]
  for (int t0 = 0; t0 < n; t0 += chunk) {
    const int rows = std::min(chunk, n - t0);
    MatrixRM xr(rows, c.d_model);
    for (int r = 0; r < rows; ++r) xr.row(r) = x2.row(targets.rows[t0 + r]);
    MatrixRM lg;
    unembed_forward(lg, xr, w);  // [rows, V]
    logit_softcap_forward(lg, c.final_softcap);
    const MatrixRM capped = c.final_softcap > 0 ? lg : MatrixRM();
    cross_entropy_forward(nullptr, &lg, lg, targets.ids.data() + t0);  // softmax, as the forward's loss computes it
    cross_entropy_backward(lg, targets.ids.data() + t0, 1.f / static_cast<float>(n));
    logit_softcap_backward(lg, capped, c.final_softcap);
    MatrixRM dxr = MatrixRM::Zero(rows, c.d_model);
    unembed_backward(dxr, nullptr, lg, xr, w);
    for (int r = 0; r < rows; ++r) dx2.row(targets.rows[t0 + r]) = dxr.row(r);
  }
  if (c.family != Family::bert) return dx2;
  MatrixRM da = MatrixRM::Zero(T, c.d_model);
  layer_norm_backward(da, nullptr, nullptr, dx2, act, w.mlm_ln_w, c.norm_eps);
  activation_backward(da, tape.mlm_pre, c.act);
  MatrixRM dx = MatrixRM::Zero(T, c.d_model);
  linear_backward(&dx, nullptr, nullptr, da, tape.head_in, w.mlm_dense_W);
  return dx;
}

// The reverse of the edits' forward hooks (install_edits): merged heads lose
// their own z (on_dz zeroes their columns of dL/dz), and each edit path
// out += coeff (Pg (x a)) b^T, or a merge's (Pg (x R)) W^T + rowsum(Pg) beta,
// adds to dL/dPg and to dL/dx (on_attn_view).
void install_edit_gradients(const Model& model, const std::vector<LayerEdits>& by, BackwardOptions& opt) {
  const int dh = model.config.d_head, d = model.config.d_model;
  opt.on_dz = [&by, dh](int layer, MatrixRM& dz) {
    for (const HeadMerge* m : by[layer].merges) {
      dz.middleCols(m->head_a * dh, dh).setZero();
      dz.middleCols(m->head_b * dh, dh).setZero();
    }
  };
  opt.on_attn_view = [&by, d](int layer, int h, const AttentionViewGrad& g) {
    const MatrixRM& x = g.input;
    for (const OvEdit* e : by[layer].ov) {
      if (e->head != h) continue;
      const Eigen::Map<const VectorF> a(e->read.data(), d);
      const Eigen::Map<const VectorF> b(e->write.data(), d);
      const VectorF s = e->coeff * (g.dout * b);  // [T]
      const VectorF y = ((x * a).array() - e->read_offset).matrix();  // [T]
      g.dpattern.noalias() += s * y.transpose();
      if (g.dinput) g.dinput->noalias() += (g.pattern.transpose() * s) * a.transpose();
    }
    for (const HeadMerge* m : by[layer].merges) {
      if (m->pattern_head != h) continue;
      const MatrixRM s = g.dout * m->write;  // [T, r]
      const MatrixRM y = x * m->read;        // [T, r]
      g.dpattern.noalias() += s * y.transpose();
      const VectorF sb = g.dout * m->bias.transpose();  // [T]
      g.dpattern.colwise() += sb;
      if (g.dinput) g.dinput->noalias() += (g.pattern.transpose() * s) * m->read.transpose();
    }
  };
}

}  // namespace

std::vector<int> pruning_points(int n_heads, int step) {
  if (step <= 0) step = std::max(1, (n_heads + 9) / 10);
  std::vector<int> out;
  for (int k = 0; k < n_heads; k += step) out.push_back(k);
  out.push_back(n_heads);
  return out;
}

std::vector<double> layer_normalized(std::vector<double> v, int n_layer, int n_head) {
  for (int l = 0; l < n_layer; ++l) {
    double s = 0;
    for (int h = 0; h < n_head; ++h) s += v[l * n_head + h] * v[l * n_head + h];
    const double norm = std::sqrt(s) + 1e-20;
    for (int h = 0; h < n_head; ++h) v[l * n_head + h] /= norm;
  }
  return v;
}

Result<GradientImportance> gradient_importance(const Model& model, const std::vector<int>& ids, const Loss& given,
                                               const std::vector<float>& gate, const ModelEdits& edits) {
  const ModelConfig& c = model.config;
  const Loss objective = resolved(c, given);
  HS_TRY(check_objective(model, ids, objective));
  HS_TRY(check_edits(model, edits));
  const int L = c.n_layer, H = c.n_head;
  const auto by = edits_by_layer(c, edits);

  // Forward, keeping the tape.
  ForwardTape tape;
  RunOptions opt;
  opt.want_hidden = opt.want_logits = opt.want_patterns = false;
  want_for(objective, opt);
  opt.tape = &tape;
  RunPlan plan;
  plan.gate = gate;
  auto run = run_plan(model, ids, edits, by, plan, opt);
  if (!run.ok()) return run.error();
  auto value = objective_value(model, ids, *run, objective);
  if (!value.ok()) return value.error();

  // Backward.
  std::vector<double> dgate(static_cast<std::size_t>(L) * H, 0.0);
  BackwardOptions back;
  back.dgate = dgate.data();
  if (!edits.empty()) install_edit_gradients(model, by, back);
  blocks_backward(model, tape, objective_backward(model, ids, tape, objective), back);

  GradientImportance r;
  r.n_layer = L;
  r.n_head = H;
  r.objective = objective.objective;
  r.loss = value->mean;
  r.gradient = dgate;
  for (double v : dgate) r.importance.push_back(std::fabs(v));
  // run_bertology normalisation: per layer by the L2 norm, then global min-max.
  r.importance_normalized = layer_normalized(r.importance, L, H);
  const auto [lo, hi] = std::minmax_element(r.importance_normalized.begin(), r.importance_normalized.end());
  const double mn = *lo, range = *hi - *lo;
  for (double& v : r.importance_normalized) v = range > 0 ? (v - mn) / range : 0.0;
  return r;
}

// ---------------------------------------------------------------------------
// Pruning curve

Result<PruningCurve> pruning_curve(const Model& model, const std::vector<int>& ids, const PruningOptions& options,
                                   const ModelEdits& edits, const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  const Loss objective = resolved(c, options.objective);
  HS_TRY(check_objective(model, ids, objective));
  HS_TRY(check_edits(model, edits));
  if (options.step < 0) return make_error("pruning_curve: step must not be negative (0: 10 % of the heads)");
  if (options.n_random < 0) return make_error("pruning_curve: n_random must not be negative");
  const int N = c.n_layer * c.n_head;
  const int H = c.n_head;
  const auto by = edits_by_layer(c, edits);

  PruningCurve r;
  r.n_layer = c.n_layer;
  r.n_head = c.n_head;
  r.options = options;
  r.options.objective = objective;
  r.n_removed = pruning_points(N, options.step);
  r.step = options.step > 0 ? options.step : r.n_removed[1];
  const int P = static_cast<int>(r.n_removed.size());
  const bool gradient = options.order == PruneOrder::gradient;
  const double estimates = gradient ? (options.reestimate ? P - 1 : 1) : N + 1;
  const double total_runs = estimates + double(P) * (1 + options.n_random);
  double runs_done = 0;

  // Gradient importance with `gate` in force, per layer L2-normalised when asked.
  auto gradient_scores = [&](const std::vector<float>& gate) -> Result<std::vector<double>> {
    auto gi = gradient_importance(model, ids, objective, gate, edits);
    if (!gi.ok()) return gi.error();
    std::vector<double> v = options.normalize ? layer_normalized(gi->importance, c.n_layer, H) : gi->importance;
    runs_done += 1;
    return v;
  };
  // The order: the least important first, ties by index.
  auto least_first = [](const std::vector<double>& scores, std::vector<int> heads) {
    std::stable_sort(heads.begin(), heads.end(), [&](int a, int b) { return scores[a] < scores[b]; });
    return heads;
  };
  std::vector<int> all(N);
  std::iota(all.begin(), all.end(), 0);
  if (gradient) {
    auto first = gradient_scores({});
    if (!first.ok()) return first.error();
    r.importance = *first;
    if (!options.reestimate) {
      r.order = least_first(r.importance, all);
    } else {
      // Each step: gate off what is removed, estimate again, remove the least
      // important `step` of the rest.
      std::vector<float> gate(N, 1.0f);  // 0 for the heads removed so far
      std::vector<double> scores = r.importance;
      for (int p = 1; p < P; ++p) {
        if (!report_progress(progress, runs_done / total_runs)) return cancelled_error();
        std::vector<int> rest;
        for (int h : all)
          if (gate[h] != 0.0f) rest.push_back(h);
        const std::vector<int> next = least_first(scores, rest);
        for (int k = 0; k < r.n_removed[p] - r.n_removed[p - 1]; ++k) {
          r.order.push_back(next[k]);
          gate[next[k]] = 0.0f;
        }
        if (p + 1 < P) {
          auto again = gradient_scores(gate);
          if (!again.ok()) return again.error();
          scores = *again;
        }
      }
    }
  } else {
    const double n_runs = N + 1;
    auto loo = leave_one_out(model, ids, options.mode, objective, edits,
                             progress_range(progress, runs_done / total_runs, (runs_done + n_runs) / total_runs));
    if (!loo.ok()) return loo.error();
    r.importance = loo->delta;
    r.order = least_first(r.importance, all);
    runs_done += n_runs;
  }

  RunOptions opt;
  opt.want_hidden = opt.want_logits = opt.want_patterns = false;
  want_for(objective, opt);
  auto base = base_run(model, ids, edits, by, opt, options.mode == AblationMode::mean);
  if (!base.ok()) return base.error();

  auto curve = [&](const std::vector<int>& order, std::vector<double>& out) -> Status {
    for (int p = 0; p < P; ++p) {
      if (!report_progress(progress, runs_done / total_runs)) return cancelled_error();
      const std::vector<int> removed(order.begin(), order.begin() + r.n_removed[p]);
      auto run = run_plan(model, ids, edits, by, ablation_plan(c, removed, options.mode, base->means), opt);
      if (!run.ok()) return run.error();
      auto v = objective_value(model, ids, *run, objective);
      if (!v.ok()) return v.error();
      out.push_back(v->mean);
      runs_done += 1;
    }
    return Ok{};
  };
  HS_TRY(curve(r.order, r.loss));
  Rng rng(options.seed);
  r.random_loss_mean.assign(P, 0.0);
  for (int k = 0; k < options.n_random; ++k) {
    const std::vector<int> order = random_order(N, rng);
    std::vector<double> losses;
    HS_TRY(curve(order, losses));
    r.random_orders.insert(r.random_orders.end(), order.begin(), order.end());
    for (int p = 0; p < P; ++p) r.random_loss_mean[p] += losses[p] / options.n_random;
    r.random_loss.insert(r.random_loss.end(), losses.begin(), losses.end());
  }
  report_progress(progress, 1.0);
  return r;
}

// ---------------------------------------------------------------------------
// Merging, evaluated

Result<MergeReport> evaluate_head_merge(const Model& model, const std::vector<int>& ids, int layer, int head_a,
                                        int head_b, const Loss& given, const ModelEdits& edits,
                                        const ProgressFn& progress) {
  const ModelConfig& c = model.config;
  const Loss objective = resolved(c, given);
  HS_TRY(check_objective(model, ids, objective));
  HS_TRY(check_edits(model, edits));
  auto merge_a = make_head_merge(model, layer, head_a, head_b, head_a);
  if (!merge_a.ok()) return merge_a.error();
  HeadMerge merge_b = *merge_a;
  merge_b.pattern_head = head_b;

  RunOptions opt;
  opt.want_hidden = opt.want_logits = opt.want_patterns = false;
  want_for(objective, opt);
  const int H = c.n_head;
  const int ia = layer * H + head_a, ib = layer * H + head_b;
  const std::vector<RowVectorF> no_means;
  const int n_runs = 6;
  int done = 0;
  auto loss_with = [&](const ModelEdits& e, const std::vector<int>& ablated) -> Result<double> {
    if (!report_progress(progress, double(done++) / n_runs)) return cancelled_error();
    const auto by_e = edits_by_layer(c, e);
    auto run = run_plan(model, ids, e, by_e, ablation_plan(c, ablated, AblationMode::zero, no_means), opt);
    if (!run.ok()) return run.error();
    auto v = objective_value(model, ids, *run, objective);
    if (!v.ok()) return v.error();
    return v->mean;
  };
  MergeReport r;
  r.layer = layer;
  r.head_a = head_a;
  r.head_b = head_b;
  r.objective = objective.objective;
  r.sigma = merge_a->sigma;
  r.truncation_error = merge_a->truncation_error;
  auto base = loss_with(edits, {});
  if (!base.ok()) return base.error();
  r.loss_base = *base;
  auto pa = loss_with(edits, {ia});
  if (!pa.ok()) return pa.error();
  r.loss_prune_a = *pa;
  auto pb = loss_with(edits, {ib});
  if (!pb.ok()) return pb.error();
  r.loss_prune_b = *pb;
  auto pab = loss_with(edits, {ia, ib});
  if (!pab.ok()) return pab.error();
  r.loss_prune_both = *pab;
  ModelEdits with_a = edits, with_b = edits;
  add_merge(with_a, std::move(merge_a).value());
  add_merge(with_b, merge_b);
  auto ma = loss_with(with_a, {});
  if (!ma.ok()) return ma.error();
  r.loss_merged_pattern_a = *ma;
  auto mb = loss_with(with_b, {});
  if (!mb.ok()) return mb.error();
  r.loss_merged_pattern_b = *mb;
  r.best_pattern_head = r.loss_merged_pattern_b < r.loss_merged_pattern_a ? head_b : head_a;
  r.loss_merged = std::min(r.loss_merged_pattern_a, r.loss_merged_pattern_b);
  report_progress(progress, 1.0);
  return r;
}

}  // namespace hs
