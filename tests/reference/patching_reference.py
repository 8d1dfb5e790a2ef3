#!/usr/bin/env python3
"""Reference values for activation patching, path patching and direct logit
attribution (core/patching.hpp), by an independent float64 numpy forward.

The forward is written from transformers' modeling_gpt2.py,
modeling_gpt_neox.py and modeling_llama.py (v4.36: the version the oracle
fixtures were made with), on the canonical weights that
geometry_reference.fixture_model maps the fixture checkpoints to. It takes
TransformerLens's hook points as callbacks: hook_z (a head's mixed values
before W_O), hook_q/k/v (after RoPE; between two runs of one length the
same as before it), and resumes at a block from a given residual.

The experiments, defined as in core/patching.hpp (ARENA's path patching):
the metric is logit(answer) - logit(wrong) at the last position; the
corrupted text is the fixture's ids with two tokens changed.

Writes per fixture OUT_DIR/<fixture>/: clean_ids.npy, corrupt_ids.npy,
metric.npy [answer, wrong], clean.npy, corrupt.npy (float64 [1]),
heads_denoise.npy [L, H], heads_by_position_denoise.npy [L, H, T],
resid_noise.npy [L, T], q_denoise.npy [L, H], k_denoise.npy [L, G],
v_noise.npy [L, G], path_logits.npy [L, H], path_receivers.npy [L, H]
(receivers RECEIVERS below), dla_heads.npy [L, H, T], dla_total.npy [T].

Usage: patching_reference.py OUT_DIR   (HEADSCOPE_FIXTURES names the fixtures)
"""
import math
import os
import sys

import numpy as np

from geometry_reference import fixture_model

FIXTURES = ["gpt2", "gpt_neox", "llama"]
ANSWER, WRONG = 5, 9
# Receivers of the path-patching case: a query head and a key/value head of layer 1.
RECEIVERS = [(1, 2, "q"), (1, 1, "k")]


def norm(cfg, x, w, b, eps):
    if cfg["rms"]:
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def act(name, x):
    if name == "gelu_new":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return x / (1 + np.exp(-x))  # silu


def rope(x, n_heads, dh, rotary_dim, theta):
    """rotate_half RoPE on the first rotary_dim dims of each head; x [T, n*dh]."""
    if rotary_dim == 0:
        return x
    T = x.shape[0]
    inv = theta ** (-np.arange(0, rotary_dim, 2) / rotary_dim)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, axis=1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=1)
    x = x.reshape(T, n_heads, dh).copy()
    r = x[:, :, :rotary_dim]
    half = rotary_dim // 2
    rot = np.concatenate([-r[:, :, half:], r[:, :, :half]], axis=2)
    x[:, :, :rotary_dim] = r * cos[:, None, :] + rot * sin[:, None, :]
    return x.reshape(T, n_heads * dh)


def forward(m, ids, start=0, resid=None, hook_z=None, hook_qkv=None):
    """Logits [T, V] and the cache: block inputs, z, q, k, v per layer, the
    final norm's input and the MLP outputs."""
    cfg, w = m["cfg"], m["w"]
    H, G, dh, T = cfg["H"], cfg["G"], cfg["dh"], len(ids)
    cache = {"resid": [None] * cfg["L"], "z": [None] * cfg["L"], "q": [None] * cfg["L"], "k": [None] * cfg["L"],
             "v": [None] * cfg["L"], "mlp": [None] * cfg["L"]}
    if resid is None:
        x = w["W_E"][ids] + (w["W_pos"][:T] if cfg["n_pos"] else 0)
    else:
        x = resid.copy()
    for l in range(start, cfg["L"]):
        lw = w["layers"][l]
        cache["resid"][l] = x.copy()
        xn = norm(cfg, x, lw["ln1_w"], lw["ln1_b"], m["eps"])
        q = rope(xn @ lw["W_Q"] + lw["b_Q"], H, dh, cfg["rotary_dim"], m["theta"])
        k = rope(xn @ lw["W_K"] + lw["b_K"], G, dh, cfg["rotary_dim"], m["theta"])
        v = xn @ lw["W_V"] + lw["b_V"]
        if hook_qkv:
            hook_qkv(l, q, k, v)
        cache["q"][l], cache["k"][l], cache["v"][l] = q.copy(), k.copy(), v.copy()
        z = np.zeros((T, H * dh))
        for h in range(H):
            g = h // (H // G)
            s = q[:, h * dh:(h + 1) * dh] @ k[:, g * dh:(g + 1) * dh].T / math.sqrt(dh)
            s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            z[:, h * dh:(h + 1) * dh] = p @ v[:, g * dh:(g + 1) * dh]
        if hook_z:
            hook_z(l, z)
        cache["z"][l] = z.copy()
        a = z @ lw["W_O"] + lw["b_O"]
        if cfg["parallel"]:
            xm = norm(cfg, x, lw["ln2_w"], lw["ln2_b"], m["eps"])
        else:
            x = x + a
            xm = norm(cfg, x, lw["ln2_w"], lw["ln2_b"], m["eps"])
        if cfg["gated"]:
            mo = (act(m["act"], xm @ lw["W_gate"]) * (xm @ lw["W_in"])) @ lw["W_out"] + lw["b_out"]
        else:
            mo = act(m["act"], xm @ lw["W_in"] + lw["b_in"]) @ lw["W_out"] + lw["b_out"]
        cache["mlp"][l] = mo
        x = x + a + mo if cfg["parallel"] else x + mo
    cache["final"] = x.copy()
    y = norm(cfg, x, w["ln_final_w"], w["ln_final_b"], m["eps"])
    return y @ w["W_U"] + w["b_U"], cache


def metric(logits):
    return logits[-1, ANSWER] - logits[-1, WRONG]


def cols(h, dh):
    return slice(h * dh, (h + 1) * dh)


def experiments(m, clean, corrupt):
    cfg = m["cfg"]
    L, H, G, dh, T = cfg["L"], cfg["H"], cfg["G"], cfg["dh"], len(clean)
    lc, cc = forward(m, clean)
    lx, cx = forward(m, corrupt)
    out = {"clean": np.array([metric(lc)]), "corrupt": np.array([metric(lx)])}

    def run_from(ids, cache, l, **hooks):
        return metric(forward(m, ids, start=l, resid=cache["resid"][l], **hooks)[0])

    def z_patch(l, h, src, pos=None):
        def hook(layer, z):
            if layer == l:
                rows = slice(None) if pos is None else slice(pos, pos + 1)
                z[rows, cols(h, dh)] = src["z"][l][rows, cols(h, dh)]
        return hook

    def qkv_patch(l, h, which, src):
        def hook(layer, q, k, v):
            if layer == l:
                t = {"q": q, "k": k, "v": v}[which]
                t[:, cols(h, dh)] = src[which][l][:, cols(h, dh)]
        return hook

    out["heads_denoise"] = np.array([[run_from(corrupt, cx, l, hook_z=z_patch(l, h, cc)) for h in range(H)]
                                     for l in range(L)])
    out["heads_by_position_denoise"] = np.array(
        [[[run_from(corrupt, cx, l, hook_z=z_patch(l, h, cc, p)) for p in range(T)] for h in range(H)] for l in range(L)])
    resid = np.zeros((L, T))
    for l in range(L):
        for p in range(T):
            r = cc["resid"][l].copy()
            r[p] = cx["resid"][l][p]
            resid[l, p] = metric(forward(m, clean, start=l, resid=r)[0])
    out["resid_noise"] = resid
    out["q_denoise"] = np.array([[run_from(corrupt, cx, l, hook_qkv=qkv_patch(l, h, "q", cc)) for h in range(H)]
                                 for l in range(L)])
    out["k_denoise"] = np.array([[run_from(corrupt, cx, l, hook_qkv=qkv_patch(l, g, "k", cc)) for g in range(G)]
                                 for l in range(L)])
    out["v_noise"] = np.array([[run_from(clean, cc, l, hook_qkv=qkv_patch(l, g, "v", cx)) for g in range(G)]
                               for l in range(L)])

    # Path patching: sender from the corrupted run, every other head frozen clean.
    first = min(r[0] for r in RECEIVERS)
    path_logits = np.full((L, H), np.nan)
    path_receivers = np.full((L, H), np.nan)
    for l in range(L):
        for h in range(H):
            def freeze(layer, z, l=l, h=h):
                z[:] = cc["z"][layer]
                if layer == l:
                    z[:, cols(h, dh)] = cx["z"][l][:, cols(h, dh)]
            logits, frozen = forward(m, clean, start=l, resid=cc["resid"][l], hook_z=freeze)
            path_logits[l, h] = metric(logits)
            if l >= first:
                continue

            def receive(layer, q, k, v, frozen=frozen):
                for (rl, rh, which) in RECEIVERS:
                    if rl == layer:
                        t = {"q": q, "k": k, "v": v}[which]
                        t[:, cols(rh, dh)] = frozen[which][rl][:, cols(rh, dh)]
            path_receivers[l, h] = run_from(clean, cc, first, hook_qkv=receive)
    out["path_logits"], out["path_receivers"] = path_logits, path_receivers

    # Direct logit attribution of the clean run.
    w = m["w"]
    u = w["W_U"][:, ANSWER] - w["W_U"][:, WRONG]
    x = cc["final"]
    if cfg["rms"]:
        scale = np.sqrt((x ** 2).mean(-1) + m["eps"])
        g = w["ln_final_w"] * u
    else:
        scale = np.sqrt(((x - x.mean(-1, keepdims=True)) ** 2).mean(-1) + m["eps"])
        g = w["ln_final_w"] * u
        g = g - g.mean()
    dla = np.zeros((L, H, T))
    for l in range(L):
        for h in range(H):
            dla[l, h] = (cc["z"][l][:, cols(h, dh)] @ w["layers"][l]["W_O"][cols(h, dh)]) @ g / scale
    out["dla_heads"] = dla
    out["dla_total"] = lc[:, ANSWER] - lc[:, WRONG]
    return out


def main():
    out_dir = sys.argv[1]
    root = os.path.join(os.environ["HEADSCOPE_FIXTURES"], "hf-oracle")
    for name in FIXTURES:
        folder = os.path.join(root, name)
        cfg, w = fixture_model(folder)
        import json
        cj = json.load(open(os.path.join(folder, "config.json")))
        m = {"cfg": cfg, "w": w,
             "eps": cj.get("layer_norm_epsilon", cj.get("layer_norm_eps", cj.get("rms_norm_eps"))),
             "act": cj.get("activation_function", cj.get("hidden_act")),
             "theta": cj.get("rope_theta", cj.get("rotary_emb_base", 10000.0))}
        clean = np.load(os.path.join(folder, "input_ids.npy")).reshape(-1).astype(np.int64)
        corrupt = clean.copy()
        T = len(clean)
        for p in (T // 3, T - 3):
            corrupt[p] = (corrupt[p] + 7) % cfg["V"]
        out = experiments(m, clean, corrupt)
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "clean_ids.npy"), clean)
        np.save(os.path.join(d, "corrupt_ids.npy"), corrupt)
        np.save(os.path.join(d, "metric.npy"), np.array([ANSWER, WRONG], dtype=np.int64))
        for key, value in out.items():
            np.save(os.path.join(d, key + ".npy"), np.asarray(value, dtype=np.float64))
        print(f"{name}: clean {out['clean'][0]:.6f}, corrupt {out['corrupt'][0]:.6f}")


if __name__ == "__main__":
    main()
