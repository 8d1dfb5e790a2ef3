#!/usr/bin/python3
"""PyTorch side of the issue-8 benchmark (tests/bench/run.sh).

Reads the random GPT-2-small-shaped checkpoint that bench_perf wrote to DIR
(safetensors parsed by hand: no extra package), runs the same token ids, and
prints `RESULT torch.<key> <value>` lines:

  gemm_*_gflops   torch.addmm on the forward's shapes, [T, K] x [K, N] + bias
  forward_s       GPT-2 forward (HF semantics, attention probabilities kept as
                  output_attentions does), no LM head
  forward_head_s  the same + LM head (tied wte) + next-token cross-entropy
  loss            that loss (cross-check with the C++ forward)
  geometry: done the TransformerLens way (--geometry):
  geo_spectra_s   FactoredMatrix.svd (TL's algorithm: SVD of each factor, then
                  of the small middle) of all 144 OV and 144 QK circuits
  geo_redundancy_s  write subspaces (orthonormal basis of W_O[h]^T by QR),
                  principal angles pair by pair: svdvals(Q_i^T Q_j) for all
                  10,296 pairs i < j, overlap = sum cos^2 / d_head
  geo_composition_s  TL all_composition_scores' formula
                  ||L R||_F / (||L||_F ||R||_F) with FactoredMatrix norms (sqrt
                  of sum S^2 from FactoredMatrix.svd), Q, K and V, for all
                  l1 < l2, batched over the 12 x 12 heads of each layer pair
                  (TL broadcasts all 144 x 144 at once: 4 GB per factor
                  tensor, too much for this machine)
  geo_batched_*_s the same three as a careful PyTorch user batches them
                  (geometry_batched): QR of all factors at once, one Gram GEMM
                  and batched eigvalsh for the angles, one GEMM per layer and
                  batched 64 x 64 products for the composition

Single thread (torch.set_num_threads(1)); CPU-time medians (time.process_time:
the machine is shared, wall time measures the neighbours). --threads N: N
threads (run with OPENBLAS_NUM_THREADS=N too) and wall-time medians. Prints which BLAS
torch and numpy use.
"""
import argparse
import json
import struct
import sys
import time

import numpy as np
import torch


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] in ("F32", "BF16"), (name, info["dtype"])
        b, e = info["data_offsets"]
        if info["dtype"] == "BF16":  # widened: the upper halves of float32 values
            half = np.frombuffer(data, dtype=np.uint16, count=(e - b) // 2, offset=8 + n + b)
            arr = (half.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data, dtype=np.float32, count=(e - b) // 4, offset=8 + n + b)
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out


# CPU time on one thread; wall time with --threads N > 1 (CPU time would add
# the threads up).
clock = time.process_time


def median_s(repeats, f):
    f()
    ts = []
    for _ in range(repeats):
        t0 = clock()
        f()
        ts.append(clock() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def gpt2_forward(w, ids, n_layer=12, n_head=12, with_head=False):
    T = ids.shape[0]
    d = w["wte.weight"].shape[1]
    dh = d // n_head
    x = w["wte.weight"][ids] + w["wpe.weight"][:T]
    mask = torch.full((T, T), float("-inf")).triu(1)
    patterns = []
    for l in range(n_layer):
        p = f"h.{l}."
        h = torch.nn.functional.layer_norm(x, (d,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
        qkv = torch.addmm(w[p + "attn.c_attn.bias"], h, w[p + "attn.c_attn.weight"])
        q, k, v = qkv.split(d, dim=1)
        q = q.view(T, n_head, dh).transpose(0, 1)
        k = k.view(T, n_head, dh).transpose(0, 1)
        v = v.view(T, n_head, dh).transpose(0, 1)
        scores = torch.baddbmm(mask.expand(n_head, T, T), q, k.transpose(1, 2), alpha=dh ** -0.5)
        probs = torch.softmax(scores, dim=-1)
        patterns.append(probs)
        z = torch.bmm(probs, v).transpose(0, 1).reshape(T, d)
        x = x + torch.addmm(w[p + "attn.c_proj.bias"], z, w[p + "attn.c_proj.weight"])
        h = torch.nn.functional.layer_norm(x, (d,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
        h = torch.nn.functional.gelu(torch.addmm(w[p + "mlp.c_fc.bias"], h, w[p + "mlp.c_fc.weight"]), approximate="tanh")
        x = x + torch.addmm(w[p + "mlp.c_proj.bias"], h, w[p + "mlp.c_proj.weight"])
    x = torch.nn.functional.layer_norm(x, (d,), w["ln_f.weight"], w["ln_f.bias"], 1e-5)
    if not with_head:
        return patterns, None
    logits = x @ w["wte.weight"].T
    return patterns, torch.nn.functional.cross_entropy(logits[:-1], ids[1:])


# ---- TransformerLens' FactoredMatrix algorithms (transformer_lens/FactoredMatrix.py)

def factored_svd(A, B):
    """TL FactoredMatrix.svd: U, S, Vh of A @ B without forming it (batched)."""
    Ua, Sa, Vha = torch.svd(A)
    Ub, Sb, Vhb = torch.svd(B)
    middle = Sa[..., :, None] * (Vha.transpose(-2, -1) @ Ub) * Sb[..., None, :]
    Um, Sm, Vhm = torch.svd(middle)
    return Ua @ Um, Sm, Vhb @ Vhm


def factored_norm(A, B):
    """TL FactoredMatrix.norm: sqrt(sum S^2) with S from FactoredMatrix.svd."""
    return factored_svd(A, B)[1].pow(2).sum(-1).sqrt()


def factored_matmul(A1, B1, A2, B2):
    """TL FactoredMatrix @ FactoredMatrix = (self @ other.A) @ other.B, kept factored [d, dh] x [dh, d]."""
    return A1, (B1 @ A2) @ B2


def geometry(w, n_layer, n_head, repeats):
    d = w["wte.weight"].shape[1]
    dh = d // n_head
    W_Q = torch.stack([w[f"h.{l}.attn.c_attn.weight"][:, :d].reshape(d, n_head, dh).permute(1, 0, 2) for l in range(n_layer)])
    W_K = torch.stack([w[f"h.{l}.attn.c_attn.weight"][:, d:2 * d].reshape(d, n_head, dh).permute(1, 0, 2) for l in range(n_layer)])
    W_V = torch.stack([w[f"h.{l}.attn.c_attn.weight"][:, 2 * d:].reshape(d, n_head, dh).permute(1, 0, 2) for l in range(n_layer)])
    W_O = torch.stack([w[f"h.{l}.attn.c_proj.weight"].reshape(n_head, dh, d) for l in range(n_layer)])  # [L, H, dh, d]
    W_Q, W_K, W_V, W_O = (t.contiguous() for t in (W_Q, W_K, W_V, W_O))
    N = n_layer * n_head
    res = {}

    def spectra():
        out = []
        for l in range(n_layer):
            for h in range(n_head):
                out.append(factored_svd(W_V[l, h], W_O[l, h])[1])
                out.append(factored_svd(W_Q[l, h], W_K[l, h].T)[1])
        return out

    def redundancy():
        Q = [torch.linalg.qr(W_O[l, h].T)[0] for l in range(n_layer) for h in range(n_head)]
        overlap = torch.zeros(N, N)
        for i in range(N):
            overlap[i, i] = torch.linalg.svdvals(Q[i].T @ Q[i]).pow(2).sum() / dh
            for j in range(i + 1, N):
                cos = torch.linalg.svdvals(Q[i].T @ Q[j])
                overlap[i, j] = overlap[j, i] = cos.clamp(0, 1).pow(2).sum() / dh
        return overlap

    def composition():
        scores = {m: torch.zeros(n_layer, n_head, n_layer, n_head) for m in "QKV"}
        ov_norm = factored_norm(W_V, W_O)             # [L, H]
        qk_norm = factored_norm(W_Q, W_K.transpose(-2, -1))
        for l1 in range(n_layer):
            A1 = W_V[l1][:, None]                          # [H, 1, d, dh]
            B1 = W_O[l1][:, None]                          # [H, 1, dh, d]
            for l2 in range(l1 + 1, n_layer):
                rights = {"Q": (W_Q[l2], W_K[l2].transpose(-2, -1), qk_norm[l2]),
                          "K": (W_K[l2], W_Q[l2].transpose(-2, -1), qk_norm[l2]),
                          "V": (W_V[l2], W_O[l2], ov_norm[l2])}
                for m, (A2, B2, r_norm) in rights.items():
                    A, B = factored_matmul(A1, B1, A2[None], B2[None])
                    comp = factored_norm(A.expand(n_head, n_head, d, dh), B)
                    scores[m][l1, :, l2, :] = comp / ov_norm[l1][:, None] / r_norm[None, :]
        return scores

    res["geo_spectra_s"] = median_s(repeats, spectra)
    res["geo_redundancy_s"] = median_s(max(1, repeats // 2), redundancy)
    res["geo_composition_s"] = median_s(max(1, repeats // 2), composition)
    return res, {"redundancy": redundancy(), "composition": composition()}


def geometry_batched(w, n_layer, n_head, repeats):
    """The same three analyses as a careful PyTorch user batches them: QR of
    every factor at once, the OV/QK spectra from the small R factors, the
    principal angles from one Gram GEMM of all write bases and batched
    eigvalsh, the composition scores from one GEMM per layer of B1 against the
    later layers' A2 and batched 64 x 64 products."""
    d = w["wte.weight"].shape[1]
    dh = d // n_head
    N = n_layer * n_head
    W_Q = torch.stack([w[f"h.{l}.attn.c_attn.weight"][:, :d].reshape(d, n_head, dh).permute(1, 0, 2) for l in range(n_layer)])
    W_K = torch.stack([w[f"h.{l}.attn.c_attn.weight"][:, d:2 * d].reshape(d, n_head, dh).permute(1, 0, 2) for l in range(n_layer)])
    W_V = torch.stack([w[f"h.{l}.attn.c_attn.weight"][:, 2 * d:].reshape(d, n_head, dh).permute(1, 0, 2) for l in range(n_layer)])
    W_O = torch.stack([w[f"h.{l}.attn.c_proj.weight"].reshape(n_head, dh, d) for l in range(n_layer)])
    W_Q, W_K, W_V = (t.reshape(N, d, dh).contiguous() for t in (W_Q, W_K, W_V))
    W_O = W_O.reshape(N, dh, d).contiguous()
    res = {}

    def r_factors():
        # A = Q R for every [d, dh] factor: ||A B||_F and the spectrum of A B^T
        # are those of R_A R_B^T (dh x dh).
        return {name: torch.linalg.qr(M, mode="reduced")[1] for name, M in
                (("Q", W_Q), ("K", W_K), ("V", W_V), ("O", W_O.transpose(1, 2)))}

    def spectra():
        R = r_factors()
        return torch.linalg.svdvals(R["V"] @ R["O"].transpose(1, 2)), torch.linalg.svdvals(R["Q"] @ R["K"].transpose(1, 2))

    def redundancy():
        Q = torch.linalg.qr(W_O.transpose(1, 2), mode="reduced")[0]        # [N, d, dh]
        flat = Q.permute(1, 0, 2).reshape(d, N * dh)                      # [d, N dh]
        G = (flat.T @ flat).reshape(N, dh, N, dh).permute(0, 2, 1, 3)    # [N, N, dh, dh] = Q_i^T Q_j
        iu = torch.triu_indices(N, N)
        C = G[iu[0], iu[1]]                                               # [pairs, dh, dh]
        cos2 = torch.linalg.eigvalsh(C @ C.transpose(1, 2)).clamp(0, 1)   # squared cosines of the angles
        overlap = torch.zeros(N, N)
        overlap[iu[0], iu[1]] = cos2.sum(-1) / dh
        overlap[iu[1], iu[0]] = overlap[iu[0], iu[1]]
        return overlap

    def composition():
        R = r_factors()
        norm = lambda Ra, Rb: torch.linalg.matrix_norm(Ra @ Rb.transpose(-2, -1))
        ov_norm, qk_norm = norm(R["V"], R["O"]), norm(R["Q"], R["K"])
        scores = {m: torch.zeros(n_layer, n_head, n_layer, n_head) for m in "QKV"}
        # ||A1 B1 A2 B2||_F = ||R_A1 (B1 A2) R_B2^T||_F with B1 = W_O (the
        # left head's write), A2 / B2^T the right head's read / second factor.
        rights = {"Q": (W_Q, R["K"], qk_norm), "K": (W_K, R["Q"], qk_norm), "V": (W_V, R["O"], ov_norm)}
        for l1 in range(n_layer - 1):
            left = slice(l1 * n_head, (l1 + 1) * n_head)
            later = slice((l1 + 1) * n_head, N)
            n2 = N - (l1 + 1) * n_head
            B1 = W_O[left].reshape(n_head * dh, d)                          # [H dh, d]
            for m, (A2, Rb2, r_norm) in rights.items():
                A2f = A2[later].permute(1, 0, 2).reshape(d, n2 * dh)        # [d, n2 dh]
                mid = (B1 @ A2f).reshape(n_head, dh, n2, dh).permute(0, 2, 1, 3)  # [H, n2, dh, dh]
                prod = R["V"][left][:, None] @ mid @ Rb2[later][None].transpose(-2, -1)
                comp = torch.linalg.matrix_norm(prod) / ov_norm[left][:, None] / r_norm[later][None, :]
                scores[m][l1, :, l1 + 1:, :] = comp.reshape(n_head, n_layer - l1 - 1, n_head)
        return scores

    res["geo_batched_spectra_s"] = median_s(repeats, spectra)
    res["geo_batched_redundancy_s"] = median_s(repeats, redundancy)
    res["geo_batched_composition_s"] = median_s(repeats, composition)
    return res, {"redundancy": redundancy(), "composition": composition()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--geometry", action="store_true")
    ap.add_argument("--batched-geometry", action="store_true", help="only the batched geometry (not TL's algorithm)")
    ap.add_argument("--geometry-repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch's threads (and OPENBLAS_NUM_THREADS, which must be set to the same before the start)")
    args = ap.parse_args()

    global clock
    if args.threads > 1:
        clock = time.perf_counter
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    print("torch", torch.__version__, "threads", torch.get_num_threads())
    print(torch.__config__.show())
    # Debian's torch says BLAS_INFO=generic: it links libblas.so.3, which the
    # alternatives system points at OpenBLAS once libopenblas0-pthread is in.
    import os
    blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    print("system libblas.so.3 ->", blas, "(OpenBLAS)" if "openblas" in blas else "(NOT OpenBLAS: the reference BLAS, ~25x slower)")
    print("numpy BLAS:")
    sys.stdout.flush()
    np.show_config()
    sys.stdout.flush()

    w = load_safetensors(f"{args.dir}/model.safetensors")
    T = args.tokens
    ids = torch.tensor([(t * 7919) % 50257 for t in range(T)])

    total_flops = total_t = 0.0
    for name, K, N in (("qkv", 768, 2304), ("attn_out", 768, 768), ("mlp_in", 768, 3072), ("mlp_out", 3072, 768)):
        A, B, b = torch.rand(T, K) * 2 - 1, torch.rand(K, N) * 2 - 1, torch.rand(N) * 2 - 1
        t = median_s(args.repeats * 3, lambda: torch.addmm(b, A, B))
        flops = 2.0 * T * K * N
        total_flops += flops
        total_t += t
        print(f"torch gemm {name:8s} [{T}, {K}] x [{K}, {N}]: {t * 1e3:.3f} ms, {flops / t / 1e9:.1f} GFLOP/s")
        print(f"RESULT torch.gemm_{name}_gflops {flops / t / 1e9:.2f}")
    print(f"RESULT torch.gemm_gflops {total_flops / total_t / 1e9:.2f}")

    t_body = median_s(args.repeats, lambda: gpt2_forward(w, ids))
    t_head = median_s(args.repeats, lambda: gpt2_forward(w, ids, with_head=True))
    loss = gpt2_forward(w, ids, with_head=True)[1].item()
    print(f"torch forward, {T} tokens, no LM head: {t_body:.3f} s; with LM head + loss: {t_head:.3f} s; loss {loss:.6f}")
    print(f"RESULT torch.forward_s {t_body:.4f}")
    print(f"RESULT torch.forward_head_s {t_head:.4f}")
    print(f"RESULT torch.loss {loss:.6f}")
    if args.geometry:
        g, tl = geometry(w, 12, 12, args.geometry_repeats)
        for k, v in g.items():
            print(f"RESULT torch.{k} {v:.4f}")
        print(f"RESULT torch.geo_total_s {sum(g.values()):.4f}")
    if args.geometry or args.batched_geometry:
        b, batched = geometry_batched(w, 12, 12, args.geometry_repeats)
        for k, v in b.items():
            print(f"RESULT torch.{k} {v:.4f}")
        print(f"RESULT torch.geo_batched_total_s {sum(b.values()):.4f}")
        if args.geometry:  # both ways compute the same numbers
            worst = max((batched["redundancy"] - tl["redundancy"]).abs().max().item(),
                        *((batched["composition"][m] - tl["composition"][m]).abs().max().item() for m in "QKV"))
            print(f"batched vs TransformerLens-style geometry: max |difference| {worst:.2e}")
            assert worst < 1e-4, worst


if __name__ == "__main__":
    main()
