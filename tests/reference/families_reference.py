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


def silu(x):
    return x / (1 + np.exp(-x))


def gelu_tanh(x):  # gelu_pytorch_tanh
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):  # gelu
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def rope_tables(T, R, theta, linear_factor=1.0, divisors=None, amplitude=1.0):
    """cos, sin [T, R] for R rotary dims; divisors [R/2]: LongRoPE's factors."""
    inv = 1.0 / theta ** (np.arange(0, R, 2) / R) / linear_factor
    if divisors is not None:
        inv = inv / np.asarray(divisors)
    ang = np.arange(T)[:, None] * inv[None, :]
    return amplitude * np.cos(np.concatenate([ang, ang], -1)), amplitude * np.sin(np.concatenate([ang, ang], -1))


def rotate(x, cos, sin):
    """rotate_half RoPE on the first cos.shape[-1] dims of x [T, heads, dh]."""
    R = cos.shape[-1]
    r, rest = x[..., :R], x[..., R:]
    return np.concatenate([r * cos[:, None] + rotate_half(r) * sin[:, None], rest], -1)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + (0 if b is None else b)


def llama_shape(rng, cfg, qk_norm=None, tied=False, norms="pre", gemma=None, rope=None, fused=False, stablelm=None):
    """A random checkpoint of the LLaMA shape with cfg's sizes and HF names
    (q_norm/k_norm: qk_norm 'head' over each head, 'whole' over the
    projection; norms 'pre' before the sublayers (LLaMA), 'post' after them
    (OLMo 2), 'sandwich' both (Gemma 2/3); no lm_head when tied), and the
    float64 forward: attentions, hidden states, logits for 20 random ids.
    Layer l rotates q and k unless cfg's no_rope_layers (SmolLM3) says 0.
    gemma: a dict for the Gemma rules: norms scale by (1 + w), embeddings
    times sqrt(d), act (a function), scale, attn_cap, final_cap, windows
    [L] (0: global), local_theta (sliding layers' RoPE base, unscaled),
    linear_factor (global layers' linear RoPE scaling). rope: {"dims": R
    (partial rotary), "divisors": LongRoPE factors [R/2], "amplitude"}.
    fused: Phi-3's qkv_proj and gate_up_proj in the checkpoint. stablelm:
    {"qkv_bias", "parallel"}: LayerNorms with biases (eps layer_norm_eps),
    q/k/v biases, parallel blocks reading input_layernorm for both
    sublayers; with qk_norm "each", one bias-free LayerNorm per head."""
    d, L, H, G = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh = cfg.get("head_dim", d // H)
    V, M = cfg["vocab_size"], cfg["intermediate_size"]
    lin = lambda o, i: rng.normal(0, 0.1, (o, i))  # nn.Linear weight [out, in]
    # Gemma stores w of (1 + w), initialised at 0; the others w itself.
    norm = (lambda n: rng.normal(0, 0.2, n)) if gemma else (lambda n: 1 + rng.normal(0, 0.2, n))
    sl = stablelm or {}
    bias = lambda n: rng.normal(0, 0.1, n)
    t = {"model.embed_tokens.weight": rng.normal(0, 0.5, (V, d)), "model.norm.weight": norm(d)}
    if stablelm:
        t["model.norm.bias"] = bias(d)
    if not tied:
        t["lm_head.weight"] = lin(V, d)
    pre, post = norms in ("pre", "sandwich"), norms in ("post", "sandwich")
    for l in range(L):
        p = f"model.layers.{l}."
        if pre:
            t[p + "input_layernorm.weight"] = norm(d)
        if not sl.get("parallel"):
            t[p + "post_attention_layernorm.weight"] = norm(d)
        if stablelm:
            t[p + "input_layernorm.bias"] = bias(d)
            if not sl.get("parallel"):
                t[p + "post_attention_layernorm.bias"] = bias(d)
        if sl.get("qkv_bias"):
            t[p + "self_attn.q_proj.bias"] = bias(H * dh)
            t[p + "self_attn.k_proj.bias"] = bias(G * dh)
            t[p + "self_attn.v_proj.bias"] = bias(G * dh)
        if post:
            t[p + "post_feedforward_layernorm.weight"] = norm(d)
        if norms == "sandwich":
            t[p + "pre_feedforward_layernorm.weight"] = norm(d)
        t[p + "self_attn.q_proj.weight"] = lin(H * dh, d)
        t[p + "self_attn.k_proj.weight"] = lin(G * dh, d)
        t[p + "self_attn.v_proj.weight"] = lin(G * dh, d)
        t[p + "self_attn.o_proj.weight"] = lin(d, H * dh)
        if qk_norm == "each":
            for h in range(H):
                t[p + f"self_attn.q_layernorm.norms.{h}.weight"] = norm(dh)
            for h in range(G):
                t[p + f"self_attn.k_layernorm.norms.{h}.weight"] = norm(dh)
        elif qk_norm:
            t[p + "self_attn.q_norm.weight"] = norm(dh if qk_norm == "head" else H * dh)
            t[p + "self_attn.k_norm.weight"] = norm(dh if qk_norm == "head" else G * dh)
        t[p + "mlp.gate_proj.weight"] = lin(M, d)
        t[p + "mlp.up_proj.weight"] = lin(M, d)
        t[p + "mlp.down_proj.weight"] = lin(d, M)
    t = {k: v.astype(np.float32) for k, v in t.items()}  # what the checkpoint stores
    stored = dict(t)
    if fused:
        for l in range(L):
            p = f"model.layers.{l}."
            stored[p + "self_attn.qkv_proj.weight"] = np.concatenate(
                [stored.pop(p + f"self_attn.{n}_proj.weight") for n in "qkv"], 0)
            stored[p + "mlp.gate_up_proj.weight"] = np.concatenate(
                [stored.pop(p + "mlp.gate_proj.weight"), stored.pop(p + "mlp.up_proj.weight")], 0)
    ids = rng.integers(0, V, 20)
    rope_layers = cfg.get("no_rope_layers") or [1] * L
    g = gemma or {}
    windows = g.get("windows") or [cfg.get("sliding_window") or 0] * L if fused else g.get("windows", [0] * L)

    # The forward, float64, on the stored float32 values.
    w = {k: v.astype(np.float64) for k, v in t.items()}
    eps, T = cfg["layer_norm_eps" if stablelm else "rms_norm_eps"], len(ids)
    nw = lambda name: w[name] + 1 if gemma else w[name]  # the norm's scale
    if stablelm:
        rms_norm_ = lambda x, wt, e: layer_norm(x, wt, None, e)  # q/k: bias-free LayerNorm
        block_norm = lambda x, stem: layer_norm(x, w[stem + ".weight"], w[stem + ".bias"], eps)
    else:
        rms_norm_ = rms_norm
        block_norm = lambda x, stem: rms_norm(x, nw(stem + ".weight"), eps)
    act = g.get("act", silu)
    scale = g.get("scale", 1 / math.sqrt(dh))
    ro = rope or {}
    R = ro.get("dims", dh)
    cos, sin = rope_tables(T, R, cfg.get("rope_theta", 10000.0), g.get("linear_factor", 1.0), ro.get("divisors"),
                           ro.get("amplitude", 1.0))
    if "local_theta" in g:
        cos_local, sin_local = rope_tables(T, R, g["local_theta"])
    x = w["model.embed_tokens.weight"][ids] * (math.sqrt(d) if gemma else 1.0)
    hidden, attentions = [x], []
    i_idx, j_idx = np.arange(T)[:, None], np.arange(T)[None, :]
    for l in range(L):
        p = f"model.layers.{l}."
        a = block_norm(x, p + "input_layernorm") if pre else x
        q = a @ w[p + "self_attn.q_proj.weight"].T + w.get(p + "self_attn.q_proj.bias", 0)
        k = a @ w[p + "self_attn.k_proj.weight"].T + w.get(p + "self_attn.k_proj.bias", 0)
        if qk_norm == "whole":
            q = rms_norm(q, nw(p + "self_attn.q_norm.weight"), eps)
            k = rms_norm(k, nw(p + "self_attn.k_norm.weight"), eps)
        q, k = q.reshape(T, H, dh), k.reshape(T, G, dh)
        v = (a @ w[p + "self_attn.v_proj.weight"].T + w.get(p + "self_attn.v_proj.bias", 0)).reshape(T, G, dh)
        if qk_norm == "each":
            q = np.stack([rms_norm_(q[:, h], w[p + f"self_attn.q_layernorm.norms.{h}.weight"], eps) for h in range(H)], 1)
            k = np.stack([rms_norm_(k[:, h], w[p + f"self_attn.k_layernorm.norms.{h}.weight"], eps) for h in range(G)], 1)
        if qk_norm == "head":
            q = rms_norm(q, nw(p + "self_attn.q_norm.weight"), eps)
            k = rms_norm(k, nw(p + "self_attn.k_norm.weight"), eps)
        if rope_layers[l]:
            c, s_ = (cos_local, sin_local) if windows[l] and "local_theta" in g else (cos, sin)
            q, k = rotate(q, c, s_), rotate(k, c, s_)
        allowed = j_idx <= i_idx
        if windows[l]:
            allowed &= j_idx > i_idx - windows[l]
        out = np.zeros((T, H, dh))
        pats = []
        for h in range(H):
            kv = h // (H // G)
            s = q[:, h] @ k[:, kv].T * scale
            if g.get("attn_cap"):
                s = g["attn_cap"] * np.tanh(s / g["attn_cap"])
            s = np.where(allowed, s, -np.inf)
            P = np.exp(s - s.max(-1, keepdims=True))
            P /= P.sum(-1, keepdims=True)
            pats.append(P)
            out[:, h] = P @ v[:, kv]
        attentions.append(pats)
        attn = out.reshape(T, H * dh) @ w[p + "self_attn.o_proj.weight"].T
        if post:
            attn = rms_norm(attn, nw(p + "post_attention_layernorm.weight"), eps)
        x = x + attn
        if sl.get("parallel"):
            m = a  # x + attn(LN1 x) + mlp(LN1 x)
        elif norms == "pre":
            m = block_norm(x, p + "post_attention_layernorm")
        elif norms == "sandwich":
            m = rms_norm(x, nw(p + "pre_feedforward_layernorm.weight"), eps)
        else:
            m = x
        mlp = (act(m @ w[p + "mlp.gate_proj.weight"].T) * (m @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = x + (rms_norm(mlp, nw(p + "post_feedforward_layernorm.weight"), eps) if post else mlp)
        hidden.append(x)
    hidden[-1] = block_norm(x, "model.norm")
    unembed = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    logits = hidden[-1] @ unembed.T
    if g.get("final_cap"):
        logits = g["final_cap"] * np.tanh(logits / g["final_cap"])
    return stored, ids, np.array(attentions), np.array(hidden), logits


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
    return (cfg, *llama_shape(rng, cfg, qk_norm="whole", norms="post"))


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


def gemma_case(rng):
    # MQA, head_dim of its own; hidden_act "gelu" (exact) is what transformers
    # >= 4.48 runs, whatever hidden_activation says.
    cfg = {
        "architectures": ["GemmaForCausalLM"], "model_type": "gemma", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 24, "hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False, "bos_token_id": 2, "eos_token_id": 1,
        "pad_token_id": 0, "torch_dtype": "float32",
    }
    return (cfg, *llama_shape(rng, cfg, tied=True, gemma={"act": gelu_erf}))


def gemma2_case(rng):
    # Soft-caps small enough to bend these scores and logits; windows of 6 on
    # the even layers (the default rule), query_pre_attn_scalar != head_dim.
    cfg = {
        "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu_pytorch_tanh",
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False,
        "query_pre_attn_scalar": 8, "sliding_window": 6, "attn_logit_softcapping": 2.0,
        "final_logit_softcapping": 5.0, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "torch_dtype": "float32",
    }
    g = {"act": gelu_tanh, "scale": 8 ** -0.5, "attn_cap": 2.0, "final_cap": 5.0, "windows": [6, 0, 6]}
    return (cfg, *llama_shape(rng, cfg, tied=True, norms="sandwich", gemma=g))


def gemma3_case(rng):
    # Every 3rd layer global (sliding_window_pattern), local layers rotating
    # with rope_local_base_freq unscaled, global ones with rope_theta and a
    # linear scaling; per-head q/k norms; no soft-capping.
    cfg = {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 128, "hidden_size": 48,
        "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_local_base_freq": 100.0,
        "rope_scaling": {"rope_type": "linear", "factor": 4.0}, "attention_bias": False, "query_pre_attn_scalar": 24,
        "sliding_window": 5, "sliding_window_pattern": 3, "final_logit_softcapping": None,
        "attn_logit_softcapping": None, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "torch_dtype": "float32",
    }
    g = {"act": gelu_tanh, "scale": 24 ** -0.5, "windows": [5, 5, 0, 5], "local_theta": 100.0, "linear_factor": 4.0}
    return (cfg, *llama_shape(rng, cfg, qk_norm="head", tied=True, norms="sandwich", gemma=g))


def phi3_case(rng):
    # Phi-4-mini's shape (GQA, partial rotary 0.75) with LongRoPE: the 20
    # tokens pass original_max_position_embeddings (16), so the long factors
    # apply, and cos/sin carry sqrt(1 + ln(64/16) / ln 16); windows of 7.
    R = 12
    short, long = [1.0, 1.1, 1.3, 1.6, 2.0, 2.5], [1.0, 1.5, 2.5, 4.0, 6.0, 9.0]
    cfg = {
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_act": "silu", "max_position_embeddings": 64, "original_max_position_embeddings": 16,
        "partial_rotary_factor": 0.75, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": long}, "sliding_window": 7,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 32000, "torch_dtype": "float32",
    }
    rope = {"dims": R, "divisors": long, "amplitude": math.sqrt(1 + math.log(4) / math.log(16))}
    return (cfg, *llama_shape(rng, cfg, rope=rope, fused=True))


def phi3_short_case(rng):
    # Phi-3.5's shape (MHA, full rotary, untied) with LongRoPE within the
    # original context (32 > 20 tokens): the short factors; no window.
    short, long = [1.0, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0, 2.4], [1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0]
    cfg = {
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "hidden_act": "silu", "max_position_embeddings": 128, "original_max_position_embeddings": 32,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": None,
        "rope_scaling": {"type": "longrope", "short_factor": short, "long_factor": long},
        "tie_word_embeddings": False, "bos_token_id": 1, "torch_dtype": "float32",
    }
    rope = {"dims": 16, "divisors": short, "amplitude": math.sqrt(1 + math.log(4) / math.log(32))}
    return (cfg, *llama_shape(rng, cfg, rope=rope, fused=True))


def stablelm_case(rng):
    # stablelm-2-1_6b's shape: LayerNorms with biases, 25 % rotary, q/k/v biases.
    cfg = {
        "architectures": ["StableLmForCausalLM"], "model_type": "stablelm", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "hidden_act": "silu", "max_position_embeddings": 64, "layer_norm_eps": 1e-5, "rope_theta": 10000.0,
        "partial_rotary_factor": 0.25, "use_qkv_bias": True, "qk_layernorm": False, "use_parallel_residual": False,
        "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float32",
    }
    return (cfg, *llama_shape(rng, cfg, rope={"dims": 4}, stablelm={"qkv_bias": True}))


def stablelm_parallel_case(rng):
    # The larger StableLM 2 shape: parallel blocks on one norm, a LayerNorm
    # per head on q and k, GQA, no biases; rotary fraction left at its default.
    cfg = {
        "architectures": ["StableLmForCausalLM"], "model_type": "stablelm", "vocab_size": 128, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "hidden_act": "silu", "max_position_embeddings": 64, "layer_norm_eps": 1e-5, "rope_theta": 10000.0,
        "use_qkv_bias": False, "qk_layernorm": True, "use_parallel_residual": True,
        "tie_word_embeddings": False, "bos_token_id": 0, "torch_dtype": "float32",
    }
    return (cfg, *llama_shape(rng, cfg, qk_norm="each", rope={"dims": 4}, stablelm={"parallel": True}))


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20261207)
    cases = (("qwen3", qwen3_case), ("smollm3", smollm3_case), ("olmo2", olmo2_case), ("gemma", gemma_case),
             ("gemma2", gemma2_case), ("gemma3", gemma3_case), ("phi3", phi3_case), ("phi3_short", phi3_short_case),
             ("stablelm", stablelm_case), ("stablelm_parallel", stablelm_parallel_case))
    for name, make in cases:
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
