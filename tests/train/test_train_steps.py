#!/usr/bin/env python3
"""tools/train: the recipe's pieces, a few training steps lower the loss, a
resumed run equals an uninterrupted one, and continued pretraining starts
from the loaded weights.

Run with the training venv's python: .venv-train/bin/python
tests/train/test_train_steps.py (about a minute on 2 cores)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import util  # noqa: E402

import torch  # noqa: E402

from lstrain import recipe  # noqa: E402

TINY = ["--vocab", "384", "--dim", "32", "--layers", "4", "--heads", "2", "--kv-heads", "1", "--ffn", "64",
        "--ctx", "128", "--seq", "64", "--batch", "4", "--lr", "1e-2", "--warmup", "5", "--seed", "7",
        "--log-every", "5", "--ckpt-every", "5", "--eval-windows", "4"]
LAYERSKIP = ["--dropout-pmax", "0.2", "--early-exit", "rotational", "--rotation", "2", "--e-scale", "1"]
STATE = {}


def log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(x) for x in f]


def test_recipe():
    r = recipe.dropout_rates(12, 0.2, "exp")
    assert r[0] == 0.0 and abs(r[-1] - 0.2) < 1e-12, r
    assert all(a < b for a, b in zip(r, r[1:])), f"rates must rise with depth: {r}"
    lin = recipe.dropout_rates(5, 0.1, "linear")
    assert [round(x, 6) for x in lin] == [0.0, 0.025, 0.05, 0.075, 0.1], lin
    g = torch.Generator().manual_seed(0)
    keep = recipe.sample_keep([0.0, 0.5, 0.99], 4000, g)
    frac = keep.float().mean(1).tolist()
    assert frac[0] == 1.0 and abs(frac[1] - 0.5) < 0.05 and frac[2] < 0.03, frac
    s = recipe.exit_scales(4, "l", 0.5)
    assert s == [0.5, 1.0, 1.5, 4.0], s
    assert recipe.exit_scales(3, "sum_l", 1.0) == [1.0, 3.0, 6.0]
    w = recipe.exit_weights([0, 1, 2, 3], s)
    assert abs(sum(w.values()) - 1.0) < 1e-12 and w[3] > w[2] > w[1] > w[0], w
    assert recipe.active_exits("none", 6, 3, 100, 2, 0.5) == [5]
    assert recipe.active_exits("all", 6, 3, 100, 2, 0.5) == list(range(6))
    rot = [recipe.active_exits("rotational", 6, t, 100, 3, 0.5) for t in range(3)]
    assert rot == [[0, 3, 5], [1, 4, 5], [2, 5]], rot
    grad = [len(recipe.active_exits("gradual", 6, t, 100, 3, 0.5)) for t in (0, 10, 25, 49, 50, 99)]
    assert grad == [1, 2, 4, 6, 6, 6], grad
    assert recipe.active_exits("gradual", 6, 10, 100, 3, 0.5) == [4, 5]


def test_loss_decreases():
    out = util.tmp_dir("train-a")
    util.train(out, TINY + LAYERSKIP + ["--steps", "20"])
    recs = log(out)
    assert [r["step"] for r in recs] == list(range(1, 21))
    first = recs[0]["loss"]
    last = sum(r["loss"] for r in recs[-5:]) / 5
    assert last < first - 0.5, f"loss did not decrease: step 1 {first:.3f}, mean of steps 16-20 {last:.3f}"
    fin = [r["exits"]["L4"] for r in recs]
    assert sum(fin[-5:]) / 5 < fin[0] - 0.5, f"final-exit loss did not decrease: {fin}"
    # the rotational curriculum puts exits 1/3 and 2/4 on alternate steps
    assert set(recs[0]["exits"]) == {"L1", "L3", "L4"} and set(recs[1]["exits"]) == {"L2", "L4"}, recs[:2]
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    assert len(s["heldout_loss"]) == 4 and all(x == x and x > 0 for x in s["heldout_loss"]), s["heldout_loss"]
    assert os.path.isfile(os.path.join(out, "hf", "model.safetensors"))
    STATE["a"] = out


def test_resume_equals_uninterrupted():
    a = STATE["a"]
    b = util.tmp_dir("train-b")
    tok = ["--tokenizer", os.path.join(a, "tokenizer.json")]
    p = util.train(b, TINY + LAYERSKIP + tok + ["--steps", "20", "--stop-at", "10"])
    assert "stopped at step 10" in p.stdout, p.stdout
    p = util.train(b, TINY + LAYERSKIP + tok + ["--steps", "20", "--resume"])
    assert "resumed from" in p.stdout and "at step 10" in p.stdout, p.stdout
    sa = torch.load(os.path.join(a, "ckpt.pt"))
    sb = torch.load(os.path.join(b, "ckpt.pt"))
    assert sa["step"] == sb["step"] == 20
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), f"weights differ after resume: {k}"
    la, lb = log(a), log(b)
    assert [r["loss"] for r in la] == [r["loss"] for r in lb], "per-step losses differ after resume"
    # a different seed must give different losses (the comparison above can fail)
    c = util.tmp_dir("train-c")
    util.train(c, TINY + LAYERSKIP + tok + ["--steps", "3", "--seed", "8"])
    assert log(c)[0]["loss"] != la[0]["loss"]


def test_continue_pretraining():
    a = STATE["a"]
    d = util.tmp_dir("train-d")
    util.train(d, ["--init", os.path.join(a, "hf"), "--steps", "3", "--seq", "64", "--batch", "4", "--lr", "1e-4",
                   "--warmup", "1", "--log-every", "1", "--eval-windows", "4"])
    start = log(d)[0]["loss"]
    end_a = sum(r["loss"] for r in log(a)[-5:]) / 5
    scratch = log(a)[0]["loss"]
    assert abs(start - end_a) < 0.5 < scratch - start, \
        f"continued pretraining should start near the checkpoint's loss {end_a:.3f}, got {start:.3f} (scratch {scratch:.3f})"


def test_bad_input():
    p = util.run([os.path.join(util.TRAIN_DIR, "train.py"), "--out", util.tmp_dir("train-e"), "--resume"] + util.DATA_ARGS,
                 check=False)
    assert p.returncode != 0 and "ckpt.pt does not exist" in p.stderr + p.stdout, p.stderr
    p = util.run([os.path.join(util.TRAIN_DIR, "train.py"), "--out", util.tmp_dir("train-f"), "--data-dir", "/nonexistent"],
                 check=False)
    assert p.returncode == 2 and p.stderr.startswith("error: --data-dir /nonexistent"), p.stderr


if __name__ == "__main__":
    sys.exit(util.main([test_recipe, test_loss_decreases, test_resume_equals_uninterrupted,
                        test_continue_pretraining, test_bad_input]))
