// The layers' forward and backward passes (layers.hpp), each pair side by
// side. Shape legend: N = rows (n_seq sequences of T), d = d_model,
// H = query heads, G = key/value heads, dh = head dim, R = rotary dims,
// M = d_mlp, V = vocabulary.
#include "layers.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.hpp"
#include "parallel.hpp"

namespace hs {

namespace {

// C [M, N] = A [M, K] B^T for B [N, K] as stored (a weight read backwards):
// the packed kernel packs B from its rows, so nothing is transposed.
MatrixRM matmul_bt(const MatrixRM& A, const MatrixRM& B) {
  const int M = static_cast<int>(A.rows()), N = static_cast<int>(B.rows()), K = static_cast<int>(A.cols());
  MatrixRM C(M, N);
  gemm_nt(M, N, K, A.data(), K, B.data(), K, C.data(), N);
  return C;
}

// C [k, n] += A^T B for A [N, k], B [N, n]: a weight's gradient. The
// smaller of A and B is transposed for the packed kernel (as C^T = B^T A
// when that is B).
void add_matmul_at(MatrixRM& C, const MatrixRM& A, const MatrixRM& B) {
  const int N = static_cast<int>(A.rows()), k = static_cast<int>(A.cols()), n = static_cast<int>(B.cols());
  if (A.size() <= B.size()) {
    const MatrixRM At = A.transpose();  // [k, N]
    MatrixRM t(k, n);
    gemm(k, n, N, At.data(), N, B.data(), n, t.data(), n);
    C += t;
  } else {
    const MatrixRM Bt = B.transpose();  // [n, N]
    MatrixRM t(n, k);
    gemm(n, k, N, Bt.data(), N, A.data(), k, t.data(), k);
    C += t.transpose();
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Linear

void linear_forward(MatrixRM& y, const MatrixRM& x, const MatrixRM& W, const RowVectorF* b) {
  matmul(y, x, W, b);
}

void linear_backward(MatrixRM* dx, MatrixRM* dW, RowVectorF* db, const MatrixRM& dy, const MatrixRM& x,
                     const MatrixRM& W) {
  if (dx) *dx += matmul_bt(dy, W);
  if (dW) add_matmul_at(*dW, x, dy);
  if (db) *db += dy.colwise().sum();
}

// ---------------------------------------------------------------------------
// Embeddings

void embedding_forward(MatrixRM& x, const std::vector<int>& ids, int T, const WeightMatrix& W_E,
                       const MatrixRM* W_pos, int offset) {
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  x.resize(N, W_E.cols());
  for (Eigen::Index i = 0; i < N; ++i) {
    if (W_E.is_f32()) x.row(i) = W_E.f32().row(ids[i]);
    else x.row(i) = W_E.rows_f32(ids[i], 1).row(0);
    if (W_pos) x.row(i) += W_pos->row(i % T + offset);
  }
}

void embedding_backward(MatrixRM* dW_E, MatrixRM* dW_pos, const MatrixRM& dx, const std::vector<int>& ids,
                        int T, int offset) {
  for (Eigen::Index i = 0; i < dx.rows(); ++i) {
    if (dW_E) dW_E->row(ids[i]) += dx.row(i);
    if (dW_pos) dW_pos->row(i % T + offset) += dx.row(i);
  }
}

// ---------------------------------------------------------------------------
// Norms

namespace {

// Row t's mean and biased variance, in double.
void row_mean_var(const MatrixRM& x, Eigen::Index t, double& mean, double& var) {
  const Eigen::Index d = x.cols();
  mean = 0;
  var = 0;
  for (Eigen::Index m = 0; m < d; ++m) mean += x(t, m);
  mean /= d;
  for (Eigen::Index m = 0; m < d; ++m) var += (x(t, m) - mean) * (x(t, m) - mean);
  var /= d;
}

}  // namespace

void layer_norm_forward(MatrixRM& out, const MatrixRM& x, const RowVectorF& w, const RowVectorF& b,
                        float eps) {
  const Eigen::Index N = x.rows(), d = x.cols();
  out.resize(N, d);
  for (Eigen::Index t = 0; t < N; ++t) {
    double mean, var;
    row_mean_var(x, t, mean, var);
    const float mu = static_cast<float>(mean);
    const float rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (Eigen::Index m = 0; m < d; ++m) out(t, m) = (x(t, m) - mu) * rstd * w[m] + (b.size() ? b[m] : 0.f);
  }
}

void layer_norm_backward(MatrixRM& dx, RowVectorF* dw, RowVectorF* db, const MatrixRM& dout,
                         const MatrixRM& x, const RowVectorF& w, float eps) {
  const Eigen::Index N = x.rows(), d = x.cols();
  std::vector<double> dw_sum(dw ? d : 0, 0.0), db_sum(db ? d : 0, 0.0);
  for (Eigen::Index t = 0; t < N; ++t) {
    double mean, var;
    row_mean_var(x, t, mean, var);
    const double rstd = 1.0 / std::sqrt(var + eps);
    double g_mean = 0, gx_mean = 0;
    for (Eigen::Index m = 0; m < d; ++m) {
      const double g = double(dout(t, m)) * w[m];
      g_mean += g;
      gx_mean += g * (x(t, m) - mean) * rstd;
    }
    g_mean /= d;
    gx_mean /= d;
    for (Eigen::Index m = 0; m < d; ++m) {
      const double g = double(dout(t, m)) * w[m];
      dx(t, m) += static_cast<float>(rstd * (g - g_mean - (x(t, m) - mean) * rstd * gx_mean));
    }
    if (dw)
      for (Eigen::Index m = 0; m < d; ++m) dw_sum[m] += double(dout(t, m)) * (x(t, m) - mean) * rstd;
    if (db)
      for (Eigen::Index m = 0; m < d; ++m) db_sum[m] += dout(t, m);
  }
  for (Eigen::Index m = 0; m < d; ++m) {
    if (dw) (*dw)[m] += static_cast<float>(dw_sum[m]);
    if (db) (*db)[m] += static_cast<float>(db_sum[m]);
  }
}

void rms_norm_forward(MatrixRM& out, const MatrixRM& x, const RowVectorF& w, float eps) {
  const Eigen::Index N = x.rows(), d = x.cols();
  out.resize(N, d);
  for (Eigen::Index t = 0; t < N; ++t) {
    double ms = 0;
    for (Eigen::Index m = 0; m < d; ++m) ms += double(x(t, m)) * x(t, m);
    const float rstd = static_cast<float>(1.0 / std::sqrt(ms / d + eps));
    for (Eigen::Index m = 0; m < d; ++m) out(t, m) = w[m] * (x(t, m) * rstd);
  }
}

void rms_norm_backward(MatrixRM& dx, RowVectorF* dw, const MatrixRM& dout, const MatrixRM& x,
                       const RowVectorF& w, float eps) {
  const Eigen::Index N = x.rows(), d = x.cols();
  std::vector<double> dw_sum(dw ? d : 0, 0.0);
  for (Eigen::Index t = 0; t < N; ++t) {
    double ms = 0, gx = 0;
    for (Eigen::Index m = 0; m < d; ++m) ms += double(x(t, m)) * x(t, m);
    const double r = 1.0 / std::sqrt(ms / d + eps);
    for (Eigen::Index m = 0; m < d; ++m) gx += double(dout(t, m)) * w[m] * x(t, m);
    const double c = r * r * r * gx / d;
    for (Eigen::Index m = 0; m < d; ++m) dx(t, m) += static_cast<float>(r * dout(t, m) * w[m] - c * x(t, m));
    if (dw)
      for (Eigen::Index m = 0; m < d; ++m) dw_sum[m] += double(dout(t, m)) * x(t, m) * r;
  }
  if (dw)
    for (Eigen::Index m = 0; m < d; ++m) (*dw)[m] += static_cast<float>(dw_sum[m]);
}

void norm_forward(NormKind kind, float eps, MatrixRM& out, const MatrixRM& x, const RowVectorF& w,
                  const RowVectorF& b) {
  if (kind == NormKind::rms_norm)
    rms_norm_forward(out, x, w, eps);
  else
    layer_norm_forward(out, x, w, b, eps);
}

// A row-major [N, n * dh] matrix is [N * n, dh] in the same memory.
void head_norm_forward(NormKind kind, MatrixRM& x, int n_heads, int dh, const RowVectorF& w, float eps) {
  const Eigen::Index n = x.rows() * n_heads;
  const MatrixRM rows = Eigen::Map<const MatrixRM>(x.data(), n, dh);  // row r: token r / n_heads, head r % n_heads
  MatrixRM out;
  if (w.size() == dh) {
    norm_forward(kind, eps, out, rows, w, RowVectorF());
  } else {
    norm_forward(kind, eps, out, rows, RowVectorF::Ones(dh), RowVectorF());
    for (Eigen::Index r = 0; r < n; ++r) out.row(r).array() *= w.segment((r % n_heads) * dh, dh).array();
  }
  Eigen::Map<MatrixRM>(x.data(), n, dh) = out;
}

void head_norm_backward(NormKind kind, MatrixRM& d, RowVectorF* dw, const MatrixRM& x_before, int n_heads, int dh,
                        const RowVectorF& w, float eps) {
  const Eigen::Index n = d.rows() * n_heads;
  MatrixRM dout = Eigen::Map<const MatrixRM>(d.data(), n, dh);
  const MatrixRM x = Eigen::Map<const MatrixRM>(x_before.data(), n, dh);
  MatrixRM dx = MatrixRM::Zero(n, dh);
  if (w.size() == dh) {
    norm_backward(kind, eps, dx, dw, nullptr, dout, x, w);
  } else {
    // y = xhat * w_h: dL/dw_h += dout * xhat; dL/dxhat = dout * w_h.
    const RowVectorF ones = RowVectorF::Ones(dh);
    MatrixRM xhat;
    if (dw) norm_forward(kind, eps, xhat, x, ones, RowVectorF());
    for (Eigen::Index r = 0; r < n; ++r) {
      const Eigen::Index h = r % n_heads;
      if (dw) dw->segment(h * dh, dh) += dout.row(r).cwiseProduct(xhat.row(r));
      dout.row(r).array() *= w.segment(h * dh, dh).array();
    }
    norm_backward(kind, eps, dx, nullptr, nullptr, dout, x, ones);
  }
  Eigen::Map<MatrixRM>(d.data(), n, dh) = dx;
}

void norm_backward(NormKind kind, float eps, MatrixRM& dx, RowVectorF* dw, RowVectorF* db,
                   const MatrixRM& dout, const MatrixRM& x, const RowVectorF& w) {
  if (kind == NormKind::rms_norm)
    rms_norm_backward(dx, dw, dout, x, w, eps);
  else
    layer_norm_backward(dx, dw, db, dout, x, w, eps);
}

// ---------------------------------------------------------------------------
// Activations

namespace {
constexpr float kInvSqrt2 = 0.7071067811865476f;        // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.3989422804014327f;      // 1 / sqrt(2 pi)
constexpr float kGeluExpScale = -2.f * kGeluTanhScale;  // e^{-2u} = exp(kGeluExpScale (x + c x^3))
}  // namespace

float activation(Activation act, float x) {
  switch (act) {
    case Activation::gelu_new:
    case Activation::gelu_fast:
      return gelu_tanh(x);
    case Activation::gelu:
      return 0.5f * x * (1.f + std::erf(x * kInvSqrt2));
    case Activation::silu:
      return x / (1.f + std::exp(-x));
    case Activation::relu:
      return x > 0.f ? x : 0.f;
  }
  return x;
}

float activation_grad(Activation act, float x) {
  switch (act) {
    case Activation::gelu_new:
    case Activation::gelu_fast: {
      // gelu = x s with s = 1 / (1 + e^{-2u}) = (1 + tanh u) / 2:
      // gelu' = s + x s (1 - s) 2 du/dx.
      const float s = 1.f / (1.f + exp_fast(kGeluExpScale * (x + kGeluTanhCubic * x * x * x)));
      return s + x * s * (1.f - s) * 2.f * kGeluTanhScale * (1.f + 3.f * kGeluTanhCubic * x * x);
    }
    case Activation::gelu: {
      const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x * x);  // the standard normal density
      return 0.5f * (1.f + std::erf(x * kInvSqrt2)) + x * pdf;
    }
    case Activation::silu: {
      const float s = 1.f / (1.f + std::exp(-x));
      return s * (1.f + x * (1.f - s));
    }
    case Activation::relu:
      return x > 0.f ? 1.f : 0.f;
  }
  return 1.f;
}

void activation_forward(MatrixRM& x, Activation act) {
  float* p = x.data();
  const std::size_t n = static_cast<std::size_t>(x.size());
  // gelu_new and gelu_fast are the same function; libm's tanhf costs ~150 ms
  // per GPT-2-small forward in wasm, the SIMD form (kernels.hpp) a few ms.
  if (act == Activation::gelu_new || act == Activation::gelu_fast) return gelu_tanh_inplace(p, n);
  for (std::size_t i = 0; i < n; ++i) p[i] = activation(act, p[i]);
}

void activation_backward(MatrixRM& d, const MatrixRM& pre, Activation act) {
  float* g = d.data();
  const float* x = pre.data();
  const std::size_t n = static_cast<std::size_t>(d.size());
  if (act == Activation::gelu_new || act == Activation::gelu_fast) {
    // activation_grad's formula with the exponentials on the SIMD kernel.
    std::vector<float> e(n);
    for (std::size_t i = 0; i < n; ++i) e[i] = kGeluExpScale * (x[i] + kGeluTanhCubic * x[i] * x[i] * x[i]);
    exp_inplace(e.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      const float s = 1.f / (1.f + e[i]);
      g[i] *= s + x[i] * s * (1.f - s) * 2.f * kGeluTanhScale * (1.f + 3.f * kGeluTanhCubic * x[i] * x[i]);
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i) g[i] *= activation_grad(act, x[i]);
}

// ---------------------------------------------------------------------------
// MLP

void mlp_forward(MatrixRM& out, const MatrixRM& x, const LayerWeights& L, Activation act, bool gated,
                 MlpTape* tape) {
  MatrixRM hid;
  matmul(hid, x, L.W_in, &L.b_in);  // [N, M]
  if (tape) {
    tape->in = x;
    tape->pre = hid;
  }
  if (gated) {
    MatrixRM gate;
    matmul(gate, x, L.W_gate, L.b_gate.size() ? &L.b_gate : nullptr);  // [N, M]
    if (tape) tape->gate_pre = gate;
    activation_forward(gate, act);
    hid.array() *= gate.array();
  } else {
    activation_forward(hid, act);
  }
  matmul(out, hid, L.W_out, &L.b_out);  // [N, d]
}

void mlp_backward(MatrixRM& dx, LayerWeights* dL, const MatrixRM& dout, const LayerWeights& L, Activation act,
                  bool gated, const MlpTape& tape) {
  MatrixRM dhid = matmul_bt(dout, L.W_out);  // [N, M] dL/d(the hidden units W_out reads)
  MatrixRM a;                                // [N, M] act(pre) or act(gate_pre), as the forward computed it
  if (dL || gated) {
    a = gated ? tape.gate_pre : tape.pre;
    activation_forward(a, act);
  }
  if (dL) {
    if (gated)
      add_matmul_at(dL->W_out.f32(), (a.array() * tape.pre.array()).matrix(), dout);
    else
      add_matmul_at(dL->W_out.f32(), a, dout);
    dL->b_out += dout.colwise().sum();
  }
  if (gated) {
    // hid = act(gate_pre) * pre
    MatrixRM dgate = (dhid.array() * tape.pre.array()).matrix();  // [N, M]
    activation_backward(dgate, tape.gate_pre, act);
    dhid.array() *= a.array();
    dx += matmul_bt(dhid, L.W_in);
    dx += matmul_bt(dgate, L.W_gate);
    if (dL) {
      add_matmul_at(dL->W_gate.f32(), tape.in, dgate);
      if (L.b_gate.size()) dL->b_gate += dgate.colwise().sum();
    }
  } else {
    activation_backward(dhid, tape.pre, act);
    dx += matmul_bt(dhid, L.W_in);
  }
  if (dL) {
    add_matmul_at(dL->W_in.f32(), tape.in, dhid);
    dL->b_in += dhid.colwise().sum();
  }
}

// ---------------------------------------------------------------------------
// RoPE

bool uses_local_rope(const ModelConfig& c, int layer) {
  return c.rope_local_theta > 0 && !c.window.empty() && c.window[layer] > 0;
}

Rope rope_tables(const ModelConfig& c, int T, bool local) {
  Rope r;
  r.R = local && !(c.rope_local_theta > 0) ? 0 : c.rotary_dim;
  if (r.R == 0) return r;
  const int half = r.R / 2;
  const float theta = local ? c.rope_local_theta : c.rope_theta;
  std::vector<float> inv_freq(half);
  for (int j = 0; j < half; ++j)
    inv_freq[j] = 1.f / std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(r.R));
  float amplitude = 1.f;  // LongRoPE's attention factor, on cos and sin
  if (local) {
    // Gemma 3's local tables have no scaling.
  } else if (c.rope_scaling == RopeScaling::longrope) {
    // transformers' _compute_longrope_parameters with dynamic_rope_update:
    // the long factors once the text is longer than the original context.
    const std::vector<float>& ext = T > c.rope_original_ctx ? c.rope_long_factor : c.rope_short_factor;
    for (int j = 0; j < half; ++j)
      inv_freq[j] = 1.f / (ext[j] * std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(r.R)));
    amplitude = c.rope_attention_factor;
  } else if (c.rope_scaling == RopeScaling::linear) {
    for (float& f : inv_freq) f /= c.rope_factor;
  } else if (c.rope_scaling == RopeScaling::llama3) {
    // transformers _compute_llama3_parameters: divide low frequencies by
    // factor, keep high ones, interpolate in between.
    const double pi = 3.14159265358979323846;
    const double low_wavelen = c.rope_original_ctx / c.rope_low_freq_factor;
    const double high_wavelen = c.rope_original_ctx / c.rope_high_freq_factor;
    for (float& f : inv_freq) {
      const double wavelen = 2 * pi / f;
      double out = wavelen > low_wavelen ? f / c.rope_factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const double smooth = (c.rope_original_ctx / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        out = (1 - smooth) * out / c.rope_factor + smooth * out;
      }
      f = static_cast<float>(out);
    }
  }
  r.cos.resize(T, half);
  r.sin.resize(T, half);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < half; ++j) {
      const float angle = static_cast<float>(t) * inv_freq[j];
      r.cos(t, j) = std::cos(angle) * amplitude;
      r.sin(t, j) = std::sin(angle) * amplitude;
    }
  return r;
}

namespace {

// Rotates each head's pairs (c, c + R/2) of x [N, n_heads*dh] in place by
// sign * angle: +1 is RoPE, -1 its transpose.
void rope_rotate(MatrixRM& x, int n_heads, int dh, const Rope& r, float sign) {
  const int half = r.R / 2;
  if (half == 0) return;
  const Eigen::Index T = r.cos.rows();
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const Eigen::Index p = t % T;
    for (int h = 0; h < n_heads; ++h) {
      float* v = &x(t, h * dh);
      for (int j = 0; j < half; ++j) {
        const float x1 = v[j], x2 = v[j + half], cs = r.cos(p, j), sn = sign * r.sin(p, j);
        v[j] = x1 * cs - x2 * sn;
        v[j + half] = x2 * cs + x1 * sn;
      }
    }
  }
}

}  // namespace

void rope_forward(MatrixRM& x, int n_heads, int dh, const Rope& r) { rope_rotate(x, n_heads, dh, r, 1.f); }

void rope_backward(MatrixRM& dx, int n_heads, int dh, const Rope& r) {
  rope_rotate(dx, n_heads, dh, r, -1.f);
}

// ---------------------------------------------------------------------------
// Attention

AttentionSpec attention_spec(const ModelConfig& c, int layer) {
  AttentionSpec s;
  s.n_head = c.n_head;
  s.n_kv_head = c.n_kv_head;
  s.d_head = c.d_head;
  s.scale = c.scale_by_inverse_layer ? c.attn_scale / static_cast<float>(layer + 1) : c.attn_scale;
  s.causal = c.causal;
  s.window = c.window.empty() ? 0 : c.window[layer];
  s.softcap = c.attn_softcap;
  return s;
}

void attention_forward(MatrixRM& z, float* probs, float* pattern, const MatrixRM& q, const MatrixRM& k,
                       const MatrixRM& v, int n_seq, const AttentionSpec& s, const float* gate) {
  const int N = static_cast<int>(q.rows()), T = N / n_seq, H = s.n_head, G = s.n_kv_head, dh = s.d_head;
  const int group = H / G;
  const std::size_t TT = static_cast<std::size_t>(T) * T;
  assert(T * n_seq == N && "attention_forward: rows are not n_seq sequences of equal length");
  z.resize(N, H * dh);
  // Each sequence's keys transposed, [G*dh, T]: head g's keys are rows [g*dh, (g+1)*dh).
  std::vector<MatrixRM> kT(static_cast<std::size_t>(n_seq));
  for (int b = 0; b < n_seq; ++b) kT[b] = k.middleRows(static_cast<std::ptrdiff_t>(b) * T, T).transpose();
  // The (sequence, head) pairs are independent: shared over the threads.
  parallel_for(static_cast<std::ptrdiff_t>(n_seq) * H, [&](std::ptrdiff_t u0, std::ptrdiff_t u1) {
    MatrixRM P(T, T);  // [T, T] scores, then probabilities
    for (std::ptrdiff_t u = u0; u < u1; ++u) {
      const int b = static_cast<int>(u / H), h = static_cast<int>(u % H);
      const std::ptrdiff_t r0 = static_cast<std::ptrdiff_t>(b) * T;
      const float* qb = q.data() + r0 * H * dh;
      const float* vb = v.data() + r0 * G * dh;
      float* zb = z.data() + r0 * H * dh;
      const int g = h / group;
      const std::size_t slot = (static_cast<std::size_t>(b) * H + h) * TT;
      // pass 1: scores
      gemm(T, T, dh, qb + h * dh, H * dh, kT[b].data() + static_cast<std::ptrdiff_t>(g) * dh * T, T, P.data(),
           T);
      const float gh = gate ? gate[h] : 1.f;
      for (int i = 0; i < T; ++i) {
        // pass 2: softmax over the allowed keys [lo, hi]. Causal: j <= i; window w: i - w < j.
        const int hi = s.causal ? i : T - 1;
        const int lo = (s.causal && s.window > 0) ? std::max(0, i - s.window + 1) : 0;
        float* row = &P(i, 0);
        float mx = -std::numeric_limits<float>::infinity();
        for (int j = lo; j <= hi; ++j) {
          row[j] *= s.scale;
          if (s.softcap > 0) row[j] = s.softcap * std::tanh(row[j] / s.softcap);
          mx = std::max(mx, row[j]);
        }
        for (int j = lo; j <= hi; ++j) row[j] -= mx;
        exp_inplace(row + lo, static_cast<std::size_t>(hi - lo + 1));
        float sum = 0;
        for (int j = lo; j <= hi; ++j) sum += row[j];
        const float inv = 1.f / sum;
        for (int j = 0; j < lo; ++j) row[j] = 0.f;
        if (probs) {
          float* kept = probs + slot + static_cast<std::size_t>(i) * T;
          std::fill(kept, kept + T, 0.f);
          for (int j = lo; j <= hi; ++j) kept[j] = row[j] * inv;
        }
        // pass 3: the gate
        for (int j = lo; j <= hi; ++j) row[j] = row[j] * inv * gh;
        for (int j = hi + 1; j < T; ++j) row[j] = 0.f;
      }
      // pass 4: z_h = Pg v_g
      gemm(T, dh, T, P.data(), T, vb + g * dh, G * dh, zb + h * dh, H * dh);
      if (pattern) std::copy(P.data(), P.data() + TT, pattern + slot);
    }
  });
}

void attention_backward(MatrixRM* dq, MatrixRM* dk, MatrixRM* dv, double* dgate, const MatrixRM& dz,
                        const MatrixRM& q, const MatrixRM& k, const MatrixRM& v, const float* probs,
                        int n_seq, const AttentionSpec& s, const float* gate, const PatternGradFn& extra) {
  const int N = static_cast<int>(dz.rows()), T = N / n_seq, H = s.n_head, G = s.n_kv_head, dh = s.d_head;
  const int group = H / G;
  const std::size_t TT = static_cast<std::size_t>(T) * T;
  const bool want_input = dq != nullptr;
  assert((dk != nullptr) == want_input && (dv != nullptr) == want_input &&
         "attention_backward: dq, dk, dv go together");
  // By (sequence, KV group): a group's heads add to its dk and dv blocks,
  // in head order as one after another would. The pairs are shared over the
  // threads, unless `extra` runs (it may add to what every head shares).
  const auto groups = [&](std::ptrdiff_t u0, std::ptrdiff_t u1) {
    MatrixRM dPg(T, T), dS(T, T), Pg(T, T);
    for (std::ptrdiff_t u = u0; u < u1; ++u) {
      const int b = static_cast<int>(u / G), g0 = static_cast<int>(u % G);
      const Eigen::Index r0 = static_cast<Eigen::Index>(b) * T;
      for (int h = g0 * group; h < (g0 + 1) * group; ++h) {
        const int g = h / group;
        const ConstMapRM P(probs + (static_cast<std::size_t>(b) * H + h) * TT, T, T);
        const float xi = gate ? gate[h] : 1.f;
        Pg = xi * P;
        // pass 4: z_h = Pg v_g
        const auto dz_h = dz.block(r0, h * dh, T, dh);
        dPg.setZero();
        dPg.noalias() += dz_h * v.block(r0, g * dh, T, dh).transpose();
        if (want_input) dv->block(r0, g * dh, T, dh).noalias() += Pg.transpose() * dz_h;
        if (extra) extra(b, h, Pg, dPg);
        // pass 3: Pg = xi P
        if (dgate) {
          double gsum = 0;
          for (int i = 0; i < T; ++i)
            for (int j = 0; j < T; ++j) gsum += double(P(i, j)) * dPg(i, j);
          dgate[h] += gsum;
        }
        if (!want_input || xi == 0.f) continue;
        // pass 2: dS = P o (dP - rowsum(P o dP)), dP = xi dPg; masked P are 0. pass 1: S = scale q k^T
        // (soft-capped: dS *= 1 - tanh^2 of the capped argument, the scores recomputed).
        for (int i = 0; i < T; ++i) {
          double dot = 0;
          for (int j = 0; j < T; ++j) dot += double(P(i, j)) * dPg(i, j);
          for (int j = 0; j < T; ++j) dS(i, j) = static_cast<float>(xi * P(i, j) * (dPg(i, j) - dot) * s.scale);
        }
        if (s.softcap > 0) {
          const MatrixRM raw = q.block(r0, h * dh, T, dh) * k.block(r0, g * dh, T, dh).transpose();
          for (int i = 0; i < T; ++i)
            for (int j = 0; j < T; ++j) {
              const float t = std::tanh(raw(i, j) * s.scale / s.softcap);
              dS(i, j) *= 1.f - t * t;
            }
        }
        dq->block(r0, h * dh, T, dh).noalias() += dS * k.block(r0, g * dh, T, dh);
        dk->block(r0, g * dh, T, dh).noalias() += dS.transpose() * q.block(r0, h * dh, T, dh);
      }
    }
  };
  const std::ptrdiff_t pairs = static_cast<std::ptrdiff_t>(n_seq) * G;
  if (extra) groups(0, pairs);
  else parallel_for(pairs, groups);
}

// ---------------------------------------------------------------------------
// Unembedding

void logit_softcap_forward(MatrixRM& logits, float cap) {
  if (!(cap > 0)) return;
  logits = (logits.array() / cap).tanh() * cap;
}

void logit_softcap_backward(MatrixRM& dlogits, const MatrixRM& capped, float cap) {
  if (!(cap > 0)) return;
  dlogits.array() *= 1.f - (capped.array() / cap).square();
}

void unembed_forward(MatrixRM& logits, const MatrixRM& x, const ModelWeights& w) {
  if (!unembed_tied(w)) {
    matmul(logits, x, w.W_U, &w.b_U);
    return;
  }
  // x W_E^T as (W_E x^T)^T: W_E [V, d] is the packed GEMM's A as stored.
  // Blocks of 4096 tokens keep the transposed product's buffer small.
  const int T = static_cast<int>(x.rows()), V = static_cast<int>(w.W_E.rows()),
            d = static_cast<int>(x.cols());
  const MatrixRM xt = x.transpose();  // [d, N]
  logits.resize(T, V);
  const int block = 4096;
  MatrixRM lt(std::min(block, V), T);
  for (int v0 = 0; v0 < V; v0 += block) {
    const int n = std::min(block, V - v0);
    w.W_E.visit([&](const auto* e) { gemm(n, T, d, e + static_cast<std::size_t>(v0) * d, d, xt.data(), T, lt.data(), T); });
    logits.middleCols(v0, n) = lt.topRows(n).transpose();
  }
  if (w.b_U.size() == V) logits.rowwise() += w.b_U;
}

void unembed_backward(MatrixRM& dx, ModelWeights* dw, const MatrixRM& dlogits, const MatrixRM& x,
                      const ModelWeights& w) {
  if (unembed_tied(w)) {
    MatrixRM t;
    matmul(t, dlogits, w.W_E);  // dlogits (W_E^T)^T
    dx += t;
    if (dw) add_matmul_at(dw->W_E.f32(), dlogits, x);
  } else {
    dx += matmul_bt(dlogits, w.W_U);
    if (dw) add_matmul_at(dw->W_U.f32(), x, dlogits);
  }
  if (dw && w.b_U.size() == dlogits.cols() && dw->b_U.size() == w.b_U.size())
    dw->b_U += dlogits.colwise().sum();
}

// ---------------------------------------------------------------------------
// Cross-entropy

void cross_entropy_forward(double* loss, MatrixRM* probs, const MatrixRM& logits, const int* targets) {
  const Eigen::Index n = logits.rows(), V = logits.cols();
  if (probs && probs != &logits) probs->resize(n, V);
  std::vector<float> scratch(probs ? 0 : static_cast<std::size_t>(V));  // row - max, then its exp
  for (Eigen::Index i = 0; i < n; ++i) {
    const int target = targets[i];
    if (target < 0 && !probs) {
      if (loss) loss[i] = 0.0;
      continue;
    }
    const float* row = &logits(i, 0);
    const float mx = *std::max_element(row, row + V);
    const float at_target = target >= 0 ? row[target] : 0.f;
    float* e = probs ? &(*probs)(i, 0) : scratch.data();
    for (Eigen::Index j = 0; j < V; ++j) e[j] = row[j] - mx;
    exp_inplace(e, static_cast<std::size_t>(V));
    double sum = 0;
    for (Eigen::Index j = 0; j < V; ++j) sum += e[j];
    if (loss) loss[i] = target >= 0 ? mx + std::log(sum) - at_target : 0.0;
    if (probs) {
      const float inv = static_cast<float>(1.0 / sum);
      for (Eigen::Index j = 0; j < V; ++j) e[j] *= inv;
    }
  }
}

void cross_entropy_backward(MatrixRM& probs, const int* targets, float scale) {
  for (Eigen::Index i = 0; i < probs.rows(); ++i) {
    if (targets[i] < 0) {
      probs.row(i).setZero();
      continue;
    }
    probs.row(i) *= scale;
    probs(i, targets[i]) -= scale;
  }
}

}  // namespace hs
