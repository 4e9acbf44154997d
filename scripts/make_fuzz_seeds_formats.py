#!/usr/bin/env python3
"""Writes the seed corpora for tests/fuzz/fuzz_gguf.c and fuzz_safetensors.c:
a dozen small valid and invalid files each (a few KB at most), so the corpus
replayers exercise every parser branch and libFuzzer starts from real
structure. Deterministic: rerunning gives the same bytes.

    python3 scripts/make_fuzz_seeds_formats.py [REPO_ROOT]
"""
import json
import os
import struct
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
GGUF_DIR = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_gguf")
ST_DIR = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_safetensors")

# gguf value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
       BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types: (block elems, block bytes)
TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 30: (1, 2),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 20: (32, 18),
         23: (256, 136)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gval(et, x) for x in items)
    return struct.pack(FMT[t], v)


def gguf(kvs, tensors, version=3, align=32, counts=None):
    """kvs: [(key, type, value)]; tensors: [(name, ne, type)] (data = pattern)."""
    out = b"GGUF" + struct.pack("<I", version)
    nt, nkv = counts if counts else (len(tensors), len(kvs))
    out += struct.pack("<QQ", nt, nkv)
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + gval(t, v)
    off, datas = 0, []
    for name, ne, ty in tensors:
        n = 1
        for d in ne:
            n *= d
        be, bb = TYPES.get(ty, (1, 4))  # unknown types: laid out like F32
        nbytes = n // be * bb
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", ty, off)
        datas.append((off, bytes((i * 7 + len(name)) & 0xFF for i in range(nbytes))))
        off = (off + nbytes + align - 1) // align * align
    if tensors:
        out += b"\0" * (-len(out) % align)
        start = len(out)
        for o, d in datas:
            out += b"\0" * (start + o - len(out)) + d
    return out


def safetensors(entries, data, meta=None, raw_header=None):
    if raw_header is None:
        h = {}
        if meta is not None:
            h["__metadata__"] = meta
        h.update(entries)
        raw_header = json.dumps(h, separators=(",", ":"))
    hb = raw_header.encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gguf_seeds():
    base_kv = [("general.architecture", STR, "llama"), ("llama.block_count", U32, 2),
               ("llama.embedding_length", U32, 32), ("llama.rope.freq_base", F32, 10000.0),
               ("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "</s>", "a", "b"])),
               ("tokenizer.ggml.scores", ARR, (F32, [0.0, -1.0, -2.0, -3.0])),
               ("tokenizer.ggml.token_type", ARR, (I32, [3, 3, 1, 1])),
               ("tokenizer.ggml.add_bos_token", BOOL, 1)]
    base_t = [("token_embd.weight", [32, 4], 8), ("output_norm.weight", [32], 0),
              ("blk.0.attn_q.weight", [32, 2], 3)]
    every = [("u8", U8, 1), ("i8", I8, -1), ("u16", U16, 2), ("i16", I16, -2), ("u32", U32, 3),
             ("i32", I32, -3), ("f32", F32, 0.5), ("bool", BOOL, 0), ("str", STR, "s"),
             ("u64", U64, 4), ("i64", I64, -4), ("f64", F64, 0.25),
             ("arr.u16", ARR, (U16, [1, 2])), ("arr.f64", ARR, (F64, [1.5])),
             ("arr.bool", ARR, (BOOL, [1, 0])), ("arr.empty", ARR, (STR, [])),
             ("arr.nested", ARR, (ARR, [(U8, [1, 2]), (STR, ["x"])]))]
    seeds = {
        "valid_v3.gguf": gguf(base_kv, base_t),
        "valid_v2.gguf": gguf(base_kv, base_t, version=2),
        "valid_align64.gguf": gguf(base_kv + [("general.alignment", U32, 64)], base_t, align=64),
        "every_kv_type.gguf": gguf(every, [("t.f16", [3, 2], 1), ("t.bf16", [2], 30), ("t.q4_0", [32], 2)]),
        "vocab_only.gguf": gguf(base_kv, []),
        "empty_header.gguf": gguf([], []),
        "bad_magic.gguf": b"GGUG" + gguf(base_kv, base_t)[4:],
        "version1.gguf": gguf(base_kv, base_t, version=1),
        "absurd_counts.gguf": gguf(base_kv, base_t, counts=(1 << 40, 1 << 50)),
        "unknown_type.gguf": gguf(base_kv, [("t", [4], 99)]),
        "truncated.gguf": gguf(base_kv, base_t)[:300],
        "dup_tensor.gguf": gguf(base_kv, [("a", [4], 0), ("a", [4], 0)]),
        "align_not_pow2.gguf": gguf([("general.alignment", U32, 48)], [("a", [4], 0)]),
        # every block-quantized type, one or two rows (the fuzzer also dequantizes and multiplies them)
        "quant_types.gguf": gguf(base_kv, [("t.q5_0", [32, 2], 6), ("t.q5_1", [32], 7), ("t.q2_k", [256], 10),
                                           ("t.q3_k", [256], 11), ("t.iq4_nl", [64], 20)]),
        "kquant_types.gguf": gguf(base_kv, [("t.q4_k", [256, 2], 12), ("t.q5_k", [256], 13),
                                            ("t.q6_k", [256], 14), ("t.iq4_xs", [256], 23)]),
        "kquant_bad_row.gguf": gguf(base_kv, [("t.q6_k", [576, 2], 14)]),
        "kquant_truncated.gguf": gguf(base_kv, [("t.q4_k", [256, 4], 12)])[:-300],
        "q8k_activation_type.gguf": gguf(base_kv, [("t.q8_k", [256], 15)]),
    }
    for name, data in seeds.items():
        assert len(data) <= 4096, name
        write(GGUF_DIR, name, data)


def st_seeds():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    e = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
         "b": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]},
         "c": {"dtype": "BF16", "shape": [1, 1, 2, 1], "data_offsets": [32, 36]},
         "s": {"dtype": "F32", "shape": [], "data_offsets": [36, 40]},
         "z": {"dtype": "F16", "shape": [0, 3], "data_offsets": [40, 40]}}
    data = f32 + bytes(range(16))
    one = lambda dt, shape, offs: {"x": {"dtype": dt, "shape": shape, "data_offsets": offs}}
    seeds = {
        "valid.safetensors": safetensors(e, data, meta={"format": "pt"}),
        "valid_nometa.safetensors": safetensors({"a": e["a"]}, f32),
        "empty_header.safetensors": safetensors({}, b""),
        "bad_json.safetensors": safetensors(None, b"", raw_header='{"x": {"dtype": "F32", '),
        "trailing.safetensors": safetensors(None, b"", raw_header="{} []"),
        "size_mismatch.safetensors": safetensors(one("F32", [2, 2], [0, 12]), bytes(16)),
        "offsets_past_end.safetensors": safetensors(one("F32", [4], [0, 16]), bytes(8)),
        "overlap.safetensors": safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                                           bytes(12)),
        "unsupported_i64.safetensors": safetensors(one("I64", [1], [0, 8]), bytes(8)),
        "unknown_dtype.safetensors": safetensors(one("F33", [1], [0, 4]), bytes(4)),
        "negative_shape.safetensors": safetensors(one("F32", [-1], [0, 4]), bytes(4)),
        "shape_overflow.safetensors": safetensors(one("F32", [1 << 32, 1 << 32, 1 << 32], [0, 4]), bytes(4)),
        "header_len_past_end.safetensors": struct.pack("<Q", 1 << 40) + b"{}      ",
        "dup_names.safetensors": safetensors(None, bytes(8), raw_header=(
            '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            '"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')),
    }
    for name, data in seeds.items():
        assert len(data) <= 4096, name
        write(ST_DIR, name, data)


if __name__ == "__main__":
    gguf_seeds()
    st_seeds()
