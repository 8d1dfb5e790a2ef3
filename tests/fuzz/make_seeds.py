#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora from the oracle fixtures.

usage: make_seeds.py FIXTURES_DIR OUT_DIR

OUT_DIR/safetensors gets small safetensors files with each fixture's tensor
names and dtypes (every dim cut to at most 2, so the seeds stay a few KB and
the fuzzer spends its time on the header), F16/BF16 and unaligned variants,
and index files; OUT_DIR/config gets each fixture's config.json and
config_full.json. Standard library only.
"""
import json
import os
import shutil
import struct
import sys


def serialize(tensors, metadata=None, pad=True, lead=""):
    """tensors: list of (name, dtype, shape, data bytes), written in order."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = (lead + json.dumps(header, separators=(",", ":"))).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def read_fixture(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    return header, data


SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "U8": 1, "BOOL": 1}


def main():
    fixtures, out = sys.argv[1], sys.argv[2]
    st_dir = os.path.join(out, "safetensors")
    cfg_dir = os.path.join(out, "config")
    os.makedirs(st_dir, exist_ok=True)
    os.makedirs(cfg_dir, exist_ok=True)
    oracle = os.path.join(fixtures, "hf-oracle")
    models = sorted(d for d in os.listdir(oracle) if os.path.isdir(os.path.join(oracle, d)))

    def write(name, blob):
        with open(os.path.join(st_dir, name), "wb") as f:
            f.write(blob)

    for model in models:
        header, data = read_fixture(os.path.join(oracle, model, "model.safetensors"))
        meta = header.pop("__metadata__", None)
        small = []
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
            shape = [min(d, 2) for d in info["shape"]]
            count = 1
            for d in shape:
                count *= d
            begin = info["data_offsets"][0]
            small.append((name, info["dtype"], shape, data[begin : begin + count * SIZES[info["dtype"]]]))
        write(f"{model}.safetensors", serialize(small, meta))
        # The first few tensors only, as 16-bit types, with the header
        # unpadded and led by whitespace.
        few = small[:4]
        bf16 = []
        for n, dt, s, d in few:  # BF16 by truncation: the top 2 bytes of each F32
            bf16.append((n, "BF16", s, b"".join(d[i + 2 : i + 4] for i in range(0, len(d), 4))))
        write(f"{model}-bf16.safetensors", serialize(bf16))
        f16 = []
        for n, dt, s, d in few:
            vals = struct.unpack(f"<{len(d) // 4}f", d)
            f16.append((n, "F16", s, struct.pack(f"<{len(vals)}e", *vals)))
        write(f"{model}-f16.safetensors", serialize(f16, {"format": "pt"}, pad=False, lead="\t\n"))
        # An index splitting the tensors over two shards.
        names = [t[0] for t in small]
        weight_map = {n: f"model-0000{1 + (i % 2)}-of-00002.safetensors" for i, n in enumerate(names)}
        index = {"metadata": {"total_size": sum(len(t[3]) for t in small)}, "weight_map": weight_map}
        write(f"{model}.index.json", json.dumps(index).encode())
        for cfg in ("config.json", "config_full.json"):
            src = os.path.join(oracle, model, cfg)
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(cfg_dir, f"{model}-{cfg}"))

    # Hand-made shapes of the format: empty, scalar, zero-sized, an F32
    # tensor at an odd offset, other dtypes, F64.
    write("empty.safetensors", serialize([]))
    write("mixed.safetensors", serialize([
        ("a", "U8", [1], b"\x07"),
        ("w", "F32", [2], struct.pack("<2f", 1.5, -2.0)),
        ("s", "F32", [], struct.pack("<f", 3.0)),
        ("z", "F32", [0, 3], b""),
        ("d", "F64", [1], struct.pack("<d", 1e300)),
        ("i", "I64", [1], struct.pack("<q", -1)),
        ("b", "BOOL", [2], b"\x00\x01"),
        ("q", "F4", [2], b"\x12"),
    ], {"k": "v"}))


if __name__ == "__main__":
    main()
