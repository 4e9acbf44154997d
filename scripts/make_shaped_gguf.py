#!/usr/bin/env python3
"""Write a Llama-architecture GGUF of a given shape with random weights.

Defaults are the CodeLlama-34B shape (48 layers, hidden 8192, 64 heads,
8 KV heads, FFN 22016, vocabulary 32000, rope theta 1e6, Q4_0: about 19 GB).
The weights are random (matrices with std ~0.02, norms 1.0), so the text the
model writes is noise: the file is for load, memory and speed tests of the
real shape, not for quality.

Tensor names, shapes and metadata keys are llama.cpp's for the llama
architecture. The tokenizer (tokenizer.* keys: the Llama 2 SentencePiece
vocabulary, 32000 tokens) is copied byte for byte from llama.cpp's
ggml-vocab-llama-spm.gguf (scripts/setup.sh puts it in models/vocab/).

The file is written by hand (GGUF v3: header, key/values, tensor table,
aligned data) and the tensor data is streamed in chunks, so memory use stays
at a few hundred MB whatever the model size. Needs only numpy.

    python3 scripts/make_shaped_gguf.py --out /work/big/codellama34b-shape-q4_0.gguf
    python3 scripts/make_shaped_gguf.py --layers 4 --dim 256 --heads 4 --kv-heads 2 \\
        --ffn 512 --out /tmp/tiny.gguf
"""
import argparse
import os
import struct
import sys
import time

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGN = 32

# GGUF value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, T_UINT64 = 4, 5, 6, 7, 8, 9, 10
_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

# ggml tensor types: id, elements per block, bytes per block; llama file type
GGML = {
    "f32": (0, 1, 4, 0),
    "f16": (1, 1, 2, 1),
    "q4_0": (2, 32, 18, 2),
    "q8_0": (8, 32, 34, 7),
}

DEFAULT_VOCAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "vocab",
                             "ggml-vocab-llama-spm.gguf")


def die(msg):
    print(f"make_shaped_gguf: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- writing

def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv_u32(key, v):
    return gstr(key) + struct.pack("<II", T_UINT32, v)


def kv_f32(key, v):
    return gstr(key) + struct.pack("<If", T_FLOAT32, v)


def kv_str(key, v):
    return gstr(key) + struct.pack("<I", T_STRING) + gstr(v)


# ---------------------------------------------------------------- reading the vocab file

class Reader:
    def __init__(self, buf, path):
        self.b, self.p, self.path = buf, 0, path

    def take(self, n):
        if self.p + n > len(self.b):
            die(f"{self.path}: truncated GGUF (wanted {n} bytes at offset {self.p})")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        return self.take(self.u64()).decode("utf-8", "replace")

    def skip_value(self, t):
        if t in _SCALAR_SIZE:
            self.take(_SCALAR_SIZE[t])
        elif t == T_STRING:
            self.take(self.u64())
        elif t == T_ARRAY:
            st, n = self.u32(), self.u64()
            if st == T_STRING:
                for _ in range(n):
                    self.take(self.u64())
            elif st in _SCALAR_SIZE:
                self.take(_SCALAR_SIZE[st] * n)
            else:
                die(f"{self.path}: unsupported array element type {st}")
        else:
            die(f"{self.path}: unsupported value type {t}")


def tokenizer_kvs(path):
    """The raw bytes of every tokenizer.* key/value of a GGUF file, and the vocabulary size."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        die(f"cannot read the vocabulary file {path}: {e.strerror} (scripts/setup.sh downloads it)")
    r = Reader(buf, path)
    if r.take(4) != GGUF_MAGIC:
        die(f"{path}: not a GGUF file")
    ver = r.u32()
    if ver not in (2, 3):
        die(f"{path}: GGUF version {ver} is not supported")
    r.u64()  # tensor count
    n_kv = r.u64()
    out, n_vocab = [], None
    for _ in range(n_kv):
        start = r.p
        key = r.string()
        t = r.u32()
        vstart = r.p
        r.skip_value(t)
        if key.startswith("tokenizer."):
            out.append(buf[start:r.p])
            if key == "tokenizer.ggml.tokens":
                n_vocab = struct.unpack("<Q", buf[vstart + 4:vstart + 12])[0]
    if not out or n_vocab is None:
        die(f"{path}: no tokenizer.ggml.tokens in this file")
    return out, n_vocab


# ---------------------------------------------------------------- random tensor data

class Gen:
    """Random tensor bytes of a type, in chunks of whole blocks."""

    def __init__(self, rng, std):
        self.rng, self.std = rng, std

    def chunk(self, typ, n_elems, fill=None):
        _, be, bb, _ = GGML[typ]
        if fill is not None:  # constant (norm vectors)
            if typ == "f32":
                return np.full(n_elems, fill, dtype="<f4").tobytes()
            return np.full(n_elems, fill, dtype="<f2").tobytes()
        if typ == "f32":
            return (self.rng.standard_normal(n_elems, dtype=np.float32) * self.std).astype("<f4").tobytes()
        if typ == "f16":
            return (self.rng.standard_normal(n_elems, dtype=np.float32) * self.std).astype("<f2").tobytes()
        nb = n_elems // be
        blocks = np.frombuffer(bytearray(self.rng.bytes(nb * bb)), dtype=np.uint8).reshape(nb, bb)
        if typ == "q4_0":
            # q uniform in 0..15, value (q - 8) * d: std of q - 8 is ~4.61, mean -0.5;
            # a random sign per block on d makes the weights' mean 0
            d = self.std / 4.61
        else:
            # q8_0: random bytes as int8, uniform in -128..127, std ~73.9
            d = self.std / 73.9
        dbits = np.full(nb, np.float16(d).view(np.uint16), dtype=np.uint16)
        dbits |= (self.rng.integers(0, 2, nb, dtype=np.uint16) << 15)
        blocks[:, 0:2] = dbits.astype("<u2").view(np.uint8).reshape(nb, 2)
        return blocks.tobytes()


def tensor_bytes(typ, n_elems):
    _, be, bb, _ = GGML[typ]
    return n_elems // be * bb


def pad(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def human(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--dim", type=int, default=8192, help="hidden size (embedding length)")
    ap.add_argument("--heads", type=int, default=64)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=22016, help="feed-forward size")
    ap.add_argument("--vocab", type=int, default=32000,
                    help="vocabulary size; must equal the tokenizer's (32000 for the Llama SPM vocabulary)")
    ap.add_argument("--type", choices=["q4_0", "q8_0", "f16"], default="q4_0",
                    help="type of every matrix, embeddings and output included (norms are F32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02, help="standard deviation of the matrix weights")
    ap.add_argument("--rope-theta", type=float, default=1e6, help="rope frequency base (CodeLlama: 1e6)")
    ap.add_argument("--rms-eps", type=float, default=1e-5)
    ap.add_argument("--ctx", type=int, default=16384, help="llama.context_length")
    ap.add_argument("--name", default=None, help="general.name (default: a description of the shape)")
    ap.add_argument("--vocab-file", default=DEFAULT_VOCAB,
                    help="GGUF whose tokenizer.* keys are copied (default: models/vocab/ggml-vocab-llama-spm.gguf)")
    ap.add_argument("--chunk-mb", type=int, default=64, help="size of the write chunks")
    ap.add_argument("--out", required=True)
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    a = ap.parse_args()

    for k in ("layers", "dim", "heads", "kv_heads", "ffn", "vocab", "ctx", "chunk_mb"):
        if getattr(a, k) < 1:
            die(f"--{k.replace('_', '-')} must be >= 1")
    if a.dim % a.heads:
        die(f"--dim {a.dim} is not a multiple of --heads {a.heads}")
    if a.heads % a.kv_heads:
        die(f"--kv-heads {a.kv_heads} must divide --heads {a.heads}")
    head_dim = a.dim // a.heads
    if head_dim % 2:
        die(f"head dimension {head_dim} must be even")
    _, be, _, _ = GGML[a.type]
    for what, n in (("--dim", a.dim), ("--ffn", a.ffn)):
        if n % be:
            die(f"{what} {n} must be a multiple of {be} for {a.type}")
    if os.path.exists(a.out) and not a.force:
        die(f"{a.out} exists (pass --force to overwrite)")

    tok_kvs, tok_vocab = tokenizer_kvs(a.vocab_file)
    if tok_vocab != a.vocab:
        die(f"--vocab {a.vocab} differs from the tokenizer's {tok_vocab} tokens in {a.vocab_file}")

    kv_dim = a.kv_heads * head_dim
    # (name, GGUF dims [ne0 = row length, ne1 = rows], type, constant fill or None)
    tensors = [("token_embd.weight", [a.dim, a.vocab], a.type, None)]
    for i in range(a.layers):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", [a.dim], "f32", 1.0),
            (p + "attn_q.weight", [a.dim, a.dim], a.type, None),
            (p + "attn_k.weight", [a.dim, kv_dim], a.type, None),
            (p + "attn_v.weight", [a.dim, kv_dim], a.type, None),
            (p + "attn_output.weight", [a.dim, a.dim], a.type, None),
            (p + "ffn_norm.weight", [a.dim], "f32", 1.0),
            (p + "ffn_gate.weight", [a.dim, a.ffn], a.type, None),
            (p + "ffn_up.weight", [a.dim, a.ffn], a.type, None),
            (p + "ffn_down.weight", [a.ffn, a.dim], a.type, None),
        ]
    tensors += [("output_norm.weight", [a.dim], "f32", 1.0),
                ("output.weight", [a.dim, a.vocab], a.type, None)]

    name = a.name or (f"random llama L{a.layers} d{a.dim} h{a.heads}/{a.kv_heads} "
                      f"ffn{a.ffn} v{a.vocab} {a.type.upper()} seed{a.seed}")
    kvs = [
        kv_str("general.architecture", "llama"),
        kv_str("general.name", name),
        kv_u32("general.file_type", GGML[a.type][3]),
        kv_u32("general.quantization_version", 2),
        kv_u32("general.alignment", ALIGN),
        kv_u32("llama.context_length", a.ctx),
        kv_u32("llama.embedding_length", a.dim),
        kv_u32("llama.block_count", a.layers),
        kv_u32("llama.feed_forward_length", a.ffn),
        kv_u32("llama.attention.head_count", a.heads),
        kv_u32("llama.attention.head_count_kv", a.kv_heads),
        kv_f32("llama.rope.freq_base", a.rope_theta),
        kv_f32("llama.attention.layer_norm_rms_epsilon", a.rms_eps),
        kv_u32("llama.rope.dimension_count", head_dim),
        kv_u32("llama.vocab_size", a.vocab),
    ] + tok_kvs

    # tensor table with aligned offsets
    table, off, sizes = [], 0, []
    for tname, dims, typ, _ in tensors:
        n = int(np.prod(dims))
        size = tensor_bytes(typ, n)
        info = gstr(tname) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        info += struct.pack("<IQ", GGML[typ][0], off)
        table.append(info)
        sizes.append(size)
        off = pad(off + size)
    data_size = off

    header = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(kvs))
    meta = header + b"".join(kvs) + b"".join(table)
    meta += b"\0" * (pad(len(meta)) - len(meta))
    total = len(meta) + data_size
    n_params = sum(int(np.prod(d)) for _, d, _, _ in tensors)
    print(f"make_shaped_gguf: {name}: {len(tensors)} tensors, {n_params / 1e9:.2f} B parameters, "
          f"file {human(total)} -> {a.out}", flush=True)

    out_dir = os.path.dirname(os.path.abspath(a.out))
    st = os.statvfs(out_dir)
    free = st.f_bavail * st.f_frsize
    if free < total + (1 << 30):
        die(f"{out_dir}: {human(free)} free, the file needs {human(total)} (+1 GB margin)")

    rng = np.random.default_rng(a.seed)
    gen = Gen(rng, a.std)
    chunk_elems = max(be, (a.chunk_mb << 20) // 18 * 32 // 1024 * 1024)
    tmp = a.out + ".part"
    t0 = time.time()
    written, last_report = len(meta), 0.0
    try:
        with open(tmp, "wb") as f:
            f.write(meta)
            for (tname, dims, typ, fill), size in zip(tensors, sizes):
                n = int(np.prod(dims))
                done = 0
                while done < n:
                    k = min(chunk_elems, n - done)
                    buf = gen.chunk(typ, k, fill)
                    f.write(buf)
                    written += len(buf)
                    done += k
                    now = time.time()
                    if now - last_report >= 5:
                        last_report = now
                        el = now - t0
                        rate = written / el if el > 0 else 0
                        eta = (total - written) / rate if rate > 0 else 0
                        print(f"  {tname:24s} {human(written)} / {human(total)} ({100 * written / total:5.1f}%) "
                              f"{rate / 1e6:6.0f} MB/s, ~{eta:4.0f} s left", flush=True)
                padn = pad(size) - size
                if padn:
                    f.write(b"\0" * padn)
                    written += padn
            f.flush()
            os.fsync(f.fileno())
        if written != total:
            die(f"internal error: wrote {written} bytes, planned {total}")
        os.replace(tmp, a.out)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        die(f"writing {tmp}: {e.strerror}")
    except KeyboardInterrupt:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        die("interrupted; partial file removed")
    el = time.time() - t0
    print(f"make_shaped_gguf: wrote {a.out}: {total} bytes ({human(total)}) in {el:.1f} s "
          f"({total / el / 1e6:.0f} MB/s)", flush=True)


if __name__ == "__main__":
    main()
