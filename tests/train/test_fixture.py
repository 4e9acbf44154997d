#!/usr/bin/env python3
"""The committed LayerSkip fixture (tests/fixtures/lscode/) and its twin:
both load in the engine, the engine's per-exit logits match PyTorch on the
same weights, and the LayerSkip-trained model's early exits agree with its
final exit far more often than the twin's do (the property self-speculation
depends on). Needs no training: it reads the committed files only.

Run: LS_BIN_DIR=BUILD .venv-train/bin/python tests/train/test_fixture.py"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import util  # noqa: E402

import numpy as np  # noqa: E402

from lstrain import export  # noqa: E402
import test_export_logits as tel  # noqa: E402

FIX = os.environ.get("LS_FIXTURE_DIR") or os.path.join(util.ROOT, "tests", "fixtures", "lscode")
PROMPTS = os.path.join(util.ROOT, "bench", "lscode_prompts.txt")
STATE = {}


def token_ids():
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(FIX, "tokenizer.json"))
    with open(PROMPTS) as f:
        text = "".join(line.rstrip("\n").replace("\\n", "\n") for line in f)
    ids = tok.encode(text).ids
    return [tok.token_to_id("<|endoftext|>")] + ids[:255]


def exits(name):
    path = os.path.join(FIX, name)
    out = util.tmp_dir("fixture")
    ids = token_ids()
    model = export.load_gguf(path)
    L, V = model.cfg.num_hidden_layers, model.cfg.vocab_size
    e, _ = tel.engine_exits(path, ids, os.path.join(out, "lg.bin"))
    e = e.reshape(L, len(ids), V)
    t = tel.torch_exits(model, ids)
    return ids, e, t


def check_match(name):
    ids, e, t = exits(name)
    scale = max(1.0, float(np.abs(t).max()))
    diff = float(np.abs(t - e).max()) / scale
    print(f"    {name}: {len(ids)} tokens, max |engine - torch| / {scale:.1f} = {diff:.1e}")
    assert diff <= 5e-3, f"{name}: engine and torch differ by {diff:.2e} relative (> 5e-3, the F16 tolerance)"
    STATE[name] = e


def test_layerskip_loads_and_matches():
    check_match("lscode-layerskip.gguf")


def test_twin_loads_and_matches():
    check_match("lscode-twin.gguf")


def test_early_exits_agree_more_after_layerskip():
    ls, tw = STATE["lscode-layerskip.gguf"], STATE["lscode-twin.gguf"]

    def agree(e, E):  # draft after layers [0, E) == full model's token
        return float((e[E - 1].argmax(-1) == e[-1].argmax(-1)).mean())

    rows = [(E, agree(ls, E), agree(tw, E)) for E in (1, 2, 3, 4, 6)]
    print("    E: layerskip / twin agreement with the final exit: " +
          ", ".join(f"{E}: {a:.2f}/{b:.2f}" for E, a, b in rows))
    for E, a, b in rows[:4]:
        assert a > b + 0.1, f"exit {E}: LayerSkip fixture agrees {a:.2f}, twin {b:.2f}: expected a clear margin"


if __name__ == "__main__":
    sys.exit(util.main([test_layerskip_loads_and_matches, test_twin_loads_and_matches,
                        test_early_exits_agree_more_after_layerskip]))
