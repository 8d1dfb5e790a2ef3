#!/usr/bin/python3
"""PyTorch side of tests/bench/bench_bf16.mjs: the Qwen2 forward (transformers'
modeling_qwen2.py semantics: RMSNorm, q/k/v biases, RoPE with rotate_half,
GQA, SiLU-gated MLP, tied unembedding) in float32 on one thread, written as
a careful user batches it (all heads of a layer in one matmul, the attention
probabilities kept as output_attentions does), on the BF16 checkpoint DIR
(widened to float32) and DIR/ids.json. Prints `RESULT torch.forward_s` (CPU
time median) and `RESULT torch.loss` (to cross-check the wasm forward).
"""
import argparse
import json
import time

import torch

from torch_reference import load_safetensors


def forward(w, cfg, ids):
    d, H, G = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh, eps, L = d // H, cfg["rms_norm_eps"], cfg["num_hidden_layers"]
    T = len(ids)
    inv = 1.0 / cfg["rope_theta"] ** (torch.arange(0, dh, 2, dtype=torch.float32) / dh)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rms(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    def rope(x):  # [heads, T, dh]
        half = dh // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    mask = torch.full((T, T), float("-inf")).triu(1)
    E = w["model.embed_tokens.weight"]
    x = E[torch.tensor(ids)]
    patterns = []
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = torch.addmm(w[p + "self_attn.q_proj.bias"], h, w[p + "self_attn.q_proj.weight"].t()).view(T, H, dh).transpose(0, 1)
        k = torch.addmm(w[p + "self_attn.k_proj.bias"], h, w[p + "self_attn.k_proj.weight"].t()).view(T, G, dh).transpose(0, 1)
        v = torch.addmm(w[p + "self_attn.v_proj.bias"], h, w[p + "self_attn.v_proj.weight"].t()).view(T, G, dh).transpose(0, 1)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(H // G, 0)
        v = v.repeat_interleave(H // G, 0)
        probs = torch.softmax(torch.baddbmm(mask, q, k.transpose(1, 2), alpha=dh ** -0.5), -1)
        patterns.append(probs)
        o = torch.bmm(probs, v).transpose(0, 1).reshape(T, d)
        x = x + o @ w[p + "self_attn.o_proj.weight"].t()
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate = torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].t())
        x = x + (gate * (h @ w[p + "mlp.up_proj.weight"].t())) @ w[p + "mlp.down_proj.weight"].t()
    x = rms(x, w["model.norm.weight"])
    logits = x @ E.t()
    loss = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]))
    return patterns, logits, loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = json.load(open(f"{a.dir}/config.json"))
    ids = json.load(open(f"{a.dir}/ids.json"))
    w = load_safetensors(f"{a.dir}/model.safetensors")
    times = []
    with torch.no_grad():
        for _ in range(a.repeats):
            t0 = time.process_time()
            _, _, loss = forward(w, cfg, ids)
            times.append(time.process_time() - t0)
    print(f"RESULT torch.forward_s {sorted(times)[len(times) // 2]:.3f}")
    print(f"RESULT torch.loss {loss.item():.5f}")
    print(f"RESULT torch.threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
