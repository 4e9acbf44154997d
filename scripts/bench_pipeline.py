#!/usr/bin/python3
"""bench_pipeline.py: the MPI pipeline beside a single process, same session.

  /usr/bin/python3 scripts/bench_pipeline.py [--build build] [--model M] [--prompts FILE]
      [--exit-layer E] [--num-speculations K|auto] [--draft-min-p P] [--runs 5] [-n 64]
      [--draft-source S] [--draft-adapter PATH] [--draft-vocab N] [--clients 1,2,4,8] [--json OUT]

Three daemons run side by side (idle ones cost nothing) and are measured
interleaved, run by run, so drift on this shared machine hits all alike:

  pipeline     mpirun -np 1 layerskipd --threads 1 --stages 0-E,E-L : -np 1 layerskip-worker
               (2 ranks x 1 thread: rank 0 drafts while rank 1 verifies)
  single       layerskipd --threads T (T = 2 by default: the same 2 cores)

1. One request at a time: greedy self_speculative (E, K, the draft
   source and adapter) through the pipeline, and self_speculative and
   autoregressive through the single process (T threads, and 1 thread); tokens/s = generated tokens / client wall time over all prompts;
   medians of --runs and the ratios.
2. Aggregate tokens/s with 1, 2, 4, 8 concurrent requests (--clients)
   through the pipeline (--max-sessions 8) and through a single process of
   8 one-thread sessions (the best single-process setting for throughput
   on 2 cores, BENCHMARKS.md "The service").

A benchmark, not a test: only the ratios are meant to be read.
"""
import argparse
import codecs
import json
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--prompts", help="one prompt per line, \\n escapes (default: a few English prompts)")
    ap.add_argument("--prompt-set", help="prose, code or grounded: the prompts of bench/spec_prompts.json")
    ap.add_argument("--max-prompts", type=int, default=8)
    ap.add_argument("--exit-layer", type=int, default=8)
    ap.add_argument("--num-speculations", default="4", help="K or auto")
    ap.add_argument("--draft-source", default="", help="auto, exit, adapter, lookup (default: the daemon's)")
    ap.add_argument("--draft-adapter", default="", help="adapter file for every daemon (E defaults to its)")
    ap.add_argument("--draft-vocab", type=int, default=-1, help="draft head size (-1: the daemon's default)")
    ap.add_argument("--draft-min-p", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2, help="threads of the single process")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.build, "proto", "python"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg
    from daemon_harness import Daemon

    if a.prompt_set:
        prompts = json.load(open(os.path.join(ROOT, "bench", "spec_prompts.json")))[a.prompt_set]
    elif a.prompts:
        prompts = [codecs.decode(l.rstrip("\n"), "unicode_escape") for l in open(a.prompts) if l.strip()]
    else:
        prompts = ["The history of the Roman Empire begins with", "def fibonacci(n):",
                   "Write a short story about a robot who learns to paint.", "The three laws of motion are"]
    prompts = prompts[:a.max_prompts]
    daemon = os.path.join(a.build, "daemon", "layerskipd")
    worker = os.path.join(a.build, "worker", "layerskip-worker")
    E = a.exit_layer
    K = -1 if a.num_speculations == "auto" else int(a.num_speculations)
    common = ["--ctx", "1024", "--max-queue", "256", "--draft-min-p", str(a.draft_min_p)]
    if a.draft_adapter:
        common += ["--draft-adapter", a.draft_adapter]
    started = []

    def start(args, pipeline=False):
        if pipeline:
            d = Daemon(daemon, a.model, common + args, prefix=["mpirun"] + MPI_FLAGS + ["-np", "1"],
                       suffix=[":", "-np", "1", worker])
        else:
            d = Daemon(daemon, a.model, common + args)
        started.append(d)
        return d

    results = {"model": a.model, "exit_layer": E, "num_speculations": a.num_speculations, "n": a.n, "runs": a.runs,
               "draft_source": a.draft_source, "draft_adapter": a.draft_adapter, "draft_vocab": a.draft_vocab,
               "prompts": len(prompts), "single_threads": a.threads, "draft_min_p": a.draft_min_p}
    try:
        info = None
        pipe = start(["--threads", "1", "--max-sessions", "8", "--exit-layer", str(E)], pipeline=True)
        single = start(["--threads", str(a.threads), "--max-sessions", "1"])
        single1 = start(["--threads", "1", "--max-sessions", "8"])
        stubs = {name: pbg.LayerSkipStub(d.channel) for name, d in
                 [("pipeline", pipe), ("single", single), ("single_t1", single1)]}
        info = stubs["pipeline"].GetModelInfo(pb.GetModelInfoRequest())
        L = info.layers
        results["layers"] = L

        def req(p, strategy):
            r = pb.GenerateRequest(prompt=p, max_tokens=a.n, ignore_eos=True, strategy=strategy,
                                   exit_layer=E if strategy != "autoregressive" else 0,
                                   num_speculations=K if strategy == "self_speculative" else 0)
            if strategy == "self_speculative":
                if a.draft_source:
                    r.draft_source = a.draft_source
                if a.draft_vocab >= 0:
                    r.draft_vocab = a.draft_vocab
            return r

        def one_pass(stub, strategy):
            t0 = time.perf_counter()
            toks = drafted = accepted = 0
            for p in prompts:
                r = stub.Generate(req(p, strategy), timeout=600)
                toks += r.stats.generated_tokens
                drafted += r.stats.drafted
                accepted += r.stats.accepted
            return toks / (time.perf_counter() - t0), drafted, accepted

        cases = [("pipeline", "self_speculative"), ("pipeline", "autoregressive"),
                 ("single", "self_speculative"), ("single", "autoregressive"),
                 ("single_t1", "self_speculative"), ("single_t1", "autoregressive")]
        for c in cases:  # warm-up (page cache, first allocations)
            one_pass(stubs[c[0]], c[1])
        rates = {c: [] for c in cases}
        acc = {}
        for run in range(a.runs):
            for c in cases:
                tps, dr, ac = one_pass(stubs[c[0]], c[1])
                rates[c].append(tps)
                acc[c] = (dr, ac)
            print("run %d: %s" % (run + 1, "  ".join("%s/%s %.1f" % (c[0], c[1][:4], rates[c][-1]) for c in cases)),
                  flush=True)
        med = {c: statistics.median(v) for c, v in rates.items()}
        base = med[("single", "self_speculative")]
        print("\none request at a time: %d prompts x %d greedy tokens, E=%d k=%s, medians of %d runs"
              % (len(prompts), a.n, E, a.num_speculations, a.runs))
        print("%-44s %10s %10s %12s" % ("", "tok/s", "vs single", "acceptance"))
        rows = []
        for c in cases:
            dr, ac = acc[c]
            label = "%s %s" % ("pipeline 2 ranks x 1 thread" if c[0] == "pipeline" else
                               "single process %d threads" % (a.threads if c[0] == "single" else 1), c[1])
            ratio = med[c] / base
            print("%-44s %10.1f %9.2fx %12s" % (label, med[c], ratio, "%.2f" % (ac / dr) if dr else "-"))
            rows.append({"setup": c[0], "strategy": c[1], "tok_s_median": med[c], "tok_s_runs": rates[c],
                         "vs_single_self_speculative": ratio, "drafted": dr, "accepted": ac})
        results["single_request"] = rows

        # aggregate throughput
        agg = []
        print("\naggregate tok/s (requests of %d tokens, self_speculative E=%d k=%s; %s)" %
              (a.n, E, a.num_speculations, "pipeline 8 sessions vs single process 8 x 1-thread sessions"))
        print("%-8s %12s %12s %8s" % ("clients", "pipeline", "single", "ratio"))
        for nc in [int(x) for x in a.clients.split(",")]:
            row = {"clients": nc}
            for name in ["pipeline", "single_t1"]:
                vals = []
                for _ in range(max(1, a.runs // 2)):
                    jobs = [prompts[i % len(prompts)] for i in range(max(nc * 2, 4))]
                    lock = threading.Lock()
                    total = [0]

                    def client():
                        while True:
                            with lock:
                                if not jobs:
                                    return
                                p = jobs.pop()
                            r = stubs[name].Generate(req(p, "self_speculative"), timeout=600)
                            with lock:
                                total[0] += r.stats.generated_tokens
                    t0 = time.perf_counter()
                    ts = [threading.Thread(target=client) for _ in range(nc)]
                    for t in ts:
                        t.start()
                    for t in ts:
                        t.join()
                    vals.append(total[0] / (time.perf_counter() - t0))
                row[name] = statistics.median(vals)
            print("%-8d %12.1f %12.1f %7.2fx" % (nc, row["pipeline"], row["single_t1"],
                                                 row["pipeline"] / row["single_t1"]), flush=True)
            agg.append(row)
        results["aggregate"] = agg
    finally:
        for d in started:
            d.stop()  # a pipeline: SIGTERM to rank 0, its clean stop
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
