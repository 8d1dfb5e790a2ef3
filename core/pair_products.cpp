// The all-pairs product engine; see pair_products.hpp.
#include "pair_products.hpp"

#include "kernels.hpp"
#include "parallel.hpp"

// GCC 12 reports -Wmaybe-uninitialized inside Eigen 3.4's triangular and
// selfadjoint matrix-vector kernels (a known false positive); keep the
// build's warnings meaningful.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace hs {

namespace {

// The projector products go over the upper triangle of the d x d
// coordinates in bands of `band` rows (see projector_products). Each block of
// coordinates reads every slot's factor rows for its rows and columns, from
// memory (the ~100 MB of factors do not stay in cache): wider bands read
// them fewer times. In wasm, forming GPT-2-small's composition projectors
// took ~12 % less time with 96 rows than with 48, and a little less again
// with 128, which also divides the usual d (768, 1024, 2048...). A block
// holds at least band^2 coordinates per slot, so the band halves for models
// with many heads, to keep the block within kBlockBytes (GPT-2-small's 576
// composition slots: 128 rows, 38 MB; GPT-2-medium's 1536: 64 rows, 25 MB).
constexpr int kMaxBand = 128;
constexpr double kBlockBytes = 48e6;

}  // namespace

int band_rows(int slots) {
  int band = kMaxBand;
  while (band > 16 && double(slots) * band * band * sizeof(float) > kBlockBytes) band /= 2;
  return band;
}

FactorPanels::FactorPanels(const std::vector<int>& head, int d, int k_, int band_)
    : band(band_), rows((d + band - 1) / band * band), k(k_), data((head.size() + 3) / 4 * 4 * rows * k) {
  const int groups = static_cast<int>(head.size() + 3) / 4;
  for (int g = 0; g < groups; ++g) {
    std::fill(data.data() + (std::size_t(g) * rows + d) * k * 4, data.data() + std::size_t(g + 1) * rows * k * 4, 0.0f);
    for (int lane = 0; lane < 4; ++lane) {
      const std::size_t slot = std::size_t(g) * 4 + lane;
      if (slot < head.size() && head[slot] >= 0) continue;
      float* p = data.data() + std::size_t(g) * rows * k * 4 + lane;
      for (int e = 0; e < d * k; ++e) p[std::size_t(e) * 4] = 0.0f;
    }
  }
}

void FactorPanels::set(int slot, const MatrixRM& X, Eigen::Index col0) {
  float* dst = data.data() + std::size_t(slot / 4) * rows * k * 4 + slot % 4;
  for (Eigen::Index r = 0; r < X.rows(); ++r) {
    const float* src = X.data() + r * X.cols() + col0;
    float* p = dst + std::size_t(r) * k * 4;
    for (int c = 0; c < k; ++c) p[c * 4] = src[c];
  }
}

PairLayout::PairLayout(int n_heads, int group, PairSet set, int kinds)
    : sym(set == PairSet::symmetric), ordered(set == PairSet::ordered), n(n_heads) {
  auto round4 = [](int x) { return (x + 3) / 4 * 4; };
  if (!sym) {
    L = n / group;
    n_y = kinds;
    Hx = round4(group);
    Hy = round4(group * n_y);
  }
  // Layers on each side: later_layer leaves the last out on the left and
  // the first on the right (shift 1).
  const int layers = ordered ? L : L - 1, shift = ordered ? 0 : 1;
  slots_x = sym ? round4(n) : layers * Hx;
  slots_y = sym ? 0 : layers * Hy;
  head_x.assign(slots_x, -1);
  head_y.assign(slots_y, -1);
  kind_y.assign(slots_y, -1);
  x_slot.assign(n, -1);
  y_base.assign(n, -1);
  for (int i = 0; i < n; ++i) {
    const int l = sym ? 0 : i / group, h = sym ? i : i % group;
    if (sym || l < layers) {
      x_slot[i] = sym ? i : l * Hx + h;
      head_x[x_slot[i]] = i;
    }
    if (!sym && l >= shift) {
      y_base[i] = (l - shift) * Hy + h * n_y;
      for (int y = 0; y < n_y; ++y) {
        head_y[y_base[i] + y] = i;
        kind_y[y_base[i] + y] = y;
      }
    }
  }
}

namespace {

// Reads one float in every 64-byte line of [p, p + n) in `steps` parts,
// part `step` now: a software prefetch (wasm has no prefetch instruction).
// The forming kernels read each group's factor rows from memory (the
// panels do not stay in cache); touching the next group's rows a part per
// kernel call lets those loads overlap the arithmetic, where the next
// group's first tiles would otherwise wait for them (forming measured ~4 %
// faster). The sum only keeps the loads alive.
volatile float prefetch_sink;
struct Prefetch {
  const float* p = nullptr;
  std::size_t n = 0;
  int steps = 1;
  float touch(int step) const {
    if (!p) return 0.0f;
    const std::size_t part = (n / steps + 15) / 16 * 16, end = std::min(n, part * (step + 1));
    float sum = 0.0f;
    for (std::size_t i = part * step; i < end; i += 16) sum += p[i];
    return sum;
  }
};

// Forms the coordinates rows [r0, r0+rows) x columns [c0, c0+cols) of P_s =
// F_s F_s^T for the 4 slots s of group g, into `out` [rows * cols] quads
// (coordinate (r - r0) * cols + (c - c0), lane s % 4), so that the pair
// products read 4 slots' coordinates as one vector. rows and cols are
// multiples of 2 and 4. `next_rows` and `next_cols` (one part per 4
// columns) are the next group's factor rows for the same block; returns
// the touched sum.
float form_projector_block(const FactorPanels& F, int g, int r0, int rows, int c0, int cols,
                           const Prefetch& next_rows, const Prefetch& next_cols, float* out) {
  float touched = 0.0f;
  for (int c = c0; c < c0 + cols; c += 4) {  // 4 column rows stay in L1 while the rows go by
    touched += next_rows.touch((c - c0) / 4) + next_cols.touch((c - c0) / 4);
    quad_dot_2x4(F.k, rows / 2, F.row(g, r0), F.row(g, c), std::ptrdiff_t(F.k) * 4, out + std::size_t(c - c0) * 4,
                 std::ptrdiff_t(cols) * 4);
  }
  return touched;
}

// The diagonal square [r0, r0 + band)^2 of the projectors of group g's 4
// slots, as its upper triangle only: row by row, coordinates (a, b) with
// a <= b packed into `out` [band (band + 1) / 2] quads, those off the
// diagonal scaled by sqrt(2) so that their products count twice, as the
// band's coordinates right of the square do. (Formed whole, the squares
// would add band / d to the coordinates: 17 % for GPT-2's d 768.)
// `scratch` holds band^2 quads; kernel tiles wholly below the diagonal are
// not formed. `next` as for form_projector_block.
float form_projector_diagonal(const FactorPanels& F, int g, int r0, const Prefetch& next, float* scratch,
                              float* out) {
  const int band = F.band;
  float touched = 0.0f;
  for (int c = 0; c < band; c += 4) {  // rows r <= c + 3, in pairs
    touched += next.touch(c / 4);
    quad_dot_2x4(F.k, std::min(band, c + 4) / 2, F.row(g, r0), F.row(g, r0 + c), std::ptrdiff_t(F.k) * 4,
                 scratch + std::size_t(c) * 4, std::ptrdiff_t(band) * 4);
  }
  const float root2 = std::sqrt(2.0f);
  for (int a = 0; a < band; ++a) {
    const float* row = scratch + std::size_t(a) * band * 4;
    for (int lane = 0; lane < 4; ++lane) out[lane] = row[a * 4 + lane];
    out += 4;
    for (int q = (a + 1) * 4; q < band * 4; ++q) *out++ = root2 * row[q];
  }
  return touched;
}

// The pairs l1 < l2 of layers [begin, end) as a few large rectangles,
// layers [begin, mid) x [mid, end), then each half recursively: L - 1
// products that cover exactly the needed pairs (one product per later layer
// would re-pack the left operand L - 1 times and run narrow GEMMs).
struct LayerBlock {
  int begin, mid, end;
};
void later_layer_blocks(int begin, int end, std::vector<LayerBlock>& out) {
  if (end - begin < 2) return;
  const int mid = (begin + end) / 2;
  out.push_back({begin, mid, end});
  later_layer_blocks(begin, mid, out);
  later_layer_blocks(mid, end, out);
}

// A rectangle of pair products, as head ranges [i0, i0 + ni) x [j0, j0 + nj).
struct Tile {
  int i0, ni, j0, nj;
};

}  // namespace

// The projector kernel: n_ij = <P_i, Q_j> with P_i = X_i X_i^T, Q_j = Y_j Y_j^T
// over the upper triangle's coordinates. Every needed projector is formed
// block by block of coordinates, as quads: PX holds the left sides (4 slots
// per quad), PY the right sides, so that the pair products PX PY^T over the
// coordinates run in a few large rectangles, one per layer block, serving
// every kind at once; nothing is packed, both phases read the panels and the
// quads as they are. The triangle goes in blocks (below), so that only one
// block of formed coordinates exists at a time: band^2 per slot at least
// (band_rows), up to the budget.
Result<std::vector<MatrixRMd>> projector_products(const PairLayout& layout, const FactorPanels& FX,
                                                  const FactorPanels& FY, const ProgressFn& progress, double p0,
                                                  double p1) {
  const bool sym = layout.sym;
  const int L = layout.L, Hx = layout.Hx, Hy = layout.Hy, slots_x = layout.slots_x, slots_y = layout.slots_y;
  const int rows_q = FX.rows, band = FX.band;
  const std::vector<int>&head_x = layout.head_x, &head_y = layout.head_y, &kind_y = layout.kind_y;
  std::vector<MatrixRMd> out(sym ? 1 : layout.n_y, MatrixRMd::Zero(layout.n, layout.n));
  if (slots_x == 0 || (!sym && slots_y == 0)) return out;  // no pairs (e.g. a single layer)
  // In slots. The symmetric set is one square, its kernel tiles on and above
  // the diagonal only (below).
  std::vector<Tile> tiles;
  if (sym || layout.ordered) {
    tiles.push_back({0, slots_x, 0, sym ? slots_x : slots_y});
  } else {
    std::vector<LayerBlock> blocks;
    later_layer_blocks(0, L, blocks);
    for (const LayerBlock& b : blocks) {
      tiles.push_back({b.begin * Hx, (b.mid - b.begin) * Hx, (b.mid - 1) * Hy, (b.end - b.mid) * Hy});
    }
  }
  // The triangle in bands of `band` rows [r0, r0 + band): first the square
  // [r0, r0 + band)^2, its upper triangle packed with the weights of
  // <P_i, P_j> folded in (form_projector_diagonal); then the rest of the
  // band, strictly above the diagonal, in blocks of `width` columns (sized
  // to the budget) whose sums count twice. Within a
  // block the products run KB coordinates at a time for every rectangle, so
  // that the formed quads are read from memory once and then from cache, and
  // each float sum has KB terms (accumulated in double).
  constexpr int KB = 512;
  const double budget = 2.0e6;  // floats of formed coordinates per block (8 MB), when band^2 per slot is less
  const int width =
      std::max(band, static_cast<int>(budget / (double(slots_x + slots_y) * band)) / band * band);
  // Progress: the share of the coordinates done.
  const double coords = 0.5 * double(rows_q) * (rows_q + 1);
  const std::size_t K_diagonal = std::size_t(band) * (band + 1) / 2;
  AlignedFloats scratch(std::size_t(band) * band * 4);
  double done = 0;
  AlignedFloats PX(std::size_t(slots_x) * band * width), PY(std::size_t(slots_y) * band * width);
  // Sums by slot, [slots_x, slots_right] in double: each kernel tile (float
  // sums over KB coordinates) is added to it, then copied out by head.
  const int slots_right = sym ? slots_x : slots_y;
  std::vector<double> acc(std::size_t(slots_x) * slots_right, 0.0);
  // The kernel's columns: 8 slots j of a tile (fewer at its edge) and the
  // rows i it runs for them. (The symmetric square's kernel tiles wholly
  // below its diagonal are pairs i > j, which the mirror below does not
  // read.) work_before: the rows of the columns before it, for the split.
  struct Column {
    int j, nb, i0, i_end;
    double work_before;
  };
  std::vector<Column> columns;
  double total_work = 0;
  for (const Tile& tile : tiles) {
    for (int j = tile.j0; j < tile.j0 + tile.nj; j += 8) {
      const int nb = std::min(8, tile.j0 + tile.nj - j);
      const int i_end = sym ? std::min(tile.i0 + tile.ni, j + nb) : tile.i0 + tile.ni;
      columns.push_back({j, nb, tile.i0, i_end, total_work});
      total_work += std::max(0, i_end - tile.i0);
    }
  }
  for (int r0 = 0; r0 < rows_q; r0 += band) {
    for (int c0 = r0; c0 < rows_q;) {
      const bool diagonal = c0 == r0;
      const int cols = diagonal ? band : std::min(width, rows_q - c0);
      const double weight = diagonal ? 1.0 : 2.0;
      const std::size_t K = diagonal ? K_diagonal : std::size_t(band) * cols;
      // This block of every projector, group by group (FX's, then FY's),
      // into PX and PY, each group prefetching the next one's factor rows.
      const int groups_x = slots_x / 4, groups = groups_x + slots_y / 4;
      auto panel = [&](int q) -> const FactorPanels& { return q < groups_x ? FX : FY; };
      auto group = [&](int q) { return q < groups_x ? q : q - groups_x; };  // within its panel
      // The groups are independent: shared over the threads (each part
      // prefetching its next group's rows).
      std::vector<float> touched(static_cast<std::size_t>(groups), 0.0f);
      parallel_for(groups, [&](std::ptrdiff_t q0, std::ptrdiff_t q1) {
        std::optional<AlignedFloats> own;  // the diagonal's scratch of every part but the first
        float* diagonal_scratch = scratch.data();
        if (q0 != 0 && diagonal) diagonal_scratch = own.emplace(std::size_t(band) * band * 4).data();
        for (int q = static_cast<int>(q0); q < q1; ++q) {
          const int g = group(q);
          float* P = (q < groups_x ? PX.data() : PY.data()) + g * K * 4;
          Prefetch next_rows, next_cols;
          if (q + 1 < groups) {
            const FactorPanels& F = panel(q + 1);
            const std::size_t row_floats = std::size_t(F.k) * 4;
            next_rows = {F.row(group(q + 1), r0), band * row_floats, (diagonal ? band : cols) / 4};
            if (!diagonal) next_cols = {F.row(group(q + 1), c0), cols * row_floats, cols / 4};
          }
          touched[q] = diagonal ? form_projector_diagonal(panel(q), g, r0, next_rows, diagonal_scratch, P)
                                : form_projector_block(panel(q), g, r0, band, c0, cols, next_rows, next_cols, P);
        }
      });
      for (float t : touched) prefetch_sink = prefetch_sink + t;
      // The kernel tiles' columns j (8 at a time) split over the threads by
      // their share of the work; each sum still adds the same KB blocks in
      // the same order, so the bits do not depend on the split.
      const float* right = sym ? PX.data() : PY.data();
      const int parts = std::max(1, std::min(thread_count(), static_cast<int>(columns.size())));
      std::vector<std::size_t> split(static_cast<std::size_t>(parts) + 1, columns.size());
      for (int p = 0, c = 0; p < parts; ++p) {
        while (c < static_cast<int>(columns.size()) && columns[c].work_before * parts < total_work * p) ++c;
        split[p] = static_cast<std::size_t>(c);
      }
      parallel_for(parts, [&](std::ptrdiff_t p0, std::ptrdiff_t p1) {
        for (std::size_t kb = 0; kb < K; kb += KB) {
          const int kk = static_cast<int>(std::min<std::size_t>(KB, K - kb));
          for (std::size_t c = split[p0]; c < split[p1]; ++c) {
            const Column& col = columns[c];
            const int j = col.j, nb = col.nb;
            const float* b0 = right + ((j / 4) * K + kb) * 4;
            for (int i = col.i0; i < col.i_end; i += 4) {
              const float* a = PX.data() + ((i / 4) * K + kb) * 4;
              double* sums = acc.data() + std::size_t(i) * slots_right + j;
              if (nb == 8)
                quad_outer_4x8_add(kk, a, b0, b0 + K * 4, weight, sums, slots_right);
              else
                quad_outer_4x4_add(kk, a, b0, weight, sums, slots_right);
            }
          }
        }
      });
      done += double(K);
      c0 += cols;
      if (!report_progress(progress, p0 + (p1 - p0) * done / coords)) return cancelled_error();
    }
  }
  // By head. The symmetric square holds every pair of groups gi <= gj
  // (and a few gi > gj, in the diagonal's kernel tiles, unused): mirror those.
  for (int i = 0; i < slots_x; ++i) {
    const int hi = head_x[i];
    if (hi < 0) continue;
    for (int j = sym ? i / 4 * 4 : 0; j < slots_right; ++j) {
      const double v = acc[std::size_t(i) * slots_right + j];
      if (sym) {
        const int hj = head_x[j];
        if (hj >= 0) out[0](hi, hj) = out[0](hj, hi) = v;
      } else if (head_y[j] >= 0) {
        out[kind_y[j]](hi, head_y[j]) = v;
      }
    }
  }
  return out;
}

namespace {

// One X against several Ys (composition: Q, K and V share the left factor).
Result<std::vector<MatrixRMd>> block_frobenius_products_multi(const MatrixRM& X, const std::vector<const MatrixRM*>& Ys,
                                                              int k, PairSet set, int group, PairKernel kernel,
                                                              const ProgressFn& progress, double p0, double p1,
                                                              int band) {
  const int d = static_cast<int>(X.rows());
  if (k <= 0 || X.cols() % k != 0) return make_error("block_frobenius_products: X columns are not blocks of k");
  const int n = static_cast<int>(X.cols() / k);
  const int n_y = set == PairSet::symmetric ? 0 : static_cast<int>(Ys.size());
  for (int y = 0; y < n_y; ++y) {
    if (Ys[y]->rows() != d || Ys[y]->cols() != X.cols()) return make_error("block_frobenius_products: Y shape differs from X");
  }
  if (set != PairSet::symmetric && (group <= 0 || n % group != 0)) {
    return make_error("block_frobenius_products: heads are not whole layers");
  }
  const int n_out = set == PairSet::symmetric ? 1 : n_y;
  std::vector<MatrixRMd> out(n_out, MatrixRMd::Zero(n, n));
  if (n == 0 || d == 0) return out;
  const int L = set == PairSet::symmetric ? 1 : n / group;
  if (kernel == PairKernel::direct) {
    if (set == PairSet::symmetric) {
      MatrixRM G = MatrixRM::Zero(n * k, n * k);
      G.selfadjointView<Eigen::Lower>().rankUpdate(X.transpose());
      G = G.selfadjointView<Eigen::Lower>();  // the diagonal blocks need both halves
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j <= i; ++j) out[0](i, j) = out[0](j, i) = G.block(i * k, j * k, k, k).cast<double>().squaredNorm();
      }
      if (!report_progress(progress, p1)) return cancelled_error();
      return out;
    }
    if (set == PairSet::ordered) {
      for (int y = 0; y < n_y; ++y) {
        const MatrixRM G = X.transpose() * *Ys[y];
        for (int i = 0; i < n; ++i) {
          for (int j = 0; j < n; ++j) out[y](i, j) = G.block(i * k, j * k, k, k).cast<double>().squaredNorm();
        }
        if (!report_progress(progress, p0 + (p1 - p0) * (y + 1) / n_y)) return cancelled_error();
      }
      return out;
    }
    for (int y = 0; y < n_y; ++y) {
      for (int l2 = 1; l2 < L; ++l2) {
        const int left = l2 * group;  // heads in earlier layers
        const MatrixRM G = X.leftCols(left * k).transpose() * Ys[y]->middleCols(left * k, group * k);
        for (int i = 0; i < left; ++i) {
          for (int j = 0; j < group; ++j) out[y](i, left + j) = G.block(i * k, j * k, k, k).cast<double>().squaredNorm();
        }
        if (!report_progress(progress, p0 + (p1 - p0) * (y * (L - 1) + l2) / double(n_y * (L - 1)))) return cancelled_error();
      }
    }
    return out;
  }

  // Projector kernel (projector_products): the blocks as panels, by slot.
  const PairLayout layout(n, group, set, n_y);
  if (band <= 0) band = band_rows(layout.slots_x + layout.slots_y);
  if (band % 4 != 0) return make_error("block_frobenius_products: band must be a multiple of 4");
  FactorPanels FX(layout.head_x, d, k, band), FY(layout.head_y, d, k, band);
  for (int i = 0; i < n; ++i) {
    if (layout.x_slot[i] >= 0) FX.set(layout.x_slot[i], X, Eigen::Index(i) * k);
    for (int y = 0; y < n_y; ++y) {
      if (layout.y_slot(i, y) >= 0) FY.set(layout.y_slot(i, y), *Ys[y], Eigen::Index(i) * k);
    }
  }
  return projector_products(layout, FX, FY, progress, p0, p1);
}

}  // namespace

Result<MatrixRMd> block_frobenius_products(const MatrixRM& X, const MatrixRM& Y, int k, PairSet set, int group,
                                           PairKernel kernel, const ProgressFn& progress, double progress_from,
                                           double progress_to, int band) {
  auto r = block_frobenius_products_multi(X, {&Y}, k, set, group, kernel, progress, progress_from, progress_to, band);
  if (!r) return r.error();
  return std::move(r->front());
}

}  // namespace hs
