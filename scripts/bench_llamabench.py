#!/usr/bin/env python3
"""Decode and prefill speed of layerskip-bench beside llama.cpp's own
llama-bench, same GGUF files, same threads, interleaved run by run.

    python3 scripts/bench_llamabench.py [--runs 5] [--threads 1,2] [--files Q4_1,Q8_0,F16,Q5_0,Q5_1]
        [--out bench/results/vs_llamabench.json]

llama-bench, llama-quantize and the model variants come from
scripts/llamacpp_tools.sh --models (llama.cpp from the llama-cpp-python
0.3.36 sdist, built with native flags; variants requantized from the
default Q4_1 file by llama.cpp's quantizer). Prefill: llama-bench pp128
against our 128-token prompt up to its logits. Decode: llama-bench tg64 at
depth 128 (-d 128) against our 64 greedy steps after that prompt, EOS
ignored. Each run is one process per side (llama-bench -r 1); the table
gives medians over --runs and the ratio ours / llama.cpp.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "engine", "layerskip-bench")
N_PROMPT, N_DECODE = 128, 64


def model_path(t):
    if t == "Q4_1":
        return os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    return os.path.join(ROOT, "models", "bench", f"SmolLM2-135M-Instruct.{t}.gguf")


def prompt_128(model):
    """a text our tokenizer (llama.cpp's, per the tokenizer goldens) turns into exactly 128 tokens"""
    words = ("The history of computing is a story of people who wanted to calculate faster, "
             "store more, and share what they knew. ").split(" ")
    text = ""
    i = 0
    while True:
        cand = (text + " " + words[i % len(words)]).strip()
        ids = json.loads(subprocess.check_output([BENCH, "-m", model, "--tokenize", cand, "--no-bos"]))
        if len(ids) > N_PROMPT:
            return text
        text = cand
        i += 1
        if len(ids) == N_PROMPT:
            return text


def ours(model, prompt, threads):
    out = subprocess.run([BENCH, "-m", model, "-p", prompt, "--no-bos", "-n", str(N_DECODE + 1), "-t", str(threads),
                          "--ignore-eos", "--json"], capture_output=True, text=True, check=True)
    j = json.loads(out.stdout)
    return j["prefill_tok_s"], j["decode_tok_s"], j["prompt_tokens"]


def llama(bin_dir, model, threads):
    lb = os.path.join(bin_dir, "llama-bench")
    res = []
    for args in (["-p", str(N_PROMPT), "-n", "0"], ["-p", "0", "-n", str(N_DECODE), "-d", str(N_PROMPT)]):
        out = subprocess.run([lb, "-m", model, "-t", str(threads), "-r", "1", "-o", "json"] + args,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit("llama-bench failed: " + out.stderr[-2000:])
        res.append(json.loads(out.stdout)[0]["avg_ts"])
    return res[0], res[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--files", default="Q4_1,Q8_0,F16,Q5_0,Q5_1")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "vs_llamabench.json"))
    a = ap.parse_args()
    bin_dir = subprocess.check_output(["bash", os.path.join(ROOT, "scripts", "llamacpp_tools.sh"), "--models"],
                                      text=True).strip().splitlines()[-1]
    files = a.files.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    for t in files:
        if not os.path.exists(model_path(t)):
            sys.exit(f"missing {model_path(t)}")
    prompt = prompt_128(model_path(files[0]))
    cells = {(f, th): {"ours_pp": [], "ours_tg": [], "llama_pp": [], "llama_tg": []} for f in files for th in threads}
    for r in range(a.runs):
        for f in files:
            for th in threads:
                c = cells[(f, th)]
                pp, tg, n = ours(model_path(f), prompt, th)
                c["ours_pp"].append(pp)
                c["ours_tg"].append(tg)
                c["prompt_tokens"] = n
                lpp, ltg = llama(bin_dir, model_path(f), th)
                c["llama_pp"].append(lpp)
                c["llama_tg"].append(ltg)
        print(f"run {r + 1}/{a.runs} done", file=sys.stderr)
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rows = []
    print(f"CPU: {cpu}; prompt {N_PROMPT} tokens, decode {N_DECODE}; medians of {a.runs}\n")
    print("| weights | threads | prefill ours | prefill llama.cpp | ratio | decode ours | decode llama.cpp | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for f in files:
        for th in threads:
            c = cells[(f, th)]
            m = {k: statistics.median(v) for k, v in c.items() if isinstance(v, list)}
            rows.append({"file": f, "threads": th, **m, "runs": c, "prompt_tokens": c["prompt_tokens"]})
            print(f"| {f} | {th} | {m['ours_pp']:.1f} | {m['llama_pp']:.1f} | {m['ours_pp'] / m['llama_pp']:.2f}x "
                  f"| {m['ours_tg']:.1f} | {m['llama_tg']:.1f} | {m['ours_tg'] / m['llama_tg']:.2f}x |")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump({"cpu": cpu, "n_prompt": N_PROMPT, "n_decode": N_DECODE, "cells": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
