#!/usr/bin/env python3
"""Reference checkpoints and outputs for the families the oracle fixtures do
not cover, by independent float64 numpy forwards written from transformers'
modeling code.

  qwen3   src/transformers/models/qwen3/modeling_qwen3.py (transformers main,
          2025; unchanged in this respect since v4.51, where Qwen3 was added):
          LLaMA's block (RMSNorm, SiLU-gated MLP, rotate_half RoPE, GQA) with
          a per-head RMSNorm of q and k (weights [head_dim]) after the
          projections and before RoPE; head_dim independent of
          hidden_size / num_attention_heads; biases only with
          attention_bias (none here, as in the published checkpoints).
  olmo2   src/transformers/models/olmo2/modeling_olmo2.py (transformers main,
          2025; as added in v4.47): LLaMA's block with its two RMSNorms
          after the attention and the MLP (post_attention_layernorm,
          post_feedforward_layernorm; no input norm): x = x + N1(attn(x)),
          x = x + N2(mlp(x)); q_norm and k_norm over the whole projections
          (weights [H * head_dim] and [G * head_dim]) before RoPE.
  smollm3 src/transformers/models/smollm3/modeling_smollm3.py and
          configuration_smollm3.py (transformers main, 2025): LLaMA's block
          with NoPE layers: no_rope_layers[l] == 1 means layer l uses RoPE;
          left out, every 4th layer (no_rope_layer_interval) has no
          positions. Tied embeddings by default (no lm_head tensor).

Each case is a small random checkpoint with the family's exact tensor names
and config fields, as the hub publishes them (config.json,
model.safetensors), made the way ../shared/fixtures/hf-oracle was: N(0, 0.1)
matrices, norm weights 1 + N(0, 0.2).

Writes OUT_DIR/<case>/: config.json, model.safetensors, input_ids.npy (int64
[T]), attentions.npy (float64 [L, H, T, T]), hidden_states.npy (float64
[L+1, T, d], as output_hidden_states: the last after the final norm) and
logits.npy (float64 [T, V]).

Usage: families_reference.py OUT_DIR
"""
import json
import math
import os
import sys

import numpy as np

from mlm_reference import write_safetensors


def rms_norm(x, w, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def llama_shape(rng, cfg, qk_norm=None, tied=False, olmo2=False):
    """A random checkpoint of the LLaMA shape with cfg's sizes and HF names
    (q_norm/k_norm: qk_norm 'head' over each head, 'whole' over the
    projection; olmo2: norms after the sublayers; no lm_head when tied), and the
    float64 forward: attentions, hidden states, logits for 20 random ids.
    Layer l rotates q and k unless cfg's no_rope_layers (SmolLM3) says 0."""
    d, L, H, G = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh = cfg.get("head_dim", d // H)
    V, M = cfg["vocab_size"], cfg["intermediate_size"]
    lin = lambda o, i: rng.normal(0, 0.1, (o, i))  # nn.Linear weight [out, in]
    norm = lambda n: 1 + rng.normal(0, 0.2, n)
    t = {"model.embed_tokens.weight": rng.normal(0, 0.5, (V, d)), "model.norm.weight": norm(d)}
    if not tied:
        t["lm_head.weight"] = lin(V, d)
    for l in range(L):
        p = f"model.layers.{l}."
        if olmo2:
            t[p + "post_attention_layernorm.weight"] = norm(d)
            t[p + "post_feedforward_layernorm.weight"] = norm(d)
        else:
            t[p + "input_layernorm.weight"] = norm(d)
            t[p + "post_attention_layernorm.weight"] = norm(d)
        t[p + "self_attn.q_proj.weight"] = lin(H * dh, d)
        t[p + "self_attn.k_proj.weight"] = lin(G * dh, d)
        t[p + "self_attn.v_proj.weight"] = lin(G * dh, d)
        t[p + "self_attn.o_proj.weight"] = lin(d, H * dh)
        if qk_norm:
            t[p + "self_attn.q_norm.weight"] = norm(dh if qk_norm == "head" else H * dh)
            t[p + "self_attn.k_norm.weight"] = norm(dh if qk_norm == "head" else G * dh)
        t[p + "mlp.gate_proj.weight"] = lin(M, d)
        t[p + "mlp.up_proj.weight"] = lin(M, d)
        t[p + "mlp.down_proj.weight"] = lin(d, M)
    t = {k: v.astype(np.float32) for k, v in t.items()}  # what the checkpoint stores
    ids = rng.integers(0, V, 20)
    rope_layers = cfg.get("no_rope_layers") or [1] * L

    # The forward, float64, on the stored float32 values.
    w = {k: v.astype(np.float64) for k, v in t.items()}
    eps, T = cfg["rms_norm_eps"], len(ids)
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, dh, 2) / dh)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    x = w["model.embed_tokens.weight"][ids]
    hidden, attentions = [x], []
    for l in range(L):
        p = f"model.layers.{l}."
        a = x if olmo2 else rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = a @ w[p + "self_attn.q_proj.weight"].T
        k = a @ w[p + "self_attn.k_proj.weight"].T
        if qk_norm == "whole":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = q.reshape(T, H, dh), k.reshape(T, G, dh)
        v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(T, G, dh)
        if qk_norm == "head":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        if rope_layers[l]:
            q = q * cos[:, None] + rotate_half(q) * sin[:, None]
            k = k * cos[:, None] + rotate_half(k) * sin[:, None]
        out = np.zeros((T, H, dh))
        pats = []
        for h in range(H):
            g = h // (H // G)
            s = q[:, h] @ k[:, g].T / math.sqrt(dh)
            s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
            P = np.exp(s - s.max(-1, keepdims=True))
            P /= P.sum(-1, keepdims=True)
            pats.append(P)
            out[:, h] = P @ v[:, g]
        attentions.append(pats)
        attn = out.reshape(T, H * dh) @ w[p + "self_attn.o_proj.weight"].T
        if olmo2:
            x = x + rms_norm(attn, w[p + "post_attention_layernorm.weight"], eps)
            m = x
        else:
            x = x + attn
            m = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = m @ w[p + "mlp.gate_proj.weight"].T
        mlp = ((gate / (1 + np.exp(-gate))) * (m @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = x + (rms_norm(mlp, w[p + "post_feedforward_layernorm.weight"], eps) if olmo2 else mlp)
        hidden.append(x)
    hidden[-1] = rms_norm(x, w["model.norm.weight"], eps)
    unembed = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    logits = hidden[-1] @ unembed.T
    return t, ids, np.array(attentions), np.array(hidden), logits


def qwen3_case(rng):
    cfg = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 24, "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0,
        "tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": None, "max_window_layers": 2,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    return (cfg, *llama_shape(rng, cfg, qk_norm="head"))


def olmo2_case(rng):
    cfg = {
        "architectures": ["Olmo2ForCausalLM"], "model_type": "olmo2", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
        "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": False,
        "pad_token_id": 1, "bos_token_id": None, "eos_token_id": 2, "torch_dtype": "float32",
    }
    return (cfg, *llama_shape(rng, cfg, qk_norm="whole", olmo2=True))


def smollm3_case(rng):
    # no_rope_layers left out: the default, layer 3 of 4 without RoPE.
    cfg = {
        "architectures": ["SmolLM3ForCausalLM"], "model_type": "smollm3", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 5000.0,
        "attention_bias": False, "mlp_bias": False, "use_sliding_window": False, "no_rope_layer_interval": 4,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    tensors, ids, attentions, hidden, logits = llama_shape(rng, {**cfg, "no_rope_layers": [1, 1, 1, 0]}, tied=True)
    return cfg, tensors, ids, attentions, hidden, logits


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20261207)
    for name, make in (("qwen3", qwen3_case), ("smollm3", smollm3_case), ("olmo2", olmo2_case)):
        cfg, tensors, ids, attentions, hidden, logits = make(rng)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        np.save(os.path.join(d, "input_ids.npy"), ids.astype(np.int64))
        np.save(os.path.join(d, "attentions.npy"), attentions)
        np.save(os.path.join(d, "hidden_states.npy"), hidden)
        np.save(os.path.join(d, "logits.npy"), logits)
        print(f"{name}: {len(tensors)} tensors, logits range {logits.min():.3f}..{logits.max():.3f}")


if __name__ == "__main__":
    main()
