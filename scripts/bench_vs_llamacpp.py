#!/usr/bin/env python3
"""Decode and prefill speed of layerskip-bench beside llama.cpp, same files,
same threads, same session, reported as medians and ratios.

llama.cpp runs through llama-cpp-python (PyPI, built for this CPU):
    python3 -m venv /opt/refenv
    CMAKE_ARGS="-DGGML_NATIVE=ON" /opt/refenv/bin/pip install numpy llama-cpp-python==0.3.36
    /opt/refenv/bin/python scripts/bench_vs_llamacpp.py [--runs 5] [--out bench.json]

Models: the default Q4_1 file, plus F16 and Q8_0 versions of the same weights
made from it with llama.cpp's quantizer (models/bench/, requantized from Q4_1
so the weights are the same). Timing, both sides: prefill = one batched pass
over a 128-token prompt up to its logits; decode = 64 single-token steps
(greedy, EOS ignored), tokens/s over those steps. Runs alternate between the
two engines so drift hits both alike.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
BENCH = os.path.join(ROOT, "build", "engine", "layerskip-bench")
N_PROMPT, N_DECODE = 128, 64


def make_variants():
    out_dir = os.path.join(ROOT, "models", "bench")
    os.makedirs(out_dir, exist_ok=True)
    files = {"Q4_1": BASE}
    for name, ftype in (("F16", llama_cpp.LLAMA_FTYPE_MOSTLY_F16), ("Q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0)):
        path = os.path.join(out_dir, f"SmolLM2-135M-Instruct.{name}.gguf")
        if not os.path.exists(path):
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = ftype
            params.allow_requantize = True
            params.nthread = 2
            rc = llama_cpp.llama_model_quantize(BASE.encode(), path.encode(), ctypes.byref(params))
            if rc != 0:
                sys.exit(f"quantize to {name} failed ({rc})")
        files[name] = path
    return files


def prompt_text(llm):
    words = ("The history of computing is a story of people who wanted to calculate faster, "
             "store more, and share what they knew. ") * 20
    ids = llm.tokenize(words.encode(), add_bos=False)[:N_PROMPT]
    return ids, llm.detokenize(ids).decode()


def llama_cpp_run(llm, ids):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    tok = int(np.argmax(llm.scores[len(ids) - 1]))
    t2 = time.perf_counter()
    for _ in range(N_DECODE):
        llm.eval([tok])
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t3 = time.perf_counter()
    return len(ids) / (t1 - t0), N_DECODE / (t3 - t2)


def ours_run(path, prompt, threads, n_prompt):
    r = subprocess.run([BENCH, "--model", path, "--prompt", prompt, "-n", str(N_DECODE + 1),
                        "--threads", str(threads), "--ignore-eos", "--json"],
                       capture_output=True, text=True, check=True)
    j = json.loads(r.stdout)
    assert j["prompt_tokens"] == n_prompt, (j["prompt_tokens"], n_prompt)
    return j["prefill_tok_s"], j["decode_tok_s"], j["peak_rss_mb"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    files = make_variants()
    results = []
    for name, path in files.items():
        for threads in (1, 2):
            llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                        logits_all=True, flash_attn=False, verbose=False)
            ids, prompt = prompt_text(llm)
            lp, ld, op, od, rss = [], [], [], [], []
            llama_cpp_run(llm, ids)  # warm-up
            for _ in range(args.runs):
                p, d = llama_cpp_run(llm, ids)
                lp.append(p); ld.append(d)
                p, d, r = ours_run(path, prompt, threads, len(ids))
                op.append(p); od.append(d); rss.append(r)
            del llm
            row = {"model": name, "file_mb": os.path.getsize(path) / 1e6, "threads": threads,
                   "ours_prefill": statistics.median(op), "llama_prefill": statistics.median(lp),
                   "ours_decode": statistics.median(od), "llama_decode": statistics.median(ld),
                   "ours_peak_rss_mb": max(rss)}
            row["prefill_ratio"] = row["ours_prefill"] / row["llama_prefill"]
            row["decode_ratio"] = row["ours_decode"] / row["llama_decode"]
            results.append(row)
            print(f"{name:5s} t={threads}  prefill {row['ours_prefill']:7.1f} vs {row['llama_prefill']:7.1f} tok/s "
                  f"({row['prefill_ratio']:.2f}x)  decode {row['ours_decode']:6.1f} vs {row['llama_decode']:6.1f} tok/s "
                  f"({row['decode_ratio']:.2f}x)  rss {row['ours_peak_rss_mb']:.0f} MB (file {row['file_mb']:.0f} MB)",
                  flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
