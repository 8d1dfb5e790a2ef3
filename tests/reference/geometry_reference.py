#!/usr/bin/python3
"""Reference values for the weight-geometry tests (core/geometry.*, core/processing.*).

Writes random inputs and what numpy/scipy compute for them, as .npy, into the
directory given as the only argument (ctest runs this as the FIXTURES_SETUP
test reference.geometry; the Catch2 tests read the files). Everything here is
computed the obvious, expensive way: explicit d x d products, numpy.linalg.svd,
numpy.linalg.eigvals of the full V x V OV circuit, scipy.linalg.subspace_angles
pair by pair, and TransformerLens weight processing written out in numpy. The
C++ code computes the same things the cheap way; agreement is the test.

Inputs are rounded to float32 (what the C++ reads) and every reference is
computed in float64 from those rounded values.

Layout (all under OUT):
  factored/<i>/{A,B,S,metrics}.npy            factored SVD cases
  angles/<i>/{A,B,theta,ranks,sum_cos2}.npy   principal angle cases (theta ascending)
  angles/<i>/theta_scipy{,_bound}.npy         scipy's angles and what scipy can deliver (scipy_angle_bounds)
  composition/<i>/{A1,B1,A2,B2,score}.npy     single composition scores
  baseline/{shape,scores}.npy                 random-baseline Monte Carlo (numpy RNG)
  bh/<i>/{p,q,flags}.npy                      Benjamini-Hochberg by adjusted p-values
  models/<name>/config.npy                    [L, d, H, G, dh, V, d_mlp, rms, n_pos, rotary_dim, gated, parallel]
  models/<name>/raw/*.npy                     weights in the canonical (core/model.hpp) layout
  models/<name>/processed/*.npy               the same after TL processing (numpy)
  models/<name>/ref_{raw,processed}/*.npy     metrics (see model_metrics)
"""

import json
import math
import os
import struct
import sys

import numpy as np
import scipy.linalg

TOP_K = 4          # top-k energy share reported by the C++ head_spectra calls in the tests
N_DIRECTIONS = 3   # OV read-out directions checked
TOP_N = 5          # tokens per read-out list


def f32(x):
    return np.asarray(x, dtype=np.float32)


def as64(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def save(path, name, arr):
    os.makedirs(path, exist_ok=True)
    np.save(os.path.join(path, name + ".npy"), np.ascontiguousarray(arr))


# --------------------------------------------------------------------------
# Spectral summaries (SPEC §5.7): effective rank with L1-normalised sigma;
# energy shares with sigma^2.

def effective_rank(s):
    s = np.abs(s)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def energy_share(s, k):
    s2 = np.sort(np.abs(s) ** 2)[::-1]
    total = s2.sum()
    return float(s2[:k].sum() / total) if total > 0 else 0.0


def spectrum_metrics(s):
    return np.array([np.sqrt((s ** 2).sum()), effective_rank(s), energy_share(s, 1), energy_share(s, TOP_K)])


# --------------------------------------------------------------------------
# Standalone cases

def rotate_away(Q, angles, rng):
    """Columns of Q (orthonormal) each rotated by its angle towards its own
    direction orthogonal to span(Q)."""
    d, k = Q.shape
    W = np.linalg.qr(np.concatenate([Q, rng.standard_normal((d, k))], axis=1))[0][:, k:]
    return Q * np.cos(angles)[None, :] + W * np.sin(angles)[None, :]


def factored_cases(out, rng):
    cases = []
    for (l, m, r) in [(96, 8, 80), (200, 24, 150), (64, 16, 64), (768, 64, 768)]:
        cases.append((rng.standard_normal((l, m)) * 0.3, rng.standard_normal((m, r)) * 0.3))
    # Rank-deficient A: two duplicated columns and a zero column (exact in float32).
    A = rng.standard_normal((80, 12)) * 0.3
    A[:, 3] = A[:, 1]
    A[:, 7] = -2.0 * A[:, 2]
    A[:, 11] = 0.0
    cases.append((A, rng.standard_normal((12, 70)) * 0.3))
    # Widely spread spectrum: A = U diag(10^-j) V^T.
    U = np.linalg.qr(rng.standard_normal((120, 10)))[0]
    Vt = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    cases.append((U @ np.diag(10.0 ** -np.arange(10) * 0.5) @ Vt, rng.standard_normal((10, 90))))
    for i, (A, B) in enumerate(cases):
        A, B = as64(A), as64(B)
        S = np.linalg.svd(A @ B, compute_uv=False)[: min(A.shape[0], A.shape[1], B.shape[1])]
        p = os.path.join(out, "factored", str(i))
        save(p, "A", f32(A))
        save(p, "B", f32(B))
        save(p, "S", S)
        save(p, "metrics", spectrum_metrics(S))
    save(os.path.join(out, "factored"), "count", np.array([len(cases)]))


def knyazev_argentati(A, B):
    """scipy.linalg.subspace_angles step for step, except that each angle
    chooses arcsin or arccos by its own cosine. scipy indexes its mask
    (sigma**2 >= 0.5, cosines descending) against angles sorted the other way,
    so when small and large angles mix, some small angles come from arccos and
    are quantised to multiples of sqrt(eps) ~ 1.5e-8. Ascending order."""
    QA, QB = scipy.linalg.orth(A), scipy.linalg.orth(B)
    C = QA.T @ QB
    cos = scipy.linalg.svdvals(C)                      # descending: smallest angle first
    Bp = QB - QA @ C if QA.shape[1] >= QB.shape[1] else QA - QB @ C.T
    sin = np.sort(scipy.linalg.svdvals(Bp))[: len(cos)]  # ascending: smallest angle first
    return np.sort(np.where(cos ** 2 >= 0.5, np.arcsin(np.clip(sin, -1, 1)), np.arccos(np.clip(cos, -1, 1))))


def scipy_angle_bounds(A, B):
    """What scipy.linalg.subspace_angles can deliver, angle by angle: a bound
    on |theta_scipy - theta| from the inputs' conditioning, in the order
    subspace_angles returns (descending).

    scipy takes each angle from arcsin of a sine or arccos of a cosine (its
    mask, step 5), both singular values of products of orthonormal bases. Let
    delta bound their absolute error. The bases come from orth (an SVD): the
    computed range of A is within p eps kappa(A) of the true one (Wedin, with
    the SVD's backward error p eps ||A|| and kappa = sigma_1 / sigma_rank), and
    the products and singular values add p eps more, so
        delta = p eps (kappa(A) + kappa(B) + 2),  p = number of rows
    (LAPACK's "modestly growing function" of the size, taken as its largest
    dimension). An argument x in error by delta moves arcsin/arccos by at most
    delta / sqrt(1 - x^2), and never by more than arccos(1 - delta) <=
    1.01 sqrt(2 delta) (delta < 0.1): where scipy takes arccos of a cosine
    near 1 (a small angle), that square root is what it can deliver, whatever
    the BLAS (~1.5e-8 per ulp of the cosine)."""
    eps = np.finfo(np.float64).eps

    def kappa(M):
        s = scipy.linalg.svdvals(M)
        kept = s[s > s[0] * eps * max(M.shape)]  # orth's default rcond
        return kept[0] / kept[-1]

    QA, QB = scipy.linalg.orth(A), scipy.linalg.orth(B)
    C = QA.T @ QB
    cos = scipy.linalg.svdvals(C)
    Bp = QB - QA @ C if QA.shape[1] >= QB.shape[1] else QA - QB @ C.T
    sin = scipy.linalg.svdvals(Bp)
    mask = cos ** 2 >= 0.5
    x = np.clip(np.where(mask, sin, cos[::-1]), -1.0, 1.0)  # the argument of each angle's arcsin / arccos
    delta = A.shape[0] * eps * (kappa(A) + kappa(B) + 2)
    slope = np.sqrt(np.maximum(1.0 - x * x, 0.0))
    with np.errstate(divide="ignore"):
        local = np.where(slope > 0, delta / slope, np.inf)
    return np.minimum(local, 1.01 * np.sqrt(2.0 * delta))


def angle_cases(out, rng):
    cases = []
    d = 96
    cases.append(("random", rng.standard_normal((d, 8)), rng.standard_normal((d, 8))))
    cases.append(("random_unequal", rng.standard_normal((d, 8)), rng.standard_normal((d, 5))))
    cases.append(("random_unequal_rev", rng.standard_normal((d, 4)), rng.standard_normal((d, 9))))
    # Nearly parallel: every basis vector rotated by ~1e-6 rad, then mixed so
    # that neither input is orthonormal.
    Q = np.linalg.qr(rng.standard_normal((d, 8)))[0]
    QB = rotate_away(Q, 1e-6 * np.arange(1, 9), rng)
    cases.append(("parallel_1e-6", Q @ rng.standard_normal((8, 8)), QB @ rng.standard_normal((8, 8))))
    Q = np.linalg.qr(rng.standard_normal((d, 6)))[0]
    cases.append(("parallel_1e-4_mixed_large", np.concatenate([Q, rng.standard_normal((d, 2))], 1),
                  np.concatenate([rotate_away(Q, 1e-4 * np.arange(1, 7), rng), rng.standard_normal((d, 2))], 1)))
    # Identical column space.
    A = rng.standard_normal((d, 7))
    cases.append(("identical", A, A @ rng.standard_normal((7, 7))))
    # Rank-deficient: duplicated and zero columns; B shares 3 columns with A.
    A = rng.standard_normal((d, 8))
    A[:, 5] = A[:, 0]
    A[:, 6] = 0.0
    B = rng.standard_normal((d, 8))
    B[:, :3] = A[:, 1:4]
    B[:, 7] = 4.0 * B[:, 4]
    cases.append(("rank_deficient_shared", A, B))
    # GPT-2-small shape, partially shared.
    A = rng.standard_normal((768, 64))
    B = np.concatenate([A[:, :20] @ rng.standard_normal((20, 20)), rng.standard_normal((768, 44))], 1)
    cases.append(("gpt2_shape", A, B))
    # Orthogonal: disjoint coordinate blocks.
    A = np.zeros((d, 5)); A[:5, :] = rng.standard_normal((5, 5))
    B = np.zeros((d, 5)); B[10:15, :] = rng.standard_normal((5, 5))
    cases.append(("orthogonal", A, B))
    names = []
    for i, (name, A, B) in enumerate(cases):
        A, B = as64(A), as64(B)
        rank_a = scipy.linalg.orth(A).shape[1]
        rank_b = scipy.linalg.orth(B).shape[1]
        # The C++ rank cut uses float32 eps (weights are float32): the cases
        # are built so that both cuts agree.
        for M, r in ((A, rank_a), (B, rank_b)):
            rc = np.finfo(np.float32).eps * max(M.shape)
            assert scipy.linalg.orth(M, rcond=rc).shape[1] == r, name
        theta_scipy_desc = scipy.linalg.subspace_angles(A, B)
        order = np.argsort(theta_scipy_desc, kind="stable")
        theta_scipy = theta_scipy_desc[order]
        bound = scipy_angle_bounds(A, B)[order]
        # Sorting may pair an angle with a neighbour's: within 2 max(bound)
        # of each other, an angle takes the largest bound of its neighbours.
        near = np.abs(theta_scipy[:, None] - theta_scipy[None, :]) <= 2 * bound.max()
        theta_scipy_bound = np.where(near, bound[None, :], 0.0).max(axis=1)
        theta = knyazev_argentati(A, B)
        QA, QB = scipy.linalg.orth(A), scipy.linalg.orth(B)
        p = os.path.join(out, "angles", str(i))
        save(p, "A", f32(A))
        save(p, "B", f32(B))
        save(p, "theta", theta)
        save(p, "theta_scipy", theta_scipy)
        save(p, "theta_scipy_bound", theta_scipy_bound)
        save(p, "ranks", np.array([rank_a, rank_b]))
        save(p, "sum_cos2", np.array([np.linalg.norm(QA.T @ QB) ** 2]))
        names.append(name)
    save(os.path.join(out, "angles"), "count", np.array([len(cases)]))
    with open(os.path.join(out, "angles", "names.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


def comp_score_full(L, R):
    """TL composition score with explicit matrices; a zero circuit scores 0."""
    norms = np.linalg.norm(L) * np.linalg.norm(R)
    return np.linalg.norm(L @ R) / norms if norms > 0 else 0.0


def composition_cases(out, rng):
    i = 0
    for (d, m) in [(48, 6), (96, 16), (64, 64), (200, 8)]:
        A1, B1 = rng.standard_normal((d, m)), rng.standard_normal((m, d))
        A2, B2 = rng.standard_normal((d, m)), rng.standard_normal((m, d))
        if i == 1:  # make the pair strongly composing: A2 reads what B1 writes
            A2 = B1.T @ rng.standard_normal((m, m)) + 0.1 * A2
        A1, B1, A2, B2 = map(as64, (A1, B1, A2, B2))
        p = os.path.join(out, "composition", str(i))
        for n, x in (("A1", A1), ("B1", B1), ("A2", A2), ("B2", B2)):
            save(p, n, f32(x))
        save(p, "score", np.array([comp_score_full(A1 @ B1, A2 @ B2)]))
        i += 1
    save(os.path.join(out, "composition"), "count", np.array([i]))


def baseline_reference(out, rng):
    """ARENA's random baseline, numpy RNG: compared statistically."""
    d, dh, n = 64, 16, 2000
    b = 1 / np.sqrt(dh)
    scores = np.empty(n)
    for s in range(n):
        X = [rng.uniform(-b, b, (d, dh)) for _ in range(4)]
        scores[s] = comp_score_full(X[0] @ X[1].T, X[2] @ X[3].T)
    save(os.path.join(out, "baseline"), "shape", np.array([d, dh]))
    save(os.path.join(out, "baseline"), "scores", scores)


# --------------------------------------------------------------------------
# Models in the canonical layout of core/model.hpp (TL conventions, heads side
# by side): per layer W_Q [d, H*dh], W_K/W_V [d, G*dh], W_O [H*dh, d], ...

LAYER_KEYS = ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "ln1_w", "ln1_b", "ln2_w", "ln2_b",
              "W_in", "W_gate", "b_in", "W_out", "b_out"]
GLOBAL_KEYS = ["W_E", "W_pos", "ln_final_w", "ln_final_b", "W_U", "b_U"]


def random_model(rng, L, d, H, G, dh, V, d_mlp, rms, gated, degenerate=False):
    cfg = dict(L=L, d=d, H=H, G=G, dh=dh, V=V, d_mlp=d_mlp, rms=rms, n_pos=16 if not rms else 0,
               rotary_dim=0 if not rms else dh, gated=gated, parallel=False)
    s = 1.0 / np.sqrt(d)
    w = {"layers": []}
    for l in range(L):
        lw = {
            "W_Q": rng.standard_normal((d, H * dh)) * s, "W_K": rng.standard_normal((d, G * dh)) * s,
            "W_V": rng.standard_normal((d, G * dh)) * s, "W_O": rng.standard_normal((H * dh, d)) * s,
            "b_Q": rng.standard_normal(H * dh) * 0.1, "b_K": rng.standard_normal(G * dh) * 0.1,
            "b_V": rng.standard_normal(G * dh) * 0.1, "b_O": rng.standard_normal(d) * 0.1,
            "ln1_w": 1 + rng.standard_normal(d) * 0.2, "ln1_b": np.zeros(0) if rms else rng.standard_normal(d) * 0.1,
            "ln2_w": 1 + rng.standard_normal(d) * 0.2, "ln2_b": np.zeros(0) if rms else rng.standard_normal(d) * 0.1,
            "W_in": rng.standard_normal((d, d_mlp)) * s,
            "W_gate": rng.standard_normal((d, d_mlp)) * s if gated else np.zeros((0, 0)),
            "b_in": rng.standard_normal(d_mlp) * 0.1, "W_out": rng.standard_normal((d_mlp, d)) / np.sqrt(d_mlp),
            "b_out": rng.standard_normal(d) * 0.1,
        }
        w["layers"].append(lw)
    if degenerate:
        # Head 1 of layer 0 writes nothing; heads 2 and 3 of layer 0 read a
        # 3-dim value subspace (duplicated columns); head 0 of layer 2
        # duplicates head 3 of layer 1 exactly (a perfect merge candidate).
        dl = w["layers"]
        dl[0]["W_O"][dh:2 * dh, :] = 0.0
        kv = 2 // (H // G)
        blk = dl[0]["W_V"][:, kv * dh:(kv + 1) * dh]
        blk[:, 3:] = np.tile(blk[:, :3], (1, dh // 3 + 1))[:, : dh - 3]
        dl[2]["W_O"][0:dh, :] = dl[1]["W_O"][3 * dh:4 * dh, :]
        kv3, kv0 = 3 // (H // G), 0
        dl[2]["W_V"][:, kv0 * dh:(kv0 + 1) * dh] = dl[1]["W_V"][:, kv3 * dh:(kv3 + 1) * dh]
    w["W_E"] = rng.standard_normal((V, d)) * 0.5
    w["W_pos"] = rng.standard_normal((cfg["n_pos"], d)) * 0.1 if cfg["n_pos"] else np.zeros((0, 0))
    w["ln_final_w"] = 1 + rng.standard_normal(d) * 0.2
    w["ln_final_b"] = np.zeros(0) if rms else rng.standard_normal(d) * 0.1
    w["W_U"] = rng.standard_normal((d, V)) * s
    w["b_U"] = rng.standard_normal(V) * 0.1
    return cfg, round_weights(w)


def round_weights(w):
    out = {k: as64(v) for k, v in w.items() if k != "layers"}
    out["layers"] = [{k: as64(v) for k, v in lw.items()} for lw in w["layers"]]
    return out


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (path, name)
        b, e = info["data_offsets"]
        tensors[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return tensors


def fixture_model(folder):
    """The fixture checkpoint mapped to the canonical layout, independently of
    the C++ loader (SPEC §2.2)."""
    cfgj = json.load(open(os.path.join(folder, "config.json")))
    t = read_safetensors(os.path.join(folder, "model.safetensors"))
    mt = cfgj["model_type"]
    w = {"layers": []}
    if mt == "gpt2":
        d, H, L = cfgj["n_embd"], cfgj["n_head"], cfgj["n_layer"]
        dh, G, V = d // H, H, cfgj["vocab_size"]
        p = "transformer."
        for l in range(L):
            q = f"{p}h.{l}."
            Wc, bc = t[q + "attn.c_attn.weight"], t[q + "attn.c_attn.bias"]  # Conv1D [d, 3d]: [Q | K | V]
            w["layers"].append({
                "W_Q": Wc[:, :d], "W_K": Wc[:, d:2 * d], "W_V": Wc[:, 2 * d:],
                "b_Q": bc[:d], "b_K": bc[d:2 * d], "b_V": bc[2 * d:],
                "W_O": t[q + "attn.c_proj.weight"], "b_O": t[q + "attn.c_proj.bias"],
                "ln1_w": t[q + "ln_1.weight"], "ln1_b": t[q + "ln_1.bias"],
                "ln2_w": t[q + "ln_2.weight"], "ln2_b": t[q + "ln_2.bias"],
                "W_in": t[q + "mlp.c_fc.weight"], "b_in": t[q + "mlp.c_fc.bias"], "W_gate": np.zeros((0, 0)),
                "W_out": t[q + "mlp.c_proj.weight"], "b_out": t[q + "mlp.c_proj.bias"],
            })
        w["W_E"] = t[p + "wte.weight"]
        w["W_pos"] = t[p + "wpe.weight"]
        w["ln_final_w"], w["ln_final_b"] = t[p + "ln_f.weight"], t[p + "ln_f.bias"]
        w["W_U"] = t[p + "wte.weight"].T
        cfg = dict(L=L, d=d, H=H, G=G, dh=dh, V=V, d_mlp=w["layers"][0]["W_in"].shape[1], rms=False,
                   n_pos=w["W_pos"].shape[0], rotary_dim=0, gated=False, parallel=False)
    elif mt == "llama":
        d, H, L = cfgj["hidden_size"], cfgj["num_attention_heads"], cfgj["num_hidden_layers"]
        G = cfgj.get("num_key_value_heads") or H
        dh, V = cfgj.get("head_dim", d // H), cfgj["vocab_size"]
        p = "model."
        for l in range(L):
            q = f"{p}layers.{l}."
            a = q + "self_attn."
            w["layers"].append({
                "W_Q": t[a + "q_proj.weight"].T, "W_K": t[a + "k_proj.weight"].T, "W_V": t[a + "v_proj.weight"].T,
                "W_O": t[a + "o_proj.weight"].T,
                "b_Q": np.zeros(H * dh), "b_K": np.zeros(G * dh), "b_V": np.zeros(G * dh), "b_O": np.zeros(d),
                "ln1_w": t[q + "input_layernorm.weight"], "ln1_b": np.zeros(0),
                "ln2_w": t[q + "post_attention_layernorm.weight"], "ln2_b": np.zeros(0),
                "W_in": t[q + "mlp.up_proj.weight"].T, "W_gate": t[q + "mlp.gate_proj.weight"].T,
                "b_in": np.zeros(cfgj["intermediate_size"]), "W_out": t[q + "mlp.down_proj.weight"].T,
                "b_out": np.zeros(d),
            })
        w["W_E"] = t[p + "embed_tokens.weight"]
        w["W_pos"] = np.zeros((0, 0))
        w["ln_final_w"], w["ln_final_b"] = t[p + "norm.weight"], np.zeros(0)
        w["W_U"] = (t["lm_head.weight"] if "lm_head.weight" in t else t[p + "embed_tokens.weight"]).T
        cfg = dict(L=L, d=d, H=H, G=G, dh=dh, V=V, d_mlp=cfgj["intermediate_size"], rms=True, n_pos=0,
                   rotary_dim=dh, gated=True, parallel=False)
    elif mt == "gpt_neox":
        d, H, L = cfgj["hidden_size"], cfgj["num_attention_heads"], cfgj["num_hidden_layers"]
        dh, G, V = d // H, H, cfgj["vocab_size"]
        p = "gpt_neox."
        for l in range(L):
            q = f"{p}layers.{l}."
            Wf = t[q + "attention.query_key_value.weight"]  # [3d, d], rows (head, {q,k,v}, dh)
            bf = t[q + "attention.query_key_value.bias"]
            Wr = Wf.reshape(H, 3, dh, d)
            br = bf.reshape(H, 3, dh)
            def cols(s):
                return np.concatenate([Wr[h, s].T for h in range(H)], axis=1)  # [d, H*dh]
            w["layers"].append({
                "W_Q": cols(0), "W_K": cols(1), "W_V": cols(2),
                "b_Q": br[:, 0].reshape(-1), "b_K": br[:, 1].reshape(-1), "b_V": br[:, 2].reshape(-1),
                "W_O": t[q + "attention.dense.weight"].T, "b_O": t[q + "attention.dense.bias"],
                "ln1_w": t[q + "input_layernorm.weight"], "ln1_b": t[q + "input_layernorm.bias"],
                "ln2_w": t[q + "post_attention_layernorm.weight"], "ln2_b": t[q + "post_attention_layernorm.bias"],
                "W_in": t[q + "mlp.dense_h_to_4h.weight"].T, "b_in": t[q + "mlp.dense_h_to_4h.bias"],
                "W_gate": np.zeros((0, 0)),
                "W_out": t[q + "mlp.dense_4h_to_h.weight"].T, "b_out": t[q + "mlp.dense_4h_to_h.bias"],
            })
        w["W_E"] = t[p + "embed_in.weight"]
        w["W_pos"] = np.zeros((0, 0))
        w["ln_final_w"], w["ln_final_b"] = t[p + "final_layer_norm.weight"], t[p + "final_layer_norm.bias"]
        w["W_U"] = t["embed_out.weight"].T
        cfg = dict(L=L, d=d, H=H, G=G, dh=dh, V=V, d_mlp=w["layers"][0]["W_in"].shape[1], rms=False, n_pos=0,
                   rotary_dim=int(dh * cfgj.get("rotary_pct", 0.25)), gated=False, parallel=True)
    else:
        raise ValueError(mt)
    if "b_U" not in w:
        w["b_U"] = np.zeros(cfg["V"])
    return cfg, round_weights(w)


def process_tl(cfg, w):
    """TransformerLens v2.18 process_weights with its defaults (fold_ln,
    center_writing_weights, center_unembed, fold_value_biases), numpy."""
    import copy
    w = copy.deepcopy(w)
    ln = not cfg["rms"]
    d, H, G, dh = cfg["d"], cfg["H"], cfg["G"], cfg["dh"]
    # fold_ln
    for lw in w["layers"]:
        for s in "QKV":
            if ln:
                lw["b_" + s] = lw["b_" + s] + lw["ln1_b"] @ lw["W_" + s]
            lw["W_" + s] = lw["W_" + s] * lw["ln1_w"][:, None]
            if ln:
                lw["W_" + s] = lw["W_" + s] - lw["W_" + s].mean(axis=0, keepdims=True)
        lw["ln1_w"] = np.ones(d)
        lw["ln1_b"] = np.zeros(d) if ln else np.zeros(0)
        if ln:
            lw["b_in"] = lw["b_in"] + lw["ln2_b"] @ lw["W_in"]
        lw["W_in"] = lw["W_in"] * lw["ln2_w"][:, None]
        if lw["W_gate"].size:
            lw["W_gate"] = lw["W_gate"] * lw["ln2_w"][:, None]
        if ln:
            lw["W_in"] = lw["W_in"] - lw["W_in"].mean(axis=0, keepdims=True)
        lw["ln2_w"] = np.ones(d)
        lw["ln2_b"] = np.zeros(d) if ln else np.zeros(0)
    if ln:
        w["b_U"] = w["b_U"] + w["ln_final_b"] @ w["W_U"]
    w["W_U"] = w["W_U"] * w["ln_final_w"][:, None]
    if ln:
        w["W_U"] = w["W_U"] - w["W_U"].mean(axis=0, keepdims=True)
    w["ln_final_w"] = np.ones(d)
    w["ln_final_b"] = np.zeros(d) if ln else np.zeros(0)
    # center_writing_weights (LayerNorm models)
    if ln:
        w["W_E"] = w["W_E"] - w["W_E"].mean(axis=1, keepdims=True)
        if w["W_pos"].size and cfg["rotary_dim"] == 0:
            w["W_pos"] = w["W_pos"] - w["W_pos"].mean(axis=1, keepdims=True)
        for lw in w["layers"]:
            lw["W_O"] = lw["W_O"] - lw["W_O"].mean(axis=1, keepdims=True)
            lw["b_O"] = lw["b_O"] - lw["b_O"].mean()
            lw["W_out"] = lw["W_out"] - lw["W_out"].mean(axis=1, keepdims=True)
            lw["b_out"] = lw["b_out"] - lw["b_out"].mean()
    # center_unembed
    w["W_U"] = w["W_U"] - w["W_U"].mean(axis=1, keepdims=True)
    w["b_U"] = w["b_U"] - w["b_U"].mean()
    # fold_value_biases (GQA: b_V repeat-interleaved over the query heads)
    for lw in w["layers"]:
        bV = lw["b_V"].reshape(G, dh)[np.arange(H) // (H // G)]  # [H, dh]
        WO = lw["W_O"].reshape(H, dh, d)
        lw["b_O"] = lw["b_O"] + np.einsum("hc,hcm->m", bV, WO)
        lw["b_V"] = np.zeros_like(lw["b_V"])
    return w


def heads(cfg, w, l):
    """TL per-head blocks of layer l, K/V expanded to the query heads."""
    H, G, dh = cfg["H"], cfg["G"], cfg["dh"]
    lw = w["layers"][l]
    g = lambda h: h // (H // G)
    Q = [lw["W_Q"][:, h * dh:(h + 1) * dh] for h in range(H)]
    K = [lw["W_K"][:, g(h) * dh:(g(h) + 1) * dh] for h in range(H)]
    Vv = [lw["W_V"][:, g(h) * dh:(g(h) + 1) * dh] for h in range(H)]
    O = [lw["W_O"][h * dh:(h + 1) * dh, :] for h in range(H)]
    return Q, K, Vv, O


def model_metrics(cfg, w):
    L, H, dh = cfg["L"], cfg["H"], cfg["dh"]
    N = L * H
    r = {}
    hq, hk, hv, ho = zip(*[heads(cfg, w, l) for l in range(L)])
    ov = [[hv[l][h] @ ho[l][h] for h in range(H)] for l in range(L)]      # explicit d x d
    qk = [[hq[l][h] @ hk[l][h].T for h in range(H)] for l in range(L)]
    for name, M in (("ov", ov), ("qk", qk)):
        sig = np.array([[np.linalg.svd(M[l][h], compute_uv=False)[:dh] for h in range(H)] for l in range(L)])
        r[name + "_sigma"] = sig
        r[name + "_metrics"] = np.array([[spectrum_metrics(sig[l, h]) for h in range(H)] for l in range(L)])
    # Subspace redundancy, pair by pair with scipy.
    spaces = {"Q": hq, "K": hk, "V": hv, "O": [[o.T for o in row] for row in ho]}
    for kind, S in spaces.items():
        flat = [S[l][h] for l in range(L) for h in range(H)]
        R = np.zeros((N, N))
        for i in range(N):
            for j in range(i, N):
                if not flat[i].any() or not flat[j].any():
                    continue
                th = scipy.linalg.subspace_angles(flat[i], flat[j])
                R[i, j] = R[j, i] = (np.cos(th) ** 2).sum() / dh
        r["red_" + kind] = R
    # Composition scores with full matrices for every ordered pair: l1 < l2
    # (TL's mask) are the scores, l1 >= l2 (self excluded) their null.
    comp = {k: np.zeros((L, H, L, H)) for k in "qkv"}
    null = {k: np.zeros((L, H, L, H)) for k in "qkv"}
    for l1 in range(L):
        for h1 in range(H):
            Lm = ov[l1][h1]
            if not Lm.any():
                continue
            for l2 in range(L):
                for h2 in range(H):
                    if (l1, h1) == (l2, h2):
                        continue
                    dst = comp if l1 < l2 else null
                    dst["q"][l1, h1, l2, h2] = comp_score_full(Lm, qk[l2][h2])
                    dst["k"][l1, h1, l2, h2] = comp_score_full(Lm, qk[l2][h2].T)
                    dst["v"][l1, h1, l2, h2] = comp_score_full(Lm, ov[l2][h2])
    for k in "qkv":
        r["comp_" + k] = comp[k]
        r["compnull_" + k] = null[k]
    # Full OV circuit W_E OV W_U [V, V], eigenvalues explicitly.
    WE, WU = w["W_E"], w["W_U"]
    cs = np.zeros((L, H))
    pf = np.zeros((L, H))
    for l in range(L):
        for h in range(H):
            lam = np.linalg.eigvals(WE @ ov[l][h] @ WU)
            a = np.abs(lam).sum()
            cs[l, h] = lam.sum().real / a if a > 0 else 0
            pf[l, h] = np.abs(lam[lam.real > 0]).sum() / a if a > 0 else 0
    r["copy_score"] = cs
    r["copy_posfrac"] = pf
    # Cosine of two heads' QK bilinear forms (merge candidates), per layer.
    r["qk_cosine"] = np.array([[[np.sum(qk[l][a] * qk[l][b]) / max(np.linalg.norm(qk[l][a]) * np.linalg.norm(qk[l][b]), 1e-300)
                                 for b in range(H)] for a in range(H)] for l in range(L)])
    # ARENA's diagonal tests of the full OV (W_E OV W_U) and token QK
    # (W_E QK W_E^T) circuits, every row (the vocabularies are small):
    # [top1, top5, median rank, mean rank]; rank = entries strictly above.
    def diagonal(M):
        own = np.diag(M)
        ranks = (M > own[:, None]).sum(axis=1)
        return [np.mean(ranks == 0), np.mean(ranks < 5), np.median(ranks), np.mean(ranks)]
    r["diag_ov"] = np.array([[diagonal(WE @ ov[l][h] @ WU) for h in range(H)] for l in range(L)])
    r["diag_qk"] = np.array([[diagonal(WE @ qk[l][h] @ WE.T) for h in range(H)] for l in range(L)])
    # Positional QK circuit (learned positions): causal softmax of
    # W_pos QK W_pos^T / sqrt(dh) over the first 16 positions.
    if cfg["n_pos"] and not cfg["rotary_dim"]:
        P = min(16, cfg["n_pos"])
        Wp = w["W_pos"][:P]
        prev = np.zeros((L, H))
        cur = np.zeros((L, H))
        for l in range(L):
            for h in range(H):
                A = Wp @ qk[l][h] @ Wp.T / math.sqrt(dh)
                A = np.where(np.tril(np.ones((P, P))) > 0, A, -np.inf)
                A = np.exp(A - A.max(axis=1, keepdims=True))
                A /= A.sum(axis=1, keepdims=True)
                prev[l, h] = np.diag(A, -1).mean()
                cur[l, h] = np.diag(A).mean()
                if (l, h) == (0, 0):
                    r["pos_pattern_L0H0"] = A
        r["pos_previous"] = prev
        r["pos_current"] = cur
    # Read-out of the last head's top OV directions (sign: largest |V_k| entry positive).
    l, h = L - 1, H - 1
    U, S, Vt = np.linalg.svd(ov[l][h])
    ids = {k: [] for k in ("read_top", "read_bottom", "write_top", "write_bottom")}
    vals = {k: [] for k in ids}
    en = np.linalg.norm(WE, axis=1)
    un = np.linalg.norm(WU, axis=0)
    for k in range(N_DIRECTIONS):
        u, v = U[:, k], Vt[k, :]
        sgn = 1.0 if v[np.argmax(np.abs(v))] >= 0 else -1.0
        u, v = u * sgn, v * sgn
        rc = (WE @ u) / en
        wc = (WU.T @ v) / un
        for key, c, top in (("read_top", rc, True), ("read_bottom", rc, False),
                            ("write_top", wc, True), ("write_bottom", wc, False)):
            order = np.argsort(-c if top else c, kind="stable")[:TOP_N]
            ids[key].append(order)
            vals[key].append(c[order])
    for key in ids:
        r["readout_" + key + "_ids"] = np.array(ids[key])
        r["readout_" + key + "_cos"] = np.array(vals[key])
    r["readout_sigma"] = S[:N_DIRECTIONS]
    # One cross-kind pair: L0H0 write (O) against the last layer's head 1 read (Q).
    A = ho[0][0].T
    B = hq[L - 1][min(1, H - 1)]
    r["pair_theta"] = knyazev_argentati(A, B)
    return r


def bh_cases(out, rng):
    """Benjamini-Hochberg discoveries by the step-up adjusted p-values
    (min over j >= k of p_(j) m / j, <= q), a different route from the
    C++'s largest-k search. p-values with ties, as empirical ones have."""
    i = 0
    for m in (1, 7, 200, 1000):
        for q in (0.05, 0.2):
            strong = rng.integers(0, 40, size=m) / 10001.0 + 1 / 10001.0
            p = np.where(rng.random(m) < 0.15, strong, rng.integers(1, 10001, size=m) / 10001.0)
            order = np.argsort(p, kind="stable")
            adjusted = p[order] * m / np.arange(1, m + 1)
            adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
            flags = np.zeros(m, dtype=np.int64)
            flags[order] = adjusted <= q
            d = os.path.join(out, "bh", str(i))
            save(d, "p", p)
            save(d, "q", np.array([q]))
            save(d, "flags", flags)
            i += 1
    save(os.path.join(out, "bh"), "count", np.array([i]))


def write_raw_model(out, name, cfg, w):
    """A model's config and raw weights only (no metrics), for tests that
    compute on it themselves."""
    base = os.path.join(out, "models", name)
    save(base, "config", np.array([cfg["L"], cfg["d"], cfg["H"], cfg["G"], cfg["dh"], cfg["V"], cfg["d_mlp"],
                                   int(cfg["rms"]), cfg["n_pos"], cfg["rotary_dim"], int(cfg["gated"]),
                                   int(cfg["parallel"])]))
    p = os.path.join(base, "raw")
    for k in GLOBAL_KEYS:
        save(p, k, f32(w[k]))
    for l, lw in enumerate(w["layers"]):
        for k in LAYER_KEYS:
            save(p, f"{k}.{l}", f32(lw[k]))


def write_model(out, name, cfg, w):
    write_raw_model(out, name, cfg, w)
    base = os.path.join(out, "models", name)
    pw = process_tl(cfg, w)
    p = os.path.join(base, "processed")
    for k in GLOBAL_KEYS:
        save(p, k, pw[k])
    for l, lw in enumerate(pw["layers"]):
        for k in LAYER_KEYS:
            save(p, f"{k}.{l}", lw[k])
    for variant, weights in (("raw", w), ("processed", pw)):
        for k, v in model_metrics(cfg, weights).items():
            save(os.path.join(base, "ref_" + variant), k, v)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: geometry_reference.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    factored_cases(out, rng)
    angle_cases(out, rng)
    composition_cases(out, rng)
    baseline_reference(out, rng)
    bh_cases(out, rng)
    # Independent random heads (every pair exchangeable): the composition
    # null's calibration. Not in names.txt: it has no metrics.
    cfg, w = random_model(rng, L=6, d=64, H=12, G=12, dh=8, V=16, d_mlp=8, rms=False, gated=False)
    write_raw_model(out, "independent_heads", cfg, w)
    models = []
    cfg, w = random_model(rng, L=3, d=48, H=4, G=4, dh=12, V=40, d_mlp=64, rms=False, gated=False)
    write_model(out, "synthetic_ln", cfg, w); models.append("synthetic_ln")
    cfg, w = random_model(rng, L=3, d=40, H=4, G=2, dh=10, V=50, d_mlp=32, rms=True, gated=True)
    write_model(out, "synthetic_gqa_rms", cfg, w); models.append("synthetic_gqa_rms")
    cfg, w = random_model(rng, L=3, d=48, H=4, G=2, dh=12, V=40, d_mlp=64, rms=False, gated=False, degenerate=True)
    write_model(out, "synthetic_degenerate", cfg, w); models.append("synthetic_degenerate")
    fixtures = os.environ.get("HEADSCOPE_FIXTURES", "")
    for name in ("gpt2", "llama", "gpt_neox"):
        folder = os.path.join(fixtures, "hf-oracle", name)
        if fixtures and os.path.isdir(folder):
            cfg, w = fixture_model(folder)
            write_model(out, "fixture_" + name, cfg, w)
            models.append("fixture_" + name)
    with open(os.path.join(out, "models", "names.txt"), "w") as f:
        f.write("\n".join(models) + "\n")
    with open(os.path.join(out, "DONE"), "w") as f:
        f.write("ok\n")


if __name__ == "__main__":
    main()
