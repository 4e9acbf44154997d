#!/usr/bin/env python3
"""report.py: per-layer early-exit quality of one or more models on held-out text.

For every layer l, the output of layers [0, l] goes through the model's own
final norm and LM head (what the engine's early-exit drafter does with
E = l+1); the report gives the cross-entropy (nats/token) and next-token
top-1 accuracy of that exit on the held-out split of the corpus (the same
files train.py holds out). Writes PREFIX.csv, PREFIX.md and PREFIX.png.

  report.py --model tests/fixtures/lscode/lscode-layerskip.gguf --label layerskip \
            --model tests/fixtures/lscode/lscode-twin.gguf --label twin \
            --tokenizer tests/fixtures/lscode/tokenizer.json --out bench/results/lscode_layers

A model is a GGUF file (F32/F16) or a Hugging Face directory; the forward pass
is the PyTorch one that tests/train/test_export_logits.py checks against the
engine.
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from lstrain import data, export  # noqa: E402


def evaluate(model, hx, hy, batch):
    import torch.nn.functional as F
    L, V = model.cfg.num_hidden_layers, model.cfg.vocab_size
    loss, hit, n = [0.0] * L, [0] * L, 0
    with torch.no_grad():
        for i in range(0, hx.shape[0], batch):
            x, y = hx[i:i + batch], hy[i:i + batch].reshape(-1)
            _, hidden = model(x, return_hidden=True)
            for l in range(L):
                lg = model.exit_head(hidden[l]).reshape(-1, V)
                loss[l] += F.cross_entropy(lg, y, reduction="sum").item()
                hit[l] += (lg.argmax(-1) == y).sum().item()
            n += y.numel()
    return [v / n for v in loss], [v / n for v in hit], n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", action="append", required=True, help="GGUF file or HF directory (repeatable)")
    p.add_argument("--label", action="append", help="name of each --model in the table (default: file name)")
    p.add_argument("--tokenizer", help="tokenizer.json (default: the first HF directory's)")
    p.add_argument("--data-dir", default="/usr/lib/python3.11")
    p.add_argument("--heldout-frac", type=float, default=0.05, help="must match training's")
    p.add_argument("--seq", type=int, default=256, help="window length (tokens)")
    p.add_argument("--windows", type=int, default=128, help="held-out windows to evaluate (at most)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="output prefix: PREFIX.csv, PREFIX.md, PREFIX.png")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    labels = a.label or []
    if len(labels) > len(a.model):
        p.error("more --label than --model")
    labels += [os.path.basename(m.rstrip("/")) for m in a.model[len(labels):]]
    tok = a.tokenizer
    if not tok:
        for m in a.model:
            if os.path.isdir(m) and os.path.isfile(os.path.join(m, "tokenizer.json")):
                tok = os.path.join(m, "tokenizer.json")
                break
    if not tok:
        p.error("no tokenizer: pass --tokenizer tokenizer.json (GGUF models need it)")
    try:
        _, held, info = data.read_corpus(a.data_dir, a.heldout_frac)
        tk = data.load_tokenizer(tok)
        stream = data.encode_docs(tk, held)
        hx, hy = data.heldout_windows(stream, a.seq, a.windows)
        rows = []
        for path, label in zip(a.model, labels):
            model = export.load_any(path)
            loss, acc, n = evaluate(model, hx, hy, a.batch)
            print(f"{label}: {n} held-out tokens; top-1 per exit " + " ".join(f"{x:.3f}" for x in acc), flush=True)
            rows.append((label, loss, acc))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "exit_layer", "loss", "top1"])
        for label, loss, acc in rows:
            for l in range(len(loss)):
                w.writerow([label, l + 1, f"{loss[l]:.4f}", f"{acc[l]:.4f}"])
    L = max(len(r[1]) for r in rows)
    with open(a.out + ".md", "w") as f:
        f.write(f"Held-out: {n} tokens ({info['heldout_files']} files of {a.data_dir}, "
                f"{min(a.windows, hx.shape[0])} windows of {a.seq}). Exit E = output of layers [0, E) through the final "
                f"norm + LM head; loss in nats/token, top-1 = next-token accuracy.\n\n")
        f.write("| E | " + " | ".join(f"{lb} loss | {lb} top-1" for lb, _, _ in rows) + " |\n")
        f.write("|---|" + "---|---|" * len(rows) + "\n")
        for l in range(L):
            cells = []
            for _, loss, acc in rows:
                cells += [f"{loss[l]:.3f}", f"{acc[l]:.3f}"] if l < len(loss) else ["", ""]
            f.write(f"| {l + 1} | " + " | ".join(cells) + " |\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for label, loss, acc in rows:
        xs = list(range(1, len(loss) + 1))
        ax[0].plot(xs, loss, marker="o", label=label)
        ax[1].plot(xs, acc, marker="o", label=label)
    ax[0].set(xlabel="exit layer E", ylabel="held-out loss (nats/token)", title="early-exit loss")
    ax[1].set(xlabel="exit layer E", ylabel="next-token top-1 accuracy", title="early-exit accuracy")
    for x in ax:
        x.grid(alpha=0.3)
        x.legend()
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=100)
    print(f"wrote {a.out}.csv, {a.out}.md, {a.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
