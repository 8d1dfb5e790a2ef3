#!/usr/bin/env python3
"""Reference values for the head detectors (core/detectors.hpp).

TransformerLens's detect_head scoring (transformer_lens/head_detector.py:
get_*_detection_pattern and compute_head_attention_similarity_score),
re-typed here with torch so that the test does not need TransformerLens or a
HookedTransformer: detect_head only reads the cached patterns and the tokens.

Cases, each a folder under the output directory:
  hf_<fixture>   the oracle's attentions.npy and input_ids.npy (no repeated
                 tokens: the duplicate and induction scores are all 0 there)
  synthetic      random causal softmax patterns [2, 3, 16, 16] over ids with
                 repeats (causal only: TL's abs measure asserts a lower
                 triangular pattern)

Each folder holds patterns.npy (float32 [L, H, T, T]), ids.npy (int64 [T])
and score_<kind>_<measure>_<exclude_bos>_<exclude_current_token>.npy (float64
[L, H]) for kind in previous_token/duplicate_token/induction, measure in
mul/abs, and the exclusions as 0/1.

Usage: behavior_reference.py OUT_DIR   (HEADSCOPE_FIXTURES names the fixtures)
"""
import os
import sys

import numpy as np
import torch


# --- transformer_lens/head_detector.py, the scoring part -------------------

def get_previous_token_head_detection_pattern(tokens):
    detection_pattern = torch.zeros(tokens.shape[-1], tokens.shape[-1])
    detection_pattern[1:, :-1] = torch.eye(tokens.shape[-1] - 1)
    return torch.tril(detection_pattern)


def get_duplicate_token_head_detection_pattern(tokens):
    token_pattern = tokens.repeat(tokens.shape[-1], 1).numpy()
    eq_mask = np.equal(token_pattern, token_pattern.T).astype(int)
    np.fill_diagonal(eq_mask, 0)
    detection_pattern = eq_mask.astype(int)
    return torch.tril(torch.as_tensor(detection_pattern).float())


def get_induction_head_detection_pattern(tokens):
    duplicate_pattern = get_duplicate_token_head_detection_pattern(tokens)
    shifted_tensor = torch.roll(duplicate_pattern, shifts=1, dims=1)
    zeros_column = torch.zeros(duplicate_pattern.shape[0], 1)
    result_tensor = torch.cat((zeros_column, shifted_tensor[:, 1:]), dim=1)
    return torch.tril(result_tensor)


def compute_head_attention_similarity_score(attention_pattern, detection_pattern, *, exclude_bos,
                                            exclude_current_token, error_measure):
    if error_measure == "mul":
        if exclude_bos:
            attention_pattern[:, 0] = 0
        if exclude_current_token:
            attention_pattern.fill_diagonal_(0)
        score = attention_pattern * detection_pattern
        return (score.sum() / attention_pattern.sum()).item()
    abs_diff = (attention_pattern - detection_pattern).abs()
    assert (abs_diff - torch.tril(abs_diff).to(abs_diff.device)).sum() == 0
    size = len(abs_diff)
    if exclude_bos:
        abs_diff[:, 0] = 0
    if exclude_current_token:
        abs_diff.fill_diagonal_(0)
    return 1 - round((abs_diff.mean() * size).item(), 3)


# --- cases --------------------------------------------------------------------

KINDS = {
    "previous_token": get_previous_token_head_detection_pattern,
    "duplicate_token": get_duplicate_token_head_detection_pattern,
    "induction": get_induction_head_detection_pattern,
}


def write_case(out_dir, name, patterns, ids):
    case = os.path.join(out_dir, name)
    os.makedirs(case, exist_ok=True)
    patterns = np.ascontiguousarray(patterns, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    np.save(os.path.join(case, "patterns.npy"), patterns)
    np.save(os.path.join(case, "ids.npy"), ids)
    tokens = torch.as_tensor(ids)[None, :]  # [batch (1) x pos], as model.to_tokens
    L, H = patterns.shape[:2]
    for kind, make in KINDS.items():
        detection = make(tokens)
        for measure in ("mul", "abs"):
            for bos in (0, 1):
                for cur in (0, 1):
                    scores = np.zeros((L, H), dtype=np.float64)
                    for l in range(L):
                        for h in range(H):
                            # A fresh copy: TL's mul edits the cached pattern in place.
                            a = torch.tensor(patterns[l, h])
                            scores[l, h] = compute_head_attention_similarity_score(
                                a, detection, exclude_bos=bool(bos), exclude_current_token=bool(cur),
                                error_measure=measure)
                    np.save(os.path.join(case, f"score_{kind}_{measure}_{bos}_{cur}.npy"), scores)


def main():
    out_dir = sys.argv[1]
    fixtures = os.environ.get("HEADSCOPE_FIXTURES", os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))
    for name in ("gpt2", "gpt_neox", "llama", "gpt_neo", "opt"):
        folder = os.path.join(fixtures, "hf-oracle", name)
        att = np.load(os.path.join(folder, "attentions.npy"))[:, 0]  # [L, H, T, T]
        ids = np.load(os.path.join(folder, "input_ids.npy"))[0]
        write_case(out_dir, "hf_" + name, att, ids)

    rng = np.random.default_rng(20240607)
    T = 16
    ids = np.array([3, 9, 4, 9, 9, 1, 3, 9, 4, 7, 1, 3, 9, 4, 4, 2])  # repeats, and ids[i] == ids[i-1]
    scores = rng.normal(0, 2, size=(2, 3, T, T))
    scores[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] = -np.inf
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    write_case(out_dir, "synthetic", probs, ids)


if __name__ == "__main__":
    main()
