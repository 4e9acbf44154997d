#!/usr/bin/env python3
"""make_prompts.py: held-out code prompts for layerskip-bench sweeps.

Takes, from the held-out files of the corpus (the split train.py uses), the
opening lines of function definitions (the def line and up to --lines-1 more)
and writes one prompt per line in layerskip-bench's prompt-file format
("\\n" stands for a newline). Snippets with a backslash are skipped so the
escaping cannot change them. Deterministic: files sorted, every --stride-th
function.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lstrain import data  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="/usr/lib/python3.11")
    p.add_argument("--heldout-frac", type=float, default=0.05)
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--lines", type=int, default=3, help="lines per prompt, starting at a def")
    p.add_argument("--stride", type=int, default=29, help="take every N-th function")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    files = [f for f in data.list_files(a.data_dir) if data.is_heldout(f, a.heldout_frac)]
    out, seen = [], 0
    for rel in files:
        with open(os.path.join(a.data_dir, rel), encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            if not re.match(r"^\s*def \w+\(", line):
                continue
            seen += 1
            if seen % a.stride:
                continue
            snip = "\n".join(lines[i:i + a.lines]).rstrip() + "\n"
            if "\\" in snip or len(snip) > 400:
                continue
            out.append(snip.replace("\n", "\\n"))
            if len(out) == a.count:
                break
        if len(out) == a.count:
            break
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {len(out)} prompts from {len(files)} held-out files to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
