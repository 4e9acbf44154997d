#!/usr/bin/env python3
"""eval_cpt.py: how well a LayerSkip-continued model drafts for the ORIGINAL model.

On the token ids of an engine/dump-states held-out file (teacher-forced, the
dump's sequences), top-1 agreement with the original model's full-model
argmax of
  * the continued model's early exit (its final norm + LM head on layer E's
    output) at each --exits E,
  * the continued model's own last layer (how far the weights drifted),
  * the original model's plain early exit (the baseline before training).
The reference argmax is the original model's, computed here in torch
(--orig, an HF directory); the dump's own top-1 (the engine's Q4_1 model) is
scored too, as a second reference (that is what tools/train/adapter.py eval
scores against). --draft-vocab N also scores argmax over the first N entries
of a frequency table (adapter.py freq), as the engine's --draft-vocab does.

  eval_cpt.py --orig ORIG_HF --cont RUN/ckpt.pt|HF_DIR --heldout heldout.bin \\
      --table table.npy --exits 4 6 8 --json out.json
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from adapter import Dump  # noqa: E402
from lstrain import export  # noqa: E402


def load(path):
    if os.path.isdir(path):
        return export.load_hf(path)[0].eval()
    st = torch.load(path, map_location="cpu")
    from convert import load_ckpt
    return load_ckpt(path, st.get("tokenizer") or "x")[0].eval()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orig", required=True, help="original model, HF directory")
    p.add_argument("--cont", help="continued model: train.py ckpt.pt or HF directory")
    p.add_argument("--heldout", required=True)
    p.add_argument("--table", help="frequency table (.npy) for --draft-vocab")
    p.add_argument("--draft-vocab", type=int, default=8192)
    p.add_argument("--exits", type=int, nargs="+", default=[4, 6, 8])
    p.add_argument("--max-seqs", type=int, default=0, help="first N sequences only (0: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    d = Dump(a.heldout)
    n = d.n_seq if a.max_seqs <= 0 else min(a.max_seqs, d.n_seq)
    allowed = None
    if a.table:
        order = np.load(a.table)[:a.draft_vocab]
        allowed = torch.full((d.n_vocab,), float("-inf"))
        allowed[torch.from_numpy(order.astype(np.int64))] = 0.0
    models = {"orig": load(a.orig)}
    if a.cont:
        models["cont"] = load(a.cont)
    hits, total = {}, 0
    t0 = time.time()

    def add(key, pred, ref):
        hits[key] = hits.get(key, 0) + int((pred == ref).sum())

    with torch.no_grad():
        for i in range(n):
            ids = torch.from_numpy(np.asarray(d.data["tokens"][i], dtype=np.int64))[None]
            dump_top1 = torch.from_numpy(np.asarray(d.data["ids"][i, :, 0], dtype=np.int64))[None]
            outs = {k: m(ids, return_hidden=True) for k, m in models.items()}
            ref = outs["orig"][0].argmax(-1)
            add("orig_final_vs_dump", ref, dump_top1)
            for k, m in models.items():
                logits, hidden = outs[k]
                if k == "cont":
                    add("cont_final", logits.argmax(-1), ref)
                    add("cont_final_vs_dump", logits.argmax(-1), dump_top1)
                for E in a.exits:
                    lg = m.exit_head(hidden[E - 1])
                    add(f"{k}_exit{E}", lg.argmax(-1), ref)
                    add(f"{k}_exit{E}_vs_dump", lg.argmax(-1), dump_top1)
                    if allowed is not None:
                        add(f"{k}_exit{E}_N{a.draft_vocab}", (lg + allowed).argmax(-1), ref)
                        add(f"{k}_exit{E}_N{a.draft_vocab}_vs_dump", (lg + allowed).argmax(-1), dump_top1)
            total += ref.numel()
            if (i + 1) % 10 == 0:
                print(f"{i + 1}/{n} sequences, {time.time() - t0:.0f}s", flush=True)
    res = {k: v / total for k, v in sorted(hits.items())}
    res["positions"] = total
    res["seconds"] = time.time() - t0
    for k, v in res.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
