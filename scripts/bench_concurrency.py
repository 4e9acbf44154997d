#!/usr/bin/python3
"""bench_concurrency.py: serving many users at once, batched against per-session.

  /usr/bin/python3 scripts/bench_concurrency.py [--build build] [--old-build DIR]
      [--models M1,M2] [--streams 1,2,4,8,16] [-n 32] [--runs 3] [--pipeline] [--json OUT]

For each model and each daemon ("new" from --build; "old" from --old-build,
a build of an earlier commit kept for comparison, e.g. the per-session
design), S greedy autoregressive GenerateStream requests start at once, each
with its own prompt and n tokens (ignore_eos). Measured at the client:

  aggregate tok/s   all generated tokens / wall time from the first request
                    sent to the last one finished
  per-token ms      the gap between consecutive streamed chunks divided by
                    the tokens in the later chunk, over every stream; p50 and
                    p99 over all tokens of the run

Designs, one daemon each, started and stopped per run and measured
interleaved (old, new, old, new, ...) so drift on the shared machine hits
all alike; medians over --runs:

  single    layerskipd --threads T --max-sessions 16 (new: one step loop on
            T threads; old: T threads per session, so --old-threads 1 is
            its best throughput setting on 2 cores)
  pipeline  (--pipeline) mpirun -np 1 layerskipd --threads 1 --stages 0-8,8-L
            : -np 1 layerskip-worker --max-sessions 16

With --batch-prompts N (and no streams measured): one new single-process
daemon (--threads T, --max-sessions 8) on the first of --models, and the
`layerskip batch` CLI over N prompts of --batch-tokens tokens each, at
--concurrency 8, 1, 8 (wall time of each job; the ratio c1 / c8).

A benchmark, not a test: read the ratios, not the absolute numbers.
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
PROMPTS = [
    "The history of the Roman Empire begins with", "Write a short story about a robot who learns to paint.",
    "def fibonacci(n):", "The best way to learn a new language is", "Explain how a rainbow forms.",
    "Once upon a time in a small village,", "The main ingredients of bread are", "A list of prime numbers:",
    "In computer science, a hash table is", "The weather today is", "My favourite book is",
    "The capital of France is", "How do airplanes fly?", "Photosynthesis is the process", "import numpy as np\n",
    "Dear team, I am writing to",
]


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--old-build", default="", help="build dir of an earlier commit to compare with")
    ap.add_argument("--models", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--streams", default="1,2,4,8,16")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="threads of the new single process")
    ap.add_argument("--old-threads", type=int, default=1, help="threads per session of the old single process")
    ap.add_argument("--pipeline", action="store_true", help="also the 2-rank pipeline")
    ap.add_argument("--no-single", action="store_true", help="only the pipeline")
    ap.add_argument("--batch-prompts", type=int, default=0, help="time a layerskip batch job of N prompts instead")
    ap.add_argument("--batch-tokens", type=int, default=8)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.build, "proto", "python"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    import grpc  # noqa: F401
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg
    from daemon_harness import Daemon

    if a.batch_prompts:
        return batch_job(a, Daemon)
    streams = [int(x) for x in a.streams.split(",")]
    builds = [("new", a.build)] + ([("old", a.old_build)] if a.old_build else [])
    designs = ([] if a.no_single else ["single"]) + (["pipeline"] if a.pipeline else [])
    results = {"n": a.n, "runs": a.runs, "streams": streams, "threads": a.threads, "old_threads": a.old_threads,
               "cases": []}

    def start(build, tag, design, model):
        daemon = os.path.join(build, "daemon", "layerskipd")
        common = ["--ctx", "512", "--max-queue", "256", "--max-sessions", str(max(streams))]
        if design == "single":
            t = a.threads if tag == "new" else a.old_threads
            return Daemon(daemon, model, common + ["--threads", str(t)])
        worker = os.path.join(build, "worker", "layerskip-worker")
        return Daemon(daemon, model, common + ["--threads", "1", "--exit-layer", "8"],
                      prefix=["mpirun"] + MPI_FLAGS + ["-np", "1"], suffix=[":", "-np", "1", worker])

    def one_round(stub, s):
        gaps, counts, errors = [], [0] * s, []

        def client(i):
            last = None
            mine = []
            try:
                req = pb.GenerateRequest(prompt=PROMPTS[i % len(PROMPTS)], max_tokens=a.n, ignore_eos=True,
                                         strategy="autoregressive")
                for ch in stub.GenerateStream(req, timeout=600):
                    now = time.perf_counter()
                    k = len(ch.token_ids)
                    if k == 0:
                        continue
                    if last is not None:
                        mine += [(now - last) * 1e3 / k] * k
                    last = now
                    counts[i] += k
            except Exception as e:  # noqa: BLE001 - reported
                errors.append(repr(e))
            with lock:
                gaps.extend(mine)

        lock = threading.Lock()
        th = [threading.Thread(target=client, args=(i,)) for i in range(s)]
        t0 = time.perf_counter()
        for t in th:
            t.start()
        for t in th:
            t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise RuntimeError("; ".join(errors[:3]))
        return sum(counts) / wall, pct(gaps, 0.5), pct(gaps, 0.99)

    for model in a.models.split(","):
        raw = {}
        for r in range(a.runs):
            for design in designs:
                for tag, build in (builds if r % 2 == 0 else builds[::-1]):
                    d = start(build, tag, design, model)
                    try:
                        stub = pbg.LayerSkipStub(d.channel)
                        one_round(stub, 2)  # warm-up
                        for s in streams:
                            agg, p50, p99 = one_round(stub, s)
                            raw.setdefault((design, tag, s), []).append((agg, p50, p99))
                            print("  run %d %-8s %-3s %2d streams: %7.1f tok/s  p50 %6.1f ms  p99 %6.1f ms" %
                                  (r + 1, design, tag, s, agg, p50, p99), flush=True)
                    finally:
                        rc = d.stop()
                        if rc != 0:
                            print("  daemon exited %s: %s" % (rc, d.log_tail(800)))
        print("\n%s, %d tokens per stream, medians of %d runs" % (os.path.basename(model), a.n, a.runs))
        print("%-9s %-4s %8s %10s %8s %9s %9s %8s" % ("design", "", "streams", "tok/s", "vs 1", "p50 ms", "p99 ms",
                                                     "p50 vs 1"))
        for design in designs:
            for tag, _ in builds:
                base = None
                for s in streams:
                    v = raw[(design, tag, s)]
                    agg = statistics.median(x[0] for x in v)
                    p50 = statistics.median(x[1] for x in v)
                    p99 = statistics.median(x[2] for x in v)
                    if base is None:
                        base = (agg, p50)
                    print("%-9s %-4s %8d %10.1f %7.2fx %9.1f %9.1f %7.2fx" % (design, tag, s, agg, agg / base[0], p50,
                                                                        p99, p50 / base[1]))
                    results["cases"].append({"model": os.path.basename(model), "design": design, "build": tag,
                                             "streams": s, "tok_s": agg, "p50_ms": p50, "p99_ms": p99,
                                             "runs": [list(x) for x in v]})
        if a.old_build:
            print("new / old aggregate tok/s:")
            for design in designs:
                print("  %-9s " % design + "  ".join(
                    "%d: %.2fx" % (s, statistics.median(x[0] for x in raw[(design, "new", s)]) /
                                   statistics.median(x[0] for x in raw[(design, "old", s)])) for s in streams))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def batch_job(a, Daemon):
    import subprocess
    import tempfile
    model = a.models.split(",")[0]
    d = Daemon(os.path.join(a.build, "daemon", "layerskipd"), model,
               ["--threads", str(a.threads), "--max-sessions", "8", "--max-queue", "64", "--ctx", "256"])
    cli = os.path.join(a.build, "client", "layerskip")
    tmp = tempfile.mkdtemp(prefix="ls_batch_")
    inp = os.path.join(tmp, "in.jsonl")
    with open(inp, "w") as f:
        for i in range(a.batch_prompts):
            f.write(json.dumps({"id": i, "prompt": "%s (%d)" % (PROMPTS[i % len(PROMPTS)], i),
                                "max_tokens": a.batch_tokens, "ignore_eos": True}) + "\n")
    walls = {1: [], 8: []}
    try:
        for k, c in enumerate([8, 1, 8]):
            out = os.path.join(tmp, "out%d.jsonl" % k)
            t0 = time.perf_counter()
            r = subprocess.run([cli, "batch", "--server", d.addr, "--input", inp, "--output", out, "--concurrency", str(c),
                                "--no-token-ids", "--progress", "lines", "--progress-every", "60"],
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if not os.path.exists(out):
                raise RuntimeError("layerskip batch wrote nothing (exit %d): %s" % (r.returncode, r.stderr[-2000:]))
            with open(out) as f:
                n_ok = sum(1 for line in f if '"error"' not in line)
            print("  batch of %d prompts x %d tokens at --concurrency %d: %.1f s (%d ok, exit %d)" %
                  (a.batch_prompts, a.batch_tokens, c, wall, n_ok, r.returncode), flush=True)
            if r.returncode != 0:
                print(r.stderr[-2000:])
            walls[c].append(wall)
    finally:
        d.stop()
    c8 = statistics.median(walls[8])
    print("%s: --concurrency 1 %.1f s, 8 %.1f s (median of 2): %.2fx faster at 8" %
          (os.path.basename(model), walls[1][0], c8, walls[1][0] / c8))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": os.path.basename(model), "prompts": a.batch_prompts, "tokens": a.batch_tokens,
                       "threads": a.threads, "wall_c1": walls[1], "wall_c8": walls[8]}, f, indent=1)


if __name__ == "__main__":
    main()
