#!/usr/bin/env python3
"""Reference values for BERT's masked-LM objective (core/interventions.hpp,
Objective::masked_token).

Makes a small BertForMaskedLM checkpoint: the BERT oracle fixture's encoder
(a bare BertModel) under the `bert.` prefix, plus a random MLM head with
Hugging Face's names (cls.predictions.transform.{dense,LayerNorm},
cls.predictions.bias; the decoder is tied to the word embeddings, as
BertForMaskedLM saves it). Then masks the fixture's input ids at chosen
positions and computes, with an independent float64 numpy forward written
from transformers' modeling_bert.py (BertEmbeddings, BertSelfAttention,
BertSelfOutput, BertIntermediate, BertOutput, BertPredictionHeadTransform,
BertLMPredictionHead), the cross-entropy at the masked positions only
(labels = -100 elsewhere, as BertForMaskedLM's loss reads them).

Writes into OUT_DIR: model/config.json, model/model.safetensors,
ids.npy (the masked input, int64 [T]), labels.npy (int64 [T]),
token_loss.npy (float64, one per masked position), loss.npy (float64 [1]).

Usage: mlm_reference.py OUT_DIR   (HEADSCOPE_FIXTURES names the fixtures)
"""
import json
import math
import os
import struct
import sys

import numpy as np

from geometry_reference import read_safetensors  # float64 values of an F32 checkpoint


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):  # hidden_act "gelu": the erf form
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def linear(x, t, name):  # nn.Linear: weight [out, in]
    return x @ t[name + ".weight"].astype(np.float64).T + t[name + ".bias"]


def mlm_logits(t, cfg, ids):
    g = lambda k: t[k].astype(np.float64)
    eps = cfg["layer_norm_eps"]
    T = len(ids)
    x = g("bert.embeddings.word_embeddings.weight")[ids] + g("bert.embeddings.position_embeddings.weight")[:T] \
        + g("bert.embeddings.token_type_embeddings.weight")[0]
    x = layer_norm(x, g("bert.embeddings.LayerNorm.weight"), g("bert.embeddings.LayerNorm.bias"), eps)
    H = cfg["num_attention_heads"]
    dh = cfg["hidden_size"] // H
    for l in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{l}."
        q, k, v = (linear(x, t, p + "attention.self." + n).reshape(T, H, dh).transpose(1, 0, 2) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = s / s.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(1, 0, 2).reshape(T, H * dh)
        x = layer_norm(linear(ctx, t, p + "attention.output.dense") + x,
                       g(p + "attention.output.LayerNorm.weight"), g(p + "attention.output.LayerNorm.bias"), eps)
        inner = gelu(linear(x, t, p + "intermediate.dense"))
        x = layer_norm(linear(inner, t, p + "output.dense") + x,
                       g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"), eps)
    y = gelu(linear(x, t, "cls.predictions.transform.dense"))
    y = layer_norm(y, g("cls.predictions.transform.LayerNorm.weight"), g("cls.predictions.transform.LayerNorm.bias"), eps)
    return y @ g("bert.embeddings.word_embeddings.weight").T + g("cls.predictions.bias")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mlm_reference.py OUT_DIR")
    out = sys.argv[1]
    fixture = os.path.join(os.environ.get("HEADSCOPE_FIXTURES", ""), "hf-oracle", "bert")
    encoder = read_safetensors(os.path.join(fixture, "model.safetensors"))
    with open(os.path.join(fixture, "config.json")) as f:
        cfg = json.load(f)
    d, V = cfg["hidden_size"], cfg["vocab_size"]
    rng = np.random.default_rng(20261207)
    t = {"bert." + k: v for k, v in encoder.items() if not k.startswith("pooler.")}
    t["cls.predictions.transform.dense.weight"] = (rng.standard_normal((d, d)) * 0.1).astype(np.float32)
    t["cls.predictions.transform.dense.bias"] = (rng.standard_normal(d) * 0.1).astype(np.float32)
    t["cls.predictions.transform.LayerNorm.weight"] = (1 + rng.standard_normal(d) * 0.1).astype(np.float32)
    t["cls.predictions.transform.LayerNorm.bias"] = (rng.standard_normal(d) * 0.1).astype(np.float32)
    t["cls.predictions.bias"] = (rng.standard_normal(V) * 0.1).astype(np.float32)
    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir, exist_ok=True)
    write_safetensors(os.path.join(model_dir, "model.safetensors"), t)
    cfg = dict(cfg, architectures=["BertForMaskedLM"])
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    ids = np.load(os.path.join(fixture, "input_ids.npy")).reshape(-1).astype(np.int64)
    mask_id = V - 1  # any id: the checkpoint has no tokenizer
    positions = [2, 5, 9]
    labels = np.full(len(ids), -100, dtype=np.int64)
    labels[positions] = ids[positions]
    masked = ids.copy()
    masked[positions] = mask_id
    logits = mlm_logits(t, cfg, masked)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    token_loss = np.array([-logp[p, labels[p]] for p in positions])
    np.save(os.path.join(out, "ids.npy"), masked)
    np.save(os.path.join(out, "labels.npy"), labels)
    np.save(os.path.join(out, "token_loss.npy"), token_loss)
    np.save(os.path.join(out, "loss.npy"), np.array([token_loss.mean()]))
    with open(os.path.join(out, "DONE"), "w") as f:
        f.write("ok\n")


if __name__ == "__main__":
    main()
