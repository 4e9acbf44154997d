#!/usr/bin/env python3
"""Self-speculative decoding against our own autoregressive decoding, per
draft source, model file and prompt set (BENCHMARKS.md, "Draft sources").

Runs build/engine/layerskip-bench --json for every (file, prompt, config),
interleaved (run r of every cell before run r+1 of any), and reports per
prompt set the median decode tok/s, the ratio to autoregressive on the same
file and threads (geometric mean over the set's prompts), acceptance per
source and the k the auto policy chose.

    scripts/bench_speculation.py [--runs 3] [--threads 1] [--n-predict 128]
        [--files Q4_1,F16] [--configs ar,exit,adapter,lookup,auto,...]
        [--adapter adapters/...gguf] [--draft-vocab 8192] [--out bench/results/speculation.json]

Files: models/SmolLM2-135M-Instruct.Q4_1.gguf and models/bench/*.F16.gguf
(made by scripts/llamacpp_tools.sh --models with llama.cpp's quantizer).
Prompts: bench/spec_prompts.json (prose, code, grounded). Greedy, EOS ignored.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "engine", "layerskip-bench")
FILES = {
    "Q4_1": os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "F16": os.path.join(ROOT, "models", "bench", "SmolLM2-135M-Instruct.F16.gguf"),
    "Q8_0": os.path.join(ROOT, "models", "bench", "SmolLM2-135M-Instruct.Q8_0.gguf"),
}


def configs(adapter, dv, e_exit):
    ss = ["--generation-strategy", "self_speculative", "--draft-min-p", "0"]
    ad = ["--draft-adapter", adapter] + (["--draft-vocab", str(dv)] if dv else []) if adapter else []
    c = {
        "ar": ["--generation-strategy", "autoregressive"],
        "exit": ss + ["--draft-source", "exit", "--exit-layer", str(e_exit), "--num-speculations", "2"],
        "exit_auto": ss + ["--draft-source", "exit", "--exit-layer", str(e_exit), "--num-speculations", "auto"],
        "lookup": ss + ["--draft-source", "lookup", "--num-speculations", "4"],
        "lookup_auto": ss + ["--draft-source", "lookup", "--num-speculations", "auto"],
    }
    if adapter:
        c["adapter"] = ss + ["--draft-source", "adapter", "--num-speculations", "3"] + ad
        c["adapter_auto"] = ss + ["--draft-source", "adapter", "--num-speculations", "auto"] + ad
        c["auto"] = ss + ["--draft-source", "auto", "--num-speculations", "auto"] + ad
    else:
        c["auto"] = ss + ["--draft-source", "auto", "--exit-layer", str(e_exit), "--num-speculations", "auto"]
    return c


def run(model, prompt, flags, threads, n_predict):
    cmd = [BENCH, "-m", model, "-p", prompt, "-n", str(n_predict), "-t", str(threads), "--ignore-eos", "--json"]
    out = subprocess.run(cmd + flags, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"layerskip-bench failed ({' '.join(flags)}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-predict", type=int, default=128)
    ap.add_argument("--files", default="Q4_1,F16")
    ap.add_argument("--sets", default="prose,code,grounded")
    ap.add_argument("--configs", default="")
    ap.add_argument("--adapter", default="")
    ap.add_argument("--draft-vocab", type=int, default=0)
    ap.add_argument("--exit-layer", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "speculation.json"))
    a = ap.parse_args()
    prompts = json.load(open(os.path.join(ROOT, "bench", "spec_prompts.json")))
    cfgs = configs(a.adapter, a.draft_vocab, a.exit_layer)
    names = [c for c in (a.configs.split(",") if a.configs else cfgs) if c in cfgs]
    if "ar" not in names:
        names.insert(0, "ar")
    files = {f: FILES[f] for f in a.files.split(",")}
    for f, p in files.items():
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: run scripts/llamacpp_tools.sh --models")
    sets = a.sets.split(",")
    cells = {}  # (file, set, i, config) -> list of results
    for r in range(a.runs):
        for f, path in files.items():
            for s in sets:
                for i, pr in enumerate(prompts[s]):
                    for c in names:
                        res = run(path, pr, cfgs[c], a.threads, a.n_predict)
                        cells.setdefault(f"{f}|{s}|{i}|{c}", []).append(res)
        print(f"run {r + 1}/{a.runs} done", file=sys.stderr)

    report = {"runs": a.runs, "threads": a.threads, "n_predict": a.n_predict, "adapter": a.adapter,
              "draft_vocab": a.draft_vocab, "exit_layer": a.exit_layer, "cpu": cpu_name(), "cells": {}, "summary": {}}
    for key, rs in cells.items():
        report["cells"][key] = {"decode_tok_s": [x["decode_tok_s"] for x in rs], "stats": rs[-1]}
    lines = [f"| file | set | config | tok/s (median) | x autoregressive | acceptance | by source | rounds by k |",
             "|---|---|---|---|---|---|---|---|"]
    for f in files:
        for s in sets:
            for c in names:
                ratios, speeds, drafted, accepted, kh, by = [], [], 0, 0, {}, {}
                for i in range(len(prompts[s])):
                    med = statistics.median(report["cells"][f"{f}|{s}|{i}|{c}"]["decode_tok_s"])
                    base = statistics.median(report["cells"][f"{f}|{s}|{i}|ar"]["decode_tok_s"])
                    speeds.append(med)
                    ratios.append(med / base)
                    st = report["cells"][f"{f}|{s}|{i}|{c}"]["stats"]
                    drafted += st.get("drafted", 0)
                    accepted += st.get("accepted", 0)
                    for src, n in (st.get("drafted_by") or {}).items():
                        d0, a0 = by.get(src, (0, 0))
                        by[src] = (d0 + n, a0 + (st.get("accepted_by") or {}).get(src, 0))
                    for k, n in enumerate(st.get("rounds_by_k", []) or []):
                        if n:
                            kh[k] = kh.get(k, 0) + n
                g = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
                acc = f"{accepted / drafted:.2f} ({accepted}/{drafted})" if drafted else "-"
                khs = " ".join(f"{k}:{n}" for k, n in sorted(kh.items())) if kh else "-"
                bys = " ".join(f"{src} {ac}/{dr}" for src, (dr, ac) in by.items() if dr) or "-"
                report["summary"][f"{f}|{s}|{c}"] = {"ratio_geomean": g, "tok_s_median": statistics.median(speeds),
                                                     "acceptance": accepted / drafted if drafted else None,
                                                     "rounds_by_k": kh, "by_source": by}
                lines.append(f"| {f} | {s} | {c} | {statistics.median(speeds):.1f} | {g:.2f} | {acc} | {bys} | {khs} |")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(report, open(a.out, "w"), indent=1)
    print("\n".join(lines))


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    main()
