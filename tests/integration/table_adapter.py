"""table_adapter.py: a draft adapter that holds only a frequency table
(docs/ADAPTER.md: has_block false, the token ids 0..N-1 as layerskip.draft_vocab)
for a GGUF model, written from the model file's own metadata with the
standard library, so the integration tests can start layerskipd with
--draft-adapter and --draft-vocab without the trainer.
"""
import struct

def _read_gguf_kv(path):
    """the key/value metadata of a GGUF file (arrays as lists)"""
    with open(path, "rb") as f:
        data = f.read(64 << 20)  # the metadata sits at the start
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal off
        n = take("Q")
        s = data[off:off + n]
        off += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert data[:4] == b"GGUF"
    off = 4
    take("I")
    take("Q")
    n_kv = take("Q")
    kv = {}
    for _ in range(n_kv):
        k = string().decode()
        kv[k] = value(take("I"))
    return kv


def write_table_adapter(model_path, out, exit_layer, n_table):
    """A draft adapter holding only a frequency table (token ids 0..n_table-1),
    trained-after layer exit_layer, for the GGUF model (docs/ADAPTER.md)."""
    kv = _read_gguf_kv(model_path)
    arch = kv["general.architecture"].decode()
    tokens = kv["tokenizer.ggml.tokens"]
    h = 0xCBF29CE484222325  # FNV-1a 64 offset basis
    for t in tokens:
        for b in t + b"\0":
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    meta = [
        ("general.architecture", 8, b"layerskip-adapter"),
        ("layerskip.adapter.version", 4, 1),
        ("layerskip.adapter.exit_layer", 4, exit_layer),
        ("layerskip.adapter.ffn_dim", 4, 0),
        ("layerskip.adapter.has_block", 7, False),
        ("layerskip.base.architecture", 8, arch.encode()),
        ("layerskip.base.block_count", 4, kv[arch + ".block_count"]),
        ("layerskip.base.embedding_length", 4, kv[arch + ".embedding_length"]),
        ("layerskip.base.feed_forward_length", 4, kv[arch + ".feed_forward_length"]),
        ("layerskip.base.head_count", 4, kv[arch + ".attention.head_count"]),
        ("layerskip.base.head_count_kv", 4, kv[arch + ".attention.head_count_kv"]),
        ("layerskip.base.vocab_size", 4, len(tokens)),
        ("layerskip.base.vocab_hash", 10, h),
    ]
    fmt = {4: "I", 7: "?", 10: "Q"}
    b = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta) + 1))
    for k, t, v in meta:
        b += struct.pack("<Q", len(k)) + k.encode() + struct.pack("<I", t)
        b += struct.pack("<Q", len(v)) + v if t == 8 else struct.pack("<" + fmt[t], v)
    k = "layerskip.draft_vocab"
    b += struct.pack("<Q", len(k)) + k.encode() + struct.pack("<IIQ", 9, 5, n_table)
    b += struct.pack("<%di" % n_table, *range(n_table))
    with open(out, "wb") as f:
        f.write(b)
