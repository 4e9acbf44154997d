#!/usr/bin/env python3
"""tools/train exports load in the engine and compute what PyTorch computes.

A tiny model (grouped-query attention, so the GGUF Q/K permutation is tested
with n_kv_heads != n_heads) is trained for a few steps, written as a Hugging
Face directory (by train.py) and as GGUF F32 and F16 (by convert.py). For
each, the engine's dump-logits writes the exit logits after every layer and
PyTorch computes them from the same file's weights.

Tolerances (max |engine - torch| over all exits, positions and vocabulary,
relative to max(1, max |logit|)):
  F32 / safetensors: 1e-3. Both sides compute in float32 from the same
    weights; the engine stores K/V in fp16, which torch imitates here
    (set_kv_fp16), so what is left is summation order (~1e-6 relative per
    layer; measured ~3e-5 on a 12-layer model).
  F16: 5e-3. The weights are the same fp16 values on both sides, but the
    engine rounds activations to fp16 before fp16 dot products (llama.cpp's
    order), a relative error of ~2^-11 per input (measured ~1e-4).
Top-1 agreement must be >= 99% (exact ties can flip).

Run: .venv-train/bin/python tests/train/test_export_logits.py with
LS_BIN_DIR (or --bin-dir=) the build folder holding engine/dump-logits and
engine/layerskip-bench."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import util  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lstrain import export  # noqa: E402

TINY = ["--vocab", "320", "--dim", "64", "--layers", "3", "--heads", "4", "--kv-heads", "2", "--ffn", "96",
        "--ctx", "128", "--seq", "64", "--batch", "4", "--lr", "1e-2", "--warmup", "2", "--seed", "3",
        "--steps", "8", "--log-every", "4", "--eval-windows", "2"]
SNIPPETS = ["def foo(x):\n    return x  +  1  # comment",
            "class A(object):\n\tpass\n\n\nimport os, sys",
            "s = 'h\u00e9llo w\u00f6rld \u2603' * 12345 / 0.5e-3",
            "    if not self._closed:\n        raise ValueError(\"I/O operation on closed file.\")"]
STATE = {}


def bench(name):
    p = os.path.join(util.bin_dir(), "engine", name)
    if not os.path.isfile(p):
        raise AssertionError(f"{p} not found: build it (cmake --build BUILD --target {name}) and pass LS_BIN_DIR=BUILD")
    return p


def engine_exits(model_path, ids, out, exits=True):
    cmd = [bench("dump-logits"), "--model", model_path, "--tokens", ",".join(map(str, ids)), "--out", out]
    if exits:
        cmd.append("--exits")
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, f"dump-logits failed on {model_path}: {p.stderr}"
    return np.fromfile(out, dtype=np.float32), p.stdout


def torch_exits(model, ids):
    model.set_kv_fp16(True)
    with torch.no_grad():
        _, hidden = model(torch.tensor([ids]), return_hidden=True)
        return np.stack([model.exit_head(h)[0].numpy() for h in hidden])


def test_train_and_convert():
    out = util.tmp_dir("export")
    util.train(out, TINY)
    util.run([os.path.join(util.TRAIN_DIR, "convert.py"), "--in", os.path.join(out, "ckpt.pt"),
              "--gguf", os.path.join(out, "m-f32.gguf"), "--gguf-type", "f32"])
    util.run([os.path.join(util.TRAIN_DIR, "convert.py"), "--in", os.path.join(out, "hf"),
              "--gguf", os.path.join(out, "m-f16.gguf"), "--gguf-type", "f16"])
    # the HF export holds exactly the trained weights
    ck = torch.load(os.path.join(out, "ckpt.pt"))["model"]
    hf, _ = export.load_hf(os.path.join(out, "hf"))
    for k, v in hf.state_dict().items():
        assert torch.equal(v, ck[k]), f"HF export changed {k}"
    # the F32 GGUF holds them too (after undoing the Q/K permutation)
    g32 = export.load_gguf(os.path.join(out, "m-f32.gguf"))
    for k, v in g32.state_dict().items():
        assert torch.equal(v, ck[k]), f"GGUF F32 export changed {k}"
    STATE["out"] = out


def check_logits(path, rel_tol):
    out = STATE["out"]
    model = export.load_any(path)
    L, V = model.cfg.num_hidden_layers, model.cfg.vocab_size
    rng = np.random.default_rng(5)
    ids = [model.cfg.bos_token_id] + rng.integers(0, V, 40).tolist()
    e, summary = engine_exits(path, ids, os.path.join(out, "lg.bin"))
    assert summary.split() == ["n_tokens", str(len(ids)), "n_vocab", str(V), "n_layers", str(L), "blocks", str(L)], summary
    e = e.reshape(L, len(ids), V)
    t = torch_exits(model, ids)
    scale = max(1.0, float(np.abs(t).max()))
    diff = np.abs(t - e).max(axis=(1, 2)) / scale
    agree = (t.argmax(-1) == e.argmax(-1)).mean()
    print(f"    {os.path.basename(path)}: max |diff| / {scale:.2f} per exit {[f'{d:.1e}' for d in diff]}, top-1 agree {agree:.3f}")
    assert diff.max() <= rel_tol, f"{path}: engine and torch logits differ by {diff.max():.2e} (> {rel_tol})"
    assert agree >= 0.99, f"{path}: top-1 agreement {agree:.3f}"
    # the full model in one ls_forward call equals the last exit of the layer-by-layer run
    full, _ = engine_exits(path, ids, os.path.join(out, "lg1.bin"), exits=False)
    assert np.array_equal(full.reshape(len(ids), V), e[-1]), f"{path}: one-call forward differs from layer-by-layer"


def test_hf_logits():
    check_logits(os.path.join(STATE["out"], "hf"), 1e-3)


def test_gguf_f32_logits():
    check_logits(os.path.join(STATE["out"], "m-f32.gguf"), 1e-3)


def test_gguf_f16_logits():
    check_logits(os.path.join(STATE["out"], "m-f16.gguf"), 5e-3)


def test_tokenizer_matches():
    from tokenizers import Tokenizer
    out = STATE["out"]
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    bos = tok.token_to_id("<|endoftext|>")
    for path in (os.path.join(out, "hf"), os.path.join(out, "m-f16.gguf")):
        for s in SNIPPETS:
            p = subprocess.run([bench("layerskip-bench"), "--model", path, "--tokenize", s], capture_output=True, text=True)
            assert p.returncode == 0, p.stderr
            got = json.loads(p.stdout)
            want = [bos] + tok.encode(s).ids
            assert got == want, f"{path}: engine tokenizes {s!r} as {got}, tokenizers as {want}"


def test_dump_logits_bad_input():
    out = STATE["out"]
    path = os.path.join(out, "m-f32.gguf")
    p = subprocess.run([bench("dump-logits"), "--model", path, "--tokens", "1,99999", "--out", os.path.join(out, "x.bin")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "token id 99999" in p.stderr and "vocabulary size 320" in p.stderr, p.stderr
    p = subprocess.run([bench("dump-logits"), "--model", path, "--tokens", "1,x", "--out", os.path.join(out, "x.bin")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "'x' is not a token id" in p.stderr, p.stderr
    p = subprocess.run([bench("dump-logits"), "--model", os.path.join(out, "nope.gguf"), "--tokens", "1",
                        "--out", os.path.join(out, "x.bin")], capture_output=True, text=True)
    assert p.returncode == 1 and "nope.gguf" in p.stderr, p.stderr


if __name__ == "__main__":
    sys.exit(util.main([test_train_and_convert, test_hf_logits, test_gguf_f32_logits, test_gguf_f16_logits,
                        test_tokenizer_matches, test_dump_logits_bad_input]))
