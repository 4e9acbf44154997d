#!/usr/bin/python3
"""bench_service.py: what the gRPC service costs, side by side with the engine.

  /usr/bin/python3 scripts/bench_service.py [--build build] [--model M] [--runs 5] [-n 64]

1. Per-token latency of one greedy generation through layerskipd
   (GenerateStream, measured at the client: first chunk to last chunk) next
   to layerskip-bench's decode time per token for the same prompt, tokens and
   threads, for each strategy; medians of --runs, and their ratio.
2. Aggregate tokens/s with 1, 4 and 16 concurrent clients (--clients).

A benchmark, not a test: the machine is shared and noisy, so the two sides
run interleaved in the same session and only their ratio is meant to be read.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="Write a short story about a robot who learns to paint.")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.build, "proto", "python"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    import grpc  # noqa: F401
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg
    from daemon_harness import Daemon

    bench = os.path.join(a.build, "engine", "layerskip-bench")
    d = Daemon(os.path.join(a.build, "daemon", "layerskipd"), a.model,
               ["--threads", str(a.threads), "--max-sessions", str(a.sessions), "--max-queue", "256"])
    stub = pbg.LayerSkipStub(d.channel)
    results = {"latency": [], "aggregate": []}
    try:
        cases = [("autoregressive", 0, 0), ("self_speculative", 8, 4)]
        print("per-token latency, %d greedy tokens, %d threads, medians of %d runs" % (a.n, a.threads, a.runs))
        print("%-18s %12s %12s %8s" % ("strategy", "bench ms/tok", "daemon ms/tok", "ratio"))
        for strategy, e, k in cases:
            b_ms, d_ms = [], []
            for _ in range(a.runs):
                cmd = [bench, "-m", a.model, "-p", a.prompt, "-n", str(a.n), "-t", str(a.threads), "--json",
                       "--ignore-eos", "--generation-strategy", strategy]
                if e:
                    cmd += ["--exit-layer", str(e), "--num-speculations", str(k)]
                j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                b_ms.append(j["decode_ms"] / max(1, j["generated_tokens"] - 1))
                req = pb.GenerateRequest(prompt=a.prompt, max_tokens=a.n, ignore_eos=True, strategy=strategy,
                                         exit_layer=e, num_speculations=k)
                times, n_tok = [], 0
                for c in stub.GenerateStream(req, timeout=600):
                    if c.token_ids:
                        times.append(time.perf_counter())
                        n_tok += len(c.token_ids)
                # first token (after the prompt) to last token, per later token
                d_ms.append((times[-1] - times[0]) * 1000 / max(1, n_tok - 1))
            mb, md = statistics.median(b_ms), statistics.median(d_ms)
            print("%-18s %12.3f %12.3f %7.3fx" % (strategy, mb, md, md / mb))
            results["latency"].append({"strategy": strategy, "bench_ms_per_token": mb, "daemon_ms_per_token": md,
                                       "ratio": md / mb})

        print("\naggregate throughput, %d greedy tokens a request, --max-sessions %d, --threads %d"
              % (a.n, a.sessions, a.threads))
        for nc in [int(x) for x in a.clients.split(",")]:
            per_client = max(1, 16 // nc) if nc < 16 else 1
            toks, lock = [0], threading.Lock()

            def client(i):
                for r in range(per_client):
                    resp = stub.Generate(pb.GenerateRequest(prompt="%s (%d.%d)" % (a.prompt, i, r), max_tokens=a.n,
                                                            ignore_eos=True), timeout=900)
                    with lock:
                        toks[0] += resp.stats.generated_tokens
            t0 = time.perf_counter()
            ts = [threading.Thread(target=client, args=(i,)) for i in range(nc)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            dt = time.perf_counter() - t0
            print("%3d clients: %5d tokens in %6.2f s = %7.1f tok/s" % (nc, toks[0], dt, toks[0] / dt))
            results["aggregate"].append({"clients": nc, "tokens": toks[0], "seconds": dt, "tok_s": toks[0] / dt})
    finally:
        rc = d.stop()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
