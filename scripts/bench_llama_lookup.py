#!/usr/bin/env python3
"""llama.cpp's own prompt lookup decoding (llama-lookup) against llama.cpp's
autoregressive decoding (llama-bench, tg at the same context depth), on the
input-grounded prompts of bench/spec_prompts.json: the anchor for our
lookup drafts (BENCHMARKS.md, "Draft sources").

    scripts/llamacpp_tools.sh --models        # builds the tools, makes the F16 file
    scripts/bench_llama_lookup.py [--runs 3] [--threads 1] [--draft-max 4] [--files Q4_1,F16]

Greedy (--temp 0), 128 tokens. Reports per file the median decode tok/s of
llama-lookup, of llama-bench's tg128 at depth = the prompt's length, their
ratio and the acceptance llama-lookup prints.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".cache-llamacpp", "build", "bin")
FILES = {
    "Q4_1": os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "F16": os.path.join(ROOT, "models", "bench", "SmolLM2-135M-Instruct.F16.gguf"),
}


def lookup(model, prompt_file, threads, draft_max, n):
    out = subprocess.run([os.path.join(BIN, "llama-lookup"), "-m", model, "-f", prompt_file, "-n", str(n),
                          "--spec-draft-n-max", str(draft_max), "--temp", "0", "-t", str(threads)],
                         capture_output=True, text=True)
    text = out.stdout + out.stderr
    dec = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s", text)
    enc = re.search(r"encoded\s+(\d+) tokens", text)
    acc = re.search(r"accept\s+=\s+([\d.]+)%", text)
    if not dec or not enc:
        sys.exit("llama-lookup output not understood:\n" + text[-2000:])
    return float(dec.group(3)), int(enc.group(1)), float(acc.group(1)) / 100 if acc else None


def bench_tg(model, threads, n, depth):
    out = subprocess.run([os.path.join(BIN, "llama-bench"), "-m", model, "-p", "0", "-n", str(n), "-t",
                          str(threads), "-d", str(depth), "-r", "1", "-o", "json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("llama-bench failed: " + out.stderr[-2000:])
    return json.loads(out.stdout)[0]["avg_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--draft-max", type=int, default=4)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--files", default="Q4_1,F16")
    ap.add_argument("--set", default="grounded")
    a = ap.parse_args()
    prompts = json.load(open(os.path.join(ROOT, "bench", "spec_prompts.json")))[a.set]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, p in enumerate(prompts):
            path = os.path.join(tmp, f"p{i}.txt")
            open(path, "w").write(p)
            paths.append(path)
        for r in range(a.runs):
            for f in a.files.split(","):
                for i, path in enumerate(paths):
                    tps, n_prompt, acc = lookup(FILES[f], path, a.threads, a.draft_max, a.n)
                    base = bench_tg(FILES[f], a.threads, a.n, n_prompt)
                    rows.setdefault((f, i), []).append((tps, base, acc))
            print(f"run {r + 1}/{a.runs} done", file=sys.stderr)
    print("| file | prompt | llama-lookup tok/s | llama-bench tg tok/s | ratio | accepted |")
    print("|---|---|---|---|---|---|")
    for (f, i), v in sorted(rows.items()):
        lt = statistics.median(x[0] for x in v)
        bt = statistics.median(x[1] for x in v)
        print(f"| {f} | {a.set}[{i}] | {lt:.1f} | {bt:.1f} | {lt / bt:.2f} | {v[-1][2]:.2f} |")


if __name__ == "__main__":
    main()
